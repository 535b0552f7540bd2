/**
 * The federation bootstrap as `up` runs it: every federated pair's bundles,
 * tried again while a SPIRE server is still starting, within a bound. A
 * failure a retry cannot heal ends it at once, named: a refusal (a bundle
 * that does not authenticate its trust domain's endpoint), credentials or
 * permissions the API server does not accept, a SPIRE answer like
 * PermissionDenied. What has no type to judge by (spire-server failing
 * without a gRPC code, a pod exec that fails to open) is tried again, as a
 * server starting looks like that.
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
      throw new Error(
        `the bootstrap cannot succeed, not retried: ${final.map((x) => `${describeStep(x.f)} (${x.c.why})`).join('; ')}`,
        { cause: final[0]!.f.cause },
      );
    if (Date.now() > deadline)
      throw new Error(
        `the bootstrap still fails after ${Math.round(run.timeoutMs / 1000)} s: ${failed.map(describeStep).join('; ')}`,
        { cause: failed[0]!.cause },
      );
    progress(`retrying the bootstrap: ${describeStep(failed[0]!).split('\n')[0]}`);
    await new Promise((r) => setTimeout(r, run.intervalMs ?? 2_000));
  }
}
