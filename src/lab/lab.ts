/**
 * `meshfed lab`: N real Kubernetes control planes on this machine, shaped like
 * the default fleet, for rehearsing a fleet with no cloud and no Docker.
 *
 * Per cluster (cluster-1 … cluster-N, trust domains as the default fleet's):
 * - kwokctl's binary runtime: real etcd, kube-apiserver,
 *   kube-controller-manager, kube-scheduler; kwok simulates the nodes and
 *   moves pods through kwok's own stages, with the lab's pod delays;
 * - the cluster's real SPIRE server (its trust domain; root from a
 *   cert-manager-shaped CA, as in the SPIRE lab) on 127.77.<block>.<index>;
 * - the real cert-manager controller, and the profile's real registrar
 *   (spire-controller-manager, or the seed's k8s-workload-registrar) against
 *   the cluster's API server and SPIRE server, with the CRDs they serve
 *   (simulated pods; with real pods the node agent runs cert-manager's
 *   controller, webhook and cainjector, SPIRE and the registrar in their pods);
 * and one lab load balancer for all clusters (loadbalancer.ts).
 *
 * Everything lives under one folder: lab.json (the state, which `lab down`
 * and `lab status` read), kubeconfig (contexts named like the clusters), and
 * per cluster its kwok workdir, SPIRE data and controller logs. Every process
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
import type { AgentCluster } from './agents.js';
import { labBinDir, requireLabBinaries } from './binaries.js';
import { BLOCK_MAX, BLOCK_MIN, claimBlock, releaseBlock } from './claims.js';
import {
  crdManifests,
  installCrds,
  LAB_CERT_MANAGER_VERSION,
  LAB_SPIRE_CONTROLLER_MANAGER_VERSION,
  startCertManager,
  startSpireControllerManager,
  startWorkloadRegistrar,
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
import { apiServerAddress, type LbCluster, MAX_LAB_CLUSTERS, type StandIn } from './loadbalancer.js';
import { REAL_REPOSITORIES } from './node/images.js';
import { CLUSTERS_PER_BLOCK } from './node/network.js';
import { cleanLabNodes, type NodeAgentConfig } from './node/run.js';
import { processesUnder } from './procfs.js';
import { LAB_PORTS, LabTrustDomain, labAddress } from './spire.js';
import { DEFAULT_POD_TIMINGS, kwokStagesConfig, type PodTimings } from './stages.js';
import { writeLabFleetFiles } from './upstream.js';

export const LAB_STATE_FILE = 'lab.json';
export const LB_CONFIG_FILE = 'loadbalancer.json';
export const LB_STATUS_FILE = 'loadbalancer-status.json';

/** With real pods: the folder of the load balancer's unix socket doors, which the hubs relay pods through. */
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
   * real: the lab node agent runs the pods of images the lab builds (SPIRE's,
   * the registrar's) from their stored specs, as real processes
   * (src/lab/node/). simulated: kwok simulates every pod; the lab runs its
   * own SPIRE server and registrar beside each cluster. Default: real as
   * root for up to 16 clusters (defaultLabPods), else simulated.
   */
  pods?: LabPods;
  onProgress?: (cluster: string | undefined, message: string) => void;
}

export type LabPods = 'simulated' | 'real';

/**
 * How a lab of `clusters` clusters runs its pods when not told: real where it
 * can (root, at most CLUSTERS_PER_BLOCK clusters), and why not otherwise.
 */
export function defaultLabPods(clusters: number): { pods: LabPods; why?: string } {
  if (process.getuid?.() !== 0)
    return { pods: 'simulated', why: 'not root: real pods need namespaces and cgroups of their own' };
  if (clusters > CLUSTERS_PER_BLOCK)
    return { pods: 'simulated', why: `real pods run at most ${CLUSTERS_PER_BLOCK} clusters` };
  return { pods: 'real' };
}

