/**
 * `meshfed lab`: N real Kubernetes control planes on this machine, shaped like
 * the default fleet, for rehearsing a fleet with no cloud and no Docker.
 *
 * Per cluster (cluster-1 … cluster-N, trust domains as the default fleet's):
 * - kwokctl's binary runtime: real etcd, kube-apiserver,
 *   kube-controller-manager, kube-scheduler; kwok simulates the nodes and
 *   moves the pods the lab does not run through kwok's own stages, with the
 *   lab's pod delays;
 * - the CRDs of cert-manager and the profile's registrar;
 * - the lab node agent (src/lab/node/), the nodes' kubelet for the pods of
 *   images the lab builds: it runs them as real processes from their stored
 *   specs. Always the identity plane's (cert-manager's controller, webhook
 *   and cainjector, SPIRE's server and agents, the registrar), so what
 *   `meshfed up` renders for them is what runs; with `--pods real` also the
 *   data plane's (istiod, Envoy, the demo apps);
 * and one lab load balancer for all clusters (loadbalancer.ts).
 *
 * Everything lives under one folder: lab.json (the state, which `lab down`
 * and `lab status` read), kubeconfig (contexts named like the clusters), and
 * per cluster its kwok workdir and its node agent's folder. Every process
 * outlives `lab up` and is found again by its record (daemon.ts).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { execFileBounded } from '../federation/transport.js';
import type { Profile } from '../fleet/model.js';
import { PROFILE_VERSIONS } from '../fleet/versions.js';
import { SPIRE_NAMESPACE } from '../render/namespaces.js';
import { labBinDir, requireLabBinaries } from './binaries.js';
import { BLOCK_MAX, BLOCK_MIN, claimBlock, releaseBlock } from './claims.js';
import {
  crdManifests,
  installCrds,
  LAB_CERT_MANAGER_VERSION,
  LAB_SPIRE_CONTROLLER_MANAGER_VERSION,
  waitDaemon,
} from './controllers.js';
import { type DaemonRecord, daemonAlive, startDaemon, stopDaemon } from './daemon.js';
import { labClusterName } from './federation.js';
import {
  apiServerOf,
  deleteKubeCluster,
  type KubeCluster,
  KWOK_VERSION,
  kubeBinaries,
  startKubeCluster,
} from './kube.js';
import { apiServerAddress, type LbCluster } from './loadbalancer.js';
import { machinePrograms, missingPrograms, missingProgramsMessage } from './machine.js';
import { IDENTITY_REPOSITORIES, REAL_REPOSITORIES } from './node/images.js';
import { CLUSTERS_PER_BLOCK } from './node/network.js';
import { cleanLabNodes, type NodeAgentConfig } from './node/run.js';
import { processesUnder } from './procfs.js';
import { DEFAULT_POD_TIMINGS, kwokStagesConfig, type PodTimings } from './stages.js';
import { writeLabFleetFiles } from './upstream.js';

export const LAB_STATE_FILE = 'lab.json';
export const LB_CONFIG_FILE = 'loadbalancer.json';
export const LB_STATUS_FILE = 'loadbalancer-status.json';

/** The folder of the load balancer's unix socket doors, which the hubs relay pods through. */
export const loadBalancerDoors = (labDir: string) => join(labDir, 'lb-doors');

export interface LabOptions {
  dir: string;
  clusters: number;
  profile: Profile;
  /** Simulated nodes per cluster (default 2). */
  nodes?: number;
  podTimings?: PodTimings;
  /**
   * Address block (1–250) of 127.77.<block>.x and the load balancer pools:
   * exactly this one (default: a free one, the folder's usual block first),
   * claimed machine-wide for as long as lab.json records it (claims.ts).
   */
  block?: number;
  /**
   * The pods the lab node agent runs as real processes from their stored
   * specs (src/lab/node/): the identity plane's always (cert-manager, SPIRE,
   * the registrar); with real (the default), also the data plane's (istiod,
   * gateways and sidecars, the demo apps), which simulated leaves to kwok
   * (a lighter lab for many clusters).
   */
  pods?: LabPods;
  onProgress?: (cluster: string | undefined, message: string) => void;
}

