/**
 * `meshfed plan`: what `up` would do, per cluster and phase, per object:
 * create, update (with a readable diff of what the API server would store:
 * a server-side dry run, so defaults and admission are the server's),
 * unchanged, or prune (meshfed created it and no phase of the fleet has it
 * any more; listed last, in the order `up` deletes: removal.ts).
 * Secret data never appears: a Secret's changed data is shown as its keys.
 * Reads and dry runs only.
 */
import { isDeepStrictEqual } from 'node:util';
import { createTwoFilesPatch } from 'diff';
import { stringify } from 'yaml';
import { type Fleet, peersOf } from '../fleet/model.js';
import { type ClusterClient, describeRef, KubeApiError, type KubeObject, refOf } from '../kube/client.js';
import { retryable } from '../kube/errors.js';
import { READER_TOKEN_SECRET, remoteSecretName } from '../render/remote-secret.js';
import type { RenderInputs } from '../render/types.js';
import {
  ENGINE_PHASES,
  type EnginePhase,
  leftToControllers,
  onlyOntoKnown,
  retrying,
  withMark,
} from './apply.js';
import { type DesiredSources, desiredPhase, identity } from './desired.js';
import { BUNDLE_ENDPOINT_SERVICE, currentAddress } from './discover.js';
import { ownedObjects } from './inventory.js';
import { mapLimit } from './order.js';
import { removalOrder } from './removal.js';

export type PlanAction = 'create' | 'update' | 'unchanged' | 'prune';

export interface PlanItem {
  phase: EnginePhase;
  action: PlanAction;
  object: string;
  diff?: string;
  note?: string;
}

export interface ClusterPlan {
  cluster: string;
  items: PlanItem[];
  pending: string[];
}

const SERVER_SET = ['managedFields', 'resourceVersion', 'uid', 'creationTimestamp', 'generation', 'selfLink'];

/** The object as compared: no server bookkeeping, no status, Secret values replaced by a digest-free marker. */
export function comparable(o: KubeObject): Record<string, unknown> {
  const { status: _status, ...rest } = o as Record<string, unknown>;
  const metadata: Record<string, unknown> = { ...o.metadata };
  for (const k of SERVER_SET) delete metadata[k];
  const out: Record<string, unknown> = { ...rest, metadata };
  if (o.kind === 'Secret')
    for (const field of ['data', 'stringData'])
      if (out[field] && typeof out[field] === 'object')
        out[field] = Object.fromEntries(
          Object.entries(out[field] as Record<string, string>).map(([k, v]) => [
            k,
            `(secret, ${v.length} characters)`,
          ]),
        );
  return out;
}

export function objectDiff(name: string, live: KubeObject, next: KubeObject): string | undefined {
  const was = comparable(live);
  const will = comparable(next);
  // Most objects are unchanged: equal values print the same, so only a difference is printed (YAML, keys sorted).
  if (isDeepStrictEqual(was, will)) return undefined;
  const a = stringify(was, { sortMapEntries: true });
  const b = stringify(will, { sortMapEntries: true });
  if (a === b) return undefined;
  return createTwoFilesPatch(`live ${name}`, `after up ${name}`, a, b, undefined, undefined, { context: 2 })
    .split('\n')
    .slice(2) // the ==== header and the first blank line
    .join('\n')
    .trimEnd();
}

async function planObject(
  client: ClusterClient,
  fleet: string,
  phase: EnginePhase,
  desired: KubeObject,
  owned: Map<string, KubeObject>,
): Promise<PlanItem> {
  const name = describeRef(refOf(desired));
  const result = (live: KubeObject, next: KubeObject): PlanItem => {
    const diff = objectDiff(name, live, next);
    return diff
      ? { phase, action: 'update', object: name, diff }
      : { phase, action: 'unchanged', object: name };
  };
  // What meshfed owns, as the inventory read it: the dry run applies onto exactly that object or is refused.
  const known = onlyOntoKnown(desired, { fleet, phase, known: owned });
  if (known) {
    const sent = withMark(leftToControllers(desired, known), known, fleet, phase);
    const r = await client
      .apply(sent, { dryRun: true, live: known, onlyOntoLive: true })
      .catch((e: unknown) => {
        // Changed since (409), gone, or a failure a retry can heal: read it, as for any other object.
        if (retryable(e) || (e instanceof KubeApiError && e.status === 404)) return undefined;
        throw e;
      });
    if (r) return result(known, r.object);
  }
  let live: KubeObject | undefined;
  try {
    live = await retrying(() => client.get(refOf(desired)));
  } catch (e) {
    if (e instanceof KubeApiError && e.status === 404)
      return { phase, action: 'create', object: name, note: 'its CRD is not installed yet' };
    throw e;
  }
  const sent = withMark(leftToControllers(desired, live), live, fleet, phase);
  if (!live) return { phase, action: 'create', object: name };
  // The live object just read is the one the dry run starts from: not read a second time.
  const r = await retrying(() => client.apply(sent, { dryRun: true, live }));
  return result(live, r.object);
}

export async function plan(
  o: DesiredSources & { fleet: Fleet; clients: Map<string, ClusterClient> },
): Promise<ClusterPlan[]> {
  const { fleet } = o;
  // The addresses the clusters already have, so that the plan renders what up would.
  const bundleEndpoints: Record<string, string> = {};
  await Promise.all(
    fleet.clusters.map(async (c) => {
      const a =
        c.bundleEndpoint.address ??
        (await currentAddress(o.clients.get(c.context)!, BUNDLE_ENDPOINT_SERVICE));
      if (a) bundleEndpoints[c.name] = a;
    }),
  );
  const inputs: RenderInputs = { bundleEndpoints };
  return Promise.all(
    fleet.clusters.map(async (c): Promise<ClusterPlan> => {
      const client = o.clients.get(c.context)!;
      const owned = await ownedObjects(client, fleet.name);
      const ownedBy = new Map(owned.map((x) => [identity(x), x]));
      const items: PlanItem[] = [];
      const pending: string[] = [];
      const wanted = new Set<string>();
      for (const phase of ENGINE_PHASES) {
        if (phase === 'remote-secrets') {
          // Built from the peers' tokens at apply time; planned by name.
          const names = [READER_TOKEN_SECRET, ...peersOf(fleet, c.name).map((p) => remoteSecretName(p.name))];
          for (const n of names) {
            const live = owned.find((x) => x.kind === 'Secret' && x.metadata.name === n);
            wanted.add(`/Secret/istio-system/${n}`);
            items.push({
              phase,
              action: live ? 'unchanged' : 'create',
              object: `Secret istio-system/${n}`,
              note: 'built at apply time from a reader token; content not compared',
            });
          }
          continue;
        }
        const want = await desiredPhase(fleet, c.name, phase, inputs, o);
        for (const p of want.pending)
          pending.push(
            `${phase}: held back until ${p.cluster}'s ${p.what} is known: ${p.heldBack.join(', ')}`,
          );
        const objects = want.steps.flatMap((s) => s.objects);
        for (const x of objects) wanted.add(identity(x));
        items.push(...(await mapLimit(objects, 8, (x) => planObject(client, fleet.name, phase, x, ownedBy))));
      }
      for (const g of removalOrder(owned.filter((x) => !wanted.has(identity(x)))))
        for (const x of g.waves.flat())
          items.push({
            phase: g.phase ?? 'namespaces',
            action: 'prune',
            object: describeRef(refOf(x)),
          });
      return { cluster: c.name, items, pending };
    }),
  );
}
