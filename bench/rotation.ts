/**
 * Root and intermediate rotation under traffic, on a 2-cluster real-pods lab
 * (current profile): continuous cross-cluster requests both ways, each its
 * tenth a new mutual TLS handshake, through the peer's east-west gateway
 * (test/helpers/cross-traffic.ts), while
 *   1. `meshfed rotate root --cluster cluster-2`,
 *   2. `meshfed rotate spire-ca --cluster cluster-1`,
 *   3. the guide's way: cluster-2's root replaced (cert-manager issues it
 *      again, SPIRE prepares, activates and re-issues under it at once), no
 *      coordinated bundle propagation: the peer learns the new root only when
 *      its SPIRE server refreshes at the refresh hint.
 * One row each, side by side: requests, failed requests, how long failures
 * lasted. Then the end-to-end propagation time of `rotate root` over
 * --samples rotations (from the moment the new root is served to the moment
 * every proxy of every cluster holds it in its ROOTCA, read from their config
 * dumps): median and max. Prints numbers; asserts nothing.
 *   npm run bench:rotation [-- --samples 3] [-- --lab-dir DIR] [-- --concurrency 6]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { SPIRE_SERVER_POD } from '../src/engine/discover.js';
import { ROOT_CERT, renewCertificate } from '../src/engine/rotate.js';
import { SpireServerCli } from '../src/federation/spire-cli.js';
import { podServerTransport } from '../src/federation/transport.js';
import { clientsFor } from '../src/kube/client.js';
import { labDown, labUp, readLabState } from '../src/lab/lab.js';
import { crossTraffic, type Running } from '../test/helpers/cross-traffic.js';
import type { LoadResult } from './dataplane-load.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? def) : def;
};
const samples = Number(arg('samples', '3'));
const concurrency = Number(arg('concurrency', '8'));
const reuse = arg('lab-dir', '');
const main = new URL('../src/cli/main.js', import.meta.url).pathname;

let parent: string | undefined;
let labDir: string;
if (reuse) labDir = resolve(reuse);
else {
  parent = mkdtempSync(join(tmpdir(), 'mf-bench-rotation-'));
  labDir = join(parent, 'lab');
}
const env = {
  ...process.env,
  MESHFED_LAB_DIR: labDir,
  ...(parent ? { HOME: parent, XDG_CACHE_HOME: join(parent, 'cache') } : {}),
};
/** meshfed as its own process; asynchronous, so the load generators' progress is read meanwhile. */
const meshfed = (args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((ok) => {
    const c = spawn(process.execPath, [main, ...args, '--lab'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => (stdout += b));
    c.stderr.on('data', (b: Buffer) => (stderr += b));
    c.on('close', (code) => ok({ code: code ?? -1, stdout, stderr }));
  });

interface Row {
  name: string;
  seconds: number;
  results: Record<string, LoadResult>;
  /** Requests that ended while the action ran (both directions). */
  during: number;
  note: string;
}

const rows: Row[] = [];
const propagation: number[] = [];
const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

async function underTraffic(name: string, run: Running, action: () => Promise<string>): Promise<void> {
  await sleep(3000);
  const t = performance.now();
  const n0 = run.count();
  const note = await action();
  const during = run.count() - n0;
  const seconds = (performance.now() - t) / 1000;
  await sleep(3000);
  rows.push({ name, seconds, during, results: await run.stop(), note });
}

try {
  if (!reuse) {
    console.error(`  lab up --pods real in ${labDir} …`);
    await labUp({ dir: labDir, clusters: 2, profile: 'current', pods: 'real' });
    const fleet = join(labDir, 'meshfed.yaml');
    // SVIDs of 2 minutes: a new intermediate's SVIDs come within a minute (their half-life).
    writeFileSync(fleet, readFileSync(fleet, 'utf8').replace(/^( +svidTTL: )1h/m, '$12m'));
    console.error('  meshfed up --lab …');
    const up = await meshfed(['up']);
    if (up.code !== 0) throw new Error(`meshfed up: ${up.stderr.split('\n').slice(-6).join('\n')}`);
  }
  const state = readLabState(labDir)!;
  const clients = clientsFor(
    state.kubeconfig,
    state.clusters.map((c) => c.context),
  );
  const spire2 = new SpireServerCli(podServerTransport(clients.get('cluster-2')!, SPIRE_SERVER_POD));
  const traffic = await crossTraffic(labDir);
  try {
    const rotate = (kind: string, cluster: string) => async () => {
      const r = await meshfed(['rotate', kind, '--cluster', cluster, '-o', 'json']);
      if (r.code !== 0)
        throw new Error(`rotate ${kind} ${cluster}: ${r.stderr.split('\n').slice(-4).join('\n')}`);
      const j = JSON.parse(r.stdout) as { propagationMs?: number };
      if (j.propagationMs !== undefined) propagation.push(j.propagationMs);
      return j.propagationMs !== undefined
        ? `new root in every proxy ${(j.propagationMs / 1000).toFixed(1)} s after served`
        : '';
    };
    console.error('  meshfed rotate root --cluster cluster-2 under traffic …');
    await underTraffic(
      'meshfed rotate root (cluster-2)',
      traffic.start({ concurrency }),
      rotate('root', 'cluster-2'),
    );
    console.error('  meshfed rotate spire-ca --cluster cluster-1 under traffic …');
    await underTraffic(
      'meshfed rotate spire-ca (cluster-1)',
      traffic.start({ concurrency }),
      rotate('spire-ca', 'cluster-1'),
    );

    // The guide's way: the root replaced and used at once; the peer refreshes at the hint, not before.
    console.error(
      "  the guide's way: cluster-2's root replaced, no coordinated propagation, under traffic …",
    );
    const run = traffic.start({ concurrency, maxSeconds: 480 });
    await sleep(3000);
    const t = performance.now();
    const n0 = run.count();
    const c2 = clients.get('cluster-2')!;
    const rootText = async () =>
      (
        (await c2.get({
          apiVersion: 'v1',
          kind: 'Secret',
          namespace: 'cert-manager',
          name: 'selfsigned-ca',
        }))!.data as Record<string, string>
      )['tls.crt'];
    const was = await rootText();
    await renewCertificate(c2, ROOT_CERT, 'bench: the guide replaces the root');
    for (const end = Date.now() + 60_000; ; ) {
      if ((await rootText()) !== was) break;
      if (Date.now() > end) throw new Error('cert-manager did not issue the root again within 60 s');
      await sleep(500);
    }
    const before = await spire2.x509AuthorityState();
    const prepared = await spire2.prepareX509Authority();
    await spire2.activateX509Authority(prepared.authorityId);
    await spire2.taintUpstreamAuthority(before.active!.upstreamAuthoritySubjectKeyId!);
    const replacedAt = Date.now();
    // Failures start once SVIDs move. The peer refreshes at the hint, if it still can authenticate
    // cluster-2's endpoint; when it cannot (its server SVID is under the new root), only a repair helps.
    const fed = JSON.parse((await meshfed(['federation', 'status', '-o', 'json'])).stdout) as {
      directions: Array<{ peer: string; refreshHintSeconds?: number }>;
    };
    const hint = fed.directions.find((d) => d.peer === 'cluster-2')?.refreshHintSeconds;
    const current = async () => (await meshfed(['federation', 'status', '-o', 'json'])).code === 0;
    let healedAt: number | undefined;
    let how = 'by itself';
    for (const end = Date.now() + 90_000; Date.now() < end && healedAt === undefined; ) {
      await sleep(5000);
      if (await current()) healedAt = Date.now();
    }
    if (healedAt === undefined) {
      how = 'only by `meshfed federation repair` after 90 s';
      const r = await meshfed(['federation', 'repair']);
      if (r.code !== 0) console.error(`  federation repair: ${r.stdout}${r.stderr}`);
      for (const end = Date.now() + 120_000; Date.now() < end && healedAt === undefined; ) {
        if (await current()) healedAt = Date.now();
        else await sleep(2000);
      }
    }
    const during = run.count() - n0;
    await sleep(15_000);
    rows.push({
      name: "the guide's way: root replaced (cluster-2)",
      seconds: (performance.now() - t) / 1000,
      during,
      results: await run.stop(),
      note: healedAt
        ? `healed ${how}: the peer held the new root ${((healedAt - replacedAt) / 1000).toFixed(0)} s after the switch (refresh hint ${hint ?? '?'} s)`
        : `not healed within 210 s (refresh hint ${hint ?? '?'} s)`,
    });

    // Propagation over several rotations (alternating clusters), no traffic needed.
    for (let i = 0; i < samples; i++) {
      const c = i % 2 === 0 ? 'cluster-1' : 'cluster-2';
      console.error(`  propagation sample ${i + 1}/${samples}: rotate root --cluster ${c} …`);
      await rotate('root', c)();
    }
  } finally {
    await traffic.close();
  }
} finally {
  if (parent) {
    await labDown(labDir).catch((e: Error) => console.error(`lab down: ${e.message}`));
    rmSync(parent, { recursive: true, force: true });
  }
}

const span = (r: LoadResult) =>
  r.firstErrorAt !== undefined ? `${((r.lastErrorAt! - r.firstErrorAt) / 1000).toFixed(1)} s` : '-';
console.log(
  `rotation under traffic (current profile, 2 clusters, real pods, ${cpus().length} cores, load ${loadavg()[0]!.toFixed(1)}; a new mTLS handshake every 10 requests; ${concurrency} workers each way)`,
);
console.log('');
console.log(
  '  what                                          took  during   direction               requests  failed  failing for',
);
for (const r of rows)
  for (const [i, [d, x]] of Object.entries(r.results).entries())
    console.log(
      `  ${(i === 0 ? r.name : '').padEnd(44)}  ${(i === 0 ? `${r.seconds.toFixed(0)} s` : '').padStart(5)}  ${(i === 0 ? String(r.during) : '').padStart(6)}   ${d.padEnd(22)}  ${String(x.requests + x.errors).padStart(8)}  ${String(x.errors).padStart(6)}  ${span(x).padStart(11)}${i === 0 && r.note ? `   ${r.note}` : ''}`,
    );
const sorted = [...propagation].sort((a, b) => a - b);
console.log('');
console.log(
  `propagation of a new root to every proxy of the fleet (meshfed rotate root, ${sorted.length} rotations): median ${((sorted[Math.floor(sorted.length / 2)] ?? Number.NaN) / 1000).toFixed(1)} s, max ${((sorted.at(-1) ?? Number.NaN) / 1000).toFixed(1)} s (goal under 10 s); each ${sorted.map((x) => (x / 1000).toFixed(1)).join(', ')} s`,
);