export interface LabClusterState {
  name: string;
  /** Its context in the lab kubeconfig (= name, as in the default fleet). */
  context: string;
  trustDomain: string;
  index: number;
  /** The cluster's loopback address: its SPIRE server and controllers listen there. */
  address: string;
  apiServer: string;
  /** kubeconfig of this cluster alone (kwokctl's). */
  kubeconfig: string;
  kwokWorkdir: string;
  spireDir: string;
  spireServerSocket: string;
  /** The real SPIRE bundle endpoint (the SPIRE server pod's "federation" port stands for it). */
  bundleEndpoint: string;
  daemons: DaemonRecord[];
  /** With real pods: the node agent's folder (its pods.json, pods' folders and port sockets). */
  agentDir?: string;
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
  /** Absent in labs made before the node agent: simulated. */
  pods?: LabPods;
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
 * The lab's control planes: admission webhooks off with simulated pods (what
 * the installs register has nothing real behind it) and on with real pods
 * (cert-manager's webhook, istiod's injector and validator and
 * spire-controller-manager's webhook run in their pods, reached through the
 * egress below), and volumes provisioned the way a
 * cloud's default StorageClass does (kube-controller-manager's own hostPath
 * provisioner, for testing; kwok's pods never mount them), bound within a
 * second rather than at the binder's default 15 s sync.
 *
 * With `kubeletPki` (kwokctl's pki folder of the cluster, real pods), the API
 * server talks to the nodes' kubelets (the node agent's, which serve `exec`
 * and pass the rest on to kwok) as a hardened cluster's does: it verifies
 * their serving certificates against the cluster CA and presents a client
 * certificate the cluster CA issued (kwokctl's admin certificate, which kwok's
 * own server also serves with). Its `cluster` egress (kubelets, Services and
 * pods for webhooks, the service and pod proxy, aggregated APIs) goes
 * through the node agent's HTTP CONNECT proxy (egressSelectorConfig), as a
 * managed cluster's API server goes through konnectivity.
 */
function kwokControlPlaneConfig(real?: {
  kubeletPki: string;
  egressConfig: string;
  apiServerSans: string[];
}): string {
  const kubelet = real
    ? [
        ['kubelet-certificate-authority', join(real.kubeletPki, 'ca.crt')],
        ['kubelet-client-certificate', join(real.kubeletPki, 'admin.crt')],
        ['kubelet-client-key', join(real.kubeletPki, 'admin.key')],
        ['egress-selector-config-file', real.egressConfig],
        // The API server's default, said aloud: the node agent's egress carries this range into the hub.
        ['service-cluster-ip-range', LAB_SERVICE_CIDR],
      ]
        .map(([k, v]) => `  - key: ${k}\n    value: ${JSON.stringify(v)}\n`)
        .join('')
    : '';
  const options = real?.apiServerSans.length
    ? `options:\n  kubeApiserverCertSANs:\n${real.apiServerSans.map((a) => `  - ${JSON.stringify(a)}\n`).join('')}`
    : '';
  const webhooksOff = real
    ? ''
    : '  - key: disable-admission-plugins\n    value: MutatingAdmissionWebhook,ValidatingAdmissionWebhook\n';
  return `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
${options}componentsPatches:
- name: kube-apiserver
  extraArgs:
${webhooksOff}${kubelet}- name: kube-controller-manager
  extraArgs:
  - key: enable-hostpath-provisioner
    value: "true"
  - key: pvclaimbinder-sync-period
    value: 1s
`;
}

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

/** The SPIRE server pod's ports, stood in for by the real server. */
function spireStandIn(d: LabTrustDomain): StandIn {
  return {
    namespace: SPIRE_NAMESPACE,
    labels: { app: 'spire-server' },
    ports: {
      federation: `${d.address}:${LAB_PORTS.bundleEndpoint}`,
      grpc: `${d.address}:${LAB_PORTS.server}`,
    },
  };
}

/**
 * `kubectl exec` into the cluster's SPIRE server pods reaches the real
 * server: kwok runs the exec'd command on this machine (its ClusterExec, for
 * the spire namespace only) in a folder whose `bin/spire-server` stands for
 * the image's /opt/spire/bin/spire-server (the images' WORKDIR is
 * /opt/spire), pointed at the cluster's real server socket (writeSpireExec).
 * Returns the kwok configuration to pass to kwokctl.
 */
