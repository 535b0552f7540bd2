/**
 * Data-plane benchmark on the lab's real pods (istiod, Envoy sidecars and
 * gateways, SPIRE identities): requests per second, p50 and p99 latency of
 * helloworld over a fixed time at a fixed number of keep-alive connections,
 * after a warm-up, side by side, from cluster-1:
 * - direct: from inside helloworld-v1's pod network namespace to
 *   127.0.0.1:5000 (loopback inside the pod is not captured by Istio's
 *   iptables): the app alone, no Envoy;
 * - local: from inside sleep's pod network namespace to the helloworld
 *   Service's ClusterIP (Host helloworld.helloworld:5000), through sleep's
 *   sidecar, mTLS, helloworld-v1's sidecar (same cluster);
 * - cross-cluster: the same, to helloworld-v2 in cluster-2, through
 *   cluster-2's east-west gateway (reached at its LoadBalancer address, so
 *   through the lab's portals and load balancer, which stand for the cloud's).
 * Each on /hello (every answer's "Hello version: vN" checked; the app computes
 * 1e6 square roots in Python per request, which /hello's numbers mostly
 * measure) and on /health (no computation: what the proxies cost shows). Who
 * served is also counted where it happens: the requests each helloworld
 * sidecar took in during the row (the hosts of its inbound|5000|| cluster in
 * Envoy's /clusters), v1's in cluster-1 and v2's in cluster-2; that is
 * /health's check.
 * Local and cross-cluster are told apart by a request header: for the
 * bench's duration a VirtualService in cluster-1 routes `x-bench-version:
 * v1|v2` to the subsets of a DestinationRule (by the pods' `version` label),
 * which goes into both clusters (cluster-2's east-west gateway passes only
 * subsets its own istiod knows, by SNI outbound_.5000_.v2_.helloworld…);
 * both are deleted afterwards. Also the resident memory (VmRSS) of every
 * Envoy and pilot-agent of cluster-1's real pods, before and after the load,
 * and the versions that ran.
 *
 * The load generator (bench/dataplane-load.ts) is this Node, run under
 * `nsenter --target <pod pid> --net`: every request stays on this machine.
 * The bench starts its own lab (`lab up --pods real`, `meshfed up --lab`) in
 * a fresh temp folder and always brings it down (also on failure or Ctrl-C);
 * --lab-dir reuses a lab where `meshfed up --lab` already ran (left up, only
 * the bench's Istio config removed). Prints numbers; asserts nothing (a row
 * not answered as routed, or with errors, is flagged loudly, exit code 1).
 *   npm run bench:dataplane [-- --profile current|seed] [-- --seconds 10] [-- --concurrency 8]
 *                           [-- --warmup 2] [-- --paths /hello,/health] [-- --lab-dir DIR]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execFileBounded } from '../src/federation/transport.js';
import type { Profile } from '../src/fleet/model.js';
import { PROFILE_VERSIONS } from '../src/fleet/versions.js';
import { LAB_ENVOY_BUILDS, LAB_ISTIO_BUILDS, labBinDir } from '../src/lab/binaries.js';
import { type LabStatus, labDown, labStatus, labUp, readLabState } from '../src/lab/lab.js';
import type { LoadResult } from './dataplane-load.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? def) : def;
};
const profile = arg('profile', 'current') as Profile;
const seconds = Number(arg('seconds', '10'));
const concurrency = Number(arg('concurrency', '8'));
const warmup = Number(arg('warmup', '2'));
const reuse = arg('lab-dir', '');
const paths = arg('paths', '/hello,/health').split(',');
if (paths.some((p) => p !== '/hello' && p !== '/health')) throw new Error('--paths: /hello and/or /health');
if (profile !== 'current' && profile !== 'seed') throw new Error(`--profile current|seed, not ${profile}`);
if (!(seconds > 0 && Number.isInteger(concurrency) && concurrency > 0 && warmup >= 0))
  throw new Error('--seconds and --concurrency must be positive, --warmup not negative');

const repo = new URL('../../', import.meta.url).pathname;
const loadScript = new URL('./dataplane-load.js', import.meta.url).pathname;
const NAME = 'meshfed-bench-dataplane';
const HOST = 'helloworld.helloworld.svc.cluster.local';
const HEADER = 'x-bench-version';

// ---- what is ours to clean up ----

let parent: string | undefined; // the temp folder of a lab we started
let labDir: string | undefined;
let routed: Array<{ context: string; kinds: string[] }> = [];
let k: (context: string, args: string[], stdin?: string) => ReturnType<typeof execFileBounded>;

let starting: Promise<unknown> | undefined; // labUp under way
const children = new Set<ChildProcess>(); // meshfed up, the load generators

/** Runs a program of ours (no shell), killed by cleanUp if still running. */
function child(
  file: string,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; timeoutMs: number },
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    });
    children.add(c);
    let stdout = '';
    let stderr = '';
    c.stdout!.on('data', (b: Buffer) => (stdout += b));
    c.stderr!.on('data', (b: Buffer) => (stderr += b));
    const timer = setTimeout(() => c.kill('SIGKILL'), opts.timeoutMs);
    c.on('error', (e) => {
      clearTimeout(timer);
      children.delete(c);
      reject(new Error(`cannot run ${file}: ${e.message}`));
    });
    c.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(c);
      if (signal) reject(new Error(`${file} ${args.slice(0, 4).join(' ')}: killed (${signal})`));
      else resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

