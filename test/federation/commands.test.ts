/**
 * `meshfed federation status|sync|repair|watch` on the lab after `meshfed
 * up`: real API servers and real SPIRE servers with their bundle endpoints
 * (reached through pod exec, as a cluster's are), simulated pods otherwise.
 * A held bundle replaced by a stale one that no longer authenticates the
 * peer's endpoint is found by status, named by repair --dry-run, and
 * repaired alone; sync refreshes every direction and status shows it; watch,
 * as its own process, refreshes the holders of a peer whose served bundle
 * changes and stops on SIGINT with exit 0.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DirectionStatus } from '../../src/cli/commands/federation.js';
import { SPIRE_SERVER_POD } from '../../src/engine/discover.js';
import { SpireServerCli } from '../../src/federation/spire-cli.js';
import { podServerTransport } from '../../src/federation/transport.js';
import type { Profile } from '../../src/fleet/model.js';
import { bundleToJwks, parsePemBundle, sameKeys } from '../../src/spiffe/bundle.js';
import { labSkip, startLab } from '../helpers/engine.js';
import { REPO_ROOT, waitUntil } from '../helpers/lab.js';
import { intermediate, root } from '../helpers/pki.js';

type Lab = Awaited<ReturnType<typeof startLab>>;

interface StatusJson {
  current: boolean;
  directions: Array<Omit<DirectionStatus, 'lastRefreshed'> & { lastRefreshed: string | null }>;
}

async function status(lab: Lab): Promise<{ code: number; json: StatusJson; text: string }> {
  const r = await lab.meshfed(['federation', 'status', '-o', 'json']);
  assert.notEqual(r.code, 2, r.stderr);
  return { code: r.code, json: JSON.parse(r.stdout) as StatusJson, text: r.stderr + r.stdout };
}

const direction = (j: StatusJson, holder: string, peer: string) => {
  const d = j.directions.find((x) => x.holder === holder && x.peer === peer);
  assert.ok(d, `no direction ${holder} ← ${peer}: ${JSON.stringify(j)}`);
  return d;
};

function allCurrent(j: StatusJson, what: string) {
  assert.equal(j.current, true, `${what}: ${JSON.stringify(j.directions, null, 1)}`);
  assert.deepEqual(j.directions.map((d) => `${d.holder} ← ${d.peer} ${d.state}`).sort(), [
    'cluster-1 ← cluster-2 current',
    'cluster-2 ← cluster-1 current',
  ]);
}

const spireOf = (lab: Lab, cluster: string) =>
  new SpireServerCli(podServerTransport(lab.clients.get(cluster)!, SPIRE_SERVER_POD));

/** Every bundle each server holds, as written (so "unchanged" means not even the sequence moved). */
async function heldBundles(lab: Lab): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const c of ['cluster-1', 'cluster-2'])
    for (const [td, b] of await spireOf(lab, c).heldBundles()) out[`${c} holds ${td}`] = bundleToJwks(b);
  return out;
}

