/**
 * One real pod of a lab node: its containers as processes (container.ts),
 * restarted with the kubelet's back-off when they exit, probed as the spec
 * says (probe.ts; a startup probe gates readiness and liveness, which is
 * probed at once when it passes, as a kubelet does), and the pod status a
 * kubelet would report for them.
 *
 * What the pod stands on (its network namespace and address, its volumes,
 * the lab's builds) comes from a PodEnvironment the node agent provides, so
 * this file holds the lifecycle alone.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { V1ContainerStatus, V1Pod, V1PodCondition, V1PodStatus } from '@kubernetes/client-node';
import {
  type Bind,
  type ContainerSpec,
  containerCgroup,
  containerId,
  removeCgroup,
  signalCgroup,
  startContainer,
} from './container.js';
import { type KnownImage, knownImage, parseImage, REAL_REPOSITORIES } from './images.js';
import {
  ContainerConfigError,
  type ContainerPlan,
  containerPlan,
  type MountPlan,
  type PodObjects,
} from './pod-plan.js';
import { ProbeTracker, runProbe } from './probe.js';

/** What the node agent gives a pod. */
export interface PodEnvironment {
  /** ConfigMaps and Secrets of a namespace, as last read. */
  objects(namespace: string): PodObjects;
  /** The pod's network: its namespace and address (the node's, for hostNetwork pods). */
  network(pod: V1Pod): Promise<{ netns: string; ip: string; hostIP: string }>;
  /** A unix socket on this machine that reaches ip:port in the pod's network. */
  portSocket(ip: string, port: number): string;
  /** Host paths to bind at each mount of a container (volumes written, tokens requested). */
  mounts(pod: V1Pod, podDir: string, mounts: MountPlan[]): Promise<Bind[]>;
  /** The lab build folder of a component's version, or undefined when the lab has none. */
  build(component: string, version: string): string | undefined;
  /** Variables a kubelet adds before the container's own (the API server's service). */
  serviceEnv: Array<[string, string]>;
  /** /etc/hosts of the pod (names of the cluster's services and of the pod itself). */
  hosts(pod: V1Pod, ip: string): string;
  /** The lab's top cgroup. */
  labCgroup: string;
  log(line: string): void;
}

const BACKOFF_START_MS = 10_000;
const BACKOFF_MAX_MS = 300_000;
/** A container that ran this long without exiting starts its back-off again from the beginning. */
const BACKOFF_RESET_MS = 600_000;

type State =
  | { kind: 'waiting'; reason: string; message?: string }
  | { kind: 'running'; startedAt: Date }
  | {
      kind: 'terminated';
      exitCode: number;
      signal?: string;
      reason: string;
      startedAt: Date;
      finishedAt: Date;
    };

class ContainerRun {
  child: ChildProcess | undefined;
  restarts = 0;
  state: State = { kind: 'waiting', reason: 'ContainerCreating' };
  lastTerminated: Extract<State, { kind: 'terminated' }> | undefined;
  backoffUntil = 0;
  backoffMs = 0;
  ready = false;
  readiness: ProbeTracker | undefined;
  liveness: ProbeTracker | undefined;
  startup: ProbeTracker | undefined;
  /** Its startup probe has succeeded (or it has none): the kubelet's `started`. */
  started = false;
  probing = false;
  spec: ContainerSpec | undefined;
  /** An init container that ran to its end (exit 0): not started again. */
  done = false;

  constructor(
    readonly name: string,
    readonly image: string,
    /**
     * no: an app container; once: an init container, run to its end before
     * the next starts; sidecar: an init container with restartPolicy Always,
     * started before the next and kept running (Kubernetes' native sidecars).
     */
    readonly init: 'no' | 'once' | 'sidecar' = 'no',
  ) {}

  get id(): string | undefined {
    return this.spec?.id;
  }
}

export class PodRuntime {
  readonly uid: string;
  readonly dir: string;
  private pod: V1Pod;
  private readonly containers: ContainerRun[];
  private net: { netns: string; ip: string; hostIP: string } | undefined;
  private startTime = new Date();
  private stopping = false;

