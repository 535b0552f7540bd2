/**
 * The memo of what meshfed's applies made of each object (applied-memo.ts):
 * an apply is known to change nothing only while what meshfed owns in the
 * live object (its entries, their fields' values) is as the same apply left
 * it, whatever others wrote since; kept between runs in a file per server,
 * and a file that is not one is none.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { appliedMemo, loadAppliedMemo } from '../../src/kube/applied-memo.js';
import type { KubeObject } from '../../src/kube/client.js';

const dir = mkdtempSync(join(tmpdir(), 'mf-memo-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const SERVER = 'https://127.0.0.1:6443';

const sent = (value: string, rv?: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name: 'x', namespace: 'n', ...(rv ? { resourceVersion: rv } : {}) },
  data: { k: value },
});
/** meshfed's entry: it owns data.k (and `extra`, when it sends one). */
const ours = (extra = false) => ({
  manager: 'meshfed',
  operation: 'Apply',
  apiVersion: 'v1',
  time: '2026-11-27T00:00:00Z',
  fieldsType: 'FieldsV1',
  fieldsV1: { 'f:data': { 'f:k': {}, ...(extra ? { 'f:extra': {} } : {}) } },
});
/** Another manager's entry: it owns data.server and the status. */
const theirs = {
  manager: 'controller',
  operation: 'Update',
  apiVersion: 'v1',
  fieldsV1: { 'f:data': { 'f:server': {} } },
};
/**
 * The object as stored, in the order a list gives its fields: meshfed's
 * data.k, another manager's data.server, a status.
 */
const stored = (
  value: string,
  rv: string,
  o: { uid?: string; server?: string; status?: string; entries?: unknown[] } = {},
): KubeObject => ({
  metadata: {
    name: 'x',
    namespace: 'n',
    uid: o.uid ?? 'uid-1',
    resourceVersion: rv,
    creationTimestamp: '2026-11-27T00:00:00Z',
    managedFields: o.entries ?? [ours(), theirs],
  },
  data: { k: value, server: o.server ?? 'added', ...(o.entries ? { extra: 'e' } : {}) },
  status: { phase: o.status ?? 'ok' },
  apiVersion: 'v1',
  kind: 'ConfigMap',
});

test("unchanged only while meshfed's part of the object is as the same apply left it, whatever precondition was sent; kept in a file a server", () => {
  const memo = appliedMemo(dir, SERVER);
  assert.equal(memo.unchanged(sent('a'), stored('a', '10')), false); // nothing known yet
  memo.record(sent('a', '9'), stored('a', '10'));
  assert.equal(memo.unchanged(sent('a'), stored('a', '10')), true);
  assert.equal(memo.unchanged(sent('a', '10'), stored('a', '10')), true);
  // Something else to send, another object of the same name.
  assert.equal(memo.unchanged(sent('b'), stored('a', '10')), false);
  assert.equal(memo.unchanged(sent('a'), stored('a', '10', { uid: 'uid-2' })), false);
  // Written since to meshfed's part: its value edited, its ownership taken or widened.
  assert.equal(memo.unchanged(sent('a'), stored('edited', '11')), false);
  assert.equal(memo.unchanged(sent('a'), stored('a', '11', { entries: [theirs] })), false);
  assert.equal(memo.unchanged(sent('a'), stored('a', '11', { entries: [ours(true), theirs] })), false);
  // Written since by others only: their field, the status (a controller reporting); meshfed's entry's time is no matter.
  assert.equal(memo.unchanged(sent('a'), stored('a', '11', { server: 'changed', status: 'reported' })), true);
  assert.equal(
    memo.unchanged(
      sent('a'),
      stored('a', '12', { entries: [{ ...ours(), time: '2026-11-28T00:00:00Z' }, theirs] }),
    ),
    true,
  );
  // The same process shares the memo; the next run reads the file (which now knows the version those
  // writes made); another server has its own.
  assert.equal(appliedMemo(dir, SERVER), memo);
  memo.flush();
  assert.equal(
    loadAppliedMemo(dir, SERVER).unchanged(sent('a'), stored('a', '12', { status: 'other' })),
    true,
  );
  assert.equal(loadAppliedMemo(dir, 'https://127.0.0.1:6444').unchanged(sent('a'), stored('a', '10')), false);
  // A new apply replaces what was known of the object.
  memo.record(sent('b'), stored('b', '13'));
  memo.flush();
  assert.equal(loadAppliedMemo(dir, SERVER).unchanged(sent('a'), stored('a', '13')), false);
  assert.equal(loadAppliedMemo(dir, SERVER).unchanged(sent('b'), stored('b', '13')), true);
});

test('a file that is not a memo is none; no folder, memory only', () => {
  for (const f of readdirSync(dir))
    writeFileSync(join(dir, f), '{"server": "https://127.0.0.1:6443", "objects": [[1, 2');
  assert.equal(loadAppliedMemo(dir, SERVER).unchanged(sent('b'), stored('b', '12')), false);
  const memo = appliedMemo(undefined, SERVER);
  memo.record(sent('a'), stored('a', '1'));
  assert.equal(memo.unchanged(sent('a'), stored('a', '1')), true);
  assert.equal(appliedMemo(undefined, SERVER).unchanged(sent('a'), stored('a', '1')), false);
});

test('written once a while and when the process exits, not at every apply', async () => {
  const own = mkdtempSync(join(tmpdir(), 'mf-memo-exit-'));
  try {
    // A process that records 200 applies and exits at once, without a flush: the exit writes them, once.
    const child = `
      import { appliedMemo } from ${JSON.stringify(new URL('../../src/kube/applied-memo.js', import.meta.url).href)};
      import { watch } from 'node:fs';
      let writes = 0;
      const watcher = watch(${JSON.stringify(own)}, () => writes++);
      const memo = appliedMemo(${JSON.stringify(own)}, ${JSON.stringify(SERVER)});
      const at = (i) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' + i, namespace: 'n', uid: 'u' + i, resourceVersion: '1' }, data: { k: 'v' } });
      for (let i = 0; i < 200; i++) memo.record(at(i), at(i));
      await new Promise((r) => setTimeout(r, 50));
      watcher.close();
      process.stdout.write(String(writes));
    `;
    const { execFileSync } = await import('node:child_process');
    const writesBefore = Number(
      execFileSync(process.execPath, ['--input-type=module', '-e', child], {
        encoding: 'utf8',
        timeout: 30_000,
      }),
    );
    assert.equal(writesBefore, 0, 'nothing written while the applies come');
    const at = (i: number): KubeObject => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: `x${i}`, namespace: 'n', uid: `u${i}`, resourceVersion: '1' },
      data: { k: 'v' },
    });
    const next = loadAppliedMemo(own, SERVER);
    for (const i of [0, 199]) assert.equal(next.unchanged(at(i), at(i)), true, `apply ${i} kept at exit`);
  } finally {
    rmSync(own, { recursive: true, force: true });
  }
});
