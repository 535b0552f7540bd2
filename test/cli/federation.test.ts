/**
 * `meshfed federation` without a lab: bad input exits 2 naming the problem
 * before any cluster is touched (the API servers of the kubeconfig count the
 * connections made to them); clusters that cannot be reached fail their
 * directions, named, with exit 1; the status table and JSON from given
 * statuses; which directions a repair bootstraps again; meshfed's record of
 * its refreshes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type DirectionStatus,
  formatStatusJson,
  formatStatusText,
  formatWatchEvent,
  span,
} from '../../src/cli/commands/federation.js';
import type { CliIO } from '../../src/cli/io.js';
import { runCli } from '../../src/cli/run.js';
import { RefreshRecord, readRefreshEntries } from '../../src/engine/refresh-record.js';
import type { PairStatus } from '../../src/federation/engine.js';
import { repairDecision } from '../../src/federation/repair.js';
import { runMeshfed } from '../helpers/cli.js';

describe('meshfed federation: input, unreachable clusters', () => {
  let dir: string;
  let server: Server;
  let connections = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mf-fedcli-'));
    // Both API servers: a port that takes a connection and closes it (no TLS), counting.
    server = createServer((s) => {
      connections++;
      s.destroy();
    });
    const port = await new Promise<number>((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
    );
    const init = await runMeshfed(['init', '--clusters', '2'], { cwd: dir, env: { HOME: dir } });
    assert.equal(init.code, 0, init.stderr);
    writeFileSync(
      join(dir, 'k.yaml'),
      `apiVersion: v1
kind: Config
clusters:
- {name: closes, cluster: {server: "https://127.0.0.1:${port}"}}
contexts:
- {name: cluster-1, context: {cluster: closes, user: token}}
- {name: cluster-2, context: {cluster: closes, user: token}}
users:
- {name: token, user: {token: not-a-real-token}}
`,
    );
  });
  after(() => {
    server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const meshfed = (args: string[]) =>
    runMeshfed(
      [...args, '--kubeconfig', 'k.yaml', ...(args.includes('--timeout') ? [] : ['--timeout', '3s'])],
      {
        cwd: dir,
        env: { HOME: dir },
      },
    );

  const BAD: Array<[string[], RegExp]> = [
    [[], /name a subcommand first: status, sync, repair or watch/],
    [['rotate'], /unknown subcommand "rotate"; it is one of status, sync, repair, watch/],
    [['status', '-o', 'yaml'], /status: -o must be text or json, not "yaml"/],
    [['status', '--dry-run'], /status: Unknown option '--dry-run'/],
    [['status', 'cluster-1'], /status: Unexpected argument 'cluster-1'/],
    [['sync', '--interval', '2s'], /sync: Unknown option '--interval'/],
    [['repair', '-o', 'wide'], /repair: -o must be text or json, not "wide"/],
    [['watch', '--interval', '5'], /watch: --interval "5" must be a Go duration from 100ms to 1h/],
    [['watch', '--interval', '10ms'], /watch: --interval "10ms" must be a Go duration from 100ms to 1h/],
    [['status', '--timeout', 'soon'], /status: --timeout "soon" is not a Go duration/],
    [['status', '-f', 'missing.yaml'], /status: fleet file missing\.yaml does not exist/],
    [['sync', '--lab'], /sync: --lab: no lab in \S+\.meshfed-lab; start one with `meshfed lab up`/],
  ];

  for (const [args, says] of BAD)
    test(`bad input exits 2, touching no cluster: federation ${args.join(' ')}`, async () => {
      const before_ = connections;
      const r = await meshfed(['federation', ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, says);
      assert.match(r.stderr, /Run `meshfed federation --help` for usage/);
      assert.equal(r.stdout, '');
      assert.equal(connections, before_, 'no API server was contacted');
    });

  test('a fleet file with a problem: file:line, exit 2, no cluster touched', async () => {
    writeFileSync(
      join(dir, 'bad.yaml'),
      'apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\nmetadata: {name: m}\nspec:\n  clusters:\n  - name: Cluster_1\n',
    );
    const before_ = connections;
    const r = await meshfed(['federation', 'status', '-f', 'bad.yaml']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /bad\.yaml:6:\d+/);
    assert.equal(connections, before_);
  });

  test('API servers that do not answer: every direction holder-unreachable, named, exit 1', async () => {
    const before_ = connections;
    const json = await meshfed(['federation', 'status', '-o', 'json']);
    assert.equal(json.code, 1, json.stderr);
    assert.ok(connections > before_, 'the API servers were asked');
    const doc = JSON.parse(json.stdout) as { current: boolean; directions: DirectionStatus[] };
    assert.equal(doc.current, false);
    assert.deepEqual(
      doc.directions.map((d) => [d.holder, d.peer, d.state]),
      [
        ['cluster-1', 'cluster-2', 'holder-unreachable'],
        ['cluster-2', 'cluster-1', 'holder-unreachable'],
      ],
    );
    for (const d of doc.directions) {
      assert.match(
        d.detail ?? '',
        new RegExp(`^${d.holder}: .*API server is unreachable: context ${d.holder}`),
      );
      assert.equal(d.lastRefreshed, null);
    }
    const text = await meshfed(['federation', 'status']);
    assert.equal(text.code, 1);
    assert.match(text.stdout, /cluster-1 ← cluster-2 +holder-unreachable +- +- +- +unknown/);
    assert.match(text.stdout, /fix: reach cluster-1's API server and SPIRE server/);
    assert.match(text.stdout, /2 directions: 2 holder-unreachable\n$/);

    const sync = await meshfed(['federation', 'sync']);
    assert.equal(sync.code, 1, sync.stderr);
    assert.match(sync.stdout, /cluster-2 ← cluster-1 +not-run +cluster-2: its API server is unreachable/);
    const repair = await meshfed(['federation', 'repair', '--dry-run']);
    assert.equal(repair.code, 1, repair.stderr);
    assert.match(repair.stdout, /cluster-1 ← cluster-2 +holder-unreachable +cannot tell: holder-unreachable/);
    assert.match(repair.stdout, /dry run: nothing to repair; nothing was changed/);
  });

  test('watch with no bundle endpoint known: names each cluster not watched, exit 1', async () => {
    let stdout = '';
    let stderr = '';
    const io: CliIO = {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      readStdin: async () => '',
      env: { HOME: dir },
      cwd: dir,
      onInterrupt: () => () => {},
    };
    const code = await runCli(['federation', 'watch', '--kubeconfig', 'k.yaml', '--timeout', '3s'], io);
    assert.equal(code, 1, stderr);
    assert.match(stderr, /not watched: cluster-1: no bundle endpoint address: its API server is unreachable/);
    assert.match(stderr, /not watched: cluster-2: /);
    assert.match(stderr, /nothing to watch/);
    assert.equal(stdout, '');
  });

  test('watch where no signal can reach it: exit 2 before touching a cluster', async () => {
    const before_ = connections;
    const r = await meshfed(['federation', 'watch']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /watch runs until SIGINT or SIGTERM/);
    assert.equal(connections, before_);
  });
});

const NOW = new Date('2026-11-27T12:00:00Z');
const ago = (s: number) => new Date(NOW.getTime() - s * 1000);

const ROWS: DirectionStatus[] = [
  {
    holder: 'cluster-1',
    peer: 'cluster-2',
    state: 'current',
    heldSequence: 3,
    servedSequence: 3,
    ageSeconds: 3 * 3600 + 5 * 60,
    expiresAt: new Date('2027-01-26T12:00:00Z'),
    earliestExpiresAt: new Date('2026-12-27T12:00:00Z'),
    refreshHintSeconds: 300,
    lastRefreshed: ago(42),
    lastRefreshedBy: 'sync',
  },
  {
    holder: 'cluster-2',
    peer: 'cluster-1',
    state: 'stale',
    ageSeconds: 40 * 86_400,
    earliestExpiresAt: ago(7200),
    refreshHintSeconds: 7_776_000,
    selfHeals: false,
    detail: 'cluster-2 holds 1 X.509 authorities of foo.com; its endpoint serves 1, not the same',
  },
  {
    holder: 'cluster-1',
    peer: 'cluster-3',
    state: 'stale',
    selfHeals: true,
    ageSeconds: 60,
    lastRefreshed: ago(3 * 86_400 + 3600),
    lastRefreshedBy: 'watch',
  },
  {
    holder: 'cluster-3',
    peer: 'cluster-1',
    state: 'missing',
    detail: 'cluster-3 holds no bundle for foo.com',
  },
  { holder: 'cluster-2', peer: 'cluster-3', state: 'peer-unreachable', detail: 'connect ECONNREFUSED' },
];

test('span: lengths of time for a person', () => {
  assert.deepEqual(
    [
      0,
      45_000,
      90_000,
      3_600_000,
      5 * 3_600_000 + 180_000,
      2 * 86_400_000,
      29 * 86_400_000 + 23 * 3_600_000,
    ].map(span),
    ['0s', '45s', '2m', '60m', '5h3m', '2d', '29d23h'],
  );
});

test('status as a table: one row per direction, then each direction not current with its fix', () => {
  const text = formatStatusText(ROWS, NOW);
  const lines = text.split('\n');
  assert.match(lines[0]!, /^DIRECTION +STATE +HELD AGE +EARLIEST EXPIRY +REFRESH HINT +LAST REFRESHED$/);
  assert.match(
    lines[1]!,
    /^cluster-1 ← cluster-2 +current +3h5m +2026-12-27 12:00Z \(in 30d\) +5m +42s ago \(sync\)$/,
  );
  assert.match(
    lines[2]!,
    /^cluster-2 ← cluster-1 +stale +40d +2026-11-27 10:00Z \(EXPIRED 2h ago\) +90d +unknown$/,
  );
  assert.match(lines[3]!, /^cluster-1 ← cluster-3 +stale +60s +- +- +3d1h ago \(watch\)$/);
  assert.match(lines[4]!, /^cluster-3 ← cluster-1 +missing +- +- +- +unknown$/);
  assert.match(lines[5]!, /^cluster-2 ← cluster-3 +peer-unreachable +- +- +- +unknown$/);
  const notes = lines.slice(7).join('\n');
  assert.match(
    notes,
    /cluster-2 ← cluster-1: stale: cluster-2 holds 1 X\.509 authorities of foo\.com.*\n {2}fix: meshfed federation repair \(the held bundle no longer authenticates cluster-1's bundle endpoint\)/,
  );
  assert.match(
    notes,
    /cluster-1 ← cluster-3: stale\n {2}fix: meshfed federation sync, or wait for its refresh hint/,
  );
  assert.match(
    notes,
    /cluster-3 ← cluster-1: missing: cluster-3 holds no bundle for foo\.com\n {2}fix: meshfed federation repair/,
  );
  assert.match(
    notes,
    /cluster-2 ← cluster-3: peer-unreachable: connect ECONNREFUSED\n {2}fix: reach cluster-3's API server, SPIRE server and bundle endpoint/,
  );
  assert.ok(!notes.includes('cluster-1 ← cluster-2'), 'a current direction has no note');
  assert.match(text, /\n5 directions: 1 current, 2 stale, 1 missing, 1 peer-unreachable\n$/);
  assert.match(formatStatusText([ROWS[0]!], NOW), /\nevery direction current \(1\)\n$/);
});

test('status as JSON: every field, dates as ISO, unknown refreshes as null', () => {
  const doc = JSON.parse(formatStatusJson('mesh', ROWS, NOW));
  assert.equal(doc.fleet, 'mesh');
  assert.equal(doc.at, '2026-11-27T12:00:00.000Z');
  assert.equal(doc.current, false);
  assert.deepEqual(doc.directions[0], {
    holder: 'cluster-1',
    peer: 'cluster-2',
    state: 'current',
    heldSequence: 3,
    servedSequence: 3,
    ageSeconds: 11_100,
    expiresAt: '2027-01-26T12:00:00.000Z',
    earliestExpiresAt: '2026-12-27T12:00:00.000Z',
    refreshHintSeconds: 300,
    lastRefreshed: '2026-11-27T11:59:18.000Z',
    lastRefreshedBy: 'sync',
  });
  assert.equal(doc.directions[1].selfHeals, false);
  assert.equal(doc.directions[1].lastRefreshed, null);
  assert.equal(doc.directions[1].lastRefreshedBy, null);
  assert.equal(JSON.parse(formatStatusJson('mesh', [ROWS[0]!], NOW)).current, true);
});

test('status text shows control characters from the clusters as escapes', () => {
  const text = formatStatusText(
    [{ holder: 'a', peer: 'b', state: 'peer-unreachable', detail: 'x\u001b[2Jy' }],
    NOW,
  );
  assert.ok(!text.includes('\u001b'));
  assert.match(text, /x\\x1b\[2Jy/);
});

test('watch events: one line each, words or JSON', () => {
  const at = NOW;
  assert.equal(
    formatWatchEvent({ type: 'served-changed', peer: 'cluster-2', sequence: 7, at }, 'text'),
    '2026-11-27T12:00:00.000Z served-changed cluster-2 (sequence 7): its holders refresh\n',
  );
  assert.equal(
    formatWatchEvent(
      { type: 'refresh-failed', holder: 'cluster-1', peer: 'cluster-2', error: 'no', at },
      'text',
    ),
    '2026-11-27T12:00:00.000Z refresh-failed cluster-1 ← cluster-2: no (tried again at each poll)\n',
  );
  assert.equal(
    formatWatchEvent(
      {
        type: 'server-unreachable',
        cluster: 'cluster-1',
        error: 'cluster-1: spire/spire-server-0: refused',
        at,
      },
      'text',
    ),
    '2026-11-27T12:00:00.000Z server-unreachable cluster-1: spire/spire-server-0: refused (followed until it is back)\n',
  );
  assert.equal(
    formatWatchEvent({ type: 'server-back', cluster: 'cluster-1', at }, 'text'),
    '2026-11-27T12:00:00.000Z server-back cluster-1: it refreshes every peer once\n',
  );
  const line = formatWatchEvent({ type: 'refreshed', holder: 'cluster-1', peer: 'cluster-2', at }, 'json');
  assert.ok(line.endsWith('}\n') && !line.slice(0, -1).includes('\n'));
  assert.deepEqual(JSON.parse(line), {
    type: 'refreshed',
    holder: 'cluster-1',
    peer: 'cluster-2',
    at: '2026-11-27T12:00:00.000Z',
  });
});

test('repair decisions: exactly the directions that cannot heal themselves are bootstrapped again', () => {
  const base = { holder: 'h', peer: 'p' };
  const cases: Array<[PairStatus, string]> = [
    [{ ...base, state: 'current' }, 'none'],
    [{ ...base, state: 'missing' }, 'bootstrap'],
    [{ ...base, state: 'stale', selfHeals: false }, 'bootstrap'],
    [{ ...base, state: 'stale', selfHeals: true }, 'refresh-heals'],
    [{ ...base, state: 'stale' }, 'unknown'],
    [{ ...base, state: 'peer-unreachable' }, 'unknown'],
    [{ ...base, state: 'holder-unreachable' }, 'unknown'],
  ];
  for (const [s, action] of cases)
    assert.equal(repairDecision(s).action, action, `${s.state} selfHeals=${s.selfHeals}`);
});

test("meshfed's record of refreshes: kept per direction with its command, merged across processes", () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-fedrec-'));
  try {
    const path = join(dir, '.meshfed', 'mesh.refreshes.json');
    assert.equal(new RefreshRecord(path, 'mesh').get('cluster-1', 'cluster-2'), undefined);
    const sync = new RefreshRecord(path, 'mesh', 'sync');
    const watch = new RefreshRecord(path, 'mesh', 'watch');
    sync.record('cluster-1', 'cluster-2', new Date('2026-11-27T10:00:00Z'));
    watch.record('cluster-2', 'cluster-1', new Date('2026-11-27T11:00:00Z'));
    // The watch's write kept the sync's entry, which it never saw.
    const read = new RefreshRecord(path, 'mesh');
    assert.equal(read.get('cluster-1', 'cluster-2')?.toISOString(), '2026-11-27T10:00:00.000Z');
    assert.equal(read.source('cluster-1', 'cluster-2'), 'sync');
    assert.equal(read.source('cluster-2', 'cluster-1'), 'watch');
    // Another fleet's record, or one that is not JSON, is no record.
    assert.deepEqual(readRefreshEntries(path, 'other'), []);
    writeFileSync(path, '{not json');
    assert.deepEqual(readRefreshEntries(path, 'mesh'), []);
    assert.throws(() => new RefreshRecord(path, 'mesh').record('a', 'b'), /without a command cannot record/);
    // A record that cannot be written never fails the refresh: it is told.
    const blocked = new RefreshRecord(join(path, 'under-a-file', 'x.json'), 'mesh', 'sync');
    writeFileSync(path, 'a file where a folder would be');
    blocked.record('a', 'b');
    assert.match(blocked.writeError ?? '', /cannot write/);
    assert.ok(readFileSync(path, 'utf8').startsWith('a file'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
