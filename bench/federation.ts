/**
 * Federation benchmark on real SPIRE (the current profile's release, built by
 * `npm run lab:build`): full-mesh bootstrap of N = 2, 4, 8, 16 trust domains
 * (16: 240 directions), and how long a CA rotation takes to reach every peer
 * with meshfed's watch and with SPIRE's refresh hint alone, side by side.
 * Prints numbers, each beside its goal (issue 17: bootstrap plus
 * relationships of 16 under 30 s, status of 16 under 3 s); asserts nothing.
 *   npm run bench:federation [-- --samples 3] [-- --sizes 2,4,8,16] [-- --no-rotation]
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import {
  bootstrap,
  ensureRelationships,
  type FederationMember,
  federationStatus,
  fullMesh,
  type Pair,
  watchFederation,
} from '../src/federation/engine.js';
import { PROFILE_VERSIONS } from '../src/fleet/versions.js';
import { requireLabBinaries } from '../src/lab/binaries.js';
import { startLabFederation } from '../src/lab/federation.js';

const VERSION = PROFILE_VERSIONS.current.spire;
const samplesArg = process.argv.indexOf('--samples');
const SAMPLES = samplesArg > 0 ? Number(process.argv[samplesArg + 1]) : 3;
const sizesArg = process.argv.indexOf('--sizes');
const SIZES =
  sizesArg > 0
    ? String(process.argv[sizesArg + 1])
        .split(',')
        .map(Number)
    : [2, 4, 8, 16];
/** Issue 17's goals, for 16 trust domains. */
const GOAL_SETUP_MS = 30_000;
const GOAL_STATUS_MS = 3_000;
requireLabBinaries('spire', VERSION, ['spire-server', 'spire-agent']);

const ms = (t0: number) => performance.now() - t0;
const rssMiB = (pids: number[]) =>
  pids.reduce((sum, pid) => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return sum + Number(m?.[1] ?? 0) / 1024;
  }, 0);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

console.log(`meshfed federation benchmark (SPIRE ${VERSION}, node ${process.version})`);
console.log('');
console.log(
  `goals for 16 domains: bootstrap + relationships < ${GOAL_SETUP_MS / 1000} s, status < ${GOAL_STATUS_MS / 1000} s`,
);
console.log('');
console.log(
  '  N  dirs  servers start  bootstrap  relationships  boot+rel (goal)         re-run (no writes)  status (goal)          servers RSS (per server)',
);
const goal = (value: number, limit: number, n: number) =>
  n < 16 ? '' : value < limit ? ` (< ${limit / 1000} s: met)` : ` (< ${limit / 1000} s: MISSED)`;
for (const n of SIZES) {
  let t = performance.now();
  const lab = await startLabFederation({ count: n, spireVersion: VERSION, domain: { agent: false } });
  try {
    const start = ms(t);
    const mesh = fullMesh(lab.members);
    t = performance.now();
    const b = await bootstrap(lab.members, mesh);
    const boot = ms(t);
    t = performance.now();
    const r = await ensureRelationships(lab.members, mesh);
    const rel = ms(t);
    t = performance.now();
    const again = [
      ...(await bootstrap(lab.members, mesh)),
      ...(await ensureRelationships(lab.members, mesh)),
    ];
    const rerun = ms(t);
    t = performance.now();
    const st = await federationStatus(lab.members, mesh);
    const status = ms(t);
    const failed = [...b, ...r].filter((s) => s.result === 'failed').length;
    const writes = again.filter((s) => s.result !== 'unchanged').length;
    const notCurrent = st.filter((s) => s.state !== 'current').length;
    if (failed || writes || notCurrent)
      throw new Error(`N=${n}: ${failed} failed, ${writes} re-run writes, ${notCurrent} not current`);
    const rss = rssMiB(lab.domains.flatMap((d) => d.pids()));
    const setup = `${(boot + rel).toFixed(0)} ms${goal(boot + rel, GOAL_SETUP_MS, n)}`;
    const st_ = `${status.toFixed(0)} ms${goal(status, GOAL_STATUS_MS, n)}`;
    console.log(
      `${String(n).padStart(3)}  ${String(2 * mesh.length).padStart(4)}  ${start.toFixed(0).padStart(10)} ms  ${boot.toFixed(0).padStart(6)} ms  ${rel.toFixed(0).padStart(10)} ms  ${setup.padEnd(22)}  ${rerun.toFixed(0).padStart(15)} ms  ${st_.padEnd(21)}  ${rss.toFixed(0).padStart(7)} MiB (${(rss / n).toFixed(0)} MiB)`,
    );
  } finally {
    await lab.stop();
  }
}

/** Rotates foo.com's root and CA, returns ms until every peer holds the new bundle. */
async function rotationLatency(members: FederationMember[], pairs: Pair[], rotate: () => Promise<unknown>) {
  const t0 = performance.now();
  await rotate();
  for (;;) {
    const st = await federationStatus(members, pairs);
    if (st.filter((s) => s.peer === members[0]?.name).every((s) => s.state === 'current')) return ms(t0);
    if (ms(t0) > 180_000) throw new Error('rotation did not propagate within 180 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}

if (process.argv.includes('--no-rotation')) process.exit(0);
console.log('');
console.log(
  `rotation propagation, 3 domains, foo.com rotates (${SAMPLES} samples each; refresh_hint 1m, SPIRE's minimum)`,
);
const lab = await startLabFederation({ count: 3, spireVersion: VERSION, domain: { agent: false } });
try {
  const mesh = fullMesh(lab.members);
  await bootstrap(lab.members, mesh);
  await ensureRelationships(lab.members, mesh);
  const foo = lab.domains[0];
  if (!foo) throw new Error('no domain');
  let prepared = '';
  const rotate = async () => {
    await foo.rotateRoot();
    prepared = (await foo.server.prepareX509Authority()).authorityId;
  };
  const activate = () => foo.server.activateX509Authority(prepared);
  const withWatch: number[] = [];
  const hintAlone: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const w = watchFederation(lab.members, mesh, { intervalMs: 500 });
    // Its first poll records what is served; a rotation before it ends would not be seen as a change.
    for (const until = Date.now() + 30_000; w.polls < 1; await new Promise((r) => setTimeout(r, 50)))
      if (Date.now() > until) throw new Error('the watch did not poll within 30 s');
    withWatch.push(await rotationLatency(lab.members, mesh, rotate));
    await w.stop();
    await activate();
    hintAlone.push(await rotationLatency(lab.members, mesh, rotate));
    await activate();
  }
  const row = (name: string, xs: number[]) =>
    console.log(
      `  ${name.padEnd(34)} median ${median(xs).toFixed(0).padStart(6)} ms   min ${Math.min(...xs)
        .toFixed(0)
        .padStart(6)} ms   max ${Math.max(...xs)
        .toFixed(0)
        .padStart(6)} ms`,
    );
  row('meshfed watch (poll every 500 ms)', withWatch);
  row('SPIRE refresh hint alone', hintAlone);
} finally {
  await lab.stop();
}