export function spireExecStandIn(clusterDir: string, spireServer: string, socket: string): string {
  const q = JSON.stringify;
  return writeSpireExec(
    clusterDir,
    "the SPIRE server pod's spire-server is this cluster's real one",
    `(args) => [${q(spireServer)}, ...args, '-socketPath', ${q(socket)}]`,
  );
}

/** The lab node agent's program (src/lab/node/agent-main.ts). */
const AGENT_MAIN = fileURLToPath(new URL('./node/agent-main.js', import.meta.url));

/** Starts a cluster's node agent as a lab daemon; ready once its first pass has written pods.json. */
async function startNodeAgent(
  name: string,
  kube: Pick<KubeCluster, 'kubeconfig' | 'ca' | 'kwok'>,
  agentDir: string,
  block: number,
  clusterIndex: number,
  doors: string,
  egressSocket: string,
): Promise<DaemonRecord> {
  mkdirSync(agentDir, { recursive: true });
  const config: NodeAgentConfig = {
    cluster: name,
    kubeconfig: kube.kubeconfig,
    dir: agentDir,
    block,
    clusterIndex,
    ca: kube.ca,
    kwok: kube.kwok,
    loadBalancerDoors: doors,
    egress: { socket: egressSocket, serviceCidr: LAB_SERVICE_CIDR },
  };
  const file = join(agentDir, 'config.json');
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
  const d = startDaemon(
    `${name} node agent`,
    process.execPath,
    [AGENT_MAIN, file],
    join(agentDir, 'agent.log'),
  );
  await waitDaemon(d, async () => existsSync(join(agentDir, 'pods.json')), 60_000);
  return d;
}

/**
 * Writes the exec stand-in `bin/spire-server` (a small CommonJS Node script,
 * whatever the lab folder's package type) whose argv comes from `command`
 * (JavaScript source of `(args) => argv | Promise<argv>`), and returns the
 * kwok ClusterExec that runs it for the spire namespace. kwok's local exec
 * never closes the command's stdin, so what `bundle set` gets on stdin is
 * read up to the end of one JSON document and passed on, closed.
 */
function writeSpireExec(clusterDir: string, what: string, command: string): string {
  const work = join(clusterDir, 'exec');
  mkdirSync(join(work, 'bin'), { recursive: true });
  writeFileSync(join(work, 'package.json'), '{"type": "commonjs"}\n');
  writeFileSync(
    join(work, 'bin', 'spire-server'),
    `#!${process.execPath}
// meshfed lab: ${what}.
const { spawn } = require('node:child_process');
const args = process.argv.slice(2);
const command = ${command};
const run = (input) =>
  Promise.resolve(command(args)).then(([file, ...rest]) => {
    const child = spawn(file, rest, { stdio: [input === undefined ? 'ignore' : 'pipe', 'inherit', 'inherit'] });
    if (input !== undefined) child.stdin.end(input);
    child.on('close', (code) => process.exit(code ?? 1));
  });
if (!(args[0] === 'bundle' && args[1] === 'set' && !args.includes('-path'))) run(undefined);
else {
  let text = '';
  process.stdin.on('data', (d) => {
    text += d;
    try {
      JSON.parse(text);
    } catch {
      return;
    }
    process.stdin.pause();
    run(text);
  });
  process.stdin.on('end', () => run(text));
}
`,
    { mode: 0o755 },
  );
  return stringify({
    apiVersion: 'kwok.x-k8s.io/v1alpha1',
    kind: 'ClusterExec',
    metadata: { name: 'spire-server' },
    spec: { selector: { matchNamespaces: [SPIRE_NAMESPACE] }, execs: [{ local: { workDir: work } }] },
  });
}

