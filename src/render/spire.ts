/**
 * Phase "spire": SPIRE server (intermediate CA under the cluster's
 * cert-manager root), agent with the SPIFFE CSI driver, least-privilege RBAC,
 * Services, and workload registration (spire-controller-manager in the current
 * profile, the k8s-workload-registrar in the seed profile).
 *
 * Seed profile: federation is static `federates_with` config, so the server
 * ConfigMap and StatefulSet need every peer's bundle endpoint address; while
 * one is unknown they are held back (reported as pending), never rendered with
 * a placeholder. Everything else, the bundle endpoint Service included, is
 * rendered at once so the engine can create it and discover its address.
 * The StatefulSet carries a hash of the rendered config, so a config change
 * rolls the server (the seed re-applied its ConfigMap and never restarted).
 */
import { createHash } from 'node:crypto';
import { peerBundleEndpoints } from './federation.js';
import { SPIRE_MANAGED_LABEL } from './identity.js';
import { objectRef } from './meta.js';
import { SPIRE_NAMESPACE as NS } from './namespaces.js';
import {
  agentConf,
  HEALTH_PORT,
  SERVER_PORT,
  SERVER_SOCKET,
  serverConf,
  TRUST_BUNDLE_CONFIGMAP,
} from './spire/server-conf.js';
import type { KubeObject, PhaseOutput, RenderContext } from './types.js';

const CONFIG_HASH = 'meshfed.dev/config-sha256';

export function spireImages(ctx: RenderContext) {
  const v = ctx.fleet.versions;
  const seed = v.registrar === 'k8s-workload-registrar';
  const spire = seed ? 'gcr.io/spiffe-io' : 'ghcr.io/spiffe';
  return {
    server: `${spire}/spire-server:${v.spire}`,
    agent: `${spire}/spire-agent:${v.spire}`,
    registrar: seed
      ? `gcr.io/spiffe-io/k8s-workload-registrar:${v.registrarVersion}`
      : `ghcr.io/spiffe/spire-controller-manager:${v.registrarVersion}`,
    csiDriver: `ghcr.io/spiffe/spiffe-csi-driver:${v.spiffeCsiDriver}`,
    nodeDriverRegistrar: seed
      ? 'registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.8.0'
      : 'registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.13.0',
  };
}

const meta = (name: string, namespace?: string) => (namespace ? { name, namespace } : { name });
const sa = (name: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ServiceAccount',
  metadata: meta(name, NS),
});
/** spire-controller-manager's webhook configuration and Service (the name its 0.x releases default to). */
const SCM_WEBHOOK = 'spire-controller-manager-webhook';
const SCM_WEBHOOK_PORT = 9443;

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
const role = (kind: 'Role' | 'ClusterRole', name: string, rules: Rule[], namespace?: string): KubeObject => ({
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind,
  metadata: meta(name, namespace),
  rules,
});
const binding = (
  kind: 'RoleBinding' | 'ClusterRoleBinding',
  name: string,
  account: string,
  namespace?: string,
): KubeObject => ({
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind,
  metadata: meta(name, namespace),
  roleRef: {
    apiGroup: 'rbac.authorization.k8s.io',
    kind: kind === 'RoleBinding' ? 'Role' : 'ClusterRole',
    name,
  },
  subjects: [{ kind: 'ServiceAccount', name: account, namespace: NS }],
});