  constructor(
    pod: V1Pod,
    nodeDir: string,
    private readonly env: PodEnvironment,
  ) {
    this.pod = pod;
    this.uid = pod.metadata!.uid!;
    this.dir = join(nodeDir, 'pods', this.uid);
    this.containers = [
      ...(pod.spec?.initContainers ?? []).map(
        (c) => new ContainerRun(c.name, c.image ?? '', c.restartPolicy === 'Always' ? 'sidecar' : 'once'),
      ),
      ...(pod.spec?.containers ?? []).map((c) => new ContainerRun(c.name, c.image ?? '')),
    ];
  }

  get name(): string {
    return `${this.pod.metadata?.namespace}/${this.pod.metadata?.name}`;
  }

  get ip(): string | undefined {
    return this.net?.ip;
  }

  /** The pod as last seen: a changed spec is a new pod to the kubelet, so only metadata and status change here. */
  update(pod: V1Pod): void {
    this.pod = pod;
  }

  /** One step of the pod's life: start what should run and is due, probe what is due. Never throws. */
  async tick(now = Date.now()): Promise<void> {
    if (this.stopping) return;
    try {
      if (!this.net) {
        this.net = await this.env.network(this.pod);
        mkdirSync(this.dir, { recursive: true });
      }
    } catch (e) {
      for (const c of this.containers)
        c.state = {
          kind: 'waiting',
          reason: 'ContainerCreating',
          message: `network: ${(e as Error).message}`,
        };
      return;
    }
    this.writeEtc();
    // In order, as a kubelet: each init container runs to its end (a sidecar
    // one is started) before the next container starts.
    for (const c of this.containers) {
      if (c.done) continue;
      if (c.child) await this.probe(c, now);
      else if (now >= c.backoffUntil) await this.start(c);
      if (c.init !== 'no' && !c.child) return;
      if (c.init === 'once') return;
    }
  }

  /** Every init container has run to its end, or (a sidecar) is running. */
  private initialized(): boolean {
    return this.containers.every((c) => c.init === 'no' || c.done || (c.init === 'sidecar' && c.child));
  }

  private async start(c: ContainerRun): Promise<void> {
    const spec = [...(this.pod.spec!.initContainers ?? []), ...this.pod.spec!.containers].find(
      (x) => x.name === c.name,
    )!;
    const known = knownImage(c.image);
    if (!known) {
      c.state = {
        kind: 'waiting',
        reason: 'ErrImageNeverPull',
        message: `the lab does not run image ${c.image}`,
      };
      return;
    }
    const b = known.image.build;
    const build = b ? this.env.build(b.component, known.version) : '';
    const also = known.also.map((a) => ({ ...a, dir: a.version && this.env.build(a.component, a.version) }));
    const missing = build === undefined ? `${b!.component} ${known.version}` : also.find((a) => !a.dir);
    if (missing) {
      c.state = {
        kind: 'waiting',
        reason: 'ErrImagePull',
        message: `the lab has no build of ${typeof missing === 'string' ? missing : `${missing.component} ${missing.version ?? `for ${c.image}`}`} (npm run lab:build)`,
      };
      return;
    }
    let plan: ContainerPlan;
    let binds: Bind[];
    try {
      plan = containerPlan(
        this.pod,
        spec,
        known.image,
        this.env.objects(this.pod.metadata?.namespace ?? 'default'),
      );
      binds = await this.env.mounts(this.pod, this.dir, plan.mounts);
    } catch (e) {
      c.state = {
        kind: 'waiting',
        reason: e instanceof ContainerConfigError ? 'CreateContainerConfigError' : 'CreateContainerError',
        message: (e as Error).message,
      };
      return;
    }
    const files = Object.fromEntries(
      also.flatMap((a) => Object.entries(a.files).map(([p, f]) => [p, join(a.dir as string, f)])),
    );
    c.spec = this.containerSpec(c, plan, known.image, build as string, binds, {
      ...files,
      ...this.imageFiles(c.name, known.image),
    });
    const child = startContainer(c.spec);
    c.child = child;
    const startedAt = new Date();
    c.state = { kind: 'running', startedAt };
    c.ready = false;
    c.readiness = plan.readiness ? new ProbeTracker(plan.readiness, startedAt.getTime()) : undefined;
    c.liveness = plan.liveness ? new ProbeTracker(plan.liveness, startedAt.getTime()) : undefined;
    c.startup = plan.startup ? new ProbeTracker(plan.startup, startedAt.getTime()) : undefined;
    c.started = !c.startup;
    // A container without a readiness probe is ready once it runs (once it started, with a startup probe).
    if (!c.readiness) c.ready = c.started;
    this.env.log(`${this.name} ${c.name}: started pid ${child.pid} (restart ${c.restarts})`);
    child.on('exit', (code, signal) => this.exited(c, child, startedAt, code, signal));
  }

