/**
 * A lab container is a real process that sees the image's paths: its program
 * at the image's path, its volumes at their mount paths (read-only when
 * mounted so), its environment and working folder, in a kubelet-shaped
 * cgroup; and nothing it mounts reaches this machine's mount table. Needs
 * root (mount namespaces, cgroups); skips otherwise.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  CGROUP_HIERARCHY,
  type ContainerSpec,
  cgroupProcesses,
  containerCgroup,
  containerId,
  criLogText,
  launchScript,
  removeCgroup,
  startContainer,
} from '../../src/lab/node/container.js';

const root = process.getuid?.() === 0;
const UID = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';

describe('a lab container', { skip: root ? false : 'needs root (mount namespaces and cgroups)' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-container-'));
  const labCgroup = `meshfed-test-${process.pid}`;
  after(() => {
    removeCgroup(labCgroup);
    rmSync(dir, { recursive: true, force: true });
  });

  const spec = (script: string, restart = 0): ContainerSpec => {
    const id = containerId(UID, 'app', restart);
    const vol = join(dir, 'volume');
    mkdirSync(vol, { recursive: true });
    writeFileSync(join(vol, 'config.txt'), 'from the volume\n');
    return {
      id,
      root: join(dir, `root-${restart}`),
      argv: ['/opt/app/bin/shell', '-c', script],
      workdir: '/opt/app',
      env: [['GREETING', 'hello from the spec']],
      programs: { '/opt/app/bin/shell': '/bin/bash' },
      binds: [{ hostPath: vol, path: '/etc/app', readOnly: true }],
      netns: undefined,
      cgroup: containerCgroup(labCgroup, UID, id),
      logFile: join(dir, 'logs', `${restart}.log`),
    };
  };

  const run = (s: ContainerSpec) =>
    new Promise<{ code: number | null; log: string }>((resolve) => {
      const child = startContainer(s);
      child.on('exit', (code) =>
        child.logged.then(() => resolve({ code, log: criLogText(readFileSync(s.logFile, 'utf8')) })),
      );
    });

  test('sees the image paths, its volume, env and working folder, in its cgroup', async () => {
    const s = spec(
      [
        'echo "pwd=$(pwd)"',
        'echo "greeting=$GREETING"',
        'echo "config=$(cat /etc/app/config.txt)"',
        'echo "cgroup=$(grep :pids: /proc/self/cgroup)"',
        'echo "program=$(readlink /proc/$$/exe)"',
        'touch /etc/app/new 2>/dev/null && echo writable=yes || echo writable=no',
      ].join('; '),
    );
    const r = await run(s);
    assert.equal(r.code, 0, r.log);
    const kv = Object.fromEntries(
      r.log
        .trim()
        .split('\n')
        .map((l) => l.split(/=(.*)/s).slice(0, 2)),
    );
    assert.equal(kv.pwd, '/opt/app');
    assert.equal(kv.greeting, 'hello from the spec');
    assert.equal(kv.config, 'from the volume');
    assert.equal(kv.cgroup!.split(':').slice(1).join(':'), `pids:/${s.cgroup}`);
    assert.match(kv.cgroup!, new RegExp(`/kubepods/besteffort/pod${UID}/${s.id}$`));
    // The program runs from the image's path (its own root), not from the machine's.
    assert.equal(kv.program, '/opt/app/bin/shell');
    assert.equal(kv.writable, 'no', 'a read-only volume mount is writable');
  });

  test("nothing it mounts reaches this machine's mount table; its cgroup empties when it exits", async () => {
    const s = spec('exec sleep 30', 1);
    const child = startContainer(s);
    const deadline = Date.now() + 10_000;
    // Its binds are in place once its process runs the program (the launch script binds first).
    const cmdline = () => readFileSync(`/proc/${child.pid}/cmdline`, 'utf8');
    while (!cmdline().startsWith('sleep') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    assert.equal(cmdline(), 'sleep\x0030\x00');
    assert.deepEqual(
      cgroupProcesses(s.cgroup),
      [child.pid],
      'the container process is the only one in its cgroup',
    );
    assert.ok(
      readFileSync(`/proc/${child.pid}/mountinfo`, 'utf8').includes(' /etc/app '),
      'the volume is not mounted',
    );
    assert.ok(
      !readFileSync('/proc/self/mountinfo', 'utf8').includes(s.root),
      "the container's binds show in this machine's mount table",
    );
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;
    assert.deepEqual(cgroupProcesses(s.cgroup), []);
    assert.equal(removeCgroup(labCgroup), true);
    assert.throws(() => readFileSync(join(CGROUP_HIERARCHY, labCgroup, 'cgroup.procs')));
  });

  test('the launch script binds parents before children and quotes every path', () => {
    const s = spec("echo 'quoted'");
    s.binds.push({ hostPath: "/tmp/it's", path: '/etc/app/sub', readOnly: false });
    const text = launchScript(s, (p) => p.endsWith('volume'));
    assert.ok(text.indexOf("'/etc' ") < text.indexOf('/etc/app'), text);
    assert.ok(text.indexOf(`${s.root}/etc/app'`) < text.indexOf(`${s.root}/etc/app/sub'`), text);
    assert.match(text, /'\/tmp\/it'\\''s'/);
  });
});
