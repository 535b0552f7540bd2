/**
 * The check catalog's shape and its runner. A check has a stable code
 * (MF1xx before `up`, MF2xx the control plane after it, MF3xx the data
 * plane: `meshfed verify`), a category, a severity, a description, a hint
 * (the command or docs anchor that fixes what failed) and an async function
 * returning findings. A finding is about the fleet or one cluster (or one
 * holder ← peer direction); the runner folds a check's findings into one
 * result whose status is the worst of them, so that a problem of several
 * clusters is one line naming them.
 *
 * Fatal checks (MF101: the API servers answer) run first, whatever `--only`
 * says, as linkerd's kubernetes-api category does: a cluster a fatal check
 * failed on is blocked, and every later finding about it is `not-run`
 * *because of* that check (named in the finding), never `passed` and never
 * silently `skipped`; so one cause reads as one cause, and the run fails.
 *
 * A check that changes the clusters (MF302 deletes and restores each
 * helloworld Service) runs alone: the checks before it in the catalog have
 * ended when it starts, and the ones after it start when it has ended, so
 * no other check reads a cluster it is changing. The others run a few at a
 * time.
 *
 * Nothing here prints: observers get each result as it completes, renderers
 * (format.ts) turn the results into a table or JSON.
 */

/**
 * `not-run`: the check could not run for a cluster because a fatal check
 * failed there (the finding's `because`); it fails the run like `failed`,
 * but is not a verdict on what the check looks at.
 */
export type Status = 'passed' | 'warning' | 'failed' | 'not-run' | 'skipped';

/** Every status, from the least to the most severe (the order of `worst`). */
export const STATUSES: readonly Status[] = ['skipped', 'passed', 'warning', 'not-run', 'failed'];

/** What a failing finding of a check means: `error` fails the check, `warning` only warns. */
export type Severity = 'error' | 'warning';

export type Category =
  | 'fleet'
  | 'kubernetes'
  | 'permissions'
  | 'phases'
  | 'spire'
  | 'federation'
  | 'istio'
  | 'remote-secrets'
  | 'gateways'
  | 'traffic'
  | 'identity'
  | 'trust-chain'
  | 'rotation';

/** `pre`: before `up` (`check --pre`); `post`: after `up` (`check`); `verify`: the data plane (`verify`). */
export type Stage = 'pre' | 'post' | 'verify';

export interface Finding {
  /** passed / failed / warning / not-run / skipped; a `failed` finding of a `warning` check is reported as a warning. */
  status: Status;
  /** For `not-run`: the code of the fatal check that failed for this cluster (MF101). */
  because?: string;
  /** The cluster it is about (absent: the fleet as a whole). */
  cluster?: string;
  message: string;
  /** Structured facts for JSON output and the report (counts, distributions, ages). */
  data?: Record<string, unknown>;
}

export interface CheckDef<C> {
  code: string;
  title: string;
  category: Category;
  severity: Severity;
  stage: Stage;
  description: string;
  /** How to fix a failure: a command or a docs anchor. */
  hint: string;
  /**
   * Runs before the others, whatever `--only` says; a cluster it fails on is
   * blocked: the other checks' findings about it become `not-run` because of it.
   */
  fatal?: boolean;
  /** For a fatal check: what its failure means for the cluster ("the cluster is unreachable"). */
  blocking?: string;
  /**
   * It changes the clusters while it runs (deletes, then restores, an
   * object): the runner runs it alone, never beside another check, which
   * would read the change.
   */
  changesClusters?: boolean;
  run(ctx: C): Promise<Finding[]>;
}

export interface CheckResult {
  code: string;
  title: string;
  category: Category;
  severity: Severity;
  status: Status;
  /** One line: what passed, or which clusters failed and why. */
  summary: string;
  hint?: string;
  findings: Finding[];
  durationMs: number;
}

const RANK = Object.fromEntries(STATUSES.map((s, i) => [s, i])) as Record<Status, number>;

export function worst(statuses: Status[]): Status {
  return statuses.reduce<Status>((w, s) => (RANK[s] > RANK[w] ? s : w), 'skipped');
}

/** A failed finding of a warning-severity check counts as a warning. */
function effective(severity: Severity, f: Finding): Finding {
  return severity === 'warning' && f.status === 'failed' ? { ...f, status: 'warning' } : f;
}

/**
 * One line for a check's findings: the worst ones, each naming its clusters;
 * up to `limit` distinct messages (a fatal check's summary names them all).
 */
