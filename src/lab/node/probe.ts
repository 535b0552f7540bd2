/**
 * A container's probes, run the way a kubelet runs them, from outside the
 * container: httpGet against the pod's address (reached through the socket
 * the pod's network gives each port on this machine), tcpSocket and exec
 * inside the pod's namespaces (nsenter). One result per call; the caller
 * keeps the thresholds (ProbeTracker).
 */
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { execArgv } from './container.js';
import type { ProbeAction, ProbePlan } from './pod-plan.js';

export interface ProbeTarget {
  /** The pod's address (the host an httpGet names when it names none). */
  ip: string;
  /** A unix socket on this machine that reaches `ip:port` in the pod's network. */
  portSocket(ip: string, port: number): string;
  /** /run/netns/<name> of the pod, for tcpSocket. */
  netns: string | undefined;
  /** The running container, for exec probes (container.ts' execArgv). */
  container:
    | { pid: number; root: string; workdir: string; cgroup: string; user?: { uid: number; gid: number } }
    | undefined;
}

/** One probe: true on success (HTTP 200–399, a connection, exit 0), false otherwise, within the timeout. */
export async function runProbe(action: ProbeAction, t: ProbeTarget, timeoutMs: number): Promise<boolean> {
  switch (action.kind) {
    case 'http':
      return httpProbe(action, t, timeoutMs);
    case 'tcp':
      return t.netns
        ? commandOk(
            'nsenter',
            [
              `--net=${t.netns}`,
              '--',
              '/bin/bash',
              '-c',
              `exec 3<>/dev/tcp/${action.host ?? t.ip}/${action.port}`,
            ],
            timeoutMs,
          )
        : false;
    case 'exec': {
      if (!t.container) return false;
      const [file, ...args] = execArgv(t.container, action.command);
      return commandOk(file!, args, timeoutMs);
    }
    case 'grpc':
      // No gRPC health client in the lab: the images it runs use none.
      return false;
  }
}

function httpProbe(
  a: Extract<ProbeAction, { kind: 'http' }>,
  t: ProbeTarget,
  timeoutMs: number,
): Promise<boolean> {
  if (a.scheme === 'HTTPS') return Promise.resolve(false);
  const host = a.host ?? t.ip;
  return new Promise((resolve) => {
    const req = request(
      {
        socketPath: t.portSocket(host, a.port),
        path: a.path,
        method: 'GET',
        headers: {
          Host: `${host}:${a.port}`,
          'User-Agent': 'kube-probe/meshfed-lab',
          ...Object.fromEntries(a.headers),
        },
        timeout: timeoutMs,
      },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        resolve(code >= 200 && code < 400);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

function commandOk(file: string, args: string[], timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs }, (err) => resolve(!err));
  });
}

/** The kubelet's threshold logic for one probe of one container. */
export class ProbeTracker {
  private successes = 0;
  private failures = 0;
  private lastRun = 0;
  /** The probe's verdict so far: undefined until a threshold is crossed. */
  verdict: boolean | undefined;

  constructor(
    readonly plan: ProbePlan,
    private readonly startedAt: number,
  ) {}

  /** Due at `now`: past the initial delay and one period after the last run. */
  due(now: number): boolean {
    if (now < this.startedAt + this.plan.initialDelaySeconds * 1000) return false;
    return now >= this.lastRun + this.plan.periodSeconds * 1000;
  }

  record(ok: boolean, now: number): void {
    this.lastRun = now;
    if (ok) {
      this.failures = 0;
      if (++this.successes >= this.plan.successThreshold) this.verdict = true;
    } else {
      this.successes = 0;
      if (++this.failures >= this.plan.failureThreshold) this.verdict = false;
    }
  }
}
