/**
 * The commented fleet file `meshfed init` writes. It spells out every default
 * so that a newcomer sees what can be changed; it always validates.
 */
import { DEFAULT_CA, DEFAULT_MESH_ID, SEED_CLUSTERS } from './resolve.js';

/** `meshfed init` writes the schema beside the fleet file under this name. */
export const SCHEMA_FILE = 'fleet.schema.json';
export const SCHEMA_HINT = `# yaml-language-server: $schema=${SCHEMA_FILE}`;

export function fleetTemplate(clusterCount = 2): string {
  const clusters = Array.from({ length: clusterCount }, (_, i) => {
    const seed = SEED_CLUSTERS[i];
    const name = seed?.name ?? `cluster-${i + 1}`;
    return [
      `    - name: ${name}              # Istio clusterName and SPIRE k8s_psat cluster name`,
      `      context: ${name}           # kubeconfig context used to reach it`,
      `      trustDomain: ${seed?.trustDomain ?? `${name}.${DEFAULT_MESH_ID}`}       # SPIFFE trust domain of this cluster's SPIRE server`,
      `      network: ${seed?.network ?? `${name}-network`}       # Istio network (east-west gateway per network)`,
      '      bundleEndpoint:            # how peers reach this cluster’s SPIRE bundle endpoint',
      '        type: LoadBalancer       # or NodePort (with optional nodePort: 30000-32767)',
      '      eastWestGateway:',
      '        type: LoadBalancer',
    ].join('\n');
  });
  return `${SCHEMA_HINT}
# meshfed fleet file: \`meshfed validate\` checks it, \`meshfed render\` renders it.
apiVersion: meshfed.dev/v1alpha1
kind: Fleet
metadata:
  name: ${DEFAULT_MESH_ID}
spec:
  meshID: ${DEFAULT_MESH_ID}               # Istio mesh ID shared by every cluster
  profile: current                 # current (newest upstream) or seed (K8s 1.29, Istio 1.22, SPIRE 1.5, cert-manager 1.15)
  clusters:
${clusters.join('\n')}
  federation:
    mode: full-mesh                # every cluster trusts every other; or "pairs" with a pairs: list
    bundleEndpointPort: 8443       # SPIRE bundle endpoint port
    refreshHint: 5m                # how often peers re-fetch this cluster's bundle
  ca:
    root:                          # cert-manager self-signed root, one per cluster
      duration: ${DEFAULT_CA.root.duration}
      renewBefore: ${DEFAULT_CA.root.renewBefore}
    istio:                         # Istio's plug-in CA (cacerts), issued by the root
      duration: ${DEFAULT_CA.istio.duration}
      renewBefore: ${DEFAULT_CA.istio.renewBefore}
    spire:
      caTTL: ${DEFAULT_CA.spire.caTTL}                    # SPIRE's intermediate CA, issued by the root
      svidTTL: ${DEFAULT_CA.spire.svidTTL}                   # workload SVIDs; at most caTTL/6 (SPIRE's rule)
  apps:
    helloworld: { enabled: true }  # one version per cluster behind one Service
    sleep: { enabled: true }       # curl client in every cluster
    bookinfo: { enabled: true, clusters: [${SEED_CLUSTERS[1]!.name}] }
    ingressRoute: { enabled: true } # /hello through each cluster's ingress gateway
`;
}
