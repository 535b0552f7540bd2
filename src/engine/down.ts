/**
 * `meshfed down`: removes from each cluster exactly what meshfed created for
 * the fleet (inventory.ts: labels, created mark and field manager), in the
 * reverse order of `up` and waiting after each wave until its objects are
 * gone (removal.ts, which `up`'s prune shares), so that namespaces are really
 * gone when it returns. Objects meshfed found already there are left as they
 * are. Clusters run in parallel.
 */
import type { Fleet } from '../fleet/model.js';
import { type ClusterClient, KubeApiError, refOf } from '../kube/client.js';
import { ISTIO_NAMESPACE } from '../render/namespaces.js';
import { ownedObjects } from './inventory.js';
import { removeInOrder } from './removal.js';
import type { EngineEvent } from './up.js';

export interface DownResult {
  clusters: Array<{ cluster: string; deleted: number }>;
}

export class DownError extends Error {
  override name = 'DownError';
}

export async function down(o: {
  fleet: Fleet;
  clients: Map<string, ClusterClient>;
  timeoutMs?: number;
  onEvent?: (e: EngineEvent) => void;
}): Promise<DownResult> {
  const emit = o.onEvent ?? (() => {});
  const timeoutMs = o.timeoutMs ?? 300_000;
  const settled = await Promise.allSettled(
    o.fleet.clusters.map(async (c) => {
      const client = o.clients.get(c.context)!;
      const owned = await ownedObjects(client, o.fleet.name);
      const deleted = await removeInOrder(client, owned, {
        timeoutMs,
        onGroup: (g, n) =>
          emit({
            cluster: c.name,
            ...(g.phase ? { phase: g.phase } : {}),
            kind: 'phase-start',
            message: `removing ${n} ${g.noun}`,
          }),
        onProgress: (g, message) =>
          emit({ cluster: c.name, ...(g.phase ? { phase: g.phase } : {}), kind: 'progress', message }),
        onGroupDone: async (g, gone) => {
          emit({
            cluster: c.name,
            ...(g.phase ? { phase: g.phase } : {}),
            kind: 'phase-done',
            message: `removed ${gone.length} ${g.noun}`,
          });
          if (g.phase === 'istio') {
            const removed = await removeIstiodLeftovers(client, timeoutMs);
            if (removed)
              emit({
                cluster: c.name,
                phase: 'istio',
                kind: 'progress',
                message: `removed ${removed} ConfigMap${removed === 1 ? '' : 's'} istiod left in namespaces meshfed does not own (${ISTIOD_CONFIGMAPS.join(', ')})`,
              });
            return;
          }
          if (g.phase !== 'spire') return;
          const released = await releaseRegistrarFinalizers(client);
          if (released)
            emit({
              cluster: c.name,
              phase: 'spire',
              kind: 'progress',
              message: `released ${released} SpiffeID${released === 1 ? '' : 's'} the removed registrar left with its finalizer`,
            });
        },
      });
      return { cluster: c.name, deleted: deleted.length };
    }),
  );
  const failed = settled.flatMap((s, i) =>
    s.status === 'rejected' ? [`${o.fleet.clusters[i]!.name}: ${(s.reason as Error).message}`] : [],
  );
  if (failed.length) throw new DownError(failed.join('\n'));
  return {
    clusters: settled.map((s) => (s as PromiseFulfilledResult<{ cluster: string; deleted: number }>).value),
  };
}

/** The ConfigMaps istiod writes into every namespace for the proxies there: its root of trust, and its CA's revocation list. */
export const ISTIOD_CONFIGMAPS = ['istio-ca-root-cert', 'istio-ca-crl'];

/**
 * istiod puts ISTIOD_CONFIGMAPS into every
 * namespace, also those meshfed does not own (default, kube-system, …), so
 * removing what meshfed created leaves them behind. Once no istiod runs in
 * the cluster any more (meshfed's, in ISTIO_NAMESPACE, go with its
 * Deployment within their grace period: waited, up to `timeoutMs`), they are
 * deleted. An istiod in another namespace is another control plane's, whose
 * proxies use these too: then nothing is deleted. Returns how many were.
 */
export async function removeIstiodLeftovers(client: ClusterClient, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const istiods = await client.list('v1', 'Pod', { labelSelector: 'app=istiod' });
    if (!istiods.length) break;
    // Another control plane's istiod: these root certificates are its proxies' too.
    if (istiods.some((p) => p.metadata.namespace !== ISTIO_NAMESPACE) || Date.now() > end) return 0;
    await new Promise((r) => setTimeout(r, 500));
  }
  const left = (await client.list('v1', 'ConfigMap')).filter((o) =>
    ISTIOD_CONFIGMAPS.includes(o.metadata.name ?? ''),
  );
  let removed = 0;
  for (const o of left) if ((await client.delete(refOf(o))) === 'deleted') removed++;
  return removed;
}

/** k8s-workload-registrar's (the seed's) finalizer on the SpiffeIDs it makes for pods. */
export const REGISTRAR_FINALIZER = 'finalizers.spiffeid.spiffe.io';

/**
 * The seed's k8s-workload-registrar (CRD mode) puts REGISTRAR_FINALIZER on
 * each SpiffeID it makes for a pod and takes it off once it has deleted the
 * SPIRE entry. Once the SPIRE phase is removed, the registrar and the SPIRE
 * server (with its entries) are gone, so nothing would take it off and the
 * namespaces holding those SpiffeIDs would never finish deleting. This does
 * what the registrar would have done, and only that: each SpiffeID loses
 * that finalizer (a JSON patch whose `test` guards against a concurrent
 * change; retried once re-read). Returns how many were released.
 */
export async function releaseRegistrarFinalizers(client: ClusterClient): Promise<number> {
  const apiVersion = 'spiffeid.spiffe.io/v1beta1';
  if (!(await client.resourceName(apiVersion, 'SpiffeID'))) return 0;
  let released = 0;
  for (let pass = 0; pass < 3; pass++) {
    const held = (await client.list(apiVersion, 'SpiffeID')).filter((o) =>
      (o.metadata.finalizers ?? []).includes(REGISTRAR_FINALIZER),
    );
    if (!held.length) break;
    for (const o of held) {
      const finalizers = o.metadata.finalizers ?? [];
      const r = await client
        .jsonPatch(refOf(o), [
          { op: 'test', path: '/metadata/finalizers', value: finalizers },
          {
            op: 'replace',
            path: '/metadata/finalizers',
            value: finalizers.filter((f) => f !== REGISTRAR_FINALIZER),
          },
        ])
        .catch((e: unknown) => {
          // Changed meanwhile (the test failed): read again at the next pass.
          if (e instanceof KubeApiError && e.status === 422) return 'changed' as const;
          throw e;
        });
      if (r === 'patched') released++;
    }
  }
  return released;
}
