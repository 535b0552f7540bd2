/**
 * Progress of the engine on the terminal. Not a TTY (CI, a log file): one
 * plain line per event, with the elapsed time, cluster and phase. A TTY: one
 * live line per cluster (its phase and what it waits for), redrawn in place,
 * with phase completions and warnings printed above it as they happen.
 */
import type { EngineEvent } from '../engine/up.js';
import type { CliIO } from './io.js';

export interface ProgressView {
  event(e: EngineEvent): void;
  close(): void;
}

const counts = (e: EngineEvent) =>
  e.counts
    ? ` (${e.counts.created} created, ${e.counts.updated} updated, ${e.counts.unchanged} unchanged)`
    : '';

export function progressView(io: CliIO, clusters: string[]): ProgressView {
  const t0 = Date.now();
  const out = io.stderr;
  const width = Math.max(...clusters.map((c) => c.length), 5);
  const stamp = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s`;
  const lineOf = (e: EngineEvent) =>
    `${(e.cluster ?? 'fleet').padEnd(width)}  ${(e.phase ?? '').padEnd(14)} ${e.kind === 'warning' ? 'warning: ' : ''}${e.kind === 'phase-done' ? `done${counts(e)}` : e.kind === 'phase-start' ? 'started' : e.message}`;
  if (!out.isTTY)
    return {
      event: (e) => out.write(`${stamp()} ${lineOf(e)}\n`),
      close: () => {},
    };
  const live = new Map<string, string>(clusters.map((c) => [c, 'waiting']));
  let drawn = 0;
  const cols = () => (process.stderr.columns ?? 100) - 1;
  const redraw = (above?: string) => {
    let s = drawn ? `\x1b[${drawn}A\x1b[J` : '';
    if (above) s += `${above}\n`;
    for (const c of clusters) s += `${`${c.padEnd(width)}  ${live.get(c)}`.slice(0, cols())}\n`;
    drawn = clusters.length;
    out.write(s);
  };
  return {
    event(e) {
      if (e.cluster)
        live.set(e.cluster, `${(e.phase ?? '').padEnd(14)} ${e.kind === 'phase-done' ? 'done' : e.message}`);
      const permanent = e.kind === 'phase-done' || e.kind === 'warning' || !e.cluster;
      redraw(permanent ? `${stamp()} ${lineOf(e)}` : undefined);
    },
    close() {
      drawn = 0;
    },
  };
}
