/**
 * `meshfed federation status|sync|repair|watch`: day two of the federation
 * on real clusters, through the federation engine (src/federation/) and
 * pod exec into each cluster's SPIRE server, as `up` reaches it. Every
 * direction is holder ← peer: the holder's SPIRE server holding the peer's
 * bundle.
 *
 * A cluster whose API server does not answer, or whose bundle endpoint has
 * no known address, fails only its own directions, named with why; the
 * others are read and changed as usual. Bad input (arguments, the fleet
 * file, the kubeconfig) exits 2 before any cluster is touched.
 */

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fleetMembers } from '../../engine/federation.js';
import { readProgress } from '../../engine/progress.js';
import { RefreshRecord, type RefreshSource } from '../../engine/refresh-record.js';
import {
  type FederationMember,
  federationStatus,
  type Pair,
  type PairStatus,
  refreshAll,
  type WatchEvent,
  watchFederation,
} from '../../federation/engine.js';
import { type RepairStep, repair, repairDecision } from '../../federation/repair.js';
import { parseGoDuration, span } from '../../fleet/durations.js';
import type { Fleet } from '../../fleet/model.js';
import {
  CONNECT_OPTIONS,
  CONNECT_USAGE,
  type Connected,
  connect,
  outputFormat,
  progressPath,
  stateDir,
} from '../engine-args.js';
import { type CliIO, type Command, EXIT_FAILED, EXIT_OK, UsageError } from '../io.js';
import { table } from '../table.js';
import { terminalSafe } from '../terminal.js';

const USAGE = `Usage: meshfed federation status [-o text|json]
       meshfed federation sync [-o text|json]
       meshfed federation repair [--dry-run] [-o text|json]
       meshfed federation watch [--interval D] [-o text|json]
       (each with [-f FILE] [--kubeconfig FILE | --lab] [--timeout D])

Each cluster's SPIRE server holds the bundle of each federated peer, and
fetches it again from the peer's bundle endpoint (authenticating the
endpoint with the bundle it holds) at the refresh hint the peer advertises.
Per direction, holder ← peer:

status   whether the holder holds what the peer's endpoint serves now:
         current, stale, missing, peer-unreachable or holder-unreachable;
         the held bundle's age (since its newest X.509 authority began),
         the earliest expiry of its X.509 authorities, the refresh hint the
         peer's endpoint serves, and when meshfed last refreshed it (sync,
         repair or watch; "unknown" when it has not). Reads only.
sync     every holder fetches every peer's bundle now (\`spire-server
         federation refresh\`), and meshfed records when.
repair   bootstraps again exactly the directions that cannot heal
         themselves: missing, or stale where the held bundle no longer
         authenticates the peer's endpoint (SPIRE would never refresh
         those). The peer's bundle is read from its server and must
         authenticate its endpoint as spiffe://<trust domain>/spire/server,
         as in \`meshfed up\`. Current directions are left alone, and so are
         stale ones that still authenticate (sync heals them).
watch    polls every bundle endpoint each --interval; when a peer's served
         bundle changes, every holder of it refreshes at once instead of at
         its refresh hint. Catches up first (every direction refreshed
         once), then one line per event (JSON lines with -o json); a refresh
         that fails is tried again at each poll. Endpoints and API servers
         that go away are told once and followed until they are back.
         Stops on SIGINT or SIGTERM (exit 0). In production: run it where
         it outlives any one cluster and is restarted when it stops, e.g. a
         systemd service on an admin host with a kubeconfig that may only
         exec into spire/spire-server-0 and read Services in spire; without
         it SPIRE still refreshes at the hint (docs/federation.md).

${CONNECT_USAGE}
  --dry-run           repair: say what would be done; change nothing
  --interval D        watch: time between polls, a Go duration (default 2s)
  -o text|json        a table (default), or JSON (watch: one JSON object a line)

Examples:
  meshfed federation status --lab
  meshfed federation sync -f meshfed.yaml --kubeconfig ~/.kube/fleet
  meshfed federation repair --dry-run --lab && meshfed federation repair --lab
  meshfed federation watch --lab --interval 5s -o json

Exit 0 when every direction is current (status), refreshed (sync), repaired
or left current (repair; with --dry-run: nothing to do), or when watch is
stopped by a signal; 1 when not; 2 for bad input (no cluster touched).`;

