/**
 * The lab node agent's volumes: the kubelet's atomic volume layout and its
 * update rules.
 */
import assert from 'node:assert/strict';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { FileItem } from '../../src/lab/node/pod-plan.js';
import { VolumePathError, writeVolume } from '../../src/lab/node/volumes.js';

const file = (path: string, content: string | Buffer, mode = 0o644): FileItem => ({
  path,
  content: Buffer.from(content),
  mode,
});
const mode = (p: string) => statSync(p).mode & 0o7777;
const DATA_DIR = /^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\w+$/;

/** A fresh directory per test, removed after the file's tests. */
const scratch = (() => {
  const root = mkdtempSync(join(tmpdir(), 'mf-vol-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  return () => {
    const d = join(root, String(++n));
    mkdirSync(d);
    return d;
  };
})();

describe('the atomic volume writer, as the kubelet lays out a ConfigMap/Secret volume', {
  timeout: 30_000,
}, () => {
  test('..data links to a timestamped data dir, each top-level name links into ..data; modes as given whatever the umask', () => {
    const dir = join(scratch(), 'vol');
    const umask = process.umask(0o077);
    try {
      assert.equal(
        writeVolume(dir, [file('a', 'A'), file('sub/deep/b', 'B', 0o600), file('c', 'C', 0o400)]),
        true,
      );
    } finally {
      process.umask(umask);
    }
    const names = readdirSync(dir).sort();
    const data = readlinkSync(join(dir, '..data'));
    assert.match(data, DATA_DIR);
    assert.deepEqual(names, [data, '..data', 'a', 'c', 'sub'].sort(), 'no ..data_tmp or other name left');
    assert.equal(readlinkSync(join(dir, 'a')), '..data/a');
    assert.equal(readlinkSync(join(dir, 'sub')), '..data/sub', 'a directory is linked at its top level only');
    assert.ok(lstatSync(join(dir, data, 'sub')).isDirectory());
    assert.equal(readFileSync(join(dir, 'sub/deep/b'), 'utf8'), 'B');
    assert.equal(mode(join(dir, 'a')), 0o644);
    assert.equal(mode(join(dir, 'sub/deep/b')), 0o600);
    assert.equal(mode(join(dir, 'c')), 0o400);
    for (const d of [dir, join(dir, data), join(dir, data, 'sub'), join(dir, data, 'sub/deep')])
      assert.equal(mode(d), 0o755, d);
  });

  test('the same files again: nothing written (same data dir, inodes, mtimes); a change: a new data dir, the old one gone', () => {
    const dir = scratch();
    const files = [file('a', 'A'), file('d/b', 'B')];
    writeVolume(dir, files);
    const data = readlinkSync(join(dir, '..data'));
    const before = [join(dir, data), join(dir, data, 'a'), join(dir, data, 'd/b'), join(dir, 'a')].map((p) =>
      lstatSync(p),
    );
    assert.equal(writeVolume(dir, [file('a', 'A'), file('d/b', 'B')]), false);
    assert.equal(readlinkSync(join(dir, '..data')), data);
    const again = [join(dir, data), join(dir, data, 'a'), join(dir, data, 'd/b'), join(dir, 'a')].map((p) =>
      lstatSync(p),
    );
    assert.deepEqual(
      again.map((s) => [s.ino, s.mtimeMs, s.ctimeMs]),
      before.map((s) => [s.ino, s.mtimeMs, s.ctimeMs]),
    );

    assert.equal(writeVolume(dir, [file('a', 'A2'), file('d/b', 'B')]), true);
    const next = readlinkSync(join(dir, '..data'));
    assert.notEqual(next, data);
    assert.equal(existsSync(join(dir, data)), false, 'the previous data dir is removed');
    assert.equal(readFileSync(join(dir, 'a'), 'utf8'), 'A2');
  });

  test('a name that goes away is removed, top-level or nested; then writing the same set is a no-op', () => {
    const dir = scratch();
    writeVolume(dir, [file('a', 'A'), file('b', 'B'), file('d/x', 'X'), file('d/y', 'Y')]);
    assert.equal(writeVolume(dir, [file('a', 'A'), file('d/x', 'X')]), true, 'd/y alone is gone: a write');
    assert.deepEqual(readdirSync(join(dir, 'd')), ['x']);
    assert.equal(existsSync(join(dir, 'b')), false);
    assert.throws(() => lstatSync(join(dir, 'b')), /ENOENT/, 'the visible link of b is gone too');
    assert.equal(writeVolume(dir, [file('a', 'A'), file('d/x', 'X')]), false);
    assert.equal(writeVolume(dir, []), true, 'every file gone');
    assert.deepEqual(readdirSync(dir).sort(), [readlinkSync(join(dir, '..data')), '..data'].sort());
  });

  test('a ..data whose data dir is gone (removed by hand): the next write starts afresh', () => {
    const dir = scratch();
    writeVolume(dir, [file('a', 'A')]);
    rmSync(join(dir, readlinkSync(join(dir, '..data'))), { recursive: true });
    assert.equal(writeVolume(dir, [file('a', 'A')]), true);
    assert.equal(readFileSync(join(dir, 'a'), 'utf8'), 'A');
  });

  test('a reader with the file open across an update still reads the old content, whole; a fresh open reads the new', () => {
    const dir = scratch();
    const old = Buffer.alloc(1 << 20, 'o');
    const fresh = Buffer.alloc(1 << 20, 'n');
    writeVolume(dir, [file('big', old)]);
    const fd = openSync(join(dir, 'big'), 'r');
    try {
      assert.equal(writeVolume(dir, [file('big', fresh)]), true);
      const got = Buffer.alloc(old.length + 1);
      let n = 0;
      for (let r = 1; r > 0 && n < got.length; n += r) r = readSync(fd, got, n, got.length - n, n);
      assert.equal(n, old.length, 'the old file, whole');
      assert.ok(got.subarray(0, n).equals(old), 'old bytes only');
    } finally {
      closeSync(fd);
    }
    assert.ok(readFileSync(join(dir, 'big')).equals(fresh));
  });

  test('a path that is absolute, climbs with .., or takes a name of the writer is refused, naming it, before anything is written', () => {
    const dir = scratch();
    writeVolume(dir, [file('a', 'A')]);
    const data = readlinkSync(join(dir, '..data'));
    const refused: Array<[string, RegExp]> = [
      ['../x', /must not contain '\.\.'/],
      ['a/../../x', /must not contain '\.\.'/],
      ['x/..', /must not contain '\.\.'/],
      ['/x', /must be a relative path/],
      ['..data/x', /must not start with '\.\.'/],
      ['..2020_01_01_00_00_00.1/x', /must not start with '\.\.'/],
      ['', /must not be empty/],
    ];
    for (const [p, reason] of refused)
      assert.throws(
        () => writeVolume(dir, [file('a', 'changed'), file(p, 'evil')]),
        (e: unknown) =>
          e instanceof VolumePathError &&
          e.path === p &&
          e.message.includes(`"${p}"`) &&
          reason.test(e.message),
        p,
      );
    assert.equal(readlinkSync(join(dir, '..data')), data);
    assert.equal(readFileSync(join(dir, 'a'), 'utf8'), 'A');
    assert.equal(existsSync(join(dir, '..', 'x')), false);
  });
});