/** A lab of `profile` with `meshfed up` done, for the describe block; stopped after it. */
function labAfterUp(profile: Profile): () => Lab {
  let lab: Lab | undefined;
  before(async () => {
    const t0 = Date.now();
    lab = await startLab(profile, 2, ['--pods', 'simulated']);
    const up = await lab.meshfed(['up']);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    console.log(`# ${profile}: lab up and meshfed up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
  after(async () => lab?.stop());
  return () => lab!;
}

describe('meshfed federation on the lab (current profile)', {
  skip: labSkip('current'),
  timeout: 900_000,
}, () => {
  const lab = labAfterUp('current');

  test('status after up: every direction current, with age, expiry and hint; exit 0', async () => {
    const { code, json, text } = await status(lab());
    assert.equal(code, 0, text);
    allCurrent(json, 'after up');
    for (const d of json.directions) {
      assert.ok((d.ageSeconds ?? -1) >= 0, JSON.stringify(d));
      assert.ok(
        d.earliestExpiresAt && Date.parse(String(d.earliestExpiresAt)) > Date.now(),
        JSON.stringify(d),
      );
      assert.equal(typeof d.refreshHintSeconds, 'number', JSON.stringify(d));
      assert.equal(d.lastRefreshed, null, 'meshfed has refreshed nothing yet');
    }
    const t = await lab().meshfed(['federation', 'status']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(
      t.stdout,
      /cluster-1 ← cluster-2 +current +\S+ +\d{4}-\d\d-\d\d \d\d:\d\dZ \(in \S+\) +\S+ +unknown/,
    );
    assert.match(t.stdout, /every direction current \(2\)\n$/);
  });

  test('a held bundle replaced by a stale one: status finds it, repair --dry-run names it, repair fixes exactly it', async () => {
    const old = await intermediate(await root(), 'bar.com');
    await spireOf(lab(), 'cluster-1').setBundle(parsePemBundle(old.pem, 'bar.com'));

    const stale = await status(lab());
    assert.equal(stale.code, 1, stale.text);
    const d = direction(stale.json, 'cluster-1', 'cluster-2');
    assert.equal(d.state, 'stale', JSON.stringify(d));
    assert.equal(d.selfHeals, false, 'the stale bundle does not authenticate bar.com’s endpoint');
    assert.equal(direction(stale.json, 'cluster-2', 'cluster-1').state, 'current');
    const text = await lab().meshfed(['federation', 'status']);
    assert.equal(text.code, 1);
    console.log(text.stdout.replace(/^/gm, '# '));
    assert.match(text.stdout, /cluster-1 ← cluster-2: stale: .*\n {2}fix: meshfed federation repair/);

    const held = await heldBundles(lab());
    const dry = await lab().meshfed(['federation', 'repair', '--dry-run']);
    assert.equal(dry.code, 1, `a dry run with something to repair exits 1, as plan does: ${dry.stderr}`);
    assert.match(
      dry.stdout,
      /cluster-1 ← cluster-2 +stale +would bootstrap again: the held bundle no longer authenticates/,
    );
    assert.match(dry.stdout, /cluster-2 ← cluster-1 +current +left alone: current/);
    assert.match(dry.stdout, /dry run: 1 direction to bootstrap again; nothing was changed/);
    assert.deepEqual(await heldBundles(lab()), held, 'the dry run changed nothing');

    const fixed = await lab().meshfed(['federation', 'repair', '-o', 'json']);
    assert.equal(fixed.code, 0, fixed.stderr + fixed.stdout);
    const steps = (
      JSON.parse(fixed.stdout) as {
        directions: Array<{ holder: string; peer: string; action: string; result?: string }>;
      }
    ).directions;
    assert.deepEqual(
      steps.map((s) => [s.holder, s.peer, s.action, s.result ?? '-']),
      [
        ['cluster-1', 'cluster-2', 'bootstrap', 'updated'],
        ['cluster-2', 'cluster-1', 'none', '-'],
      ],
    );
    const after_ = await heldBundles(lab());
    assert.equal(
      after_['cluster-2 holds foo.com'],
      held['cluster-2 holds foo.com'],
      'the current direction was not touched',
    );
    assert.notEqual(after_['cluster-1 holds bar.com'], held['cluster-1 holds bar.com']);

    const back = await status(lab());
    assert.equal(back.code, 0, back.text);
    allCurrent(back.json, 'after repair');
    assert.equal(direction(back.json, 'cluster-1', 'cluster-2').lastRefreshedBy, 'repair');
    assert.equal(direction(back.json, 'cluster-2', 'cluster-1').lastRefreshed, null);
    const again = await lab().meshfed(['federation', 'repair']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /nothing to repair/);
  });

  test('sync: every holder refreshes every peer, exit 0; status shows the refresh', async () => {
    // cluster-2's foo.com bundle without its JWT authorities: stale, but its X.509 authorities still
    // authenticate foo.com's endpoint, so a refresh heals it and repair leaves it alone.
    const spire2 = spireOf(lab(), 'cluster-2');
    const foo = (await spire2.heldBundle('foo.com'))!;
    await spire2.setBundle({ ...foo, jwtAuthorities: new Map() });
    const stale = await status(lab());
    assert.equal(stale.code, 1, stale.text);
    const d = direction(stale.json, 'cluster-2', 'cluster-1');
    assert.equal(d.state, 'stale', JSON.stringify(d));
    assert.equal(d.selfHeals, true, JSON.stringify(d));
    const dry = await lab().meshfed(['federation', 'repair', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr + dry.stdout);
    assert.match(
      dry.stdout,
      /cluster-2 ← cluster-1 +stale +left alone: stale, but the held bundle still authenticates cluster-1's endpoint/,
    );
    assert.match(dry.stdout, /dry run: nothing to repair/);

    const t0 = Date.now();
    const r = await lab().meshfed(['federation', 'sync']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /cluster-1 ← cluster-2 +refreshed/);
    assert.match(r.stdout, /cluster-2 ← cluster-1 +refreshed/);
    const { code, json, text } = await status(lab());
    assert.equal(code, 0, text);
    allCurrent(json, 'after sync');
    for (const d of json.directions) {
      assert.equal(d.lastRefreshedBy, 'sync', JSON.stringify(d));
      // The record is written after SPIRE answered; a second's slack for the ISO text's milliseconds.
      assert.ok(
        Date.parse(d.lastRefreshed!) >= t0 - 1000 && Date.parse(d.lastRefreshed!) <= Date.now(),
        JSON.stringify(d),
      );
    }
    const t = await lab().meshfed(['federation', 'status']);
    assert.match(t.stdout, /cluster-2 ← cluster-1 +current .* \d+s ago \(sync\)\n/);
  });

  test("watch -o json: a peer's served bundle changes, its holder refreshes; SIGINT stops it with exit 0", async () => {
    const child = spawn(
      process.execPath,
      [
        join(REPO_ROOT, 'dist/src/cli/main.js'),
        'federation',
        'watch',
        '--lab',
        '-o',
        'json',
        '--interval',
        '500ms',
      ],
      { cwd: lab().parent, env: { ...process.env, ...lab().env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const out = lines(child);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const events = () =>
        out.stdout
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l) as { type: string; holder?: string; peer?: string });
      const seen = (type: string, holder?: string, peer?: string) =>
        events().some(
          (e) =>
            e.type === type &&
            (holder === undefined || e.holder === holder) &&
            (peer === undefined || e.peer === peer),
        );
      await waitUntil(
        `the watch's first poll (stderr: ${out.stderr.join('\n')})`,
        async () => seen('watching'),
        60_000,
      );
      // It caught up first: every direction refreshed once.
      assert.ok(
        seen('refreshed', 'cluster-1', 'cluster-2') && seen('refreshed', 'cluster-2', 'cluster-1'),
        out.stdout.join('\n'),
      );
      const firstChange = events().length;

      // cluster-2's server has an UpstreamAuthority (the lab's cert-manager-shaped root): a new X.509
      // authority is signed by the same root, so prepare and activate leave its bundle's keys as they were.
      // A new JWT authority is published in the bundle at once: that is the change the watch must see.
      const bar = spireOf(lab(), 'cluster-2');
      const before_ = await bar.ownBundle('bar.com');
      const prepared = await bar.prepareX509Authority();
      await bar.activateX509Authority(prepared.authorityId);
      assert.ok(sameKeys(before_, await bar.ownBundle('bar.com')), 'an X.509 authority under the same root');
      const jwt = await bar.transport.run(['localauthority', 'jwt', 'prepare', '-output', 'json']);
      assert.equal(jwt.code, 0, jwt.stderr);
      assert.ok(
        !sameKeys(before_, await bar.ownBundle('bar.com')),
        "bar.com's bundle has a new JWT authority",
      );

      await waitUntil(
        `served-changed and refreshed cluster-1 ← cluster-2 (${out.stdout.join('')}${out.stderr.join('')})`,
        async () => {
          const later = events().slice(firstChange);
          return (
            later.some((e) => e.type === 'served-changed' && e.peer === 'cluster-2') &&
            later.some((e) => e.type === 'refreshed' && e.holder === 'cluster-1' && e.peer === 'cluster-2')
          );
        },
        60_000,
      );
      const later = events().slice(firstChange);
      assert.ok(
        !later.some((e) => e.type === 'refreshed' && e.peer === 'cluster-1'),
        'only the changed peer’s holders refresh',
      );
      child.kill('SIGINT');
      assert.equal(await exited, 0, out.stderr.join('\n'));
      assert.match(out.stderr.join('\n'), /SIGINT: stopping after the current poll/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    const { code, json, text } = await status(lab());
    assert.equal(code, 0, text);
    allCurrent(json, 'after the watch');
    assert.equal(direction(json, 'cluster-1', 'cluster-2').lastRefreshedBy, 'watch');
  });
});

