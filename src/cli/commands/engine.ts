/** `meshfed up`, `plan`, `status`, `down`: the apply engine on real clusters. */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
// plan, status and down are loaded by their own commands only: a run loads what it runs (plan's text diff, for one).
import { ProgressStore, unfinished } from '../../engine/progress.js';
import type { FleetStatus } from '../../engine/status.js';
import { UpError, up } from '../../engine/up.js';
import {
  connect,
  ENGINE_OPTIONS,
  ENGINE_USAGE,
  outputFormat,
  progressPath,
  sources,
  stateDir,
} from '../engine-args.js';
import { type Command, EXIT_FAILED, EXIT_OK } from '../io.js';
import { progressView } from '../progress.js';
import { table } from '../table.js';

export const upCommand: Command = {
  name: 'up',
  usage: `Usage: meshfed up [-f FILE] [--kubeconfig FILE | --lab] [--dry-run] [--force]
                  [--offline DIR] [--istioctl PATH] [--timeout D] [-o text|json]

Phases, each ending when everything in it is healthy: namespaces and CRDs →
cert-manager → SPIRE (bundle endpoint address discovered) → federation
(bundles bootstrapped through pod exec, relationships) → Istio (istioctl's
manifests, applied by meshfed) → remote secrets → demo apps. Clusters run in
parallel. Server-side apply with field manager "meshfed". Idempotent: run it
again to resume a run that stopped; nothing changes when nothing has to.

${ENGINE_USAGE}
  --dry-run           server-side dry run: what would be created and updated
  --force             take over fields another field manager owns

Examples:
  meshfed up --lab
  meshfed up --dry-run -f fleet.yaml
  meshfed up -f fleet.yaml --kubeconfig ~/.kube/fleet --timeout 10m

Exit 0 when every cluster is up, 1 when a phase failed, 2 for bad input
(nothing written).`,
  async run(argv, io) {
    const { values } = parseArgs({
      args: argv,
      options: {
        ...ENGINE_OPTIONS,
        'dry-run': { type: 'boolean', default: false },
        force: { type: 'boolean', default: false },
      },
    });
    const format = outputFormat(values.output);
    const c = await connect(values, io);
    const src = await sources(values, c, io);
    const store = values['dry-run']
      ? undefined
      : new ProgressStore(progressPath(io, c.fleetLabel, c.fleet.name, c.labDir));
    const stopped = unfinished(store?.previous);
    const view = progressView(
      io,
      c.fleet.clusters.map((x) => x.name),
    );
    if (stopped) io.stderr.write(`resuming: the last run stopped with ${stopped}\n`);
    io.stderr.write(
      `meshfed up ${c.fleet.name}: ${c.fleet.clusters.map((x) => `${x.name} (${c.versions.get(x.context)})`).join(', ')}; istioctl ${src.istioctl.version}${values['dry-run'] ? '; server-side dry run' : ''}\n`,
    );
    const t0 = Date.now();
    try {
      const r = await up({
        fleet: c.fleet,
        clients: c.clients,
        ...src,
        cacheDir: join(stateDir(io, c.fleetLabel, c.labDir), 'cache'),
        timeoutMs: c.timeoutMs,
        dryRun: values['dry-run'],
        force: values.force,
        ...(store ? { progress: store } : {}),
        onEvent: (e) => view.event(e),
      });
      view.close();
      if (format === 'json')
        io.stdout.write(`${JSON.stringify({ ...r, seconds: (Date.now() - t0) / 1000 }, null, 2)}\n`);
      else {
        const rows = [['CLUSTER', 'CREATED', 'UPDATED', 'UNCHANGED', 'PRUNED', 'SECONDS']];
        for (const cl of r.clusters) {
          const sum = (k: 'created' | 'updated' | 'unchanged') =>
            String(cl.phases.reduce((n, p) => n + p.counts[k], 0));
          rows.push([
            cl.cluster,
            sum('created'),
            sum('updated'),
            sum('unchanged'),
            String(cl.pruned.length),
            cl.phases.reduce((n, p) => n + p.seconds, 0).toFixed(1),
          ]);
        }
        const notes = r.clusters.flatMap((cl) => [
          ...cl.phases.flatMap((p) => p.notes.map((n) => `  ${cl.cluster} ${p.phase}: ${n}`)),
          ...(cl.pruned.length
            ? [`  ${cl.cluster} pruned (the fleet no longer has them): ${cl.pruned.join(', ')}`]
            : []),
        ]);
        io.stdout.write(
          `${table(rows)}\n${notes.length ? `${notes.join('\n')}\n` : ''}` +
            `${values['dry-run'] ? 'dry run: nothing was written' : `up in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${r.writes} writes`}` +
            `${
              Object.keys(r.bundleEndpoints).length
                ? `\nbundle endpoints: ${Object.entries(r.bundleEndpoints)
                    .map(([k, a]) => `${k} https://${a}`)
                    .join(', ')}`
                : ''
            }` +
            `${
              Object.keys(r.eastWestGateways).length
                ? `\neast-west gateways: ${Object.entries(r.eastWestGateways)
                    .map(([k, a]) => `${k} ${a}`)
                    .join(', ')}`
                : ''
            }\n`,
        );
      }
      return EXIT_OK;
    } catch (e) {
      view.close();
      if (e instanceof UpError) {
        io.stderr.write(
          `meshfed up failed:\n${e.message
            .split('\n')
            .map((l) => `  ${l}`)
            .join('\n')}\nRun \`meshfed up\` again to resume once the cause is fixed.\n`,
        );
        return EXIT_FAILED;
      }
      throw e;
    }
  },
};