export function summarize(findings: Finding[], limit = 4): string {
  const status = worst(findings.map((f) => f.status));
  if (!findings.length) return 'nothing to check';
  if (status === 'not-run') return notRunSummary(findings);
  const these = findings.filter((f) => f.status === status);
  if (status === 'passed' || status === 'skipped') {
    const msgs = [...new Set(these.map((f) => f.message))];
    return msgs.length === 1
      ? `${msgs[0]}${these.length > 1 && these.every((f) => f.cluster) ? ` (${these.map((f) => f.cluster).join(', ')})` : ''}`
      : `${these.length} ${status}: ${msgs.slice(0, 3).join('; ')}${msgs.length > 3 ? '; …' : ''}`;
  }
  // Group by message: "failed on cluster-1, cluster-2: <message>" when they say the same.
  const byMessage = new Map<string, string[]>();
  for (const f of these)
    byMessage.set(f.message, [...(byMessage.get(f.message) ?? []), ...(f.cluster ? [f.cluster] : [])]);
  const parts = [...byMessage].map(([m, cs]) => (cs.length ? `${cs.join(', ')}: ${m}` : m));
  return `${status}: ${parts.slice(0, limit).join('; ')}${parts.length > limit ? `; and ${parts.length - limit} more` : ''}`;
}

/** "not run because of MF101 on cluster-2 (…); passed on cluster-1": what could not run, and what did. */
function notRunSummary(findings: Finding[]): string {
  const notRun = findings.filter((f) => f.status === 'not-run');
  const because = [...new Set(notRun.map((f) => f.because ?? '?'))].join(', ');
  const byMessage = new Map<string, string[]>();
  for (const f of notRun) {
    // The line already says "not run": the finding's own prefix would say it twice.
    const m = f.message.replace(/^not run: /, '');
    byMessage.set(m, [...(byMessage.get(m) ?? []), ...(f.cluster ? [f.cluster] : [])]);
  }
  const parts = [...byMessage].map(([m, cs]) => (cs.length ? `${cs.join(', ')}: ${m}` : m));
  const ran = findings.filter((f) => f.status !== 'not-run' && f.cluster);
  const rest = STATUSES.filter((s) => s !== 'not-run')
    .map((s) => [s, [...new Set(ran.filter((f) => f.status === s).map((f) => f.cluster!))]] as const)
    .filter(([, cs]) => cs.length)
    .map(([s, cs]) => `${s} on ${cs.join(', ')}`);
  return `not run because of ${because}: ${parts.slice(0, 4).join('; ')}${parts.length > 4 ? `; and ${parts.length - 4} more` : ''}${rest.length ? `; ${rest.join('; ')}` : ''}`;
}

export interface RunOptions {
  /** Called with each result as soon as it is known (progress). */
  observe?: (r: CheckResult) => void;
  /** Only these codes (or categories). */
  only?: string[];
  /** How many checks run at once (default 4). */
  concurrency?: number;
}

/** The checks `only` names, and the fatal ones always (first, in catalog order). */
export function selected<C>(checks: CheckDef<C>[], only: string[] | undefined): CheckDef<C>[] {
  const picked = only?.length
    ? checks.filter((c) => c.fatal || only.includes(c.code) || only.includes(c.category))
    : checks;
  return [...picked.filter((c) => c.fatal), ...picked.filter((c) => !c.fatal)];
}

/** A finding about a blocked cluster, as not run because of the fatal check that blocked it. */
function blockedFinding(f: Finding, blocked: Map<string, { code: string; blocking: string }>): Finding {
  const b = f.cluster === undefined ? undefined : blocked.get(f.cluster);
  if (!b || f.status === 'not-run') return f;
  const { data: _d, ...rest } = f;
  return { ...rest, status: 'not-run', because: b.code, message: `not run: ${b.blocking} (${b.code})` };
}

/**
 * The non-fatal checks' run order: runs of checks that only read, each run a
 * few at a time, with every check that changes the clusters alone between
 * them, where the catalog has it.
 */
export function batches<C>(checks: CheckDef<C>[]): CheckDef<C>[][] {
  const out: CheckDef<C>[][] = [];
  for (const c of checks) {
    const last = out[out.length - 1];
    if (c.changesClusters || !last || last[0]!.changesClusters) out.push([c]);
    else last.push(c);
  }
  return out;
}