const STATUS_OPTIONS = CONNECT_OPTIONS;
const SYNC_OPTIONS = CONNECT_OPTIONS;
const REPAIR_OPTIONS = { ...CONNECT_OPTIONS, 'dry-run': { type: 'boolean', default: false } } as const;
const WATCH_OPTIONS = { ...CONNECT_OPTIONS, interval: { type: 'string', default: '2s' } } as const;

const MIN_INTERVAL_MS = 100;
const MAX_INTERVAL_MS = 3_600_000;

function intervalOf(v: string | undefined): number {
  const ms = parseGoDuration(v ?? '2s');
  if (ms === undefined || ms < MIN_INTERVAL_MS || ms > MAX_INTERVAL_MS)
    throw new UsageError(`--interval "${v}" must be a Go duration from 100ms to 1h, like 2s or 1m`);
  return ms;
}

const key = (holder: string, peer: string) => `${holder}\u0000${peer}`;

/** Every (holder, peer) direction of the fleet, in the order of its pairs. */
function fleetDirections(fleet: Fleet): Array<[string, string]> {
  return fleet.federation.pairs.flatMap(
    ([a, b]): Array<[string, string]> => [
      [a, b],
      [b, a],
    ],
  );
}

/** The fleet's federation as far as it can be reached. */
export interface Reached {
  connected: Connected;
  /** Clusters whose API server answered and whose bundle endpoint address is known. */
  members: FederationMember[];
  /** The fleet's pairs between those members. */
  pairs: Pair[];
  /** Why a cluster cannot take part, by name. */
  out: Map<string, string>;
  record: RefreshRecord;
}

/**
 * Connects (tolerating API servers that do not answer) and builds the
 * members. `everyAddressed`: members are every cluster with a known address,
 * reachable or not (watch polls endpoints, which may serve while their API
 * server is away); otherwise only the reachable ones.
 */
export async function reach(
  values: Parameters<typeof connect>[0],
  io: CliIO,
  by?: RefreshSource,
  everyAddressed = false,
): Promise<Reached> {
  const c = await connect(values, io, { tolerateUnreachable: true });
  const nameOf = new Map(c.fleet.clusters.map((x) => [x.context, x.name]));
  const clients = new Map([...c.clients].map(([ctx, cl]) => [nameOf.get(ctx)!, cl]));
  const unreachable = new Map(
    [...c.unreachable].map(([ctx, u]) => [nameOf.get(ctx)!, `its API server is unreachable: ${u.message}`]),
  );
  const progress = readProgress(progressPath(io, c.fleetLabel, c.fleet.name, c.labDir));
  const found = await fleetMembers(c.fleet, clients, {
    recorded: progress?.fleet === c.fleet.name ? progress.bundleEndpoints : {},
    unreachable: new Set(unreachable.keys()),
  });
  const out = new Map([...found.absent, ...(everyAddressed ? [] : unreachable)]);
  const members = found.members.filter((m) => !out.has(m.name));
  const names = new Set(members.map((m) => m.name));
  const record = new RefreshRecord(
    join(stateDir(io, c.fleetLabel, c.labDir), `${c.fleet.name}.refreshes.json`),
    c.fleet.name,
    by,
  );
  return {
    connected: c,
    members,
    pairs: c.fleet.federation.pairs.filter(([a, b]) => names.has(a) && names.has(b)),
    out,
    record,
  };
}

/** A direction's status with who made meshfed's last refresh of it. */
export interface DirectionStatus extends PairStatus {
  lastRefreshedBy?: RefreshSource;
}

/** The status of a direction with a side out of reach: nothing of it can be read. */
function outOfReach(holder: string, peer: string, out: Map<string, string>): PairStatus {
  const why = out.get(holder);
  return why !== undefined
    ? { holder, peer, state: 'holder-unreachable', detail: `${holder}: ${why}` }
    : { holder, peer, state: 'peer-unreachable', detail: `${peer}: ${out.get(peer) ?? 'not a member'}` };
}

