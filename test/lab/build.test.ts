/**
 * `meshfed lab build` on a real build (kwok, the smallest component, into a
 * folder of its own): it counts what it will build, names the component it
 * compiles with the cold time measured for this release, records how long it
 * took and says so the next time, and builds nothing when all is built; the
 * expectations' order: this machine's time, else the shipped one, else none.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { execFileBounded } from '../../src/federation/transport.js';
import { BUILD_SCRIPT, expectationOf, SHIPPED_COLD_SECONDS } from '../../src/lab/build.js';
import { runMeshfed } from '../helpers/cli.js';

const hasGo = await execFileBounded('go', ['version'], { timeoutMs: 30_000 }).then(
  (r) => r.code === 0,
  () => false,
);
const skip = hasGo ? false : 'needs Go on PATH (the lab is built with it)';
if (!hasGo && process.env.MESHFED_REQUIRE_LAB === '1') throw new Error('CI needs Go for the lab build');

const bin = mkdtempSync(join(tmpdir(), 'mf-labbuild-'));
after(() => rmSync(bin, { recursive: true, force: true }));
/** `meshfed lab build ARGS` (in-process: the lab's binary folder comes from process.env). */
async function build(args: string[]) {
  const saved = process.env.MESHFED_LAB_BIN;
  process.env.MESHFED_LAB_BIN = bin;
  try {
    return await runMeshfed(['lab', 'build', ...args]);
  } finally {
    if (saved === undefined) delete process.env.MESHFED_LAB_BIN;
    else process.env.MESHFED_LAB_BIN = saved;
  }
}

test('lab build: component i of N, its time recorded and shown next time; nothing to do when built', {
  skip,
  timeout: 900_000,
}, async () => {
  const first = await build(['kwok']);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /1 to build \(kwok 0\.8\.0\), 0 already built, into /);
  assert.match(first.stderr, /cold build .* about 31 minutes on 2 cores/);
  // Nothing recorded here yet: the cold time measured for this release is the expectation.
  assert.match(
    first.stderr,
    /\[1\/1\] kwok 0\.8\.0: compiling; about 1m31s cold on 2 cores \(measured for this release\), no time recorded here yet/,
  );
  assert.match(first.stderr, /\[1\/1\] kwok 0\.8\.0: built in \d+s/);
  assert.ok(existsSync(join(bin, 'kwok', '0.8.0', 'kwokctl')));
  const times = JSON.parse(readFileSync(join(bin, 'build-times.json'), 'utf8')) as Record<string, number>;
  assert.ok(times['kwok 0.8.0']! >= 0);

  const again = await build(['kwok']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /nothing to build: 1 components already built/);

  // A changed recipe (its stamp gone) is built again, with last time's duration as the expectation.
  rmSync(join(bin, 'kwok', '0.8.0', '.stamp'));
  const rebuilt = await build(['kwok', '0.8']);
  assert.equal(rebuilt.code, 0, rebuilt.stderr);
  assert.match(
    rebuilt.stderr,
    new RegExp(`\\[1/1\\] kwok 0\\.8\\.0: compiling; ${times['kwok 0.8.0']}s last time here`),
  );
});

test("a build's expectation: this machine's last time, else the shipped cold time, else none", async () => {
  assert.deepEqual(expectationOf('kwok 0.8.0', { 'kwok 0.8.0': 12 }), { seconds: 12, from: 'here' });
  assert.deepEqual(expectationOf('kwok 0.8.0', {}), {
    seconds: SHIPPED_COLD_SECONDS['kwok 0.8.0'],
    from: 'shipped',
  });
  assert.equal(expectationOf('kwok 9.9.9', {}), undefined);
  // Every shipped time names a component and version the build script builds (its own list of recipes).
  const list = await execFileBounded('bash', [BUILD_SCRIPT], {
    timeoutMs: 60_000,
    env: { ...process.env, MESHFED_LAB_LIST: '1', MESHFED_LAB_OUT: bin },
  });
  assert.equal(list.code, 0, list.stderr);
  const recipes = list.stdout.split('\n').map((l) => l.split(' ').slice(0, 2).join(' '));
  for (const c of Object.keys(SHIPPED_COLD_SECONDS)) assert.ok(recipes.includes(c), `${c} is not a recipe`);
});

test('lab build refuses more than COMPONENT VERSION, and other verbs refuse positionals', async () => {
  const r = await build(['a', 'b', 'c']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /at most COMPONENT and VERSION/);
  const up = await runMeshfed(['lab', 'up', 'extra']);
  assert.equal(up.code, 2);
  assert.match(up.stderr, /unexpected "extra"/);
});
