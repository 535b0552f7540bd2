/**
 * The engine's speed on the lab, for N = 2, 4 and 8 clusters, side by side
 * in one run (issue 18): per N, on a fresh lab with simulated pods (the node
 * agents run cert-manager, SPIRE and the registrar from what `up` applies,
 * kwok the data plane: real pods for 8 clusters would not fit 2 cores),
 *
 * - a first `meshfed up`, a no-op `up` (nothing to change), `plan` with
 *   nothing to change and `status`, each the CLI as a user runs it (a process
 *   of its own: `node dist/src/cli/main.js … --lab`), its wall time and its
 *   CPU (user + system of the process and what it ran: istioctl in a first
 *   up, whose result is cached for the next runs);
 * - beside them, kubectl of the lab's Kubernetes on the same objects, one
 *   cluster after the other, one file per phase step as a script would:
 *   `kubectl apply --server-side` with nothing to change (run once before,
 *   untimed, so that kubectl's field manager owns its fields) and
 *   `kubectl diff --server-side`. The objects are the ones `up` applies:
 *   what `meshfed render` makes (with the discovered bundle endpoints), the
 *   upstream releases and istioctl's manifests, with meshfed's marks;
 *   the remote secrets, built from reader tokens at apply time, are not in
 *   kubectl's set.
 *
 * and the ratios against the goals. With `--baseline CLI` (another build's
 * dist/src/cli/main.js, say the commit before a change), the no-op up, plan
 * and status of that build run on the same lab too, each just before this
 * build's, so that the two are compared under the same load.
 * Prints numbers; asserts nothing.
 *   npm run bench:up [-- --sizes 2,4,8] [-- --profile current|seed] [-- --baseline OLD/dist/src/cli/main.js] [-- --keep]
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { ENGINE_PHASES, withMark } from '../src/engine/apply.js';
import { desiredPhase } from '../src/engine/desired.js';
import { findIstioctl } from '../src/engine/istioctl.js';
import { applyWaves } from '../src/engine/order.js';
import { storedForm, type UpResult } from '../src/engine/up.js';
import { UpstreamSource } from '../src/engine/upstream.js';
import { parseFleet } from '../src/fleet/load.js';
import type { Profile } from '../src/fleet/model.js';
import { PROFILE_VERSIONS } from '../src/fleet/versions.js';
import { LAB_ISTIO_BUILDS, labBinDir } from '../src/lab/binaries.js';
import { labDown, labUp } from '../src/lab/lab.js';
import { DEFAULT_POD_TIMINGS } from '../src/lab/stages.js';
import { cpuByProgram, machineCpu, snapshotProcs } from './procs.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? def) : def;
};
const profile = arg('profile', 'current') as Profile;
const sizes = arg('sizes', '2,4,8').split(',').map(Number);
const V = PROFILE_VERSIONS[profile];
const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js');
const baselineArg = arg('baseline', '');
const BASELINE = baselineArg ? resolve(baselineArg) : undefined;
/** --keep: each size's lab is left up, its pods' logs and the commands' caches with it, to look into. */
const KEEP = process.argv.includes('--keep');
const TIME = '/usr/bin/time';

interface Run {
  wall: number;
  /** CPU seconds (user + system) of the process and its children; NaN without /usr/bin/time. */
  cpu: number;
  code: number;
  out: string;
  err: string;
}

