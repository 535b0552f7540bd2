/**
 * The lab node agent: a small "process kubelet" for every node of one lab
 * cluster. kwok keeps the nodes' heartbeats and the pods the lab does not
 * know (its stages leave pods of known images alone, stages.ts); this agent
 * runs the pods whose images it knows as real processes, from the pod spec
 * the API server stores, and writes their status back.
 *
 * Around the pods it keeps what a node and kube-proxy give them, all inside
 * network namespaces of the lab's own (network.ts): a hub per cluster that
 * pods and nodes reach over a bridge; in the hub a portal process that is the
 * cluster's Service proxy (each Service's ClusterIP and ports, relayed to the
 * ready pods behind it), carries pods' connections to the API server out to
 * this machine's loopback, and gives each pod port a unix socket on this
 * machine (for probes and the lab load balancer); a kubelet API per node
 * (`/pods` for SPIRE's k8s workload attestor).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CoreV1Api,
  KubeConfig,
  type V1ConfigMap,
  type V1Node,
  type V1Pod,
  type V1Secret,
  type V1Service,
} from '@kubernetes/client-node';
import { type ClusterClient, clientOfKubeConfig } from '../../kube/client.js';
import { PassLoop, Watched } from '../watched.js';
import { execArgv } from './container.js';
import type { ExecRunner } from './exec-stream.js';
import type { PodObjects } from './pod-plan.js';
import { isRealPod, type PodEnvironment, PodRuntime } from './pod-runtime.js';
import type { Route } from './portal.js';

export interface NodeNetwork {
  /** Brings up the cluster's hub; idempotent. */
  up(): Promise<void>;
  /** The network namespace and address of a node (its "host network"). */
  node(name: string): Promise<{ netns: string; ip: string }>;
  /** A pod's own network namespace and address. */
  pod(uid: string): Promise<{ netns: string; ip: string }>;
  releasePod(uid: string): Promise<void>;
  /** Routes of the hub's portal: replaced as a whole each pass. */
  setRoutes(routes: Route[]): Promise<void>;
  /** The unix socket that reaches ip:port inside the cluster's network. */
  portSocket(ip: string, port: number): string;
  down(): Promise<void>;
}

export interface NodeAgentOptions {
  cluster: string;
  kubeconfig: string;
  /** Folder of the agent's state: pods' folders, logs, sockets. */
  dir: string;
  /** The lab's top cgroup (one per lab). */
  labCgroup: string;
  network: NodeNetwork;
  /** Pods' volumes (volumes.ts): set up for a container's mounts, refreshed each pass, forgotten with the pod. */
  volumes: {
    mounts: PodEnvironment['mounts'];
    refresh(pod: V1Pod): Promise<void>;
    forget(uid: string): void;
  };
  build: PodEnvironment['build'];
  /** The unix socket on this machine that reaches the API server (the hub relays the `kubernetes` Service to it). */
  apiServerSocket: string;
  /** What the nodes serve besides pods (the kubelet APIs): their hub routes and the names pods resolve them by. */
  nodeServices?: { routes(): Route[]; hosts(): string[] };
  /**
   * The lab load balancer's doors (loadbalancer.ts): `<ip>-<port>.sock` per
   * LoadBalancer address of any cluster of the lab, which the hub listens on
   * and relays to, so pods reach those addresses.
   */
  loadBalancerDoors?: string;
  /**
   * The API server's egress into the cluster (egress.ts): the hub's portal
   * listens on `socket` as a CONNECT door and dials targets in `allow`.
   */
  egressDoor?: { socket: string; allow: string[] };
  /** Repositories of the images whose pods the agent runs (default: every image the lab runs; images.ts). */
  repositories?: readonly string[];
  log(line: string): void;
}

/**
 * Milliseconds between passes when nothing changes in the cluster (the pods'
 * processes and probes are looked at each pass); a change seen by a watch
 * runs a pass after `SETTLE_MS`, so that a burst of changes makes one pass.
 */
const PASS_MS = 1000;
const SETTLE_MS = 20;

