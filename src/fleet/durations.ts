/**
 * Go duration strings ("1440h", "90m", "1h30m") as cert-manager and SPIRE
 * accept them. Parsing is exact: anything Go's time.ParseDuration would
 * reject, and negative or zero lifetimes, are refused.
 */
const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const DURATION = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;

/** Go's time.Duration is an int64 of nanoseconds: at most 2562047h47m16.854775807s (here to float precision). */
export const GO_MAX_DURATION_MS = 2 ** 63 / 1e6;

/** Milliseconds in a Go duration, or undefined when Go's time.ParseDuration would refuse the text. */
export function parseGoDuration(text: string): number | undefined {
  return goDurationProblem(text) === undefined ? msOf(text) : undefined;
}

/** Why Go would refuse `text` as a duration; undefined when it would take it. */
export function goDurationProblem(text: string): string | undefined {
  if (!DURATION.test(text)) return 'not a Go duration';
  // Go fails with "invalid duration" past its maximum; a config meshfed writes must not.
  if (msOf(text) > GO_MAX_DURATION_MS) return 'longer than Go’s maximum duration, 2562047h';
  return undefined;
}

function msOf(text: string): number {
  let ms = 0;
  for (const [, n, unit] of text.matchAll(PART)) ms += Number(n) * UNIT_MS[unit as string]!;
  return ms;
}

/** Human form for messages: 1440h → "60d", 90m → "1h30m". */
export function formatDuration(ms: number): string {
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  if (h >= 48 && h % 24 === 0 && m === 0) return `${h / 24}d`;
  return `${h ? `${h}h` : ''}${m ? `${m}m` : ''}` || `${Math.round(ms / 1000)}s`;
}

/** A length of time for a person: 45s, 12m, 5h3m, 29d23h (negative: 0s). */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s}s`;
  if (s < 90 * 60) return `${Math.round(s / 60)}m`;
  const h = Math.floor(s / 3600);
  if (h < 48) {
    const m = Math.floor((s % 3600) / 60);
    return `${h}h${m ? `${m}m` : ''}`;
  }
  return `${Math.floor(h / 24)}d${h % 24 ? `${h % 24}h` : ''}`;
}