describe('meshfed federation on the lab (seed profile)', { skip: labSkip('seed'), timeout: 900_000 }, () => {
  const lab = labAfterUp('seed');

  test('status after up: every direction current, exit 0; a stale bundle makes it exit 1, repair fixes it', async () => {
    const first = await status(lab());
    assert.equal(first.code, 0, first.text);
    allCurrent(first.json, 'after up');
    for (const d of first.json.directions)
      assert.equal(typeof d.refreshHintSeconds, 'number', JSON.stringify(d));

    const old = await intermediate(await root(), 'bar.com');
    await spireOf(lab(), 'cluster-1').setBundle(parsePemBundle(old.pem, 'bar.com'));
    const stale = await status(lab());
    assert.equal(stale.code, 1, stale.text);
    assert.equal(direction(stale.json, 'cluster-1', 'cluster-2').state, 'stale');
    assert.equal(direction(stale.json, 'cluster-1', 'cluster-2').selfHeals, false);
    const fixed = await lab().meshfed(['federation', 'repair']);
    assert.equal(fixed.code, 0, fixed.stderr + fixed.stdout);
    const back = await status(lab());
    assert.equal(back.code, 0, back.text);
    allCurrent(back.json, 'after repair');
  });
});

/** The child's output, as lines so far. */
function lines(child: ChildProcess): { stdout: string[]; stderr: string[] } {
  const out = { stdout: [] as string[], stderr: [] as string[] };
  const collect = (into: string[]) => {
    let rest = '';
    return (b: Buffer) => {
      const parts = (rest + b.toString()).split('\n');
      rest = parts.pop() ?? '';
      into.push(...parts);
    };
  };
  child.stdout?.on('data', collect(out.stdout));
  child.stderr?.on('data', collect(out.stderr));
  return out;
}
