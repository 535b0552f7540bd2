/**
 * Applying a set of objects to one cluster: in waves (order.ts), in parallel
 * within a wave, CRDs Established before anything after them, every object
 * marked as created by meshfed or found, and failures a retry can heal (a
 * restarting API server, 429, 503, a webhook not serving yet) retried within
 * a bound; an object the API server rejects fails at once, named.
 */
import {
  type ApplyAction,
  type ClusterClient,
  describeRef,
  KindNotServedError,
  KubeApiError,
  type KubeObject,
  refOf,
} from '../kube/client.js';
import { retryable } from '../kube/errors.js';
import { waitHealthy } from '../kube/wait.js';
import {
  CREATED_ANNOTATION,
  FIELD_MANAGER,
  FLEET_LABEL,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  PHASE_LABEL,
} from '../render/meta.js';
import { identity } from './desired.js';
import { applyWaves, mapLimit } from './order.js';

export type EnginePhase =
  | 'namespaces'
  | 'cert-manager'
  | 'spire'
  | 'federation'
  | 'istio'
  | 'remote-secrets'
  | 'apps';

export const ENGINE_PHASES: readonly EnginePhase[] = [
  'namespaces',
  'cert-manager',
  'spire',
  'federation',
  'istio',
  'remote-secrets',
  'apps',
];

export interface Counts {
  created: number;
  updated: number;
  unchanged: number;
}

export const noCounts = (): Counts => ({ created: 0, updated: 0, unchanged: 0 });
export const addCounts = (a: Counts, b: Counts): Counts => ({
  created: a.created + b.created,
  updated: a.updated + b.updated,
  unchanged: a.unchanged + b.unchanged,
});

/** Whether the live object is one meshfed created for this fleet (labels, annotation, field manager). */
export function ownedBy(o: KubeObject, fleet: string): boolean {
  const labels = o.metadata.labels ?? {};
  const managers = (o.metadata.managedFields as Array<{ manager?: string }> | undefined) ?? [];
  return (
    labels[MANAGED_BY_LABEL] === MANAGED_BY &&
    labels[FLEET_LABEL] === fleet &&
    o.metadata.annotations?.[CREATED_ANNOTATION] === 'true' &&
    managers.some((m) => m.manager === FIELD_MANAGER)
  );
}

/**
 * The object to send, given what is live: meshfed's labels and its created
 * mark when meshfed creates it (or created it before); neither when the
 * object was there first, so that meshfed never claims what it did not make.
 */
export function withMark(
  desired: KubeObject,
  live: KubeObject | undefined,
  fleet: string,
  phase: EnginePhase,
): KubeObject {
  const ours = !live || live.metadata.annotations?.[CREATED_ANNOTATION] === 'true';
  const labels = { ...desired.metadata.labels };
  const annotations = { ...desired.metadata.annotations };
  if (ours) {
    Object.assign(labels, { [MANAGED_BY_LABEL]: MANAGED_BY, [FLEET_LABEL]: fleet, [PHASE_LABEL]: phase });
    annotations[CREATED_ANNOTATION] = 'true';
  } else {
    delete labels[MANAGED_BY_LABEL];
    delete labels[FLEET_LABEL];
    delete labels[PHASE_LABEL];
    delete annotations[CREATED_ANNOTATION];
  }
  // An empty map is left out: the API server drops it, and Kubernetes 1.29
  // would count sending it again as a change at every apply.
  const metadata: KubeObject['metadata'] = { ...desired.metadata, labels, annotations };
  if (!Object.keys(labels).length) delete metadata.labels;
  if (!Object.keys(annotations).length) delete metadata.annotations;
  return { ...desired, metadata };
}

/**
 * Fields meshfed sets when it creates an object and a controller of the
 * install owns afterwards: istiod's validation controller turns its webhook's
 * failurePolicy from the install's Ignore to Fail once it serves (istio/istio
 * pilot/pkg/webhooks/validation/controller). Applying them again would take
 * them back (a conflict, or with --force a tug of war at every `up`), so once
 * another manager owns them they are left out of what meshfed applies (while
 * meshfed still owns them, leaving them out would delete them).
 */
export function leftToControllers(desired: KubeObject, live: KubeObject | undefined): KubeObject {
  if (!live) return desired;
  if (
    desired.kind === 'ValidatingWebhookConfiguration' &&
    desired.metadata.name?.startsWith('istio-validator')
  ) {
    const webhooks = (desired as { webhooks?: Array<Record<string, unknown>> }).webhooks ?? [];
    return {
      ...desired,
      webhooks: webhooks.map((w) => {
        if (!ownedByOther(live, ['f:webhooks', `k:{"name":${JSON.stringify(w.name)}}`, 'f:failurePolicy']))
          return w;
        const { failurePolicy: _taken, ...rest } = w;
        return rest;
      }),
    } as KubeObject;
  }
  return desired;
}

/** A manager other than meshfed owns the field at `path` (managedFields' fieldsV1 keys) of `live`. */
function ownedByOther(live: KubeObject, path: string[]): boolean {
  const entries = (live.metadata.managedFields ?? []) as Array<{ manager?: string; fieldsV1?: unknown }>;
  return entries.some((m) => {
    if (m.manager === FIELD_MANAGER) return false;
    let at: unknown = m.fieldsV1;
    for (const k of path) {
      if (!at || typeof at !== 'object' || !(k in at)) return false;
      at = (at as Record<string, unknown>)[k];
    }
    return true;
  });
}

