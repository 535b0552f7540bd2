/**
 * `meshfed up`: every cluster of the fleet from empty to the whole system, in
 * phases (apply.ts ENGINE_PHASES). Clusters run in parallel; a phase waits for
 * its peers only where it needs them:
 *
 * - spire: each cluster applies what it can and discovers its bundle endpoint
 *   address; the held-back objects (the seed's static federation config) are
 *   applied once every peer's address is known;
 * - federation: once every SPIRE server is up, one bootstrap for every
 *   federated pair (through pod exec to spire-server), then each cluster's
 *   relationships (ClusterFederatedTrustDomains) with the discovered URLs,
 *   waited for in the server;
 * - remote-secrets: once every Istio is up, each cluster's reader token is
 *   read and its remote secret written into every federated peer.
 *
 * Istio's CRDs do not wait for the istio phase: they are applied (and waited
 * for until established) as soon as cert-manager's release is up, beside the
 * issuers and SPIRE, and the istio phase does not send them again.
 *
 * Each step's objects are applied (server-side, meshfed's field manager) and
 * then waited for until healthy, with a bound. Once every phase has applied,
 * what meshfed created before and the fleet no longer has is pruned as `down`
 * deletes (removal.ts: the reverse of the apply order, each wave waited for
 * until gone), so a workload goes before the config and identity it used, a
 * namespace's contents before it, whichever phase each came from; an object
 * that moved to another phase is kept. Progress is recorded
 * (progress.ts); since every step is an idempotent apply, a run that was
 * killed converges when run again.
 */

import { SpireServerCli } from '../federation/spire-cli.js';
import { podServerTransport } from '../federation/transport.js';
import type { Fleet } from '../fleet/model.js';
import { peersOf } from '../fleet/model.js';
import { type ClusterClient, describeRef, type KubeObject, refOf } from '../kube/client.js';
import { waitHealthy } from '../kube/wait.js';
import { PHASE_LABEL } from '../render/meta.js';
import type { RenderInputs } from '../render/types.js';
import {
  type Applied,
  applyObjects,
  type Counts,
  countsOf,
  ENGINE_PHASES,
  type EnginePhase,
  strongest,
} from './apply.js';
import { BootstrapError, bootstrapUntilDone } from './bootstrap.js';
import { type DesiredSources, desiredPhase, identity, prefetchIstio, type Step } from './desired.js';
import { BUNDLE_ENDPOINT_SERVICE, EAST_WEST_SERVICE, SPIRE_SERVER_POD, serviceAddress } from './discover.js';
import { federationMember } from './federation.js';
import { ownedObjects } from './inventory.js';
import type { ProgressStore } from './progress.js';
import { readerRemoteSecret } from './remote-secrets.js';
import { type RemovalGroup, removeInOrder } from './removal.js';

export interface EngineEvent {
  cluster?: string;
  phase?: EnginePhase;
  kind: 'phase-start' | 'phase-done' | 'progress' | 'warning';
  message: string;
  counts?: Counts;
}

export interface UpOptions extends DesiredSources {
  fleet: Fleet;
  /** A client for each cluster's context. */
  clients: Map<string, ClusterClient>;
  dryRun?: boolean;
  force?: boolean;
  /** Bound of each wait (ms, default 300 s). */
  timeoutMs?: number;
  progress?: ProgressStore;
  onEvent?: (e: EngineEvent) => void;
}

export interface PhaseResult {
  phase: EnginePhase;
  counts: Counts;
  /** Objects of this phase pruned (at the end of the run, after every phase applied). */
  pruned: number;
  seconds: number;
  /** Dry run: what could not be done without doing the phases before. */
  notes: string[];
}

export interface ClusterResult {
  cluster: string;
  phases: PhaseResult[];
  /** What was pruned, in the order deleted: "Deployment sleep/sleep". */
  pruned: string[];
}

export interface UpResult {
  clusters: ClusterResult[];
  bundleEndpoints: Record<string, string>;
  eastWestGateways: Record<string, string>;
  writes: number;
}