function rbac(ctx: RenderContext): KubeObject[] {
  const scm = ctx.fleet.versions.registrar === 'spire-controller-manager';
  const serverCluster: Rule[] = [
    // k8s_psat validates agent tokens and reads the pod and node they name.
    { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
    { apiGroups: [''], resources: ['pods', 'nodes'], verbs: ['get'] },
  ];
  if (scm)
    serverCluster.push(
      {
        apiGroups: [''],
        resources: ['namespaces', 'pods', 'nodes', 'endpoints'],
        verbs: ['get', 'list', 'watch'],
      },
      {
        apiGroups: ['spire.spiffe.io'],
        resources: ['clusterspiffeids', 'clusterfederatedtrustdomains', 'clusterstaticentries'],
        verbs: ['get', 'list', 'watch', 'patch', 'update'],
      },
      {
        apiGroups: ['spire.spiffe.io'],
        resources: [
          'clusterspiffeids/status',
          'clusterfederatedtrustdomains/status',
          'clusterstaticentries/status',
        ],
        verbs: ['get', 'patch', 'update'],
      },
      // Its validating webhook: it watches the webhook configurations and puts its
      // CA into its own (by name), which it mints from SPIRE as it starts.
      {
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['validatingwebhookconfigurations'],
        verbs: ['list', 'watch'],
      },
      {
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['validatingwebhookconfigurations'],
        resourceNames: [SCM_WEBHOOK],
        verbs: ['get', 'patch'],
      },
    );
  else
    serverCluster.push(
      { apiGroups: [''], resources: ['endpoints', 'nodes', 'pods'], verbs: ['get', 'list', 'watch'] },
      {
        apiGroups: ['spiffeid.spiffe.io'],
        resources: ['spiffeids'],
        verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
      },
      {
        apiGroups: ['spiffeid.spiffe.io'],
        resources: ['spiffeids/status'],
        verbs: ['get', 'patch', 'update'],
      },
    );
  return [
    sa('spire-server'),
    sa('spire-agent'),
    role('ClusterRole', 'spire-server', serverCluster),
    binding('ClusterRoleBinding', 'spire-server', 'spire-server'),
    // The k8sbundle notifier writes one ConfigMap, by name.
    role(
      'Role',
      'spire-server-bundle',
      [
        {
          apiGroups: [''],
          resources: ['configmaps'],
          resourceNames: [TRUST_BUNDLE_CONFIGMAP],
          verbs: ['get', 'patch'],
        },
      ],
      NS,
    ),
    binding('RoleBinding', 'spire-server-bundle', 'spire-server', NS),
    // The cert-manager UpstreamAuthority creates, polls and cleans up its CertificateRequests.
    role(
      'Role',
      'spire-server-upstream-ca',
      [
        {
          apiGroups: ['cert-manager.io'],
          resources: ['certificaterequests'],
          verbs: ['create', 'get', 'list', 'delete'],
        },
      ],
      'cert-manager',
    ),
    binding('RoleBinding', 'spire-server-upstream-ca', 'spire-server', 'cert-manager'),
    ...(scm
      ? [
          role(
            'Role',
            'spire-controller-manager-leader-election',
            [
              {
                apiGroups: ['coordination.k8s.io'],
                resources: ['leases'],
                verbs: ['create', 'get', 'update'],
              },
            ],
            NS,
          ),
          binding('RoleBinding', 'spire-controller-manager-leader-election', 'spire-server', NS),
        ]
      : []),
    role('ClusterRole', 'spire-agent', [
      { apiGroups: [''], resources: ['pods', 'nodes', 'nodes/proxy'], verbs: ['get'] },
    ]),
    binding('ClusterRoleBinding', 'spire-agent', 'spire-agent'),
  ];
}

function registrarConfig(ctx: RenderContext): { name: string; file: string; text: string } {
  const { cluster, fleet } = ctx;
  if (fleet.versions.registrar === 'k8s-workload-registrar')
    return {
      name: 'k8s-workload-registrar',
      file: 'k8s-workload-registrar.conf',
      text: `trust_domain = ${JSON.stringify(cluster.trustDomain)}
server_socket_path = ${JSON.stringify(SERVER_SOCKET)}
cluster = ${JSON.stringify(cluster.name)}
mode = "crd"
pod_controller = true
identity_template = "ns/{{.Pod.Namespace}}/sa/{{.Pod.ServiceAccount}}"
identity_template_label = ${JSON.stringify(SPIRE_MANAGED_LABEL)}
disabled_namespaces = ["kube-system", "kube-public", "spire", "cert-manager"]
metrics_bind_addr = "0"
`,
    };
  return {
    name: 'spire-controller-manager',
    file: 'controller-manager-config.yaml',
    text: `apiVersion: spire.spiffe.io/v1alpha1
kind: ControllerManagerConfig
metrics:
  bindAddress: 127.0.0.1:8082
health:
  healthProbeBindAddress: 0.0.0.0:8083
leaderElection:
  leaderElect: true
  resourceName: meshfed-spire-controller-manager
  resourceNamespace: spire
clusterName: ${cluster.name}
trustDomain: ${cluster.trustDomain}
spireServerSocketPath: ${SERVER_SOCKET}
ignoreNamespaces:
  - kube-system
  - kube-public
  - spire
  - cert-manager
`,
  };
}

function configMap(name: string, data: Record<string, string>): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta(name, NS), data };
}

