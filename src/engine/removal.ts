/**
 * Removing objects meshfed owns, the one way `down` (everything meshfed made
 * for the fleet) and `up`'s prune (what the fleet no longer has) delete: in
 * the reverse of the order `up` applies in, as gitops-engine prunes.
 *
 * - phases backwards (apps before istio before spire …), since a later phase
 *   uses what an earlier one made;
 * - within a phase, the apply waves (order.ts) backwards: webhooks first (so
 *   that none is called once its backend is gone), custom resources before
 *   the CRDs that define them, workloads before the Services, RBAC,
 *   ServiceAccounts, ConfigMaps and Secrets they use, CRDs last;
 * - the Namespaces at the very end, together: what meshfed made in them is
 *   gone by then, and their own deletion (the pods' grace periods) is the
 *   slow part, so it is waited for once;
 * - objects whose phase meshfed does not know (another version's) first.
 *
 * Each wave is deleted (eight at a time) and then waited for until every one
 * of its objects is gone, bounded, with progress naming the first one still
 * there, before the next wave starts: the caller returns only once what it
 * removed is really gone.
 */
import { type ClusterClient, describeRef, type KubeObject, refOf } from '../kube/client.js';
import { PHASE_LABEL } from '../render/meta.js';
import { ENGINE_PHASES, type EnginePhase, retrying } from './apply.js';
import { applyWaves, mapLimit } from './order.js';

type Removable = Pick<KubeObject, 'kind' | 'metadata'>;

export interface RemovalGroup<T extends Removable = KubeObject> {
  /**
   * The phase that applied these objects; undefined for the Namespaces (last)
   * and for objects of no phase meshfed knows (first).
   */
  phase?: EnginePhase;
  /** What the group holds, for progress lines: "objects", "namespaces". */
  noun: string;
  /** Deleted one after another, each waited for until gone. */
  waves: T[][];
}

export class RemovalError extends Error {
  override name = 'RemovalError';
}

const phaseOf = (o: Removable): EnginePhase | undefined => {
  const p = o.metadata.labels?.[PHASE_LABEL];
  return ENGINE_PHASES.includes(p as EnginePhase) ? (p as EnginePhase) : undefined;
};

/** The order `objects` are deleted in: groups in order, each group's waves in order. Pure. */
export function removalOrder<T extends Removable>(objects: T[]): Array<RemovalGroup<T>> {
  const reversed = (list: T[]) => applyWaves(list).reverse();
  const groups: Array<RemovalGroup<T>> = [];
  const unknown = objects.filter((o) => o.kind !== 'Namespace' && !phaseOf(o));
  if (unknown.length) groups.push({ noun: 'objects of no phase meshfed knows', waves: reversed(unknown) });
  for (const phase of [...ENGINE_PHASES].reverse()) {
    const mine = objects.filter((o) => o.kind !== 'Namespace' && phaseOf(o) === phase);
    if (mine.length) groups.push({ phase, noun: 'objects', waves: reversed(mine) });
  }
  const namespaces = objects.filter((o) => o.kind === 'Namespace');
  if (namespaces.length) groups.push({ noun: 'namespaces', waves: [namespaces] });
  return groups;
}

/** "Deployment sleep/sleep", or the first two and how many more. */
export function describeSome(objects: Removable[]): string {
  const names = objects.slice(0, 2).map((o) => describeRef(refOf(o as KubeObject)));
  return `${names.join(', ')}${objects.length > 2 ? ` and ${objects.length - 2} more` : ''}`;
}

/**
 * Polls (every `intervalMs`, default 500) until every object is gone (not
 * found); throws RemovalError naming what is left after `timeoutMs`.
 */
export async function waitGone(
  client: ClusterClient,
  objects: KubeObject[],
  timeoutMs: number,
  progress: (m: string) => void,
  intervalMs = 500,
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
      throw new RemovalError(
        `${client.context}: ${line} after ${Math.round(timeoutMs / 1000)} s (a finalizer whose controller is gone?)`,
      );
    if (line !== said) {
      said = line;
      progress(line);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export interface RemovalHooks {
  /** Before a group's first delete. */
  onGroup?(group: RemovalGroup, objects: number): void;
  /** What is being deleted, and what is waited for. */
  onProgress?(group: RemovalGroup, message: string): void;
  /**
   * Once a group's objects are gone; `deleted`: those this call deleted (not
   * found already: left out). The next group waits for what it returns.
   */
  onGroupDone?(group: RemovalGroup, deleted: KubeObject[]): void | Promise<void>;
}

/**
 * Deletes `objects` in removalOrder, waiting after each wave until its
 * objects are gone (each wait bounded by `timeoutMs`). Resolves with the
 * objects it deleted, in the order deleted. A failure names the cluster and
 * the object; the group it happened in is `error.group`.
 */
export async function removeInOrder(
  client: ClusterClient,
  objects: KubeObject[],
  o: { timeoutMs: number; intervalMs?: number; verb?: string } & RemovalHooks,
): Promise<KubeObject[]> {
  const deleted: KubeObject[] = [];
  for (const group of removalOrder(objects)) {
    const count = group.waves.reduce((n, w) => n + w.length, 0);
    o.onGroup?.(group, count);
    const progress = (m: string) => o.onProgress?.(group, m);
    const mine: KubeObject[] = [];
    try {
      for (const wave of group.waves) {
        progress(`${o.verb ?? 'deleting'} ${describeSome(wave)}`);
        const gone = await mapLimit(wave, 8, async (x) =>
          (await retrying(() => client.delete(refOf(x)))) === 'deleted' ? x : undefined,
        );
        mine.push(...gone.filter((x): x is KubeObject => x !== undefined));
        await waitGone(client, wave, o.timeoutMs, progress, o.intervalMs);
      }
    } catch (e) {
      throw Object.assign(e as Error, { group });
    }
    deleted.push(...mine);
    await o.onGroupDone?.(group, mine);
  }
  return deleted;
}