export interface ClusterFailure {
  cluster: string;
  phase: EnginePhase;
  error: string;
  /** The peers whose failure stopped this cluster; absent when the failure is its own. */
  stoppedBy?: string[];
}

export class UpError extends Error {
  override name = 'UpError';
  constructor(
    message: string,
    readonly failures: ClusterFailure[],
  ) {
    super(message);
  }
}

/**
 * What a cluster is stopped with when a peer failed (at a barrier, or in
 * the peer's part of the federation bootstrap): not a failure of its own.
 * It names the peers, not their error, which is reported under them.
 */
export class PeerFailedError extends Error {
  override name = 'PeerFailedError';
  constructor(readonly peers: string[]) {
    super(`stopped because ${peers.join(', ')} failed`);
  }
}

/**
 * What the shared federation bootstrap's failure means for one cluster: its
 * own error for the pairs that failed in its part (each error once), else
 * stopped because of the clusters at fault. By the error's type, never by
 * its message.
 */
export function bootstrapFailureFor(cluster: string, e: unknown): Error {
  if (!(e instanceof BootstrapError)) return e as Error;
  return e.errorOf(cluster) ?? new PeerFailedError(e.atFault);
}

/**
 * The error of a run in which clusters failed: one line per cluster, those
 * that failed themselves first (with their error), then those stopped by a
 * peer (naming it), so that each cause is told once, under its cluster.
 */
export function upError(failures: Array<{ cluster: string; phase: EnginePhase; error: unknown }>): UpError {
  const listed: ClusterFailure[] = failures.map(({ cluster, phase, error }) => ({
    cluster,
    phase,
    error: (error as Error).message,
    ...(error instanceof PeerFailedError ? { stoppedBy: error.peers } : {}),
  }));
  const ordered = [...listed.filter((f) => !f.stoppedBy), ...listed.filter((f) => f.stoppedBy)];
  return new UpError(ordered.map((f) => `${f.cluster}: ${f.phase}: ${f.error}`).join('\n'), ordered);
}

/**
 * A meeting point for the clusters of a phase: each arrives with a value;
 * `all` resolves once every cluster has arrived, and rejects as soon as one
 * has failed, so no cluster waits for a peer that will never come.
 */
