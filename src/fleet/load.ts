/**
 * Loading a fleet file: YAML (with positions) → plain values → structure
 * check (zod) → defaults and cross-field rules (resolve.ts). Every problem of
 * every stage is reported at once with file:line:col (at most MAX_PROBLEMS
 * of them). No file at all is the guide's topology.
 *
 * Work and memory stay proportional to the text (which the caller bounds):
 * duplicate keys are found with one set per mapping, not by comparing every
 * pair; aliases are resolved in one pass in document order and share their
 * anchor's value, and the document may expand through them to at most
 * MAX_EXPANDED_NODES nodes (what zod then walks), so a file that reuses one
 * anchor for every cluster loads and a "billion laughs" is refused at the
 * alias that crosses the limit; more than MAX_CLUSTERS clusters are refused
 * before anything grows with their square.
 */
import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
} from 'yaml';
import type { z } from 'zod';
import type { Fleet, Profile } from './model.js';
import { PROBLEM_CODES as C, type FleetPath, type FleetProblem, FleetValidationError } from './problems.js';
import { MAX_CLUSTERS, resolveFleet } from './resolve.js';
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

/** The most problems one load reports; the last says how many more there were. */
export const MAX_PROBLEMS = 200;
/** The most nodes a fleet document may have once its aliases are expanded. */
export const MAX_EXPANDED_NODES = 100_000;

export function loadFleetText(text: string, opts: LoadOptions = {}): LoadResult {
  const r = loadAll(text, opts);
  const total = r.problems.length + (r.omitted ?? 0);
  if (total <= MAX_PROBLEMS) return { ...(r.fleet ? { fleet: r.fleet } : {}), problems: r.problems };
  const shown = r.problems.slice(0, MAX_PROBLEMS);
  const last = shown.at(-1)!;
  shown.push({
    code: last.code,
    severity: 'error',
    path: [],
    message: `${total - MAX_PROBLEMS} more problems not listed (meshfed lists at most ${MAX_PROBLEMS}); fix these and run again`,
    line: last.line,
    col: last.col,
  });
  return { problems: shown };
}

/** `omitted`: problems found but not made (each costs a search for its place). */
function loadAll(text: string, opts: LoadOptions): LoadResult & { omitted?: number } {
  const lineCounter = new LineCounter();
  // uniqueKeys is checked by toPlain: yaml's own check compares every pair of keys.
  const doc = parseDocument(text, { lineCounter, uniqueKeys: false });
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

  const plain = toPlain(doc, lineCounter);
  if ('problems' in plain) return { problems: sortProblems(plain.problems) };
  const raw = plain.value;
  const rawClusters = (raw as { spec?: { clusters?: unknown } } | null)?.spec?.clusters;
  if (Array.isArray(rawClusters) && rawClusters.length > MAX_CLUSTERS)
    return {
      problems: [
        {
          code: C.clusterCount,
          severity: 'error',
          path: ['spec', 'clusters', MAX_CLUSTERS],
          message: `too many clusters: meshfed federates at most ${MAX_CLUSTERS}, and this fleet lists more from here on`,
          expected: `at most ${MAX_CLUSTERS} clusters`,
          found: String(rawClusters.length),
          ...locate(['spec', 'clusters', MAX_CLUSTERS]),
        },
      ],
    };
  const parsed = fleetFileSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    let omitted = 0;
    for (const issue of parsed.error.issues) {
      const n = issue.code === 'unrecognized_keys' ? issue.keys.length : 1;
      const room = MAX_PROBLEMS + 1 - problems.length;
      const made = room > 0 ? fromZodIssue(issue, locate, room) : [];
      problems.push(...made);
      omitted += n - made.length;
    }
    return { problems: sortProblems(problems), omitted };
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
  room: number,
): FleetProblem[] {
  const path = issue.path.filter((s): s is string | number => typeof s !== 'symbol');
  const base = { severity: 'error' as const };
  switch (issue.code) {
    case 'unrecognized_keys':
      // Only as many as can be listed: locating each key is a search of its mapping.
      return issue.keys.slice(0, room).map((k) => ({
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

type Place = { line: number; col: number };

/** Thrown inside toPlain to stop at the first structural problem of the YAML (with its place). */
class PlainStop {
  constructor(
    readonly message: string,
    readonly place: Place,
  ) {}
}

/**
 * The document's plain value, like yaml's toJS but in one pass: an alias
 * takes the value of the last anchor of its name before it (shared, not
 * copied), and the expansion is counted. Refuses duplicate keys, keys that
 * are not plain values, aliases with no anchor before them or inside their
 * own anchor, and expansion beyond MAX_EXPANDED_NODES.
 */
function toPlain(doc: Document, lc: LineCounter): { value: unknown } | { problems: FleetProblem[] } {
  const at = (n: Node | undefined): Place => {
    const p = lc.linePos(n?.range?.[0] ?? 0);
    return { line: p.line, col: p.col };
  };
  const anchors = new Map<string, Node>();
  const done = new Map<Node, { value: unknown; size: number }>();
  const open = new Set<Node>();
  let total = 0;
  const grow = (n: number, where: Node) => {
    total += n;
    if (total > MAX_EXPANDED_NODES)
      throw new PlainStop(
        `the document expands to more than ${MAX_EXPANDED_NODES} nodes through its aliases (meshfed's limit for a fleet file); write the repeated parts out or reuse fewer anchors`,
        at(where),
      );
  };
  const walk = (node: Node | null | undefined): { value: unknown; size: number } => {
    if (node === null || node === undefined) return { value: null, size: 1 };
    if (isAlias(node)) {
      const target = anchors.get(node.source);
      if (!target)
        throw new PlainStop(`alias *${node.source} has no anchor &${node.source} before it`, at(node));
      if (open.has(target))
        throw new PlainStop(`alias *${node.source} is inside the node its anchor names`, at(node));
      const t = done.get(target)!;
      grow(t.size, node);
      return t;
    }
    const anchor = (node as { anchor?: string }).anchor;
    if (anchor) anchors.set(anchor, node);
    open.add(node);
    let r: { value: unknown; size: number };
    grow(1, node);
    if (isMap(node)) {
      const obj: Record<string, unknown> = {};
      const seen = new Set<string>();
      let size = 1;
      for (const pair of node.items) {
        if (!isScalar(pair.key) && pair.key !== null)
          throw new PlainStop(
            'a mapping key must be a plain value, not a mapping, list or alias',
            at(pair.key as Node),
          );
        const key = pair.key === null ? '' : String(pair.key.value ?? '');
        if (seen.has(key)) throw new PlainStop('YAML: Map keys must be unique', at(pair.key as Node));
        seen.add(key);
        const v = walk(pair.value as Node | null);
        size += 1 + v.size;
        // defineProperty: a key "__proto__" is data like any other key, never the object's prototype.
        Object.defineProperty(obj, key, {
          value: v.value,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      r = { value: obj, size };
    } else if (isSeq(node)) {
      const arr: unknown[] = [];
      let size = 1;
      for (const item of node.items) {
        const v = walk(item as Node | null);
        size += v.size;
        arr.push(v.value);
      }
      r = { value: arr, size };
    } else r = { value: isScalar(node) ? node.value : null, size: 1 };
    open.delete(node);
    done.set(node, r);
    return r;
  };
  try {
    return { value: walk(doc.contents as Node | null).value };
  } catch (e) {
    if (!(e instanceof PlainStop)) throw e;
    return {
      problems: [{ code: C.yaml, severity: 'error', path: [], message: `YAML: ${e.message}`, ...e.place }],
    };
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
