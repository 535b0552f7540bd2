/**
 * The node agent of one lab cluster, put together: its network (the hub,
 * portal and namespaces), the API server reached from pods through the
 * `kubernetes` Service, a kubelet API per node (for SPIRE's k8s workload
 * attestor), pods' volumes and tokens, and the agent's loop. agent-main.ts
 * runs this as a lab daemon; tests run it in their own process.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { labBinDir } from '../binaries.js';
import { KUBELET_PORT_ANNOTATION } from '../stages.js';
import { NodeAgent } from './agent.js';
import { ClusterNetwork } from './cluster-network.js';
import { removeCgroup, signalCgroup } from './container.js';
import { startEgressProxy } from './egress.js';
import { apiServerAuthorizer, issueKubeletCert, type KubeletServer, startKubeletServer } from './kubelet.js';
import { clusterNetwork, deleteLabNetworks } from './network.js';
import { relayUnixToTcp } from './portal.js';
import { PodVolumes, TokenSource } from './volumes.js';

export interface NodeAgentConfig {
  cluster: string;
  /** An admin kubeconfig of the cluster (the agent reads and writes pods, reviews kubelet callers). */
  kubeconfig: string;
  /** The agent's folder. */
  dir: string;
  /** The lab's address block and the cluster's 0-based index in the lab (network.ts). */
  block: number;
  clusterIndex: number;
  /** The cluster CA (PEM files), which signs the kubelets' serving certificates. */
  ca: { cert: string; key: string };
  /** The lab load balancer's doors (NodeAgentOptions.loadBalancerDoors). */
  loadBalancerDoors?: string;
  /**
   * kwok's kubelet API (KubeCluster.kwok): the nodes' kubelets pass on to it
   * what they do not serve (the simulated pods' logs and exec), and the API
   * server reaches them instead of it (KUBELET_PORT_ANNOTATION).
   */
  kwok?: { port: number; cert: string; key: string };
  /**
   * The API server's `cluster` egress (egress.ts): the agent serves an HTTP
   * CONNECT proxy on `socket` (the udsName of the API server's
   * EgressSelectorConfiguration), carrying targets in the cluster's pod
   * network and `serviceCidr` into the hub.
   */
  egress?: { socket: string; serviceCidr: string };
  /** Repositories of the images whose pods it runs (default: every image the lab runs; images.ts). */
  repositories?: string[];
}

export interface RunningNodeAgent {
  agent: NodeAgent;
  network: ClusterNetwork;
  stop(): Promise<void>;
}

/** The kubelet port a real node serves (SPIRE's k8s attestor's default). */
export const KUBELET_PORT = 10250;

/** The lab's top cgroup of a block: labs of different blocks never share one. */
export const labCgroup = (block: number) => `meshfed-lab-${block}`;

/**
 * Removes what a lab block's node agents may have left behind after a crash:
 * the processes of its cgroups, the cgroups, its network namespaces (and
 * the processes in them: portals).
 */
export async function cleanLabNodes(block: number): Promise<void> {
  const top = labCgroup(block);
  for (let i = 0; i < 50 && signalCgroup(top, 'SIGKILL') > 0; i++)
    await new Promise((r) => setTimeout(r, 100));
  removeCgroup(top);
  await deleteLabNetworks(block);
}

