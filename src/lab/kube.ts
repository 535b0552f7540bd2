/**
 * Real Kubernetes control planes for the lab: kwokctl's binary runtime runs a
 * real etcd, kube-apiserver, kube-controller-manager and kube-scheduler built
 * by `npm run lab:build` (no downloads), and kwok simulates the nodes and
 * makes pods Running and Ready by its stages. Each cluster lives under its own
 * KWOK_WORKDIR, so nothing touches the user's ~/.kwok or kubeconfig.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { execFileBounded } from '../federation/transport.js';
import { requireLabBinaries } from './binaries.js';
import { withMachineLock } from './claims.js';
import { processesUnder, running } from './procfs.js';

export const KWOK_VERSION = '0.8.0';
export const ETCD_VERSION = '3.5.24';

export interface KubeClusterOptions {
  name: string;
  kubernetesVersion: string;
  /** KWOK_WORKDIR of this cluster (created by kwokctl). */
  workdir: string;
  nodes?: number;
  timeoutMs?: number;
  /** kwokctl configuration files (e.g. the lab's kwok stages, `kwokStagesConfig`). */
  configFiles?: string[];
  /** kwok's own CRDs to serve (kwokctl --enable-crds), e.g. Logs: objects kwok reads its per-pod rules from. */
  enableCrds?: string[];
  /** Called when the creation waits for another one on the machine (claims.ts' lock). */
  onWait?: () => void;
}

export interface KubeCluster {
  name: string;
  kubeconfig: string;
  /** The lab's kubectl, of the cluster's Kubernetes version. */
  kubectl: string;
  /**
   * kwokctl's cluster CA (PEM files; the key is PKCS#1 RSA): it signs the API
   * server's certificate, so it is what pods trust as their service account's
   * ca.crt, and the lab's kubelets have their serving certificates signed by it.
   */
  ca: { cert: string; key: string };
  /**
   * kwok's own kubelet API (its server, on this machine's loopback): the port
   * kwokctl gave it, and kwokctl's admin certificate (issued by the cluster
   * CA, `localhost` and 127.0.0.1 among its names), which it serves with.
   */
  kwok: { port: number; cert: string; key: string };
  /** pids of the cluster's processes (found by their work directory in /proc). */
  pids(): number[];
  stop(): Promise<void>;
}

export function kubeBinaries(kubernetesVersion: string) {
  const k8s = requireLabBinaries('kubernetes', kubernetesVersion, [
    'kube-apiserver',
    'kube-controller-manager',
    'kube-scheduler',
    'kubectl',
  ]);
  const etcd = requireLabBinaries('etcd', ETCD_VERSION, ['etcd']);
  const kwok = requireLabBinaries('kwok', KWOK_VERSION, ['kwok', 'kwokctl']);
  return { k8s, etcd, kwok };
}

async function waitExited(pids: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(running)) {
    if (Date.now() > deadline)
      throw new Error(
        `processes ${pids.filter(running).join(', ')} still run ${timeoutMs} ms after the cluster was deleted`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The port refuses connections (nothing listens there any more). */
export function refuses(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    s.on('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', () => resolve(true));
  });
}