let cleaning: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of children) c.kill('SIGKILL');
    // A lab half started is brought down once labUp has returned (or failed), so nothing it starts is left.
    await starting?.catch(() => {});
    if (labDir && routed.length) {
      // The bench's Istio config goes in any case (a reused lab stays up without it).
      for (const r of routed)
        await k(r.context, [
          '-n',
          'helloworld',
          'delete',
          '--ignore-not-found',
          ...r.kinds.map((x) => `${x}/${NAME}`),
        ])
          .then(
            (x) =>
              x.code !== 0 &&
              console.error(`  deleting the bench's ${r.kinds} in ${r.context}: ${x.stderr.trim()}`),
          )
          .catch((e: Error) => console.error(`  deleting the bench's config in ${r.context}: ${e.message}`));
      routed = [];
    }
    if (parent && labDir) {
      const t = performance.now();
      const r = await labDown(labDir).catch((e: Error) => {
        console.error(`  lab down failed: ${e.message}; run \`meshfed lab down --dir ${labDir}\``);
        return undefined;
      });
      if (r) console.error(`  lab down in ${((performance.now() - t) / 1000).toFixed(1)} s (${labDir})`);
      rmSync(parent, { recursive: true, force: true });
    }
  })();
  return cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    console.error(`\n  ${sig}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });

// ---- /proc ----

function rssMiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

const programOf = (pid: number) => {
  try {
    return (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '').split('/').pop() ?? '';
  } catch {
    return '';
  }
};

/** `root` and every process below it (by /proc/<pid>/stat's ppid). */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const p = todo.shift()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

interface Proxy {
  pod: string;
  envoy?: number;
  agent?: number;
}

/** Each real pod of the cluster with an istio-proxy container: its Envoy and pilot-agent. */
function proxiesOf(s: LabStatus, cluster: string): Proxy[] {
  const c = s.clusters.find((x) => x.name === cluster)!;
  return (c.realPods ?? [])
    .filter((p) => p.pids['istio-proxy'])
    .map((p) => {
      const all = descendants(p.pids['istio-proxy']!);
      return {
        pod: p.pod,
        envoy: all.find((x) => programOf(x) === 'envoy'),
        agent: all.find((x) => programOf(x) === 'pilot-agent'),
      };
    })
    .sort((a, b) => a.pod.localeCompare(b.pod));
}

const memory = (ps: Proxy[]) =>
  new Map(ps.map((p) => [p.pod, { envoy: p.envoy && rssMiB(p.envoy), agent: p.agent && rssMiB(p.agent) }]));

// ---- the load generator, inside a pod's network namespace ----

async function load(pid: number, args: string[], timeoutMs: number): Promise<LoadResult> {
  const r = await child(
    'nsenter',
    [`--target=${pid}`, '--net', '--', process.execPath, loadScript, ...args],
    {
      timeoutMs,
    },
  );
  if (r.code !== 0) throw new Error(`load generator in the netns of pid ${pid} failed: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as LoadResult;
}

