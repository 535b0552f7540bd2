/**
 * `meshfed down`: removes from each cluster exactly what meshfed created for
 * the fleet (inventory.ts: labels, created mark and field manager), in the
 * reverse order of `up` and waiting after each wave until its objects are
 * gone (removal.ts, which `up`'s prune shares), so that namespaces are really
 * gone when it returns. Objects meshfed found already there are left as they
 * are. Clusters run in parallel.
 */
import type { Fleet } from '../fleet/model.js';
import type { ClusterClient } from '../kube/client.js';
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
        onGroupDone: (g, gone) =>
          emit({
            cluster: c.name,
            ...(g.phase ? { phase: g.phase } : {}),
            kind: 'phase-done',
            message: `removed ${gone.length} ${g.noun}`,
          }),
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
