/**
 * The lab's load balancer: what a cloud provider does for Services of type
 * LoadBalancer, for lab clusters on one machine.
 *
 * Every Service of type LoadBalancer in a lab cluster gets an address from
 * the cluster's own loopback pool (127.<100+cluster>.<block>.1…250), written
 * into status.loadBalancer.ingress like a cloud controller does. On that
 * address the lab listens on each Service port and forwards connections to
 * what the Service fronts, when that is real: a Ready pod the lab node agent
 * runs (the SPIRE server pod's bundle endpoint, an Envoy gateway), through
 * the socket of the pod's target port. A Service whose pods kwok only
 * simulates still gets its address, but connections to it are closed at
 * once: nothing real answers there.
 *
 * With `doors` (a folder), each listener also listens on a unix socket
 * there, `<ip>-<port>.sock`: the door the lab's real pods come through from
 * their network namespaces (the node agent's portal listens on the address
 * inside each cluster's hub and relays to the door), so a pod reaches a
 * LoadBalancer address, of its own cluster or another, as on a real network.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, type V1Pod, type V1Service } from '@kubernetes/client-node';
import { Watched } from './watched.js';

export interface LbCluster {
  name: string;
  kubeconfig: string;
  /** 1-based index: the pool is 127.<100+index>.<block>.0/24. */
  index: number;
  /**
   * The folder of the lab node agent's pod port sockets (`<ip>-<port>.sock`,
   * cluster-network.ts): a Service selecting pods the agent runs is
   * forwarded to their Ready ones.
   */
  podSockets: string;
  /**
   * The cluster's API server as its kubeconfig names it to others, at
   * `apiServerAddress` (the API server listens on every local address), and
   * where it really listens: the load balancer opens a door for it, so pods
   * of any lab cluster reach it at that address (Istio's remote secrets).
   */
  apiServer?: { ip: string; port: number; backend: string };
}

export const MAX_LAB_CLUSTERS = 150;

export function lbAddress(block: number, clusterIndex: number, n: number): string {
  if (
    !(
      clusterIndex >= 1 &&
      clusterIndex <= MAX_LAB_CLUSTERS &&
      n >= 1 &&
      n <= 250 &&
      block >= 1 &&
      block <= 250
    )
  )
    throw new Error(`lab load balancer address out of range: cluster ${clusterIndex}, ${n}`);
  return `127.${100 + clusterIndex}.${block}.${n}`;
}

/**
 * The address a lab cluster's API server is named at for pods and peers:
 * 127.<100+cluster>.<block>.254, in the cluster's pool but past the
 * Services' 1…250, so it is routed from pods like a LoadBalancer address.
 */
export function apiServerAddress(block: number, clusterIndex: number): string {
  return lbAddress(block, clusterIndex, 250).replace(/\.250$/, '.254');
}

/** A Service as of one version: an address written to it is known by this until the watch shows its status. */
const versionKey = (svc: V1Service) => `${svc.metadata?.uid}@${svc.metadata?.resourceVersion}`;

function poolIndex(ip: string, block: number, clusterIndex: number): number | undefined {
  const m = /^127\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (!m || Number(m[1]) !== 100 + clusterIndex || Number(m[2]) !== block) return undefined;
  return Number(m[3]);
}

/**
 * Where a Service port goes among real pods: the socket of a Ready real pod's
 * target port (round robin would need per-connection choice; one Ready pod
 * is what the lab's Services have). Undefined while none is Ready.
 */
export function podBackend(dir: string, targetPort: number | string, pods: V1Pod[]): string | undefined {
  for (const p of pods) {
    const ready = p.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True');
    const ip = p.status?.podIP;
    if (!ready || !ip) continue;
    let port = typeof targetPort === 'number' || /^\d+$/.test(targetPort) ? Number(targetPort) : undefined;
    for (const c of p.spec?.containers ?? [])
      for (const cp of c.ports ?? [])
        if (port === undefined && cp.name === targetPort) port = cp.containerPort;
    // Only a pod the node agent runs has a socket; kwok's simulated pods have none.
    const socket = `${dir}/${ip}-${port}.sock`;
    if (port !== undefined && existsSync(socket)) return `unix:${socket}`;
  }
  return undefined;
}

