import { relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Profile } from '../../fleet/model.js';
import { LabNotBuiltError } from '../../lab/binaries.js';
import { LabError, type LabStatus, labDown, labStatus, labUp } from '../../lab/lab.js';
import { DEFAULT_POD_TIMINGS, type DelayRange, parseDelayRange } from '../../lab/stages.js';
import { type CliIO, type Command, EXIT_FAILED, EXIT_OK, UsageError } from '../io.js';
import { table } from '../table.js';

const USAGE = `Usage: meshfed lab up [--clusters N] [--profile current|seed] [--nodes N] [--pods real|simulated]
                      [--pod-ready-delay MIN[..MAX]] [--pod-stop-delay MIN[..MAX]] [--dir DIR]
       meshfed lab status [--dir DIR] [-o text|json]
       meshfed lab down [--dir DIR] [--keep]

A lab of N real Kubernetes control planes on this machine, for rehearsing a
fleet with no cloud and no Docker: per cluster real etcd, kube-apiserver,
controller-manager and scheduler (kwok simulates nodes and runs pods through
their lifecycle), the cluster's real SPIRE server, the real cert-manager
controller and the profile's real registrar; Services of type LoadBalancer
get addresses that reach what they front when the lab runs it for real (the
SPIRE bundle endpoint). Contexts in DIR/kubeconfig are named like the default
fleet's clusters (cluster-1, cluster-2, …). Needs \`npm run lab:build\` first.

  --clusters N          clusters (default 2, the guide's)
  --profile P           current (default) or seed: the versions of the lab's
                        Kubernetes, SPIRE and registrar
  --nodes N             simulated nodes per cluster (default 2)
  --pods real|simulated real (the default as root): the lab node agent runs
                        the pods of images the lab builds (SPIRE, the
                        registrar) from their specs as real processes, in
                        namespaces and cgroups of their own; simulated (the
                        default otherwise, and beyond 16 clusters): kwok
                        simulates every pod and the lab runs SPIRE beside
                        each cluster
  --pod-ready-delay D   how long a started pod takes to become Ready, a Go
                        duration or a range MIN..MAX (default 1s..3s)
  --pod-stop-delay D    how long a deleted pod takes to go (default: kwok's,
                        within the pod's termination grace period)
  --dir DIR             the lab's folder (default .meshfed-lab, or
                        $MESHFED_LAB_DIR)
  --keep                lab down: keep the folder's logs and data

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
  const rows = [['CLUSTER', 'TRUST DOMAIN', 'API SERVER', 'NODES', 'SPIRE', 'CONTROLLERS', 'LOAD BALANCERS']];
  for (const c of s.clusters)
    rows.push([
      c.name,
      c.trustDomain,
      `${yes(c.apiServer.ready)} ${c.apiServer.url}`,
      `${c.nodes.ready}/${c.nodes.total} Ready`,
      yes(c.spireServer.healthy),
      `${c.processes.filter((p) => p.alive).length}/${c.processes.length} running`,
      c.loadBalancers.length
        ? c.loadBalancers
            .map((l) => `${l.service} ${l.address}${l.backend ? ` → ${l.backend}` : ''}`)
            .join(', ')
        : '-',
    ]);
  lines.push(table(rows));
  for (const c of s.clusters)
    if (c.realPods)
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

export const labCommand: Command = {
  name: 'lab',
  usage: USAGE,
  async run(argv, io) {
    const [verb, ...rest] = argv;
    const { values } = parseArgs({
      args: rest,
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
    try {
      switch (verb) {
        case 'up': {
          const n = Number(values.clusters);
          if (!Number.isInteger(n) || n < 1 || n > 20)
            throw new UsageError(`--clusters must be a whole number from 1 to 20, not "${values.clusters}"`);
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
            `meshfed lab: give up, status or down${verb ? `, not "${verb}"` : ''}\n\n${USAGE}`,
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
