/**
 * Lab benchmark: `meshfed lab up` wall time, `lab down` time and the resident
 * memory of every lab process, for N = 2 and 4 clusters side by side, and for
 * each way of running pods (simulated, real: the node agent's containers
 * counted through the lab's cgroup); with --up, also `meshfed up --lab`'s
 * wall time on each lab (and the memory after it, pods running); then
 * the lab build: with the stamps present (nothing to do), and cached (Go
 * caches warm, binaries rebuilt into a scratch folder). With --cold, also cold
 * (empty module and build caches) for the components named. Prints numbers;
 * asserts nothing.
 *   npm run bench:lab [-- --profile seed] [-- --sizes 2,4] [-- --pods simulated,real] [-- --up]
 *                     [-- --no-build] [-- --cold kwok,etcd]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Profile } from '../src/fleet/model.js';
import { type LabPods, labDown, labUp } from '../src/lab/lab.js';
import { cgroupProcesses } from '../src/lab/node/container.js';
import { labCgroup } from '../src/lab/node/run.js';
import { processesUnder } from '../src/lab/procfs.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? def) : def;
};
const profile = arg('profile', 'current') as Profile;
const sizes = arg('sizes', '2,4').split(',').map(Number);
const cold = arg('cold', '').split(',').filter(Boolean);
const podModes = arg('pods', 'simulated').split(',') as LabPods[];
const withUp = process.argv.includes('--up');
const noBuild = process.argv.includes('--no-build');
const repo = new URL('../../', import.meta.url).pathname;

function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Number(m?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

function programOf(pid: number): string {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const base = (argv[0] ?? '').split('/').pop() ?? '';
    if (base !== 'node') return base;
    // Node processes of the lab, by their script.
    const script = (argv[1] ?? '').split('/').pop() ?? '';
    return (
      {
        'loadbalancer-main.js': 'load balancer (node)',
        'agent-main.js': 'node agent (node)',
        'portal-main.js': 'portal (node)',
      }[script] ?? `node ${script}`
    );
  } catch {
    return '?';
  }
}

console.log(`meshfed lab benchmark (${profile} profile, node ${process.version}, 2 cores)`);
console.log('');
console.log(
  `  pods        N  lab up   lab down  processes  RSS total  RSS per cluster${withUp ? '  meshfed up' : ''}`,
);
const breakdowns: Array<[string, Map<string, number>]> = [];
for (const pods of podModes)
  for (const n of sizes) {
    const parent = mkdtempSync(join(tmpdir(), 'mf-bench-lab-'));
    const dir = join(parent, 'lab');
    let t = performance.now();
    const { state } = await labUp({ dir, clusters: n, profile, pods });
    const upMs = performance.now() - t;
    let meshfedUpMs = 0;
    if (withUp) {
      t = performance.now();
      const r = spawnSync(process.execPath, [join(repo, 'dist/src/cli/main.js'), 'up', '--lab'], {
        cwd: parent,
        env: { ...process.env, MESHFED_LAB_DIR: dir },
        encoding: 'utf8',
      });
      meshfedUpMs = performance.now() - t;
      if (r.status !== 0)
        console.log(
          `  meshfed up failed (${pods}, N=${n}): ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`,
        );
    }
    // Let the controllers finish their first sync before reading memory.
    await new Promise((r) => setTimeout(r, 5000));
    const pids = new Set([
      ...processesUnder(dir),
      ...(state.loadBalancer ? [state.loadBalancer.pid] : []),
      ...cgroupProcesses(labCgroup(state.block)),
    ]);
    const byProgram = new Map<string, number>();
    let total = 0;
    for (const pid of pids) {
      const m = rss(pid);
      total += m;
      const p = programOf(pid);
      byProgram.set(p, (byProgram.get(p) ?? 0) + m);
    }
    breakdowns.push([`${pods} N=${n}`, byProgram]);
    t = performance.now();
    await labDown(dir);
    const downMs = performance.now() - t;
    rmSync(parent, { recursive: true, force: true });
    console.log(
      `  ${pods.padEnd(9)} ${String(n).padStart(3)}  ${(upMs / 1000).toFixed(1).padStart(5)} s  ${(downMs / 1000).toFixed(1).padStart(6)} s  ${String(pids.size).padStart(9)}  ${total.toFixed(0).padStart(5)} MiB  ${(total / n).toFixed(0).padStart(5)} MiB${withUp ? `  ${(meshfedUpMs / 1000).toFixed(1).padStart(8)} s` : ''}`,
    );
  }
console.log('');
console.log('  resident memory by program (MiB, summed over clusters)');
const programs = [...new Set(breakdowns.flatMap(([, m]) => [...m.keys()]))].sort();
console.log(`  ${'program'.padEnd(28)}${breakdowns.map(([label]) => label.padStart(16)).join('')}`);
for (const p of programs)
  console.log(
    `  ${p.padEnd(28)}${breakdowns.map(([, m]) => (m.get(p) ?? 0).toFixed(0).padStart(16)).join('')}`,
  );

function build(label: string, env: NodeJS.ProcessEnv, args: string[] = []): void {
  const t = performance.now();
  const r = spawnSync('bash', [join(repo, 'lab/build.sh'), ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  const s = ((performance.now() - t) / 1000).toFixed(0);
  if (r.status !== 0)
    console.log(`  ${label.padEnd(44)} FAILED: ${r.stderr.trim().split('\n').slice(-2).join(' / ')}`);
  else console.log(`  ${label.padEnd(44)} ${s.padStart(5)} s`);
}

if (noBuild) process.exit(0);
console.log('');
console.log('  lab build (lab/build.sh)');
build('stamps present (nothing to do)', {});
const scratch = mkdtempSync(join(tmpdir(), 'mf-bench-build-'));
build('cached (Go caches warm, every binary rebuilt)', { MESHFED_LAB_OUT: join(scratch, 'bin') });
for (const c of cold) {
  const caches = mkdtempSync(join(tmpdir(), 'mf-bench-cold-'));
  build(
    `cold: ${c} (empty module and build caches)`,
    {
      MESHFED_LAB_OUT: join(caches, 'bin'),
      GOMODCACHE: join(caches, 'mod'),
      GOCACHE: join(caches, 'cache'),
      GOFLAGS: '-modcacherw',
    },
    [c],
  );
  rmSync(caches, { recursive: true, force: true });
}
rmSync(scratch, { recursive: true, force: true });