export class NodeAgent {
  private readonly api: CoreV1Api;
  private readonly runtimes = new Map<string, PodRuntime>();
  private readonly written = new Map<string, string>();
  /** The cluster as the agent watches it (a kubelet's informers): pods, Services, nodes, ConfigMaps, Secrets. */
  private readonly watched: {
    pods: Watched<V1Pod>;
    services: Watched<V1Service>;
    nodes: Watched<V1Node>;
    configMaps: Watched<V1ConfigMap>;
    secrets: Watched<V1Secret>;
  };
  /** Pods and Services as the pass under way read them. */
  private services: V1Service[] = [];
  private pods: V1Pod[] = [];
  /** Runs `pass()` one at a time: on a change, and each second. */
  private readonly loop: PassLoop;

  private readonly kube: ClusterClient;
  private readonly logRules = new Map<string, string>();
  private logsServed = false;

  constructor(private readonly o: NodeAgentOptions) {
    const kc = new KubeConfig();
    kc.loadFromFile(o.kubeconfig);
    this.api = kc.makeApiClient(CoreV1Api);
    this.kube = clientOfKubeConfig(kc);
    this.loop = new PassLoop(() => this.pass(), { periodMs: PASS_MS, settleMs: SETTLE_MS, log: o.log });
    const changed = this.loop.poke;
    const watch = <T extends object>(path: string, list: () => Promise<{ items: T[] }>) =>
      new Watched(kc, path, list, changed, (line) => this.o.log(`watch ${line}`));
    this.watched = {
      pods: watch('/api/v1/pods', () => this.api.listPodForAllNamespaces()),
      services: watch('/api/v1/services', () => this.api.listServiceForAllNamespaces()),
      nodes: watch('/api/v1/nodes', () => this.api.listNode()),
      configMaps: watch('/api/v1/configmaps', () => this.api.listConfigMapForAllNamespaces()),
      secrets: watch('/api/v1/secrets', () => this.api.listSecretForAllNamespaces()),
    };
  }

  private isReal(pod: V1Pod): boolean {
    return isRealPod(pod, this.o.repositories);
  }

  async start(): Promise<void> {
    mkdirSync(this.o.dir, { recursive: true });
    await this.o.network.up();
    this.logsServed =
      (await this.kube.resourceName('kwok.x-k8s.io/v1alpha1', 'Logs').catch(() => undefined)) !== undefined;
    await Promise.all(Object.values(this.watched).map((w) => w.start()));
    await this.loop.start();
  }

  /** One reconcile pass: read the cluster, run and stop pods, route Services, write statuses. */
  private async pass(): Promise<void> {
    this.read();
    const real = this.pods.filter((p) => p.spec?.nodeName && this.isReal(p));
    const seen = new Set<string>();
    for (const pod of real) {
      const uid = pod.metadata!.uid!;
      seen.add(uid);
      let rt = this.runtimes.get(uid);
      if (pod.metadata?.deletionTimestamp) {
        await this.finish(pod, rt);
        continue;
      }
      if (!rt) {
        rt = new PodRuntime(pod, join(this.o.dir, 'nodes', pod.spec!.nodeName!), this.environment());
        this.runtimes.set(uid, rt);
        this.o.log(`${rt.name}: running it on ${pod.spec!.nodeName}`);
      }
      rt.update(pod);
    }
    for (const [uid, rt] of this.runtimes)
      if (!seen.has(uid)) {
        this.o.log(`${rt.name}: gone from the API server; stopping it`);
        await this.stopPod(uid, rt, 0);
      }
    await Promise.all(
      real
        .filter((p) => this.runtimes.has(p.metadata!.uid!) && !p.metadata?.deletionTimestamp)
        .map((p) =>
          this.o.volumes.refresh(p).catch((e: unknown) => this.o.log(`volumes: ${(e as Error).message}`)),
        ),
    );
    await Promise.all([...this.runtimes.values()].map((rt) => rt.tick()));
    await this.o.network.setRoutes(this.routes(real));
    await this.writeStatuses(real);
    await this.writeLogRules(real);
    this.record();
  }

  /** Takes the pass's pods and Services from the watches; throws while a watch has not listed yet. */
  private read(): void {
    const waiting = Object.values(this.watched).filter((w) => !w.ready);
    if (waiting.length)
      throw new Error(`waiting for the first list of ${waiting.map((w) => w.path).join(', ')}`);
    this.pods = this.watched.pods.list();
    this.services = this.watched.services.list();
  }

