/**
 * A problem found in a fleet file, with where it is. Every problem carries a
 * stable code so scripts can match on it, and what was expected and found.
 */
export type FleetPath = ReadonlyArray<string | number>;

export interface FleetProblem {
  /** Stable identifier, e.g. "MF001" — see PROBLEM_CODES. */
  code: string;
  severity: 'error' | 'warning';
  path: FleetPath;
  message: string;
  expected?: string;
  found?: string;
  /** 1-based; 0 when the problem has no place in a file (defaults). */
  line: number;
  col: number;
}

export const PROBLEM_CODES = {
  yaml: 'MF001',
  type: 'MF002',
  unknownKey: 'MF003',
  enum: 'MF004',
  trustDomain: 'MF010',
  dnsName: 'MF011',
  duplicate: 'MF012',
  clusterCount: 'MF013',
  federation: 'MF020',
  lifetime: 'MF030',
  exposure: 'MF040',
  version: 'MF050',
  apps: 'MF060',
} as const;

/** `file:line:col: error: message (expected X, found Y)` */
export function formatProblem(file: string, p: FleetProblem): string {
  const where = p.line > 0 ? `${file}:${p.line}:${p.col}` : `${file}`;
  const detail =
    p.expected !== undefined || p.found !== undefined
      ? ` (expected ${p.expected ?? '?'}, found ${p.found ?? '?'})`
      : '';
  return `${where}: ${p.severity}: ${p.message}${detail} [${p.code} at ${formatPath(p.path)}]`;
}

export function formatPath(path: FleetPath): string {
  if (path.length === 0) return '(root)';
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
}

export class FleetValidationError extends Error {
  override name = 'FleetValidationError';
  constructor(
    readonly file: string,
    readonly problems: FleetProblem[],
  ) {
    super(problems.map((p) => formatProblem(file, p)).join('\n'));
  }
}