/**
 * Runs the fatal checks first, one after another, then the others: a few at
 * a time, but a check that changes the clusters alone (`batches`). Each is
 * bounded by its own errors: a check that throws is a failed result naming
 * the error, never an aborted run. Results come back with the fatal ones
 * first, then in catalog order.
 */
export async function runChecks<C>(
  checks: CheckDef<C>[],
  ctx: C,
  o: RunOptions = {},
): Promise<CheckResult[]> {
  const list = selected(checks, o.only);
  const out: CheckResult[] = new Array(list.length);
  /** Cluster → the fatal check that failed for it. */
  const blocked = new Map<string, { code: string; blocking: string }>();
  const runOne = async (i: number) => {
    const c = list[i]!;
    const t0 = Date.now();
    let findings: Finding[];
    try {
      findings = (await c.run(ctx)).map((f) => effective(c.severity, f));
    } catch (e) {
      findings = [
        effective(c.severity, {
          status: 'failed',
          message: `the check could not run: ${(e as Error).message}`,
        }),
      ];
    }
    if (c.fatal) {
      for (const f of findings)
        if (f.status === 'failed' && f.cluster !== undefined && !blocked.has(f.cluster))
          blocked.set(f.cluster, { code: c.code, blocking: c.blocking ?? `${c.code} failed for it` });
    } else findings = findings.map((f) => blockedFinding(f, blocked));
    const status = findings.length ? worst(findings.map((f) => f.status)) : 'skipped';
    const r: CheckResult = {
      code: c.code,
      title: c.title,
      category: c.category,
      severity: c.severity,
      status,
      summary: summarize(findings, c.fatal ? Number.POSITIVE_INFINITY : undefined),
      ...(status === 'failed' || status === 'warning' ? { hint: c.hint } : {}),
      findings,
      durationMs: Date.now() - t0,
    };
    out[i] = r;
    o.observe?.(r);
  };
  const fatal = list.filter((c) => c.fatal).length;
  for (let i = 0; i < fatal; i++) await runOne(i);
  let start = fatal;
  for (const batch of batches(list.slice(fatal))) {
    const end = start + batch.length;
    let next = start;
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= end) return;
        await runOne(i);
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 4, batch.length) }, worker));
    start = end;
  }
  return out;
}

export type FailOn = 'failed' | 'warning' | 'never';

export function parseFailOn(v: string): FailOn | undefined {
  return v === 'failed' || v === 'warning' || v === 'never' ? v : undefined;
}

/** Exit 1 when a result reaches the threshold, else 0; a check not run counts as failed (it vouches for nothing). */
export function exitCodeFor(results: CheckResult[], failOn: FailOn): 0 | 1 {
  if (failOn === 'never') return 0;
  const bad: Status[] = failOn === 'warning' ? ['failed', 'not-run', 'warning'] : ['failed', 'not-run'];
  return results.some((r) => bad.includes(r.status)) ? 1 : 0;
}

/** Helpers for checks: one finding per cluster from a per-cluster function, run in parallel. */
export async function perCluster<T extends { name: string }>(
  clusters: T[],
  f: (c: T) => Promise<Omit<Finding, 'cluster'> | Array<Omit<Finding, 'cluster'>>>,
): Promise<Finding[]> {
  const all = await Promise.all(
    clusters.map(async (c) => {
      try {
        const r = await f(c);
        return (Array.isArray(r) ? r : [r]).map((x) => ({ ...x, cluster: c.name }));
      } catch (e) {
        return [{ status: 'failed' as const, cluster: c.name, message: (e as Error).message }];
      }
    }),
  );
  return all.flat();
}

export const pass = (message: string, data?: Record<string, unknown>): Omit<Finding, 'cluster'> => ({
  status: 'passed',
  message,
  ...(data ? { data } : {}),
});
export const fail = (message: string, data?: Record<string, unknown>): Omit<Finding, 'cluster'> => ({
  status: 'failed',
  message,
  ...(data ? { data } : {}),
});
export const warn = (message: string, data?: Record<string, unknown>): Omit<Finding, 'cluster'> => ({
  status: 'warning',
  message,
  ...(data ? { data } : {}),
});
export const skip = (message: string): Omit<Finding, 'cluster'> => ({ status: 'skipped', message });
/** Not run because the fatal check `because` failed for a cluster this one depends on. */
export const notRun = (message: string, because: string): Omit<Finding, 'cluster'> => ({
  status: 'not-run',
  because,
  message,
});