/** Requests the pod's sidecar has taken in on helloworld's port (Envoy's /clusters, inside the pod's netns). */
async function inbound(pid: number): Promise<number> {
  const r = await execFileBounded(
    'nsenter',
    [`--target=${pid}`, '--net', '--', 'curl', '-sS', '--max-time', '10', 'http://127.0.0.1:15000/clusters'],
    { timeoutMs: 20_000 },
  );
  if (r.code !== 0) throw new Error(`Envoy's /clusters in the netns of pid ${pid}: ${r.stderr.trim()}`);
  let n = 0;
  for (const m of r.stdout.matchAll(/^inbound\|5000\|\|::.*::rq_total::(\d+)$/gm)) n += Number(m[1]);
  return n;
}

interface Row {
  name: string;
  path: string;
  want: 'v1' | 'v2';
  r: LoadResult;
  served: { v1: number; v2: number };
}

const describe = (r: LoadResult) =>
  `${
    Object.entries(r.versions)
      .sort()
      .map(([v, n]) => `${v} ${n}`)
      .join(', ') || 'no answer'
  }${r.errors ? `; ${r.errors} errors (${r.errorSamples[0]})` : ''}`;

async function waitFor<T>(what: string, deadlineMs: number, f: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + deadlineMs;
  let last = '';
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > end)
      throw new Error(`${what}: not within ${deadlineMs / 1000} s${last ? ` (${last})` : ''}`);
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

// ---- the run ----

const f1 = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(1));
const f0 = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(0));