class Barrier<T> {
  private readonly values = new Map<string, T>();
  private readonly waiters: Array<{ resolve: (m: Map<string, T>) => void; reject: (e: Error) => void }> = [];
  /** The clusters at fault, once one has failed. */
  private failed: string[] | undefined;
  constructor(private readonly names: string[]) {}
  arrive(name: string, value: T) {
    this.values.set(name, value);
    if (this.values.size === this.names.length)
      for (const w of this.waiters.splice(0)) w.resolve(this.values);
  }
  /** `atFault`: the clusters whose failure stops the others. */
  fail(atFault: string[]) {
    if (this.failed) return;
    this.failed = atFault;
    // An error per waiter: each cluster marks its own with the phase it stopped in.
    for (const w of this.waiters.splice(0)) w.reject(new PeerFailedError(atFault));
  }
  all(): Promise<Map<string, T>> {
    if (this.failed) return Promise.reject(new PeerFailedError(this.failed));
    if (this.values.size === this.names.length) return Promise.resolve(this.values);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}

export async function up(o: UpOptions): Promise<UpResult> {
  const { fleet } = o;
  const names = fleet.clusters.map((c) => c.name);
  const emit = o.onEvent ?? (() => {});
  const timeoutMs = o.timeoutMs ?? 300_000;
  const bundleEndpoints: Record<string, string> = {};
  const eastWest: Record<string, string> = {};
  for (const c of fleet.clusters)
    if (c.bundleEndpoint.address) bundleEndpoints[c.name] = c.bundleEndpoint.address;
  const barriers = {
    endpoints: new Barrier<string | undefined>(names),
    spire: new Barrier<true>(names),
    istio: new Barrier<true>(names),
    remoteSecret: new Barrier<KubeObject | undefined>(names),
  };
  /** Releases the peers waiting for `cluster`, naming the clusters at fault: it, or the peers that stopped it. */
  const failAll = (cluster: string, e: unknown) => {
    const atFault = e instanceof PeerFailedError ? e.peers : [cluster];
    for (const b of Object.values(barriers)) b.fail(atFault);
  };
  let federation: Promise<void> | undefined;

  const clientOf = (cluster: string) => {
    const spec = fleet.clusters.find((c) => c.name === cluster)!;
    const client = o.clients.get(spec.context);
    if (!client) throw new Error(`no client for context ${spec.context}`);
    return client;
  };

  const runCluster = async (cluster: string): Promise<ClusterResult> => {
    const client = clientOf(cluster);
    const result: ClusterResult = { cluster, phases: [], pruned: [] };
    const progress = (phase: EnginePhase) => (message: string) =>
      emit({ cluster, phase, kind: 'progress', message });
    prefetchIstio(fleet, cluster, { bundleEndpoints: { ...bundleEndpoints } }, o);
    const owned = o.dryRun ? [] : await ownedObjects(client, fleet.name);
    // What meshfed owns is applied onto as the inventory read it, unless it changed since (apply.ts onlyOntoKnown).
    const known = new Map(owned.map((x) => [identity(x), x]));

    /** Applies each step, then waits for it to be healthy (unless `wait` is false or in a dry run). */
    const applySteps = async (
      phase: EnginePhase,
      steps: Step[],
      wait = true,
      afterStep?: (i: number) => void,
    ): Promise<Applied[]> => {
      const all: Applied[] = [];
      for (const [i, step] of steps.entries()) {
        if (!step.objects.length) continue;
        progress(phase)(
          `applying ${step.label} (${step.objects.length} objects)${o.dryRun ? ', server-side dry run' : ''}`,
        );
        const applied = await applyObjects(client, step.objects, {
          fleet: fleet.name,
          phase,
          timeoutMs,
          onProgress: progress(phase),
          known,
          ...(o.dryRun ? { dryRun: true } : {}),
          ...(o.force ? { force: true } : {}),
        });
        all.push(...applied);
        if (wait && !o.dryRun)
          await waitHealthy(client, step.objects.map(refOf), {
            // The apply's answers are the objects as stored: only what is not healthy in them is read again.
            known: applied.map((a) => a.object),
            timeoutMs,
            onProgress: progress(phase),
          });
        afterStep?.(i);
      }
      return all;
    };

    /**
     * Istio's CRDs, applied ahead of the istio phase and waited for until
     * established, once cert-manager's release is up: while the run waits on
     * certificates being issued and SPIRE servers starting, not on the
     * critical path of the istio phase. CRDs depend on nothing else meshfed
     * applies. The istio phase takes these answers and does not send the same
     * CRDs again; a failure here is the istio phase's, reported there.
     */
    let istioCrds: Promise<{ applied: Applied[]; sent: Map<string, string> }> | undefined;
    const applyIstioCrdsEarly = (phase: EnginePhase) => {
      if (o.dryRun || istioCrds) return;
      istioCrds = (async () => {
        const want = await desiredPhase(fleet, cluster, 'istio', inputs(), o);
        const crds = want.steps
          .flatMap((s) => s.objects)
          .filter((x) => x.kind === 'CustomResourceDefinition');
        const sent = new Map(crds.map((x) => [identity(x), JSON.stringify(x)]));
        if (!crds.length) return { applied: [], sent };
        progress(phase)(`applying Istio's CRDs ahead of its phase (${crds.length} objects)`);
        const applied = await applyObjects(client, crds, {
          fleet: fleet.name,
          phase: 'istio',
          timeoutMs,
          known,
          ...(o.force ? { force: true } : {}),
        });
        return { applied, sent };
      })();
      istioCrds.catch(() => {}); // the istio phase awaits it and reports its failure
    };
    const inputs = (): RenderInputs => ({ bundleEndpoints: { ...bundleEndpoints } });

    /** Removes what meshfed owns here and no phase wants (`wanted`: every phase's objects), as `down` does. */
    const prune = async (wanted: KubeObject[]): Promise<void> => {
      const keep = new Set(wanted.map(identity));
      const stale = owned.filter((x) => !keep.has(identity(x)));
      if (!stale.length) return;
      const on = (g: RemovalGroup) => ({ cluster, ...(g.phase ? { phase: g.phase } : {}) });
      let pruned: KubeObject[];
      try {
        pruned = await removeInOrder(client, stale, {
          timeoutMs,
          verb: 'pruning',
          onGroup: (g, n) =>
            emit({ ...on(g), kind: 'progress', message: `pruning ${n} ${g.noun} the fleet no longer has` }),
          onProgress: (g, message) => emit({ ...on(g), kind: 'progress', message }),
          onGroupDone: (g, gone) =>
            emit({ ...on(g), kind: 'progress', message: `pruned ${gone.length} ${g.noun}` }),
        });
      } catch (e) {
        const phase = (e as { group?: RemovalGroup }).group?.phase ?? 'namespaces';
        o.progress?.phaseFailed(cluster, phase, `pruning: ${(e as Error).message}`);
        throw Object.assign(e as Error, { phase });
      }
      for (const x of pruned) {
        const p = result.phases.find((r) => r.phase === x.metadata.labels?.[PHASE_LABEL]);
        if (p) p.pruned++;
      }
      result.pruned = pruned.map((x) => describeRef(refOf(x)));
    };
    const wantedByAll: KubeObject[] = [];
    /** Every cluster's bundle endpoint, once each has found its own (or stopped). */
    const knowEndpoints = async () => {
      for (const [n, a] of await barriers.endpoints.all()) if (a) bundleEndpoints[n] = a;
      o.progress?.record({ bundleEndpoints });
    };

    for (const phase of ENGINE_PHASES) {
      const t0 = Date.now();
      emit({ cluster, phase, kind: 'phase-start', message: phase });
      o.progress?.phaseStarted(cluster, phase);
      const notes: string[] = [];
      let applied: Applied[] = [];
      let wanted: KubeObject[] = [];
      try {
        switch (phase) {
          case 'spire': {
            const first = await desiredPhase(fleet, cluster, 'spire', inputs(), o);
            // What can be applied now; not waited for, since the server cannot be healthy before its held-back config exists.
            applied = await applySteps(phase, first.steps, false);
            let address: string | undefined = bundleEndpoints[cluster];
            if (!address) {
              if (o.dryRun) {
                notes.push('the bundle endpoint address is discovered once its Service exists');
              } else {
                address = await serviceAddress(
                  client,
                  { ...BUNDLE_ENDPOINT_SERVICE },
                  { timeoutMs, onProgress: progress(phase) },
                );
                progress(phase)(`bundle endpoint at https://${address}`);
              }
            }
            barriers.endpoints.arrive(cluster, address);
            // A server's config that names its peers' bundle endpoints (static federation, the seed's) waits for
            // every cluster's; where federation is dynamic (ClusterFederatedTrustDomains), only that phase does.
            if (first.pending.length) await knowEndpoints();
            else if (address) {
              bundleEndpoints[cluster] = address;
              o.progress?.record({ bundleEndpoints });
            }
            const full = await desiredPhase(fleet, cluster, 'spire', inputs(), o);
            if (full.pending.length && !o.dryRun)
              throw new Error(
                `still missing: ${full.pending.map((p) => `${p.what} of ${p.cluster}`).join(', ')}`,
              );
            for (const p of full.pending)
              notes.push(`held back until ${p.cluster}'s ${p.what} is known: ${p.heldBack.join(', ')}`);
            applied = strongest([...applied, ...(await applySteps(phase, full.steps))]);
            wanted = full.steps.flatMap((s) => s.objects);
            barriers.spire.arrive(cluster, true);
            break;
          }
          case 'federation': {
            await knowEndpoints();
            if (o.dryRun) {
              notes.push('bootstrap and relationships need running SPIRE servers: not in a dry run');
              const want = await desiredPhase(fleet, cluster, 'federation', inputs(), o);
              applied = await applySteps(phase, want.steps);
              break;
            }
            await barriers.spire.all();
            federation ??= bootstrapFleet(o, clientOf, bundleEndpoints, (m) =>
              emit({ phase, kind: 'progress', message: m }),
            );
            await federation.catch((e: unknown) => {
              throw bootstrapFailureFor(cluster, e);
            });
            const want = await desiredPhase(fleet, cluster, 'federation', inputs(), o);
            applied = await applySteps(phase, want.steps);
            wanted = want.steps.flatMap((s) => s.objects);
            if (fleet.versions.registrar === 'spire-controller-manager')
              await waitRelationships(client, fleet, cluster, bundleEndpoints, timeoutMs, progress(phase));
            break;
          }
          case 'istio': {
            const want = await desiredPhase(fleet, cluster, 'istio', inputs(), o);
            for (const w of want.warnings) emit({ cluster, phase, kind: 'warning', message: w });
            const early = istioCrds ? await istioCrds : { applied: [], sent: new Map<string, string>() };
            const rest = want.steps.map((s) => ({
              ...s,
              objects: s.objects.filter((x) => {
                const sent = early.sent.get(identity(x));
                return sent === undefined || sent !== JSON.stringify(x);
              }),
            }));
            applied = [...early.applied, ...(await applySteps(phase, rest))];
            wanted = want.steps.flatMap((s) => s.objects);
            const spec = fleet.clusters.find((c) => c.name === cluster)!;
            if (!o.dryRun) {
              eastWest[cluster] =
                spec.eastWestGateway.address ??
                (await serviceAddress(client, EAST_WEST_SERVICE, { timeoutMs, onProgress: progress(phase) }));
              progress(phase)(`east-west gateway at ${eastWest[cluster]}`);
              o.progress?.record({ eastWestGateways: eastWest });
            }
            barriers.istio.arrive(cluster, true);
            break;
          }
          case 'remote-secrets': {
            if (o.dryRun) {
              notes.push("remote secrets carry each peer's reader token: not in a dry run");
              barriers.remoteSecret.arrive(cluster, undefined);
              break;
            }
            await barriers.istio.all();
            const mine = await readerRemoteSecret(client, cluster, { fleet: fleet.name, phase, timeoutMs });
            wanted.push(...mine.applied.map((a) => a.object));
            barriers.remoteSecret.arrive(cluster, storedForm(mine.secret));
            const secrets = await barriers.remoteSecret.all();
            const peers = peersOf(fleet, cluster).map((p) => secrets.get(p.name)!);
            wanted.push(...peers);
            progress(phase)(
              `writing the remote secrets of ${
                peersOf(fleet, cluster)
                  .map((p) => p.name)
                  .join(', ') || 'no peer'
              }`,
            );
            applied = [
              ...mine.applied,
              ...(await applyObjects(client, peers, { fleet: fleet.name, phase, timeoutMs })),
            ];
            break;
          }
          default: {
            const want = await desiredPhase(fleet, cluster, phase, inputs(), o);
            // Once cert-manager's release is up, Istio's CRDs go in while its issuers and SPIRE start.
            applied = await applySteps(phase, want.steps, true, (i) => {
              if (phase === 'cert-manager' && i === 0) applyIstioCrdsEarly(phase);
            });
            wanted = want.steps.flatMap((s) => s.objects);
          }
        }
        wantedByAll.push(...wanted);
        const r: PhaseResult = {
          phase,
          counts: countsOf(applied),
          pruned: 0,
          seconds: (Date.now() - t0) / 1000,
          notes,
        };
        result.phases.push(r);
        o.progress?.phaseDone(cluster, phase, r.counts);
        emit({ cluster, phase, kind: 'phase-done', message: phase, counts: r.counts });
      } catch (e) {
        const why = (e as Error).message;
        o.progress?.phaseFailed(cluster, phase, why);
        failAll(cluster, e);
        throw Object.assign(e as Error, { phase });
      }
    }
    if (!o.dryRun) await prune(wantedByAll);
    return result;
  };

  o.progress?.runStarted(fleet, o.dryRun ?? false);
  const settled = await Promise.allSettled(
    names.map((n) =>
      // Whatever stops a cluster (its inventory, a phase) releases the peers waiting for it.
      runCluster(n).catch((e: unknown) => {
        failAll(n, e);
        throw e;
      }),
    ),
  );
  const failures = settled.flatMap((s, i) =>
    s.status === 'rejected'
      ? [
          {
            cluster: names[i]!,
            phase: ((s.reason as { phase?: EnginePhase }).phase ?? 'namespaces') as EnginePhase,
            error: s.reason,
          },
        ]
      : [],
  );
  if (failures.length) throw upError(failures);
  const clusters = settled.map((s) => (s as PromiseFulfilledResult<ClusterResult>).value);
  const writes = clusters.reduce(
    (n, c) => c.phases.reduce((m, p) => m + p.counts.created + p.counts.updated, n) + c.pruned.length,
    0,
  );
  o.progress?.runDone();
  return { clusters, bundleEndpoints, eastWestGateways: eastWest, writes };
}

/**
 * A Secret in the form the API server stores it: `stringData` (write-only,
 * never read back) as base64 `data`, so that applying it again is a no-op
 * that server-side apply can see as one.
 */
export function storedForm(secret: KubeObject): KubeObject {
  const { stringData, ...rest } = secret as KubeObject & { stringData?: Record<string, string> };
  if (!stringData) return secret;
  const data = Object.fromEntries(
    Object.entries(stringData).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
  );
  return { ...rest, data: { ...((rest.data as Record<string, string> | undefined) ?? {}), ...data } };
}

/** Every federated pair's bundles, through pod exec into each cluster's SPIRE server. */
async function bootstrapFleet(
  o: UpOptions,
  clientOf: (cluster: string) => ClusterClient,
  bundleEndpoints: Record<string, string>,
  progress: (m: string) => void,
): Promise<void> {
  const members = o.fleet.clusters.map((c) =>
    federationMember(c, clientOf(c.name), bundleEndpoints[c.name]!),
  );
  return bootstrapUntilDone(members, o.fleet.federation.pairs, {
    timeoutMs: o.timeoutMs ?? 300_000,
    progress,
  });
}

/** Waits until spire-controller-manager has made each relationship in the cluster's server. */
async function waitRelationships(
  client: ClusterClient,
  fleet: Fleet,
  cluster: string,
  bundleEndpoints: Record<string, string>,
  timeoutMs: number,
  progress: (m: string) => void,
): Promise<void> {
  const server = new SpireServerCli(podServerTransport(client, SPIRE_SERVER_POD));
  const want = peersOf(fleet, cluster).map((p) => ({
    td: p.trustDomain,
    url: `https://${bundleEndpoints[p.name]}`,
  }));
  const deadline = Date.now() + timeoutMs;
  let said = '';
  for (;;) {
    let lastError: Error | undefined;
    const have = await server.relationships().catch((e: unknown) => {
      lastError = e as Error;
      return undefined;
    });
    const missing = want.filter(
      (w) => !have?.some((r) => r.trustDomain === w.td && r.bundleEndpointUrl === w.url),
    );
    if (have && !missing.length) return;
    const line = `waiting for spire-controller-manager to make the relationships with ${missing.map((m) => m.td).join(', ')}`;
    if (Date.now() > deadline)
      throw new Error(
        `${line}: not done after ${Math.round(timeoutMs / 1000)} s${lastError ? ` (last error: ${lastError.message})` : ''}`,
        lastError ? { cause: lastError } : {},
      );
    if (line !== said) {
      said = line;
      progress(line);
    }
    await new Promise((r) => setTimeout(r, 1_000));
  }
}
