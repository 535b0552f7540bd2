/**
 * From a structurally valid fleet file to the resolved `Fleet`: applies the
 * defaults (the guide's topology and versions) and checks every cross-field
 * rule, collecting all problems with the path they belong to. Never throws for
 * bad input; the caller decides what a problem list means.
 */

import { hostPortProblem } from './address.js';
import { formatDuration, goDurationProblem, parseGoDuration } from './durations.js';
import {
  type CertLifetime,
  type ClusterSpec,
  type Exposure,
  FLEET_API_VERSION,
  type Fleet,
} from './model.js';
import type { FleetPath, FleetProblem } from './problems.js';
import { PROBLEM_CODES as C } from './problems.js';
import type { FleetFile } from './schema.js';
import { compareVersions, LAST_SPIRE_WITH_REGISTRAR, PROFILE_VERSIONS, VERSION_PATTERN } from './versions.js';

export const DEFAULT_MESH_ID = 'multi-mesh';

/** The guide's two clusters. */
export const SEED_CLUSTERS: ReadonlyArray<Pick<ClusterSpec, 'name' | 'trustDomain' | 'network'>> = [
  { name: 'cluster-1', trustDomain: 'foo.com', network: 'foo-network' },
  { name: 'cluster-2', trustDomain: 'bar.com', network: 'bar-network' },
];

export const DEFAULT_CA = {
  root: { duration: '21600h', renewBefore: '7200h' },
  istio: { duration: '1440h', renewBefore: '360h' },
  spire: { caTTL: '24h', svidTTL: '1h' },
} as const;

/** SPIRE's own rule (pkg/server/ca): an SVID TTL above min(caTTL/6, 7 days) gets cut short by CA rotation. */
export function maxSvidTtlMs(caTtlMs: number): number {
  return Math.min(caTtlMs / 6, 7 * 24 * 3_600_000);
}

/**
 * cert-manager's own floor (its webhook refuses a Certificate below it): a
 * duration of at least 1h and a renewBefore of at least 5m.
 */
export const CERT_MANAGER_MIN_MS = { duration: 3_600_000, renewBefore: 300_000 } as const;

/** The most clusters a fleet may list: full-mesh federation grows with the square of it. */
export const MAX_CLUSTERS = 256;

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/**
 * Kubernetes' rule for a label value (apimachinery IsValidLabelValue), less
 * the empty value, which meshfed never wants: at most 63 characters,
 * alphanumerics, "-", "_" and ".", starting and ending alphanumeric.
 */
export function labelValueProblem(s: string): string | undefined {
  if (s.length === 0) return 'must not be empty';
  if (s.length > 63) return `must be at most 63 characters (it has ${s.length})`;
  if (!LABEL_VALUE.test(s))
    return 'must be a Kubernetes label value: letters, digits, "-", "_" and ".", starting and ending with a letter or digit';
  return undefined;
}
const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;

/** SPIFFE ID spec §2.1: the trust domain name. Returns the problem, or undefined when valid. */
export function trustDomainProblem(td: string): string | undefined {
  if (td.length === 0) return 'a trust domain must not be empty';
  if (td.startsWith('spiffe://')) return 'give the trust domain name alone, without the spiffe:// scheme';
  if (/[A-Z]/.test(td)) return 'a trust domain must be lowercase';
  if (td.includes(':')) return 'a trust domain must not contain a port or scheme';
  if (td.includes('/')) return 'a trust domain must not contain a path';
  if (td.includes('@')) return 'a trust domain must not contain userinfo';
  if (!TRUST_DOMAIN_CHARS.test(td)) return 'a trust domain may contain only a-z, 0-9, ".", "-" and "_"';
  if (td.length > 255) return 'a trust domain must be at most 255 characters';
  return undefined;
}

function dnsLabelProblem(s: string): string | undefined {
  if (s.length === 0) return 'must not be empty';
  if (s.length > 63) return 'must be at most 63 characters';
  if (!DNS1123_LABEL.test(s))
    return 'must be a DNS-1123 label: lowercase a-z, 0-9 and "-", starting and ending alphanumeric';
  return undefined;
}