async function main(): Promise<number> {
  const phases: string[] = [];
  if (reuse) {
    labDir = resolve(reuse);
    if (!readLabState(labDir)) throw new Error(`no lab in ${labDir}`);
  } else {
    parent = mkdtempSync(join(tmpdir(), 'mf-bench-dataplane-'));
    labDir = join(parent, 'lab');
    let t = performance.now();
    console.error(`  lab up --pods real --profile ${profile} in ${labDir} …`);
    starting = labUp({ dir: labDir, clusters: 2, profile, pods: 'real' });
    await starting;
    phases.push(`lab up ${((performance.now() - t) / 1000).toFixed(0)} s`);
    t = performance.now();
    console.error('  meshfed up --lab …');
    const up = await child(process.execPath, [join(repo, 'dist/src/cli/main.js'), 'up', '--lab'], {
      env: { MESHFED_LAB_DIR: labDir, XDG_CACHE_HOME: join(parent, 'cache') },
      cwd: parent,
      timeoutMs: 1_200_000,
    });
    if (up.code !== 0)
      throw new Error(`meshfed up --lab failed:\n${up.stderr.trim().split('\n').slice(-8).join('\n')}`);
    phases.push(`meshfed up --lab ${((performance.now() - t) / 1000).toFixed(0)} s`);
  }
  const state = readLabState(labDir)!;
  if (reuse && process.argv.includes('--profile') && state.profile !== profile)
    console.error(`  --profile ${profile} ignored: the lab in ${labDir} runs the ${state.profile} profile`);
  const kubectl = join(labBinDir('kubernetes', state.versions.kubernetes), 'kubectl');
  k = (context, args, stdin) =>
    execFileBounded(kubectl, ['--kubeconfig', state.kubeconfig, '--context', context, ...args], {
      timeoutMs: 60_000,
      ...(stdin !== undefined ? { stdin } : {}),
    });
  const [c1, c2] = state.clusters;
  if (!c1 || !c2 || state.pods !== 'real')
    throw new Error(`the lab in ${labDir} needs 2 clusters with real pods (--pods real)`);

  // The pods, their processes, the Service's ClusterIP.
  const status = (await labStatus(labDir))!;
  const pods = status.clusters.find((c) => c.name === c1.name)!.realPods ?? [];
  const hello = pods.find((p) => p.pod.startsWith('helloworld/helloworld-v1-'));
  const sleep = pods.find((p) => p.pod.startsWith('sleep/sleep-'));
  const helloPid = hello?.pids.helloworld ?? Object.values(hello?.pids ?? {})[0];
  const sleepPid = sleep?.pids.sleep ?? Object.values(sleep?.pids ?? {})[0];
  if (!helloPid || !sleepPid)
    throw new Error(
      `${c1.name}: no running helloworld-v1 or sleep pod (real pods: ${pods.map((p) => p.pod).join(', ')}); did \`meshfed up --lab\` run?`,
    );
  const svc = await k(c1.context, [
    '-n',
    'helloworld',
    'get',
    'svc',
    'helloworld',
    '-o',
    'jsonpath={.spec.clusterIP}',
  ]);
  const clusterIp = svc.stdout.trim();
  if (svc.code !== 0 || !clusterIp)
    throw new Error(`the helloworld Service's ClusterIP: ${svc.stderr.trim()}`);

  // Route by header: subsets in both clusters (cluster-2's east-west gateway needs v2's SNI cluster), the route in cluster-1.
  const dr = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'DestinationRule',
    metadata: { name: NAME, namespace: 'helloworld' },
    spec: {
      host: HOST,
      subsets: ['v1', 'v2'].map((v) => ({ name: v, labels: { version: v } })),
    },
  };
  const vs = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: NAME, namespace: 'helloworld' },
    spec: {
      hosts: [HOST],
      http: [
        ...['v1', 'v2'].map((v) => ({
          match: [{ headers: { [HEADER]: { exact: v } } }],
          route: [{ destination: { host: HOST, subset: v } }],
        })),
        { route: [{ destination: { host: HOST } }] },
      ],
    },
  };
  for (const [context, items] of [
    [c2.context, [dr]],
    [c1.context, [dr, vs]],
  ] as const) {
    routed.push({ context, kinds: items.map((o) => o.kind.toLowerCase()) });
    const r = await k(
      context,
      ['apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items }),
    );
    if (r.code !== 0) throw new Error(`applying the bench's routing in ${context}: ${r.stderr.trim()}`);
  }
  const via = (v: string, path = '/hello') => [
    '--url',
    `http://${clusterIp}:5000${path}`,
    '--host',
    'helloworld.helloworld:5000',
    '--header',
    `${HEADER}: ${v}`,
  ];
  const t = performance.now();
  await waitFor(
    'the routing by header (v1 → local, v2 → cross-cluster, 8 requests each)',
    120_000,
    async () => {
      const [a, b] = [
        await load(sleepPid, [...via('v1'), '--count', '8'], 60_000),
        await load(sleepPid, [...via('v2'), '--count', '8'], 60_000),
      ];
      if (a.versions.v1 === 8 && b.versions.v2 === 8) return true;
      throw new Error(`v1 header: ${describe(a)}; v2 header: ${describe(b)}`);
    },
  );
  const settled = (performance.now() - t) / 1000;
  const direct = await load(helloPid, ['--url', 'http://127.0.0.1:5000/hello', '--count', '3'], 30_000);
  if (direct.versions.v1 !== 3) throw new Error(`helloworld-v1 on its loopback: ${describe(direct)}`);

  // Who served: the requests each helloworld's sidecar took in (its inbound|5000|| cluster), v1's and v2's.
  const hello2 = (status.clusters.find((c) => c.name === c2.name)!.realPods ?? []).find((p) =>
    p.pod.startsWith('helloworld/helloworld-v2-'),
  );
  const hello2Pid = hello2?.pids.helloworld ?? Object.values(hello2?.pids ?? {})[0];
  if (!hello2Pid) throw new Error(`${c2.name}: no running helloworld-v2 pod`);
  const served = async () => ({ v1: await inbound(helloPid), v2: await inbound(hello2Pid) });

  // The rows.
  const proxies = proxiesOf(status, c1.name);
  const before = memory(proxies);
  const run = [
    '--seconds',
    String(seconds),
    '--warmup',
    String(warmup),
    '--concurrency',
    String(concurrency),
  ];
  const budget = (warmup + seconds) * 1000 + 120_000;
  const rows: Row[] = [];
  for (const path of paths)
    for (const [name, want, pid, args] of [
      ['direct', 'v1', helloPid, ['--url', `http://127.0.0.1:5000${path}`]],
      ['local', 'v1', sleepPid, via('v1', path)],
      ['cross-cluster', 'v2', sleepPid, via('v2', path)],
    ] as const) {
      console.error(`  ${name} ${path}: ${warmup} s warm-up, ${seconds} s at ${concurrency} connections …`);
      const s0 = await served();
      const r = await load(
        pid,
        [...args, ...run, '--expect', path === '/health' ? 'health' : 'hello'],
        budget,
      );
      const s1 = await served();
      // Envoy drops an inbound host left idle for a while (seen with Istio 1.22), and its counts with it:
      // a count that went down started again from 0 meanwhile.
      const delta = (a: number, b: number) => (b >= a ? b - a : b);
      rows.push({ name, path, want, r, served: { v1: delta(s0.v1, s1.v1), v2: delta(s0.v2, s1.v2) } });
    }
  const after = memory(proxies);

  // Versions: the lab's (lab status), Istio's (the fleet's tag, the lab's build), the Envoy that ran.
  const sleepProxy = proxies.find((p) => p.pod.startsWith('sleep/'));
  const exeVersion = async (pid: number | undefined, args: string[]) => {
    if (!pid) return '?';
    const r = await execFileBounded(`/proc/${pid}/exe`, args, { timeoutMs: 20_000 }).catch(() => undefined);
    return r?.code === 0 ? r.stdout.trim().split('\n').at(-1)!.trim() : '?';
  };
  const envoyVersion = await exeVersion(sleepProxy?.envoy, ['--version']);
  const agentVersion = await exeVersion(sleepProxy?.agent, ['version', '--short']);
  const V = PROFILE_VERSIONS[state.profile];
  const lv = status.versions;

  console.log(
    `meshfed data-plane benchmark (${state.profile} profile, node ${process.version}, ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)}; ${seconds} s per row at ${concurrency} keep-alive connections after ${warmup} s warm-up)`,
  );
  console.log(
    `  Istio ${V.istio} (the fleet's tag; the lab runs pilot-agent and istiod ${agentVersion.replace(/^client version: /, '')}, lab/bin/istio/${LAB_ISTIO_BUILDS[V.istio]}); Envoy ${LAB_ENVOY_BUILDS[V.istio]} (upstream: ${envoyVersion.replace(/^.*version: /, '')})`,
  );
  console.log(
    `  lab status: Kubernetes ${lv.kubernetes}, SPIRE ${lv.spire}, cert-manager ${lv.certManager}, ${lv.registrar}, kwok ${lv.kwok}`,
  );
  console.log(
    `  ${phases.length ? `${phases.join(', ')}; ` : `reused lab ${labDir}; `}routing by header took effect in ${settled.toFixed(1)} s; helloworld ClusterIP ${clusterIp}`,
  );
  console.log('');
  console.log(
    `  ${'row'.padEnd(14)} ${'path'.padEnd(7)} ${'req/s'.padStart(7)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'max ms'.padStart(7)} ${'answers'.padStart(7)} ${'v1'.padStart(6)} ${'v2'.padStart(6)} ${'errors'.padStart(6)} ${'conns'.padStart(5)}  ${'served by v1/v2 sidecar'}`,
  );
  const wrong: string[] = [];
  for (const { name, path, want, r, served: s } of rows) {
    const health = path === '/health';
    const other = want === 'v1' ? 'v2' : 'v1';
    const bad: string[] = [];
    if (r.errors || !r.requests)
      bad.push(`${r.errors} errors of ${r.requests + r.errors} (${r.errorSamples[0]})`);
    if (!health && Object.keys(r.versions).some((v) => v !== want)) bad.push(`answers: ${describe(r)}`);
    // The direct row passes no sidecar; the others must reach the wanted version's sidecar only.
    if (name === 'direct' ? s.v1 || s.v2 : s[other] || s[want] < r.requests)
      bad.push(`sidecars took in v1 ${s.v1}, v2 ${s.v2}`);
    if (r.warmup.errors) bad.push(`warm-up: ${r.warmup.errors} errors`);
    if (bad.length) wrong.push(`${name} ${path}: wanted ${want} only; ${bad.join('; ')}`);
    const conns = `${r.connections}${r.connectionsInWindow ? `+${r.connectionsInWindow}` : ''}`;
    console.log(
      `  ${name.padEnd(14)} ${path.padEnd(7)} ${f0(r.rps).padStart(7)} ${r.p50Ms.toFixed(2).padStart(7)} ${r.p99Ms.toFixed(2).padStart(7)} ${r.maxMs.toFixed(1).padStart(7)} ${String(r.requests).padStart(7)} ${(health ? '-' : String(r.versions.v1 ?? 0)).padStart(6)} ${(health ? '-' : String(r.versions.v2 ?? 0)).padStart(6)} ${String(r.errors).padStart(6)} ${conns.padStart(5)}  ${s.v1}/${s.v2}`,
    );
  }
  console.log('');
  console.log(
    "  direct:        helloworld-v1's netns → 127.0.0.1:5000 (loopback, not captured): the app alone, no Envoy",
  );
  console.log(
    `  local:         sleep's netns → ${clusterIp}:5000 → sleep's sidecar → mTLS → v1's sidecar → app`,
  );
  console.log(
    `  cross-cluster: sleep's netns → ${clusterIp}:5000 → sleep's sidecar → mTLS → ${c2.name}'s east-west gateway → v2's sidecar → app`,
  );
  console.log(
    "  /hello: the app's answer (v1, v2) checked on every request; it computes 1e6 square roots in Python per request",
  );
  console.log(
    "  /health: no computation in the app; the version from the sidecars' counts (served by …, incl. warm-up)",
  );
  console.log(
    '  conns: connections opened (+ of those in the measured window); served by: requests each helloworld',
  );
  console.log(
    "         sidecar took in during the row (its inbound|5000|| cluster's hosts in Envoy's /clusters; a count",
  );
  console.log('         that went down, an idle host dropped and made again, counts from 0)');
  console.log('');
  console.log(
    `  resident memory per proxy in ${c1.name} (VmRSS, MiB; before the first warm-up, after the last row)`,
  );
  console.log(
    `  ${'pod'.padEnd(52)} ${'envoy'.padStart(7)} ${'after'.padStart(7)}  ${'pilot-agent'.padStart(11)} ${'after'.padStart(7)}`,
  );
  for (const p of proxies) {
    const b = before.get(p.pod);
    const a = after.get(p.pod);
    console.log(
      `  ${p.pod.padEnd(52)} ${f1(b?.envoy).padStart(7)} ${f1(a?.envoy).padStart(7)}  ${f1(b?.agent).padStart(11)} ${f1(a?.agent).padStart(7)}`,
    );
  }
  if (wrong.length) {
    console.log('');
    console.log('  !!! ANSWERS NOT AS ROUTED: those rows do not measure what they say !!!');
    for (const w of wrong) console.log(`  !!! ${w}`);
    return 1;
  }
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(`bench:dataplane failed: ${(e as Error).message}`);
  if (labDir && existsSync(join(labDir, 'lab.json')) && parent)
    console.error(`  (the lab in ${labDir} goes down now)`);
} finally {
  await cleanUp();
}
process.exit(code);
