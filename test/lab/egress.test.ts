/**
 * The lab API server's cluster egress (src/lab/node/egress.ts), without a
 * lab: how CONNECT targets are split (loopback dialled here, the cluster's
 * pod and Service ranges through the hub's door, anything else refused),
 * the proxy's answers byte for byte as k8s.io/apiserver's HTTPConnect
 * dialer reads them, the portal's CONNECT door and its route kind, and the
 * API server's EgressSelectorConfiguration. No address but loopback is ever
 * dialled: the door of these tests is a stand-in that records what it is
 * asked, or a real door allowed only 127.0.0.0/8. The real hub is in
 * network.test.ts, a real lab in egress-lab.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { egressSelectorConfig, LAB_SERVICE_CIDR } from '../../src/lab/lab.js';
import {
  CONNECT_ESTABLISHED,
  ConnectDoor,
  ConnectRefusal,
  type ConnectServer,
  connectTarget,
  egressRoute,
  inCidr,
  readHead,
  startEgressProxy,
} from '../../src/lab/node/egress.js';
import { Portal, parseRouteTable, readyFile, writeRouteTable } from '../../src/lab/node/portal.js';
import { connectVia, rest, roundTrip } from '../helpers/connect.js';

const RANGES = ['10.226.16.0/20', LAB_SERVICE_CIDR];

describe('egress: where a CONNECT target goes', () => {
  test('loopback, localhost and ::1 are dialled here; localhost as 127.0.0.1', () => {
    assert.deepEqual(egressRoute('127.0.0.1:10250', RANGES), {
      via: 'loopback',
      host: '127.0.0.1',
      port: 10250,
    });
    assert.deepEqual(egressRoute('127.77.3.9:80', RANGES), { via: 'loopback', host: '127.77.3.9', port: 80 });
    // kwok's nodes have Hostname localhost, which the API server dials for their kubelets.
    assert.deepEqual(egressRoute('localhost:45347', RANGES), {
      via: 'loopback',
      host: '127.0.0.1',
      port: 45347,
    });
    assert.deepEqual(egressRoute('[::1]:8080', RANGES), { via: 'loopback', host: '::1', port: 8080 });
  });

  test("the cluster's pod network (hub, nodes, pods, kubelet addresses) and Service range go through the hub", () => {
    for (const ip of [
      '10.226.16.1',
      '10.226.16.10',
      '10.226.17.0',
      '10.226.31.254',
      '10.226.16.110',
      '10.0.0.1',
      '10.0.0.255',
    ])
      assert.deepEqual(egressRoute(`${ip}:8443`, RANGES), { via: 'cluster', host: ip, port: 8443 }, ip);
  });

  test("anything else is refused with 403: another cluster's pods, kwok's simulated pod addresses, the outside, names", () => {
    for (const t of [
      '10.226.0.5:80',
      '10.226.32.1:80',
      '10.0.1.5:5000',
      '10.1.0.1:443',
      '192.0.2.1:443',
      '8.8.8.8:53',
      'kubernetes.default.svc:443',
      '[2001:db8::1]:10250',
      '0.0.0.0:80',
    ])
      assert.throws(
        () => egressRoute(t, RANGES),
        (e: unknown) => e instanceof ConnectRefusal && e.status === 403 && e.message.includes(t),
        t,
      );
  });

  test('a target that is not host:port is a 400', () => {
    for (const t of [
      '10.226.16.5',
      '10.226.16.5:',
      '10.226.16.5:0',
      '10.226.16.5:65536',
      ':80',
      '::1:80',
      'a b:80',
    ])
      assert.throws(
        () => egressRoute(t, RANGES),
        (e: unknown) => e instanceof ConnectRefusal && e.status === 400,
        t,
      );
  });

  test('CIDRs: the edges of /20, /24, /8 and /0; not IPv4 is in none', () => {
    assert.ok(inCidr('10.226.16.0', '10.226.16.0/20'));
    assert.ok(inCidr('10.226.31.255', '10.226.16.0/20'));
    assert.ok(!inCidr('10.226.32.0', '10.226.16.0/20'));
    assert.ok(!inCidr('10.226.15.255', '10.226.16.0/20'));
    assert.ok(inCidr('127.255.255.255', '127.0.0.0/8'));
    assert.ok(!inCidr('10.0.1.0', '10.0.0.0/24'));
    assert.ok(inCidr('203.0.113.7', '0.0.0.0/0'));
    assert.ok(!inCidr('::1', '0.0.0.0/0'));
    assert.throws(() => inCidr('10.0.0.1', '10.0.0.0/33'), /not an IPv4 CIDR/);
  });

  test('a request head: only CONNECT over HTTP/1 is taken', () => {
    assert.equal(connectTarget('CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1'), '10.0.0.1:443');
    assert.throws(
      () => connectTarget('GET / HTTP/1.1'),
      (e: unknown) => (e as ConnectRefusal).status === 405,
    );
    assert.throws(
      () => connectTarget('PRI * HTTP/2.0'),
      (e: unknown) => (e as ConnectRefusal).status === 400,
    );
  });

  test("the API server's EgressSelectorConfiguration: cluster over HTTPConnect on the agent's socket", () => {
    assert.equal(
      egressSelectorConfig('/tmp/lab/cluster-1/egress.sock'),
      `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: "/tmp/lab/cluster-1/egress.sock"
`,
    );
  });
});

/** A loopback echo server (what the kubelet or a pod would be): each connection's bytes back, then its end. */
async function echoServer(): Promise<{ server: Server; port: number; connections: () => number }> {
  let n = 0;
  const server = createServer({ allowHalfOpen: true }, (s) => {
    n++;
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, connections: () => n };
}

const close = (s: Server) => new Promise<void>((r) => s.close(() => r()));

describe('egress: the proxy on its unix socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-egress-'));
  const socket = join(dir, 'egress.sock');
  const doorPath = join(dir, 'door.sock');
  const logged: string[] = [];
  /** What the stand-in door was asked, and how it answers the next one. */
  const asked: string[] = [];
  let doorAnswers = 200;
  let door: Server;
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let proxy: ConnectServer;

  before(async () => {
    echo = await echoServer();
    // The stand-in for the portal's door: records the CONNECT, answers, then echoes (a pod would answer).
    door = createServer({ allowHalfOpen: true }, (s: Socket) => {
      s.on('error', () => s.destroy());
      void readHead(s).then((head) => {
        asked.push(head.split('\r\n')[0]!);
        if (doorAnswers !== 200) {
          s.end(`HTTP/1.1 ${doorAnswers} Bad Gateway\r\nContent-Length: 0\r\n\r\n`);
          return;
        }
        s.write(CONNECT_ESTABLISHED);
        s.pipe(s);
      });
    });
    await new Promise<void>((r) => door.listen(doorPath, r));
    proxy = await startEgressProxy({ socket, door: doorPath, ranges: RANGES, log: (l) => logged.push(l) });
  });

  after(async () => {
    await proxy.close();
    await close(door);
    await close(echo.server);
    rmSync(dir, { recursive: true, force: true });
  });

  test('a loopback target (a kubelet at localhost): exactly "HTTP/1.1 200 Connection established" and a blank line, nothing more, then the bytes both ways with half-close', async () => {
    const before = echo.connections();
    const c = await connectVia(socket, `localhost:${echo.port}`);
    assert.equal(c.head, 'HTTP/1.1 200 Connection established\r\n\r\n');
    assert.equal(c.extra.length, 0, 'nothing buffered behind the head (the dialer fails on it)');
    const payload = Buffer.alloc(300_000, 'k');
    assert.deepEqual(await roundTrip(c, payload), payload);
    assert.equal(echo.connections(), before + 1);
    assert.deepEqual(asked, [], 'the door was not asked');
    assert.ok(logged.includes(`egress: CONNECT localhost:${echo.port}: dialled here`), logged.join('\n'));
  });

  test("a pod's and a ClusterIP's address go to the door as the same CONNECT, and its 200 comes back as ours", async () => {
    for (const target of ['10.226.17.3:8443', '10.0.0.25:8081']) {
      const c = await connectVia(socket, target);
      assert.equal(c.head, CONNECT_ESTABLISHED, target);
      assert.equal(c.extra.length, 0);
      assert.deepEqual(await roundTrip(c, Buffer.from(`to ${target}`)), Buffer.from(`to ${target}`));
    }
    assert.deepEqual(asked, ['CONNECT 10.226.17.3:8443 HTTP/1.1', 'CONNECT 10.0.0.25:8081 HTTP/1.1']);
  });

  test("the door's refusal is the proxy's answer (502), and logged", async () => {
    doorAnswers = 502;
    try {
      const c = await connectVia(socket, '10.226.17.4:9999');
      assert.match(c.head, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
      await rest(c);
      assert.ok(
        logged.some((l) => l.includes('CONNECT 10.226.17.4:9999: 502')),
        logged.join('\n'),
      );
    } finally {
      doorAnswers = 200;
    }
  });

  test('a target outside loopback and the ranges: 403 with the reason, logged, and nothing dialled (neither the door nor anything else)', async () => {
    const n = asked.length;
    for (const target of ['192.0.2.1:443', '10.226.0.5:80', 'example.com:443']) {
      const c = await connectVia(socket, target);
      assert.match(c.head, /^HTTP\/1\.1 403 Forbidden\r\n/, target);
      assert.match(await rest(c), /neither loopback nor in the cluster's ranges/);
      assert.ok(
        logged.some((l) => l.startsWith(`egress: CONNECT ${target}: 403`)),
        logged.join('\n'),
      );
    }
    assert.equal(asked.length, n, 'the door was not asked');
  });

  test('not a CONNECT: 405; a loopback port nothing listens on: 502', async () => {
    const get = await connectVia(socket, '', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(get.head, /^HTTP\/1\.1 405 /);
    await rest(get);
    const free = await echoServer();
    await close(free.server);
    const refused = await connectVia(socket, `127.0.0.1:${free.port}`);
    assert.match(refused.head, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
    assert.match(await rest(refused), /ECONNREFUSED/);
  });
});

describe("egress: the portal's CONNECT door", () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-door-'));
  let echo: Awaited<ReturnType<typeof echoServer>>;

  before(async () => {
    echo = await echoServer();
  });
  after(async () => {
    await close(echo.server);
    rmSync(dir, { recursive: true, force: true });
  });

  test('dials what is in its ranges, refuses the rest with 403 (here only loopback is allowed)', async () => {
    const logged: string[] = [];
    const path = join(dir, 'door.sock');
    const door = await ConnectDoor.open(path, ['127.0.0.0/8'], (l) => logged.push(l));
    try {
      const c = await connectVia(path, `127.0.0.1:${echo.port}`);
      assert.equal(c.head, CONNECT_ESTABLISHED);
      assert.deepEqual(await roundTrip(c, Buffer.from('hub')), Buffer.from('hub'));
      const out = await connectVia(path, '10.0.0.1:443');
      assert.match(out.head, /^HTTP\/1\.1 403 /);
      assert.match(await rest(out), /10\.0\.0\.1:443 is not in 127\.0\.0\.0\/8/);
      // New ranges apply to the next CONNECT.
      door.setAllow(['10.0.0.0/24']);
      const now = await connectVia(path, `127.0.0.1:${echo.port}`);
      assert.match(now.head, /^HTTP\/1\.1 403 /);
      await rest(now);
    } finally {
      await door.close();
    }
    assert.ok(!existsSync(path), 'the socket file is removed');
  });

  test('a portal route of kind connect: parsed, listened on, reported, closed when removed', async () => {
    const routes = join(dir, 'routes.json');
    const path = join(dir, 'portal-door.sock');
    assert.throws(
      () =>
        parseRouteTable(
          JSON.stringify({
            generation: 0,
            routes: [{ listen: { unix: path }, connect: { allow: ['10.0.0.0'] } }],
          }),
        ),
      /IPv4 CIDR/,
    );
    assert.throws(() =>
      parseRouteTable(
        JSON.stringify({
          generation: 0,
          routes: [{ listen: { tcp: '10.0.0.1:1' }, connect: { allow: ['10.0.0.0/24'] } }],
        }),
      ),
    );
    writeRouteTable(routes, {
      generation: 1,
      routes: [{ listen: { unix: path }, connect: { allow: ['127.0.0.0/8'] } }],
    });
    const portal = new Portal(routes, () => {});
    try {
      await portal.poll();
      const report = JSON.parse(readFileSync(readyFile(routes), 'utf8')) as {
        listening: string[];
        failed: unknown[];
      };
      assert.deepEqual(report.listening, [`unix:${path}`]);
      assert.deepEqual(report.failed, []);
      const c = await connectVia(path, `127.0.0.1:${echo.port}`);
      assert.equal(c.head, CONNECT_ESTABLISHED);
      assert.deepEqual(await roundTrip(c, Buffer.from('x')), Buffer.from('x'));
      writeRouteTable(routes, { generation: 2, routes: [] });
      await portal.poll();
      assert.ok(!existsSync(path), 'the door is gone with its route');
    } finally {
      await portal.stop();
    }
  });
});
