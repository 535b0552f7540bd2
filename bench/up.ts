/**
 * `meshfed up` on the lab, for N = 2, 3, 4 clusters (a fleet needs two
 * clusters to federate, so there is no N = 1): wall time and meshfed's
 * own CPU time (plus the CPU of the programs it ran: istioctl), beside a
 * sequential baseline that applies the same manifests cluster by cluster with
 * `kubectl apply` and `kubectl rollout status` / `kubectl wait`, as the seed's
 * scripts do. The baseline does less than meshfed: no address discovery, no
 * federation bootstrap, no remote secrets (their tokens die with `down`).
 * Prints numbers; asserts nothing.
 *   npm run bench:up [-- --sizes 2,3,4] [-- --profile seed]
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import { runCli } from '../src/cli/run.js';
import { desiredPhase } from '../src/engine/desired.js';
import { findIstioctl } from '../src/engine/istioctl.js';
import { applyWaves } from '../src/engine/order.js';
import type { UpResult } from '../src/engine/up.js';
import { UpstreamSource } from '../src/engine/upstream.js';
import { execFileBounded } from '../src/federation/transport.js';
import { parseFleet } from '../src/fleet/load.js';
import type { Profile } from '../src/fleet/model.js';
import { PROFILE_VERSIONS } from '../src/fleet/versions.js';
import { LAB_ISTIO_BUILDS, labBinDir } from '../src/lab/binaries.js';
import { labDown, labUp } from '../src/lab/lab.js';
import { DEFAULT_POD_TIMINGS } from '../src/lab/stages.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? def) : def;
};
const profile = arg('profile', 'current') as Profile;
const sizes = arg('sizes', '2,3,4').split(',').map(Number);
const V = PROFILE_VERSIONS[profile];

/** CPU seconds of this process's reaped children (/proc/self/stat cutime + cstime). */
function childCpu(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) / 100;
}
const ownCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function meshfed(
  argv: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    readStdin: async () => '',
    env,
    cwd,
  });
  return { code, out, err };
}

console.log(
  `meshfed up benchmark on the lab (${profile} profile, node ${process.version}, ${V.kubernetes}, pods Ready 1–3 s after start)`,
);
console.log('');
console.log(
  '  N  meshfed up wall  meshfed CPU  istioctl CPU  |  kubectl sequential wall  kubectl CPU  (objects/cluster)',
);
for (const n of sizes) {
  const parent = mkdtempSync(join(tmpdir(), 'mf-bench-up-'));
  const dir = join(parent, 'lab');
  const env = { ...process.env, MESHFED_LAB_DIR: dir, XDG_CACHE_HOME: join(parent, 'cache') };
  try {
    const { state } = await labUp({ dir, clusters: n, profile, podTimings: DEFAULT_POD_TIMINGS });
    const cpu = ownCpu();
    let kids = childCpu();
    let t = performance.now();
    const r = await meshfed(['up', '--lab', '-o', 'json'], env, parent);
    const wall = (performance.now() - t) / 1000;
    const mfCpu = ownCpu() - cpu;
    const istioCpu = childCpu() - kids;
    if (r.code !== 0) throw new Error(`meshfed up failed: ${r.err}`);
    const up = JSON.parse(r.out) as UpResult;
    // The same manifests for the baseline, per cluster and phase.
    const fleet = parseFleet(readFileSync(join(dir, 'meshfed.yaml'), 'utf8'));
    const src = {
      upstream: new UpstreamSource({ offlineDir: join(dir, 'upstream') }),
      istioctl: await findIstioctl(join(labBinDir('istio', LAB_ISTIO_BUILDS[V.istio]!), 'istioctl')),
    };
    const files: Array<{ cluster: string; file: string; kinds: string[]; names: string[] }> = [];
    let objects = 0;
    for (const c of fleet.clusters)
      for (const phase of ['namespaces', 'cert-manager', 'spire', 'federation', 'istio', 'apps'] as const) {
        const want = await desiredPhase(fleet, c.name, phase, { bundleEndpoints: up.bundleEndpoints }, src);
        for (const [i, step] of want.steps.entries()) {
          if (!step.objects.length) continue;
          objects += step.objects.length;
          const file = join(parent, `${c.name}-${phase}-${i}.yaml`);
          mkdirSync(parent, { recursive: true });
          writeFileSync(
            file,
            applyWaves(step.objects)
              .flat()
              .map((o) => stringify(o))
              .join('---\n'),
          );
          files.push({
            cluster: c.name,
            file,
            kinds: step.objects.map((o) => o.kind),
            names: step.objects.map(
              (o) =>
                `${o.kind.toLowerCase()}/${o.metadata.name}${o.metadata.namespace ? ` -n ${o.metadata.namespace}` : ''}`,
            ),
          });
        }
      }
    const down = await meshfed(['down', '--lab'], env, parent);
    if (down.code !== 0) throw new Error(`meshfed down failed: ${down.err}`);
    // Baseline: kubectl, one cluster after the other, apply then wait, as the seed's scripts do.
    const kubectl = join(labBinDir('kubernetes', V.kubernetes), 'kubectl');
    const k = async (context: string, args: string[]) => {
      const x = await execFileBounded(
        kubectl,
        ['--kubeconfig', state.kubeconfig, '--context', context, ...args],
        {
          timeoutMs: 600_000,
        },
      );
      if (x.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${x.stderr}`);
    };
    kids = childCpu();
    t = performance.now();
    for (const f of files) {
      await k(f.cluster, ['apply', '--server-side', '--force-conflicts', '-f', f.file]);
      if (f.kinds.includes('CustomResourceDefinition'))
        await k(f.cluster, [
          'wait',
          '--for=condition=Established',
          '--timeout=300s',
          ...f.names.filter((x) => x.startsWith('customresourcedefinition/')),
        ]);
      for (const name of f.names.filter((x) => /^(deployment|statefulset|daemonset)\//.test(x)))
        await k(f.cluster, ['rollout', 'status', '--timeout=300s', ...name.split(' ')]);
      for (const name of f.names.filter((x) => /^(certificate|clusterissuer|issuer)\//.test(x)))
        await k(f.cluster, ['wait', '--for=condition=Ready', '--timeout=300s', ...name.split(' ')]);
    }
    const kWall = (performance.now() - t) / 1000;
    const kCpu = childCpu() - kids;
    console.log(
      `${String(n).padStart(3)}  ${`${wall.toFixed(1)} s`.padStart(15)}  ${`${mfCpu.toFixed(1)} s`.padStart(11)}  ${`${istioCpu.toFixed(1)} s`.padStart(12)}  |  ${`${kWall.toFixed(1)} s`.padStart(23)}  ${`${kCpu.toFixed(1)} s`.padStart(11)}  (${Math.round(objects / n)})`,
    );
  } finally {
    await labDown(dir).catch(() => {});
    rmSync(parent, { recursive: true, force: true });
  }
}
