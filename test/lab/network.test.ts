/**
 * The lab's network namespaces (src/lab/node/network.ts) and the portal
 * that relays across their boundary (src/lab/node/portal.ts): the address
 * plan as pure functions, then, as root, real namespaces on a claimed block:
 * pod to pod by pod address, a pod to a root-namespace server through a
 * ClusterIP on the hub, the root namespace to a pod through a unix socket,
 * route table changes, round robin past a target that refuses, and a
 * teardown that leaves nothing behind. The root namespace's interfaces and
 * addresses are compared before and after: the lab must never add any.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execFileBounded } from '../../src/federation/transport.js';
import { claimBlock, releaseBlock } from '../../src/lab/claims.js';
import {
  addHubAddress,
  attachNamespace,
  clusterNetwork,
  createHub,
  deleteLabNetworks,
  hubAddress,
  hubMac,
  labNamespaces,
  type Netns,
  nodeAddress,
  POD_ADDRESSES,
  PodAddresses,
  podNamespace,
  vethName,
} from '../../src/lab/node/network.js';
import {
  type PortalHandle,
  type RelayHandle,
  type Route,
  relayTcpToUnix,
  relayUnixToTcp,
  startPortal,
  writeRouteTable,
} from '../../src/lab/node/portal.js';
import { running } from '../../src/lab/procfs.js';
import { REPO_ROOT } from '../helpers/lab.js';

const PEER = join(REPO_ROOT, 'dist', 'test', 'lab', 'network-peer.js');

describe('lab network address plan', () => {
  test('cluster networks, hubs and nodes of clusters 0 and 15; out-of-range blocks, clusters and nodes fail', () => {
    assert.equal(clusterNetwork(249, 0), '10.249.0.0/20');
    assert.equal(clusterNetwork(249, 15), '10.249.240.0/20');
    assert.equal(hubAddress(249, 0), '10.249.0.1');
    assert.equal(hubAddress(249, 15), '10.249.240.1');
    assert.equal(nodeAddress(249, 0, 0), '10.249.0.10');
    assert.equal(nodeAddress(249, 15, 244), '10.249.240.254');
    assert.throws(() => nodeAddress(249, 0, 245), /node index 245/);
    assert.throws(() => clusterNetwork(249, 16), /cluster index 16/);
    assert.equal(hubMac(249, 15), '02:6d:66:f9:0f:01');
    assert.throws(() => hubAddress(251, 0), /lab block 251/);
    assert.throws(() => hubAddress(0, 0), /lab block 0/);
  });

  test('pod addresses: lowest free first, stable per key while held, reused after release, exhausted with an error', () => {
    const first = new PodAddresses(249, 0);
    assert.equal(first.take('a'), '10.249.1.0');
    assert.equal(first.take('b'), '10.249.1.1');
    assert.equal(first.take('a'), '10.249.1.0', 'same key, same address');
    first.release('a');
    assert.equal(first.take('c'), '10.249.1.0', 'the lowest free address again');
    assert.equal(first.take('a'), '10.249.1.2', 'a released key gets a new address');

    const last = new PodAddresses(249, 15);
    const all = Array.from({ length: POD_ADDRESSES }, (_, i) => last.take(`pod-${i}`));
    assert.equal(all[0], '10.249.241.0');
    assert.equal(all[255], '10.249.241.255');
    assert.equal(all[256], '10.249.242.0');
    assert.equal(all.at(-1), '10.249.255.254', 'the broadcast address 10.249.255.255 is never handed out');
    assert.equal(new Set(all).size, POD_ADDRESSES);
    assert.throws(() => last.take('one-more'), /all 3839 pod addresses are taken/);
    last.release('pod-7');
    assert.equal(last.take('one-more'), '10.249.241.7');
  });

  test('names: hub and pod namespaces; veth names within 15 characters and distinct', () => {
    assert.equal(podNamespace(249, 3, 'web-0'), 'mf249c3-web-0');
    assert.throws(() => podNamespace(249, 3, 'Web'), /short name "Web"/);
    assert.throws(() => podNamespace(249, 3, 'a/b'), /short name "a\/b"/);
    const names = Array.from({ length: 2000 }, (_, i) => vethName(250, 15, `pod-${i}`));
    assert.ok(
      names.every((n) => n.length <= 15 && n.startsWith('v250c15x')),
      names.find((n) => n.length > 15),
    );
    assert.equal(new Set(names).size, names.length);
  });
});

/** Why the real half cannot run here, or undefined when it can. */
function networkSkip(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  for (const argv of [
    ['ip', 'netns', 'list'],
    ['unshare', '--net', 'true'],
    ['nsenter', '--version'],
  ]) {
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
    if (r.error || r.status !== 0)
      return `\`${argv.join(' ')}\` fails here: ${r.error?.message ?? r.stderr.trim()}`;
  }
  return undefined;
}

