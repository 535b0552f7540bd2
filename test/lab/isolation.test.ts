/**
 * Labs side by side never meet: four labs of both kinds (two SPIRE labs of
 * the federation tests, two `meshfed lab`s) started at once, each from a
 * process of its own (isolation-worker.ts), each reach only their own
 * processes: distinct address blocks, their own server processes holding
 * their sockets, every bundle endpoint serving exactly its own server's
 * bundle (authenticated with it), distinct API servers; and each lab's stop
 * leaves none of its processes and frees its block.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { listClaims } from '../../src/lab/claims.js';
import { labSkip } from '../helpers/engine.js';
import { REPO_ROOT, waitUntil } from '../helpers/lab.js';
// A type only: importing the worker's code would start a lab.
import type { Report } from './isolation-worker.js';

const WORKER = join(REPO_ROOT, 'dist', 'test', 'lab', 'isolation-worker.js');

interface Worker {
  proc: ChildProcess;
  lines: () => unknown[];
  stderr: () => string;
  exited: Promise<number | null>;
}

function worker(kind: 'spire' | 'meshfed', dir: string): Worker {
  const proc = spawn(process.execPath, [WORKER, kind, dir], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (b: Buffer) => {
    out += b;
  });
  proc.stderr!.on('data', (b: Buffer) => {
    err += b;
  });
  const exited = new Promise<number | null>((r) => proc.on('close', (c) => r(c)));
  const lines = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as unknown);
  return { proc, lines, stderr: () => err, exited };
}

describe('labs started side by side from separate processes', {
  skip: labSkip('current'),
  timeout: 600_000,
}, () => {
  const parent = mkdtempSync(join(tmpdir(), 'mf-iso-'));
  const workers: Worker[] = [];
  after(async () => {
    for (const w of workers) if (w.proc.exitCode === null) w.proc.stdin!.end('stop\n');
    await Promise.all(workers.map((w) => w.exited));
    rmSync(parent, { recursive: true, force: true });
  });

  test('four labs (2 SPIRE labs, 2 meshfed labs) at once: each reaches only its own processes, and stops clean', async () => {
    const kinds = ['spire', 'meshfed', 'spire', 'meshfed'] as const;
    kinds.forEach((k, i) => {
      workers.push(worker(k, join(parent, `${k}-${i}`)));
    });
    let exitedEarly: string | undefined;
    for (const [i, w] of workers.entries())
      void w.exited.then((c) => {
        if (w.lines().length === 0) exitedEarly = `worker ${i} (${kinds[i]}) exited ${c}:\n${w.stderr()}`;
      });
    await waitUntil(
      'all four labs up',
      async () => {
        if (exitedEarly) throw new Error(exitedEarly);
        return workers.every((w) => w.lines().length >= 1);
      },
      480_000,
    );
    const reports = workers.map((w) => w.lines()[0] as Report);
    const blocks = reports.map((r) => r.block);
    assert.equal(new Set(blocks).size, 4, `distinct address blocks: ${blocks.join(', ')}`);
    const held = new Set(
      listClaims()
        .filter((c) => c.held)
        .map((c) => c.block),
    );
    for (const b of blocks) assert.ok(held.has(b), `block ${b} is claimed while its lab runs`);
    const all = reports.flatMap((r) => r.reached.map((x) => ({ ...x, lab: r.dir })));
    assert.equal(all.length, 8);
    for (const x of all) {
      assert.ok(x.ownSockets, `${x.lab} ${x.name}: its own SPIRE server holds ${x.address}'s sockets`);
      assert.ok(x.servesOwnBundle, `${x.lab} ${x.name}: ${x.address} serves its own server's bundle`);
    }
    assert.equal(new Set(all.map((x) => x.address)).size, 8, 'distinct addresses');
    assert.equal(
      new Set(all.map((x) => x.root)).size,
      8,
      "distinct roots: no lab reached another lab's server",
    );
    const uids = all.filter((x) => x.kubeSystemUid).map((x) => x.kubeSystemUid);
    assert.equal(uids.length, 4);
    assert.equal(new Set(uids).size, 4, 'distinct API servers');

    for (const w of workers) w.proc.stdin!.end('stop\n');
    const codes = await Promise.all(workers.map((w) => w.exited));
    assert.deepEqual(codes, [0, 0, 0, 0], workers.map((w) => w.stderr()).join('\n'));
    for (const w of workers) {
      const last = w.lines().at(-1) as { stopped: boolean; left: number[] };
      assert.deepEqual(last, { stopped: true, left: [] });
    }
    const stillHeld = listClaims().filter((c) => c.held && blocks.includes(c.block));
    assert.deepEqual(stillHeld, [], 'blocks freed');
  });
});
