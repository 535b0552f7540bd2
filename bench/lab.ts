/**
 * Lab benchmark: `meshfed lab up` wall time, `lab down` time and the resident
 * memory of every lab process, for N = 2 and 4 clusters side by side; then
 * the lab build: with the stamps present (nothing to do), and cached (Go
 * caches warm, binaries rebuilt into a scratch folder). With --cold, also cold
 * (empty module and build caches) for the components named. Prints numbers;
 * asserts nothing.
 *   npm run bench:lab [-- --profile seed] [-- --sizes 2,4] [-- --cold kwok,etcd]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Profile } from '../src/fleet/model.js';
import { labDown, labUp } from '../src/lab/lab.js';
import { processesUnder } from '../src/lab/procfs.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? def) : def;
};
const profile = arg('profile', 'current') as Profile;
const sizes = arg('sizes', '2,4').split(',').map(Number);
const cold = arg('cold', '').split(',').filter(Boolean);
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
    return base === 'node' ? 'load balancer (node)' : base;
  } catch {
    return '?';
  }
}

console.log(`meshfed lab benchmark (${profile} profile, node ${process.version}, 2 cores)`);
console.log('');
console.log('  N  lab up   lab down  processes  RSS total  RSS per cluster');
const breakdowns: Array<[number, Map<string, number>]> = [];
for (const n of sizes) {
  const parent = mkdtempSync(join(tmpdir(), 'mf-bench-lab-'));
  const dir = join(parent, 'lab');
  let t = performance.now();
  const { state } = await labUp({ dir, clusters: n, profile });
  const upMs = performance.now() - t;
  // Let the controllers finish their first sync before reading memory.
  await new Promise((r) => setTimeout(r, 5000));
  const pids = [...processesUnder(dir), ...(state.loadBalancer ? [state.loadBalancer.pid] : [])];
  const byProgram = new Map<string, number>();
  let total = 0;
  for (const pid of new Set(pids)) {
    const m = rss(pid);
    total += m;
    const p = programOf(pid);
    byProgram.set(p, (byProgram.get(p) ?? 0) + m);
  }
  breakdowns.push([n, byProgram]);
  t = performance.now();
  await labDown(dir);
  const downMs = performance.now() - t;
  rmSync(parent, { recursive: true, force: true });
  console.log(
    `${String(n).padStart(3)}  ${(upMs / 1000).toFixed(1).padStart(5)} s  ${(downMs / 1000).toFixed(1).padStart(6)} s  ${String(new Set(pids).size).padStart(9)}  ${total.toFixed(0).padStart(5)} MiB  ${(total / n).toFixed(0).padStart(5)} MiB`,
  );
}
console.log('');
console.log('  resident memory by program (MiB, summed over clusters)');
const programs = [...new Set(breakdowns.flatMap(([, m]) => [...m.keys()]))].sort();
console.log(`  ${'program'.padEnd(28)}${breakdowns.map(([n]) => `N=${n}`.padStart(9)).join('')}`);
for (const p of programs)
  console.log(
    `  ${p.padEnd(28)}${breakdowns.map(([, m]) => (m.get(p) ?? 0).toFixed(0).padStart(9)).join('')}`,
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