export async function runNodeAgent(
  c: NodeAgentConfig,
  log: (line: string) => void,
): Promise<RunningNodeAgent> {
  mkdirSync(c.dir, { recursive: true });
  const kc = new KubeConfig();
  kc.loadFromFile(c.kubeconfig);
  const server = new URL(kc.getCurrentCluster()!.server);
  const apiServerSocket = join(c.dir, 'apiserver.sock');
  const apiRelay = await relayUnixToTcp(apiServerSocket, {
    host: server.hostname,
    port: Number(server.port),
  });
  const network = new ClusterNetwork(c.block, c.clusterIndex, c.dir);
  const tokens = new TokenSource(kc);
  const kubelets = new Kubelets(c, kc, network, log);
  // One PodVolumes a pod: its volumes are set up once and refreshed from then on.
  const podVolumes = new Map<string, PodVolumes>();
  const volumesOf = (pod: V1Pod): PodVolumes => {
    const uid = pod.metadata!.uid!;
    let v = podVolumes.get(uid);
    if (!v) {
      const node = join(c.dir, 'nodes', pod.spec!.nodeName!, 'root');
      // What a node has before any pod: the kubelet's folders hostPath volumes of type Directory expect.
      for (const d of ['var/lib/kubelet/pods', 'var/lib/kubelet/plugins', 'var/lib/kubelet/plugins_registry'])
        mkdirSync(join(node, d), { recursive: true });
      v = new PodVolumes(pod, agent.objectsFor(pod.metadata!.namespace!), tokens, {
        root: node,
        spiffeSockets: join(node, 'run', 'spire', 'agent-sockets'),
        claims: join(c.dir, 'claims'),
      });
      podVolumes.set(uid, v);
    }
    return v;
  };
  const egressDoor = join(c.dir, 'egress-door.sock');
  const egressRanges = c.egress ? [clusterNetwork(c.block, c.clusterIndex), c.egress.serviceCidr] : undefined;
  const agent: NodeAgent = new NodeAgent({
    cluster: c.cluster,
    kubeconfig: c.kubeconfig,
    dir: c.dir,
    labCgroup: labCgroup(c.block),
    network,
    apiServerSocket,
    nodeServices: kubelets,
    ...(c.loadBalancerDoors ? { loadBalancerDoors: c.loadBalancerDoors } : {}),
    ...(egressRanges ? { egressDoor: { socket: egressDoor, allow: egressRanges } } : {}),
    ...(c.repositories ? { repositories: c.repositories } : {}),
    volumes: {
      mounts: async (pod, podDir, mounts) => {
        const binds = await volumesOf(pod).materialize(podDir, mounts);
        return binds.map((m) => ({ hostPath: m.hostPath, path: m.containerPath, readOnly: m.readOnly }));
      },
      // ConfigMaps and Secrets that changed, tokens due for renewal: the kubelet's periodic sync.
      refresh: async (pod) => {
        const r = await podVolumes.get(pod.metadata!.uid!)?.refresh(new Date());
        for (const v of r?.changed ?? [])
          log(`${pod.metadata!.namespace}/${pod.metadata!.name}: volume ${v} updated`);
        for (const e of r?.errors ?? []) log(`${pod.metadata!.namespace}/${pod.metadata!.name}: ${e}`);
      },
      forget: (uid) => podVolumes.delete(uid),
    },
    build: (component, version) => {
      const d = labBinDir(component, version);
      return existsSync(d) ? d : undefined;
    },
    log,
  });
  kubelets.agent = agent;
  // Before the agent's first pass, after which the portal listens on the door (until then a cluster target gets 502).
  const egress =
    c.egress && egressRanges
      ? await startEgressProxy({ socket: c.egress.socket, door: egressDoor, ranges: egressRanges, log })
      : undefined;
  if (egress)
    log(
      `egress: the API server's CONNECT proxy on ${c.egress!.socket}; ${egressRanges!.join(', ')} into the hub`,
    );
  await agent.start();
  return {
    agent,
    network,
    stop: async () => {
      await egress?.close();
      await agent.stop();
      await kubelets.close();
      await apiRelay.close();
      // The pods' cgroups went with them; the lab's folders above them go now.
      removeCgroup(labCgroup(c.block));
    },
  };
}

/**
 * A kubelet API per node, reached from the cluster's namespaces at the
 * node's name: pods' /etc/hosts name the node at its kubelet address (a hub
 * address), which the hub's portal relays to this process.
 */
class Kubelets {
  agent: NodeAgent | undefined;
  private readonly servers = new Map<string, { server: KubeletServer; relay: { close(): Promise<void> } }>();
  private readonly starting = new Set<string>();
  private readonly authorize;

