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
 * Nothing here prints: observers get each result as it completes, renderers
 * (format.ts) turn the results into a table or JSON.
 */

export type Status = 'passed' | 'warning' | 'failed' | 'skipped';

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
  /** passed / failed / warning / skipped; a `failed` finding of a `warning` check is reported as a warning. */
  status: Status;
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

const RANK: Record<Status, number> = { skipped: 0, passed: 1, warning: 2, failed: 3 };

export function worst(statuses: Status[]): Status {
  return statuses.reduce<Status>((w, s) => (RANK[s] > RANK[w] ? s : w), 'skipped');
}

/** A failed finding of a warning-severity check counts as a warning. */
function effective(severity: Severity, f: Finding): Finding {
  return severity === 'warning' && f.status === 'failed' ? { ...f, status: 'warning' } : f;
}

/** One line for a check's findings: the worst ones, each naming its clusters. */
export function summarize(findings: Finding[]): string {
  const status = worst(findings.map((f) => f.status));
  if (!findings.length) return 'nothing to check';
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
  return `${status}: ${parts.slice(0, 4).join('; ')}${parts.length > 4 ? `; and ${parts.length - 4} more` : ''}`;
}

export interface RunOptions {
  /** Called with each result as soon as it is known (progress). */
  observe?: (r: CheckResult) => void;
  /** Only these codes (or categories). */
  only?: string[];
  /** How many checks run at once (default 4). */
  concurrency?: number;
}

export function selected<C>(checks: CheckDef<C>[], only: string[] | undefined): CheckDef<C>[] {
  if (!only?.length) return checks;
  return checks.filter((c) => only.includes(c.code) || only.includes(c.category));
}

/**
 * Runs the checks (a few at a time), each bounded by its own errors: a check
 * that throws is a failed result naming the error, never an aborted run.
 * Results come back in catalog order.
 */
export async function runChecks<C>(
  checks: CheckDef<C>[],
  ctx: C,
  o: RunOptions = {},
): Promise<CheckResult[]> {
  const list = selected(checks, o.only);
  const out: CheckResult[] = new Array(list.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= list.length) return;
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
      const status = findings.length ? worst(findings.map((f) => f.status)) : 'skipped';
      const r: CheckResult = {
        code: c.code,
        title: c.title,
        category: c.category,
        severity: c.severity,
        status,
        summary: summarize(findings),
        ...(status === 'failed' || status === 'warning' ? { hint: c.hint } : {}),
        findings,
        durationMs: Date.now() - t0,
      };
      out[i] = r;
      o.observe?.(r);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 4, list.length) }, worker));
  return out;
}

export type FailOn = 'failed' | 'warning' | 'never';

export function parseFailOn(v: string): FailOn | undefined {
  return v === 'failed' || v === 'warning' || v === 'never' ? v : undefined;
}

/** Exit 1 when a result reaches the threshold, else 0. */
export function exitCodeFor(results: CheckResult[], failOn: FailOn): 0 | 1 {
  if (failOn === 'never') return 0;
  const bad = failOn === 'warning' ? ['failed', 'warning'] : ['failed'];
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
