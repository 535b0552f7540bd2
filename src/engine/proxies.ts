/**
 * The fleet's Envoy proxies as the mesh's last link of trust: every running
 * pod with an `istio-proxy` container (sidecars and gateways), and what its
 * Envoy holds now, read from `pilot-agent request GET
 * config_dump?resource=dynamic_active_secrets` by pod exec: the SVID it
 * presents (secret `default`) and the roots it trusts per trust domain
 * (secret `ROOTCA`, SPIRE's SDS). A rotation is done only when these say so.
 */
import type { ClusterClient, KubeObject } from '../kube/client.js';
import { configDumpSecrets } from '../spiffe/inspect.js';
import type { CertView } from '../spiffe/x509.js';
import { mapLimit } from './order.js';

export const PROXY_CONTAINER = 'istio-proxy';

export interface ProxyRef {
  cluster: string;
  namespace: string;
  pod: string;
}

export interface ProxyView extends ProxyRef {
  /** The SVID chain Envoy presents (leaf first); empty when it has none. */
  svid: CertView[];
  /** Trusted roots by trust domain, as SHA-256 fingerprints. */
  trusts: Map<string, Set<string>>;
  /** Why it could not be read (the exec failed, the dump was not JSON); then svid and trusts are empty. */
  error?: string;
}

const running = (p: KubeObject) =>
  (p.status as { phase?: string } | undefined)?.phase === 'Running' && !p.metadata.deletionTimestamp;

const hasProxy = (p: KubeObject) => {
  const spec = p.spec as { containers?: Array<{ name: string }>; initContainers?: Array<{ name: string }> };
  return [...(spec.containers ?? []), ...(spec.initContainers ?? [])].some((c) => c.name === PROXY_CONTAINER);
};

/** The running pods of a cluster with an Envoy proxy, every namespace. */
export async function listProxies(client: ClusterClient, cluster: string): Promise<ProxyRef[]> {
  return (await client.list('v1', 'Pod'))
    .filter((p) => running(p) && hasProxy(p))
    .map((p) => ({ cluster, namespace: p.metadata.namespace ?? 'default', pod: p.metadata.name }));
}

/** What one proxy's Envoy holds now. */
export async function readProxy(
  client: ClusterClient,
  ref: ProxyRef,
  timeoutMs = 20_000,
): Promise<ProxyView> {
  const empty = { ...ref, svid: [], trusts: new Map<string, Set<string>>() };
  try {
    const r = await client.exec(
      { namespace: ref.namespace, name: ref.pod, container: PROXY_CONTAINER },
      ['pilot-agent', 'request', 'GET', 'config_dump?resource=dynamic_active_secrets'],
      { timeoutMs, maxBytes: 8 << 20 },
    );
    if (r.code !== 0) return { ...empty, error: `exit ${r.code}: ${r.stderr.trim().slice(0, 200)}` };
    const secrets = configDumpSecrets(JSON.parse(r.stdout));
    const trusts = new Map<string, Set<string>>();
    for (const s of secrets.filter((x) => x.name === 'ROOTCA'))
      for (const d of s.trustDomains ?? [])
        trusts.set(
          d.name,
          new Set([...(trusts.get(d.name) ?? []), ...d.certs.map((c) => c.fingerprintSha256)]),
        );
    const svid = secrets.find((s) => s.name === 'default' && s.chain.length)?.chain ?? [];
    return { ...ref, svid, trusts };
  } catch (e) {
    return { ...empty, error: (e as Error).message };
  }
}

/** Every proxy of the named clusters, read a few at a time. */
export async function readFleetProxies(
  clients: ReadonlyMap<string, ClusterClient>,
  clusters: readonly string[],
  concurrency = 6,
): Promise<ProxyView[]> {
  const refs = (await Promise.all(clusters.map((c) => listProxies(clients.get(c)!, c)))).flat();
  return mapLimit(refs, concurrency, (r) => readProxy(clients.get(r.cluster)!, r));
}

export const proxyName = (p: ProxyRef) => `${p.cluster}:${p.namespace}/${p.pod}`;
