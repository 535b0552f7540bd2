/**
 * Continuous cross-cluster traffic on a 2-cluster real-pods lab, for the
 * rotation test and benchmark: sleep in cluster-1 → helloworld v2 in
 * cluster-2, and sleep in cluster-2 → helloworld v1 in cluster-1, every
 * request through the peer's east-west gateway.
 *
 * In each cluster a DestinationRule names the subsets v1/v2 and a
 * VirtualService sends sleep's requests to the peer's version only. The
 * DestinationRule also sets `maxRequestsPerConnection: 10`: every tenth
 * request opens a new upstream connection with a new mutual TLS handshake,
 * so a gap in trust cannot hide in a connection pooled before it (Envoy
 * checks trust only in the handshake); one handshake per request halved the
 * rate on a loaded 2-core machine.
 *
 * The route retries a request reset before any answer, or answered 503 by
 * the server's sidecar (`retryOn: reset,…,503`, as Istio advises for
 * idempotent requests). The failures seen without it were most likely the
 * keep-alive race at helloworld's gunicorn, which closes a connection after
 * 2 s idle (its default): a request the server's sidecar sends on it just
 * then is reset ("upstream connect error or disconnect/reset before
 * headers. reset reason: connection termination", answered 503): 1 request
 * each way of about 950 in two runs of the intermediate's rotation, none in
 * three of the root's. A request that fails for trust fails its retries too,
 * and counts as failed.
 *
 * The load generator is bench/dataplane-load.ts, run with this Node in the
 * sleep pod's network namespace (`nsenter --net`): it enters the sleep
 * pod's sidecar like sleep's own requests; it runs until a stop file
 * appears.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoadResult } from '../../bench/dataplane-load.js';
import { execFileBounded } from '../../src/federation/transport.js';
import { labBinDir } from '../../src/lab/binaries.js';
import { labStatus, readLabState } from '../../src/lab/lab.js';

const NAME = 'meshfed-cross-traffic';
const HOST = 'helloworld.helloworld.svc.cluster.local';
const loadScript = new URL('../../bench/dataplane-load.js', import.meta.url).pathname;

export interface CrossTraffic {
  /** Starts the load in both directions; `stop()` ends it and gives each direction's result. */
  start(o?: { concurrency?: number; maxSeconds?: number }): Running;
  /** Removes the routing this made. */
  close(): Promise<void>;
}

export interface Running {
  /** Requests ended so far (answered or failed), both directions together. */
  count(): number;
  /** Ends the load (once at least `atLeast` requests have ended, waiting at most `maxWaitMs` for them). */
  stop(o?: { atLeast?: number; maxWaitMs?: number }): Promise<{ [direction: string]: LoadResult }>;
}