async function fleetStatuses(r: Reached, now: Date): Promise<DirectionStatus[]> {
  const judged = await federationStatus(r.members, r.pairs, { log: r.record, now });
  const byKey = new Map(judged.map((s) => [key(s.holder, s.peer), s]));
  return fleetDirections(r.connected.fleet).map(([holder, peer]) => {
    const s: DirectionStatus = byKey.get(key(holder, peer)) ?? outOfReach(holder, peer, r.out);
    const at = r.record.get(holder, peer);
    if (at) s.lastRefreshed = at;
    const by = r.record.source(holder, peer);
    return by ? { ...s, lastRefreshedBy: by } : s;
  });
}

export { span };

const minuteUtc = (d: Date) => `${d.toISOString().slice(0, 16).replace('T', ' ')}Z`;

function expiryCell(at: Date | undefined, now: Date): string {
  if (!at) return '-';
  const left = at.getTime() - now.getTime();
  return `${minuteUtc(at)} (${left >= 0 ? `in ${span(left)}` : `EXPIRED ${span(-left)} ago`})`;
}

/** What to do about a direction that is not current. */
function fixOf(s: PairStatus): string {
  const d = repairDecision(s);
  if (d.action === 'bootstrap') return `meshfed federation repair (${d.why})`;
  if (d.action === 'refresh-heals') return 'meshfed federation sync, or wait for its refresh hint';
  if (s.state === 'holder-unreachable')
    return `reach ${s.holder}'s API server and SPIRE server (spire/spire-server-0), then run again`;
  if (s.state === 'peer-unreachable')
    return `reach ${s.peer}'s API server, SPIRE server and bundle endpoint, then run again`;
  return 'run again once both sides answer';
}

/** The status as a table, one row per direction, then each direction that is not current with its fix. */
export function formatStatusText(rows: DirectionStatus[], now: Date): string {
  const table_ = [['DIRECTION', 'STATE', 'HELD AGE', 'EARLIEST EXPIRY', 'REFRESH HINT', 'LAST REFRESHED']];
  for (const s of rows)
    table_.push([
      `${s.holder} ← ${s.peer}`,
      s.state,
      s.ageSeconds === undefined ? '-' : span(s.ageSeconds * 1000),
      expiryCell(s.earliestExpiresAt, now),
      s.refreshHintSeconds === undefined ? '-' : span(s.refreshHintSeconds * 1000),
      s.lastRefreshed
        ? `${span(now.getTime() - s.lastRefreshed.getTime())} ago${s.lastRefreshedBy ? ` (${s.lastRefreshedBy})` : ''}`
        : 'unknown',
    ]);
  const bad = rows.filter((s) => s.state !== 'current');
  const notes = bad.flatMap((s) => [
    `${s.holder} ← ${s.peer}: ${s.state}${s.detail ? `: ${s.detail}` : ''}`,
    `  fix: ${fixOf(s)}`,
  ]);
  const counts = [...new Set(rows.map((s) => s.state))]
    .map((st) => `${rows.filter((s) => s.state === st).length} ${st}`)
    .join(', ');
  const last = !rows.length
    ? 'no federated directions'
    : bad.length
      ? `${rows.length} directions: ${counts}`
      : `every direction current (${rows.length})`;
  return terminalSafe(`${table(table_)}\n${notes.length ? `\n${notes.join('\n')}\n` : ''}${last}\n`);
}

