/** Renderers of check results: a text table with the fixes, and JSON. Pure. */
import type { CheckResult, Status } from './catalog.js';

const MARK: Record<Status, string> = {
  passed: 'ok',
  warning: 'WARN',
  failed: 'FAIL',
  'not-run': 'NOT RUN',
  skipped: 'skip',
};
const MARK_W = Math.max(...Object.values(MARK).map((m) => m.length));

/** Results per status, in the order the text's last line gives them. */
export function counts(results: CheckResult[]): Record<Status, number> {
  const c: Record<Status, number> = { passed: 0, warning: 0, failed: 0, 'not-run': 0, skipped: 0 };
  for (const r of results) c[r.status]++;
  return c;
}

/** `text` in lines of at most `room` characters, broken at spaces where it can be. */
function wrap(text: string, room: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (rest.length > room) {
    const cut = rest.lastIndexOf(' ', room);
    const at = cut > room / 2 ? cut : room;
    out.push(rest.slice(0, at));
    rest = rest.slice(at).trimStart();
  }
  return [...out, rest];
}

/**
 * One line per check (status, code, title, summary); then, per failed or
 * warning check, its fix. A long summary is cut to the width, except a
 * failed one's, which wraps: every cluster it names (and why) stays visible.
 */
export function formatText(results: CheckResult[], o: { width?: number } = {}): string {
  const width = o.width ?? 160;
  const codeW = 5;
  const titleW = Math.max(...results.map((r) => r.title.length), 5);
  const lines = results.map((r) => {
    const head = `${MARK[r.status].padEnd(MARK_W)}  ${r.code.padEnd(codeW)}  ${r.title.padEnd(titleW)}  `;
    const room = Math.max(20, width - head.length);
    if (r.status === 'failed')
      return wrap(r.summary, room)
        .map((l, i) => (i ? `${' '.repeat(head.length)}${l}` : `${head}${l}`))
        .join('\n');
    return `${head}${r.summary.length > room ? `${r.summary.slice(0, room - 1)}…` : r.summary}`;
  });
  const fixes = results.filter((r) => r.hint).map((r) => `  ${r.code}: ${r.hint}`);
  const c = counts(results);
  return `${lines.join('\n')}\n${fixes.length ? `\nHow to fix:\n${fixes.join('\n')}\n` : ''}\n${c.passed} passed, ${c.warning} warnings, ${c.failed} failed, ${c['not-run']} not run, ${c.skipped} skipped\n`;
}

export function formatJson(results: CheckResult[], meta: { fleet: string; stage: string; at: Date }): string {
  return `${JSON.stringify({ fleet: meta.fleet, stage: meta.stage, at: meta.at.toISOString(), counts: counts(results), results }, null, 2)}\n`;
}