/** Sets up the routing on the lab in `labDir` and waits until every request crosses. */
export async function crossTraffic(labDir: string): Promise<CrossTraffic> {
  const state = readLabState(labDir);
  if (state?.pods !== 'real' || state.clusters.length < 2)
    throw new Error(`the lab in ${labDir} needs 2 clusters with real pods`);
  const kubectl = join(labBinDir('kubernetes', state.versions.kubernetes), 'kubectl');
  const k = (context: string, args: string[], stdin?: string) =>
    execFileBounded(kubectl, ['--kubeconfig', state.kubeconfig, '--context', context, ...args], {
      timeoutMs: 60_000,
      ...(stdin !== undefined ? { stdin } : {}),
    });
  const [c1, c2] = state.clusters as [(typeof state.clusters)[0], (typeof state.clusters)[0]];
  const status = (await labStatus(labDir))!;
  const sleepPid = (cluster: string) => {
    const pods = status.clusters.find((c) => c.name === cluster)?.realPods ?? [];
    const p = pods.find((x) => x.pod.startsWith('sleep/sleep-'));
    const pid = p?.pids.sleep ?? Object.values(p?.pids ?? {})[0];
    if (!pid) throw new Error(`${cluster}: no running sleep pod`);
    return pid;
  };
  const clusterIp = async (context: string) => {
    const r = await k(context, [
      '-n',
      'helloworld',
      'get',
      'svc',
      'helloworld',
      '-o',
      'jsonpath={.spec.clusterIP}',
    ]);
    if (r.code !== 0 || !r.stdout.trim())
      throw new Error(`${context}: helloworld's ClusterIP: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };
  // cluster-1's sleep goes to v2 (cluster-2's), cluster-2's to v1 (cluster-1's).
  const directions = [
    {
      name: `${c1.name}→${c2.name}`,
      context: c1.context,
      pid: sleepPid(c1.name),
      want: 'v2',
      ip: await clusterIp(c1.context),
    },
    {
      name: `${c2.name}→${c1.name}`,
      context: c2.context,
      pid: sleepPid(c2.name),
      want: 'v1',
      ip: await clusterIp(c2.context),
    },
  ];
  for (const d of directions) {
    const items = [
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'DestinationRule',
        metadata: { name: NAME, namespace: 'helloworld' },
        spec: {
          host: HOST,
          trafficPolicy: { connectionPool: { http: { maxRequestsPerConnection: 10 } } },
          subsets: ['v1', 'v2'].map((v) => ({ name: v, labels: { version: v } })),
        },
      },
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: NAME, namespace: 'helloworld' },
        spec: {
          hosts: [HOST],
          http: [
            {
              route: [{ destination: { host: HOST, subset: d.want } }],
              // A GET that met a connection being closed under it, before any answer, is sent again.
              retries: { attempts: 3, retryOn: 'reset,connect-failure,refused-stream,503' },
            },
          ],
        },
      },
    ];
    const r = await k(
      d.context,
      ['apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items }),
    );
    if (r.code !== 0) throw new Error(`${d.context}: applying the cross-cluster routing: ${r.stderr.trim()}`);
  }
  const children = new Set<ReturnType<typeof spawn>>();
  const load = (pid: number, args: string[], timeoutMs: number, progress?: (n: number) => void) =>
    new Promise<LoadResult>((resolve, reject) => {
      const c = spawn('nsenter', [`--target=${pid}`, '--net', '--', process.execPath, loadScript, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.add(c);
      let out = '';
      let err = '';
      c.stdout!.on('data', (b: Buffer) => (out += b));
      c.stderr!.on('data', (b: Buffer) => {
        err += b;
        // --progress lines: the latest counts.
        if (progress) {
          const lines = err.split('\n');
          err = lines.pop()!;
          for (const l of lines) {
            const m = /^\{"answered":(\d+),"failed":(\d+)\}$/.exec(l);
            if (m) progress(Number(m[1]) + Number(m[2]));
            else err += `${l}\n`;
          }
        }
      });
      const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
      c.on('close', (code) => {
        clearTimeout(timer);
        children.delete(c);
        if (code === 0) resolve(JSON.parse(out) as LoadResult);
        else reject(new Error(`the load generator in the netns of pid ${pid} exited ${code}: ${err.trim()}`));
      });
    });
  const url = (d: (typeof directions)[0]) => [
    '--url',
    `http://${d.ip}:5000/hello`,
    '--host',
    'helloworld.helloworld:5000',
  ];
  // Routed: every answer from the peer's version (istiod pushes the routes within seconds).
  const end = Date.now() + 120_000;
  for (const d of directions) {
    for (;;) {
      const r = await load(d.pid, [...url(d), '--count', '10'], 60_000).catch((e: Error) => ({
        versions: {} as Record<string, number>,
        errors: 10,
        errorSamples: [e.message],
      }));
      if (r.versions[d.want] === 10) break;
      if (Date.now() > end)
        throw new Error(
          `${d.name}: not every request went to ${d.want} within 120 s: ${JSON.stringify(r.versions)} ${r.errorSamples[0] ?? ''}`,
        );
      await new Promise((ok) => setTimeout(ok, 1000));
    }
  }
  return {
    start(o = {}) {
      const dir = mkdtempSync(join(tmpdir(), 'mf-cross-traffic-'));
      const stopFile = join(dir, 'stop');
      const max = o.maxSeconds ?? 900;
      const counts = directions.map(() => 0);
      const runs = directions.map((d, i) =>
        load(
          d.pid,
          [
            '--progress',
            ...url(d),
            '--seconds',
            String(max),
            '--warmup',
            '0',
            '--concurrency',
            String(o.concurrency ?? 2),
            '--until-file',
            stopFile,
          ],
          (max + 60) * 1000,
          (n) => {
            counts[i] = n;
          },
        ).then((r) => [d.name, r] as const),
      );
      return {
        count: () => counts.reduce((a, b) => a + b, 0),
        async stop(s = {}) {
          const end = Date.now() + (s.maxWaitMs ?? 0);
          while (counts.reduce((a, b) => a + b, 0) < (s.atLeast ?? 0) && Date.now() < end)
            await new Promise((ok) => setTimeout(ok, 250));
          writeFileSync(stopFile, '');
          try {
            return Object.fromEntries(await Promise.all(runs));
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        },
      };
    },
    async close() {
      for (const c of children) c.kill('SIGKILL');
      for (const d of directions)
        await k(d.context, [
          '-n',
          'helloworld',
          'delete',
          '--ignore-not-found',
          `destinationrule/${NAME}`,
          `virtualservice/${NAME}`,
        ]);
    },
  };
}

/** One line per direction: requests, answers by version, errors and when they happened. */
export function describeTraffic(results: { [direction: string]: LoadResult }): string {
  return Object.entries(results)
    .map(
      ([d, r]) =>
        `${d}: ${r.requests + r.errors} requests, ${Object.entries(r.versions)
          .map(([v, n]) => `${v} ${n}`)
          .join(', ')}, ${r.errors} failed${r.errors ? ` (${r.errorSamples[0]})` : ''}`,
    )
    .join('; ');
}
