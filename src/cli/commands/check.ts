/** `meshfed check [--pre]`, `meshfed verify`, `meshfed report`: the check catalog on real clusters. */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  type CheckDef,
  type CheckResult,
  exitCodeFor,
  type FailOn,
  parseFailOn,
  runChecks,
} from '../../verify/catalog.js';
import { type CheckContext, makeContext } from '../../verify/context.js';
import { kubeProbe, VERIFY_CHECKS, type VerifyContext } from '../../verify/dataplane.js';
import { formatJson, formatText } from '../../verify/format.js';
import { POST_CHECKS } from '../../verify/post.js';
import { PRE_CHECKS } from '../../verify/pre.js';
import { reportHtml } from '../../verify/report.js';
import { parseResultsFile, ResultsFileError } from '../../verify/results-file.js';
import { type Connected, connect, ENGINE_OPTIONS, ENGINE_USAGE } from '../engine-args.js';
import { readInputFile, writeOutputFile } from '../files.js';
import { loadFleetArg, parseProfile, reportProblems } from '../fleet-arg.js';
import { type CliIO, type Command, EXIT_OK, UsageError } from '../io.js';
import { terminalSafe } from '../terminal.js';

const CHECK_OPTIONS = {
  ...ENGINE_OPTIONS,
  'fail-on': { type: 'string', default: 'failed' },
  only: { type: 'string' },
} as const;

const COMMON_USAGE = `${ENGINE_USAGE}
  --only LIST         only these checks: codes or categories, comma-separated
  --fail-on LEVEL     exit 1 when a check is failed (default), warning, or never
  -o text|json        a table with the fixes (default), or JSON`;

function failOnOf(v: string | undefined): FailOn {
  const f = parseFailOn(v ?? 'failed');
  if (!f) throw new UsageError(`--fail-on must be failed, warning or never, not "${v}"`);
  return f;
}

function outputOf(v: string | undefined): 'text' | 'json' {
  if (v !== 'text' && v !== 'json') throw new UsageError(`-o must be text or json, not "${v}"`);
  return v;
}

function onlyOf<C>(v: string | undefined, catalog: CheckDef<C>[]): string[] | undefined {
  if (!v) return undefined;
  const list = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const known = new Set(catalog.flatMap((c) => [c.code, c.category]));
  const bad = list.filter((x) => !known.has(x));
  if (bad.length)
    throw new UsageError(
      `--only: unknown ${bad.join(', ')}; known codes ${catalog.map((c) => c.code).join(', ')} and categories ${[...new Set(catalog.map((c) => c.category))].join(', ')}`,
    );
  return list;
}

function contextOf(c: Connected): CheckContext {
  const byName = new Map(c.fleet.clusters.map((x) => [x.context, x.name]));
  const clients = new Map(
    [...c.clients].filter(([ctx]) => !c.unreachable.has(ctx)).map(([ctx, cl]) => [byName.get(ctx)!, cl]),
  );
  const versions = new Map([...c.versions].map(([ctx, v]) => [byName.get(ctx)!, v]));
  const unreachable = new Map([...c.unreachable].map(([ctx, why]) => [byName.get(ctx)!, why]));
  return makeContext({
    fleet: c.fleet,
    clients,
    versions,
    unreachable,
    timeoutMs: Math.min(c.timeoutMs, 30_000),
  });
}

/** Progress on stderr, one line per finished check, when stderr is a terminal. */
function observer(io: CliIO): ((r: CheckResult) => void) | undefined {
  return io.stderr.isTTY ? (r) => io.stderr.write(`  ${r.code} ${r.status}\n`) : undefined;
}

async function runCatalog<C>(
  argv: string[],
  io: CliIO,
  stage: string,
  catalog: CheckDef<C>[],
  makeCtx: (c: Connected, v: Record<string, unknown>) => C,
  extra: Record<string, { type: 'string' | 'boolean'; default?: string | boolean }> = {},
): Promise<{ results: CheckResult[]; connected: Connected; values: Record<string, unknown>; code: number }> {
  const { values } = parseArgs({ args: argv, options: { ...CHECK_OPTIONS, ...extra } });
  const format = outputOf(values.output);
  const failOn = failOnOf(values['fail-on'] as string);
  const only = onlyOf(values.only as string | undefined, catalog);
  const c = await connect(values, io, { tolerateUnreachable: true });
  const results = await runChecks(catalog, makeCtx(c, values), {
    ...(only ? { only } : {}),
    observe: observer(io) ?? (() => {}),
  });
  if (format === 'json') io.stdout.write(formatJson(results, { fleet: c.fleet.name, stage, at: new Date() }));
  else io.stdout.write(formatText(results));
  return { results, connected: c, values, code: exitCodeFor(results, failOn) };
}

