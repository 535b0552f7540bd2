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

/** Milliseconds in a Go duration, or undefined when the text is not one. */
export function parseGoDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
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
