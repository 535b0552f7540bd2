/**
 * `meshfed check`: the control plane after `up`. Every check reads the
 * clusters (and the SPIRE servers, through pod exec); nothing is written.
 */
import { parse as parseYaml } from 'yaml';
import { BUNDLE_ENDPOINT_SERVICE, currentAddress, EAST_WEST_SERVICE } from '../engine/discover.js';
import { fleetStatus } from '../engine/status.js';
import { federationStatus, type PairStatus } from '../federation/engine.js';
import { parseGoDuration } from '../fleet/durations.js';
import { peersOf } from '../fleet/model.js';
import { spireHas } from '../fleet/versions.js';
import { type ClusterClient, clientFromKubeconfig, KubeApiError, type KubeObject } from '../kube/client.js';
import { ROOT_ISSUER } from '../render/cert-manager.js';
import { SPIRE_MANAGED_LABEL, workloadSpiffeId } from '../render/identity.js';
import { ISTIO_NAMESPACE, SPIRE_NAMESPACE } from '../render/namespaces.js';
import { MULTICLUSTER_LABEL, remoteSecretName } from '../render/remote-secret.js';
import { issuedBy, parsePemCertificates } from '../spiffe/x509.js';
import { type CheckDef, type Finding, fail, notRun, pass, skip, warn } from './catalog.js';
import {
  bundleEndpointOf,
  type CheckContext,
  clientOf,
  eachCluster,
  federationMembers,
  notRunUnreachable,
  REACHABILITY,
  reachable,
  spireOf,
  UNREACHABLE_BLOCKING,
  unreachableAmong,
} from './context.js';
import { heldBundleHazard, refreshHintHazard, rootRenewalHazard, span } from './hazards.js';
import { REACHABILITY_CHECK } from './reachability.js';

/** Federation status of every federated direction, once per run. */
function pairStatuses(ctx: CheckContext): Promise<{ statuses: PairStatus[]; missing: Finding[] }> {
  return ctx.memo('federation-status', async () => {
    const members = await federationMembers(ctx);
    const names = new Set(members.map((m) => m.name));
    const pairs = ctx.fleet.federation.pairs.filter(([a, b]) => names.has(a) && names.has(b));
    const missing: Finding[] = ctx.fleet.clusters
      .filter((c) => ctx.clients.has(c.name) && !names.has(c.name))
      .map((c) => ({
        status: 'failed' as const,
        cluster: c.name,
        message: `no bundle endpoint address (Service ${BUNDLE_ENDPOINT_SERVICE.namespace}/${BUNDLE_ENDPOINT_SERVICE.name})`,
      }));
    const statuses = await federationStatus(members, pairs, { now: ctx.now });
    return { statuses, missing };
  });
}

/** The cluster's cert-manager root Certificate's expiry and next renewal, as its status says (once per run). */
function rootCertificateOf(
  ctx: CheckContext,
  cluster: string,
): Promise<{ notAfter?: Date; renewalTime?: Date } | undefined> {
  return ctx.memo(`root-cert:${cluster}`, async () => {
    const cert = await clientOf(ctx, cluster).get({
      apiVersion: 'cert-manager.io/v1',
      kind: 'Certificate',
      namespace: 'cert-manager',
      name: ROOT_ISSUER,
    });
    if (!cert) return undefined;
    const st = (cert.status ?? {}) as { notAfter?: string; renewalTime?: string };
    const date = (v: string | undefined) => (v && !Number.isNaN(Date.parse(v)) ? new Date(v) : undefined);
    const notAfter = date(st.notAfter);
    const renewalTime = date(st.renewalTime);
    return { ...(notAfter ? { notAfter } : {}), ...(renewalTime ? { renewalTime } : {}) };
  });
}

/**
 * When the cluster's active SPIRE CA expires: `spire-server localauthority
 * x509 show` (SPIRE ≥ 1.9; reads only). Undefined when the release has no
 * such command or it does not answer: the caller falls back on the CA TTL.
 */
function signingCaNotAfter(ctx: CheckContext, cluster: string): Promise<Date | undefined> {
  return ctx.memo(`spire-ca:${cluster}`, async () => {
    if (!spireHas(ctx.fleet.versions.spire, 'forcedRotation')) return undefined;
    try {
      const r = await spireOf(ctx, cluster).transport.run(
        ['localauthority', 'x509', 'show', '-output', 'json'],
        {
          timeoutMs: ctx.timeoutMs,
        },
      );
      if (r.code !== 0) return undefined;
      const doc = JSON.parse(r.stdout) as { active?: { expires_at?: string | number } };
      const at = Number(doc.active?.expires_at);
      return Number.isFinite(at) && at > 0 ? new Date(at * 1000) : undefined;
    } catch {
      return undefined;
    }
  });
}