export const planCommand: Command = {
  name: 'plan',
  usage: `Usage: meshfed plan [-f FILE] [--kubeconfig FILE | --lab] [--offline DIR] [--istioctl PATH] [-o text|json]

Per cluster and phase, per object: create, update (a diff of what the API
server would store, from a server-side dry run), unchanged, or prune (created
by meshfed, no longer in the fleet). Secret values are never shown.

${ENGINE_USAGE}

Examples:
  meshfed plan --lab
  meshfed plan -f fleet.yaml --kubeconfig ~/.kube/fleet -o json

Exit 0 when nothing would change, 1 when something would, 2 for bad input.`,
  async run(argv, io) {
    const { values } = parseArgs({ args: argv, options: ENGINE_OPTIONS });
    const format = outputFormat(values.output);
    const c = await connect(values, io);
    const src = await sources(values, c, io);
    const { plan } = await import('../../engine/plan.js');
    const plans = await plan({
      fleet: c.fleet,
      clients: c.clients,
      ...src,
      cacheDir: join(stateDir(io, c.fleetLabel, c.labDir), 'cache'),
    });
    const changes = plans.flatMap((p) => p.items).filter((i) => i.action !== 'unchanged').length;
    if (format === 'json') io.stdout.write(`${JSON.stringify(plans, null, 2)}\n`);
    else {
      for (const p of plans) {
        const n = (a: string) => p.items.filter((i) => i.action === a).length;
        io.stdout.write(
          `${p.cluster}: ${n('create')} to create, ${n('update')} to update, ${n('prune')} to prune, ${n('unchanged')} unchanged\n`,
        );
        for (const i of p.items.filter((x) => x.action !== 'unchanged')) {
          io.stdout.write(
            `  ${i.action.padEnd(7)} ${i.phase.padEnd(14)} ${i.object}${i.note ? ` (${i.note})` : ''}\n`,
          );
          if (i.diff)
            io.stdout.write(
              `${i.diff
                .split('\n')
                .map((l) => `      ${l}`)
                .join('\n')}\n`,
            );
        }
        for (const x of p.pending) io.stdout.write(`  pending ${x}\n`);
      }
    }
    return changes ? EXIT_FAILED : EXIT_OK;
  },
};

function formatStatus(s: FleetStatus): string {
  const rows = [['CLUSTER', 'PHASE', 'STATUS', 'OBJECTS', 'PENDING']];
  for (const c of s.clusters) {
    if (!c.reachable) rows.push([c.cluster, '-', 'Unreachable', '-', c.error ?? '']);
    for (const p of c.phases) rows.push([c.cluster, p.phase, p.status, String(p.objects), p.pending ?? '']);
  }
  const addresses = s.clusters.map(
    (c) =>
      `${c.cluster}: bundle endpoint ${c.bundleEndpoint ? `https://${c.bundleEndpoint}` : '-'}, east-west gateway ${c.eastWestGateway ?? '-'}`,
  );
  return `${table(rows)}\n\n${addresses.join('\n')}\n${s.healthy ? 'healthy' : 'NOT healthy'}\n`;
}

export const statusCommand: Command = {
  name: 'status',
  usage: `Usage: meshfed status [-f FILE] [--kubeconfig FILE | --lab] [-o text|json]

${ENGINE_USAGE}

Examples:
  meshfed status --lab
  meshfed status -f fleet.yaml -o json

Exit 0 when every phase of every cluster is healthy, 1 when not, 2 for bad input.`,
  async run(argv, io) {
    const { values } = parseArgs({ args: argv, options: ENGINE_OPTIONS });
    const format = outputFormat(values.output);
    const c = await connect(values, io);
    const { fleetStatus } = await import('../../engine/status.js');
    const s = await fleetStatus(c.fleet, c.clients);
    io.stdout.write(format === 'json' ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s));
    return s.healthy ? EXIT_OK : EXIT_FAILED;
  },
};

export const downCommand: Command = {
  name: 'down',
  usage: `Usage: meshfed down [-f FILE] [--kubeconfig FILE | --lab] [--timeout D]

Removes exactly what meshfed created for this fleet (its labels, its
created mark and its field manager on the object), phases in reverse order,
and waits until it is gone, namespaces included. What was there before
\`meshfed up\` is left alone.

${ENGINE_USAGE}

Examples:
  meshfed down --lab
  meshfed down -f fleet.yaml --timeout 10m`,
  async run(argv, io) {
    const { values } = parseArgs({ args: argv, options: ENGINE_OPTIONS });
    const c = await connect(values, io);
    const view = progressView(
      io,
      c.fleet.clusters.map((x) => x.name),
    );
    const t0 = Date.now();
    const { down } = await import('../../engine/down.js');
    const r = await down({
      fleet: c.fleet,
      clients: c.clients,
      timeoutMs: c.timeoutMs,
      onEvent: (e) => view.event(e),
    });
    view.close();
    new ProgressStore(progressPath(io, c.fleetLabel, c.fleet.name, c.labDir)).remove();
    io.stdout.write(
      `down in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${r.clusters.map((x) => `${x.cluster} ${x.deleted} removed`).join(', ')}\n`,
    );
    return r.clusters.length ? EXIT_OK : EXIT_FAILED;
  },
};
