/**
 * `meshfed rotate root|spire-ca --cluster NAME`: the rotation engine
 * (src/engine/rotate.ts) with its steps printed as they run. `--dry-run`
 * prints the plan from the fleet file alone and touches no cluster.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  RotationError,
  type RotationEvent,
  type RotationKind,
  rotate,
  rotationPlan,
  spireCanRotate,
} from '../../engine/rotate.js';
import { parseGoDuration } from '../../fleet/durations.js';
import { CONNECT_OPTIONS, CONNECT_USAGE, labDirOf, outputFormat } from '../engine-args.js';
import { loadFleetArg, parseProfile, reportProblems } from '../fleet-arg.js';
import { type CliIO, type Command, EXIT_FAILED, EXIT_OK, UsageError } from '../io.js';
import { terminalSafe } from '../terminal.js';
import { reach } from './federation.js';

const USAGE = `Usage: meshfed rotate root --cluster NAME [--dry-run] [-o text|json]
       meshfed rotate spire-ca --cluster NAME [--dry-run] [-o text|json]
       (each with [-f FILE] [--kubeconfig FILE | --lab] [--timeout D])

Rotates a cluster's certificate authority without an outage: every peer,
and every proxy of the fleet, trusts a new authority before anything is
issued under it, and the old one leaves the trust bundles only when nothing
issued under it is still in use. Each step is verified before the next.

root      cert-manager's root, with a new key: new-root, prepare (SPIRE's
          next intermediate under the new root; the bundle holds both
          roots), propagate (every peer refreshes now; every proxy of the
          fleet trusts the new root), activate, reissue (the old root is
          tainted: every SVID it signed is issued again), istio-ca (Istio's
          cacerts under the new root), retire (the old root revoked; no peer
          and no proxy trusts it any more).
spire-ca  SPIRE's intermediate: prepare, activate, and the wait until every
          proxy of the cluster presents an SVID of the new intermediate (at
          their half-life: SPIRE cannot taint an intermediate under an
          UpstreamAuthority, and no bundle holds one).

A step that fails stops the rotation with the fleet trusting what it
trusted before that step, and says how to go on: running the command again
reads where the rotation stands in the clusters and continues from there.
SPIRE before 1.11 (the seed profile's 1.5.1) cannot prepare, activate,
taint or revoke on demand: --dry-run says what it does on its own instead,
and a run stops before it changes anything.

Options:
  --cluster NAME      the cluster whose authority rotates (required)
  --dry-run           print the steps and what each verifies; touch no cluster
${CONNECT_USAGE.replace('bound of every wait', "bound of each step's wait")}
  -o, --output F      text (a line per step as it runs) or json (the result)

Examples:
  meshfed rotate root --cluster cluster-2 --dry-run --lab
  meshfed rotate root --cluster cluster-2 --lab
  meshfed rotate spire-ca --cluster cluster-1 -f meshfed.yaml --kubeconfig ~/.kube/fleet --timeout 40m

Exit 0 when the rotation completed (or --dry-run printed it), 1 when a step
failed or a cluster could not be reached (nothing further changed), 2 for
bad input (no cluster touched).`;

const OPTIONS = {
  ...CONNECT_OPTIONS,
  cluster: { type: 'string' },
  'dry-run': { type: 'boolean', default: false },
} as const;

const KINDS: readonly RotationKind[] = ['root', 'spire-ca'];

export const rotateCommand: Command = {
  name: 'rotate',
  usage: USAGE,
  async run(argv, io) {
    const [kind, ...rest] = argv;
    if (kind === undefined || kind.startsWith('-'))
      throw new UsageError('name what to rotate first: root or spire-ca');
    if (!KINDS.includes(kind as RotationKind))
      throw new UsageError(`unknown authority "${kind}"; it is root or spire-ca`);
    let values: ReturnType<typeof parse>;
    try {
      values = parse(rest);
    } catch (e) {
      throw new UsageError(`${kind}: ${(e as Error).message}`);
    }
    const format = outputFormat(values.output);
    if (!values.cluster) throw new UsageError(`${kind}: --cluster NAME is required`);
    if (values['dry-run']) return dryRun(kind as RotationKind, values, io, format);
    return run(kind as RotationKind, values, io, format);
  },
};

function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS }).values;
}

type Values = ReturnType<typeof parse>;

/** The fleet file alone (no cluster reached), for the plan and to refuse a wrong --cluster before connecting. */
async function fleetOf(values: Values, io: CliIO) {
  const file = values.file ?? (values.lab ? join(labDirOf(io), 'meshfed.yaml') : undefined);
  const src = await loadFleetArg(file, io, parseProfile(values.profile));
  if (reportProblems(src, io))
    throw new UsageError(`${src.label} has problems (above); fix them and run again`);
  const fleet = src.result.fleet!;
  return { fleet, cluster: clusterOf(fleet, values.cluster!) };
}