/** What the start of every cluster of a lab shares. */
interface ClusterStartContext {
  dir: string;
  block: number;
  /** --pods real: the node agent runs the SPIRE pods; no SPIRE server or registrar of the lab's own. */
  real: boolean;
  nodes: number;
  p: ReturnType<typeof labPrograms>;
  state: LabState;
  save: () => void;
  progress: (cluster: string | undefined, message: string) => void;
  apiServerConfig: string;
  stagesFile: string;
  /** The CRDs every cluster serves (cert-manager's, the registrar's) and the lab's StorageClass. */
  crds: string;
}

/**
 * Starts cluster `index` of a lab (its control plane, its SPIRE server and
 * registrar or its node agent, its cert-manager controller), recording it in
 * the lab's state as it goes, so that `lab down` can stop a half-started one.
 * Returns what the load balancer's process serves for it.
 */
async function startLabCluster(
  ctx: ClusterStartContext,
  index: number,
): Promise<{ lb: LbCluster; agent?: AgentCluster }> {
  const { dir, block, real, p, state, save, progress, apiServerConfig, stagesFile, crds } = ctx;
  const { name, trustDomain } = labClusterName(index);
  const cdir = join(dir, name);
  mkdirSync(join(cdir, 'spire'), { recursive: true });
  const c: LabClusterState = {
    name,
    context: name,
    trustDomain,
    index,
    address: labAddress(block, index),
    apiServer: '',
    kubeconfig: join(cdir, 'kwok', 'kubeconfig'),
    kwokWorkdir: join(cdir, 'kwok'),
    spireDir: join(cdir, 'spire'),
    spireServerSocket: join(cdir, 'spire', 'server.sock'),
    bundleEndpoint: '',
    daemons: [],
  };
  state.clusters.push(c);
  save();
  progress(
    name,
    `control plane: Kubernetes ${p.v.kubernetes} with ${ctx.nodes} kwok nodes${real ? ', real pods for images the lab builds' : ''}`,
  );
  const agentDir = join(cdir, 'agent');
  if (real) c.agentDir = agentDir;
  const domain = real
    ? undefined
    : new LabTrustDomain({
        name,
        trustDomain,
        index,
        block,
        spireVersion: p.v.spire,
        binDir: p.spire,
        dir: c.spireDir,
        agent: false,
        detached: true,
      });
  // With real pods, `kubectl exec` reaches the node agent's kubelets (kubelet.ts), not kwok.
  const execConfig = join(cdir, 'kwok-exec.yaml');
  if (!real)
    writeFileSync(execConfig, spireExecStandIn(cdir, join(p.spire, 'spire-server'), c.spireServerSocket));
  const controlPlaneConfig = real ? join(cdir, 'kwok-control-plane.yaml') : apiServerConfig;
  // With real pods, the API server is named at an address pods of every lab
  // cluster reach (loadbalancer.ts apiServerAddress), which its certificate carries.
  const apiIp = apiServerAddress(block, index);
  const egressSocket = join(cdir, 'egress.sock');
  if (real) {
    const egressConfig = join(cdir, 'egress-selector.yaml');
    writeFileSync(egressConfig, egressSelectorConfig(egressSocket));
    writeFileSync(
      controlPlaneConfig,
      kwokControlPlaneConfig({
        kubeletPki: join(c.kwokWorkdir, 'clusters', name, 'pki'),
        egressConfig,
        apiServerSans: [apiIp],
      }),
    );
  }
  const kube = await startKubeCluster({
    name,
    kubernetesVersion: p.v.kubernetes,
    workdir: c.kwokWorkdir,
    nodes: ctx.nodes,
    configFiles: [controlPlaneConfig, stagesFile, ...(real ? [] : [execConfig])],
    // kwok serves `kubectl logs` of real pods from the files a Logs object names.
    ...(real ? { enableCrds: ['Logs'] } : {}),
    onWait: () => progress(name, 'waiting for another control plane on this machine to finish starting'),
  });
  if (domain) {
    // The server reviews agents' tokens (k8s_psat) with the cluster's
    // kubeconfig, which it reads when it starts: after the control plane.
    domain.opts.k8sPsat = { cluster: name, kubeconfig: kube.kubeconfig };
    progress(name, `SPIRE ${p.v.spire} server of ${trustDomain} on ${c.address}`);
    await domain.start();
    const pid = domain.pids()[0];
    if (pid !== undefined)
      c.daemons.push({
        name: `${name} spire-server`,
        pid,
        program: join(p.spire, 'spire-server'),
        log: join(c.spireDir, 'spire-server.log'),
      });
    c.bundleEndpoint = domain.bundleEndpointUrl;
  }
  save();
  const local = apiServerOf(kube.kubeconfig) ?? '';
  const apiPort = Number(/:(\d+)$/.exec(local)?.[1]);
  c.apiServer = real && apiPort ? `https://${apiIp}:${apiPort}` : local;
  save();
  progress(name, `API server ${c.apiServer} up; CRDs of cert-manager and the registrar`);
  await installCrds(kube.kubectl, kube.kubeconfig, crds);
  const target = {
    name,
    trustDomain,
    kubeconfig: kube.kubeconfig,
    address: c.address,
    spireServerSocket: c.spireServerSocket,
    dir: cdir,
  };
  progress(
    name,
    real
      ? `the node agent (cert-manager ${LAB_CERT_MANAGER_VERSION}, SPIRE and the registrar run in their pods)`
      : `cert-manager ${LAB_CERT_MANAGER_VERSION} controller, ${state.versions.registrar}`,
  );
  // With real pods, cert-manager's controller, webhook and cainjector run in
  // the pods of the release manifest `meshfed up` applies (upstream.ts).
  const started = await Promise.allSettled(
    real
      ? [startNodeAgent(name, kube, agentDir, block, index - 1, loadBalancerDoors(ctx.dir), egressSocket)]
      : [
          startCertManager(p.certManager, target),
          p.seed ? startWorkloadRegistrar(p.spire, target) : startSpireControllerManager(p.scm!, target),
        ],
  );
  for (const s of started) if (s.status === 'fulfilled') c.daemons.push(s.value);
  save();
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  const lb: LbCluster = {
    name,
    kubeconfig: kube.kubeconfig,
    index,
    standIns: domain ? [spireStandIn(domain)] : [],
    ...(real ? { podSockets: join(agentDir, 'ports') } : {}),
    ...(real && apiPort ? { apiServer: { ip: apiIp, port: apiPort, backend: `127.0.0.1:${apiPort}` } } : {}),
  };
  progress(name, 'ready');
  if (real) return { lb };
  // The simulated pods' SPIRE agents, which the load balancer's process runs (agents.ts).
  const agent: AgentCluster = {
    name,
    trustDomain,
    kubeconfig: kube.kubeconfig,
    serverAddress: c.address,
    serverPort: LAB_PORTS.server,
    serverSocket: c.spireServerSocket,
    binDir: p.spire,
    dir: join(cdir, 'agents'),
  };
  return { lb, agent };
}