async function waitRefused(u: URL, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await refuses(u.hostname, Number(u.port)))) {
    if (Date.now() > deadline)
      throw new Error(`${u.origin} still accepts connections ${timeoutMs} ms after the cluster was deleted`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The tail of every component log of a kwokctl cluster, for error messages. */
function componentLogs(workdir: string, name: string): string {
  const dir = join(workdir, 'clusters', name, 'logs');
  try {
    return readdirSync(dir)
      .map((f) => {
        const lines = readFileSync(join(dir, f), 'utf8').trimEnd().split('\n');
        return `--- ${f}\n${lines.slice(-4).join('\n')}`;
      })
      .join('\n');
  } catch {
    return '(no component logs)';
  }
}

/**
 * kwokctl picks its free ports by probing, so two creations at once can pick
 * the same port: creations on the whole machine take turns under one
 * machine-wide lock (claims.ts), held until the new cluster's components
 * listen (`--wait`). A failed creation is deleted and retried once.
 */
export async function startKubeCluster(o: KubeClusterOptions): Promise<KubeCluster> {
  return withMachineLock(
    'kwokctl-create',
    () =>
      createKubeCluster(o).catch(async (e: unknown) => {
        await deleteKubeCluster(o.name, o.workdir, join(o.workdir, 'kubeconfig')).catch(() => {});
        return createKubeCluster(o).catch((e2: unknown) => {
          throw new Error(`${(e2 as Error).message} (first attempt: ${(e as Error).message})`);
        });
      }),
    600_000,
    o.onWait,
  );
}

async function createKubeCluster(o: KubeClusterOptions): Promise<KubeCluster> {
  const bin = kubeBinaries(o.kubernetesVersion);
  const kwokctl = join(bin.kwok, 'kwokctl');
  const env = { KWOK_WORKDIR: o.workdir };
  const timeoutMs = o.timeoutMs ?? 120_000;
  const kubeconfig = join(o.workdir, 'kubeconfig');
  const run = async (args: string[]) => {
    const r = await execFileBounded(kwokctl, args, { timeoutMs, env }).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}\n${componentLogs(o.workdir, o.name)}`);
    });
    if (r.code !== 0)
      throw new Error(
        `kwokctl ${args
          .filter((a) => !a.startsWith('-'))
          .slice(0, 2)
          .join(
            ' ',
          )} (${o.name}): ${r.stderr.trim().split('\n').slice(-3).join(' / ')}\n${componentLogs(o.workdir, o.name)}`,
      );
    return r;
  };
  const config = (o.configFiles ?? []).flatMap((f) => ['--config', f]);
  await run([
    ...config,
    'create',
    'cluster',
    ...(o.enableCrds?.length ? ['--enable-crds', o.enableCrds.join(',')] : []),
    '--name',
    o.name,
    '--runtime',
    'binary',
    '--kube-apiserver-binary',
    join(bin.k8s, 'kube-apiserver'),
    '--kube-controller-manager-binary',
    join(bin.k8s, 'kube-controller-manager'),
    '--kube-scheduler-binary',
    join(bin.k8s, 'kube-scheduler'),
    '--etcd-binary',
    join(bin.etcd, 'etcd'),
    '--kwok-controller-binary',
    join(bin.kwok, 'kwok'),
    '--kubeconfig',
    kubeconfig,
    '--wait',
    `${Math.round(timeoutMs / 1000)}s`,
  ]);
  if (o.nodes) await run(['scale', 'node', '--name', o.name, '--replicas', String(o.nodes)]);
  const pki = join(o.workdir, 'clusters', o.name, 'pki');
  return {
    name: o.name,
    kubeconfig,
    kubectl: join(bin.k8s, 'kubectl'),
    ca: { cert: join(pki, 'ca.crt'), key: join(pki, 'ca.key') },
    kwok: {
      port: kwokControllerPort(join(o.workdir, 'clusters', o.name, 'kwok.yaml')),
      cert: join(pki, 'admin.crt'),
      key: join(pki, 'admin.key'),
    },
    pids: () => processesUnder(join(o.workdir, 'clusters', o.name)),
    /** Deletes the cluster; returns once its processes have exited and its API server port refuses connections. */
    stop: () => deleteKubeCluster(o.name, o.workdir, kubeconfig, kwokctl),
  };
}

/** The port kwokctl gave the cluster's kwok server (`options.kwokControllerPort` of its kwok.yaml). */
function kwokControllerPort(file: string): number {
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    const port = (doc.toJS() as { options?: { kwokControllerPort?: unknown } } | null)?.options
      ?.kwokControllerPort;
    if (typeof port === 'number' && Number.isInteger(port) && port > 0) return port;
  }
  throw new Error(`${file} names no kwokControllerPort`);
}

/** The API server URL a kubeconfig names. */
export function apiServerOf(kubeconfig: string): string | undefined {
  return /server: (https:\/\/\S+)/.exec(readFileSync(kubeconfig, 'utf8'))?.[1];
}

/**
 * Deletes a lab cluster; returns once its processes have exited and its API
 * server port refuses connections. `kwokctl` defaults to the lab's build.
 */
export async function deleteKubeCluster(
  name: string,
  workdir: string,
  kubeconfig: string,
  kwokctl = join(requireLabBinaries('kwok', KWOK_VERSION, ['kwokctl']), 'kwokctl'),
): Promise<void> {
  const before = processesUnder(join(workdir, 'clusters', name));
  const server = apiServerOf(kubeconfig);
  const r = await execFileBounded(
    kwokctl,
    ['delete', 'cluster', '--name', name, '--kubeconfig', kubeconfig],
    {
      timeoutMs: 120_000,
      env: { KWOK_WORKDIR: workdir },
    },
  );
  if (r.code !== 0)
    throw new Error(`kwokctl delete cluster (${name}): ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
  await waitExited(before, 30_000);
  // The kernel may hold a listening socket a moment after its process is gone.
  if (server) await waitRefused(new URL(server), 10_000);
}
