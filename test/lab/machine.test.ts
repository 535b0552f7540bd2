/**
 * What `lab up` needs of this machine besides the lab's builds
 * (src/lab/machine.ts): found on PATH (executable) or at the absolute path an
 * image uses, and a missing one named with what it is for and its package.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { machinePrograms, missingPrograms, missingProgramsMessage } from '../../src/lab/machine.js';

test('programs are looked up on PATH (executable ones only) and at their absolute paths', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-machine-'));
  try {
    for (const [name, mode] of [
      ['ip', 0o755],
      ['nsenter', 0o755],
      ['unshare', 0o644],
      ['iptables-save', 0o755],
    ] as const) {
      writeFileSync(join(dir, name), '#!/bin/sh\n');
      chmodSync(join(dir, name), mode);
    }
    const names = (real: boolean, path: string) =>
      missingPrograms(machinePrograms(real), path, undefined).map((p) => p.name);
    // unshare is there but not executable; mount is in no folder of this PATH.
    assert.deepEqual(names(false, `/nonexistent:${dir}`), ['unshare', 'mount']);
    // With real pods: iptables, Python and curl too; an absolute one is looked for where it is named, not on PATH.
    const have = new Set([
      join(dir, 'ip'),
      join(dir, 'mount'),
      join(dir, 'iptables-save'),
      '/usr/bin/curl',
      join(dir, 'python3'),
    ]);
    assert.deepEqual(
      missingPrograms(machinePrograms(true), dir, (f) => have.has(f)).map((p) => p.name),
      ['nsenter', 'unshare', 'iptables-restore', '/usr/bin/python3'],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the message names each missing program, what the lab needs it for, and each package once', () => {
  const missing = machinePrograms(true).filter(
    (p) => p.name.startsWith('iptables') || p.name === '/usr/bin/python3',
  );
  const m = missingProgramsMessage(missing);
  assert.match(m, /iptables-restore \(Istio's sidecar capture in each pod\), iptables-save \(/);
  assert.match(m, /\/usr\/bin\/python3 \(helloworld/);
  assert.match(m, /apt-get install iptables python3\) and run it again$/);
});