/**
 * Starts the lab. Idempotent: when the folder holds a running lab of the same
 * shape, returns its state; a different or broken one is an error naming
 * `meshfed lab down`. On failure, whatever was started is stopped again.
 */
export async function labUp(o: LabOptions): Promise<{ state: LabState; reused: boolean }> {
  const dir = resolve(o.dir);
  const progress = o.onProgress ?? (() => {});
  if (!(Number.isInteger(o.clusters) && o.clusters >= 1 && o.clusters <= MAX_LAB_CLUSTERS))
    throw new LabError(`--clusters must be a whole number from 1 to ${MAX_LAB_CLUSTERS}`);
  const existing = readLabState(dir);
  if (existing) {
    const health = labProcesses(existing);
    const same =
      existing.profile === o.profile &&
      existing.clusters.length === o.clusters &&
      (o.pods === undefined || (existing.pods ?? 'simulated') === o.pods);
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
  const chosen = o.pods ? { pods: o.pods } : defaultLabPods(o.clusters);
  if (chosen.why) progress(undefined, `pods simulated (${chosen.why}); SPIRE runs beside each cluster`);
  const real = chosen.pods === 'real';
  if (real && o.clusters > CLUSTERS_PER_BLOCK)
    throw new LabError(
      `--pods real runs at most ${CLUSTERS_PER_BLOCK} clusters (their pod networks share the lab's block)`,
    );
  if (real && process.getuid?.() !== 0)
    throw new LabError(
      '--pods real needs root: pods run in network and mount namespaces and cgroups of their own',
    );
  // Unix socket paths are limited to 107 bytes.
  const longest = [
    join(dir, `cluster-${o.clusters}`, 'spire', 'server.sock'),
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
  const apiServerConfig = join(dir, 'kwok-control-plane.yaml');
  writeFileSync(apiServerConfig, kwokControlPlaneConfig());
  const stagesFile = join(dir, 'kwok-stages.yaml');
  writeFileSync(
    stagesFile,
    kwokStagesConfig(
      join(labBinDir('kwok', KWOK_VERSION), 'stages'),
      o.podTimings ?? DEFAULT_POD_TIMINGS,
      real ? REAL_REPOSITORIES : [],
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
    pods: real ? 'real' : 'simulated',
  };
  const crds = `${crdManifests(join(p.certManager, 'crds'))}---\n${crdManifests(join(p.registrarDir, 'crds'))}---\n${LAB_STORAGE_CLASS}`;
  const standIns: LbCluster[] = [];
  const agents: AgentCluster[] = [];
  // The state is written as it grows, so that `lab down` can clean up a half-started lab.
  const save = () => writeLabState(state);
  try {
    // Every cluster's start runs to its end before a failure is acted on, so
    // that the clean-up below sees everything that was started.
    const ctx: ClusterStartContext = {
      dir,
      block,
      real,
      nodes: o.nodes ?? 2,
      p,
      state,
      save,
      progress,
      apiServerConfig,
      stagesFile,
      crds,
    };
    const starts = await Promise.allSettled(
      Array.from({ length: o.clusters }, async (_, i) => {
        const started = await startLabCluster(ctx, i + 1);
        standIns.push(started.lb);
        if (started.agent) agents.push(started.agent);
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
          clusters: standIns.sort((a, b) => a.index - b.index),
          agents: agents.sort((a, b) => a.name.localeCompare(b.name)),
          ...(real ? { doors: loadBalancerDoors(dir) } : {}),
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
  if (s?.pods === 'real')
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
  spireServer: { healthy: boolean; bundleEndpoint: string };
  processes: ProcessHealth[];
  loadBalancers: Array<{ service: string; address: string; backend: string | null }>;
  /** With real pods: the pods the node agent runs, their addresses and their containers' pids. */
  realPods?: Array<{ pod: string; ip: string | undefined; pids: Record<string, number> }>;
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
      // With real pods the server is the SPIRE server pod's: asked inside its container, through `kubectl exec`.
      const health = c.agentDir
        ? await execFileBounded(
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
          )
        : await execFileBounded(
            join(p.spire, 'spire-server'),
            ['healthcheck', '-socketPath', c.spireServerSocket],
            {
              timeoutMs: 10_000,
            },
          );
      const realPods = c.agentDir ? readRealPods(c.agentDir) : undefined;
      return {
        name: c.name,
        trustDomain: c.trustDomain,
        apiServer: {
          url: c.apiServer,
          ready: ready.code === 0 && ready.stdout.trim() === 'ok',
          detail: (ready.code === 0 ? ready.stdout : ready.stderr).trim().split('\n')[0] ?? '',
        },
        nodes: { ready: readyNodes, total },
        spireServer: { healthy: health.code === 0, bundleEndpoint: c.bundleEndpoint },
        processes: c.daemons.map(processHealth),
        loadBalancers: lb?.clusters[c.name] ?? [],
        ...(realPods ? { realPods } : {}),
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
        c.spireServer.healthy &&
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
