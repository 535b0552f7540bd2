/**
 * The load generator of bench/dataplane.ts: run with Node under `nsenter
 * --target <pod pid> --net`, so its requests leave from inside a lab pod's
 * network namespace (and, from sleep's, through sleep's sidecar). node:http
 * with a keep-alive Agent: `--concurrency` workers, each one request at a
 * time, over at most that many connections. Every answer is checked against
 * helloworld's "Hello version: vN, instance: …" (or, with --expect health,
 * its /health answer "Helloworld is healthy", counted as "healthy"); prints
 * one JSON object on stdout (LoadResult).
 *   node dist/bench/dataplane-load.js --url http://127.0.0.1:5000/hello [--host H] [--header k:v]…
 *        [--expect hello|health] [--seconds 10] [--warmup 2] [--concurrency 8] [--until-file F] | [--count N]
 * --count N: N requests one after the other (no warm-up, no timing), for
 * checking where requests go. --until-file F: the measured window ends when F
 * exists (at most --seconds). --progress: a JSON line of the counts so far on
 * stderr every half second.
 */
import { existsSync } from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';

export interface LoadResult {
  /** Requests answered with a helloworld body (status 200), in the measured window. */
  requests: number;
  errors: number;
  /** Answers per version ("v1" → 1234; "healthy" for /health). */
  versions: Record<string, number>;
  /** The first few errors, as text. */
  errorSamples: string[];
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Connections the Agent opened in all (keep-alive: the concurrency), and of those in the measured window. */
  connections: number;
  connectionsInWindow: number;
  warmup: { requests: number; errors: number };
  /** When the first and the last failed request of the measured window ended (epoch ms); absent without errors. */
  firstErrorAt?: number;
  lastErrorAt?: number;
}

function parse(argv: string[]) {
  const o = {
    url: '',
    host: '',
    headers: {} as Record<string, string>,
    seconds: 10,
    warmup: 2,
    concurrency: 8,
    count: 0,
    untilFile: '',
    progress: false,
    timeoutMs: 10_000,
    expect: 'hello',
  };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1] ?? '';
    switch (argv[i]) {
      case '--url':
        o.url = v;
        break;
      case '--host':
        o.host = v;
        break;
      case '--header': {
        const at = v.indexOf(':');
        o.headers[v.slice(0, at).trim().toLowerCase()] = v.slice(at + 1).trim();
        break;
      }
      case '--seconds':
        o.seconds = Number(v);
        break;
      case '--warmup':
        o.warmup = Number(v);
        break;
      case '--concurrency':
        o.concurrency = Number(v);
        break;
      case '--count':
        o.count = Number(v);
        break;
      case '--until-file':
        o.untilFile = v;
        break;
      case '--progress':
        o.progress = true;
        i--;
        break;
      case '--expect':
        o.expect = v;
        break;
      case '--timeout-ms':
        o.timeoutMs = Number(v);
        break;
      default:
        throw new Error(`unknown argument ${argv[i]}`);
    }
    i++;
  }
  if (!o.url) throw new Error('--url is required');
  if (o.expect !== 'hello' && o.expect !== 'health') throw new Error('--expect hello|health');
  return o;
}

const o = parse(process.argv.slice(2));
// The bench runs this under nsenter (which execs): if the bench goes, so does this.
const parent = process.ppid;
setInterval(() => process.ppid !== parent && process.exit(2), 500).unref();
const url = new URL(o.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(1, o.concurrency) });
let opened = 0;
const originalCreate = agent.createConnection.bind(agent);
agent.createConnection = ((...args: Parameters<typeof originalCreate>) => {
  opened++;
  return originalCreate(...args);
}) as typeof agent.createConnection;

const HELLO = /^Hello version: (v\d+), instance: \S+\s*$/;
const answerOf = (body: string) =>
  o.expect === 'health' ? (body === 'Helloworld is healthy' ? 'healthy' : undefined) : HELLO.exec(body)?.[1];