function secretText(s: KubeObject | undefined, key: string): string | undefined {
  const v = (s?.data as Record<string, string> | undefined)?.[key];
  return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
}

function meshConfigOf(
  cm: KubeObject | undefined,
): { trustDomain?: string; trustDomainAliases?: string[] } | undefined {
  const text = (cm?.data as Record<string, string> | undefined)?.mesh;
  if (!text) return undefined;
  return (parseYaml(text) ?? {}) as { trustDomain?: string; trustDomainAliases?: string[] };
}

/** A request with the remote secret's token: undefined when the peer API server answers it, else why not. */
export async function tokenAccepted(kubeconfig: string, timeoutMs: number): Promise<string | undefined> {
  let client: ClusterClient;
  try {
    client = clientFromKubeconfig(kubeconfig, { timeoutMs });
  } catch (e) {
    return (e as Error).message;
  }
  try {
    await client.list('v1', 'Pod', { namespace: ISTIO_NAMESPACE });
    return undefined;
  } catch (e) {
    const m = (e as Error).message;
    return e instanceof KubeApiError && e.status === 401 ? `token rejected (401): ${m}` : m;
  }
}

export const POST_CHECKS: CheckDef<CheckContext>[] = [
  REACHABILITY_CHECK,
  {
    code: 'MF201',
    title: 'Every phase healthy',
    category: 'phases',
    severity: 'error',
    stage: 'post',
    description:
      'What meshfed applied in each phase exists and is healthy (rollouts done, certificates Ready, CRDs Established).',
    hint: 'meshfed status; then meshfed up to converge',
    async run(ctx) {
      const byContext = new Map(reachable(ctx).map((c) => [c.context, clientOf(ctx, c.name)]));
      const fleet = { ...ctx.fleet, clusters: reachable(ctx) };
      const st = await fleetStatus(fleet, byContext);
      return [
        ...st.clusters.map((c): Finding => {
          if (!c.reachable)
            return { status: 'failed', cluster: c.cluster, message: c.error ?? 'unreachable' };
          const bad = c.phases.filter((p) => p.status !== 'Healthy');
          return bad.length
            ? {
                status: 'failed',
                cluster: c.cluster,
                message: bad
                  .map((p) => `${p.phase} ${p.status}${p.pending ? ` (${p.pending})` : ''}`)
                  .join('; '),
              }
            : { status: 'passed', cluster: c.cluster, message: `${c.phases.length} phases healthy` };
        }),
        ...notRunUnreachable(ctx),
      ];
    },
  },
  {
    code: 'MF202',
    title: 'SPIRE server healthy',
    category: 'spire',
    severity: 'error',
    stage: 'post',
    description: "`spire-server healthcheck` in each cluster's SPIRE server pod succeeds.",
    hint: 'kubectl --context CONTEXT -n spire logs spire-server-0 -c spire-server; kubectl -n spire rollout restart statefulset/spire-server',
    async run(ctx) {
      return eachCluster(ctx, async (c) => {
        const why = await spireOf(ctx, c.name).healthcheck();
        return why === undefined
          ? pass('spire-server healthcheck passed')
          : fail(`spire-server healthcheck failed: ${why}`);
      });
    },
  },
  {
    code: 'MF203',
    title: 'SPIRE agent attested on every node',
    category: 'spire',
    severity: 'error',
    stage: 'post',
    description:
      'Every Ready node has an agent attested with k8s_psat (spiffe://TD/spire/agent/k8s_psat/CLUSTER/NODE-UID) in `spire-server agent list`.',
    hint: 'kubectl -n spire get ds spire-agent; kubectl -n spire logs ds/spire-agent (a psat audience or cluster name that differs from server.conf fails attestation)',
    async run(ctx) {
      return eachCluster(ctx, async (c) => {
        const client = clientOf(ctx, c.name);
        const [agents, nodes] = await Promise.all([spireOf(ctx, c.name).agents(), client.list('v1', 'Node')]);
        const prefix = `spiffe://${c.trustDomain}/spire/agent/k8s_psat/${c.name}/`;
        const attested = new Set(
          agents.filter((a) => a.spiffeId.startsWith(prefix)).map((a) => a.spiffeId.slice(prefix.length)),
        );
        const ready = nodes.filter((n) =>
          (
            (n.status as { conditions?: Array<{ type: string; status: string }> } | undefined)?.conditions ??
            []
          ).some((x) => x.type === 'Ready' && x.status === 'True'),
        );
        const without = ready.filter((n) => !attested.has(n.metadata.uid ?? ''));
        return without.length
          ? fail(
              `${without.length} of ${ready.length} Ready nodes have no attested agent: ${without
                .slice(0, 3)
                .map((n) => n.metadata.name)
                .join(', ')}${without.length > 3 ? ', …' : ''}`,
              { nodes: ready.length, agents: agents.length },
            )
          : pass(`${ready.length} nodes, each with an attested agent`, {
              nodes: ready.length,
              agents: agents.length,
            });
      });
    },
  },
  {
    code: 'MF204',
    title: 'Every meshed pod has its SPIRE entry',
    category: 'spire',
    severity: 'error',
    stage: 'post',
    description: `Each running pod labelled ${SPIRE_MANAGED_LABEL}=true has a registration entry for spiffe://TD/ns/NAMESPACE/sa/SERVICEACCOUNT that selects it (by pod uid or name).`,
    hint: 'the registrar makes entries: kubectl -n spire logs spire-server-0 -c spire-controller-manager (seed: -c k8s-workload-registrar); kubectl get clusterspiffeids',
    async run(ctx) {
      return eachCluster(ctx, async (c) => {
        const client = clientOf(ctx, c.name);
        const [pods, entries] = await Promise.all([
          client.list('v1', 'Pod', { labelSelector: `${SPIRE_MANAGED_LABEL}=true` }),
          spireOf(ctx, c.name).entries(),
        ]);
        const running = pods.filter((p) => (p.status as { phase?: string } | undefined)?.phase === 'Running');
        if (!running.length) return skip('no running meshed pods');
        const without = running.filter((p) => {
          const sa = (p.spec as { serviceAccountName?: string } | undefined)?.serviceAccountName ?? 'default';
          const id = workloadSpiffeId(c.trustDomain, p.metadata.namespace ?? 'default', sa);
          return !entries.some(
            (e) =>
              e.spiffeId === id &&
              e.selectors.some(
                (s) => s === `k8s:pod-uid:${p.metadata.uid}` || s === `k8s:pod-name:${p.metadata.name}`,
              ),
          );
        });
        return without.length
          ? fail(
              `${without.length} of ${running.length} meshed pods have no entry: ${without
                .slice(0, 3)
                .map((p) => `${p.metadata.namespace}/${p.metadata.name}`)
                .join(', ')}${without.length > 3 ? ', …' : ''}`,
            )
          : pass(`${running.length} meshed pods, each with its entry`, {
              pods: running.length,
              entries: entries.length,
            });
      });
    },
  },
  {
    code: 'MF205',
    title: 'Federated bundles current',
    category: 'federation',
    severity: 'error',
    stage: 'post',
    description:
      "Each cluster holds exactly the bundle each federated peer's endpoint serves now (compared key by key, the peer's endpoint authenticated as spiffe://TD/spire/server).",
    hint: 'meshfed federation status shows each direction; meshfed federation sync refreshes every holder now; meshfed federation repair (or meshfed up) bootstraps again the bundles that cannot heal themselves (docs/federation.md)',
    async run(ctx) {
      const { statuses, missing } = await pairStatuses(ctx);
      const out: Finding[] = [...missing, ...notRunUnreachable(ctx)];
      for (const s of statuses) {
        const data = { holder: s.holder, peer: s.peer, state: s.state };
        if (s.state === 'current')
          out.push({
            status: 'passed',
            cluster: s.holder,
            message: `holds ${s.peer}'s current bundle`,
            data,
          });
        else if (s.state === 'peer-unreachable')
          out.push({
            status: 'failed',
            cluster: s.peer,
            message:
              `its bundle endpoint or server does not answer ${s.holder}'s check: ${s.detail ?? ''}`.trim(),
            data,
          });
        else
          out.push({
            status: 'failed',
            cluster: s.holder,
            message: `${s.state} bundle of ${s.peer}${s.detail ? `: ${s.detail}` : ''}`,
            data,
          });
      }
      return out;
    },
  },
  {
    code: 'MF206',
    title: 'Federated bundles not near expiry',
    category: 'federation',
    severity: 'warning',
    stage: 'post',
    description:
      'The newest authority each cluster holds for a peer is valid for more than a sixth of the CA TTL (SPIRE activates the next authority at five sixths; a refreshing holder has it by then).',
    hint: 'meshfed federation sync (every holder refreshes now), then meshfed federation status; if it stays, check the relationship (MF207)',
    async run(ctx) {
      const { statuses } = await pairStatuses(ctx);
      const ttl = parseGoDuration(ctx.fleet.ca.spire.caTTL) ?? 86_400_000;
      const out: Finding[] = [];
      for (const s of statuses) {
        if (!s.expiresAt) continue;
        const left = s.expiresAt.getTime() - ctx.now.getTime();
        const hours = (left / 3_600_000).toFixed(1);
        out.push(
          left > ttl / 6
            ? {
                status: 'passed',
                cluster: s.holder,
                message: `${s.peer}'s bundle valid ${hours} h more`,
                data: { peer: s.peer, hoursLeft: Number(hours) },
              }
            : {
                status: 'failed',
                cluster: s.holder,
                message: `${s.peer}'s bundle expires in ${hours} h`,
                data: { peer: s.peer, hoursLeft: Number(hours) },
              },
        );
      }
      out.push(...notRunUnreachable(ctx));
      return out.length ? out : [{ status: 'skipped', message: 'no held bundle could be read (MF205)' }];
    },
  },
  {
    code: 'MF207',
    title: 'Federation relationships refresh',
    category: 'federation',
    severity: 'error',
    stage: 'post',
    description:
      "Each cluster's SPIRE server refreshes every peer's bundle from the peer's current bundle endpoint: a relationship with the discovered URL (spire-controller-manager) or `federates_with` in server.conf (seed).",
    hint: 'kubectl get clusterfederatedtrustdomains -o wide; meshfed up (it rewrites the relationships with the discovered addresses)',
    async run(ctx) {
      return eachCluster(ctx, async (c) => {
        const peers = peersOf(ctx.fleet, c.name);
        if (!peers.length) return skip('no federated peers');
        // An unreachable peer's bundle endpoint Service cannot be read: its URL is not compared.
        const unknown = unreachableAmong(
          ctx,
          peers.map((p) => p.name),
        );
        const want = await Promise.all(
          peers.map(async (p) => {
            const be = await bundleEndpointOf(ctx, p.name).catch(() => undefined);
            return { td: p.trustDomain, url: be ? `https://${be}` : undefined };
          }),
        );
        let have: Array<{ td: string; url: string }>;
        if (ctx.fleet.versions.registrar === 'spire-controller-manager') {
          have = (await spireOf(ctx, c.name).relationships()).map((r) => ({
            td: r.trustDomain,
            url: r.bundleEndpointUrl,
          }));
        } else {
          const cm = await clientOf(ctx, c.name).get({
            apiVersion: 'v1',
            kind: 'ConfigMap',
            namespace: SPIRE_NAMESPACE,
            name: 'spire-server',
          });
          const conf = (cm?.data as Record<string, string> | undefined)?.['server.conf'] ?? '';
          have = [
            ...conf.matchAll(/federates_with\s+"([^"]+)"\s*\{[^}]*?bundle_endpoint_url\s*=\s*"([^"]+)"/g),
          ].map((m) => ({
            td: m[1]!,
            url: m[2]!,
          }));
        }
        const wrong = want.filter((w) => !have.some((h) => h.td === w.td && (!w.url || h.url === w.url)));
        if (wrong.length)
          return fail(
            wrong
              .map((w) => {
                const h = have.find((x) => x.td === w.td);
                return h
                  ? `${w.td} refreshes from ${h.url}, its endpoint is ${w.url}`
                  : `no relationship with ${w.td}`;
              })
              .join('; '),
          );
        if (unknown.length)
          return notRun(
            `not run: the bundle endpoint of ${unknown.join(', ')}: ${UNREACHABLE_BLOCKING} (${REACHABILITY})`,
            REACHABILITY,
          );
        return pass(
          `refreshes ${want.map((w) => w.td).join(', ')} from ${want.length === 1 ? 'its endpoint' : 'their endpoints'}`,
        );
      });
    },
  },
  {
    code: 'MF208',
    title: 'Istio trust domain and aliases match the federation',
    category: 'istio',
    severity: 'error',
    stage: 'post',
    description:
      "Istio's mesh config (ConfigMap istio-system/istio) names the cluster's trust domain and, as trustDomainAliases, exactly the trust domains it federates with.",
    hint: 'meshfed up (istio phase); a missing alias makes istiod refuse the peer identities in authorization policies',
    async run(ctx) {
      return eachCluster(ctx, async (c) => {
        const cm = await clientOf(ctx, c.name).get({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          namespace: ISTIO_NAMESPACE,
          name: 'istio',
        });
        const mesh = meshConfigOf(cm);
        if (!mesh) return fail('no mesh config (ConfigMap istio-system/istio, key mesh)');
        const want = peersOf(ctx.fleet, c.name).map((p) => p.trustDomain);
        const aliases = mesh.trustDomainAliases ?? [];
        const problems: string[] = [];
        if (mesh.trustDomain !== c.trustDomain)
          problems.push(`trustDomain is ${mesh.trustDomain ?? 'unset'}, not ${c.trustDomain}`);
        const missing = want.filter((w) => !aliases.includes(w));
        const extra = aliases.filter((a) => !want.includes(a));
        if (missing.length) problems.push(`alias missing for ${missing.join(', ')}`);
        if (extra.length) problems.push(`alias for ${extra.join(', ')}, which it does not federate with`);
        return problems.length
          ? fail(problems.join('; '))
          : pass(`trust domain ${c.trustDomain}, aliases ${want.join(', ') || 'none'}`);
      });
    },
  },
  {
    code: 'MF209',
    title: 'Remote secrets present, tokens accepted',
    category: 'remote-secrets',
    severity: 'error',
    stage: 'post',
    description:
      "Each cluster holds a remote secret (label istio/multiCluster=true) for every federated peer, and the peer's API server accepts its token (a list of pods in istio-system).",
    hint: "meshfed up (remote-secrets phase) writes them again; a rejected token means the peer's reader token Secret was deleted or rotated",
    async run(ctx) {
      return eachCluster(ctx, async (c) => {
        const client = clientOf(ctx, c.name);
        const peers = peersOf(ctx.fleet, c.name);
        if (!peers.length) return skip('no federated peers');
        const problems: string[] = [];
        // A peer that cannot be reached cannot say whether it accepts the token: not asked, not blamed.
        const cannotAsk = unreachableAmong(
          ctx,
          peers.map((p) => p.name),
        );
        await Promise.all(
          peers.map(async (p) => {
            const s = await client.get({
              apiVersion: 'v1',
              kind: 'Secret',
              namespace: ISTIO_NAMESPACE,
              name: remoteSecretName(p.name),
            });
            if (!s) return void problems.push(`no remote secret for ${p.name}`);
            if (s.metadata.labels?.[MULTICLUSTER_LABEL] !== 'true')
              return void problems.push(
                `${remoteSecretName(p.name)} lacks the label ${MULTICLUSTER_LABEL}=true (istiod ignores it)`,
              );
            const kc = secretText(s, p.name);
            if (!kc)
              return void problems.push(`${remoteSecretName(p.name)} has no kubeconfig under key ${p.name}`);
            if (cannotAsk.includes(p.name)) return;
            const why = await tokenAccepted(kc, ctx.timeoutMs);
            if (why) problems.push(`${p.name}'s API server refuses ${remoteSecretName(p.name)}: ${why}`);
          }),
        );
        if (problems.length) return fail(problems.sort().join('; '));
        if (cannotAsk.length)
          return notRun(
            `not run: whether ${cannotAsk.join(', ')} accept${cannotAsk.length === 1 ? 's' : ''} the token: ${UNREACHABLE_BLOCKING} (${REACHABILITY})`,
            REACHABILITY,
          );
        return pass(`remote secrets of ${peers.map((p) => p.name).join(', ')}; tokens accepted`);
      });
    },
  },
  {
    code: 'MF210',
    title: 'Gateway and bundle endpoint addresses set',
    category: 'gateways',
    severity: 'error',
    stage: 'post',
    description:
      'The east-west gateway and the SPIRE bundle endpoint Services have the address peers use (LoadBalancer ingress, or node address and node port).',
    hint: 'kubectl -n istio-system get svc istio-eastwestgateway; kubectl -n spire get svc spire-server-bundle-endpoint (no EXTERNAL-IP: no load balancer; use NodePort or a fixed address)',
    async run(ctx) {
      return eachCluster(ctx, async (c) => {
        const client = clientOf(ctx, c.name);
        // A Service that cannot be read (403, no answer) is said as such, not as "no address".
        const settle = (p: Promise<string | undefined>) =>
          p.then(
            (address) => ({ address, error: undefined }),
            (e: unknown) => ({ address: undefined, error: (e as Error).message }),
          );
        const [be, ew] = await Promise.all([
          settle(bundleEndpointOf(ctx, c.name)),
          settle(currentAddress(client, EAST_WEST_SERVICE)),
        ]);
        const unread = [
          be.error && `cannot read the bundle endpoint's Service: ${be.error}`,
          ew.error && `cannot read the east-west gateway's Service: ${ew.error}`,
        ].filter(Boolean);
        const missing = [
          !be.address && !be.error && 'bundle endpoint',
          !ew.address && !ew.error && 'east-west gateway',
        ].filter(Boolean);
        const problems = [
          ...unread,
          ...(missing.length ? [`no address for the ${missing.join(' and ')}`] : []),
        ];
        return problems.length
          ? fail(problems.join('; '))
          : pass(`bundle endpoint ${be.address}, east-west ${ew.address}`, {
              bundleEndpoint: be.address,
              eastWestGateway: ew.address,
            });
      });
    },
  },
  {
    code: 'MF211',
    title: 'Istio CA chain valid',
    category: 'istio',
    severity: 'error',
    stage: 'post',
    description:
      "istiod's plug-in CA (Secret istio-system/cacerts, from cert-manager) is a CA certificate signed by the cluster's cert-manager root (Secret cert-manager/selfsigned-ca), in its validity, and renewed before its renewBefore.",
    hint: 'kubectl -n istio-system describe certificate cacerts; cmctl renew cacerts -n istio-system',
    async run(ctx) {
      const renewMs = parseGoDuration(ctx.fleet.ca.istio.renewBefore) ?? 0;
      return eachCluster(ctx, async (c) => {
        const client = clientOf(ctx, c.name);
        const [ca, root] = await Promise.all([
          client.get({ apiVersion: 'v1', kind: 'Secret', namespace: ISTIO_NAMESPACE, name: 'cacerts' }),
          client.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'cert-manager', name: ROOT_ISSUER }),
        ]);
        const caPem = secretText(ca, 'tls.crt') ?? secretText(ca, 'ca-cert.pem');
        const rootPem =
          secretText(root, 'tls.crt') ?? secretText(ca, 'ca.crt') ?? secretText(ca, 'root-cert.pem');
        if (!caPem) return fail('Secret istio-system/cacerts is missing or has no tls.crt');
        if (!rootPem) return fail(`Secret cert-manager/${ROOT_ISSUER} is missing or has no tls.crt`);
        const [cert] = parsePemCertificates(caPem);
        const [rootCert] = parsePemCertificates(rootPem);
        if (!cert || !rootCert) return fail('no certificate in cacerts or the root');
        const problems: string[] = [];
        if (!cert.isCA) problems.push('the Istio CA certificate is not a CA (basicConstraints)');
        if (!issuedBy(cert, rootCert))
          problems.push(`not signed by the cert-manager root (${rootCert.subject})`);
        if (!(rootCert.isCA && rootCert.selfIssued)) problems.push('the root is not a self-signed CA');
        const now = ctx.now.getTime();
        if (cert.notBefore.getTime() > now || cert.notAfter.getTime() < now)
          problems.push(`outside its validity (until ${cert.notAfter.toISOString()})`);
        if (problems.length) return fail(problems.join('; '));
        const left = cert.notAfter.getTime() - now;
        if (left < renewMs)
          return warn(
            `expires ${cert.notAfter.toISOString()}, inside its renewBefore (${ctx.fleet.ca.istio.renewBefore}) and not renewed`,
          );
        return pass(
          `${cert.subject} ← ${rootCert.subject}, valid until ${cert.notAfter.toISOString().slice(0, 10)}`,
        );
      });
    },
  },
  {
    code: 'MF212',
    title: 'Certificate lifetimes as configured, renewals on schedule',
    category: 'rotation',
    severity: 'error',
    stage: 'post',
    description:
      "cert-manager's root and Istio CA Certificates carry the fleet's duration and renewBefore, are Ready and have their next renewal ahead; the SPIRE server's config has the fleet's ca_ttl and SVID TTL.",
    hint: 'kubectl get certificates -A -o wide; meshfed up puts the lifetimes back; cmctl renew NAME -n NAMESPACE forces a renewal',
    async run(ctx) {
      return eachCluster(ctx, async (c) => {
        const client = clientOf(ctx, c.name);
        const problems = [
          ...(await certificateProblems(ctx, client)),
          ...(await spireTtlProblems(ctx, client)),
        ];
        const f = ctx.fleet.ca;
        return problems.length
          ? fail(problems.join('; '))
          : pass(
              `root ${f.root.duration}/${f.root.renewBefore}, Istio CA ${f.istio.duration}/${f.istio.renewBefore}, SPIRE CA ${f.spire.caTTL}, SVID ${f.spire.svidTTL}`,
            );
      });
    },
  },
  {
    code: 'MF213',
    title: "Refresh hint shorter than the peer CA's remaining life",
    category: 'rotation',
    severity: 'warning',
    stage: 'post',
    description:
      "For each holder ← peer, the refresh hint the peer's bundle endpoint serves is shorter than the remaining life of the peer's active SPIRE CA (`localauthority x509 show`; where SPIRE cannot say, a sixth of the CA TTL, the least an active CA has) and of its cert-manager root; otherwise a rotation can land before the holder refreshes (SPIRE 1.5 serves a tenth of the root's lifetime: 90 days for a 21600h root).",
    hint: 'set spec.federation.refreshHint well under the SPIRE CA TTL (default 5m; SPIRE ≥ 1.8) and run meshfed up; on SPIRE 1.5, whose hint follows the root lifetime, keep meshfed federation watch running (holders refresh as soon as a served bundle changes) or run meshfed federation sync after every rotation',
    async run(ctx) {
      const { statuses } = await pairStatuses(ctx);
      const caTtlMs = parseGoDuration(ctx.fleet.ca.spire.caTTL) ?? 86_400_000;
      const out: Finding[] = [];
      for (const s of statuses) {
        if (s.refreshHintSeconds === undefined) continue;
        const [ca, root] = await Promise.all([
          signingCaNotAfter(ctx, s.peer),
          rootCertificateOf(ctx, s.peer).catch(() => undefined),
        ]);
        const h = refreshHintHazard({
          now: ctx.now,
          refreshHintSeconds: s.refreshHintSeconds,
          caTtlMs,
          ...(ca ? { signingCaNotAfter: ca } : {}),
          ...(root?.notAfter ? { rootNotAfter: root.notAfter } : {}),
        });
        const life = `${s.peer}'s ${h.limitOf}${h.limitOf === 'SPIRE CA' && !h.caLifeKnown ? ` (its expiry could not be read: taken as a sixth of ca_ttl ${ctx.fleet.ca.spire.caTTL}, the least an active CA has)` : ''}`;
        const data = {
          peer: s.peer,
          refreshHintSeconds: s.refreshHintSeconds,
          limitSeconds: Math.round(h.limitMs / 1000),
          limitOf: h.limitOf,
          caLifeKnown: h.caLifeKnown,
        };
        out.push(
          h.hazard
            ? {
                status: 'failed',
                cluster: s.holder,
                message: `${s.peer}'s refresh hint ${span(h.hintMs)} (${s.refreshHintSeconds} s) is not shorter than the ${span(h.limitMs)} left to ${life}: a rotation can land before ${s.holder} refreshes`,
                data,
              }
            : {
                status: 'passed',
                cluster: s.holder,
                message: `${s.peer}'s refresh hint ${span(h.hintMs)} < ${span(h.limitMs)} left to ${life}`,
                data,
              },
        );
      }
      out.push(...notRunUnreachable(ctx));
      return out.length ? out : [{ status: 'skipped', message: 'no refresh hint could be read (MF205)' }];
    },
  },
  {
    code: 'MF214',
    title: 'Held peer bundles outlive the next refresh',
    category: 'rotation',
    severity: 'error',
    stage: 'post',
    description:
      "The bundle each holder holds for a peer stays valid until the holder's next refresh (the last refresh plus the peer's refresh hint while ahead, else now plus the hint): failed when every held authority expires first (the holder then trusts nothing of the peer and cannot authenticate its endpoint to refresh), a warning when only the earliest does.",
    hint: "meshfed federation sync (every holder refreshes now); a bundle that no longer authenticates the peer's endpoint: meshfed federation repair; keep meshfed federation watch running, or shorten spec.federation.refreshHint",
    async run(ctx) {
      const { statuses } = await pairStatuses(ctx);
      const out: Finding[] = [];
      for (const s of statuses) {
        if (!s.expiresAt || !s.earliestExpiresAt || s.refreshHintSeconds === undefined) continue;
        const h = heldBundleHazard({
          now: ctx.now,
          refreshHintSeconds: s.refreshHintSeconds,
          earliestExpiresAt: s.earliestExpiresAt,
          expiresAt: s.expiresAt,
          ...(s.lastRefreshed ? { lastRefreshed: s.lastRefreshed } : {}),
        });
        const next = `the next refresh (${h.next.toISOString()}, in ${span(h.next.getTime() - ctx.now.getTime())})`;
        const data = {
          peer: s.peer,
          earliestExpiresAt: s.earliestExpiresAt.toISOString(),
          expiresAt: s.expiresAt.toISOString(),
          nextRefresh: h.next.toISOString(),
        };
        out.push(
          h.hazard === 'all'
            ? {
                status: 'failed',
                cluster: s.holder,
                message: `every authority of ${s.peer}'s held bundle expires by ${s.expiresAt.toISOString()}, before ${next}`,
                data,
              }
            : h.hazard === 'earliest'
              ? {
                  status: 'warning',
                  cluster: s.holder,
                  message: `an authority of ${s.peer}'s held bundle expires ${s.earliestExpiresAt.toISOString()}, before ${next}`,
                  data,
                }
              : {
                  status: 'passed',
                  cluster: s.holder,
                  message: `${s.peer}'s held bundle valid ${span(s.earliestExpiresAt.getTime() - ctx.now.getTime())} more, past ${next.replace(/ \(.*\)$/, '')} in ${span(h.next.getTime() - ctx.now.getTime())}`,
                  data,
                },
        );
      }
      out.push(...notRunUnreachable(ctx));
      return out.length ? out : [{ status: 'skipped', message: 'no held bundle could be read (MF205)' }];
    },
  },
  {
    code: 'MF215',
    title: 'Root renewal not near',
    category: 'rotation',
    severity: 'warning',
    stage: 'post',
    description:
      "The cert-manager root Certificate's next renewal (status.renewalTime) is further off than the refresh hint the cluster's bundle endpoint serves plus 7 days: the renewal (rotationPolicy Always) brings a new key, which every federated peer must hold before workloads present SVIDs chained to it.",
    hint: 'rotate the root at a time you choose, before the renewal: meshfed rotate root --cluster NAME (every peer and every proxy trusts the new root before anything is issued under it; docs/federation.md#rotation); else keep meshfed federation watch running (holders fetch the new root at once) and run meshfed federation status after the renewal; a longer spec.ca.root.duration puts renewals further apart',
    async run(ctx) {
      const { statuses } = await pairStatuses(ctx);
      const fleetHint = Math.round((parseGoDuration(ctx.fleet.federation.refreshHint) ?? 300_000) / 1000);
      return eachCluster(ctx, async (c) => {
        const root = await rootCertificateOf(ctx, c.name);
        if (!root) return fail(`Certificate cert-manager/${ROOT_ISSUER} missing`);
        if (!root.renewalTime) return skip(`${ROOT_ISSUER} has no renewal time (MF212)`);
        const served = statuses
          .filter((s) => s.peer === c.name && s.refreshHintSeconds !== undefined)
          .map((s) => s.refreshHintSeconds!);
        const hint = served.length ? Math.max(...served) : fleetHint;
        const h = rootRenewalHazard({
          now: ctx.now,
          renewalTime: root.renewalTime,
          refreshHintSeconds: hint,
        });
        const data = {
          renewalTime: root.renewalTime.toISOString(),
          refreshHintSeconds: hint,
          thresholdSeconds: Math.round(h.thresholdMs / 1000),
        };
        const at = `${root.renewalTime.toISOString()} (in ${span(h.leftMs)})`;
        return h.near
          ? warn(
              `the root renews ${at}, within its refresh hint ${span(hint * 1000)} + 7d: peers may meet the new key before its bundle`,
              data,
            )
          : pass(`the root renews ${at}, beyond its refresh hint ${span(hint * 1000)} + 7d`, data);
      });
    },
  },
];

