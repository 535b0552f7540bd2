/**
 * The federation bootstrap as `up` runs it: every federated pair's bundles,
 * tried again while a SPIRE server is still starting, within a bound. A
 * failure a retry cannot heal ends it at once, named: a refusal (a bundle
 * that does not authenticate its trust domain's endpoint), credentials or
 * permissions the API server does not accept, a SPIRE answer like
 * PermissionDenied. What has no type to judge by (spire-server failing
 * without a gRPC code, a pod exec that fails to open) is tried again, as a
 * server starting looks like that.
 *
 * A failure is filed under the cluster whose part failed (the federation
 * engine's `failedAt`): the peer's, when its server could not give its
 * bundle or the bundle does not authenticate its endpoint; the holder's,
 * when its own server could not list or take it. `up` reports it once,
 * under that cluster, and every other cluster as stopped because of it.
 */
import { bootstrap, type FederationMember, type Pair, type PairStep } from '../federation/engine.js';
import { classify, type ErrorClass } from '../kube/errors.js';

export interface BootstrapRun {
  /** Bound for the whole bootstrap (ms). */
  timeoutMs: number;
  /** Pause between tries (ms, default 2 s). */
  intervalMs?: number;
  progress?: (line: string) => void;
}

const describeStep = (f: PairStep) => `${f.holder} ← ${f.peer}: ${f.error}`;

/** One failed pair, filed under the cluster at fault. */
export interface BootstrapFailure {
  /** The cluster whose part failed: the peer or the holder. */
  cluster: string;
  holder: string;
  peer: string;
  /** The error, with why it was not retried when it was not. */
  error: string;
  cause: unknown;
}

/** The bootstrap failed: what failed, per pair, and which cluster is at fault for each. */
export class BootstrapError extends Error {
  override name = 'BootstrapError';
  constructor(
    /** "the bootstrap cannot succeed, not retried" */
    readonly headline: string,
    readonly failures: BootstrapFailure[],
  ) {
    super(
      `${headline}: ${atFault(failures)
        .map((c) => grouped(failures, c))
        .join('; ')}`,
      {
        cause: failures[0]?.cause,
      },
    );
  }

  /** The clusters at fault, in the order their failures came. */
  get atFault(): string[] {
    return atFault(this.failures);
  }

  /** What failed in `cluster`'s part, each error once, with the pairs it stopped; undefined when nothing did. */
  errorOf(cluster: string): Error | undefined {
    const mine = this.failures.filter((f) => f.cluster === cluster);
    if (!mine.length) return undefined;
    return new Error(`${this.headline}: ${grouped(mine, cluster)}`, { cause: mine[0]!.cause });
  }
}

const atFault = (failures: BootstrapFailure[]) => [...new Set(failures.map((f) => f.cluster))];

/** "cluster-1 ← cluster-2, cluster-3 ← cluster-2: <error>": a cluster's failures, one per distinct error. */
function grouped(failures: BootstrapFailure[], cluster: string): string {
  const byError = new Map<string, string[]>();
  for (const f of failures.filter((x) => x.cluster === cluster))
    byError.set(f.error, [...(byError.get(f.error) ?? []), `${f.holder} ← ${f.peer}`]);
  return [...byError].map(([error, pairs]) => `${pairs.join(', ')}: ${error}`).join('; ');
}

/** The failure of a step, filed under the cluster at fault. */
function failureOf(f: PairStep, why?: string): BootstrapFailure {
  return {
    cluster: f.failedAt === 'holder' ? f.holder : f.peer,
    holder: f.holder,
    peer: f.peer,
    error: `${f.error}${why ? ` (${why})` : ''}`,
    cause: f.cause,
  };
}

/** Whether another try of a failed pair can succeed. */
function worthRetrying(c: ErrorClass): boolean {
  return c.retry || c.kind === 'unknown';
}

export async function bootstrapUntilDone(
  members: FederationMember[],
  pairs: Pair[],
  run: BootstrapRun,
): Promise<void> {
  const progress = run.progress ?? (() => {});
  progress(`bootstrapping ${pairs.length} federated pairs`);
  const deadline = Date.now() + run.timeoutMs;
  for (;;) {
    const steps = await bootstrap(members, pairs);
    const failed = steps.filter((s) => s.result === 'failed');
    if (!failed.length) {
      const n = (r: string) => steps.filter((s) => s.result === r).length;
      progress(`bundles: ${n('created')} set, ${n('updated')} updated, ${n('unchanged')} already current`);
      return;
    }
    const final = failed.map((f) => ({ f, c: classify(f.cause) })).filter((x) => !worthRetrying(x.c));
    if (final.length)
      throw new BootstrapError(
        'the bootstrap cannot succeed, not retried',
        final.map((x) => failureOf(x.f, x.c.why)),
      );
    if (Date.now() > deadline)
      throw new BootstrapError(
        `the bootstrap still fails after ${Math.round(run.timeoutMs / 1000)} s`,
        failed.map((f) => failureOf(f)),
      );
    progress(`retrying the bootstrap: ${describeStep(failed[0]!).split('\n')[0]}`);
    await new Promise((r) => setTimeout(r, run.intervalMs ?? 2_000));
  }
}