interface Listener {
  cluster: string;
  /** namespace/name of the Service. */
  service: string;
  /** The listener on the address itself; none for a door only (the API server listens there itself). */
  server?: Server;
  /** The unix socket door of the address, with `doors`. */
  door?: Server;
  /** Where connections go now; undefined: nothing real behind it. */
  backend: string | undefined;
}

export interface LbEvent {
  cluster: string;
  message: string;
}

export class LabLoadBalancer {
  private readonly listeners = new Map<string, Listener>();
  private readonly apis = new Map<string, CoreV1Api>();
  /** Each cluster's Services and pods, watched. */
  /** Addresses written to Services, by uid@resourceVersion of the Service they were written to. */
  private readonly written = new Map<string, string>();
  private readonly watched = new Map<string, { services: Watched<V1Service>; pods: Watched<V1Pod> }>();
  private readonly sockets = new Set<Socket>();
  private stopped = false;
  /** Connections forwarded, per listener key. */
  readonly forwarded = new Map<string, number>();

  constructor(
    readonly clusters: LbCluster[],
    readonly block: number,
    private readonly onEvent: (e: LbEvent) => void = () => {},
    /** A folder for each listener's unix socket door (see above). */
    private readonly doors?: string,
    /** Called when a watched Service or pod changes: the caller reconciles again. */
    onChange: () => void = () => {},
  ) {
    if (doors) mkdirSync(doors, { recursive: true });
    for (const c of clusters) {
      const kc = new KubeConfig();
      kc.loadFromFile(c.kubeconfig);
      const api = kc.makeApiClient(CoreV1Api);
      this.apis.set(c.name, api);
      const log = (message: string) => this.onEvent({ cluster: c.name, message: `watch ${message}` });
      this.watched.set(c.name, {
        services: new Watched(kc, '/api/v1/services', () => api.listServiceForAllNamespaces(), onChange, log),
        pods: new Watched(kc, '/api/v1/pods', () => api.listPodForAllNamespaces(), onChange, log),
      });
    }
  }

  /** Starts watching every cluster (each watch lists first, and tries again while it fails). */
  async start(): Promise<void> {
    await Promise.all([...this.watched.values()].flatMap((w) => [w.services.start(), w.pods.start()]));
  }

  /** Reconciles every cluster once; errors are reported per cluster and retried at the next pass. */
  async reconcileAll(): Promise<void> {
    await Promise.all(
      this.clusters.map((c) =>
        this.reconcile(c).catch((e: unknown) =>
          this.onEvent({ cluster: c.name, message: `reconcile failed: ${(e as Error).message}` }),
        ),
      ),
    );
  }

  async reconcile(c: LbCluster): Promise<void> {
    const api = this.apis.get(c.name)!;
    const watched = this.watched.get(c.name)!;
    if (!watched.services.ready || !watched.pods.ready)
      throw new Error('waiting for the first list of Services and pods');
    const services = watched.services.list().filter((s) => s.spec?.type === 'LoadBalancer');
    const used = new Set<number>();
    // An address written to a Service the watch has not shown back yet: the one its status has.
    const written = (svc: V1Service) => this.written.get(versionKey(svc));
    for (const s of services)
      for (const ing of [...(s.status?.loadBalancer?.ingress ?? []), { ip: written(s) }]) {
        const n = ing.ip ? poolIndex(ing.ip, this.block, c.index) : undefined;
        if (n !== undefined) used.add(n);
      }
    const wanted = new Set<string>();
    if (c.apiServer && this.doors) {
      const { ip, port, backend } = c.apiServer;
      wanted.add(`${ip}:${port}`);
      await this.listen(c, 'kube-apiserver', `${ip}:${port}`, ip, port, backend, { doorOnly: true });
    }
    for (const svc of services) {
      const ns = svc.metadata?.namespace ?? 'default';
      const name = svc.metadata?.name ?? '';
      let ip = svc.status?.loadBalancer?.ingress?.find((i) => i.ip)?.ip ?? written(svc);
      if (!ip || poolIndex(ip, this.block, c.index) === undefined) {
        let n = 1;
        while (used.has(n)) n++;
        if (n > 250) {
          this.onEvent({ cluster: c.name, message: `no free address for ${ns}/${name}` });
          continue;
        }
        used.add(n);
        ip = lbAddress(this.block, c.index, n);
        const status = { ...svc.status, loadBalancer: { ingress: [{ ip, ipMode: 'VIP' as const }] } };
        await api.replaceNamespacedServiceStatus({ name, namespace: ns, body: { ...svc, status } });
        this.written.set(versionKey(svc), ip);
        this.onEvent({ cluster: c.name, message: `${ns}/${name}: address ${ip}` });
      }
      const selector = Object.entries(svc.spec?.selector ?? {});
      const pods = selector.length
        ? watched.pods.list(ns).filter((p) => selector.every(([k, v]) => p.metadata?.labels?.[k] === v))
        : [];
      for (const p of svc.spec?.ports ?? []) {
        if ((p.protocol ?? 'TCP') !== 'TCP') continue;
        const key = `${ip}:${p.port}`;
        wanted.add(key);
        await this.listen(
          c,
          `${ns}/${name}`,
          key,
          ip,
          p.port,
          podBackend(c.podSockets, p.targetPort ?? p.port, pods),
        );
      }
    }
    // Addresses of Services deleted (or no longer LoadBalancers) of this cluster are released.
    for (const [key, l] of this.listeners)
      if (poolIndex(key.split(':')[0]!, this.block, c.index) !== undefined && !wanted.has(key)) {
        this.listeners.delete(key);
        await closeListener(l);
        this.onEvent({ cluster: c.name, message: `${key}: released` });
      }
  }