/** The fleet's Certificates as issued: durations as configured, Ready, renewal scheduled ahead. */
export async function certificateProblems(ctx: CheckContext, client: ClusterClient): Promise<string[]> {
  const want: Array<{ ns: string; name: string; duration: string; renewBefore: string }> = [
    { ns: 'cert-manager', name: ROOT_ISSUER, ...ctx.fleet.ca.root },
    { ns: ISTIO_NAMESPACE, name: 'cacerts', ...ctx.fleet.ca.istio },
  ];
  const out: string[] = [];
  for (const w of want) {
    const cert = await client.get({
      apiVersion: 'cert-manager.io/v1',
      kind: 'Certificate',
      namespace: w.ns,
      name: w.name,
    });
    if (!cert) {
      out.push(`Certificate ${w.ns}/${w.name} missing`);
      continue;
    }
    const spec = cert.spec as { duration?: string; renewBefore?: string };
    const same = (a: string | undefined, b: string) => parseGoDuration(a ?? '') === parseGoDuration(b);
    if (!same(spec.duration, w.duration) || !same(spec.renewBefore, w.renewBefore))
      out.push(
        `${w.name}: duration ${spec.duration}/renewBefore ${spec.renewBefore}, the fleet says ${w.duration}/${w.renewBefore}`,
      );
    const st = (cert.status ?? {}) as {
      conditions?: Array<{ type: string; status: string }>;
      renewalTime?: string;
      notAfter?: string;
    };
    if (!st.conditions?.some((x) => x.type === 'Ready' && x.status === 'True'))
      out.push(`${w.name} is not Ready`);
    else if (!st.renewalTime || Date.parse(st.renewalTime) < ctx.now.getTime() - 60_000)
      out.push(`${w.name}: renewal time ${st.renewalTime ?? 'unset'} has passed and it was not renewed`);
  }
  return out;
}