  /**
   * The files of an image run with this machine's programs that the lab
   * writes itself (images.ts `machine.files`), executable, in the pod's
   * folder; by their paths in the image.
   */
  private imageFiles(container: string, image: KnownImage): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [path, content] of Object.entries(image.machine?.files ?? {})) {
      const file = join(this.dir, 'image', container, path);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, content, { mode: 0o755 });
      out[path] = file;
    }
    return out;
  }

  private containerSpec(
    c: ContainerRun,
    plan: ContainerPlan,
    image: KnownImage,
    build: string,
    binds: Bind[],
    files: Record<string, string>,
  ): ContainerSpec {
    const id = containerId(this.uid, c.name, c.restarts);
    const etc = this.writeEtc();
    return {
      id,
      root: join(this.dir, 'containers', c.name, 'root'),
      argv: plan.argv,
      workdir: plan.workdir,
      env: [
        ...(image.env ?? []),
        ...this.env.serviceEnv,
        ['HOSTNAME', this.pod.metadata?.name ?? ''],
        ...plan.env,
      ],
      programs: {
        ...Object.fromEntries(
          Object.entries(image.build?.programs ?? {}).map(([p, prog]) => [p, join(build, prog)]),
        ),
        ...files,
      },
      binds: [
        ...binds,
        { hostPath: join(etc, 'hosts'), path: '/etc/hosts', readOnly: true },
        { hostPath: join(etc, 'hostname'), path: '/etc/hostname', readOnly: true },
        { hostPath: join(etc, 'resolv.conf'), path: '/etc/resolv.conf', readOnly: true },
      ],
      netns: this.net!.netns,
      cgroup: containerCgroup(this.env.labCgroup, this.uid, id),
      logFile: join(this.dir, 'logs', c.name, `${c.restarts}.log`),
      ...(plan.user ? { user: plan.user } : {}),
    };
  }

  /**
   * The pod's /etc/hosts, /etc/hostname and /etc/resolv.conf, bound into each
   * container. hosts is rewritten in place when the cluster's Services or nodes
   * change (the bind follows the file). Names resolve through it alone: the
   * resolver's nameserver is the pod's own loopback, which refuses at once,
   * so nothing is ever asked of a DNS server outside the lab.
   */
  private writeEtc(): string {
    const etc = join(this.dir, 'etc');
    mkdirSync(etc, { recursive: true });
    const put = (name: string, text: string) => {
      const f = join(etc, name);
      if (this.etc.get(name) !== text) {
        writeFileSync(f, text);
        this.etc.set(name, text);
      }
    };
    put('hosts', this.env.hosts(this.pod, this.net!.ip));
    put('hostname', `${this.pod.spec?.hostname ?? this.pod.metadata?.name}\n`);
    put('resolv.conf', '# meshfed lab: names resolve through /etc/hosts\nnameserver 127.0.0.1\n');
    return etc;
  }

  private readonly etc = new Map<string, string>();

  private exited(
    c: ContainerRun,
    child: ChildProcess,
    startedAt: Date,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    if (c.child !== child) return;
    c.child = undefined;
    c.ready = false;
    // Whatever the process left behind in its cgroup goes with it.
    if (c.spec) {
      signalCgroup(c.spec.cgroup, 'SIGKILL');
      removeCgroup(c.spec.cgroup);
    }
    const finishedAt = new Date();
    const t = {
      kind: 'terminated' as const,
      exitCode: code ?? 128 + (signal ? signalNumber(signal) : 0),
      ...(signal ? { signal } : {}),
      reason: code === 0 ? 'Completed' : 'Error',
      startedAt,
      finishedAt,
    };
    c.lastTerminated = t;
    if (this.stopping || (c.init === 'once' && code === 0)) {
      c.state = t;
      c.done = c.init === 'once' && code === 0;
      return;
    }
    // restartPolicy Always (Deployments, StatefulSets, DaemonSets): back off, then start again.
    c.restarts++;
    const ranMs = finishedAt.getTime() - startedAt.getTime();
    c.backoffMs =
      ranMs > BACKOFF_RESET_MS || c.backoffMs === 0
        ? BACKOFF_START_MS
        : Math.min(c.backoffMs * 2, BACKOFF_MAX_MS);
    c.backoffUntil = finishedAt.getTime() + c.backoffMs;
    c.state = {
      kind: 'waiting',
      reason: 'CrashLoopBackOff',
      message: `back-off ${Math.round(c.backoffMs / 1000)}s restarting failed container=${c.name} pod=${this.pod.metadata?.name}`,
    };
    this.env.log(
      `${this.name} ${c.name}: exited (${signal ?? code}); restart ${c.restarts} in ${c.backoffMs} ms`,
    );
  }

  private async probe(c: ContainerRun, now: number): Promise<void> {
    if (c.probing || !c.spec) return;
    c.probing = true;
    try {
      const target = {
        ip: this.net!.ip,
        portSocket: this.env.portSocket,
        netns: this.net!.netns,
        container: c.child?.pid
          ? {
              pid: c.child.pid,
              root: c.spec.root,
              workdir: c.spec.workdir,
              cgroup: c.spec.cgroup,
              ...(c.spec.user ? { user: c.spec.user } : {}),
            }
          : undefined,
      };
      // As a kubelet: until the startup probe succeeds, readiness and liveness
      // are not probed; once it has, readiness is probed at once (its first run
      // is due), not a period later.
      for (const [tracker, kind] of [
        [c.startup, 'startup'],
        [c.readiness, 'readiness'],
        [c.liveness, 'liveness'],
      ] as const) {
        if (kind === 'startup' ? c.started : !c.started) continue;
        if (!tracker?.due(now)) continue;
        const ok = await runProbe(tracker.plan.action, target, tracker.plan.timeoutSeconds * 1000);
        tracker.record(ok, Date.now());
        if (kind === 'startup' && tracker.verdict === true) {
          c.started = true;
          if (!c.readiness) c.ready = true;
        }
        if (kind === 'readiness' && tracker.verdict !== undefined) c.ready = tracker.verdict;
        // A startup or liveness probe failed to its threshold: the kubelet kills the container.
        if (kind !== 'readiness' && tracker.verdict === false && c.child) {
          this.env.log(`${this.name} ${c.name}: ${kind} probe failed; killing it`);
          c.child.kill('SIGKILL');
        }
      }
    } finally {
      c.probing = false;
    }
  }

  /** Stops every container: SIGTERM, then SIGKILL after the grace period; resolves once all are gone. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    const alive = () => this.containers.filter((c) => c.child);
    for (const c of alive()) c.child!.kill('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (alive().length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    for (const c of alive()) if (c.spec) signalCgroup(c.spec.cgroup, 'SIGKILL');
    const killDeadline = Date.now() + 10_000;
    while (alive().length && Date.now() < killDeadline) await new Promise((r) => setTimeout(r, 100));
    for (const c of this.containers) if (c.spec) removeCgroup(c.spec.cgroup);
    removeCgroup(`${this.env.labCgroup}/kubepods/besteffort/pod${this.uid}`);
  }

  /** The processes run (for `lab status`): container name → pid. */
  pids(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.running()).map(([name, c]) => [name, c.pid]));
  }

  /**
   * Each started container's log files, as kwok's Logs rule names them for
   * `kubectl logs`: the current run's, and the run before it (`--previous`).
   */
  logFiles(): Array<{ container: string; current: string; previous: string | undefined }> {
    return this.containers
      .filter((c) => c.spec)
      .map((c) => {
        const dir = dirname(c.spec!.logFile);
        const run = c.child ? c.restarts : Math.max(0, c.restarts - 1);
        return {
          container: c.name,
          current: join(dir, `${run}.log`),
          previous: run > 0 ? join(dir, `${run - 1}.log`) : undefined,
        };
      });
  }

  /** What `kubectl exec` needs to enter a running container: its pid, root and working folder. */
  running(): Record<
    string,
    { pid: number; root: string; workdir: string; cgroup: string; user?: { uid: number; gid: number } }
  > {
    return Object.fromEntries(
      this.containers
        .filter((c) => c.child?.pid && c.spec)
        .map((c) => [
          c.name,
          {
            pid: c.child!.pid!,
            root: c.spec!.root,
            workdir: c.spec!.workdir,
            cgroup: c.spec!.cgroup,
            ...(c.spec!.user ? { user: c.spec!.user } : {}),
          },
        ]),
    );
  }

  /** The pod status a kubelet would write now. */
  status(): V1PodStatus {
    const statuses = this.containers.filter((c) => c.init === 'no').map((c) => this.containerStatus(c));
    const inits = this.containers.filter((c) => c.init !== 'no').map((c) => this.containerStatus(c));
    const initialized = this.initialized();
    // Sidecar init containers count for readiness; those run once do not.
    const allReady = initialized && this.containers.every((c) => c.init === 'once' || (c.ready && c.child));
    const t = new Date();
    const cond = (type: string, ok: boolean): V1PodCondition => ({
      type,
      status: ok ? 'True' : 'False',
      lastTransitionTime: this.transitions(type, ok, t),
    });
    return {
      phase: initialized ? 'Running' : 'Pending',
      conditions: [
        cond('PodScheduled', true),
        cond('Initialized', initialized),
        cond('ContainersReady', allReady),
        cond('Ready', allReady),
      ],
      ...(this.net
        ? {
            podIP: this.net.ip,
            podIPs: [{ ip: this.net.ip }],
            hostIP: this.net.hostIP,
            hostIPs: [{ ip: this.net.hostIP }],
          }
        : {}),
      startTime: this.startTime,
      ...(inits.length ? { initContainerStatuses: inits } : {}),
      containerStatuses: statuses,
    };
  }

  private transitionTimes = new Map<string, { ok: boolean; at: Date }>();
  private transitions(type: string, ok: boolean, now: Date): Date {
    const last = this.transitionTimes.get(type);
    if (last && last.ok === ok) return last.at;
    this.transitionTimes.set(type, { ok, at: now });
    return now;
  }

  private containerStatus(c: ContainerRun): V1ContainerStatus {
    const term = (t: Extract<State, { kind: 'terminated' }>) => ({
      terminated: {
        exitCode: t.exitCode,
        ...(t.signal ? { signal: signalNumber(t.signal) } : {}),
        reason: t.reason,
        startedAt: t.startedAt,
        finishedAt: t.finishedAt,
        ...(c.id ? { containerID: `containerd://${c.id}` } : {}),
      },
    });
    const s = c.state;
    const state =
      s.kind === 'running'
        ? { running: { startedAt: s.startedAt } }
        : s.kind === 'waiting'
          ? { waiting: { reason: s.reason, ...(s.message ? { message: s.message } : {}) } }
          : term(s);
    return {
      name: c.name,
      image: c.image,
      imageID: '',
      ready: c.ready && c.child !== undefined && c.init !== 'once',
      started: c.child !== undefined && c.started,
      restartCount: c.restarts,
      state,
      ...(c.lastTerminated && s.kind !== 'terminated' ? { lastState: term(c.lastTerminated) } : {}),
      ...(c.id && c.child ? { containerID: `containerd://${c.id}` } : {}),
    };
  }
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGSEGV: 11,
  SIGTERM: 15,
};
const signalNumber = (s: string) => SIGNALS[s] ?? 0;

/**
 * The pod has an image of `repositories` (by default every image the lab
 * runs): the node agent runs the pod, kwok's stages leave it alone.
 */
export function isRealPod(pod: V1Pod, repositories: readonly string[] = REAL_REPOSITORIES): boolean {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].some((c) =>
    repositories.includes(parseImage(c.image ?? '').repository),
  );
}
