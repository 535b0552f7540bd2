/**
 * The memo of what meshfed's applies made of each object (applied-memo.ts):
 * an apply is known to change nothing only when the live object is still
 * what the same apply gave (that version, or a status written since); kept
 * between runs in a file per server, and a file that is not one is none.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { appliedMemo } from '../../src/kube/applied-memo.js';
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
/** The object as stored: the server's own fields with it (in the order a list gives them), and a status. */
const stored = (value: string, rv: string, uid = 'uid-1', status = 'ok'): KubeObject => ({
  metadata: {
    name: 'x',
    namespace: 'n',
    uid,
    resourceVersion: rv,
    creationTimestamp: '2026-11-27T00:00:00Z',
  },
  data: { k: value, server: 'added' },
  status: { phase: status },
  apiVersion: 'v1',
  kind: 'ConfigMap',
});

test('unchanged only while the object is what the same apply gave (its status aside), whatever precondition was sent; kept in a file a server', () => {
  const memo = appliedMemo(dir, SERVER);
  assert.equal(memo.unchanged(sent('a'), stored('a', '10')), false); // nothing known yet
  memo.record(sent('a', '9'), stored('a', '10'));
  assert.equal(memo.unchanged(sent('a'), stored('a', '10')), true);
  assert.equal(memo.unchanged(sent('a', '10'), stored('a', '10')), true);
  // Something else to send, another object of the same name.
  assert.equal(memo.unchanged(sent('b'), stored('a', '10')), false);
  assert.equal(memo.unchanged(sent('a'), stored('a', '10', 'uid-2')), false);
  // Written since: anything but its status (a user's edit, a field of the server's), or its status alone (a controller reporting).
  assert.equal(memo.unchanged(sent('a'), stored('edited', '11')), false);
  assert.equal(
    memo.unchanged(sent('a'), { ...stored('a', '11'), data: { k: 'a', server: 'changed' } }),
    false,
  );
  assert.equal(memo.unchanged(sent('a'), stored('a', '11', 'uid-1', 'reported')), true);
  // The next run, from the file (which now knows the version the status write made); another server has its own.
  assert.equal(appliedMemo(dir, SERVER).unchanged(sent('a'), stored('a', '11', 'uid-1', 'other')), true);
  assert.equal(appliedMemo(dir, 'https://127.0.0.1:6444').unchanged(sent('a'), stored('a', '10')), false);
  // A new apply replaces what was known of the object.
  memo.record(sent('b'), stored('b', '12'));
  assert.equal(appliedMemo(dir, SERVER).unchanged(sent('a'), stored('a', '10')), false);
  assert.equal(appliedMemo(dir, SERVER).unchanged(sent('b'), stored('b', '12')), true);
});

test('a file that is not a memo is none; no folder, memory only', () => {
  for (const f of readdirSync(dir))
    writeFileSync(join(dir, f), '{"server": "https://127.0.0.1:6443", "objects": [[1, 2');
  assert.equal(appliedMemo(dir, SERVER).unchanged(sent('b'), stored('b', '12')), false);
  const memo = appliedMemo(undefined, SERVER);
  memo.record(sent('a'), stored('a', '1'));
  assert.equal(memo.unchanged(sent('a'), stored('a', '1')), true);
  assert.equal(appliedMemo(undefined, SERVER).unchanged(sent('a'), stored('a', '1')), false);
});