export type LabPods = 'simulated' | 'real';

/** The most clusters of a lab: their pod networks share the lab's address block (node/network.ts). */
export const LAB_MAX_CLUSTERS = CLUSTERS_PER_BLOCK;

/** The repositories whose pods the node agents of a lab run (images.ts). */
export const labRepositories = (pods: LabPods): string[] =>
  pods === 'real' ? REAL_REPOSITORIES : IDENTITY_REPOSITORIES;

export interface LabClusterState {
  name: string;
  /** Its context in the lab kubeconfig (= name, as in the default fleet). */
  context: string;
  trustDomain: string;
  index: number;
  apiServer: string;
  /** kubeconfig of this cluster alone (kwokctl's). */
  kubeconfig: string;
  kwokWorkdir: string;
  daemons: DaemonRecord[];
  /** The node agent's folder (its pods.json, pods' folders and port sockets). */
  agentDir: string;
}

export interface LabState {
  version: 1;
  dir: string;
  profile: Profile;
  block: number;
  createdAt: string;
  kubeconfig: string;
  versions: {
    kubernetes: string;
    spire: string;
    certManager: string;
    registrar: string;
    kwok: string;
  };
  clusters: LabClusterState[];
  loadBalancer?: DaemonRecord;
  pods: LabPods;
}

export class LabError extends Error {
  override name = 'LabError';
}