  constructor(
    private readonly c: NodeAgentConfig,
    private readonly kc: KubeConfig,
    private readonly network: ClusterNetwork,
    private readonly log: (line: string) => void,
  ) {
    this.authorize = apiServerAuthorizer(kc);
  }

  /** Routes of the kubelets started so far; starts the ones of new nodes in the background. */
  routes() {
    for (const n of this.agent?.nodeList ?? []) {
      const name = n.metadata!.name!;
      if (!this.servers.has(name) && !this.starting.has(name)) void this.start(name);
    }
    return [...this.servers.keys()].map((name) => ({
      listen: { tcp: `${this.network.kubeletAddress(name)}:${KUBELET_PORT}` },
      to: [{ unix: this.socket(name) }],
    }));
  }

  /** /etc/hosts lines naming each node at its kubelet address (routed once its kubelet serves). */
  hosts(): string[] {
    return (this.agent?.nodeList ?? []).map(
      (n) => `${this.network.kubeletAddress(n.metadata!.name!)}\t${n.metadata!.name}`,
    );
  }

  private socket = (name: string) => join(this.c.dir, `kubelet-${this.network.nodeIndex(name)}.sock`);

  private async start(name: string): Promise<void> {
    this.starting.add(name);
    try {
      await this.network.node(name);
      const caPem = readFileSync(this.c.ca.cert, 'utf8');
      const cert = await issueKubeletCert({
        caCertPem: caPem,
        caKeyPem: readFileSync(this.c.ca.key, 'utf8'),
        nodeName: name,
        // The API server dials the node's Hostname address, which kwok's nodes have as localhost.
        ips: [this.network.kubeletAddress(name), '127.0.0.1'],
        dnsNames: ['localhost'],
      });
      const kwok = this.c.kwok;
      const server = await startKubeletServer({
        host: '127.0.0.1',
        port: 0,
        cert: cert.certPem,
        key: cert.keyPem,
        nodeName: name,
        pods: () => this.agent?.podsOn(name) ?? [],
        authorize: this.authorize,
        clientCa: caPem,
        exec: (t) => this.agent?.execRunner(name, t),
        ...(kwok
          ? {
              upstream: {
                host: '127.0.0.1',
                port: kwok.port,
                ca: caPem,
                cert: readFileSync(kwok.cert, 'utf8'),
                key: readFileSync(kwok.key, 'utf8'),
              },
            }
          : {}),
        log: (line) => this.log(`kubelet ${name}: ${line}`),
      });
      const relay = await relayUnixToTcp(this.socket(name), { host: '127.0.0.1', port: server.port });
      this.servers.set(name, { server, relay });
      this.log(`kubelet ${name}: serving at ${this.network.kubeletAddress(name)}:${KUBELET_PORT}`);
      if (kwok) await this.pointNodeAt(name, server.port);
    } catch (e) {
      this.log(`kubelet ${name}: not started: ${(e as Error).message}`);
    } finally {
      this.starting.delete(name);
    }
  }

  /**
   * Makes the API server reach this node's kubelet here: the port in the
   * node's annotation (which kwok's node stages write as its kubelet
   * endpoint at each heartbeat, stages.ts) and in its status now.
   */
  private async pointNodeAt(name: string, port: number): Promise<void> {
    const api = this.kc.makeApiClient(CoreV1Api);
    await api.patchNode(
      { name, body: { metadata: { annotations: { [KUBELET_PORT_ANNOTATION]: String(port) } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await api.patchNodeStatus(
      { name, body: { status: { daemonEndpoints: { kubeletEndpoint: { Port: port } } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    this.log(`kubelet ${name}: the API server reaches it at localhost:${port}`);
  }

  async close(): Promise<void> {
    for (const { server, relay } of this.servers.values()) {
      await relay.close();
      await server.close();
    }
    this.servers.clear();
  }
}