/**
 * Probed every second until it first answers ready (for up to a minute; then
 * the kubelet restarts it, as the liveness probe would have), after which the
 * kubelet probes readiness at once and then every 10 s. Without it, a SPIRE
 * server or agent that was not ready at its first readiness probe waited a
 * whole 10 s period more to be seen ready: `up` waited on that, once per
 * cluster, and a fleet waits on its slowest cluster.
 */
const startupProbe = (path: string, port: number) => ({
  httpGet: { path, port },
  periodSeconds: 1,
  failureThreshold: 60,
  timeoutSeconds: 3,
});

function serverStatefulSet(ctx: RenderContext, configHash: string): KubeObject {
  const img = spireImages(ctx);
  const reg = registrarConfig(ctx);
  const socketMount = { name: 'spire-server-socket', mountPath: '/tmp/spire-server/private' };
  const probe = (path: string, port: number) => ({
    httpGet: { path, port },
    periodSeconds: 10,
    timeoutSeconds: 3,
  });
  const registrar =
    reg.name === 'spire-controller-manager'
      ? {
          name: 'spire-controller-manager',
          image: img.registrar,
          args: [`--config=/run/spire/registrar/${reg.file}`],
          ports: [{ containerPort: SCM_WEBHOOK_PORT, name: 'webhook' }],
          startupProbe: startupProbe('/readyz', 8083),
          readinessProbe: probe('/readyz', 8083),
          livenessProbe: probe('/healthz', 8083),
          resources: { requests: { cpu: '20m', memory: '64Mi' } },
          volumeMounts: [
            socketMount,
            { name: 'registrar-config', mountPath: '/run/spire/registrar', readOnly: true },
          ],
        }
      : {
          name: 'k8s-workload-registrar',
          image: img.registrar,
          args: ['-config', `/run/spire/registrar/${reg.file}`],
          resources: { requests: { cpu: '20m', memory: '64Mi' } },
          volumeMounts: [
            socketMount,
            { name: 'registrar-config', mountPath: '/run/spire/registrar', readOnly: true },
          ],
        };
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: 'spire-server', namespace: NS, labels: { app: 'spire-server' } },
    spec: {
      replicas: 1,
      serviceName: 'spire-server',
      selector: { matchLabels: { app: 'spire-server' } },
      template: {
        metadata: { labels: { app: 'spire-server' }, annotations: { [CONFIG_HASH]: configHash } },
        spec: {
          serviceAccountName: 'spire-server',
          shareProcessNamespace: true,
          containers: [
            {
              name: 'spire-server',
              image: img.server,
              args: ['-config', '/run/spire/config/server.conf'],
              ports: [
                { name: 'grpc', containerPort: SERVER_PORT },
                { name: 'federation', containerPort: ctx.fleet.federation.bundleEndpointPort },
                { name: 'healthz', containerPort: HEALTH_PORT },
              ],
              startupProbe: startupProbe('/ready', HEALTH_PORT),
              readinessProbe: probe('/ready', HEALTH_PORT),
              livenessProbe: { ...probe('/live', HEALTH_PORT), failureThreshold: 3, initialDelaySeconds: 15 },
              resources: { requests: { cpu: '50m', memory: '128Mi' } },
              volumeMounts: [
                { name: 'spire-config', mountPath: '/run/spire/config', readOnly: true },
                { name: 'spire-data', mountPath: '/run/spire/data' },
                socketMount,
              ],
            },
            registrar,
          ],
          volumes: [
            { name: 'spire-config', configMap: { name: 'spire-server' } },
            { name: 'registrar-config', configMap: { name: reg.name } },
            { name: 'spire-server-socket', emptyDir: {} },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'spire-data' },
          spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
        },
      ],
    },
  };
}

function services(ctx: RenderContext): KubeObject[] {
  const be = ctx.cluster.bundleEndpoint;
  const port = ctx.fleet.federation.bundleEndpointPort;
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('spire-server', NS),
      // Agents only: ClusterIP. The seed exposed the server API as a NodePort.
      spec: {
        type: 'ClusterIP',
        selector: { app: 'spire-server' },
        ports: [{ name: 'grpc', port: SERVER_PORT, targetPort: SERVER_PORT, protocol: 'TCP' }],
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('spire-server-bundle-endpoint', NS),
      spec: {
        type: be.type,
        selector: { app: 'spire-server' },
        ports: [
          {
            name: 'tcp-federation',
            port,
            targetPort: port,
            protocol: 'TCP',
            ...(be.type === 'NodePort' && be.nodePort !== undefined ? { nodePort: be.nodePort } : {}),
          },
        ],
      },
    },
  ];
}