  /** ConfigMaps and Secrets of a namespace, as last seen. */
  objectsFor(ns: string): PodObjects {
    return {
      configMap: (name) => this.watched.configMaps.get(name, ns) as ReturnType<PodObjects['configMap']>,
      secret: (name) => this.watched.secrets.get(name, ns) as ReturnType<PodObjects['secret']>,
    };
  }

  private environment(): PodEnvironment {
    return {
      objects: (ns) => this.objectsFor(ns),
      network: async (pod) => {
        const node = await this.o.network.node(pod.spec!.nodeName!);
        if (pod.spec?.hostNetwork) return { ...node, hostIP: node.ip };
        const own = await this.o.network.pod(pod.metadata!.uid!);
        return { ...own, hostIP: node.ip };
      },
      portSocket: (ip, port) => this.o.network.portSocket(ip, port),
      mounts: this.o.volumes.mounts,
      build: this.o.build,
      serviceEnv: [
        // The API server's certificate names kubernetes.default.svc, not the Service's ClusterIP,
        // so in-cluster clients are pointed at that name (the pod's /etc/hosts resolves it).
        ['KUBERNETES_SERVICE_HOST', 'kubernetes.default.svc'],
        ['KUBERNETES_SERVICE_PORT', '443'],
        ['KUBERNETES_SERVICE_PORT_HTTPS', '443'],
      ],
      hosts: (pod, ip) => this.hosts(pod, ip),
      labCgroup: this.o.labCgroup,
      log: this.o.log,
    };
  }

  /** /etc/hosts of a pod: itself, its node, every Service of the cluster by its DNS names. */
  private hosts(pod: V1Pod, ip: string): string {
    const ns = pod.metadata?.namespace;
    const lines = [
      '127.0.0.1\tlocalhost',
      '::1\tlocalhost ip6-localhost ip6-loopback',
      `${ip}\t${pod.metadata?.name}`,
      ...(this.o.nodeServices?.hosts() ?? []),
    ];
    for (const s of this.services) {
      const cip = s.spec?.clusterIP;
      if (!cip || cip === 'None') continue;
      const n = s.metadata!.name!;
      const sns = s.metadata!.namespace!;
      const names = [`${n}.${sns}.svc.cluster.local`, `${n}.${sns}.svc`, `${n}.${sns}`];
      if (sns === ns) names.push(n);
      lines.push(`${cip}\t${names.join(' ')}`);
    }
    return `${lines.join('\n')}\n`;
  }

  /** The hub's routes: every Service port to its ready real endpoints; every real pod port to a socket here. */
  private routes(real: V1Pod[]): Route[] {
    const routes: Route[] = [...(this.o.nodeServices?.routes() ?? [])];
    const door = this.o.egressDoor;
    if (door) routes.push({ listen: { unix: door.socket }, connect: { allow: door.allow } });
    const kubernetes = this.services.find(
      (s) => s.metadata?.namespace === 'default' && s.metadata.name === 'kubernetes',
    );
    if (kubernetes?.spec?.clusterIP)
      routes.push({
        listen: { tcp: `${kubernetes.spec.clusterIP}:443` },
        to: [{ unix: this.o.apiServerSocket }],
      });
    const running = real.filter((p) => this.runtimes.get(p.metadata!.uid!)?.ip);
    for (const svc of this.services) {
      const cip = svc.spec?.clusterIP;
      const sel = svc.spec?.selector;
      if (!cip || cip === 'None' || !sel || svc.metadata?.name === 'kubernetes') continue;
      const backends = running.filter(
        (p) =>
          p.metadata?.namespace === svc.metadata?.namespace &&
          Object.entries(sel).every(([k, v]) => p.metadata?.labels?.[k] === v),
      );
      for (const sp of svc.spec?.ports ?? []) {
        const to = backends.flatMap((p) => {
          const port = containerPort(p, sp.targetPort ?? sp.port);
          return port ? [{ tcp: `${this.runtimes.get(p.metadata!.uid!)!.ip}:${port}` }] : [];
        });
        if (to.length && (sp.protocol ?? 'TCP') === 'TCP')
          routes.push({ listen: { tcp: `${cip}:${sp.port}` }, to });
      }
    }
    for (const door of this.o.loadBalancerDoors ? doors(this.o.loadBalancerDoors) : [])
      routes.push({ listen: { tcp: `${door.ip}:${door.port}` }, to: [{ unix: door.path }] });
    for (const p of running) {
      const ip = this.runtimes.get(p.metadata!.uid!)!.ip!;
      for (const port of podPorts(p))
        routes.push({
          listen: { unix: this.o.network.portSocket(ip, port) },
          to: [{ tcp: `${ip}:${port}` }],
        });
    }
    return routes;
  }