  private async listen(
    c: LbCluster,
    service: string,
    key: string,
    ip: string,
    port: number,
    backend: string | undefined,
    o: { doorOnly?: boolean } = {},
  ): Promise<void> {
    const existing = this.listeners.get(key);
    if (existing) {
      if (existing.backend !== backend)
        this.onEvent({ cluster: c.name, message: `${key} → ${backend ?? 'nothing real'}` });
      existing.backend = backend;
      return;
    }
    if (this.stopped) return;
    const l: Listener = { cluster: c.name, service, backend };
    if (!o.doorOnly) {
      const server = createServer();
      l.server = server;
      server.on('connection', (down) => this.forward(key, l, down));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, ip, () => resolve());
      });
    }
    if (this.doors) {
      const path = join(this.doors, `${ip}-${port}.sock`);
      rmSync(path, { force: true });
      const door = createServer();
      door.on('connection', (down) => this.forward(key, l, down));
      await new Promise<void>((resolve, reject) => {
        door.once('error', reject);
        door.listen(path, () => resolve());
      });
      l.door = door;
    }
    this.listeners.set(key, l);
    this.onEvent({ cluster: c.name, message: `${key} → ${backend ?? 'nothing real'}` });
  }

  private forward(key: string, l: Listener, down: Socket): void {
    if (!l.backend) {
      down.destroy();
      return;
    }
    const [host, port] = [
      l.backend.slice(0, l.backend.lastIndexOf(':')),
      l.backend.slice(l.backend.lastIndexOf(':') + 1),
    ];
    const up = l.backend.startsWith('unix:') ? connect(l.backend.slice(5)) : connect(Number(port), host);
    this.sockets.add(down);
    this.sockets.add(up);
    this.forwarded.set(key, (this.forwarded.get(key) ?? 0) + 1);
    const close = () => {
      down.destroy();
      up.destroy();
      this.sockets.delete(down);
      this.sockets.delete(up);
    };
    down.on('error', close);
    up.on('error', close);
    down.on('close', close);
    up.on('close', close);
    down.pipe(up);
    up.pipe(down);
  }

  /** Addresses listened on ("ip:port"), with their Service and backend. */
  services(): Array<{ cluster: string; service: string; address: string; backend: string | undefined }> {
    return [...this.listeners].map(([address, l]) => ({
      cluster: l.cluster,
      service: l.service,
      address,
      backend: l.backend,
    }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.watched.values()].flatMap((w) => [w.services.stop(), w.pods.stop()]));
    for (const s of this.sockets) s.destroy();
    await Promise.all([...this.listeners.values()].map(closeListener));
    this.listeners.clear();
  }
}

/** Closes a listener and its door (a unix socket server removes its file when it closes). */
async function closeListener(l: Listener): Promise<void> {
  await Promise.all(
    [l.server, l.door].flatMap((s) => (s ? [new Promise<void>((r) => s.close(() => r()))] : [])),
  );
}