/** One request: the version that answered, or an error's text. */
function once(): Promise<{ version?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = http.request(
      {
        agent,
        hostname: url.hostname,
        port: url.port || 80,
        path: url.pathname + url.search,
        headers: { ...(o.host ? { host: o.host } : {}), ...o.headers },
        timeout: o.timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => resolve({ error: `response: ${e.message}` }));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          const answer = answerOf(body);
          if (res.statusCode === 200 && answer) resolve({ version: answer });
          else
            resolve({
              error: `HTTP ${res.statusCode}: ${body.trim().split('\n')[0]?.slice(0, 160) || '(empty body)'}`,
            });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${o.timeoutMs} ms`)));
    req.on('error', (e) => resolve({ error: e.message }));
    req.end();
  });
}

interface Phase {
  latencies: number[];
  versions: Record<string, number>;
  errors: number;
  samples: string[];
  firstErrorAt?: number;
  lastErrorAt?: number;
}

/** `concurrency` workers, each sending its next request as soon as the last is answered, until `ms` have passed. */
async function run(ms: number): Promise<Phase & { seconds: number }> {
  const p: Phase = { latencies: [], versions: {}, errors: 0, samples: [] };
  const t0 = performance.now();
  const end = t0 + ms;
  // --until-file: the window ends early when that file appears (this machine's file system: nsenter --net keeps it).
  let stop = false;
  const watch = o.untilFile
    ? setInterval(() => {
        stop ||= existsSync(o.untilFile);
      }, 100)
    : undefined;
  // --progress: the counts so far on stderr, a JSON line every half second.
  const tell = o.progress
    ? setInterval(
        () => process.stderr.write(`${JSON.stringify({ answered: p.latencies.length, failed: p.errors })}\n`),
        500,
      )
    : undefined;
  const worker = async () => {
    while (performance.now() < end && !stop) {
      const t = performance.now();
      const r = await once();
      if (r.version) {
        p.latencies.push(performance.now() - t);
        p.versions[r.version] = (p.versions[r.version] ?? 0) + 1;
      } else {
        p.errors++;
        p.firstErrorAt ??= Date.now();
        p.lastErrorAt = Date.now();
        if (p.samples.length < 5) p.samples.push(r.error!);
        await new Promise((ok) => setTimeout(ok, 10)); // no busy loop on a refused connection
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  if (watch) clearInterval(watch);
  if (tell) clearInterval(tell);
  return { ...p, seconds: (performance.now() - t0) / 1000 };
}

const quantile = (sorted: number[], q: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]! : 0;

async function main(): Promise<LoadResult> {
  if (o.count > 0) {
    const p: Phase = { latencies: [], versions: {}, errors: 0, samples: [] };
    for (let i = 0; i < o.count; i++) {
      const r = await once();
      if (r.version) p.versions[r.version] = (p.versions[r.version] ?? 0) + 1;
      else {
        p.errors++;
        if (p.samples.length < 5) p.samples.push(r.error!);
      }
    }
    const requests = Object.values(p.versions).reduce((a, b) => a + b, 0);
    return {
      requests,
      errors: p.errors,
      versions: p.versions,
      errorSamples: p.samples,
      seconds: 0,
      rps: 0,
      p50Ms: 0,
      p99Ms: 0,
      maxMs: 0,
      connections: opened,
      connectionsInWindow: opened,
      warmup: { requests: 0, errors: 0 },
    };
  }
  const w = o.warmup > 0 ? await run(o.warmup * 1000) : undefined;
  const openedBefore = opened;
  const m = await run(o.seconds * 1000);
  const sorted = Float64Array.from(m.latencies).sort();
  const arr = Array.from(sorted);
  return {
    requests: m.latencies.length,
    errors: m.errors,
    versions: m.versions,
    errorSamples: m.samples,
    seconds: m.seconds,
    rps: m.latencies.length / m.seconds,
    p50Ms: quantile(arr, 0.5),
    p99Ms: quantile(arr, 0.99),
    maxMs: arr.at(-1) ?? 0,
    connections: opened,
    connectionsInWindow: opened - openedBefore,
    warmup: { requests: w ? w.latencies.length : 0, errors: w?.errors ?? 0 },
    ...(m.firstErrorAt !== undefined && { firstErrorAt: m.firstErrorAt, lastErrorAt: m.lastErrorAt }),
  };
}

main().then(
  (r) => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    agent.destroy();
  },
  (e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
    agent.destroy();
  },
);
