/**
 * The resolved fleet: what every renderer, planner and check consumes.
 *
 * Contract: a `Fleet` is produced only by `loadFleet` / `resolveFleet` after
 * validation succeeded, so every field is present (defaults applied), every
 * cross-reference resolves (federation pairs name real clusters) and every
 * invariant holds (unique names, contexts, trust domains, networks; lifetimes
 * that can work). Code downstream never re-validates; it may rely on these.
 */

export const FLEET_API_VERSION = 'meshfed.dev/v1alpha1';
export const FLEET_KIND = 'Fleet';

/** Version profiles: `current` is today's upstream; `seed` is the guide's stack. */
export type Profile = 'current' | 'seed';

/** How SPIRE workload registration is done: the controller manager (current) or the registrar (SPIRE ≤ 1.5). */
export type Registrar = 'spire-controller-manager' | 'k8s-workload-registrar';

/** How a cluster's SPIRE bundle endpoint or east-west gateway is reachable from the other clusters. */
export type ExposureType = 'LoadBalancer' | 'NodePort';

export interface Exposure {
  type: ExposureType;
  /** Fixed node port, only for NodePort; absent lets Kubernetes choose. */
  nodePort?: number;
  /**
   * A known, stable address (host or host:port) peers use to reach this endpoint,
   * e.g. a DNS name in front of the load balancer. Absent: discovered at apply time.
   */
  address?: string;
}

export interface ClusterSpec {
  /** DNS-1123 label; Istio's clusterName and SPIRE's k8s_psat cluster name. */
  name: string;
  /** kubeconfig context used to reach this cluster. */
  context: string;
  /** SPIFFE trust domain of this cluster's SPIRE server, e.g. foo.com. */
  trustDomain: string;
  /** Istio network name, e.g. foo-network. */
  network: string;
  bundleEndpoint: Exposure;
  eastWestGateway: Exposure;
}

export interface Versions {
  kubernetes: string;
  istio: string;
  spire: string;
  certManager: string;
  registrar: Registrar;
  /** Version of spire-controller-manager (registrar = spire-controller-manager) or of the k8s-workload-registrar image. */
  registrarVersion: string;
  spiffeCsiDriver: string;
}

/** A Go duration string as cert-manager and SPIRE accept it, e.g. "1440h", "90m". */
export type GoDuration = string;

export interface CertLifetime {
  duration: GoDuration;
  renewBefore: GoDuration;
}

export interface CASpec {
  /** cert-manager self-signed root per cluster (seed: 21600h). */
  root: CertLifetime;
  /** Istio's plug-in CA `cacerts`, issued by the root (seed: 1440h, renew 360h). */
  istio: CertLifetime;
  spire: {
    /** SPIRE's intermediate CA lifetime, requested from the cert-manager root (SPIRE default 24h). */
    caTTL: GoDuration;
    /** Workload X.509-SVID lifetime (seed: 1h). */
    svidTTL: GoDuration;
  };
}

export type FederationMode = 'full-mesh' | 'pairs';

export interface FederationSpec {
  mode: FederationMode;
  /**
   * Unordered pairs of cluster names that trust each other. For `full-mesh`
   * this is every pair, computed at resolve time, so consumers only read `pairs`.
   * Each pair is sorted by cluster order in the fleet; the list is sorted too.
   */
  pairs: Array<[string, string]>;
  /** Port the SPIRE bundle endpoint listens on (seed: 8443). */
  bundleEndpointPort: number;
  /** Refresh hint the bundle endpoint advertises (SPIRE default 5m). */
  refreshHint: GoDuration;
}

export interface AppToggle {
  enabled: boolean;
}

export interface AppsSpec {
  /** helloworld: one Service in every cluster, version v<i+1> deployed in the i-th cluster. */
  helloworld: AppToggle;
  /** sleep (curl) client in every cluster. */
  sleep: AppToggle;
  /** Bookinfo, for the trust-chain walk-through (seed: in cluster-2 only). */
  bookinfo: AppToggle & { clusters: string[] };
  /** Gateway + VirtualService routing /hello through each cluster's ingress gateway. */
  ingressRoute: AppToggle;
}

export interface Fleet {
  /** metadata.name of the fleet file; defaults to the mesh ID. */
  name: string;
  meshID: string;
  profile: Profile;
  versions: Versions;
  clusters: ClusterSpec[];
  federation: FederationSpec;
  ca: CASpec;
  /** Istio's metrics provider: prometheus (its default) or none. */
  telemetry: { metrics: 'prometheus' | 'none' };
  apps: AppsSpec;
}

/** The clusters `cluster` federates with, in fleet order. */
export function peersOf(fleet: Fleet, cluster: string): ClusterSpec[] {
  const names = new Set<string>();
  for (const [a, b] of fleet.federation.pairs) {
    if (a === cluster) names.add(b);
    if (b === cluster) names.add(a);
  }
  return fleet.clusters.filter((c) => names.has(c.name));
}

export function clusterByName(fleet: Fleet, name: string): ClusterSpec {
  const c = fleet.clusters.find((x) => x.name === name);
  if (!c) throw new Error(`no cluster named "${name}" in fleet ${fleet.name}`);
  return c;
}

/** Index (0-based) of a cluster in the fleet; helloworld's version is v<index+1>. */
export function clusterIndex(fleet: Fleet, name: string): number {
  return fleet.clusters.findIndex((c) => c.name === name);
}
