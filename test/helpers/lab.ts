/**
 * Lab-dependent tests call `requireLab` with the files they need. Outside CI a
 * missing lab is a skip with the command that builds it; in CI (where
 * MESHFED_REQUIRE_LAB=1) it is a failure, so CI can never pass by skipping.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execFileBounded } from '../../src/federation/transport.js';
import { type ClusterClient, clientsFor } from '../../src/kube/client.js';
import {
  ETCD_VERSION,
  type KubeCluster,
  KWOK_VERSION,
  refuses,
  startKubeCluster,
} from '../../src/lab/kube.js';
import { mergeKubeconfigs } from '../../src/lab/lab.js';

export const REPO_ROOT = new URL('../../../', import.meta.url).pathname;
/** The lab folder whose bin/ the tests use: $MESHFED_LAB_BIN's parent when set (as src/lab/binaries.ts), else .lab. */
export const LAB_DIR = process.env.MESHFED_LAB_BIN
  ? dirname(process.env.MESHFED_LAB_BIN)
  : join(REPO_ROOT, '.lab');

/**
 * Returns undefined when every path (relative to .lab/) exists, else the skip
 * reason. Throws instead when MESHFED_REQUIRE_LAB=1.
 */
export function requireLab(paths: string[], buildCommand: string): string | undefined {
  const missing = paths.filter((p) => !existsSync(join(LAB_DIR, p)));
  if (missing.length === 0) return undefined;
  const reason = `lab not built: missing .lab/${missing.join(', .lab/')}; run \`${buildCommand}\` (CI does)`;
  if (process.env.MESHFED_REQUIRE_LAB === '1') throw new Error(reason);
  return reason;
}

/**
 * requireLab for a `meshfed lab`, which needs root besides its binaries (its
 * node agents run pods in namespaces and cgroups of their own): the skip
 * reason when not root, thrown instead when MESHFED_REQUIRE_LAB=1.
 */
export function requireLabAsRoot(paths: string[], buildCommand: string): string | undefined {
  if (process.getuid?.() !== 0) {
    const reason = 'needs root: `meshfed lab` runs pods in namespaces and cgroups of their own';
    if (process.env.MESHFED_REQUIRE_LAB === '1') throw new Error(reason);
    return reason;
  }
  return requireLab(paths, buildCommand);
}

/** requireLab for a lab control plane of Kubernetes `version` (kwokctl's binary runtime: etcd, the control plane, kwok). */
export function controlPlaneSkip(version: string): string | undefined {
  return requireLab(
    [
      ...['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'].map(
        (b) => `bin/kubernetes/${version}/${b}`,
      ),
      `bin/etcd/${ETCD_VERSION}/etcd`,
      `bin/kwok/${KWOK_VERSION}/kwok`,
      `bin/kwok/${KWOK_VERSION}/kwokctl`,
    ],
    'npm run lab:build',
  );
}

/** Runs a command with stdin closed (openssl s_client, kubectl logs read it), bounded in time: its exit code and output. */
export function runCommand(argv: string[], timeoutMs = 30_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b;
    });
    child.stderr.on('data', (b: Buffer) => {
      out += b;
    });
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

/** A program the lab built: .lab/bin/<component>/<version>/<name>. */
export function labBin(component: string, version: string, name: string): string {
  return join(process.env.MESHFED_LAB_BIN ?? join(LAB_DIR, 'bin'), component, version, name);
}

/** The real kubectl of `kubernetesVersion` against a context of a lab kubeconfig; asserts success, returns stdout. */
export function labKubectl(kubernetesVersion: string, kubeconfig: string) {
  const bin = labBin('kubernetes', kubernetesVersion, 'kubectl');
  return async (context: string, args: string[], stdin?: string): Promise<string> => {
    const r = await execFileBounded(bin, ['--kubeconfig', kubeconfig, '--context', context, ...args], {
      timeoutMs: 150_000,
      ...(stdin ? { stdin } : {}),
    });
    assert.equal(r.code, 0, `kubectl --context ${context} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
}

/** kubectl against a lab cluster (its own kubeconfig); asserts success, returns stdout. */
export function clusterKubectl(cluster: () => KubeCluster) {
  return async (args: string[], stdin?: string): Promise<string> => {
    const c = cluster();
    const r = await execFileBounded(c.kubectl, ['--kubeconfig', c.kubeconfig, ...args], {
      timeoutMs: 90_000,
      ...(stdin ? { stdin } : {}),
    });
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
}

/** The port refuses connections (nothing listens there any more). */
export const refused = refuses;

/** Polls `holds` every 250 ms until it is true; fails after `timeoutMs` naming `what`. */
export async function waitUntil(
  what: string,
  holds: () => Promise<boolean>,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await holds())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Two lab control planes (cluster-1, cluster-2) under `dir`, one kubeconfig
 * naming both, and a client for each; `stop()` deletes them.
 */
export async function startTwoClusters(dir: string, kubernetesVersion: string) {
  const clusters: KubeCluster[] = [];
  const stop = () => Promise.all(clusters.map((c) => c.stop().catch(() => {})));
  try {
    for (const name of ['cluster-1', 'cluster-2'])
      clusters.push(await startKubeCluster({ name, kubernetesVersion, workdir: join(dir, name) }));
  } catch (e) {
    await stop();
    throw e;
  }
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    mergeKubeconfigs(clusters.map((c) => ({ name: c.name, kubeconfig: c.kubeconfig }))),
  );
  const clients = clientsFor(kubeconfig, ['cluster-1', 'cluster-2']);
  return {
    clusters,
    kubeconfig,
    one: clients.get('cluster-1') as ClusterClient,
    two: clients.get('cluster-2') as ClusterClient,
    stop,
  };
}