export const checkCommand: Command = {
  name: 'check',
  usage: `Usage: meshfed check [--pre] [-f FILE] [--kubeconfig FILE | --lab] [--only LIST]
                     [--fail-on failed|warning|never] [-o text|json]

First, in every mode and whatever --only says: API servers reachable (MF101)
within --timeout. A cluster that is not fails the run, named with why
(refused, TLS untrusted, a missing CA file or exec plugin, no answer), and
its other checks are reported NOT RUN because of MF101.
--pre: can \`up\` work here? Kubernetes version supported (MF102), clusters
distinct (MF103), permissions (MF104), CSI (MF105), LoadBalancer or NodePort
(MF106), identities unique (MF107).
Without --pre, after \`up\`: phases healthy (MF201), SPIRE servers (MF202),
agents on every node (MF203), entries for meshed pods (MF204), federated
bundles current (MF205) and not near expiry (MF206), relationships refresh
(MF207), Istio trust domain aliases (MF208), remote secrets and their tokens
(MF209), addresses (MF210), Istio CA chain (MF211), certificate lifetimes and
renewals (MF212); rotation hazards: each peer's refresh hint shorter than its
SPIRE CA's and root's remaining life (MF213), held bundles outlive the next
refresh (MF214), root renewal not within the refresh hint + 7 days (MF215).
Reads only.

${COMMON_USAGE}

Examples:
  meshfed check --pre --lab
  meshfed check --lab --only spire,federation
  meshfed check -o json --fail-on warning > check.json

Exit 0 when no check reaches --fail-on (a check not run counts as failed), 1
when one does, 2 for bad input.`,
  async run(argv, io) {
    const pre = argv.includes('--pre');
    const rest = argv.filter((a) => a !== '--pre');
    const catalog = pre ? PRE_CHECKS : POST_CHECKS;
    return (await runCatalog(rest, io, pre ? 'pre' : 'post', catalog, (c) => contextOf(c))).code;
  },
};

const VERIFY_EXTRA = { requests: { type: 'string', default: '20' } } as const;

function requestsOf(v: unknown): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1000)
    throw new UsageError(`--requests must be a whole number from 1 to 1000, not "${v}"`);
  return n;
}

export const verifyCommand: Command = {
  name: 'verify',
  usage: `Usage: meshfed verify [-f FILE] [--kubeconfig FILE | --lab] [--requests N] [--only LIST]
                      [--fail-on failed|warning|never] [-o text|json]

API servers reachable (MF101) first, as in check.
East-west (MF301): N requests from sleep in each cluster to helloworld; every
federated cluster's version answers. Failover (MF302): each cluster's
helloworld Service removed in turn, only peers answer, the Service restored.
North-south (MF303): each ingress gateway from another cluster's sleep.
Identity (MF304): sleep's proxy holds its SPIFFE ID and every federated
bundle. Trust chain (MF305): workload ← SPIRE ← cert-manager root. Rotation
(MF306): the proxy's SVID renewed. Outsiders (MF307): through each east-west
gateway, an SVID minted by a federated peer answers, one of a trust domain
outside the federation is refused. Through pod exec into sleep and its
istio-proxy (needs running pods), and from here to the east-west gateways
(docs/verify.md).

${COMMON_USAGE}
  --requests N        requests per traffic check (default 20)

Examples:
  meshfed verify --lab
  meshfed verify --only traffic --requests 50
  meshfed verify --only MF307 -o json > verify.json

Exit 0 when no check reaches --fail-on, 1 when one does, 2 for bad input.`,
  async run(argv, io) {
    return (
      await runCatalog(
        argv,
        io,
        'verify',
        VERIFY_CHECKS,
        (c, v): VerifyContext => {
          const base = contextOf(c);
          return { ...base, probe: kubeProbe(base), requests: requestsOf(v.requests) };
        },
        VERIFY_EXTRA,
      )
    ).code;
  },
};

export const reportCommand: Command = {
  name: 'report',
  usage: `Usage: meshfed report [-f FILE] [--kubeconfig FILE | --lab] [--verify] [--out FILE]
                      [--from RESULTS.json ...]

Runs \`meshfed check\` (and with --verify, \`meshfed verify\`) and writes the
results with a picture of the fleet (clusters, trust domains, networks,
gateway addresses, federation edges coloured by the health of their
bundles) to --out (default meshfed-report.html). With --from, renders the
JSON that check/verify -o json wrote instead, touching no cluster.

${ENGINE_USAGE}

Examples:
  meshfed report --lab --verify --out report.html
  meshfed report --from check.json --from verify.json --out report.html`,
  async run(argv, io) {
    const { values } = parseArgs({
      args: argv,
      options: {
        ...ENGINE_OPTIONS,
        verify: { type: 'boolean', default: false },
        out: { type: 'string', default: 'meshfed-report.html' },
        from: { type: 'string', multiple: true },
        requests: { type: 'string', default: '20' },
      },
    });
    let results: CheckResult[];
    let fleet: Connected['fleet'];
    if (values.from?.length) {
      const src = await loadFleetArg(values.file, io, parseProfile(values.profile));
      if (reportProblems(src, io))
        throw new UsageError(`${src.label} has problems (above); fix them and run again`);
      fleet = src.result.fleet!;
      results = values.from.flatMap((f) => {
        const text = readInputFile(resolve(io.cwd, f), `--from ${f}`, 'results');
        try {
          return parseResultsFile(text);
        } catch (e) {
          if (e instanceof ResultsFileError) throw new UsageError(`--from ${f}: ${e.message}`);
          throw e;
        }
      });
    } else {
      const c = await connect(values, io, { tolerateUnreachable: true });
      fleet = c.fleet;
      const ctx = contextOf(c);
      results = await runChecks(POST_CHECKS, ctx);
      if (values.verify)
        results.push(
          // MF101 is in both catalogs: its result is the one above.
          ...(
            await runChecks(VERIFY_CHECKS, {
              ...ctx,
              probe: kubeProbe(ctx),
              requests: requestsOf(values.requests),
            })
          ).filter((r) => !results.some((x) => x.code === r.code)),
        );
    }
    const out = resolve(io.cwd, values.out);
    writeOutputFile(out, reportHtml(fleet, results, { at: new Date() }), `--out ${values.out}`);
    io.stdout.write(`${terminalSafe(formatText(results))}report: ${terminalSafe(out)}\n`);
    return EXIT_OK;
  },
};