interface Sent {
  got?: number;
  sent?: string;
  received?: string;
  error?: string;
}

/** Runs network-peer `send` (in `ns`, or in the root namespace) and returns its report. */
async function send(ns: Netns | undefined, host: string, port: number, bytes: number): Promise<Sent> {
  const peer = [process.execPath, PEER, 'send', host, String(port), String(bytes)];
  const [file, ...args] = ns ? ['nsenter', `--net=${ns.path}`, ...peer] : peer;
  const r = await execFileBounded(file!, args, { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Sent;
}

/** The round trip came back whole: as many bytes as sent, the same bytes. */
function assertEchoed(r: Sent, bytes: number, what: string): void {
  assert.equal(r.error, undefined, `${what}: ${r.error}`);
  assert.equal(r.got, bytes, `${what}: bytes back`);
  assert.equal(r.received, r.sent, `${what}: the bytes back are the bytes sent`);
}

/** The root namespace's interfaces and addresses, to compare before and after. */
async function rootNetwork(): Promise<{ links: string[]; addresses: string[] }> {
  const run = async (args: string[]) => {
    const r = await execFileBounded('ip', args);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  const links = (await run(['-o', 'link'])).split('\n').map((l) => l.split(':')[1]?.trim() ?? '');
  const addresses = (await run(['-o', 'addr'])).split('\n').map((l) => l.split(/\s+/).slice(1, 4).join(' '));
  return { links: links.filter(Boolean).sort(), addresses: addresses.filter(Boolean).sort() };
}

describe('lab network namespaces and the portal', { skip: networkSkip(), timeout: 180_000 }, () => {
  const owner = `test/lab/network.test.ts (pid ${process.pid})`;
  const dir = mkdtempSync(join(tmpdir(), 'mf-net-'));
  const routes = join(dir, 'routes.json');
  const portalLog = join(dir, 'portal.log');
  // A root-namespace server reached from pods through the portal, and the root side's unix sockets.
  const serviceSocket = join(dir, 'service.sock');
  const podASocket = join(dir, 'pod-a.sock');
  const MiB = (1 << 20) + 13;
  let block: number | undefined;
  let rootBefore: Awaited<ReturnType<typeof rootNetwork>>;
  let a: Netns;
  let b: Netns;
  let echoA: ChildProcess | undefined;
  let rootServer: Server | undefined;
  let portal: PortalHandle | undefined;
  const relays: RelayHandle[] = [];
  /** The portal's routes every test keeps: pods → the root server, the root → pod A. */
  let base: Route[];

  before(async () => {
    rootBefore = await rootNetwork();
    block = await claimBlock({ owner, preferred: 249 });
    // We hold the block: anything of it still there is a crashed holder's.
    await deleteLabNetworks(block);
  });

  after(async () => {
    // The block and the folder are given back even when tearing down fails (a later holder of the block deletes what is left).
    try {
      await Promise.all(relays.map((r) => r.close()));
      await portal?.stop();
      echoA?.kill('SIGKILL');
      await new Promise<void>((r) => (rootServer ? rootServer.close(() => r()) : r()));
      if (block !== undefined) await deleteLabNetworks(block);
    } finally {
      if (block !== undefined) await releaseBlock(block, owner);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('pod B reaches an echo server in pod A by its address; the root namespace gains no interface, address or route to it', async () => {
    const pods = new PodAddresses(block!, 0);
    await createHub(block!, 0);
    a = await attachNamespace(block!, 0, 'a', pods.take('a'));
    b = await attachNamespace(block!, 0, 'b', pods.take('b'));
    assert.deepEqual(
      [a.name, a.path, b.ip],
      [`mf${block}c0-a`, `/run/netns/mf${block}c0-a`, `10.${block}.1.1`],
    );
    echoA = await startEcho(a, 7000);

    assertEchoed(await send(b, a.ip, 7000, 65_536), 65_536, 'pod B → pod A');
    // Attaching again keeps the namespace, its interface and what runs in it; another address for it is refused.
    const eth0 = await eth0Index(a);
    assert.deepEqual(await attachNamespace(block!, 0, 'a', a.ip), a);
    assert.equal(await eth0Index(a), eth0, "A's eth0 is the same interface");
    assertEchoed(await send(b, a.ip, 7000, 1000), 1000, 'pod B → pod A after attaching A again');
    await assert.rejects(attachNamespace(block!, 0, 'a', pods.take('a2')), /already has .* on eth0/);

    // The gateway's MAC stays the hub's own whatever joins the bridge: a port of the lowest MAC there is
    // would have become the bridge's address, under the ARP entries of every pod.
    const hub = `mf${block}c0`;
    const brMac = async () =>
      (
        JSON.parse((await execFileBounded('ip', ['-n', hub, '-j', 'link', 'show', 'br0'])).stdout) as Array<{
          address: string;
        }>
      )[0]!.address;
    assert.equal(await brMac(), hubMac(block!, 0));
    await execFileBounded('ip', [
      '-n',
      hub,
      'link',
      'add',
      'lowmac0',
      'address',
      '00:00:00:00:00:01',
      'type',
      'veth',
      'peer',
      'name',
      'lowmac1',
    ]);
    try {
      await execFileBounded('ip', ['-n', hub, 'link', 'set', 'lowmac0', 'master', 'br0', 'up']);
      assert.equal(await brMac(), hubMac(block!, 0), 'a port of a lower MAC joined the bridge');
      assertEchoed(await send(b, a.ip, 7000, 1000), 1000, 'pod B → pod A after a port joined');
    } finally {
      await execFileBounded('ip', ['-n', hub, 'link', 'del', 'lowmac0']);
    }

    // No packet is sent to prove the root namespace cannot reach A: its
    // default route leaves the machine. It has no interface, address or
    // route of ours instead, so A's address goes where it went before.
    assert.deepEqual(await rootNetwork(), rootBefore);
    const route = await execFileBounded('ip', ['route', 'get', a.ip]);
    assert.doesNotMatch(route.stdout, /^local|dev (br0|eth0@|v\d+c)/, route.stdout);
  });

  test('the portal in the hub: pod B reaches a root-namespace server at 10.0.0.1:443, the root reaches pod A through a unix socket (1 MiB each way, byte-exact)', async () => {
    rootServer = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => s.destroy());
      s.pipe(s);
    });
    await new Promise<void>((r) => rootServer!.listen(0, '127.0.0.1', r));
    const rootPort = (rootServer.address() as AddressInfo).port;
    relays.push(await relayUnixToTcp(serviceSocket, { host: '127.0.0.1', port: rootPort }));
    await addHubAddress(block!, 0, '10.0.0.1');
    base = [
      { listen: { tcp: '10.0.0.1:443' }, to: [{ unix: serviceSocket }] },
      { listen: { unix: podASocket }, to: [{ tcp: `${a.ip}:7000` }] },
    ];
    writeRouteTable(routes, { generation: 1, routes: base });
    portal = await startPortal(`/run/netns/mf${block}c0`, routes, portalLog);

    assertEchoed(await send(b, '10.0.0.1', 443, MiB), MiB, 'pod B → 10.0.0.1:443 → root server');
    const toA = await relayTcpToUnix({ host: '127.0.0.1', port: 0 }, podASocket);
    relays.push(toA);
    const port = (toA.address() as AddressInfo).port;
    assertEchoed(await send(undefined, '127.0.0.1', port, MiB), MiB, 'root → unix → pod A');
  });

  test('route table changes: a route added to the file answers, removed it refuses', async () => {
    const extra: Route = { listen: { tcp: '10.0.0.1:8080' }, to: [{ unix: serviceSocket }] };
    await portal!.apply([...base, extra]);
    assertEchoed(await send(b, '10.0.0.1', 8080, 4096), 4096, 'the added route');
    await portal!.apply(base);
    assert.deepEqual(await send(b, '10.0.0.1', 8080, 4096), { error: 'ECONNREFUSED' });
    assertEchoed(await send(b, '10.0.0.1', 443, 4096), 4096, 'the route kept');
  });

  test('round robin: with one of two targets refusing every connection succeeds; with all refusing the client is closed', async () => {
    const down = { tcp: `${a.ip}:7001` };
    await portal!.apply([
      ...base,
      { listen: { tcp: '10.0.0.1:81' }, to: [down, { tcp: `${a.ip}:7000` }] },
      { listen: { tcp: '10.0.0.1:82' }, to: [down] },
    ]);
    for (let i = 0; i < 4; i++) assertEchoed(await send(b, '10.0.0.1', 81, 4096), 4096, `connection ${i}`);
    // Turns 0 and 2 start at the refusing target, turns 1 and 3 at the answering one.
    const refusals = readFileSync(portalLog, 'utf8')
      .split('\n')
      .filter((l) => l.includes(`tcp:10.0.0.1:81: target tcp:${a.ip}:7001 refused (ECONNREFUSED)`));
    assert.equal(
      refusals.length,
      2,
      `the refusing target is tried on turns 0 and 2; the portal's log:\n${readFileSync(portalLog, 'utf8')}`,
    );

    const closed = await send(b, '10.0.0.1', 82, 4096);
    // Closed at once: reset (the portal had unread bytes of ours) or ended with nothing, not left to time out.
    assert.ok(closed.error === 'ECONNRESET' || (!closed.error && closed.got === 0), JSON.stringify(closed));
  });

  test('deleteLabNetworks leaves no namespace, no interface of ours and no process in them', async () => {
    assert.equal((await labNamespaces(block!)).length, 3, 'hub, a, b');
    await deleteLabNetworks(block!);
    const list = await execFileBounded('ip', ['netns', 'list']);
    assert.doesNotMatch(list.stdout, new RegExp(`^mf${block}c`, 'm'));
    assert.deepEqual(await rootNetwork(), rootBefore, 'the root namespace is as it was');
    assert.ok(!running(portal!.pid), `the portal (pid ${portal!.pid}) is gone`);
    assert.ok(!existsSync(podASocket), "the portal removed its socket when TERM'd");
    assert.ok(echoA!.pid !== undefined && !running(echoA!.pid), "pod A's echo server is gone");
  });
});

/** The interface index of eth0 in `ns`: a new one if the interface was made again. */
async function eth0Index(ns: Netns): Promise<number> {
  const r = await execFileBounded('ip', ['-n', ns.name, '-j', 'link', 'show', 'dev', 'eth0']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<{ ifindex: number }>)[0]!.ifindex;
}

/** An echo server in `ns` on 0.0.0.0:`port`, once it listens. */
async function startEcho(ns: Netns, port: number): Promise<ChildProcess> {
  const child = spawn(
    'nsenter',
    [`--net=${ns.path}`, process.execPath, PEER, 'echo', '0.0.0.0', String(port)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`echo server in ${ns.name}: not listening in 10 s`)),
      10_000,
    );
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`echo server in ${ns.name} exited (${code})`));
    });
  });
  return child;
}