function agent(ctx: RenderContext): KubeObject[] {
  const img = spireImages(ctx);
  const conf = agentConf(ctx.cluster);
  return [
    configMap('spire-agent', { 'agent.conf': conf }),
    {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'spire-agent', namespace: NS, labels: { app: 'spire-agent' } },
      spec: {
        selector: { matchLabels: { app: 'spire-agent' } },
        template: {
          metadata: { labels: { app: 'spire-agent' }, annotations: { [CONFIG_HASH]: sha256(conf) } },
          spec: {
            serviceAccountName: 'spire-agent',
            hostPID: true,
            dnsPolicy: 'ClusterFirstWithHostNet',
            hostNetwork: true,
            containers: [
              {
                name: 'spire-agent',
                image: img.agent,
                args: ['-config', '/run/spire/config/agent.conf'],
                env: [{ name: 'MY_NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
                startupProbe: startupProbe('/ready', HEALTH_PORT),
                readinessProbe: { httpGet: { path: '/ready', port: HEALTH_PORT }, periodSeconds: 10 },
                livenessProbe: {
                  httpGet: { path: '/live', port: HEALTH_PORT },
                  periodSeconds: 30,
                  initialDelaySeconds: 15,
                },
                resources: { requests: { cpu: '20m', memory: '64Mi' } },
                volumeMounts: [
                  { name: 'spire-config', mountPath: '/run/spire/config', readOnly: true },
                  { name: 'spire-bundle', mountPath: '/run/spire/bundle', readOnly: true },
                  { name: 'spire-agent-socket-dir', mountPath: '/run/secrets/workload-spiffe-uds' },
                  { name: 'spire-token', mountPath: '/var/run/secrets/tokens' },
                ],
              },
              {
                name: 'spiffe-csi-driver',
                image: img.csiDriver,
                args: [
                  '-node-id',
                  '$(MY_NODE_NAME)',
                  '-workload-api-socket-dir',
                  '/spire-agent-socket',
                  '-csi-socket-path',
                  '/spiffe-csi/csi.sock',
                ],
                env: [{ name: 'MY_NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
                securityContext: { privileged: true },
                resources: { requests: { cpu: '10m', memory: '32Mi' } },
                volumeMounts: [
                  { name: 'spire-agent-socket-dir', mountPath: '/spire-agent-socket', readOnly: true },
                  { name: 'spiffe-csi-socket-dir', mountPath: '/spiffe-csi' },
                  {
                    name: 'mountpoint-dir',
                    mountPath: '/var/lib/kubelet/pods',
                    mountPropagation: 'Bidirectional',
                  },
                ],
              },
              {
                name: 'node-driver-registrar',
                image: img.nodeDriverRegistrar,
                args: [
                  '-csi-address',
                  '/spiffe-csi/csi.sock',
                  '-kubelet-registration-path',
                  '/var/lib/kubelet/plugins/csi.spiffe.io/csi.sock',
                ],
                resources: { requests: { cpu: '10m', memory: '16Mi' } },
                volumeMounts: [
                  { name: 'spiffe-csi-socket-dir', mountPath: '/spiffe-csi' },
                  { name: 'kubelet-plugin-registration-dir', mountPath: '/registration' },
                ],
              },
            ],
            volumes: [
              { name: 'spire-config', configMap: { name: 'spire-agent' } },
              { name: 'spire-bundle', configMap: { name: TRUST_BUNDLE_CONFIGMAP } },
              {
                name: 'spire-token',
                projected: {
                  sources: [
                    {
                      serviceAccountToken: {
                        path: 'spire-agent',
                        expirationSeconds: 7200,
                        audience: 'spire-server',
                      },
                    },
                  ],
                },
              },
              {
                name: 'spire-agent-socket-dir',
                hostPath: { path: '/run/spire/agent-sockets', type: 'DirectoryOrCreate' },
              },
              {
                name: 'spiffe-csi-socket-dir',
                hostPath: { path: '/var/lib/kubelet/plugins/csi.spiffe.io', type: 'DirectoryOrCreate' },
              },
              { name: 'mountpoint-dir', hostPath: { path: '/var/lib/kubelet/pods', type: 'Directory' } },
              {
                name: 'kubelet-plugin-registration-dir',
                hostPath: { path: '/var/lib/kubelet/plugins_registry', type: 'Directory' },
              },
            ],
          },
        },
      },
    },
  ];
}

/**
 * spire-controller-manager's validating webhook (current profile), as its
 * upstream manifests declare it: the configuration (whose caBundle the
 * controller fills with the CA of the certificate it mints from SPIRE for
 * the Service's DNS name) and the Service in front of its port.
 */
function scmWebhook(ctx: RenderContext): KubeObject[] {
  if (ctx.fleet.versions.registrar !== 'spire-controller-manager') return [];
  const hook = (kind: string, plural: string) => ({
    name: `v${kind}.kb.io`,
    admissionReviewVersions: ['v1'],
    clientConfig: {
      service: { name: SCM_WEBHOOK, namespace: NS, path: `/validate-spire-spiffe-io-v1alpha1-${kind}` },
    },
    failurePolicy: 'Fail',
    sideEffects: 'None',
    rules: [
      {
        apiGroups: ['spire.spiffe.io'],
        apiVersions: ['v1alpha1'],
        operations: ['CREATE', 'UPDATE'],
        resources: [plural],
      },
    ],
  });
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(SCM_WEBHOOK, NS),
      spec: {
        type: 'ClusterIP',
        selector: { app: 'spire-server' },
        ports: [{ name: 'https', port: 443, targetPort: 'webhook', protocol: 'TCP' }],
      },
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name: SCM_WEBHOOK },
      webhooks: [
        hook('clusterfederatedtrustdomain', 'clusterfederatedtrustdomains'),
        hook('clusterspiffeid', 'clusterspiffeids'),
      ],
    },
  ];
}