/**
 * Runs `fn` again on errors a retry can heal (kube/errors.ts `classify`),
 * with backoff, until `deadlineMs` has passed; any other error is thrown at
 * once. `fn` runs whole each time, so it must be idempotent: it returns
 * what it did rather than adding to a list outside.
 */
export async function retrying<T>(
  fn: () => Promise<T>,
  o: { deadlineMs?: number; onRetry?: (e: Error) => void } = {},
): Promise<T> {
  const end = Date.now() + (o.deadlineMs ?? 120_000);
  let delay = 250;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!retryable(e) || Date.now() + delay > end) throw e;
      o.onRetry?.(e as Error);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  }
}

export interface ApplyRun {
  fleet: string;
  phase: EnginePhase;
  dryRun?: boolean;
  force?: boolean;
  /** Bound for CRD establishment and for retries of one object. */
  timeoutMs?: number;
  /**
   * Objects as read earlier in the run (the inventory), by identity: one of
   * them is applied onto without reading it again, on the condition that it
   * has not changed since (its resourceVersion); if it has, it is read.
   */
  known?: Map<string, KubeObject>;
  onProgress?: (line: string) => void;
}

export interface Applied {
  object: KubeObject;
  action: ApplyAction;
  /** Dry run only: why the server could not check it (its CRD is not installed yet). */
  note?: string;
}

/** Applies `objects` to one cluster in waves; resolves with each object's outcome, in input order of waves. */
export async function applyObjects(
  client: ClusterClient,
  objects: KubeObject[],
  run: ApplyRun,
): Promise<Applied[]> {
  const out: Applied[] = [];
  for (const wave of applyWaves(objects)) {
    const results = await mapLimit(wave, 8, async (desired): Promise<Applied> => {
      const prepare = (live: KubeObject | undefined) =>
        withMark(leftToControllers(desired, live), live, run.fleet, run.phase);
      // Read already: applied onto as it was read. One holding exactly what meshfed would apply is not sent (the client's check, kube/fields.ts).
      const known = onlyOntoKnown(desired, run);
      try {
        const r = await retrying(
          async () => {
            if (known)
              try {
                return await client.apply(desired, { live: known, onlyOntoLive: true, prepare });
              } catch (e) {
                // Changed since the inventory read it (a 409 naming no field manager): read it now, as for any other.
                if (!(e instanceof KubeApiError && e.status === 409 && !e.conflicts.length)) throw e;
              }
            return client.apply(desired, {
              ...(run.dryRun ? { dryRun: true } : {}),
              ...(run.force ? { force: true } : {}),
              prepare,
            });
          },
          {
            deadlineMs: run.timeoutMs ?? 120_000,
            onRetry: (e) =>
              run.onProgress?.(`retrying ${describeRef(refOf(desired))}: ${e.message.split('\n')[0]}`),
          },
        );
        return r;
      } catch (e) {
        // A dry run persists nothing, so what an earlier object would create (a CRD, a namespace) is not there.
        if (run.dryRun && e instanceof KubeApiError && e.status === 404)
          return {
            object: desired,
            action: 'created',
            note:
              e instanceof KindNotServedError
                ? 'its CRD is not installed yet, so the server could not check it'
                : 'its namespace is not there yet, so the server could not check it',
          };
        throw e;
      }
    });
    out.push(...results);
    const crds = wave.filter((o) => o.kind === 'CustomResourceDefinition');
    if (crds.length && !run.dryRun)
      await waitHealthy(client, crds.map(refOf), {
        known: results.map((r) => r.object),
        timeoutMs: run.timeoutMs ?? 120_000,
        ...(run.onProgress ? { onProgress: run.onProgress } : {}),
      });
  }
  return out;
}

/**
 * The object read earlier in the run to apply `desired` onto, when that is
 * exact: read in the same API version (an object read in another version
 * differs in form, not in content), not a dry run, not forced, and not an
 * object part of which meshfed leaves to a controller once it owns it
 * (leftToControllers decides from who owns what at the moment of the apply).
 */
export function onlyOntoKnown(desired: KubeObject, run: ApplyRun): KubeObject | undefined {
  if (run.dryRun || run.force) return undefined;
  const known = run.known?.get(identity(desired));
  if (!known || known.apiVersion !== desired.apiVersion || !known.metadata.resourceVersion) return undefined;
  if (leftToControllers(desired, known) !== desired) return undefined;
  return known;
}

export function countsOf(applied: Applied[]): Counts {
  const c = noCounts();
  for (const a of applied) c[a.action]++;
  return c;
}

const STRENGTH = { created: 2, updated: 1, unchanged: 0 } as const;

/**
 * One outcome per object when it was applied more than once (a step applied
 * twice, a retried closure): created beats updated beats unchanged, so an
 * object created by the first try and found by the second counts once, as
 * created.
 */
export function strongest(applied: Applied[]): Applied[] {
  const by = new Map<string, Applied>();
  for (const a of applied) {
    const k = identity(a.object);
    const had = by.get(k);
    if (!had || STRENGTH[a.action] > STRENGTH[had.action]) by.set(k, a);
  }
  return [...by.values()];
}
