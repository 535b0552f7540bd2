/**
 * Reading back what `check`/`verify -o json` wrote (`report --from`). The
 * file is input like any other: every field the report and the text table
 * use is checked for its type and range (a code like MF201, a known status,
 * category and severity, strings where strings go), so that nothing but
 * data reaches the HTML and a wrong file is a ResultsFileError naming the
 * JSON path, never a crash or a false page. Pure.
 */
import { z } from 'zod';
import { JsonSyntaxError, parseJsonText } from '../spiffe/json.js';
import { type CheckResult, STATUSES, type Status } from './catalog.js';

export class ResultsFileError extends Error {
  override name = 'ResultsFileError';
}

/** The most results one file may hold: a run of every check has a few dozen. */
export const MAX_RESULTS = 1000;

const status = z.enum(STATUSES as [Status, ...Status[]]);
const category = z.enum([
  'fleet',
  'kubernetes',
  'permissions',
  'phases',
  'spire',
  'federation',
  'istio',
  'remote-secrets',
  'gateways',
  'traffic',
  'identity',
  'trust-chain',
  'rotation',
]);

const finding = z.object({
  status,
  because: z
    .string()
    .regex(/^MF\d{3}$/, 'a check code like MF101')
    .optional(),
  cluster: z.string().optional(),
  message: z.string(),
  data: z.record(z.string(), z.unknown()).optional(),
});

const result = z.object({
  code: z.string().regex(/^MF\d{3}$/, 'a check code like MF201'),
  title: z.string(),
  category,
  severity: z.enum(['error', 'warning']),
  status,
  summary: z.string(),
  hint: z.string().optional(),
  findings: z.array(finding).max(MAX_RESULTS),
  durationMs: z.number(),
});

const resultsFile = z.object({ results: z.array(result).max(MAX_RESULTS) });

function pathOf(path: ReadonlyArray<PropertyKey>): string {
  return `$${path.map((s) => (typeof s === 'number' ? `[${s}]` : `.${String(s)}`)).join('')}`;
}

export function parseResultsFile(text: string): CheckResult[] {
  let doc: unknown;
  try {
    doc = parseJsonText(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) throw new ResultsFileError(e.message);
    throw e;
  }
  const parsed = resultsFile.safeParse(doc, { reportInput: true });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const missing = issue.code === 'invalid_type' && issue.input === undefined;
    if (missing && issue.path.length === 1 && issue.path[0] === 'results')
      throw new ResultsFileError('no "results" list (write the file with `meshfed check -o json`)');
    throw new ResultsFileError(
      `${pathOf(issue.path)}: ${missing ? 'missing' : issue.message} (expected the JSON that \`meshfed check -o json\` or \`verify -o json\` writes)`,
    );
  }
  return parsed.data.results as CheckResult[];
}
