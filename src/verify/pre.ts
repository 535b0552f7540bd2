/**
 * `meshfed check --pre`: can `up` work on these clusters? Reads only; the
 * one write-shaped call is SelfSubjectAccessReview, which the API server
 * answers and does not store.
 */

import { mapLimit } from '../engine/order.js';
import { compareVersions, ISTIO_KUBERNETES_SUPPORT, minorOf } from '../fleet/versions.js';
import type { ClusterClient } from '../kube/client.js';
import { renderCluster } from '../render/index.js';
import { ISTIO_NAMESPACE, SPIRE_NAMESPACE } from '../render/namespaces.js';
import { type CheckDef, type Finding, fail, pass, warn } from './catalog.js';
import { type CheckContext, clientOf, eachCluster, notRunUnreachable, reachable } from './context.js';
import { REACHABILITY_CHECK } from './reachability.js';

/** Kinds the upstream installs (cert-manager's release, istioctl's manifests) create, besides what meshfed renders. */
const UPSTREAM_KINDS: Array<{ apiVersion: string; kind: string; namespace?: string }> = [
  { apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition' },
  { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole' },
  { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding' },
  { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration' },
  { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingWebhookConfiguration' },
  ...['cert-manager', ISTIO_NAMESPACE].flatMap((namespace) =>
    [
      ['v1', 'ServiceAccount'],
      ['v1', 'Service'],
      ['v1', 'ConfigMap'],
      ['v1', 'Secret'],
      ['apps/v1', 'Deployment'],
      ['rbac.authorization.k8s.io/v1', 'Role'],
      ['rbac.authorization.k8s.io/v1', 'RoleBinding'],
      ['policy/v1', 'PodDisruptionBudget'],
    ].map(([apiVersion, kind]) => ({ apiVersion: apiVersion!, kind: kind!, namespace })),
  ),
  { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', namespace: ISTIO_NAMESPACE },
];

/** The plural a CRD-defined kind will most likely be served under, before its CRD exists. */
export function guessPlural(kind: string): string {
  const k = kind.toLowerCase();
  if (/[^aeiou]y$/.test(k)) return `${k.slice(0, -1)}ies`;
  if (/(s|x|ch|sh)$/.test(k)) return `${k}es`;
  return `${k}s`;
}

export interface AccessNeed {
  group: string;
  resource: string;
  namespace?: string;
  verbs: string[];
  subresource?: string;
}

/** What `up` and `down` do in a cluster, as resource attributes to review. */
export async function accessNeeds(
  ctx: CheckContext,
  cluster: string,
  client: ClusterClient,
): Promise<AccessNeed[]> {
  const objects = renderCluster(ctx.fleet, cluster).phases.flatMap((p) => p.objects);
  const kinds = new Map<string, { apiVersion: string; kind: string; namespace?: string }>();
  for (const o of [
    ...objects.map((o) => ({
      apiVersion: o.apiVersion,
      kind: o.kind,
      ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}),
    })),
    ...UPSTREAM_KINDS,
  ])
    kinds.set(`${o.apiVersion}/${o.kind}/${o.namespace ?? ''}`, o);
  const needs: AccessNeed[] = [];
  for (const k of kinds.values()) {
    const group = k.apiVersion.includes('/') ? k.apiVersion.split('/')[0]! : '';
    const resource = (await client.resourceName(k.apiVersion, k.kind)) ?? guessPlural(k.kind);
    needs.push({
      group,
      resource,
      ...(k.namespace ? { namespace: k.namespace } : {}),
      verbs: ['get', 'list', 'create', 'patch', 'delete'],
    });
  }
  // The federation bootstrap and the checks run spire-server in its pod.
  needs.push({
    group: '',
    resource: 'pods',
    subresource: 'exec',
    namespace: SPIRE_NAMESPACE,
    verbs: ['create'],
  });
  return needs;
}

async function allowed(client: ClusterClient, n: AccessNeed, verb: string): Promise<boolean> {
  const r = await client.review({
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SelfSubjectAccessReview',
    metadata: { name: '' },
    spec: {
      resourceAttributes: {
        group: n.group,
        resource: n.resource,
        verb,
        ...(n.namespace ? { namespace: n.namespace } : {}),
        ...(n.subresource ? { subresource: n.subresource } : {}),
      },
    },
  });
  return (r.status as { allowed?: boolean } | undefined)?.allowed === true;
}

export const PRE_CHECKS: CheckDef<CheckContext>[] = [
  REACHABILITY_CHECK,
  {
    code: 'MF102',
    title: 'Kubernetes version supported',
    category: 'kubernetes',
    severity: 'error',
    stage: 'pre',
    description: "Each cluster's Kubernetes minor is one the fleet's Istio release supports.",
    hint: 'pick the profile whose Istio supports your clusters (spec.profile, spec.versions.istio), or upgrade the clusters; see docs/verify.md#mf102',
    async run(ctx) {
      const istio = minorOf(ctx.fleet.versions.istio);
      const range = ISTIO_KUBERNETES_SUPPORT[istio];
      return [
        ...reachable(ctx).map((c): Finding => {
          const v = ctx.versions.get(c.name) ?? '?';
          const k = minorOf(v);
          if (!range)
            return {
              status: 'warning',
              cluster: c.name,
              message: `Kubernetes ${v}; meshfed has no support data for Istio ${istio} (istio.io/latest/docs/releases/supported-releases)`,
            };
          const ok = compareVersions(k, range[0]) >= 0 && compareVersions(k, range[1]) <= 0;
          return {
            status: ok ? 'passed' : 'failed',
            cluster: c.name,
            message: ok
              ? `Kubernetes ${k} (Istio ${istio} supports ${range[0]}–${range[1]})`
              : `Kubernetes ${v} is outside what Istio ${istio} supports (${range[0]}–${range[1]})`,
          };
        }),
        ...notRunUnreachable(ctx),
      ];
    },
  },
  {
    code: 'MF103',
    title: 'Clusters distinct',
    category: 'kubernetes',
    severity: 'error',
    stage: 'pre',
    description:
      'No two fleet contexts reach the same cluster (compared by the uid of kube-system, which a cluster keeps for life).',
    hint: 'point each spec.clusters[].context at its own cluster (kubectl config get-contexts)',
    async run(ctx) {
      const uids = new Map<string, string[]>();
      await Promise.all(
        reachable(ctx).map(async (c) => {
          const ns = await clientOf(ctx, c.name).get({
            apiVersion: 'v1',
            kind: 'Namespace',
            name: 'kube-system',
          });
          const uid = ns?.metadata.uid ?? `unknown:${c.name}`;
          uids.set(uid, [...(uids.get(uid) ?? []), c.name]);
        }),
      );
      const out: Finding[] = [];
      for (const names of uids.values())
        for (const n of names)
          out.push(
            names.length > 1
              ? {
                  status: 'failed',
                  cluster: n,
                  message: `the same cluster as ${names.filter((x) => x !== n).join(', ')}`,
                }
              : { status: 'passed', cluster: n, message: 'a cluster of its own' },
          );
      return [...out, ...notRunUnreachable(ctx)];
    },
  },
  {
    code: 'MF104',
    title: 'Permissions for up and down',
    category: 'permissions',
    severity: 'error',
    stage: 'pre',
    description:
      'SelfSubjectAccessReview for every kind and namespace up and down touch (get, list, create, patch, delete) and pod exec into the SPIRE server.',
    hint: 'run meshfed as a user bound to cluster-admin, or grant the verbs listed (kubectl auth can-i VERB RESOURCE -n NAMESPACE)',
    async run(ctx) {
      return eachCluster(ctx, async (c) => {
        const client = clientOf(ctx, c.name);
        const needs = await accessNeeds(ctx, c.name, client);
        const checks = needs.flatMap((n) => n.verbs.map((verb) => ({ n, verb })));
        const answers = await mapLimit(checks, 8, async ({ n, verb }) => ({
          n,
          verb,
          ok: await allowed(client, n, verb),
        }));
        const denied = answers.filter((a) => !a.ok);
        if (!denied.length)
          return pass(`${answers.length} permissions granted`, { reviewed: answers.length });
        const fmt = (a: (typeof answers)[number]) =>
          `${a.verb} ${a.n.resource}${a.n.subresource ? `/${a.n.subresource}` : ''}${a.n.group ? `.${a.n.group}` : ''}${a.n.namespace ? ` in ${a.n.namespace}` : ''}`;
        return fail(
          `${denied.length} of ${answers.length} denied: ${denied.slice(0, 3).map(fmt).join(', ')}${denied.length > 3 ? ', …' : ''}`,
          { denied: denied.map(fmt) },
        );
      });
    },
  },
  {
    code: 'MF105',
    title: 'CSI support',
    category: 'kubernetes',
    severity: 'error',
    stage: 'pre',
    description:
      'The cluster serves CSIDriver (storage.k8s.io/v1), which the SPIFFE CSI driver registers with to hand the Workload API socket to pods.',
    hint: 'the SPIFFE CSI driver needs Kubernetes ≥ 1.18 with CSI enabled; on managed clusters, check that CSI drivers may be installed',
    async run(ctx) {
      return eachCluster(ctx, async (c) => {
        const client = clientOf(ctx, c.name);
        const r = await client.resourceName('storage.k8s.io/v1', 'CSIDriver');
        if (!r) return fail('storage.k8s.io/v1 CSIDriver is not served');
        const nodes = await client.list('v1', 'Node');
        return pass(`CSIDriver served; ${nodes.length} nodes`);
      });
    },
  },
  {
    code: 'MF106',
    title: 'Gateways can be exposed',
    category: 'gateways',
    severity: 'warning',
    stage: 'pre',
    description:
      'Where the fleet exposes the bundle endpoint or east-west gateway as LoadBalancer, the cluster assigns LoadBalancer addresses (seen on an existing Service); for NodePort, nodes have an address.',
    hint: 'install a load balancer controller (cloud, MetalLB), or set spec.clusters[].bundleEndpoint/eastWestGateway to {type: NodePort} or a fixed address',
    async run(ctx) {
      return eachCluster(ctx, async (c) => {
        const client = clientOf(ctx, c.name);
        const types = new Set(
          [c.bundleEndpoint, c.eastWestGateway].filter((e) => !e.address).map((e) => e.type),
        );
        if (!types.size) return pass('fixed addresses given in the fleet');
        const out = [];
        if (types.has('LoadBalancer')) {
          const lbs = (await client.list('v1', 'Service')).filter(
            (s) => (s.spec as { type?: string } | undefined)?.type === 'LoadBalancer',
          );
          const withAddress = lbs.filter(
            (s) =>
              (
                (s.status as { loadBalancer?: { ingress?: unknown[] } } | undefined)?.loadBalancer?.ingress ??
                []
              ).length,
          );
          out.push(
            withAddress.length
              ? pass(
                  `LoadBalancer addresses are assigned here (${withAddress.length} of ${lbs.length} Services have one)`,
                )
              : lbs.length
                ? fail(
                    `${lbs.length} LoadBalancer Services here, none has an address: up would wait for one and time out`,
                  )
                : warn(
                    'no LoadBalancer Service here yet, so whether addresses are assigned cannot be told before up',
                  ),
          );
        }
        if (types.has('NodePort')) {
          const nodes = await client.list('v1', 'Node');
          const addressed = nodes.filter((n) =>
            ((n.status as { addresses?: Array<{ type: string }> } | undefined)?.addresses ?? []).some(
              (a) => a.type === 'ExternalIP' || a.type === 'InternalIP',
            ),
          );
          out.push(
            addressed.length
              ? pass(`NodePort: ${addressed.length} nodes have an address`)
              : fail('NodePort: no node has an ExternalIP or InternalIP'),
          );
        }
        return out;
      });
    },
  },
  {
    code: 'MF107',
    title: 'Identities unique across the fleet',
    category: 'fleet',
    severity: 'error',
    stage: 'pre',
    description:
      'Cluster names, contexts, trust domains and networks are unique in the fleet (validated when it loads).',
    hint: 'meshfed validate -f FILE',
    async run(ctx) {
      const fields = ['name', 'context', 'trustDomain', 'network'] as const;
      const out: Finding[] = [];
      for (const f of fields) {
        const values = ctx.fleet.clusters.map((c) => c[f]);
        const dup = values.filter((v, i) => values.indexOf(v) !== i);
        out.push(
          dup.length
            ? { status: 'failed', message: `${f} repeated: ${[...new Set(dup)].join(', ')}` }
            : { status: 'passed', message: `${values.length} distinct ${f}s` },
        );
      }
      return out.some((x) => x.status === 'failed')
        ? out
        : [
            {
              status: 'passed',
              message: `${ctx.fleet.clusters.length} clusters: names, contexts, trust domains and networks distinct`,
            },
          ];
    },
  },
];
