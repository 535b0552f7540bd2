/**
 * The real controllers the lab runs beside each cluster, outside the
 * simulated nodes, against that cluster's API server: the cert-manager
 * controller, and the registrar of the profile (spire-controller-manager, or
 * the seed's k8s-workload-registrar) talking to the cluster's real SPIRE
 * server over its admin socket. Also the CRDs they serve, from the same
 * releases (copied by `npm run lab:build`).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { execFileBounded } from '../federation/transport.js';
import { type DaemonRecord, daemonAlive, logTail, startDaemon } from './daemon.js';
import { listensOn } from './procfs.js';

/** cert-manager v1.11 is the newest whose controller builds from the Go module proxy (docs/lab.md). */
export const LAB_CERT_MANAGER_VERSION = '1.11.5';
export const LAB_SPIRE_CONTROLLER_MANAGER_VERSION = '0.7.0';

/** Ports of the controllers, on the cluster's own loopback address. */
export const CONTROLLER_PORTS = {
  certManagerMetrics: 19402,
  scmMetrics: 18082,
  scmHealth: 18083,
  registrarMetrics: 18084,
} as const;

/** Namespaces the registrars leave alone, as meshfed's rendered registrar config does. */
const IGNORED_NAMESPACES = ['kube-system', 'kube-public', 'spire', 'cert-manager'];

export interface ControllerTarget {
  /** Cluster name: names the logs and the registrar's cluster. */
  name: string;
  trustDomain: string;
  kubeconfig: string;
  /** The cluster's own loopback address (its SPIRE domain's). */
  address: string;
  /** The admin socket of the cluster's real SPIRE server. */
  spireServerSocket: string;
  /** Folder for configs and logs. */
  dir: string;
}

/**
 * CRD manifests of a release folder, made appliable: cert-manager ships its
 * CRDs as Helm templates whose labels are template expressions, which are
 * dropped here (the rest is plain YAML).
 */
export function crdManifests(dir: string): string {
  const docs: string[] = [];
  for (const f of readdirSync(dir)
    .filter((n) => n.endsWith('.yaml'))
    .sort()) {
    for (const d of parseAllDocuments(readFileSync(join(dir, f), 'utf8'))) {
      const o = d.toJS() as {
        kind?: string;
        metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
      } | null;
      if (o?.kind !== 'CustomResourceDefinition' || !o.metadata) continue;
      for (const key of ['labels', 'annotations'] as const) {
        const m = o.metadata[key];
        if (!m) continue;
        for (const [k, v] of Object.entries(m)) if (String(v).includes('{{')) delete m[k];
        if (Object.keys(m).length === 0) delete o.metadata[key];
      }
      docs.push(stringify(o, { lineWidth: 0 }));
    }
  }
  return docs.join('---\n');
}

/** Applies the lab's cluster-wide objects with the lab's kubectl (server-side, field manager meshfed-lab) and waits until its CRDs are Established. */
export async function installCrds(
  kubectl: string,
  kubeconfig: string,
  manifests: string,
  timeoutMs = 60_000,
): Promise<string[]> {
  const kc = ['--kubeconfig', kubeconfig];
  const apply = await execFileBounded(
    kubectl,
    [...kc, 'apply', '--server-side', '--field-manager=meshfed-lab', '-o', 'name', '-f', '-'],
    { stdin: manifests, timeoutMs },
  );
  if (apply.code !== 0) throw new Error(`applying the lab's CRDs: ${apply.stderr.trim()}`);
  const names = apply.stdout
    .trim()
    .split('\n')
    .filter((n) => n.startsWith('customresourcedefinition'));
  const wait = await execFileBounded(
    kubectl,
    [...kc, 'wait', '--for=condition=Established', `--timeout=${Math.round(timeoutMs / 1000)}s`, ...names],
    { timeoutMs: timeoutMs + 5000 },
  );
  if (wait.code !== 0) throw new Error(`the lab's CRDs did not become Established: ${wait.stderr.trim()}`);
  return names;
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return r.ok;
  } catch {
    return false;
  }
}

/**
 * Waits until `probe` holds, failing early (with the log's tail) when the
 * process has exited. Probes check that the daemon's own pid listens (procfs'
 * listensOn), not merely that something answers on its address.
 */
