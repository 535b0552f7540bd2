/**
 * `meshfed down`: removes from each cluster exactly what meshfed created for
 * the fleet (inventory.ts: labels, created mark and field manager), in the
 * reverse order of `up` (phases backwards; within a phase webhooks first,
 * CRDs last; the namespaces at the very end, together), waiting after each
 * wave until its objects are gone, so that namespaces are really gone when
 * it returns. Objects meshfed
 * found already there are left as they are. Clusters run in parallel.
 */
import type { Fleet } from '../fleet/model.js';
import { type ClusterClient, describeRef, type KubeObject, refOf } from '../kube/client.js';
import { PHASE_LABEL } from '../render/meta.js';
import { ENGINE_PHASES, type EnginePhase, retrying } from './apply.js';
import { ownedObjects } from './inventory.js';
import { applyWaves, mapLimit } from './order.js';
import type { EngineEvent } from './up.js';

export interface DownResult {
  clusters: Array<{ cluster: string; deleted: number }>;
}

export class DownError extends Error {
  override name = 'DownError';
}

async function waitGone(
  client: ClusterClient,
  objects: KubeObject[],
  timeoutMs: number,
  progress: (m: string) => void,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let left = objects;
  let said = '';
  while (left.length) {
    const still = await mapLimit(left, 8, async (x) =>
      (await retrying(() => client.get(refOf(x)))) ? x : undefined,
    );
    left = still.filter((x): x is KubeObject => x !== undefined);
    if (!left.length) return;
    const line = `waiting for ${describeRef(refOf(left[0]!))} to be gone${left.length > 1 ? ` and ${left.length - 1} more` : ''}`;
    if (Date.now() > deadline)
      throw new DownError(
        `${client.context}: ${line} after ${Math.round(timeoutMs / 1000)} s (a finalizer whose controller is gone?)`,
      );
    if (line !== said) {
      said = line;
      progress(line);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
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
      let deleted = 0;
      const remove = async (objects: KubeObject[], progress: (m: string) => void) => {
        for (const wave of applyWaves(objects).reverse()) {
          await mapLimit(wave, 8, async (x) => {
            if ((await retrying(() => client.delete(refOf(x)))) === 'deleted') deleted++;
          });
          await waitGone(client, wave, timeoutMs, progress);
        }
      };
      // Namespaces go last, all at once: what meshfed made in them is already
      // gone in reverse order, and their own deletion (the pods' grace periods)
      // is the slow part, so it is done once, in parallel.
      for (const phase of [...ENGINE_PHASES].reverse() as EnginePhase[]) {
        const mine = owned.filter(
          (x) => x.metadata.labels?.[PHASE_LABEL] === phase && x.kind !== 'Namespace',
        );
        if (!mine.length) continue;
        const progress = (message: string) => emit({ cluster: c.name, phase, kind: 'progress', message });
        emit({ cluster: c.name, phase, kind: 'phase-start', message: `removing ${mine.length} objects` });
        await remove(mine, progress);
        emit({ cluster: c.name, phase, kind: 'phase-done', message: `removed ${mine.length} objects` });
      }
      const namespaces = owned.filter((x) => x.kind === 'Namespace');
      if (namespaces.length) {
        const progress = (message: string) => emit({ cluster: c.name, kind: 'progress', message });
        emit({ cluster: c.name, kind: 'phase-start', message: `removing ${namespaces.length} namespaces` });
        await remove(namespaces, progress);
        emit({ cluster: c.name, kind: 'phase-done', message: `removed ${namespaces.length} namespaces` });
      }
      return { cluster: c.name, deleted };
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