export interface ResolveResult {
  fleet: Fleet;
  problems: FleetProblem[];
}

export function resolveFleet(file: FleetFile | undefined): ResolveResult {
  const problems: FleetProblem[] = [];
  const add = (
    code: string,
    path: FleetPath,
    message: string,
    expected?: string,
    found?: string,
    severity: 'error' | 'warning' = 'error',
  ) => problems.push({ code, severity, path, message, expected, found, line: 0, col: 0 });

  const spec = file?.spec ?? {};
  const meshID = spec.meshID ?? DEFAULT_MESH_ID;
  // Both end up in label values (Istio's mesh ID, meshfed.dev/fleet) and the fleet name in a file name.
  const meshIdProblem = labelValueProblem(meshID);
  if (meshIdProblem)
    add(
      C.dnsName,
      ['spec', 'meshID'],
      `meshID ${meshIdProblem}`,
      'a label value like multi-mesh',
      JSON.stringify(meshID),
    );
  const fleetName = file?.metadata?.name;
  const fleetNameProblem = fleetName === undefined ? undefined : labelValueProblem(fleetName);
  if (fleetNameProblem)
    add(
      C.dnsName,
      ['metadata', 'name'],
      `metadata.name ${fleetNameProblem}`,
      'a label value like my-fleet',
      JSON.stringify(fleetName),
    );
  const profile = spec.profile ?? 'current';
  const profileVersions = PROFILE_VERSIONS[profile];
  const versions = { ...profileVersions, ...stripUndefined(spec.versions ?? {}) };
  for (const [key, value] of Object.entries(spec.versions ?? {})) {
    if (typeof value === 'string' && !VERSION_PATTERN.test(value))
      add(
        C.version,
        ['spec', 'versions', key],
        `${key} is not a release version`,
        'a version like 1.22.1',
        JSON.stringify(value),
      );
  }
  if (VERSION_PATTERN.test(versions.spire)) {
    const oldSpire = compareVersions(versions.spire, LAST_SPIRE_WITH_REGISTRAR) <= 0;
    if (profile === 'seed' && !oldSpire)
      add(
        C.version,
        ['spec', 'versions', 'spire'],
        'the seed profile uses the k8s-workload-registrar, which SPIRE removed in 1.6; use profile current for newer SPIRE (spire-controller-manager)',
        'a SPIRE version ≤ 1.5.x',
        versions.spire,
      );
    if (profile === 'current' && oldSpire)
      add(
        C.version,
        ['spec', 'versions', 'spire'],
        'the current profile registers workloads with spire-controller-manager, which needs SPIRE ≥ 1.6; use profile seed for SPIRE 1.5',
        'a SPIRE version ≥ 1.6.0',
        versions.spire,
      );
  }

  const rawClusters = spec.clusters;
  if (rawClusters !== undefined && rawClusters.length < 2)
    add(
      C.clusterCount,
      ['spec', 'clusters'],
      'a fleet needs at least two clusters to federate',
      'two or more clusters',
      String(rawClusters.length),
    );
  type RawCluster = NonNullable<typeof rawClusters>[number];
  const given: RawCluster[] = rawClusters ?? SEED_CLUSTERS.map((c) => ({ name: c.name }));
  const clusters: ClusterSpec[] = given.map((c, i) => {
    const seed = SEED_CLUSTERS[i]?.name === c.name ? SEED_CLUSTERS[i] : undefined;
    return {
      name: c.name,
      context: c.context ?? c.name,
      trustDomain: c.trustDomain ?? seed?.trustDomain ?? `${c.name}.${meshID}`,
      network: c.network ?? seed?.network ?? `${c.name}-network`,
      bundleEndpoint: resolveExposure(c.bundleEndpoint),
      eastWestGateway: resolveExposure(c.eastWestGateway),
    };
  });

  clusters.forEach((c, i) => {
    const at = (field: string): FleetPath => ['spec', 'clusters', i, field];
    const nameProblem = dnsLabelProblem(c.name);
    if (nameProblem)
      add(
        C.dnsName,
        at('name'),
        `cluster name ${nameProblem}`,
        'a DNS-1123 label like cluster-1',
        JSON.stringify(c.name),
      );
    const netProblem = dnsLabelProblem(c.network);
    const netGiven = rawClusters?.[i]?.network !== undefined;
    // The network is a label value (topology.istio.io/network) even when derived from the name.
    if (netProblem && (netGiven || !nameProblem))
      add(
        C.dnsName,
        netGiven ? at('network') : at('name'),
        netGiven
          ? `network name ${netProblem}`
          : `the network derived from the cluster name, "${c.network}", ${netProblem}; shorten the name or set network`,
        'a DNS-1123 label like foo-network',
        JSON.stringify(c.network),
      );
    if (c.context.length === 0)
      add(C.type, at('context'), 'context must not be empty', 'a kubeconfig context name', '""');
    const tdProblem = trustDomainProblem(c.trustDomain);
    // A trust domain derived from a bad name or meshID is reported there, once.
    if (tdProblem && (rawClusters?.[i]?.trustDomain !== undefined || (!nameProblem && !meshIdProblem)))
      add(
        C.trustDomain,
        at('trustDomain'),
        tdProblem,
        'a SPIFFE trust domain like foo.com',
        JSON.stringify(c.trustDomain),
      );
    for (const which of ['bundleEndpoint', 'eastWestGateway'] as const) {
      const e = c[which];
      if (e.nodePort !== undefined && e.type !== 'NodePort')
        add(
          C.exposure,
          ['spec', 'clusters', i, which, 'nodePort'],
          'nodePort is only valid with type NodePort',
          'type: NodePort',
          e.type,
        );
      if (e.nodePort !== undefined && (e.nodePort < 30000 || e.nodePort > 32767))
        add(
          C.exposure,
          ['spec', 'clusters', i, which, 'nodePort'],
          'nodePort outside the default NodePort range',
          'a port in 30000-32767',
          String(e.nodePort),
        );
      const addressProblem = e.address === undefined ? undefined : hostPortProblem(e.address);
      if (addressProblem)
        add(
          C.exposure,
          ['spec', 'clusters', i, which, 'address'],
          `address must be a host or host:port, without scheme or path: ${addressProblem}`,
          'e.g. spire.foo.example:8443',
          JSON.stringify(e.address),
        );
    }
    const be = c.bundleEndpoint.nodePort;
    if (be !== undefined && be === c.eastWestGateway.nodePort)
      add(
        C.exposure,
        ['spec', 'clusters', i, 'eastWestGateway', 'nodePort'],
        `nodePort ${be} is the bundle endpoint's too; two Services of a cluster cannot share a node port`,
        'a node port of its own',
        String(be),
      );
  });
  for (const field of ['name', 'context', 'trustDomain', 'network'] as const) {
    const firstAt = new Map<string, number>();
    clusters.forEach((c, i) => {
      const prev = firstAt.get(c[field]);
      if (prev === undefined) firstAt.set(c[field], i);
      else
        add(
          C.duplicate,
          ['spec', 'clusters', i, field],
          `duplicate ${field} "${c[field]}": clusters[${prev}] has it already; every cluster needs its own`,
          `a ${field} unique in the fleet`,
          JSON.stringify(c[field]),
        );
    });
  }

  const names = clusters.map((c) => c.name);
  const fed = spec.federation ?? {};
  const mode = fed.mode ?? 'full-mesh';
  let pairs: Array<[string, string]> = [];
  if (mode === 'full-mesh') {
    if (fed.pairs !== undefined)
      add(
        C.federation,
        ['spec', 'federation', 'pairs'],
        'pairs are only read with mode: pairs; full-mesh federates every pair',
        'mode: pairs, or no pairs',
        'pairs with mode full-mesh',
      );
    for (let i = 0; i < names.length; i++)
      for (let j = i + 1; j < names.length; j++) pairs.push([names[i]!, names[j]!]);
  } else {
    if (!fed.pairs || fed.pairs.length === 0)
      add(
        C.federation,
        ['spec', 'federation', fed.pairs ? 'pairs' : 'mode'],
        'mode pairs needs at least one pair',
        'pairs: [[cluster-a, cluster-b]]',
        'no pairs',
      );
    const seen = new Set<string>();
    (fed.pairs ?? []).forEach((pair, i) => {
      const at: FleetPath = ['spec', 'federation', 'pairs', i];
      if (pair.length !== 2) {
        add(
          C.federation,
          at,
          'a federation pair names exactly two clusters',
          '[cluster-a, cluster-b]',
          `${pair.length} names`,
        );
        return;
      }
      const [a, b] = pair as [string, string];
      let ok = true;
      pair.forEach((n, k) => {
        if (!names.includes(n)) {
          ok = false;
          add(
            C.federation,
            [...at, k],
            `federation pair names unknown cluster "${n}"`,
            `one of ${names.join(', ')}`,
            JSON.stringify(n),
          );
        }
      });
      if (a === b) {
        add(
          C.federation,
          at,
          `a cluster cannot federate with itself ("${a}")`,
          'two different clusters',
          `[${a}, ${b}]`,
        );
        return;
      }
      if (!ok) return;
      const ordered =
        names.indexOf(a) < names.indexOf(b) ? ([a, b] as [string, string]) : ([b, a] as [string, string]);
      const key = ordered.join('\u0000');
      if (seen.has(key))
        add(C.federation, at, `pair [${a}, ${b}] is listed twice`, 'each pair once', `[${a}, ${b}]`);
      else {
        seen.add(key);
        pairs.push(ordered);
      }
    });
    pairs = pairs.sort(
      (x, y) => names.indexOf(x[0]) - names.indexOf(y[0]) || names.indexOf(x[1]) - names.indexOf(y[1]),
    );
    if (problems.every((p) => p.code !== C.federation))
      clusters.forEach((c, i) => {
        if (!pairs.some((p) => p.includes(c.name)))
          add(
            C.federation,
            ['spec', 'clusters', i, 'name'],
            `cluster "${c.name}" federates with no other cluster; its workloads could reach none of the mesh`,
            'the cluster in at least one pair',
            'in no pair',
            'warning',
          );
      });
  }
  const bundleEndpointPort = fed.bundleEndpointPort ?? 8443;
  if (bundleEndpointPort < 1 || bundleEndpointPort > 65535)
    add(
      C.exposure,
      ['spec', 'federation', 'bundleEndpointPort'],
      'bundleEndpointPort is not a TCP port',
      '1-65535',
      String(bundleEndpointPort),
    );
  const refreshHint = fed.refreshHint ?? '5m';
  checkDuration(add, ['spec', 'federation', 'refreshHint'], refreshHint);

  const ca = spec.ca ?? {};
  const root: CertLifetime = { ...DEFAULT_CA.root, ...stripUndefined(ca.root ?? {}) };
  const istio: CertLifetime = { ...DEFAULT_CA.istio, ...stripUndefined(ca.istio ?? {}) };
  const spire = { ...DEFAULT_CA.spire, ...stripUndefined(ca.spire ?? {}) };
  const rootMs = checkLifetime(add, ['spec', 'ca', 'root'], root);
  const istioMs = checkLifetime(add, ['spec', 'ca', 'istio'], istio);
  const caTtl = checkDuration(add, ['spec', 'ca', 'spire', 'caTTL'], spire.caTTL);
  const svidTtl = checkDuration(add, ['spec', 'ca', 'spire', 'svidTTL'], spire.svidTTL);
  if (rootMs && istioMs && istioMs > rootMs)
    add(
      C.lifetime,
      ['spec', 'ca', 'istio', 'duration'],
      'the Istio CA would outlive the root that signs it; cert-manager caps it at the root’s expiry',
      `at most the root’s ${root.duration}`,
      istio.duration,
    );
  if (rootMs && caTtl && caTtl > rootMs)
    add(
      C.lifetime,
      ['spec', 'ca', 'spire', 'caTTL'],
      'SPIRE’s intermediate CA would outlive the root that signs it',
      `at most the root’s ${root.duration}`,
      spire.caTTL,
    );
  if (caTtl && svidTtl && svidTtl > maxSvidTtlMs(caTtl))
    add(
      C.lifetime,
      ['spec', 'ca', 'spire', 'svidTTL'],
      `SVID TTL too close to the SPIRE CA TTL: SPIRE rotates its CA early and would cut SVIDs short (its rule: at most caTTL/6, capped at 7 days)`,
      `at most ${formatDuration(maxSvidTtlMs(caTtl))} for caTTL ${spire.caTTL}`,
      spire.svidTTL,
    );

  const apps = spec.apps ?? {};
  const bookinfoClusters = apps.bookinfo?.clusters ?? [names[1] ?? names[0] ?? 'cluster-2'];
  (apps.bookinfo?.clusters ?? []).forEach((n, i) => {
    if (!names.includes(n))
      add(
        C.apps,
        ['spec', 'apps', 'bookinfo', 'clusters', i],
        `bookinfo names unknown cluster "${n}"`,
        `one of ${names.join(', ')}`,
        JSON.stringify(n),
      );
  });

  const fleet: Fleet = {
    name: file?.metadata?.name ?? meshID,
    meshID,
    profile,
    versions,
    clusters,
    federation: { mode, pairs, bundleEndpointPort, refreshHint },
    ca: { root, istio, spire },
    telemetry: { metrics: spec.telemetry?.metrics ?? 'prometheus' },
    apps: {
      helloworld: { enabled: apps.helloworld?.enabled ?? true },
      sleep: { enabled: apps.sleep?.enabled ?? true },
      bookinfo: { enabled: apps.bookinfo?.enabled ?? true, clusters: bookinfoClusters },
      ingressRoute: { enabled: apps.ingressRoute?.enabled ?? true },
    },
  };
  return { fleet, problems };
}

