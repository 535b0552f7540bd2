/**
 * Phase "istio": the IstioOperator each cluster's istioctl generates Istio
 * from (multi-primary, multi-network, SPIRE identities), and what is applied
 * after it: STRICT mTLS and the cross-network Gateway.
 *
 * Trust across domains: meshConfig.trustDomainAliases lists exactly the
 * trust domains this cluster federates with, so istiod accepts peers' SPIFFE
 * IDs; the proxies get the federated bundles from SPIRE's SDS (ROOTCA).
 * Since Istio 1.27 the proxy is a native sidecar (an init container with
 * restartPolicy Always), so the `spire` template patches initContainers
 * there; before, it patches containers. istiod is told which
 * (ENABLE_NATIVE_SIDECARS): its default, "auto", makes the proxy a plain
 * container on nodes whose kubelet is older than 1.33, where the template's
 * init container named istio-proxy made every injected pod invalid (seen in
 * the lab, whose kwok nodes report no kubelet version).
 */
import { compareVersions } from '../fleet/versions.js';
import { CSI_DRIVER, peerTrustDomains, WORKLOAD_SOCKET_DIR, workloadIdentityMeta } from './identity.js';
import { ISTIO_NAMESPACE } from './namespaces.js';
import type { KubeObject, PhaseOutput, RenderContext } from './types.js';

export function nativeSidecars(istioVersion: string): boolean {
  return compareVersions(istioVersion, '1.27.0') >= 0;
}

/**
 * DNS proxying, so that names of services in other clusters resolve. Istio
 * 1.25 deprecated ISTIO_META_DNS_AUTO_ALLOCATE (istioctl warns of it) for the
 * controller-based address allocation it turned on by default
 * (PILOT_ENABLE_IP_AUTOALLOCATE); before, the proxy allocates.
 */
export function dnsProxyMetadata(istioVersion: string): Record<string, string> {
  return compareVersions(istioVersion, '1.25.0') >= 0
    ? { ISTIO_META_DNS_CAPTURE: 'true' }
    : { ISTIO_META_DNS_CAPTURE: 'true', ISTIO_META_DNS_AUTO_ALLOCATE: 'true' };
}

export function spireTemplate(istioVersion: string): string {
  const list = nativeSidecars(istioVersion) ? 'initContainers' : 'containers';
  return `spec:
  ${list}:
  - name: istio-proxy
    volumeMounts:
    - name: workload-socket
      mountPath: ${WORKLOAD_SOCKET_DIR}
      readOnly: true
  volumes:
  - name: workload-socket
    csi:
      driver: "${CSI_DRIVER}"
      readOnly: true
`;
}

function gateway(
  ctx: RenderContext,
  name: string,
  labels: Record<string, string>,
  extra: Record<string, unknown>,
) {
  const identity = workloadIdentityMeta(ctx, { injectTemplates: false });
  return {
    name,
    enabled: true,
    label: { ...labels, ...identity.labels },
    k8s: {
      podAnnotations: identity.annotations,
      overlays: [
        {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          name,
          patches: [
            {
              path: 'spec.template.spec.volumes.[name:workload-socket]',
              value: { name: 'workload-socket', csi: { driver: CSI_DRIVER, readOnly: true } },
            },
            {
              path: 'spec.template.spec.containers.[name:istio-proxy].volumeMounts.[name:workload-socket]',
              value: { name: 'workload-socket', mountPath: WORKLOAD_SOCKET_DIR, readOnly: true },
            },
          ],
        },
      ],
      ...extra,
    },
  };
}

export function istioOperator(ctx: RenderContext): KubeObject {
  const { fleet, cluster } = ctx;
  const ew = cluster.eastWestGateway;
  return {
    apiVersion: 'install.istio.io/v1alpha1',
    kind: 'IstioOperator',
    metadata: { name: `meshfed-${cluster.name}`, namespace: ISTIO_NAMESPACE },
    spec: {
      profile: 'default',
      tag: fleet.versions.istio,
      meshConfig: {
        trustDomain: cluster.trustDomain,
        trustDomainAliases: peerTrustDomains(ctx),
        defaultConfig: {
          proxyMetadata: dnsProxyMetadata(fleet.versions.istio),
        },
        // Istio's default profile names Prometheus; none replaces that list with an empty one.
        ...(fleet.telemetry.metrics === 'none' ? { defaultProviders: { metrics: [] } } : {}),
      },
      values: {
        global: {
          meshID: fleet.meshID,
          multiCluster: { clusterName: cluster.name },
          network: cluster.network,
        },
        sidecarInjectorWebhook: { templates: { spire: spireTemplate(fleet.versions.istio) } },
      },
      components: {
        pilot: {
          k8s: {
            env: [
              { name: 'AUTO_RELOAD_PLUGIN_CERTS', value: 'true' },
              // The spire template patches the proxy where it is: said, not left to
              // istiod's "auto", which asks each node's kubelet version (below 1.33:
              // a plain container, and the template's init container would be a second one).
              { name: 'ENABLE_NATIVE_SIDECARS', value: String(nativeSidecars(fleet.versions.istio)) },
            ],
          },
        },
        ingressGateways: [
          gateway(ctx, 'istio-ingressgateway', { istio: 'ingressgateway', app: 'istio-ingressgateway' }, {}),
          gateway(
            ctx,
            'istio-eastwestgateway',
            {
              istio: 'eastwestgateway',
              app: 'istio-eastwestgateway',
              'topology.istio.io/network': cluster.network,
            },
            {
              env: [
                { name: 'ISTIO_META_ROUTER_MODE', value: 'sni-dnat' },
                { name: 'ISTIO_META_REQUESTED_NETWORK_VIEW', value: cluster.network },
              ],
              service: {
                type: ew.type,
                ports: [
                  { name: 'status-port', port: 15021, targetPort: 15021 },
                  {
                    name: 'tls',
                    port: 15443,
                    targetPort: 15443,
                    ...(ew.type === 'NodePort' && ew.nodePort ? { nodePort: ew.nodePort } : {}),
                  },
                  { name: 'tls-istiod', port: 15012, targetPort: 15012 },
                  { name: 'tls-webhook', port: 15017, targetPort: 15017 },
                ],
              },
            },
          ),
        ],
      },
    },
  };
}

export function renderIstio(ctx: RenderContext): PhaseOutput {
  const objects: KubeObject[] = [
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'PeerAuthentication',
      metadata: { name: 'default', namespace: ISTIO_NAMESPACE },
      spec: { mtls: { mode: 'STRICT' } },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'cross-network-gateway', namespace: ISTIO_NAMESPACE },
      spec: {
        selector: { istio: 'eastwestgateway' },
        servers: [
          {
            port: { number: 15443, name: 'tls', protocol: 'TLS' },
            tls: { mode: 'AUTO_PASSTHROUGH' },
            hosts: ['*.local'],
          },
        ],
      },
    },
  ];
  return { generatorInputs: [istioOperator(ctx)], objects };
}