/** The block a lab folder asks for first, from its path, so a lab's addresses usually stay the same across runs. */
export function defaultBlock(dir: string): number {
  let h = 0;
  for (const ch of resolve(dir)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return BLOCK_MIN + (h % (BLOCK_MAX - BLOCK_MIN + 1));
}

export function readLabState(dir: string): LabState | undefined {
  const f = join(dir, LAB_STATE_FILE);
  if (!existsSync(f)) return undefined;
  return JSON.parse(readFileSync(f, 'utf8')) as LabState;
}

function writeLabState(s: LabState): void {
  writeFileSync(join(s.dir, LAB_STATE_FILE), `${JSON.stringify(s, null, 2)}\n`);
}

/**
 * A lab cluster's control plane: admission webhooks on when the lab runs the
 * data plane (cert-manager's webhook, istiod's injector and validator and
 * spire-controller-manager's webhook run in their pods, reached through the
 * egress below) and off when kwok simulates it (istiod's injector would have
 * nothing real behind it); volumes provisioned the way a cloud's default
 * StorageClass does (kube-controller-manager's own hostPath provisioner, for
 * testing; kwok's pods never mount them), bound within a second rather than
 * at the binder's default 15 s sync.
 *
 * The API server talks to the nodes' kubelets (the node agent's, which serve
 * `exec` and pass the rest on to kwok) as a hardened cluster's does: it
 * verifies their serving certificates against the cluster CA (`kubeletPki`,
 * kwokctl's pki folder of the cluster) and presents a client certificate the
 * cluster CA issued (kwokctl's admin certificate, which kwok's own server
 * also serves with). Its `cluster` egress (kubelets, Services and pods for
 * webhooks, the service and pod proxy, aggregated APIs) goes through the node
 * agent's HTTP CONNECT proxy (egressSelectorConfig), as a managed cluster's
 * API server goes through konnectivity.
 */
function kwokControlPlaneConfig(o: {
  kubeletPki: string;
  egressConfig: string;
  apiServerSans: string[];
  webhooks: boolean;
}): string {
  const args = [
    ['kubelet-certificate-authority', join(o.kubeletPki, 'ca.crt')],
    ['kubelet-client-certificate', join(o.kubeletPki, 'admin.crt')],
    ['kubelet-client-key', join(o.kubeletPki, 'admin.key')],
    ['egress-selector-config-file', o.egressConfig],
    // The API server's default, said aloud: the node agent's egress carries this range into the hub.
    ['service-cluster-ip-range', LAB_SERVICE_CIDR],
    ...(o.webhooks
      ? []
      : [['disable-admission-plugins', 'MutatingAdmissionWebhook,ValidatingAdmissionWebhook']]),
  ]
    .map(([k, v]) => `  - key: ${k}\n    value: ${JSON.stringify(v)}\n`)
    .join('');
  const options = o.apiServerSans.length
    ? `options:\n  kubeApiserverCertSANs:\n${o.apiServerSans.map((a) => `  - ${JSON.stringify(a)}\n`).join('')}`
    : '';
  const gc = (name: string) => {
    const [gogc, limit] = CONTROL_PLANE_GC[name]!;
    return `  extraEnvs:\n  - name: GOGC\n    value: "${gogc}"\n  - name: GOMEMLIMIT\n    value: ${limit}\n`;
  };
  return `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
${options}componentsPatches:
- name: kube-apiserver
${gc('kube-apiserver')}  extraArgs:
${args}- name: kube-controller-manager
${gc('kube-controller-manager')}  extraArgs:
  - key: enable-hostpath-provisioner
    value: "true"
  - key: pvclaimbinder-sync-period
    value: 1s
- name: etcd
${gc('etcd')}- name: kube-scheduler
${gc('kube-scheduler')}- name: kwok-controller
${gc('kwok-controller')}`;
}

/**
 * The Go garbage collector's pace for each cluster's control plane (GOGC,
 * and GOMEMLIMIT, past which it collects as often as it must): a heap may
 * grow to five times what is live before a collection, not twice, within a
 * bound. A lab is several clusters on one machine of 2 cores; in a first
 * `up` of 8 clusters the API servers' garbage collection was about a third
 * of their CPU (`/debug/pprof/profile`), and all of it waits on the same
 * cores. A real cluster has its own machines; memory is what this machine
 * has more of (24 GiB, a lab about 1 GiB a cluster).
 */
const CONTROL_PLANE_GC: Record<string, [number, string]> = {
  'kube-apiserver': [400, '900MiB'],
  etcd: [400, '300MiB'],
  'kube-controller-manager': [400, '300MiB'],
  'kube-scheduler': [400, '200MiB'],
  'kwok-controller': [400, '200MiB'],
};

/** The Service range of every lab API server (kube-apiserver's default). */
export const LAB_SERVICE_CIDR = '10.0.0.0/24';

/**
 * The API server's EgressSelectorConfiguration (apiserver.k8s.io/v1beta1,
 * the same in Kubernetes 1.29 and 1.35): egress `cluster` over HTTP CONNECT
 * on the unix socket the node agent serves (src/lab/node/egress.ts); the
 * control plane (etcd, its own loopback) stays direct.
 */
export function egressSelectorConfig(udsName: string): string {
  return `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: ${JSON.stringify(udsName)}
`;
}

const LAB_STORAGE_CLASS = `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: lab-hostpath
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
`;

/** Every program the lab of a profile runs, with the command that builds them when one is missing. */
export function labPrograms(profile: Profile) {
  const v = PROFILE_VERSIONS[profile];
  const seed = v.registrar === 'k8s-workload-registrar';
  const kube = kubeBinaries(v.kubernetes);
  requireLabBinaries('kwok', KWOK_VERSION, ['stages/.done']);
  const spire = requireLabBinaries('spire', v.spire, [
    'spire-server',
    ...(seed ? ['k8s-workload-registrar', 'crds/.done'] : []),
  ]);
  const certManager = requireLabBinaries('cert-manager', LAB_CERT_MANAGER_VERSION, [
    'cert-manager-controller',
    'webhook',
    'cainjector',
    'crds/.done',
  ]);
  const scm = seed
    ? undefined
    : requireLabBinaries('spire-controller-manager', LAB_SPIRE_CONTROLLER_MANAGER_VERSION, [
        'spire-controller-manager',
        'crds/.done',
      ]);
  return { v, seed, kube, spire, certManager, scm, registrarDir: seed ? spire : scm! };
}

/** The lab's kubeconfig: one context per cluster, named like the cluster, from kwokctl's per-cluster files. */
export function mergeKubeconfigs(
  clusters: Array<{ name: string; kubeconfig: string; apiServer?: string }>,
): string {
  type Named = { name: string; [k: string]: unknown };
  const out = {
    apiVersion: 'v1',
    kind: 'Config',
    preferences: {},
    clusters: [] as Named[],
    users: [] as Named[],
    contexts: [] as Named[],
    'current-context': clusters[0]?.name ?? '',
  };
  for (const c of clusters) {
    const k = parse(readFileSync(c.kubeconfig, 'utf8')) as {
      clusters: Array<Named & { cluster: unknown }>;
      users: Array<Named & { user: unknown }>;
      contexts: Array<Named & { context: { cluster: string; user: string } }>;
    };
    const ctx = k.contexts[0];
    const cl = k.clusters.find((x) => x.name === ctx?.context.cluster);
    const user = k.users.find((x) => x.name === ctx?.context.user);
    if (!ctx || !cl || !user) throw new LabError(`${c.kubeconfig}: no context with its cluster and user`);
    out.clusters.push({
      name: c.name,
      cluster: c.apiServer ? { ...(cl.cluster as object), server: c.apiServer } : cl.cluster,
    });
    out.users.push({ name: `${c.name}-admin`, user: user.user });
    out.contexts.push({ name: c.name, context: { cluster: c.name, user: `${c.name}-admin` } });
  }
  return stringify(out);
}

const LB_MAIN = fileURLToPath(new URL('./loadbalancer-main.js', import.meta.url));

/** The lab node agent's program (src/lab/node/agent-main.ts). */
const AGENT_MAIN = fileURLToPath(new URL('./node/agent-main.js', import.meta.url));

/** Starts a cluster's node agent as a lab daemon (ready once its first pass has written pods.json: nodeAgentReady). */
function startNodeAgent(
  name: string,
  kube: Pick<KubeCluster, 'kubeconfig' | 'ca' | 'kwok'>,
  at: { agentDir: string; block: number; clusterIndex: number; doors: string; egressSocket: string },
  pods: LabPods,
): DaemonRecord {
  const { agentDir } = at;
  mkdirSync(agentDir, { recursive: true });
  const config: NodeAgentConfig = {
    cluster: name,
    kubeconfig: kube.kubeconfig,
    dir: agentDir,
    block: at.block,
    clusterIndex: at.clusterIndex,
    ca: kube.ca,
    kwok: kube.kwok,
    loadBalancerDoors: at.doors,
    egress: { socket: at.egressSocket, serviceCidr: LAB_SERVICE_CIDR },
    repositories: labRepositories(pods),
  };
  const file = join(agentDir, 'config.json');
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
  return startDaemon(`${name} node agent`, process.execPath, [AGENT_MAIN, file], join(agentDir, 'agent.log'));
}

/** What the start of every cluster of a lab shares. */
interface ClusterStartContext {
  dir: string;
  block: number;
  pods: LabPods;
  nodes: number;
  p: ReturnType<typeof labPrograms>;
  state: LabState;
  save: () => void;
  progress: (cluster: string | undefined, message: string) => void;
  stagesFile: string;
  /** The CRDs every cluster serves (cert-manager's, the registrar's) and the lab's StorageClass. */
  crds: string;
}

/**
 * Starts cluster `index` of a lab (its control plane, its CRDs, its node
 * agent), recording it in the lab's state as it goes, so that `lab down` can
 * stop a half-started one. Returns what the load balancer's process serves
 * for it.
 */
async function startLabCluster(ctx: ClusterStartContext, index: number): Promise<LbCluster> {
  const { dir, block, pods, p, state, save, progress, stagesFile, crds } = ctx;
  const { name, trustDomain } = labClusterName(index);
  const cdir = join(dir, name);
  mkdirSync(cdir, { recursive: true });
  const agentDir = join(cdir, 'agent');
  const c: LabClusterState = {
    name,
    context: name,
    trustDomain,
    index,
    apiServer: '',
    kubeconfig: join(cdir, 'kwok', 'kubeconfig'),
    kwokWorkdir: join(cdir, 'kwok'),
    daemons: [],
    agentDir,
  };
  state.clusters.push(c);
  save();
  progress(
    name,
    `control plane: Kubernetes ${p.v.kubernetes} with ${ctx.nodes} kwok nodes; real pods for ${pods === 'real' ? 'every image the lab builds' : 'cert-manager, SPIRE and the registrar (kwok simulates the data plane)'}`,
  );
  // The API server is named at an address pods of every lab cluster reach
  // (loadbalancer.ts apiServerAddress), which its certificate carries.
  const apiIp = apiServerAddress(block, index);
  const egressSocket = join(cdir, 'egress.sock');
  const egressConfig = join(cdir, 'egress-selector.yaml');
  writeFileSync(egressConfig, egressSelectorConfig(egressSocket));
  const controlPlaneConfig = join(cdir, 'kwok-control-plane.yaml');
  writeFileSync(
    controlPlaneConfig,
    kwokControlPlaneConfig({
      kubeletPki: join(c.kwokWorkdir, 'clusters', name, 'pki'),
      egressConfig,
      apiServerSans: [apiIp],
      webhooks: pods === 'real',
    }),
  );
  const kube = await startKubeCluster({
    name,
    kubernetesVersion: p.v.kubernetes,
    workdir: c.kwokWorkdir,
    nodes: ctx.nodes,
    configFiles: [controlPlaneConfig, stagesFile],
    // kwok serves `kubectl logs` of real pods from the files a Logs object names.
    enableCrds: ['Logs'],
    onWait: () => progress(name, 'waiting for another control plane on this machine to finish starting'),
  });
  const local = apiServerOf(kube.kubeconfig) ?? '';
  const apiPort = Number(/:(\d+)$/.exec(local)?.[1]);
  c.apiServer = apiPort ? `https://${apiIp}:${apiPort}` : local;
  save();
  progress(name, `API server ${c.apiServer} up; CRDs of cert-manager and the registrar`);
  await installCrds(kube.kubectl, kube.kubeconfig, crds);
  progress(
    name,
    `the node agent (cert-manager ${LAB_CERT_MANAGER_VERSION}, SPIRE ${p.v.spire} and ${state.versions.registrar} run in their pods once \`meshfed up\` applies them)`,
  );
  const agent = startNodeAgent(
    name,
    kube,
    { agentDir, block, clusterIndex: index - 1, doors: loadBalancerDoors(dir), egressSocket },
    pods,
  );
  // Recorded before it is waited for, so that `lab down` stops it whatever happens next.
  c.daemons.push(agent);
  save();
  await waitDaemon(agent, async () => existsSync(join(agentDir, 'pods.json')), 60_000);
  progress(name, 'ready');
  return {
    name,
    kubeconfig: kube.kubeconfig,
    index,
    podSockets: join(agentDir, 'ports'),
    ...(apiPort ? { apiServer: { ip: apiIp, port: apiPort, backend: `127.0.0.1:${apiPort}` } } : {}),
  };
}

/**
 * Starts the lab. Idempotent: when the folder holds a running lab of the same
 * shape, returns its state; a different or broken one is an error naming
 * `meshfed lab down`. On failure, whatever was started is stopped again.
 */
export async function labUp(o: LabOptions): Promise<{ state: LabState; reused: boolean }> {
  const dir = resolve(o.dir);
  const progress = o.onProgress ?? (() => {});
  if (!(Number.isInteger(o.clusters) && o.clusters >= 1 && o.clusters <= LAB_MAX_CLUSTERS))
    throw new LabError(
      `--clusters must be a whole number from 1 to ${LAB_MAX_CLUSTERS} (the clusters' pod networks share the lab's address block)`,
    );
  const existing = readLabState(dir);
  if (existing) {
    const health = labProcesses(existing);
    const same =
      existing.profile === o.profile &&
      existing.clusters.length === o.clusters &&
      (o.pods === undefined || existing.pods === o.pods);
    if (same && health.every((p) => p.alive)) return { state: existing, reused: true };
    const why = same
      ? `some of its processes are gone (${health
          .filter((p) => !p.alive)
          .map((p) => p.name)
          .join(', ')})`
      : `it has ${existing.clusters.length} ${existing.profile} clusters with ${existing.pods ?? 'simulated'} pods`;
    throw new LabError(
      `${dir} already holds a lab, and ${why}: run \`meshfed lab down --dir ${o.dir}\` first`,
    );
  }
  const p = labPrograms(o.profile);
  if (process.getuid?.() !== 0)
    throw new LabError(
      'the lab needs root: its node agents run pods in network and mount namespaces and cgroups of their own (run `sudo meshfed lab up`, or as root in a VM or container)',
    );
  const pods: LabPods = o.pods ?? 'real';
  const missing = missingPrograms(machinePrograms(pods === 'real'), process.env.PATH);
  if (missing.length) throw new LabError(missingProgramsMessage(missing));
  // Unix socket paths are limited to 107 bytes.
  const longest = [
    join(dir, `cluster-${o.clusters}`, 'agent', 'ports', '127.116.250.250-65535.sock'),
    join(loadBalancerDoors(dir), '127.116.250.250-65535.sock'),
  ].sort((a, b) => b.length - a.length)[0]!;
  if (Buffer.byteLength(longest) > 100)
    throw new LabError(`${dir} is too deep for the lab's unix sockets (${longest}): give a shorter --dir`);
  mkdirSync(dir, { recursive: true });
  const block = await claimBlock({
    owner: dir,
    stateFile: join(dir, LAB_STATE_FILE),
    preferred: defaultBlock(dir),
    ...(o.block !== undefined ? { exact: o.block } : {}),
  }).catch((e: unknown) => {
    throw new LabError((e as Error).message);
  });
  const stagesFile = join(dir, 'kwok-stages.yaml');
  writeFileSync(
    stagesFile,
    kwokStagesConfig(
      join(labBinDir('kwok', KWOK_VERSION), 'stages'),
      o.podTimings ?? DEFAULT_POD_TIMINGS,
      labRepositories(pods),
    ),
  );
  const state: LabState = {
    version: 1,
    dir,
    profile: o.profile,
    block,
    createdAt: new Date().toISOString(),
    kubeconfig: join(dir, 'kubeconfig'),
    versions: {
      kubernetes: p.v.kubernetes,
      spire: p.v.spire,
      certManager: LAB_CERT_MANAGER_VERSION,
      registrar: p.seed
        ? `k8s-workload-registrar ${p.v.spire}`
        : `spire-controller-manager ${LAB_SPIRE_CONTROLLER_MANAGER_VERSION}`,
      kwok: KWOK_VERSION,
    },
    clusters: [],
    pods,
  };
  const crds = `${crdManifests(join(p.certManager, 'crds'))}---\n${crdManifests(join(p.registrarDir, 'crds'))}---\n${LAB_STORAGE_CLASS}`;
  const lbClusters: LbCluster[] = [];
  // The state is written as it grows, so that `lab down` can clean up a half-started lab.
  const save = () => writeLabState(state);
  try {
    // Every cluster's start runs to its end before a failure is acted on, so
    // that the clean-up below sees everything that was started.
    const ctx: ClusterStartContext = {
      dir,
      block,
      pods,
      nodes: o.nodes ?? 2,
      p,
      state,
      save,
      progress,
      stagesFile,
      crds,
    };
    const starts = await Promise.allSettled(
      Array.from({ length: o.clusters }, async (_, i) => {
        lbClusters.push(await startLabCluster(ctx, i + 1));
      }),
    );
    for (const s of starts) if (s.status === 'rejected') throw s.reason;
    state.clusters.sort((a, b) => a.index - b.index);
    // A fleet needs two clusters to federate; a one-cluster lab gets no fleet file.
    if (o.clusters >= 2)
      writeLabFleetFiles(dir, {
        clusters: o.clusters,
        profile: o.profile,
        certManagerCrds: join(p.certManager, 'crds'),
        certManagerLabVersion: LAB_CERT_MANAGER_VERSION,
        registrarCrds: join(p.registrarDir, 'crds'),
      });
    writeFileSync(state.kubeconfig, mergeKubeconfigs(state.clusters), { mode: 0o600 });
    writeFileSync(
      join(dir, LB_CONFIG_FILE),
      JSON.stringify(
        {
          block,
          clusters: lbClusters.sort((a, b) => a.index - b.index),
          doors: loadBalancerDoors(dir),
        },
        null,
        2,
      ),
    );
    rmSync(join(dir, LB_STATUS_FILE), { force: true });
    progress(undefined, 'load balancer for Services of type LoadBalancer');
    state.loadBalancer = startDaemon(
      'load balancer',
      process.execPath,
      [LB_MAIN, dir],
      join(dir, 'loadbalancer.log'),
    );
    save();
    await waitDaemon(state.loadBalancer, async () => existsSync(join(dir, LB_STATUS_FILE)), 30_000);
    save();
    return { state, reused: false };
  } catch (e) {
    save();
    progress(undefined, `failed: ${(e as Error).message.split('\n')[0]}; stopping what started`);
    await labDown(dir, { keep: true }).catch(() => {});
    const logs = `the logs stay in ${dir}; \`meshfed lab down --dir ${o.dir}\` removes them`;
    throw e instanceof LabError ? e : new LabError(`lab up failed: ${(e as Error).message}\n${logs}`);
  }
}

export interface ProcessHealth {
  name: string;
  pid: number;
  alive: boolean;
}

const processHealth = (d: DaemonRecord): ProcessHealth => ({
  name: d.name,
  pid: d.pid,
  alive: daemonAlive(d),
});

/** Every recorded process of the lab, alive or not. */
export function labProcesses(s: LabState): ProcessHealth[] {
  const all = [...s.clusters.flatMap((c) => c.daemons), ...(s.loadBalancer ? [s.loadBalancer] : [])];
  return all.map(processHealth);
}

export interface LabDownResult {
  stopped: string[];
  /** Processes found under the folder after the orderly stop, killed. */
  strays: number[];
}

/**
 * Stops everything of the lab in `dir`: the load balancer, the controllers,
 * the SPIRE servers, then each cluster (kwokctl delete); then kills any
 * process still running from the folder, and removes the folder unless `keep`.
 */
export async function labDown(
  dirArg: string,
  o: { keep?: boolean; onProgress?: (cluster: string | undefined, message: string) => void } = {},
): Promise<LabDownResult> {
  const dir = resolve(dirArg);
  const progress = o.onProgress ?? (() => {});
  const s = readLabState(dir);
  const stopped: string[] = [];
  if (s) {
    if (s.loadBalancer) {
      await stopDaemon(s.loadBalancer);
      stopped.push(s.loadBalancer.name);
    }
    await Promise.all(
      s.clusters.map(async (c) => {
        for (const d of [...c.daemons].reverse()) {
          // The node agent stops its pods (each within its grace) before it exits.
          await stopDaemon(d, d.name.endsWith('node agent') ? 60_000 : 5000);
          stopped.push(d.name);
        }
        if (existsSync(c.kubeconfig)) {
          progress(c.name, 'deleting the control plane');
          await deleteKubeCluster(c.name, c.kwokWorkdir, c.kubeconfig).catch((e: unknown) =>
            progress(c.name, `kwokctl delete: ${(e as Error).message}`),
          );
          stopped.push(`${c.name} control plane`);
        }
      }),
    );
  }
  // What a node agent that did not stop cleanly left: pods' processes, network namespaces, cgroups.
  if (s)
    await cleanLabNodes(s.block).catch((e: unknown) =>
      progress(undefined, `clean-up: ${(e as Error).message}`),
    );
  const strays = existsSync(dir) ? processesUnder(dir) : [];
  if (s) await releaseBlock(s.block, dir);
  for (const pid of strays) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  if (!o.keep) rmSync(dir, { recursive: true, force: true });
  else rmSync(join(dir, LAB_STATE_FILE), { force: true });
  return { stopped, strays };
}

export interface LabClusterStatus {
  name: string;
  trustDomain: string;
  apiServer: { url: string; ready: boolean; detail: string };
  nodes: { ready: number; total: number };
  /**
   * The SPIRE server pod's own healthcheck, run in its container: installed
   * false before `meshfed up` has made the pod (which is no fault of the lab's).
   */
  spireServer: { installed: boolean; healthy: boolean; detail: string };
  processes: ProcessHealth[];
  loadBalancers: Array<{ service: string; address: string; backend: string | null }>;
  /** The pods the node agent runs, their addresses and their containers' pids. */
  realPods: Array<{ pod: string; ip: string | undefined; pids: Record<string, number> }>;
}

export interface LabStatus {
  dir: string;
  profile: Profile;
  kubeconfig: string;
  versions: LabState['versions'];
  healthy: boolean;
  loadBalancer: ProcessHealth | undefined;
  clusters: LabClusterStatus[];
}

interface LbStatusFile {
  at: string;
  clusters: Record<string, Array<{ service: string; address: string; backend: string | null }>>;
}

/** The pods a node agent records running (its pods.json); none while it has written none. */
function readRealPods(agentDir: string): NonNullable<LabClusterStatus['realPods']> {
  try {
    const r = JSON.parse(readFileSync(join(agentDir, 'pods.json'), 'utf8')) as {
      pods: Array<{ pod: string; ip?: string; pids: Record<string, number> }>;
    };
    return r.pods.map((x) => ({ pod: x.pod, ip: x.ip, pids: x.pids }));
  } catch {
    return [];
  }
}

export async function labStatus(dirArg: string): Promise<LabStatus | undefined> {
  const dir = resolve(dirArg);
  const s = readLabState(dir);
  if (!s) return undefined;
  const lbFile = join(dir, LB_STATUS_FILE);
  const lb = existsSync(lbFile) ? (JSON.parse(readFileSync(lbFile, 'utf8')) as LbStatusFile) : undefined;
  const p = labPrograms(s.profile);
  const kubectl = join(p.kube.k8s, 'kubectl');
  const clusters = await Promise.all(
    s.clusters.map(async (c): Promise<LabClusterStatus> => {
      const kc = ['--kubeconfig', c.kubeconfig, '--request-timeout=5s'];
      const ready = await execFileBounded(kubectl, [...kc, 'get', '--raw', '/readyz'], { timeoutMs: 10_000 });
      const nodes = await execFileBounded(kubectl, [...kc, 'get', 'nodes', '-o', 'json'], {
        timeoutMs: 10_000,
      });
      let total = 0;
      let readyNodes = 0;
      if (nodes.code === 0) {
        const items = (
          JSON.parse(nodes.stdout) as {
            items: Array<{ status?: { conditions?: Array<{ type: string; status: string }> } }>;
          }
        ).items;
        total = items.length;
        readyNodes = items.filter((n) =>
          n.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True'),
        ).length;
      }
      // The server is the SPIRE server pod's: asked inside its container, through `kubectl exec`.
      const health = await execFileBounded(
        kubectl,
        [
          ...kc,
          'exec',
          '-n',
          SPIRE_NAMESPACE,
          'spire-server-0',
          '-c',
          'spire-server',
          '--',
          'bin/spire-server',
          'healthcheck',
        ],
        { timeoutMs: 10_000 },
      );
      const installed = !/NotFound|not found/.test(health.stderr);
      const realPods = readRealPods(c.agentDir);
      return {
        name: c.name,
        trustDomain: c.trustDomain,
        apiServer: {
          url: c.apiServer,
          ready: ready.code === 0 && ready.stdout.trim() === 'ok',
          detail: (ready.code === 0 ? ready.stdout : ready.stderr).trim().split('\n')[0] ?? '',
        },
        nodes: { ready: readyNodes, total },
        spireServer: {
          installed,
          healthy: health.code === 0,
          detail: (health.code === 0 ? health.stdout : health.stderr).trim().split('\n')[0] ?? '',
        },
        processes: c.daemons.map(processHealth),
        loadBalancers: lb?.clusters[c.name] ?? [],
        realPods,
      };
    }),
  );
  const loadBalancer = s.loadBalancer ? processHealth(s.loadBalancer) : undefined;
  const healthy =
    !!loadBalancer?.alive &&
    clusters.every(
      (c) =>
        c.apiServer.ready &&
        c.nodes.ready === c.nodes.total &&
        c.nodes.total > 0 &&
        (c.spireServer.healthy || !c.spireServer.installed) &&
        c.processes.every((x) => x.alive),
    );
  return {
    dir,
    profile: s.profile,
    kubeconfig: s.kubeconfig,
    versions: s.versions,
    healthy,
    loadBalancer,
    clusters,
  };
}
