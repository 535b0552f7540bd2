/**
 * The machine-wide lab claims and the /proc facts they rest on, across real
 * processes: the lock excludes other processes and is freed when its holder
 * is killed; blocks are never handed out twice, are freed with their owner,
 * and a lab's state file keeps its block; folder matching is exact; a
 * listening socket is traced to its process.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { claimBlock, listClaims, releaseBlock, withMachineLock } from '../../src/lab/claims.js';
import { listensOn, namesPathUnder, processesUnder } from '../../src/lab/procfs.js';
import { REPO_ROOT, waitUntil } from '../helpers/lab.js';

const CLAIMS = join(REPO_ROOT, 'dist', 'src', 'lab', 'claims.js');

/** A Node child running `code` (an ES module body with `claims` imported), its stdout collected. */
function child(
  code: string,
  env: NodeJS.ProcessEnv,
): { proc: ChildProcess; out: () => string; done: Promise<number | null> } {
  const proc = spawn(
    process.execPath,
    ['--input-type=module', '-e', `import * as claims from ${JSON.stringify(CLAIMS)};\n${code}`],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  proc.stdout!.on('data', (b: Buffer) => {
    out += b;
  });
  const done = new Promise<number | null>((r) => proc.on('close', (c) => r(c)));
  return { proc, out: () => out, done };
}

describe('machine-wide lab claims', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mf-claims-'));
    // A private claims folder (and so private lock names): real labs on this machine are not disturbed.
    process.env.MESHFED_LAB_CLAIMS = join(dir, 'claims');
    env = { MESHFED_LAB_CLAIMS: process.env.MESHFED_LAB_CLAIMS };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the lock: 6 processes at once never hold it together', async () => {
    const log = join(dir, 'lock.log');
    writeFileSync(log, '');
    const kids = Array.from({ length: 6 }, (_, i) =>
      child(
        `import { appendFileSync } from 'node:fs';
for (let k = 0; k < 5; k++)
  await claims.withMachineLock('t', async () => {
    appendFileSync(${JSON.stringify(log)}, 'in ${i}\\n');
    await new Promise((r) => setTimeout(r, 5));
    appendFileSync(${JSON.stringify(log)}, 'out ${i}\\n');
  });`,
        env,
      ),
    );
    assert.deepEqual(await Promise.all(kids.map((k) => k.done)), [0, 0, 0, 0, 0, 0]);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    assert.equal(lines.length, 60);
    for (let i = 0; i < lines.length; i += 2) {
      const who = lines[i]!.split(' ')[1];
      assert.deepEqual([lines[i], lines[i + 1]], [`in ${who}`, `out ${who}`], `interleaved at line ${i + 1}`);
    }
  });

  test('the lock: a holder killed with SIGKILL frees it at once', async () => {
    const holder = child(
      `await claims.withMachineLock('k', async () => { console.log('held'); await new Promise(() => {}); });`,
      env,
    );
    await waitUntil('the child holds the lock', async () => holder.out().includes('held'), 10_000);
    let waited = 0;
    await assert.rejects(
      withMachineLock(
        'k',
        async () => {},
        300,
        () => waited++,
      ),
      /the machine-wide lab lock "k" is still held by another process after 300 ms/,
    );
    assert.equal(waited, 1, 'onWait is called once, when the lock is found held');
    holder.proc.kill('SIGKILL');
    await holder.done;
    assert.equal(await withMachineLock('k', async () => 'mine', 2000), 'mine');
  });

  test('blocks: 8 processes claiming at once get 8 different blocks', async () => {
    const kids = Array.from({ length: 8 }, (_, i) =>
      child(`console.log(await claims.claimBlock({ owner: 'kid ${i}' })); setInterval(() => {}, 1000);`, env),
    );
    await waitUntil('every child claimed', async () => kids.every((k) => /^\d+\n/.test(k.out())), 20_000);
    const blocks = kids.map((k) => Number(k.out().trim()));
    assert.equal(new Set(blocks).size, 8, `blocks: ${blocks.join(', ')}`);
    // Their owners run: every claim is held, and a ninth claimant gets none of them.
    const ninth = await claimBlock({ owner: 'ninth' });
    assert.ok(!blocks.includes(ninth));
    for (const k of kids) k.proc.kill('SIGKILL');
    await Promise.all(kids.map((k) => k.done));
    // Their owners are gone: the blocks are free again.
    const held = listClaims().filter((c) => c.held);
    assert.deepEqual(
      held.map((c) => c.owner),
      ['ninth'],
    );
    await releaseBlock(ninth, 'ninth');
  });

  test("blocks: a lab's state file keeps its block after the claiming process is gone; exact blocks name their holder", async () => {
    const state = join(dir, 'lab.json');
    writeFileSync(state, JSON.stringify({ block: 42 }));
    const kid = child(
      `console.log(await claims.claimBlock({ owner: '/labs/x', stateFile: ${JSON.stringify(state)}, exact: 42 }));`,
      env,
    );
    assert.equal(await kid.done, 0);
    assert.equal(kid.out().trim(), '42');
    await assert.rejects(claimBlock({ owner: 'me', exact: 42 }), /address block 42 is held by \/labs\/x/);
    assert.notEqual(await claimBlock({ owner: 'me', preferred: 42 }), 42);
    // The lab went down (its state no longer records the block): the block is free.
    rmSync(state);
    assert.equal(await claimBlock({ owner: 'me too', exact: 42 }), 42);
    await assert.rejects(claimBlock({ owner: 'me', exact: 251 }), /not a whole number from 1 to 250/);
  });

  test('folders match exactly: a lab folder is not a prefix of another', () => {
    const d = '/work/x/.meshfed-lab';
    for (const yes of [
      d,
      `${d}/`,
      `${d}/cluster-1/etcd`,
      `--data-dir=${d}/c1`,
      `-config ${d}/s.conf`,
      `KUBECONFIG:${d}/k`,
    ])
      assert.ok(namesPathUnder(yes, d), yes);
    for (const no of [`${d}-ci`, `${d}-ci/cluster-1`, `/other${d}`, `--dir=${d}x/y`, '/work/x/.meshfed-la'])
      assert.ok(!namesPathUnder(no, d), no);
  });

  test('processesUnder finds a process by a path in its arguments, and not one of a folder with a longer name', async () => {
    const base = join(dir, 'lab');
    // A process whose arguments name a path (ignored by the program), as kwok's components name their workdir.
    const idle = (arg: string) =>
      spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', arg], { stdio: 'ignore' });
    const mine = idle(`${base}/x`);
    const other = idle(`${base}-ci/x`);
    try {
      // Until exec, a forked child's command line is its parent's.
      const execd = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('setTimeout');
      await waitUntil('both run', async () => execd(mine.pid!) && execd(other.pid!), 5000);
      const found = processesUnder(base);
      assert.ok(found.includes(mine.pid!));
      assert.ok(!found.includes(other.pid!));
    } finally {
      mine.kill();
      other.kill();
    }
  });

  test('listensOn: the listening socket is traced to its own process, not to another', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      assert.ok(listensOn(process.pid, '127.0.0.1', port));
      const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
      assert.ok(!listensOn(sleeper.pid!, '127.0.0.1', port));
      sleeper.kill();
      assert.ok(!listensOn(process.pid, '127.0.0.2', port), 'another address');
    } finally {
      await new Promise((r) => server.close(r));
    }
    assert.ok(!listensOn(process.pid, '127.0.0.1', port), 'closed');
    // A dual-stack listener on the IPv6 wildcard (as kube-apiserver's and Node's default) serves 127.0.0.1 too.
    const dual = createServer();
    await new Promise<void>((r) => dual.listen(0, '::', () => r()));
    const dualPort = (dual.address() as { port: number }).port;
    try {
      assert.ok(listensOn(process.pid, '127.0.0.1', dualPort), 'on [::]');
    } finally {
      await new Promise((r) => dual.close(r));
    }
  });
});