  private async writeStatuses(real: V1Pod[]): Promise<void> {
    for (const pod of real) {
      const rt = this.runtimes.get(pod.metadata!.uid!);
      if (!rt || pod.metadata?.deletionTimestamp) continue;
      const status = rt.status();
      const text = JSON.stringify({ ...status, conditions: status.conditions?.map((c) => ({ ...c })) });
      if (this.written.get(rt.uid) === text) continue;
      await this.api
        .replaceNamespacedPodStatus({
          name: pod.metadata!.name!,
          namespace: pod.metadata!.namespace!,
          // Unconditional (no resourceVersion), as the pod the watch gave may be an event behind.
          body: { ...pod, metadata: { ...pod.metadata, resourceVersion: undefined }, status },
        })
        .then(() => this.written.set(rt.uid, text))
        .catch((e: unknown) => this.o.log(`${rt.name}: status not written: ${(e as Error).message}`));
    }
  }

  /**
   * `kubectl logs` of a real pod: the API server asks the node's kubelet
   * endpoint, which is kwok's; a kwok `Logs` object per pod (kwokctl
   * --enable-crds=Logs) points kwok at the container's log files, current and
   * previous. Skipped where kwok serves no Logs kind.
   */
  private async writeLogRules(real: V1Pod[]): Promise<void> {
    if (!this.logsServed) return;
    for (const pod of real) {
      const rt = this.runtimes.get(pod.metadata!.uid!);
      if (!rt || pod.metadata?.deletionTimestamp) continue;
      const files = rt.logFiles();
      if (files.length === 0) continue;
      const body = {
        apiVersion: 'kwok.x-k8s.io/v1alpha1',
        kind: 'Logs',
        metadata: {
          name: pod.metadata!.name!,
          namespace: pod.metadata!.namespace!,
          ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: pod.metadata!.name!, uid: rt.uid }],
        },
        spec: {
          logs: files.map((f) => ({
            containers: [f.container],
            logsFile: f.current,
            ...(f.previous ? { previousLogsFile: f.previous } : {}),
            follow: true,
          })),
        },
      };
      const text = JSON.stringify(body);
      if (this.logRules.get(rt.uid) === text) continue;
      await this.kube
        .apply(body)
        .then(() => this.logRules.set(rt.uid, text))
        .catch((e: unknown) => this.o.log(`${rt.name}: logs rule not written: ${(e as Error).message}`));
    }
  }

  /** A pod being deleted: stop its containers within its grace period, then remove it, as the kubelet does. */
  private async finish(pod: V1Pod, rt: PodRuntime | undefined): Promise<void> {
    const uid = pod.metadata!.uid!;
    const graceMs = (pod.metadata?.deletionGracePeriodSeconds ?? 30) * 1000;
    if (rt) {
      this.o.log(`${rt.name}: deleted; stopping its containers (grace ${graceMs / 1000}s)`);
      await this.stopPod(uid, rt, graceMs);
    }
    await this.api
      .deleteNamespacedPod({
        name: pod.metadata!.name!,
        namespace: pod.metadata!.namespace!,
        // DeleteOptions come from the body when there is one (the API server ignores the query's then).
        body: { gracePeriodSeconds: 0, preconditions: { uid } },
      })
      .then(
        () => this.o.log(`${pod.metadata!.namespace}/${pod.metadata!.name}: stopped and removed`),
        (e: unknown) => {
          if ((e as { code?: number }).code !== 404) throw e;
        },
      );
  }

  private async stopPod(uid: string, rt: PodRuntime, graceMs: number): Promise<void> {
    await rt.stop(graceMs);
    this.runtimes.delete(uid);
    this.written.delete(uid);
    this.o.volumes.forget(uid);
    this.logRules.delete(uid);
    await this.o.network.releasePod(uid);
  }

  /** What runs, for `lab status`: pods.json in the agent's folder. */
  private record(): void {
    const pods = [...this.runtimes.values()].map((rt) => ({
      pod: rt.name,
      ip: rt.ip,
      pids: rt.pids(),
      containers: rt.running(),
    }));
    // Written whole and renamed: readers (lab status, the exec stand-in) never see half a file.
    const file = join(this.o.dir, 'pods.json');
    writeFileSync(`${file}.tmp`, `${JSON.stringify({ cluster: this.o.cluster, pods }, null, 2)}\n`);
    renameSync(`${file}.tmp`, file);
  }

  async stop(): Promise<void> {
    await Promise.all(Object.values(this.watched).map((w) => w.stop()));
    await this.loop.stop();
    for (const [uid, rt] of this.runtimes) await this.stopPod(uid, rt, 5000);
    await this.o.network.down();
  }

  /** The nodes as last seen (for the kubelet servers). */
  get nodeList(): V1Node[] {
    return this.watched.nodes.list();
  }

  /**
   * `kubectl exec` into a container this agent runs on `node`, as a container
   * runtime's exec does (container.ts' execArgv: its cgroup, mount and network
   * namespaces, root and working folder), with the container's environment
   * (its main process's, as the runtime keeps it). Undefined when the
   * container is not running here (kwok's, or stopped).
   */
  execRunner(node: string, t: { namespace: string; pod: string; container: string }): ExecRunner | undefined {
    const pod = this.watched.pods
      .list()
      .find(
        (p) =>
          p.spec?.nodeName === node && p.metadata?.namespace === t.namespace && p.metadata?.name === t.pod,
      );
    const rt = pod ? this.runtimes.get(pod.metadata!.uid!) : undefined;
    // No container named: the pod's first, as the API server's default.
    const name = t.container || pod?.spec?.containers?.[0]?.name || '';
    const c = rt?.running()[name];
    if (!c) return undefined;
    return (argv, opts) => {
      const [file, ...args] = execArgv(c, argv);
      return spawn(file!, args, {
        stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...processEnv(c.pid) },
      });
    };
  }

  /** The pods bound to a node as a kubelet would list them: real ones with the status the agent computes. */
  podsOn(node: string): V1Pod[] {
    return this.watched.pods
      .list()
      .filter((p) => p.spec?.nodeName === node)
      .map((p) => {
        const rt = this.runtimes.get(p.metadata!.uid!);
        return rt ? { ...p, status: rt.status() } : p;
      });
  }
}