async function dryRun(
  kind: RotationKind,
  values: Values,
  io: CliIO,
  format: 'text' | 'json',
): Promise<number> {
  const { fleet, cluster } = await fleetOf(values, io);
  const steps = rotationPlan(fleet, cluster, kind);
  if (format === 'json') {
    io.stdout.write(`${JSON.stringify({ kind, cluster, spire: fleet.versions.spire, steps }, null, 2)}\n`);
    return EXIT_OK;
  }
  const lines = [`rotate ${kind} of ${cluster} (SPIRE ${fleet.versions.spire}), ${steps.length} steps:`];
  steps.forEach((s, i) => {
    lines.push(`  ${i + 1}. ${s.id}: ${s.does}`);
    lines.push(`     verifies: ${s.verifies}`);
    if (s.cannot) lines.push(`     cannot: ${s.cannot}`);
  });
  if (!spireCanRotate(fleet))
    lines.push(
      `SPIRE ${fleet.versions.spire} cannot run this rotation on demand; the "cannot" lines say what it does instead.`,
    );
  io.stdout.write(terminalSafe(`${lines.join('\n')}\n`));
  return EXIT_OK;
}

function clusterOf(fleet: { clusters: Array<{ name: string }> }, name: string): string {
  if (!fleet.clusters.some((c) => c.name === name))
    throw new UsageError(
      `--cluster ${name}: no such cluster in the fleet (it has ${fleet.clusters.map((c) => c.name).join(', ')})`,
    );
  return name;
}

async function run(kind: RotationKind, values: Values, io: CliIO, format: 'text' | 'json'): Promise<number> {
  await fleetOf(values, io);
  const r = await reach(values, io, 'rotate');
  const fleet = r.connected.fleet;
  const cluster = clusterOf(fleet, values.cluster!);
  if (r.out.size) {
    io.stderr.write(
      terminalSafe(
        `cannot rotate: every cluster must be reachable (peers refresh, every proxy is read); nothing was changed:\n${[...r.out].map(([c, why]) => `  ${c}: ${why}`).join('\n')}\n`,
      ),
    );
    return EXIT_FAILED;
  }
  const nameOf = new Map(fleet.clusters.map((x) => [x.context, x.name]));
  const clients = new Map([...r.connected.clients].map(([ctx, cl]) => [nameOf.get(ctx)!, cl]));
  const steps = rotationPlan(fleet, cluster, kind);
  const at = (id: string) => `[${steps.findIndex((s) => s.id === id) + 1}/${steps.length}] ${id}`;
  const say = (line: string) => format === 'text' && io.stderr.write(terminalSafe(`${line}\n`));
  const onEvent = (e: RotationEvent) => {
    if (e.type === 'step') say(`${at(e.id)}: ${e.does}`);
    else if (e.type === 'done') say(`      ok in ${(e.ms / 1000).toFixed(1)} s: ${e.detail}`);
    else if (e.type === 'skipped') say(`${at(e.id)}: skipped: ${e.why}`);
    else say(`      ${e.detail}`);
  };
  const t0 = Date.now();
  try {
    const result = await rotate({
      fleet,
      cluster,
      kind,
      clients,
      members: r.members,
      pairs: r.pairs,
      log: r.record,
      onEvent,
      deadlines: Object.fromEntries(
        steps.map((s) => [
          s.id,
          // The SVIDs of a new intermediate come at their half-life: that wait is never shorter than it.
          kind === 'spire-ca' && s.id === 'reissue'
            ? Math.max(
                r.connected.timeoutMs,
                (parseGoDuration(fleet.ca.spire.svidTTL) ?? 3_600_000) / 2 + 120_000,
              )
            : r.connected.timeoutMs,
        ]),
      ),
    });
    if (format === 'json') io.stdout.write(`${JSON.stringify({ ok: true, ...result }, null, 2)}\n`);
    else
      io.stdout.write(
        terminalSafe(
          `rotated ${kind} of ${cluster} in ${((Date.now() - t0) / 1000).toFixed(1)} s${
            result.propagationMs !== undefined
              ? `; the new root reached every proxy of the fleet ${(result.propagationMs / 1000).toFixed(1)} s after it was served`
              : ''
          }\n`,
        ),
      );
    return EXIT_OK;
  } catch (e) {
    if (!(e instanceof RotationError)) throw e;
    if (format === 'json')
      io.stdout.write(
        `${JSON.stringify({ ok: false, kind, cluster, step: e.step, error: e.message, next: e.next }, null, 2)}\n`,
      );
    io.stderr.write(
      terminalSafe(
        `rotation stopped at ${e.step}: ${e.message}\nThe fleet still trusts what it trusted before this step. To go on: ${e.next}\n`,
      ),
    );
    return EXIT_FAILED;
  }
}
