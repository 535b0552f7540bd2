/**
 * The node agents' pass loop (src/lab/watched.ts PassLoop): a change pokes a
 * pass within the settle time instead of the period, passes never overlap,
 * and stop() returns only when the pass under way has ended, the first one
 * (run by start()) included: the agent stops its pods after stop(), and a
 * pass still running then would start them again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PassLoop } from '../../src/lab/watched.js';

const until = async (what: string, ok: () => boolean, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

/** A pass that takes `ms` and records how many ran at once. */
function slowPass(ms: number) {
  const s = { started: 0, ended: 0, running: 0, most: 0 };
  const pass = async () => {
    s.started++;
    s.running++;
    s.most = Math.max(s.most, s.running);
    await new Promise((r) => setTimeout(r, ms));
    s.running--;
    s.ended++;
  };
  return { s, pass };
}

test('a poke brings a pass within the settle time, not the period; passes never overlap', async () => {
  const { s, pass } = slowPass(30);
  const loop = new PassLoop(pass, { periodMs: 60_000, settleMs: 20, log: () => {} });
  await loop.start();
  assert.equal(s.ended, 1, 'start() runs a first pass and waits for it');
  for (let i = 0; i < 20; i++) {
    loop.poke();
    await new Promise((r) => setTimeout(r, 3));
  }
  await until('a pass after the pokes', () => s.ended >= 2, 2000);
  await loop.stop();
  assert.equal(s.most, 1, 'two passes ran at once');
  assert.equal(s.running, 0);
});

test('stop() during the first pass waits for it to end', async () => {
  const { s, pass } = slowPass(300);
  const loop = new PassLoop(pass, { periodMs: 60_000, settleMs: 20, log: () => {} });
  const started = loop.start();
  await until('the first pass starts', () => s.started === 1);
  await loop.stop();
  assert.equal(s.ended, 1, 'stop() returned while the first pass was still running');
  await started;
  assert.equal(s.started, 1, 'a pass ran after stop()');
});

test('a failing pass is logged and the loop goes on', async () => {
  let n = 0;
  const logs: string[] = [];
  const loop = new PassLoop(
    async () => {
      n++;
      if (n === 1) throw new Error('boom');
    },
    { periodMs: 60_000, settleMs: 5, log: (l) => logs.push(l) },
  );
  await loop.start();
  loop.poke();
  await until('a second pass', () => n >= 2);
  await loop.stop();
  assert.deepEqual(logs, ['pass failed: boom']);
});