/** A Service's targetPort as a number, looked up by name in the pod's container ports. */
function containerPort(pod: V1Pod, target: number | string): number | undefined {
  if (typeof target === 'number') return target;
  if (/^\d+$/.test(target)) return Number(target);
  for (const c of pod.spec?.containers ?? [])
    for (const p of c.ports ?? []) if (p.name === target) return p.containerPort;
  return undefined;
}

/** Every port of a pod worth a socket here: declared container ports and probe ports. */
function podPorts(pod: V1Pod): number[] {
  const ports = new Set<number>();
  // Init containers too: a native sidecar (Istio's proxy) declares ports and is probed.
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    for (const p of c.ports ?? []) if ((p.protocol ?? 'TCP') === 'TCP') ports.add(p.containerPort);
    for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
      const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port;
      const n = port === undefined ? undefined : containerPort(pod, port);
      if (n) ports.add(n);
    }
  }
  return [...ports];
}

/** The load balancer's doors in `dir`: one per address and port it listens on. */
function doors(dir: string): Array<{ ip: string; port: number; path: string }> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const m = /^(127\.\d+\.\d+\.\d+)-(\d+)\.sock$/.exec(name);
    return m ? [{ ip: m[1]!, port: Number(m[2]), path: join(dir, name) }] : [];
  });
}

/** A process's environment (/proc/<pid>/environ); empty when it is gone. */
function processEnv(pid: number): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    return {};
  }
  const env: Record<string, string> = {};
  for (const kv of text.split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}