type Add = (code: string, path: FleetPath, message: string, expected?: string, found?: string) => void;

function checkDuration(add: Add, path: FleetPath, text: string): number | undefined {
  const ms = parseGoDuration(text);
  if (ms === undefined)
    add(
      C.lifetime,
      path,
      goDurationProblem(text) ?? 'not a Go duration',
      'e.g. 1440h, 90m, 1h30m',
      JSON.stringify(text),
    );
  else if (ms <= 0) add(C.lifetime, path, 'a lifetime must be positive', 'a duration above 0', text);
  return ms && ms > 0 ? ms : undefined;
}

function checkLifetime(add: Add, path: FleetPath, l: CertLifetime): number | undefined {
  const d = checkDuration(add, [...path, 'duration'], l.duration);
  const r = checkDuration(add, [...path, 'renewBefore'], l.renewBefore);
  if (d && d < CERT_MANAGER_MIN_MS.duration)
    add(
      C.lifetime,
      [...path, 'duration'],
      'below cert-manager’s minimum duration',
      'at least 1h',
      l.duration,
    );
  if (r && r < CERT_MANAGER_MIN_MS.renewBefore)
    add(
      C.lifetime,
      [...path, 'renewBefore'],
      'below cert-manager’s minimum renewBefore',
      'at least 5m',
      l.renewBefore,
    );
  if (d && r && r >= d)
    add(
      C.lifetime,
      [...path, 'renewBefore'],
      'renewBefore must be shorter than duration, or the certificate renews forever',
      `less than ${l.duration}`,
      l.renewBefore,
    );
  return d;
}

function resolveExposure(e: Partial<Exposure> | undefined): Exposure {
  const out: Exposure = { type: e?.type ?? 'LoadBalancer' };
  if (e?.nodePort !== undefined) out.nodePort = e.nodePort;
  if (e?.address !== undefined) out.address = e.address;
  return out;
}

function stripUndefined<T extends object>(o: T): { [K in keyof T]-?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as never;
}

export { FLEET_API_VERSION };