/** The SPIRE server's CA and SVID lifetimes, as its ConfigMap sets them. */
export async function spireTtlProblems(ctx: CheckContext, client: ClusterClient): Promise<string[]> {
  const cm: KubeObject | undefined = await client.get({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    namespace: SPIRE_NAMESPACE,
    name: 'spire-server',
  });
  const conf = (cm?.data as Record<string, string> | undefined)?.['server.conf'];
  if (!conf) return ['ConfigMap spire/spire-server has no server.conf'];
  const val = (k: string) => new RegExp(`^\\s*${k}\\s*=\\s*"([^"]+)"`, 'm').exec(conf)?.[1];
  const out: string[] = [];
  const caTtl = val('ca_ttl');
  const svid = val('default_x509_svid_ttl') ?? val('default_svid_ttl');
  if (parseGoDuration(caTtl ?? '') !== parseGoDuration(ctx.fleet.ca.spire.caTTL))
    out.push(`server.conf ca_ttl is ${caTtl ?? 'unset'}, the fleet says ${ctx.fleet.ca.spire.caTTL}`);
  if (parseGoDuration(svid ?? '') !== parseGoDuration(ctx.fleet.ca.spire.svidTTL))
    out.push(`server.conf SVID TTL is ${svid ?? 'unset'}, the fleet says ${ctx.fleet.ca.spire.svidTTL}`);
  return out;
}
