/**
 * Bounded waits for health. Every wait has a timeout and an interval; it
 * reports progress when what is pending changes (and at most every
 * `progressEveryMs` otherwise), and a timeout names every object still not
 * Healthy with what it is waiting for and the last error seen reading it.
 * A Degraded object ends the wait at once: waiting longer will not help; so
 * does an error reading an object that a retry cannot heal (401, 403, TLS).
 */
import { type ClusterClient, describeRef, type ObjectRef } from './client.js';
import { classify } from './errors.js';
import { type Health, healthOf, type ObjectState } from './health.js';

export interface WaitOptions {
  /**
   * Objects of `refs` as just read (an apply's answers): their first health
   * is taken from them, so only those not Healthy yet are read again.
   */
  known?: ObjectState[];
  timeoutMs?: number;
  intervalMs?: number;
  progressEveryMs?: number;
  onProgress?: (line: string) => void;
}

export class WaitError extends Error {
  override name = 'WaitError';
  constructor(
    message: string,
    /** Each object not Healthy when the wait ended, with its last health. */
    readonly pending: Array<{ ref: ObjectRef; health: Health }>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Waits until every object is Healthy; resolves with the time it took. */
export async function waitHealthy(
  client: ClusterClient,
  refs: ObjectRef[],
  o: WaitOptions = {},
): Promise<number> {
  const timeoutMs = o.timeoutMs ?? 300_000;
  const t0 = Date.now();
  const state = new Map<string, { ref: ObjectRef; health: Health; error?: string }>(
    refs.map((r) => [describeRef(r), { ref: r, health: { status: 'Unknown', message: 'not read yet' } }]),
  );
  for (const k of o.known ?? []) {
    const { name = '', namespace } = k.metadata ?? {};
    const s = state.get(
      describeRef({
        apiVersion: k.apiVersion ?? '',
        kind: k.kind ?? '',
        name,
        ...(namespace ? { namespace } : {}),
      }),
    );
    if (s) s.health = healthOf(k);
  }
  let lastLine = '';
  let lastAt = 0;
  for (;;) {
    await Promise.all(
      [...state.values()]
        .filter((s) => s.health.status !== 'Healthy')
        .map(async (s) => {
          try {
            s.health = healthOf((await client.get(s.ref)) as ObjectState | undefined);
            delete s.error;
          } catch (e) {
            s.error = (e as Error).message;
            const c = classify(e);
            // 401, 403, a TLS failure: reading it again will not help, so the wait ends now, saying why.
            // (Not a 404: a kind not served yet, just after an API server restart, can come back.)
            if (c.kind === 'unauthorized' || c.kind === 'forbidden' || c.kind === 'tls')
              throw new WaitError(
                `${client.context}: cannot read ${describeRef(s.ref)} while waiting for it (${c.why}): ${s.error}`,
                [{ ref: s.ref, health: s.health }],
                { cause: e },
              );
          }
        }),
    );
    const pending = [...state.values()].filter((s) => s.health.status !== 'Healthy');
    if (pending.length === 0) return Date.now() - t0;
    const degraded = pending.filter((s) => s.health.status === 'Degraded');
    const describe = (list: typeof pending) =>
      list
        .map(
          (s) =>
            `${describeRef(s.ref)}: ${s.health.status}${s.health.message ? `, ${s.health.message}` : ''}${s.error ? ` (last error: ${s.error})` : ''}`,
        )
        .join('; ');
    if (degraded.length)
      throw new WaitError(
        `${client.context}: ${describe(degraded)}`,
        degraded.map((s) => ({ ref: s.ref, health: s.health })),
      );
    if (Date.now() - t0 > timeoutMs)
      throw new WaitError(
        `${client.context}: not healthy after ${Math.round(timeoutMs / 1000)} s: ${describe(pending)}`,
        pending.map((s) => ({ ref: s.ref, health: s.health })),
      );
    const first = pending[0]!;
    const line = `${client.context}: waiting for ${describeRef(first.ref)} (${first.health.message || first.health.status})${pending.length > 1 ? ` and ${pending.length - 1} more` : ''}`;
    if (o.onProgress && (line !== lastLine || Date.now() - lastAt > (o.progressEveryMs ?? 10_000))) {
      o.onProgress(line);
      lastLine = line;
      lastAt = Date.now();
    }
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 500));
  }
}
