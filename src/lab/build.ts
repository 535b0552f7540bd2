/**
 * `meshfed lab build`: runs lab/build.sh (shipped with the package) into the
 * lab's binary folder (binaries.ts' labBinRoot), and turns its log into
 * progress a person can plan around: how many components, which one is
 * compiling, how long it took last time on this machine (recorded in
 * build-times.json beside the binaries), and the elapsed time.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileBounded } from '../federation/transport.js';
import { labBinRoot } from './binaries.js';

export const BUILD_SCRIPT = fileURLToPath(new URL('../../../lab/build.sh', import.meta.url));

/** What a cold build takes on a 2-core machine, measured (docs/lab.md). */
export const COLD_BUILD =
  "a cold build (Go compiles Kubernetes, Istio, SPIRE, cert-manager, kwok and etcd) took about 31 minutes on 2 cores with nothing else running (much longer beside other work); with Go's caches warm, about 1 to 2 minutes of linking";

/**
 * What each component's cold build took (empty Go module and build caches) on
 * a 2-core machine with nothing else running, measured for the versions this
 * release builds (docs/lab.md, "the lab build"), by `component version`. The
 * expectation a build shows before this machine has its own times.
 */
export const SHIPPED_COLD_SECONDS: Readonly<Record<string, number>> = {
  'spire 1.15.3': 428,
  'spire 1.5.1': 214,
  'kubernetes 1.35.0': 261,
  'kubernetes 1.29.4': 269,
  'etcd 3.5.24': 25,
  'kwok 0.8.0': 91,
  'spire-controller-manager 0.7.0': 36,
  'cert-manager 1.11.5': 110,
  'istio 1.22.1': 187,
  'istio 1.32-dev': 210,
};

/** What to expect of a component's build: this machine's last time, else the shipped cold time. */
export function expectationOf(
  component: string,
  here: Record<string, number>,
): { seconds: number; from: 'here' | 'shipped' } | undefined {
  if (here[component] !== undefined) return { seconds: here[component]!, from: 'here' };
  const shipped = SHIPPED_COLD_SECONDS[component];
  return shipped !== undefined ? { seconds: shipped, from: 'shipped' } : undefined;
}

type Expected = { expected?: { seconds: number; from: 'here' | 'shipped' } };

export type BuildEvent =
  | { kind: 'plan'; toBuild: string[]; built: string[] }
  | ({ kind: 'start'; component: string; index: number; total: number } & Expected)
  | { kind: 'done'; component: string; index: number; total: number; seconds: number }
  | ({ kind: 'tick'; component: string; index: number; total: number; seconds: number } & Expected)
  | { kind: 'download'; component: string }
  | { kind: 'failed'; component: string; log: string[] };

const timesFile = () => join(labBinRoot(), 'build-times.json');

function recordedTimes(): Record<string, number> {
  try {
    return JSON.parse(readFileSync(timesFile(), 'utf8')) as Record<string, number>;
  } catch {
    return {};
  }
}

/** Go is what builds the lab: a clear error when it is missing. */
export async function requireGo(): Promise<string> {
  const r = await execFileBounded('go', ['version'], { timeoutMs: 30_000 }).catch((e: unknown) => ({
    code: 127,
    stdout: '',
    stderr: (e as Error).message,
  }));
  if (r.code !== 0)
    throw new Error(
      `the lab is built with Go, and \`go version\` failed (${r.stderr.trim().split('\n')[0] || `exit ${r.code}`}): install Go 1.22 or newer (https://go.dev/dl/) and put it on PATH`,
    );
  return r.stdout.trim();
}

/**
 * Builds what is missing (components whose name starts with `only`, versions
 * with `onlyVersion`). Resolves with build.sh's exit code; every step is
 * reported through `onEvent`, a tick every `tickMs` while one compiles.
 */
export async function labBuild(o: {
  only?: string;
  onlyVersion?: string;
  onEvent: (e: BuildEvent) => void;
  tickMs?: number;
}): Promise<number> {
  const bin = labBinRoot();
  mkdirSync(bin, { recursive: true });
  const args = [BUILD_SCRIPT, ...(o.only ? [o.only, ...(o.onlyVersion ? [o.onlyVersion] : [])] : [])];
  const list = await execFileBounded('bash', args, {
    timeoutMs: 120_000,
    env: { MESHFED_LAB_OUT: bin, MESHFED_LAB_LIST: '1' },
  });
  if (list.code !== 0) throw new Error(`${BUILD_SCRIPT} could not list its recipes: ${list.stderr.trim()}`);
  const rows = list.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => l.split(' '));
  const toBuild = rows.filter((r) => r[2] === 'to-build').map((r) => `${r[0]} ${r[1]}`);
  o.onEvent({
    kind: 'plan',
    toBuild,
    built: rows.filter((r) => r[2] === 'built').map((r) => `${r[0]} ${r[1]}`),
  });
  const times = recordedTimes();
  const withExpectation = (component: string): Expected => {
    const expected = expectationOf(component, times);
    return expected ? { expected } : {};
  };
  const total = toBuild.length;
  let index = 0;
  let current: { component: string; since: number } | undefined;
  const tail: string[] = [];
  const child = spawn('bash', args, {
    env: { ...process.env, MESHFED_LAB_OUT: bin },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const ticker = setInterval(() => {
    if (current)
      o.onEvent({
        kind: 'tick',
        component: current.component,
        index,
        total,
        seconds: (Date.now() - current.since) / 1000,
        ...withExpectation(current.component),
      });
  }, o.tickMs ?? 30_000);
  let buffered = '';
  const line = (l: string) => {
    tail.push(l);
    if (tail.length > 40) tail.shift();
    let m = /^lab\/build: (\S+) (\S+): go build/.exec(l);
    if (m) {
      index++;
      current = { component: `${m[1]} ${m[2]}`, since: Date.now() };
      o.onEvent({
        kind: 'start',
        component: current.component,
        index,
        total,
        ...withExpectation(current.component),
      });
      return;
    }
    m = /^lab\/build: (\S+) (\S+): built in (\d+)s/.exec(l);
    if (m) {
      const component = `${m[1]} ${m[2]}`;
      times[component] = Number(m[3]);
      writeFileSync(timesFile(), `${JSON.stringify(times, null, 2)}\n`);
      o.onEvent({ kind: 'done', component, index, total, seconds: Number(m[3]) });
      current = undefined;
      return;
    }
    m = /^lab\/build: prefetch: (\S+) (\S+) modules downloaded/.exec(l);
    if (m) o.onEvent({ kind: 'download', component: `${m[1]} ${m[2]}` });
    m = /^lab\/build: (\S+) (\S+): build FAILED/.exec(l);
    if (m) o.onEvent({ kind: 'failed', component: `${m[1]} ${m[2]}`, log: tail });
  };
  child.stderr.on('data', (d: Buffer) => {
    buffered += d.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const l of lines) line(l);
  });
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  clearInterval(ticker);
  if (buffered) line(buffered);
  return code;
}
