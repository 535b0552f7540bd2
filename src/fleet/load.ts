/**
 * Loading a fleet file: YAML (with positions) → structure check (zod) →
 * defaults and cross-field rules (resolve.ts). Every problem of every stage is
 * reported at once with file:line:col. No file at all is the guide's topology.
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import type { z } from 'zod';
import type { Fleet, Profile } from './model.js';
import { PROBLEM_CODES as C, type FleetPath, type FleetProblem, FleetValidationError } from './problems.js';
import { resolveFleet } from './resolve.js';
import { type FleetFile, fleetFileSchema } from './schema.js';

export interface LoadResult {
  /** Present when there is no error (warnings may exist). */
  fleet?: Fleet;
  problems: FleetProblem[];
}

export interface LoadOptions {
  /** Overrides spec.profile (e.g. `--profile seed`). */
  profile?: Profile;
}

export function loadFleetText(text: string, opts: LoadOptions = {}): LoadResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true });
  const problems: FleetProblem[] = [];
  for (const err of doc.errors) {
    const [line, col] = err.linePos?.[0] ? [err.linePos[0].line, err.linePos[0].col] : [0, 0];
    problems.push({
      code: C.yaml,
      severity: 'error',
      path: [],
      message: `YAML: ${err.message.split('\n')[0]}`,
      line,
      col,
    });
  }
  if (problems.length > 0) return { problems };

  const locate = (path: FleetPath, key = false): { line: number; col: number } => {
    const node = nodeAt(doc.contents as Node | null, path, key);
    const offset = node?.range?.[0] ?? 0;
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, col: pos.col };
  };

  const raw = doc.toJS() as unknown;
  const parsed = fleetFileSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(...fromZodIssue(issue, locate));
    return { problems: sortProblems(problems) };
  }
  const file: FleetFile = opts.profile
    ? { ...parsed.data, spec: { ...parsed.data.spec, profile: opts.profile } }
    : parsed.data;
  const resolved = resolveFleet(file);
  for (const p of resolved.problems) problems.push({ ...p, ...locate(p.path) });
  const sorted = sortProblems(problems);
  return sorted.some((p) => p.severity === 'error')
    ? { problems: sorted }
    : { fleet: resolved.fleet, problems: sorted };
}

/** The fleet when there is no file: the guide's two clusters. */
export function defaultFleet(opts: LoadOptions = {}): Fleet {
  const { fleet, problems } = resolveFleet(
    opts.profile
      ? { apiVersion: 'meshfed.dev/v1alpha1', kind: 'Fleet', spec: { profile: opts.profile } }
      : undefined,
  );
  if (problems.some((p) => p.severity === 'error'))
    throw new Error(`built-in defaults are invalid: ${problems[0]?.message}`);
  return fleet;
}

/** Like loadFleetText but throws FleetValidationError (with every problem) on error. */
export function parseFleet(text: string, file = 'meshfed.yaml', opts: LoadOptions = {}): Fleet {
  const r = loadFleetText(text, opts);
  if (!r.fleet) throw new FleetValidationError(file, r.problems);
  return r.fleet;
}

function fromZodIssue(
  issue: z.core.$ZodIssue,
  locate: (p: FleetPath, key?: boolean) => { line: number; col: number },
): FleetProblem[] {
  const path = issue.path.filter((s): s is string | number => typeof s !== 'symbol');
  const base = { severity: 'error' as const };
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((k) => ({
        ...base,
        code: C.unknownKey,
        path: [...path, k],
        message: `unknown key "${k}"`,
        expected: 'one of the keys in `meshfed schema`',
        found: JSON.stringify(k),
        ...locate([...path, k], true),
      }));
    case 'invalid_value':
      return [
        {
          ...base,
          code: C.enum,
          path,
          message: `invalid value for ${path.at(-1) ?? 'field'}`,
          expected: issue.values.map((v) => JSON.stringify(v)).join(' | '),
          found: JSON.stringify(issue.input),
          ...locate(path),
        },
      ];
    case 'invalid_type': {
      const missing = issue.input === undefined;
      return [
        {
          ...base,
          code: C.type,
          path,
          message: missing
            ? `missing required field "${path.at(-1)}"`
            : `wrong type for ${path.at(-1) ?? 'the document'}`,
          expected: issue.expected,
          found: missing ? 'nothing' : describe(issue.input),
          ...locate(path),
        },
      ];
    }
    default:
      return [{ ...base, code: C.type, path, message: issue.message, ...locate(path) }];
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** The deepest existing node on `path` (the key node itself when `key`). */
function nodeAt(root: Node | null, path: FleetPath, key: boolean): Node | undefined {
  let node: Node | null | undefined = root;
  let last: Node | undefined = root ?? undefined;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === seg);
      if (!pair) return last;
      if (key && i === path.length - 1) return pair.key as Node;
      node = pair.value as Node | null;
      last = (node ?? (pair.key as Node)) as Node;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg] as Node | null;
      if (!node) return last;
      last = node;
    } else return last;
  }
  return last;
}

function sortProblems(ps: FleetProblem[]): FleetProblem[] {
  return [...ps].sort((a, b) => a.line - b.line || a.col - b.col || a.message.localeCompare(b.message));
}
