/**
 * Permission errors, which root never meets: meshfed run as an unprivileged
 * user (setpriv, as root can) on a fleet file it may not read and into a
 * folder it may not write exits 2 naming the path and the cause, with
 * nothing written.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fleetTemplate } from '../../src/fleet/template.js';
import { REPO_ROOT } from '../helpers/lab.js';

const MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const canDrop = process.getuid?.() === 0 && existsSync('/usr/bin/setpriv');

/** meshfed as user and group 65534 (nobody). */
function asNobody(args: string[]) {
  return spawnSync(
    '/usr/bin/setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, MAIN, ...args],
    {
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
}

describe('permission errors, as an unprivileged user', {
  skip: canDrop
    ? undefined
    : 'needs root and /usr/bin/setpriv to run meshfed as another user (CI runs as root)',
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-perm-'));
  chmodSync(dir, 0o755);
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a fleet file it may not read: exit 2, the path and EACCES', () => {
    const f = join(dir, 'meshfed.yaml');
    writeFileSync(f, fleetTemplate(2), { mode: 0o600 });
    const r = asNobody(['validate', '-f', f]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot read ${f}: permission denied \\(EACCES\\)`));
    // The same file readable: it is valid, so the refusal above was the permission alone.
    chmodSync(f, 0o644);
    assert.equal(asNobody(['validate', '-f', f]).status, 0);
  });

  test('an output folder it may not write: exit 2, the path and EACCES, nothing written', () => {
    const locked = join(dir, 'locked');
    mkdirSync(locked, { mode: 0o555 });
    chmodSync(locked, 0o555);
    const out = join(locked, 'out');
    const r = asNobody(['render', '-o', out]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot write -o ${out}: .*permission denied \\(EACCES\\)`));
    assert.ok(!existsSync(out));
  });
});