/** Runs a program, timed: wall from here, CPU from /usr/bin/time (its rusage of the child). */
function timed(file: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<Run> {
  const withTime = existsSync(TIME);
  const cpuFile = join(cwd, `.cpu-${process.hrtime.bigint()}`);
  const [cmd, argv] = withTime ? [TIME, ['-f', '%U %S', '-o', cpuFile, file, ...args]] : [file, args];
  const t = performance.now();
  return new Promise((done) =>
    execFile(cmd, argv, { env, cwd, maxBuffer: 256 << 20 }, (e, out, err) => {
      const wall = (performance.now() - t) / 1000;
      let cpu = Number.NaN;
      if (withTime && existsSync(cpuFile)) {
        const [u, s] = readFileSync(cpuFile, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
        cpu = u! + s!;
        rmSync(cpuFile, { force: true });
      }
      const code = e ? (typeof e.code === 'number' ? e.code : 1) : 0;
      done({ wall, cpu, code, out, err });
    }),
  );
}

const s1 = (x: number) => (Number.isNaN(x) ? '-' : `${x.toFixed(1)} s`);
const s2 = (x: number) => (Number.isNaN(x) ? '-' : `${x.toFixed(2)} s`);
const pad = (s: string, n: number) => s.padStart(n);

interface Row {
  n: number;
  objects: number;
  first: Run;
  noop: Run;
  plan: Run;
  status: Run;
  base?: { noop: Run; plan: Run; status: Run };
  /** Objects the no-op up applied (its unchanged ones); kubectl's set lacks the remote secrets. */
  applied: number;
  apply: number;
  diff: number;
  /** The first up's phases: seconds per cluster, min and max over the clusters, in phase order. */
  phases: Array<[string, number, number]>;
  /** The machine's CPU during the first up (every process): busy and available CPU-seconds (/proc/stat). */
  machine: { busy: number; available: number };
  /** The same by program (/proc), largest first: CPU-seconds. */
  programs: Array<[string, number]>;
}
const rows: Row[] = [];

console.log(
  `meshfed engine speed on the lab: ${profile} profile, node ${process.version}, Kubernetes ${V.kubernetes}, ` +
    'simulated pods (kwok runs the data plane, Ready 1–3 s after start; the identity plane is real), the CLI as its own process',
);
console.log(
  'kubectl: apply --server-side (nothing to change) and diff --server-side of the objects up applies, cluster after cluster, a file per phase step',
);
if (BASELINE) console.log(`baseline (each run just before this build's, on the same lab): ${BASELINE}`);
console.log('');
console.log(
  '  N  objects  first up (CPU)      no-op up (CPU, ms/object)  plan (CPU)         status  |  kubectl apply  kubectl diff',
);
for (const n of sizes) {
  const parent = mkdtempSync(join(tmpdir(), 'mf-bench-up-'));
  const dir = join(parent, 'lab');
  const env = { ...process.env, MESHFED_LAB_DIR: dir, XDG_CACHE_HOME: join(parent, 'cache') };
  const meshfed = async (args: string[], ok: number[] = [0], cli = CLI) => {
    const r = await timed(process.execPath, [cli, ...args, '--lab'], env, parent);
    if (!ok.includes(r.code))
      throw new Error(`meshfed ${args.join(' ')} exited ${r.code}: ${r.err.slice(-2000)}`);
    return r;
  };
  try {
    const { state } = await labUp({
      dir,
      clusters: n,
      profile,
      pods: 'simulated',
      podTimings: DEFAULT_POD_TIMINGS,
    });
    const before = machineCpu();
    const procsBefore = snapshotProcs();
    const first = await meshfed(['up', '-o', 'json']);
    const programs = cpuByProgram(procsBefore, snapshotProcs());
    const after = machineCpu();
    const up = JSON.parse(first.out) as UpResult;
    const phases: Row['phases'] = [];
    for (const phase of ENGINE_PHASES) {
      const secs = up.clusters.flatMap((c) =>
        c.phases.filter((p) => p.phase === phase).map((p) => p.seconds),
      );
      if (secs.length) phases.push([phase, Math.min(...secs), Math.max(...secs)]);
    }
    const machine = { busy: after.busy - before.busy, available: after.all - before.all };
    let applied = 0;
    const noopUp = async (cli = CLI) => {
      const r = await meshfed(['up', '-o', 'json'], [0], cli);
      const again = JSON.parse(r.out) as UpResult;
      if (again.writes !== 0) console.log(`  (N=${n}: the no-op up of ${cli} wrote ${again.writes} times)`);
      applied = again.clusters.reduce((k, c) => k + c.phases.reduce((m, p) => m + p.counts.unchanged, 0), 0);
      return r;
    };
    const planRun = async (cli = CLI) => {
      const r = await meshfed(['plan'], [0, 1], cli);
      if (r.code !== 0) console.log(`  (N=${n}: the plan of ${cli} found changes:\n${r.out.slice(0, 2000)})`);
      return r;
    };
    // The baseline's run just before this build's, each time.
    const baseNoop = BASELINE ? await noopUp(BASELINE) : undefined;
    const noop = await noopUp();
    const basePlan = BASELINE ? await planRun(BASELINE) : undefined;
    const plan = await planRun();
    const baseStatus = BASELINE ? await meshfed(['status'], [0, 1], BASELINE) : undefined;
    const status = await meshfed(['status'], [0, 1]);

    // The objects up applied, per cluster and phase step, for kubectl.
    const fleet = parseFleet(readFileSync(join(dir, 'meshfed.yaml'), 'utf8'));
    const src = {
      upstream: new UpstreamSource({ offlineDir: join(dir, 'upstream') }),
      istioctl: await findIstioctl(join(labBinDir('istio', LAB_ISTIO_BUILDS[V.istio]!), 'istioctl')),
      cacheDir: join(parent, 'istio-cache'),
    };
    const files: Array<{ context: string; file: string }> = [];
    let objects = 0;
    for (const c of fleet.clusters)
      for (const phase of ENGINE_PHASES) {
        if (phase === 'remote-secrets') continue;
        const want = await desiredPhase(fleet, c.name, phase, { bundleEndpoints: up.bundleEndpoints }, src);
        for (const [i, step] of want.steps.entries()) {
          if (!step.objects.length) continue;
          objects += step.objects.length;
          const file = join(parent, 'kubectl', c.name, `${ENGINE_PHASES.indexOf(phase)}-${phase}-${i}.yaml`);
          mkdirSync(dirname(file), { recursive: true });
          writeFileSync(
            file,
            applyWaves(step.objects)
              .flat()
              .map((o) => stringify(storedForm(withMark(o, undefined, fleet.name, phase))))
              .join('---\n'),
          );
          files.push({ context: c.context, file });
        }
      }
    const kubectl = join(labBinDir('kubernetes', V.kubernetes), 'kubectl');
    const kenv = { ...process.env, HOME: join(parent, 'home') }; // kubectl's discovery cache: its own, warmed by the untimed apply
    const k = async (verb: string[], ok: number[] = [0]) => {
      const t = performance.now();
      for (const f of files) {
        const r = await timed(
          kubectl,
          ['--kubeconfig', state.kubeconfig, '--context', f.context, ...verb, '-f', f.file],
          kenv,
          parent,
        );
        if (!ok.includes(r.code))
          throw new Error(`kubectl ${verb.join(' ')} -f ${f.file}: ${r.err.slice(-2000)}`);
      }
      return (performance.now() - t) / 1000;
    };
    const applyArgs = ['apply', '--server-side', '--force-conflicts'];
    await k(applyArgs); // kubectl's field manager takes its share of the fields: writes, untimed
    const apply = await k(applyArgs);
    const diff = await k(['diff', '--server-side', '--force-conflicts'], [0, 1]);
    const row: Row = {
      n,
      objects,
      applied,
      first,
      noop,
      plan,
      status,
      phases,
      machine,
      programs,
      ...(baseNoop && basePlan && baseStatus
        ? { base: { noop: baseNoop, plan: basePlan, status: baseStatus } }
        : {}),
      apply,
      diff,
    };
    rows.push(row);
    const line = (label: string, firstUp: string, x: { noop: Run; plan: Run; status: Run }, k: string) =>
      console.log(
        `${pad(label, 3)}  ${pad(String(applied), 7)}  ${firstUp.padEnd(18)}  ` +
          `${`${pad(s1(x.noop.wall), 7)} (${s1(x.noop.cpu)}, ${((x.noop.cpu * 1000) / applied).toFixed(1)} ms)`.padEnd(27)}  ` +
          `${`${pad(s1(x.plan.wall), 7)} (${s1(x.plan.cpu)})`.padEnd(17)}  ${pad(s1(x.status.wall), 6)}  |  ${k}`,
      );
    if (row.base) line(String(n), '(baseline)', row.base, '');
    line(
      row.base ? '' : String(n),
      `${pad(s1(first.wall), 7)} (${s1(first.cpu)})`,
      row,
      `${pad(s2(apply), 13)}  ${pad(s2(diff), 12)}  (${objects} objects)`,
    );
  } catch (e) {
    // One size that fails (a lab too slow for its pods on a busy machine) says so; the others still run.
    console.log(`${pad(String(n), 3)}  failed: ${(e as Error).message.split('\n').slice(0, 1).join('')}`);
    const tail = (e as Error).message.split('\n').filter((l) => / failed|not healthy|stopped/.test(l));
    for (const l of tail.slice(0, 4)) console.log(`       ${l.trim()}`);
  } finally {
    if (KEEP) console.log(`  (N=${n}: the lab is left up in ${dir}: meshfed lab down --dir ${dir})`);
    else {
      await labDown(dir).catch(() => {});
      rmSync(parent, { recursive: true, force: true });
    }
  }
}

console.log('');
console.log('goals (issue 18):');
for (const r of rows) {
  const ratios = (x: { noop: Run; plan: Run }) =>
    `no-op up / kubectl apply ${(x.noop.wall / r.apply).toFixed(2)}× (goal ≤ 1.5×); ` +
    `plan / kubectl diff ${(x.plan.wall / r.diff).toFixed(2)}× (goal ≤ 2×); ` +
    `no-op CPU ${((x.noop.cpu * 1000) / r.applied).toFixed(1)} ms/object (goal ≤ 2)`;
  if (r.base) console.log(`  N=${r.n} baseline: ${ratios(r.base)}`);
  console.log(`  N=${r.n}: ${ratios(r)}`);
}
const two = rows.find((r) => r.n === 2);
const eight = rows.find((r) => r.n === 8);
if (two && eight) {
  console.log(`  first up, 8 clusters / 2: ${(eight.first.wall / two.first.wall).toFixed(2)}× (goal ≤ 1.6×)`);
  // Beyond a run's fixed cost (Node's start, loading, discovery, inventory): the slope from 2 to 8 clusters.
  const slope = (a: Run, b: Run) => (((b.cpu - a.cpu) * 1000) / (eight.applied - two.applied)).toFixed(1);
  console.log(
    `  no-op up CPU per added object (2 → 8 clusters): ${slope(two.noop, eight.noop)} ms` +
      (two.base && eight.base ? ` (baseline ${slope(two.base.noop, eight.base.noop)} ms)` : ''),
  );
}
console.log('first up by phase (seconds per cluster, fastest–slowest cluster), and the machine during it:');
for (const r of rows) {
  const by = r.phases.map(([p, lo, hi]) => `${p} ${lo.toFixed(1)}–${hi.toFixed(1)}`).join(', ');
  const { busy, available } = r.machine;
  console.log(`  N=${r.n}: ${by}`);
  console.log(
    `  N=${r.n}: every process's CPU ${busy.toFixed(1)} s of ${available.toFixed(1)} s available (${((100 * busy) / available).toFixed(0)} % busy); ` +
      `at full use of all CPUs, that work alone takes ${((busy / available) * r.first.wall).toFixed(1)} s`,
  );
  // The meshfed CLI ran under /usr/bin/time, which this process waited for: "node up.js (children)".
  const top = r.programs.filter(([, s]) => s >= 0.5);
  console.log(
    `  N=${r.n}: by program (CPU-s, ≥ 0.5): ${top.map(([p, s]) => `${p.replace('node up.js (children)', 'meshfed (and istioctl)')} ${s.toFixed(1)}`).join(', ')}`,
  );
}
console.log(
  `load average at the end: ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')} (${availableParallelism()} CPUs)`,
);
