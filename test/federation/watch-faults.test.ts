/**
 * `meshfed federation watch` under faults, on a lab of real pods (current
 * profile, 2 clusters, after `meshfed up`), the watch as its own process
 * (`-o json`, 500 ms polls):
 *
 * 1. cluster-2's spire-server container is SIGKILLed; the node agent starts it
 *    again after its back-off (10 s), so bar.com's bundle endpoint is away
 *    meanwhile. The watch names it (`endpoint-unreachable cluster-2`) and
 *    then `endpoint-back`; once back, `federation status` exits 0.
 * 2. cluster-1's kube-apiserver is SIGKILLed; the watch names cluster-1's
 *    server as unreachable (its health check goes through that API server);
 *    the API server is started again as it ran; the watch says `server-back`
 *    and status exits 0.
 * 3. The same watch process, having lived through both, still carries a change
 *    of cluster-2's served bundle (a new JWT authority) to cluster-1. Then it
 *    is SIGKILLed, bar.com's bundle changes again while no watch runs, a new
 *    watch starts: it refreshes cluster-1 ← cluster-2, status exits 0 with
 *    that refresh, made after the change, recorded as the watch's, and
 *    cluster-1 holds exactly what cluster-2's server has.
 *
 * Real pods need root: without it the file skips (and fails under
 * MESHFED_REQUIRE_LAB=1, as CI runs it); without the lab build it skips
 * naming `npm run lab:build`.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DirectionStatus } from '../../src/cli/commands/federation.js';
import { SPIRE_SERVER_POD } from '../../src/engine/discover.js';
import { SpireServerCli } from '../../src/federation/spire-cli.js';
import { podServerTransport } from '../../src/federation/transport.js';
import { sameKeys } from '../../src/spiffe/bundle.js';
import { labSkip, restartApiServer, startLab } from '../helpers/engine.js';
import { REPO_ROOT, waitUntil } from '../helpers/lab.js';

const notRoot = process.getuid?.() === 0 ? undefined : 'needs root (real pods: namespaces and cgroups)';
if (notRoot && process.env.MESHFED_REQUIRE_LAB === '1') throw new Error(notRoot);

type Lab = Awaited<ReturnType<typeof startLab>>;
const MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

interface Event {
  type: string;
  peer?: string;
  holder?: string;
  cluster?: string;
  error?: string;
  at: string;
}

interface StatusJson {
  current: boolean;
  directions: Array<Omit<DirectionStatus, 'lastRefreshed'> & { lastRefreshed: string | null }>;
}

/** `meshfed federation watch --lab -o json` as its own process, its events parsed as they come. */
function startWatch(lab: Lab) {
  const child: ChildProcess = spawn(
    process.execPath,
    [MAIN, 'federation', 'watch', '--lab', '-o', 'json', '--interval', '500ms'],
    { cwd: lab.parent, env: { ...process.env, ...lab.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const events: Event[] = [];
  let stderr = '';
  let rest = '';
  child.stdout!.on('data', (b: Buffer) => {
    const parts = (rest + b.toString()).split('\n');
    rest = parts.pop() ?? '';
    for (const l of parts) if (l.trim()) events.push(JSON.parse(l) as Event);
  });
  child.stderr!.on('data', (b: Buffer) => {
    stderr += b;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const text = () => `${events.map((e) => JSON.stringify(e)).join('\n')}\n${stderr}`;
  /** Waits for an event of `type` (and fields) among those from index `from`; returns it. */
  const seen = async (what: Partial<Event> & { type: string }, from: number, timeoutMs: number) => {
    let found: Event | undefined;
    // What the watch printed is told as of the failure, not as of the start of the wait.
    await waitUntil(
      `watch event ${JSON.stringify(what)}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`the watch exited (${child.exitCode})`);
        found = events
          .slice(from)
          .find((e) => Object.entries(what).every(([k, v]) => e[k as keyof Event] === v));
        return found !== undefined;
      },
      timeoutMs,
    ).catch((e: Error) => {
      throw new Error(`${e.message}; the watch printed:\n${text()}`);
    });
    return found!;
  };
  return { child, events, exited, text, seen };
}

async function status(lab: Lab): Promise<{ code: number; json: StatusJson; text: string }> {
  const r = await lab.meshfed(['federation', 'status', '-o', 'json']);
  assert.notEqual(r.code, 2, r.stderr);
  return { code: r.code, json: JSON.parse(r.stdout) as StatusJson, text: r.stderr + r.stdout };
}

/** Polls `federation status` until it exits 0 (every direction current), with a deadline. */
async function statusComesBack(lab: Lab, what: string, timeoutMs = 180_000): Promise<StatusJson> {
  let last: Awaited<ReturnType<typeof status>> | undefined;
  const t0 = Date.now();
  await waitUntil(
    `${what}: federation status exit 0`,
    async () => {
      last = await status(lab);
      return last.code === 0;
    },
    timeoutMs,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\nlast status:\n${last?.text}`);
  });
  console.log(`# ${what}: status exit 0 after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return last!.json;
}

const spireOf = (lab: Lab, cluster: string) =>
  new SpireServerCli(podServerTransport(lab.clients.get(cluster)!, SPIRE_SERVER_POD));

/** The spire-server container's pid, as the cluster's node agent records it. */
function serverPid(lab: Lab, cluster: string): number | undefined {
  const c = lab.state.clusters.find((x) => x.name === cluster)!;
  const file = join(c.agentDir!, 'pods.json');
  if (!existsSync(file)) return undefined;
  const r = JSON.parse(readFileSync(file, 'utf8')) as {
    pods: Array<{ pod: string; containers: Record<string, { pid: number }> }>;
  };
  return r.pods.find((p) => p.pod === 'spire/spire-server-0')?.containers['spire-server']?.pid;
}

const _tail = (file: string, lines = 30): string =>
  existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n') : '(no log)';

describe('meshfed federation watch under faults (real pods, current profile)', {
  skip: notRoot ?? labSkip('current'),
  timeout: 1_500_000,
}, () => {
  let lab: Lab;
  let watch: ReturnType<typeof startWatch> | undefined;
  before(async () => {
    const t0 = Date.now();
    lab = await startLab('current', 2);
    // A lighter fleet (no bookinfo): the federation is what is tested.
    const fleetFile = join(lab.dir, 'meshfed.yaml');
    const text = readFileSync(fleetFile, 'utf8');
    assert.match(text, /bookinfo: \{ enabled: true/);
    writeFileSync(fleetFile, text.replace(/bookinfo: \{ enabled: true/, 'bookinfo: { enabled: false'));
    const up = await lab.meshfed(['up']);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    console.log(`# lab up (real pods) and meshfed up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.ok(serverPid(lab, 'cluster-2'), 'cluster-2 runs its SPIRE server in a real pod');
    watch = startWatch(lab);
    await watch.seen({ type: 'watching' }, 0, 120_000);
  });
  after(async () => {
    if (watch?.child.exitCode === null) watch.child.kill('SIGKILL');
    await lab?.stop();
  });

  test("a peer's SPIRE server killed and started again: the watch names its endpoint, status comes back to 0", async () => {
    const w = watch!;
    const from = w.events.length;
    const pid = serverPid(lab, 'cluster-2')!;
    const t0 = Date.now();
    process.kill(pid, 'SIGKILL');
    const away = await w.seen({ type: 'endpoint-unreachable', peer: 'cluster-2' }, from, 30_000);
    assert.match(away.error ?? '', /https:\/\/\S+/, 'the event names the endpoint');
    console.log(`# endpoint-unreachable cluster-2 after ${Date.now() - t0} ms: ${away.error}`);
    // Nothing else changed; the node agent starts the container again after its back-off.
    await w.seen({ type: 'endpoint-back', peer: 'cluster-2' }, from, 180_000);
    console.log(`# endpoint-back cluster-2 after ${Date.now() - t0} ms`);
    assert.notEqual(serverPid(lab, 'cluster-2'), pid, 'a new spire-server process');
    await statusComesBack(lab, "after cluster-2's SPIRE server restarted");
    assert.equal(w.child.exitCode, null, `the watch still runs:\n${w.text()}`);
  });

  test('an API server killed and started again: the watch names the cluster whose server it cannot reach, status comes back to 0', async () => {
    const w = watch!;
    const from = w.events.length;
    const t0 = Date.now();
    await restartApiServer(lab, 0, async () => {
      const away = await w.seen({ type: 'server-unreachable', cluster: 'cluster-1' }, from, 60_000);
      console.log(`# server-unreachable cluster-1 after ${Date.now() - t0} ms: ${away.error}`);
      assert.match(away.error ?? '', /cluster-1/);
    });
    await w.seen({ type: 'server-back', cluster: 'cluster-1' }, from, 120_000);
    console.log(`# server-back cluster-1 after ${Date.now() - t0} ms`);
    await statusComesBack(lab, "after cluster-1's API server restarted");
    assert.equal(w.child.exitCode, null, `the watch still runs:\n${w.text()}`);
  });

  test('the watch lives on through both: a change is carried; killed while a bundle changes, a new watch refreshes the holder', async () => {
    const w = watch!;
    const bar = spireOf(lab, 'cluster-2');
    // The watch that lived through both faults still carries a change of bar.com's bundle.
    let from = w.events.length;
    const before_ = await bar.ownBundle('bar.com');
    const prepared = await bar.transport.run(['localauthority', 'jwt', 'prepare', '-output', 'json']);
    assert.equal(prepared.code, 0, prepared.stderr);
    assert.ok(!sameKeys(before_, await bar.ownBundle('bar.com')), 'a new JWT authority is in the bundle');
    await w.seen({ type: 'served-changed', peer: 'cluster-2' }, from, 60_000);
    await w.seen({ type: 'refreshed', holder: 'cluster-1', peer: 'cluster-2' }, from, 60_000);

    // Killed (no chance to finish anything), then bar.com's bundle changes again while no watch runs.
    w.child.kill('SIGKILL');
    assert.equal((await w.exited).signal, 'SIGKILL');
    const id = (JSON.parse(prepared.stdout) as { prepared_authority: { authority_id: string } })
      .prepared_authority.authority_id;
    const activated = await bar.transport.run(['localauthority', 'jwt', 'activate', '-authorityID', id]);
    assert.equal(activated.code, 0, activated.stderr);
    const mid = await bar.ownBundle('bar.com');
    const changedAt = Date.now();
    const again = await bar.transport.run(['localauthority', 'jwt', 'prepare', '-output', 'json']);
    assert.equal(again.code, 0, again.stderr);
    const served = await bar.ownBundle('bar.com');
    assert.ok(!sameKeys(mid, served), "bar.com's bundle changed while no watch ran");

    watch = startWatch(lab);
    from = 0;
    await watch.seen({ type: 'refreshed', holder: 'cluster-1', peer: 'cluster-2' }, from, 120_000);
    await watch.seen({ type: 'watching' }, from, 120_000);
    const json = await statusComesBack(lab, 'after the watch was killed and started again');
    const d = json.directions.find((x) => x.holder === 'cluster-1' && x.peer === 'cluster-2')!;
    assert.equal(d.lastRefreshedBy, 'watch', JSON.stringify(d));
    assert.ok(Date.parse(d.lastRefreshed!) >= changedAt - 1000, JSON.stringify(d));
    const held = (await spireOf(lab, 'cluster-1').heldBundles()).get('bar.com');
    assert.ok(held && sameKeys(held, await bar.ownBundle('bar.com')), 'cluster-1 holds what bar.com has now');

    watch.child.kill('SIGINT');
    assert.equal((await watch.exited).code, 0, watch.text());
  });
});
