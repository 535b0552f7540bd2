/**
 * What `up`, `plan`, `status` and `down` share: the fleet, one client per
 * context, and the checks that come before anything is written. Bad input
 * (a fleet file with problems, a kubeconfig without a fleet context, a
 * context whose API server does not answer, no istioctl, an upstream
 * manifest neither cached, downloadable nor in --offline) is a UsageError:
 * exit 2, and no cluster has been written to.
 *
 * `--lab` takes the kubeconfig, the fleet file, the offline manifests and
 * istioctl from a `meshfed lab up` folder (DIR/kubeconfig, DIR/meshfed.yaml,
 * DIR/upstream, the lab's istioctl build).
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { findIstioctl, type Istioctl, IstioctlError } from '../engine/istioctl.js';
import { UpstreamError, UpstreamSource } from '../engine/upstream.js';
import { parseGoDuration } from '../fleet/durations.js';
import type { Fleet } from '../fleet/model.js';
import {
  type ClusterClient,
  clientsFor,
  KubeconfigError,
  kubeconfigPath,
  type Unreachable,
  unreachableOf,
} from '../kube/client.js';
import { LAB_ISTIO_BUILDS, labBinDir } from '../lab/binaries.js';
import { renderCluster } from '../render/index.js';
import { readInputFile } from './files.js';
import { loadFleetArg, parseProfile, reportProblems } from './fleet-arg.js';
import { type CliIO, UsageError } from './io.js';

/** What every command that reaches the clusters takes: the fleet, the kubeconfig or lab, a bound, the output form. */
export const CONNECT_OPTIONS = {
  file: { type: 'string', short: 'f' },
  kubeconfig: { type: 'string' },
  lab: { type: 'boolean', default: false },
  profile: { type: 'string' },
  timeout: { type: 'string', default: '5m' },
  output: { type: 'string', short: 'o', default: 'text' },
} as const;

export const ENGINE_OPTIONS = {
  ...CONNECT_OPTIONS,
  offline: { type: 'string' },
  istioctl: { type: 'string' },
} as const;

const FILE_USAGE = `  -f, --file FILE     the fleet file (default ./meshfed.yaml, else the default fleet)
  --kubeconfig FILE   (default $KUBECONFIG, else ~/.kube/config); each cluster is
                      reached through its fleet context, never the current one`;

/** The usage lines of CONNECT_OPTIONS (but -o, which each command words itself). */
export const CONNECT_USAGE = `${FILE_USAGE}
  --lab               use the lab in $MESHFED_LAB_DIR or .meshfed-lab: its
                      kubeconfig and fleet file
  --timeout D         bound of every wait, a Go duration (default 5m)`;

export const ENGINE_USAGE = `${FILE_USAGE}
  --lab               use the lab in $MESHFED_LAB_DIR or .meshfed-lab: its
                      kubeconfig, fleet file, upstream manifests and istioctl
  --offline DIR       upstream manifests from DIR/<host>/<path> only, no download
  --istioctl PATH     istioctl for Istio's manifests (default $MESHFED_ISTIOCTL,
                      else istioctl on PATH)
  --timeout D         bound of every wait, a Go duration (default 5m)`;

export interface EngineArgs {
  file?: string | undefined;
  kubeconfig?: string | undefined;
  lab?: boolean | undefined;
  profile?: string | undefined;
  offline?: string | undefined;
  istioctl?: string | undefined;
  timeout?: string | undefined;
}

export interface Connected {
  fleet: Fleet;
  fleetLabel: string;
  kubeconfig: string;
  clients: Map<string, ClusterClient>;
  timeoutMs: number;
  labDir?: string;
  /** The API server version of each context. */
  versions: Map<string, string>;
  /** With `tolerateUnreachable`: why a context could not be reached (by context). */
  unreachable: Map<string, Unreachable>;
}

/** -o text|json, else a UsageError. */
export function outputFormat(v: string | undefined): 'text' | 'json' {
  if (v !== 'text' && v !== 'json') throw new UsageError(`-o must be text or json, not "${v}"`);
  return v;
}

/**
 * meshfed's own files live beside the fleet file (or in the lab's folder), in
 * .meshfed/: <fleet>.progress.json (`up`'s progress record),
 * <fleet>.refreshes.json (the federation refreshes meshfed made) and cache/
 * (istioctl's generations).
 */
export function stateDir(io: CliIO, fleetLabel: string, labDir?: string): string {
  const base =
    labDir ??
    (fleetLabel.startsWith('(') || fleetLabel.startsWith('<')
      ? io.cwd
      : dirname(resolve(io.cwd, fleetLabel)));
  return join(base, '.meshfed');
}