/** current profile: one ClusterSPIFFEID gives every labelled pod (apps and gateways) its Istio-shaped ID. */
function registration(ctx: RenderContext): KubeObject[] {
  if (ctx.fleet.versions.registrar !== 'spire-controller-manager') return [];
  return [
    {
      apiVersion: 'spire.spiffe.io/v1alpha1',
      kind: 'ClusterSPIFFEID',
      metadata: { name: 'meshfed-workloads' },
      spec: {
        spiffeIDTemplate:
          'spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}',
        podSelector: { matchLabels: { [SPIRE_MANAGED_LABEL]: 'true' } },
        federatesWith: ctx.peers.map((p) => p.trustDomain),
      },
    },
  ];
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function renderSpire(ctx: RenderContext): PhaseOutput {
  const seed = ctx.fleet.versions.registrar === 'k8s-workload-registrar';
  const reg = registrarConfig(ctx);
  const endpoints = peerBundleEndpoints(ctx);
  const missing = endpoints.filter((e) => e.address === undefined);
  const conf = seed
    ? serverConf(
        ctx.fleet,
        ctx.cluster,
        endpoints.flatMap((e) =>
          e.address ? [{ trustDomain: e.peer.trustDomain, address: e.address }] : [],
        ),
      )
    : serverConf(ctx.fleet, ctx.cluster);
  const serverObjects = [
    configMap('spire-server', { 'server.conf': conf }),
    serverStatefulSet(ctx, sha256(conf + reg.text)),
  ];
  const holdBack = seed && missing.length > 0;
  const objects: KubeObject[] = [
    {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'CSIDriver',
      metadata: { name: 'csi.spiffe.io' },
      spec: {
        attachRequired: false,
        podInfoOnMount: true,
        fsGroupPolicy: 'None',
        volumeLifecycleModes: ['Ephemeral'],
      },
    },
    ...rbac(ctx),
    // No data: the k8sbundle notifier owns it (meshfed applying `data: {}`
    // would take a share of the map once SPIRE has filled it, a write at
    // every first re-apply).
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta(TRUST_BUNDLE_CONFIGMAP, NS) },
    configMap(reg.name, { [reg.file]: reg.text }),
    ...services(ctx),
    ...scmWebhook(ctx),
    ...(holdBack ? [] : serverObjects),
    ...agent(ctx),
    ...registration(ctx),
  ];
  const pending = holdBack
    ? missing.map((m) => ({
        cluster: m.peer.name,
        what: 'bundle endpoint address',
        heldBack: serverObjects.map(objectRef),
      }))
    : [];
  return { objects, pending };
}