export function formatStatusJson(fleet: string, rows: DirectionStatus[], now: Date): string {
  const doc = {
    fleet,
    at: now.toISOString(),
    current: rows.every((s) => s.state === 'current'),
    directions: rows.map((s) => ({
      ...s,
      lastRefreshed: s.lastRefreshed?.toISOString() ?? null,
      lastRefreshedBy: s.lastRefreshedBy ?? null,
    })),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

function warnRecord(r: Reached, io: CliIO): void {
  if (r.record.writeError)
    io.stderr.write(
      `warning: the refreshes happened, but their record was not kept: ${terminalSafe(r.record.writeError)}\n`,
    );
}

async function status(argv: string[], io: CliIO): Promise<number> {
  const values = parseArgs({ args: argv, options: STATUS_OPTIONS }).values;
  const format = outputFormat(values.output);
  const r = await reach(values, io);
  const now = new Date();
  const rows = await fleetStatuses(r, now);
  io.stdout.write(
    format === 'json' ? formatStatusJson(r.connected.fleet.name, rows, now) : formatStatusText(rows, now),
  );
  return rows.every((s) => s.state === 'current') ? EXIT_OK : EXIT_FAILED;
}

interface SyncRow {
  holder: string;
  peer: string;
  result: 'refreshed' | 'failed' | 'not-run';
  error?: string;
}

async function sync(argv: string[], io: CliIO): Promise<number> {
  const values = parseArgs({ args: argv, options: SYNC_OPTIONS }).values;
  const format = outputFormat(values.output);
  const r = await reach(values, io, 'sync');
  const steps = new Map(
    (await refreshAll(r.members, r.pairs, r.record)).map((s) => [key(s.holder, s.peer), s]),
  );
  const rows = fleetDirections(r.connected.fleet).map(([holder, peer]): SyncRow => {
    const s = steps.get(key(holder, peer));
    if (!s) return { holder, peer, result: 'not-run', error: outOfReach(holder, peer, r.out).detail ?? '' };
    return s.result === 'failed'
      ? { holder, peer, result: 'failed', error: s.error ?? '' }
      : { holder, peer, result: 'refreshed' };
  });
  warnRecord(r, io);
  const ok = rows.every((x) => x.result === 'refreshed');
  if (format === 'json')
    io.stdout.write(`${JSON.stringify({ fleet: r.connected.fleet.name, ok, directions: rows }, null, 2)}\n`);
  else {
    const t = [['DIRECTION', 'RESULT', 'ERROR']];
    for (const x of rows) t.push([`${x.holder} ← ${x.peer}`, x.result, x.error ?? '']);
    io.stdout.write(
      terminalSafe(
        `${table(t)}\n${
          ok
            ? `every direction refreshed (${rows.length})`
            : 'not every direction refreshed; a holder whose bundle no longer authenticates the peer cannot refresh: `meshfed federation status` tells, `meshfed federation repair` fixes it'
        }\n`,
      ),
    );
  }
  return ok ? EXIT_OK : EXIT_FAILED;
}

/** What a repair did (or, dry, would do) to one direction, in words. */
function repairOutcome(x: RepairStep, dryRun: boolean): string {
  switch (x.action) {
    case 'none':
      return 'left alone: current';
    case 'refresh-heals':
      return `left alone: ${x.why}`;
    case 'unknown':
      return `cannot tell: ${x.why}`;
    case 'bootstrap':
      if (dryRun) return `would bootstrap again: ${x.why}`;
      if (!x.step) return `not bootstrapped: ${x.why}`;
      return x.step.result === 'failed'
        ? `bootstrap FAILED (${x.step.failedAt === 'holder' ? `${x.holder}'s part` : `${x.peer}'s part`}): ${x.step.error}`
        : `bootstrapped again (${x.step.result}): ${x.why}`;
  }
}

async function repairCommand(argv: string[], io: CliIO): Promise<number> {
  const values = parseArgs({ args: argv, options: REPAIR_OPTIONS }).values;
  const format = outputFormat(values.output);
  const dryRun = values['dry-run'] === true;
  const r = await reach(values, io, 'repair');
  const decisions = (await fleetStatuses(r, new Date())).map(repairDecision);
  const steps: RepairStep[] = dryRun ? decisions : await repair(r.members, r.pairs, decisions, r.record);
  warnRecord(r, io);
  // Dry, a direction to bootstrap counts as `plan` counts a change: exit 1.
  const failed = steps.filter(
    (x) =>
      x.action === 'unknown' ||
      (x.action === 'bootstrap' && (dryRun || !x.step || x.step.result === 'failed')),
  );
  if (format === 'json')
    io.stdout.write(
      `${JSON.stringify({ fleet: r.connected.fleet.name, dryRun, ok: !failed.length, directions: steps.map(({ step, ...x }) => ({ ...x, ...(step ? { result: step.result, ...(step.error ? { error: step.error } : {}) } : {}) })) }, null, 2)}\n`,
    );
  else {
    const t = [['DIRECTION', 'STATE', dryRun ? 'WOULD' : 'DONE']];
    for (const x of steps) t.push([`${x.holder} ← ${x.peer}`, x.state, repairOutcome(x, dryRun)]);
    const todo = steps.filter((x) => x.action === 'bootstrap').length;
    io.stdout.write(
      terminalSafe(
        `${table(t)}\n${
          dryRun
            ? `dry run: ${todo ? `${todo} direction${todo === 1 ? '' : 's'} to bootstrap again` : 'nothing to repair'}; nothing was changed`
            : failed.length
              ? 'not everything could be repaired (above)'
              : todo
                ? `${todo} direction${todo === 1 ? '' : 's'} bootstrapped again`
                : 'nothing to repair'
        }\n`,
      ),
    );
  }
  return failed.length ? EXIT_FAILED : EXIT_OK;
}

/** One line per watch event: words, or a JSON object. */
export function formatWatchEvent(e: WatchEvent, format: 'text' | 'json'): string {
  if (format === 'json') return `${JSON.stringify(e)}\n`;
  const at = e.at.toISOString();
  const what = (() => {
    switch (e.type) {
      case 'watching':
        return `watching ${e.peers.join(', ')}: changes are seen from now on`;
      case 'served-changed':
        return `served-changed ${e.peer}${e.sequence === undefined ? '' : ` (sequence ${e.sequence})`}: its holders refresh`;
      case 'refreshed':
        return `refreshed ${e.holder} ← ${e.peer}`;
      case 'refresh-failed':
        return `refresh-failed ${e.holder} ← ${e.peer}: ${e.error} (tried again at each poll)`;
      case 'endpoint-unreachable':
        return `endpoint-unreachable ${e.peer}: ${e.error}`;
      case 'endpoint-back':
        return `endpoint-back ${e.peer}`;
      case 'server-unreachable':
        // The error names the server as its transport does ("cluster-1: spire/spire-server-0: …"): the cluster once.
        return `server-unreachable ${e.cluster}: ${e.error.startsWith(`${e.cluster}: `) ? e.error.slice(e.cluster.length + 2) : e.error} (followed until it is back)`;
      case 'server-back':
        return `server-back ${e.cluster}: it refreshes every peer once`;
    }
  })();
  return `${at} ${terminalSafe(what)}\n`;
}

async function watch(argv: string[], io: CliIO): Promise<number> {
  const values = parseArgs({ args: argv, options: WATCH_OPTIONS }).values;
  const format = outputFormat(values.output);
  const intervalMs = intervalOf(values.interval);
  if (!io.onInterrupt) throw new UsageError('watch runs until SIGINT or SIGTERM, which cannot reach it here');
  const onInterrupt = io.onInterrupt.bind(io);
  const r = await reach(values, io, 'watch', true);
  for (const [cluster, why] of r.out) io.stderr.write(`not watched: ${cluster}: ${terminalSafe(why)}\n`);
  if (!r.pairs.length) {
    io.stderr.write('nothing to watch: no federated pair has both bundle endpoints known\n');
    return EXIT_FAILED;
  }
  io.stderr.write(
    `watching ${r.members.length} bundle endpoints every ${values.interval} (stop with Ctrl-C / SIGTERM)\n`,
  );
  let warned = false;
  const watcher = watchFederation(r.members, r.pairs, {
    intervalMs,
    catchUp: true,
    log: r.record,
    onEvent: (e) => {
      io.stdout.write(formatWatchEvent(e, format));
      if (!warned && r.record.writeError) {
        warned = true;
        warnRecord(r, io);
      }
    },
  });
  const signal = await new Promise<string>((resolve) => {
    const release = onInterrupt((s) => {
      release();
      resolve(s);
    });
  });
  io.stderr.write(`${signal}: stopping after the current poll\n`);
  await watcher.stop();
  return EXIT_OK;
}

const SUBCOMMANDS = new Map<string, (argv: string[], io: CliIO) => Promise<number>>([
  ['status', status],
  ['sync', sync],
  ['repair', repairCommand],
  ['watch', watch],
]);

export const federationCommand: Command = {
  name: 'federation',
  usage: USAGE,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    const run = sub === undefined ? undefined : SUBCOMMANDS.get(sub);
    if (!run)
      throw new UsageError(
        sub === undefined || sub.startsWith('-')
          ? 'name a subcommand first: status, sync, repair or watch'
          : `unknown subcommand "${sub}"; it is one of ${[...SUBCOMMANDS.keys()].join(', ')}`,
      );
    try {
      return await run(rest, io);
    } catch (e) {
      // Bad input names the subcommand it was given to.
      const parseError = e instanceof TypeError && 'code' in e && String(e.code).startsWith('ERR_PARSE_ARGS');
      if (e instanceof UsageError || parseError) throw new UsageError(`${sub}: ${(e as Error).message}`);
      throw e;
    }
  },
};