export async function waitDaemon(
  d: DaemonRecord,
  probe: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!daemonAlive(d)) throw new Error(`${d.name} exited while starting; its log ends:\n${logTail(d)}`);
    if (await probe()) return;
    if (Date.now() > deadline)
      throw new Error(`${d.name} not ready after ${timeoutMs} ms; its log ends:\n${logTail(d)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const kubeEnv = (t: ControllerTarget): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: t.dir,
  KUBECONFIG: t.kubeconfig,
});

export async function startCertManager(
  binDir: string,
  t: ControllerTarget,
  timeoutMs = 60_000,
): Promise<DaemonRecord> {
  const d = startDaemon(
    `${t.name} cert-manager-controller`,
    join(binDir, 'cert-manager-controller'),
    [
      `--kubeconfig=${t.kubeconfig}`,
      '--leader-elect=false',
      '--cluster-resource-namespace=cert-manager',
      `--metrics-listen-address=${t.address}:${CONTROLLER_PORTS.certManagerMetrics}`,
      '--v=2',
    ],
    join(t.dir, 'cert-manager-controller.log'),
    { env: kubeEnv(t), cwd: t.dir },
  );
  await waitDaemon(
    d,
    async () => listensOn(d.pid, t.address, CONTROLLER_PORTS.certManagerMetrics),
    timeoutMs,
  );
  return d;
}

/** spire-controller-manager's config for the lab: as meshfed renders it, with lab addresses and no leader election. */
export function scmConfig(t: ControllerTarget): string {
  return stringify({
    apiVersion: 'spire.spiffe.io/v1alpha1',
    kind: 'ControllerManagerConfig',
    metrics: { bindAddress: `${t.address}:${CONTROLLER_PORTS.scmMetrics}` },
    health: { healthProbeBindAddress: `${t.address}:${CONTROLLER_PORTS.scmHealth}` },
    leaderElection: { leaderElect: false },
    clusterName: t.name,
    clusterDomain: 'cluster.local',
    trustDomain: t.trustDomain,
    spireServerSocketPath: t.spireServerSocket,
    ignoreNamespaces: IGNORED_NAMESPACES,
  });
}

export async function startSpireControllerManager(
  binDir: string,
  t: ControllerTarget,
  timeoutMs = 60_000,
): Promise<DaemonRecord> {
  const conf = join(t.dir, 'spire-controller-manager.yaml');
  writeFileSync(conf, scmConfig(t));
  const d = startDaemon(
    `${t.name} spire-controller-manager`,
    join(binDir, 'spire-controller-manager'),
    [`--config=${conf}`],
    join(t.dir, 'spire-controller-manager.log'),
    // Its validating webhook needs in-cluster credentials and a Service in front; the lab runs it without.
    { env: { ...kubeEnv(t), ENABLE_WEBHOOKS: 'false' }, cwd: t.dir },
  );
  await waitDaemon(
    d,
    async () =>
      listensOn(d.pid, t.address, CONTROLLER_PORTS.scmHealth) &&
      (await httpOk(`http://${t.address}:${CONTROLLER_PORTS.scmHealth}/readyz`)),
    timeoutMs,
  );
  return d;
}

/** The seed's k8s-workload-registrar (SPIRE 1.5.1) in CRD mode, as meshfed renders it, without its webhook. */
export function registrarConfig(t: ControllerTarget): string {
  const q = JSON.stringify;
  return `log_level = "info"
trust_domain = ${q(t.trustDomain)}
server_socket_path = ${q(t.spireServerSocket)}
cluster = ${q(t.name)}
mode = "crd"
pod_controller = true
identity_template = "ns/{{.Pod.Namespace}}/sa/{{.Pod.ServiceAccount}}"
identity_template_label = "spiffe.io/spire-managed-identity"
disabled_namespaces = ${q(IGNORED_NAMESPACES)}
leader_election = false
webhook_enabled = false
metrics_bind_addr = ${q(`${t.address}:${CONTROLLER_PORTS.registrarMetrics}`)}
`;
}

export async function startWorkloadRegistrar(
  binDir: string,
  t: ControllerTarget,
  timeoutMs = 60_000,
): Promise<DaemonRecord> {
  const conf = join(t.dir, 'k8s-workload-registrar.conf');
  writeFileSync(conf, registrarConfig(t));
  const d = startDaemon(
    `${t.name} k8s-workload-registrar`,
    join(binDir, 'k8s-workload-registrar'),
    ['-config', conf],
    join(t.dir, 'k8s-workload-registrar.log'),
    // In a pod the downward API gives its namespace (where it would keep its leader lock).
    { env: { ...kubeEnv(t), MY_POD_NAMESPACE: 'spire' }, cwd: t.dir },
  );
  await waitDaemon(d, async () => listensOn(d.pid, t.address, CONTROLLER_PORTS.registrarMetrics), timeoutMs);
  return d;
}