export function progressPath(io: CliIO, fleetLabel: string, fleetName: string, labDir?: string): string {
  return join(stateDir(io, fleetLabel, labDir), `${fleetName}.progress.json`);
}

export function labDirOf(io: CliIO): string {
  return resolve(io.cwd, io.env.MESHFED_LAB_DIR ?? '.meshfed-lab');
}

/** Loads the fleet and reaches every context; throws UsageError (exit 2) for anything wrong, before any write. */
export async function connect(
  v: EngineArgs,
  io: CliIO,
  o: { tolerateUnreachable?: boolean } = {},
): Promise<Connected> {
  const timeoutMs = parseGoDuration(v.timeout ?? '5m');
  if (timeoutMs === undefined || timeoutMs <= 0)
    throw new UsageError(`--timeout "${v.timeout}" is not a Go duration like 90s or 5m`);
  let labDir: string | undefined;
  let file = v.file;
  let kubeconfig = v.kubeconfig;
  if (v.lab) {
    labDir = labDirOf(io);
    if (!existsSync(join(labDir, 'lab.json')))
      throw new UsageError(`--lab: no lab in ${labDir}; start one with \`meshfed lab up\``);
    file ??= join(labDir, 'meshfed.yaml');
    kubeconfig ??= join(labDir, 'kubeconfig');
  }
  const src = await loadFleetArg(file, io, parseProfile(v.profile));
  if (reportProblems(src, io))
    throw new UsageError(`${src.label} has problems (above); fix them and run again`);
  const fleet = src.result.fleet!;
  const path = resolve(io.cwd, kubeconfigPath(kubeconfig, io.env));
  let clients: Map<string, ClusterClient>;
  try {
    // Each request is bounded by --timeout too (at most 30 s): the first probe of a silent server included.
    clients = clientsFor(
      path,
      fleet.clusters.map((c) => c.context),
      {
        timeoutMs: Math.min(timeoutMs, 30_000),
        text: readInputFile(path, `kubeconfig ${path}`, 'kubeconfig'),
        // The API servers' discovery (revalidated at each use) and what meshfed's applies made of each object.
        cacheDir: join(io.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'meshfed'),
      },
    );
  } catch (e) {
    if (e instanceof KubeconfigError) throw new UsageError(e.message);
    throw e;
  }
  const versions = new Map<string, string>();
  const unreachable: string[] = [];
  const why = new Map<string, Unreachable>();
  await Promise.all(
    [...clients.values()].map(async (c) => {
      try {
        versions.set(c.context, await c.version());
      } catch (e) {
        const u = unreachableOf(e, c);
        unreachable.push(u.message);
        why.set(c.context, u);
      }
    }),
  );
  if (unreachable.length && !o.tolerateUnreachable)
    throw new UsageError(
      `cannot reach ${unreachable.length === 1 ? 'a cluster' : `${unreachable.length} clusters`}; nothing was written:\n  ${unreachable.sort().join('\n  ')}`,
    );
  return {
    fleet,
    fleetLabel: src.label,
    kubeconfig: path,
    clients,
    timeoutMs,
    versions,
    unreachable: why,
    ...(labDir ? { labDir } : {}),
  };
}

/** istioctl and the upstream manifests, all ready before the first write. */
export async function sources(
  v: EngineArgs,
  c: Connected,
  io: CliIO,
): Promise<{ upstream: UpstreamSource; istioctl: Istioctl }> {
  const offline = v.offline ? resolve(io.cwd, v.offline) : c.labDir ? join(c.labDir, 'upstream') : undefined;
  const upstream = new UpstreamSource({ ...(offline ? { offlineDir: offline } : {}), env: io.env });
  let path = v.istioctl ?? io.env.MESHFED_ISTIOCTL;
  if (!path && c.labDir) {
    const build = LAB_ISTIO_BUILDS[c.fleet.versions.istio];
    if (build) path = join(labBinDir('istio', build), 'istioctl');
  }
  let istioctl: Istioctl;
  try {
    istioctl = await findIstioctl(path ?? 'istioctl', {
      cacheDir: join(io.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'meshfed'),
    });
    const first = renderCluster(c.fleet, c.fleet.clusters[0]!.name);
    await Promise.all(first.phases.flatMap((p) => p.upstream).map((u) => upstream.text(u)));
  } catch (e) {
    if (e instanceof IstioctlError || e instanceof UpstreamError)
      throw new UsageError(`${e.message}; nothing was written`);
    throw e;
  }
  return { upstream, istioctl };
}
