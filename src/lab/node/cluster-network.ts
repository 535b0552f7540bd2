/**
 * The network of one lab cluster as the node agent sees it (agent.ts'
 * NodeNetwork): the hub and its portal, a namespace per node (its "host
 * network", for hostNetwork pods) and per pod, pod addresses, the hub's
 * ClusterIP addresses and the portal's routes. Built from network.ts and
 * portal.ts; nothing here touches the root namespace but unix sockets in the
 * agent's folder.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { NodeNetwork } from './agent.js';
import {
  addHubAddress,
  attachNamespace,
  createHub,
  deleteNamespace,
  hubAddress,
  hubNamespace,
  labNamespaces,
  type Netns,
  nodeAddress,
  PodAddresses,
  removeHubAddress,
} from './network.js';
import { type PortalHandle, type Route, startPortal, writeRouteTable } from './portal.js';

/** Nodes of a cluster with a kubelet API (their addresses .110 to .199 of the hub's /24). */
const MAX_KUBELETS = 90;

export class ClusterNetwork implements NodeNetwork {
  private portal: PortalHandle | undefined;
  private readonly addresses: PodAddresses;
  private readonly nodes = new Map<string, Promise<Netns>>();
  private readonly nodeIndexes = new Map<string, number>();
  private readonly pods = new Map<string, Promise<Netns>>();
  private readonly hubIps = new Set<string>();
  private lastRoutes = '';

  constructor(
    readonly block: number,
    /** 0-based cluster index within the lab (network.ts' n). */
    readonly cluster: number,
    /** The agent's folder: routes file, portal log, port sockets. */
    readonly dir: string,
  ) {
    this.addresses = new PodAddresses(block, cluster);
  }

  async up(): Promise<void> {
    const hub = await createHub(this.block, this.cluster);
    mkdirSync(join(this.dir, 'ports'), { recursive: true });
    const routes = join(this.dir, 'routes.json');
    writeRouteTable(routes, { generation: 0, routes: [] });
    this.portal = await startPortal(hub.path, routes, join(this.dir, 'portal.log'));
  }

  /** A node's namespace: nodes get addresses in the order the agent first names them. */
  node(name: string): Promise<{ netns: string; ip: string }> {
    let ns = this.nodes.get(name);
    if (!ns) {
      // One attach per node, however many callers ask at once (the kubelet and the node's first pods).
      const k = this.nodeIndex(name);
      ns = attachNamespace(this.block, this.cluster, `n${k}`, nodeAddress(this.block, this.cluster, k));
      this.nodes.set(name, ns);
      ns.catch(() => this.nodes.delete(name));
    }
    return ns.then((n) => ({ netns: n.path, ip: n.ip }));
  }

  /** The node's place in the order nodes were first named (its address and kubelet address follow from it). */
  nodeIndex(name: string): number {
    let k = this.nodeIndexes.get(name);
    if (k === undefined) {
      k = this.nodeIndexes.size;
      this.nodeIndexes.set(name, k);
    }
    return k;
  }

  /**
   * Where pods reach a node's kubelet API: a hub address (the node's own
   * address is inside the node's namespace, where nothing of the agent's
   * listens), .110 + k of the hub's /24, above the nodes' .10 + k.
   */
  kubeletAddress(name: string): string {
    const k = this.nodeIndex(name);
    if (k >= MAX_KUBELETS)
      throw new RangeError(`the lab serves kubelet APIs for ${MAX_KUBELETS} nodes a cluster`);
    return hubAddress(this.block, this.cluster).replace(/\.1$/, `.${110 + k}`);
  }

  pod(uid: string): Promise<{ netns: string; ip: string }> {
    let ns = this.pods.get(uid);
    if (!ns) {
      ns = attachNamespace(this.block, this.cluster, `p${short(uid)}`, this.addresses.take(uid));
      this.pods.set(uid, ns);
      ns.catch(() => this.pods.delete(uid));
    }
    return ns.then((n) => ({ netns: n.path, ip: n.ip }));
  }

  async releasePod(uid: string): Promise<void> {
    const pending = this.pods.get(uid);
    if (!pending) return;
    const ns = await pending.catch(() => undefined);
    if (ns) await deleteNamespace(ns.name);
    this.pods.delete(uid);
    this.addresses.release(uid);
  }

  /** Applies the routes when they changed: ClusterIPs they listen on become hub addresses first. */
  async setRoutes(routes: Route[]): Promise<void> {
    const text = JSON.stringify(routes);
    if (text === this.lastRoutes || !this.portal) return;
    const hub = hubAddress(this.block, this.cluster);
    const wanted = new Set(
      routes
        .flatMap((r) => ('tcp' in r.listen ? [r.listen.tcp.split(':')[0]!] : []))
        .filter((ip) => ip !== hub),
    );
    for (const ip of wanted) if (!this.hubIps.has(ip)) await addHubAddress(this.block, this.cluster, ip);
    await this.portal.apply(routes);
    for (const ip of this.hubIps) if (!wanted.has(ip)) await removeHubAddress(this.block, this.cluster, ip);
    this.hubIps.clear();
    for (const ip of wanted) this.hubIps.add(ip);
    this.lastRoutes = text;
  }

  portSocket(ip: string, port: number): string {
    return join(this.dir, 'ports', `${ip}-${port}.sock`);
  }

  /** Stops the portal and deletes every namespace of this cluster (pods and nodes first, the hub last). */
  async down(): Promise<void> {
    await this.portal?.stop();
    const hub = hubNamespace(this.block, this.cluster);
    const mine = (await labNamespaces(this.block)).filter((n) => n.startsWith(`${hub}-`));
    await Promise.all(mine.map(deleteNamespace));
    await deleteNamespace(hub);
    this.nodes.clear();
    this.pods.clear();
  }
}

/** A pod's namespace short name: 8 hex digits of a hash of its UID (attachNamespace checks the form). */
const short = (uid: string): string => createHash('sha256').update(uid).digest('hex').slice(0, 8);
