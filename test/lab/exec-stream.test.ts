/**
 * `kubectl exec` (the real one, 1.29.4 and 1.35.0) against serveExec
 * (src/lab/node/exec-stream.ts over src/kube/spdy.ts): an HTTPS server
 * stands in for the API server, answers kubectl's GET of the pod and serves
 * the exec upgrade by running the command here. Checked: stdout, stderr and
 * exit codes (kubectl maps NonZeroExitCode to its own), stdin to its end
 * (`-i`), 5 MB of output and 2 MB of input intact (no flow-control stall), a
 * command that cannot start, and kubectl ≥ 1.30's websocket attempt refused
 * and followed by SPDY. Also, without kubectl: the SPDY/3 dictionary, the
 * request parser, and malformed frames closing the session without a crash.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { type AddressInfo, connect, createServer as createNetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { deflateSync } from 'node:zlib';
import { SPDY3_DICTIONARY, SpdySession, type SpdyStream } from '../../src/kube/spdy.js';
import { type ExecOutcome, parseExecRequest, serveExec } from '../../src/lab/node/exec-stream.js';
import { issueKubeletCert } from '../../src/lab/node/kubelet.js';
import { makeCertManagerRoot } from '../../src/lab/pki.js';
import { labBin, requireLab, waitUntil } from '../helpers/lab.js';

const VERSIONS = ['1.29.4', '1.35.0'];
const NS = 'lab-ns';
const POD = 'web-0';
const CONTAINER = 'app';
const TOKEN = 'exec-test-token';

interface Seen {
  method: string;
  path: string;
  upgrade?: string;
  outcome?: ExecOutcome;
}

/** The stand-in API server: the pod, and exec upgrades served by serveExec running the command here. */
async function startApiServer(dir: string) {
  const ca = await makeCertManagerRoot('exec-test', 86_400_000);
  const serving = await issueKubeletCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    nodeName: 'exec-test',
    ips: ['127.0.0.1'],
    validityMs: 86_400_000,
  });
  const seen: Seen[] = [];
  const pending = new Set<Promise<unknown>>();
  /** The processes serveExec ran, in order. */
  const processes: ChildProcess[] = [];
  const server: Server = createHttpsServer({ cert: serving.certPem, key: serving.keyPem });
  const authorized = (h: string | undefined) => h === `Bearer ${TOKEN}`;
  server.on('request', (req, res) => {
    const path = new URL(req.url ?? '/', 'https://x').pathname;
    seen.push({ method: req.method ?? '', path });
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (!authorized(req.headers.authorization))
      return send(401, {
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Failure',
        code: 401,
        reason: 'Unauthorized',
      });
    // Discovery, as little as kubectl needs to find pods and pods/exec.
    if (req.method === 'GET' && path === '/api')
      return send(200, {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: req.headers.host }],
      });
    if (req.method === 'GET' && path === '/apis')
      return send(200, { kind: 'APIGroupList', apiVersion: 'v1', groups: [] });
    if (req.method === 'GET' && path === '/api/v1')
      return send(200, {
        kind: 'APIResourceList',
        groupVersion: 'v1',
        resources: [
          {
            name: 'pods',
            singularName: 'pod',
            namespaced: true,
            kind: 'Pod',
            verbs: ['get'],
            shortNames: ['po'],
          },
          {
            name: 'pods/exec',
            singularName: '',
            namespaced: true,
            kind: 'PodExecOptions',
            verbs: ['create', 'get'],
          },
        ],
      });
    if (req.method === 'GET' && path === `/api/v1/namespaces/${NS}/pods/${POD}`)
      return send(200, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: POD, namespace: NS, uid: '5f0c7a4e-0000-4000-8000-000000000001' },
        spec: { containers: [{ name: CONTAINER, image: 'local' }] },
        status: { phase: 'Running', containerStatuses: [{ name: CONTAINER, ready: true, started: true }] },
      });
    send(404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 404, reason: 'NotFound' });
  });
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req, socket, head) => {
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
    const entry: Seen = {
      method: req.method ?? '',
      path: new URL(req.url ?? '/', 'https://x').pathname,
      upgrade: String(req.headers.upgrade),
    };
    seen.push(entry);
    if (!authorized(req.headers.authorization)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const p = serveExec(req, socket, head, (argv, o) => {
      if (argv[0] === 'no-such-program') throw new Error('no such program here');
      const child = spawn(argv[0]!, argv.slice(1), { stdio: [o.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
      processes.push(child);
      return child;
    }).then((outcome) => {
      entry.outcome = outcome;
    });
    pending.add(p);
    void p.finally(() => pending.delete(p));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'exec',
          cluster: {
            server: `https://127.0.0.1:${port}`,
            'certificate-authority-data': Buffer.from(ca.certPem).toString('base64'),
          },
        },
      ],
      users: [{ name: 'exec', user: { token: TOKEN } }],
      contexts: [{ name: 'exec', context: { cluster: 'exec', user: 'exec', namespace: NS } }],
      'current-context': 'exec',
    }),
  );
  return {
    kubeconfig,
    seen,
    /** Waits for the exec sessions under way to finish (their outcomes recorded). */
    settled: () => Promise.all([...pending]),
    processes,
    /** Upgraded connections not yet closed. */
    openUpgrades: () => upgraded.size,
    stop: async () => {
      // Only a broken session leaves one open (the tests check that none is).
      for (const s of upgraded) s.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Runs kubectl with `stdin` piped in (or none), bounded in time. */
function kubectl(bin: string, kubeconfig: string, home: string, args: string[], stdin?: Buffer) {
  return run([bin, '--kubeconfig', kubeconfig, ...args], home, stdin);
}

/** Runs `argv` (HOME=`home`, no proxy) with `stdin` piped in (or none), bounded in time. */
function run(
  argv: string[],
  home: string,
  stdin?: Buffer,
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, NO_PROXY: '*', no_proxy: '*' };
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      env,
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => {
      err += b;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${argv.join(' ')} did not finish within 60 s; stderr: ${err}`));
    }, 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
    if (stdin && child.stdin) {
      child.stdin.on('error', () => {});
      child.stdin.end(stdin);
    }
  });
}

/** script(1) (util-linux) gives kubectl the terminal `-t` wants. */
const scriptSkip =
  spawnSync('script', ['--version']).status === 0 ? undefined : 'script(1) (util-linux) is not installed';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

for (const version of VERSIONS) {
  const skip = requireLab([`bin/kubernetes/${version}/kubectl`], 'npm run lab:build');
  describe(`kubectl ${version} exec against serveExec`, { skip }, () => {
    let dir: string;
    let api: Awaited<ReturnType<typeof startApiServer>>;
    const bin = labBin('kubernetes', version, 'kubectl');
    const exec = (args: string[], stdin?: Buffer) =>
      kubectl(bin, api.kubeconfig, dir, ['exec', POD, '-n', NS, '-c', CONTAINER, ...args], stdin);
    /** The exec upgrades kubectl made since `from`, once their sessions are over and their connections closed. */
    const upgradesSince = async (from: number) => {
      await api.settled();
      await waitUntil('the exec connections are closed', async () => api.openUpgrades() === 0, 5_000);
      return api.seen.slice(from).filter((s) => s.upgrade !== undefined);
    };
    /** What serveExec reported for the one SPDY exec since `from`. */
    const spdyOutcome = async (from: number) => {
      const ups = (await upgradesSince(from)).filter((u) => u.upgrade?.toLowerCase() === 'spdy/3.1');
      assert.equal(ups.length, 1, JSON.stringify(ups));
      return ups[0]!.outcome;
    };

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'meshfed-exec-'));
      api = await startApiServer(dir);
    });
    after(async () => {
      await api?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    test('stdout, stderr and a non-zero exit code come back apart', async () => {
      const from = api.seen.length;
      const r = await exec(['--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
      assert.equal(r.stdout.toString(), 'out\n');
      assert.equal(r.stderr.split('\n')[0], 'err', r.stderr);
      assert.equal(r.code, 3, r.stderr);
      const ups = await upgradesSince(from);
      const spdy = ups.filter((u) => u.upgrade?.toLowerCase() === 'spdy/3.1');
      assert.equal(spdy.length, 1, JSON.stringify(ups));
      assert.deepEqual(spdy[0]!.outcome, { protocol: 'v4.channel.k8s.io', exitCode: 3 });
      assert.equal(spdy[0]!.method, 'POST');
      assert.equal(spdy[0]!.path, `/api/v1/namespaces/${NS}/pods/${POD}/exec`);
      // kubectl ≥ 1.30 tries a websocket first; the refusal makes it fall back to SPDY.
      const ws = ups.filter((u) => u.upgrade?.toLowerCase() === 'websocket');
      if (version >= '1.30') {
        assert.equal(ws.length, 1, JSON.stringify(ups));
        assert.equal(ws[0]!.outcome?.error, 'upgrade to websocket refused');
      } else assert.equal(ws.length, 0, JSON.stringify(ups));
    });

    test('exit code 0 and no output', async () => {
      const from = api.seen.length;
      const r = await exec(['--', 'true']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.length, 0);
      assert.equal(r.stderr, '');
      assert.deepEqual(await spdyOutcome(from), { protocol: 'v4.channel.k8s.io', exitCode: 0 });
    });

    test('-i: stdin reaches the process and its end ends it', async () => {
      const from = api.seen.length;
      const input = Buffer.from('hello\nworld\n');
      const r = await exec(['-i', '--', 'cat'], input);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), 'hello\nworld\n');
      assert.deepEqual(await spdyOutcome(from), { protocol: 'v4.channel.k8s.io', exitCode: 0 });
    });

    test('-i: 2 MB in and 5 MB out arrive intact', async () => {
      const input = Buffer.alloc(2_000_000);
      for (let i = 0; i < input.length; i++) input[i] = (i * 7919 + (i >> 11)) & 0xff;
      // The process reads nothing for a while: stdin backs up to kubectl, then flows again.
      const echoed = await exec(['-i', '--', 'sh', '-c', 'sleep 0.5; exec cat'], input);
      assert.equal(echoed.code, 0, echoed.stderr);
      assert.equal(echoed.stdout.length, input.length);
      assert.equal(sha(echoed.stdout), sha(input));

      const big = await exec(['--', 'seq', '1', '760000']); // 5.0 MB, every line different
      let expected = '';
      for (let i = 1; i <= 760000; i++) expected += `${i}\n`;
      assert.equal(big.code, 0, big.stderr);
      assert.ok(expected.length > 5_000_000);
      assert.equal(big.stdout.length, expected.length);
      assert.equal(sha(big.stdout), sha(expected));
    });

    test('a command that cannot start fails kubectl with the reason', async () => {
      const from = api.seen.length;
      const r = await exec(['--', 'no-such-program']);
      assert.equal(r.code, 1);
      assert.match(String((await spdyOutcome(from))?.error), /no such program here/);
      assert.match(
        r.stderr,
        /Internal error occurred: failed to start \["no-such-program"\]: no such program here/,
      );
    });

    test('-t (under script(1), for a terminal): served without one, stderr in the stdout stream', {
      skip: scriptSkip,
    }, async () => {
      const from = api.seen.length;
      const line = [bin, '--kubeconfig', api.kubeconfig, 'exec', '-it', POD, '-n', NS, '-c', CONTAINER, '--']
        .concat(['sh', '-c', "'echo out; echo err >&2; tty; exit 2'"])
        .join(' ');
      const r = await run(['script', '-qec', line, '/dev/null'], dir);
      assert.equal(r.code, 2, r.stdout.toString());
      // All through the one terminal: the command's lines as sent (kubectl puts the terminal in raw
      // mode; stdout and stderr were two pipes, so their order is not kept), then kubectl's own line.
      // kubectl may also log (klog, "E1126 …") a write of stdin or of a terminal size that raced the
      // close, as it does with a kubelet; those lines are left out.
      const lines = r.stdout
        .toString()
        .split(/\r?\n/)
        .filter((l) => !/^[EIW]\d{4} /.test(l));
      assert.deepEqual(lines.slice(0, 3).sort(), ['err', 'not a tty', 'out'], r.stdout.toString());
      assert.deepEqual(lines.slice(-2), ['command terminated with exit code 2', ''], r.stdout.toString());
      assert.deepEqual(await spdyOutcome(from), { protocol: 'v4.channel.k8s.io', exitCode: 2 });
    });

    test('kubectl going away kills the process', async () => {
      const from = api.seen.length;
      const child = spawn(
        bin,
        ['--kubeconfig', api.kubeconfig, 'exec', POD, '-n', NS, '-c', CONTAINER, '--'].concat([
          'sh',
          '-c',
          'echo started; exec sleep 60',
        ]),
        { stdio: ['ignore', 'pipe', 'ignore'], env: { PATH: process.env.PATH, HOME: dir, NO_PROXY: '*' } },
      );
      let out = '';
      child.stdout?.on('data', (b: Buffer) => {
        out += b;
      });
      await waitUntil('the command has started', async () => out === 'started\n', 30_000);
      const proc = api.processes.at(-1)!;
      child.kill('SIGKILL');
      const outcome = await spdyOutcome(from);
      assert.equal(outcome?.exitCode, undefined);
      assert.match(String(outcome?.error), /went away|closed/);
      if (proc.exitCode === null && proc.signalCode === null) await once(proc, 'exit');
      assert.equal(proc.signalCode, 'SIGKILL');
    });

    test('a process killed by a signal reports 128 + its number', async () => {
      const from = api.seen.length;
      const r = await exec(['--', 'sh', '-c', 'kill -TERM $$']);
      assert.equal(r.code, 143, r.stderr);
      assert.deepEqual(await spdyOutcome(from), { protocol: 'v4.channel.k8s.io', exitCode: 143 });
    });
  });
}

describe('spdy and exec parts, without kubectl', () => {
  test('the SPDY/3 header dictionary is the spec’s (as in moby/spdystream spdy/dictionary.go)', () => {
    assert.equal(SPDY3_DICTIONARY.length, 1423);
    assert.equal(sha(SPDY3_DICTIONARY), '51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02');
  });

  test('exec paths and queries parse', () => {
    assert.deepEqual(
      // As the API server asks a kubelet (core/v1 ExecStdinParam "input", ExecStdoutParam "output", …).
      parseExecRequest('/exec/ns1/pod1/c1?command=sh&command=-c&command=echo%20a%20b&input=1&output=1&tty=0'),
      {
        namespace: 'ns1',
        pod: 'pod1',
        container: 'c1',
        command: ['sh', '-c', 'echo a b'],
        stdin: true,
        stdout: true,
        stderr: false,
        tty: false,
      },
    );
    assert.equal(parseExecRequest('/exec/ns1/pod1/uid-1/c1?command=x')?.uid, 'uid-1');
    const api = parseExecRequest('/api/v1/namespaces/n/pods/p/exec?container=c&command=ls&stderr=true');
    assert.equal(api?.container, 'c');
    assert.equal(api?.stderr, true);
    assert.equal(parseExecRequest('/api/v1/namespaces/n/pods/p/log'), undefined);
    assert.equal(parseExecRequest('/exec/ns//c'), undefined);
  });

  test('the protocol is the first offered that is served; none in common is a 403 naming ours', async () => {
    const server = createHttpServer();
    server.on('upgrade', (req, socket, head) => {
      void serveExec(req, socket, head, () => {
        throw new Error('not run here');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    /** The response head to an exec upgrade offering `versions`. */
    const upgrade = (versions: string, upgradeTo = 'SPDY/3.1') =>
      new Promise<string>((resolve, reject) => {
        const c = connect(port, '127.0.0.1');
        let got = '';
        c.on('data', (b: Buffer) => {
          got += b.toString('latin1');
          const end = got.indexOf('\r\n\r\n');
          if (end >= 0) {
            c.destroy();
            resolve(got.slice(0, end));
          }
        });
        c.on('error', reject);
        c.write(
          `POST /exec/ns/pod/c?command=true&stdout=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n` +
            `Upgrade: ${upgradeTo}\r\nX-Stream-Protocol-Version: ${versions}\r\nContent-Length: 0\r\n\r\n`,
        );
      });
    try {
      const v3 = await upgrade('v5.channel.k8s.io, v3.channel.k8s.io,v4.channel.k8s.io');
      assert.match(v3, /^HTTP\/1.1 101 /);
      assert.match(v3, /\r\nX-Stream-Protocol-Version: v3.channel.k8s.io(\r\n|$)/);
      const none = await upgrade('channel.k8s.io');
      assert.match(none, /^HTTP\/1.1 403 /);
      assert.match(none, /\r\nX-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io\r\n/);
      assert.match(await upgrade('v4.channel.k8s.io', 'websocket'), /^HTTP\/1.1 400 /);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  /** A session on one end of a TCP connection; the test writes raw frames on the other. */
  async function sessionPair() {
    const server = createNetServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    const [socket] = await accepted;
    server.close();
    const session = new SpdySession(socket);
    const closed = once(session, 'close') as Promise<[Error | undefined]>;
    const received: Buffer[] = [];
    client.on('data', (b: Buffer) => received.push(b));
    const clientEnded = once(client, 'end');
    return { session, client, closed, received: () => Buffer.concat(received), clientEnded };
  }

  const control = (type: number, payload: Buffer, version = 3) => {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(0x8000 | version, 0);
    h.writeUInt16BE(type, 2);
    h.writeUInt32BE(payload.length, 4);
    return Buffer.concat([h, payload]);
  };

  test('a PING is echoed; a frame of another SPDY version closes the session with GOAWAY', async () => {
    const p = await sessionPair();
    p.client.write(control(6, Buffer.from([0, 0, 0, 1])));
    p.client.write(control(6, Buffer.from([0, 0, 0, 3]), 2));
    const [err] = await p.closed;
    assert.match(String(err), /SPDY version 2/);
    await p.clientEnded;
    const got = p.received();
    assert.deepEqual(got.subarray(0, 12), control(6, Buffer.from([0, 0, 0, 1])));
    // GOAWAY: last good stream 0, status PROTOCOL_ERROR
    assert.deepEqual(got.subarray(12), control(7, Buffer.from([0, 0, 0, 0, 0, 0, 0, 1])));
    p.client.destroy();
  });

  test('a SYN_STREAM whose header block is not zlib closes the session, not the process', async () => {
    const p = await sessionPair();
    const payload = Buffer.concat([
      Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
      Buffer.from('not zlib at all'),
    ]);
    p.client.write(control(1, payload));
    const [err] = await p.closed;
    assert.match(String(err), /header block/);
    p.client.destroy();
  });

  test('a header block claiming more headers than it holds closes the session', async () => {
    const p = await sessionPair();
    const block = Buffer.from([0, 0, 0, 200, 0, 0, 0, 1, 0x61]);
    // Compressed with the dictionary, as a peer would (a fresh context: this is the first block).
    const compressed = deflateSync(block, { dictionary: SPDY3_DICTIONARY });
    p.client.write(control(1, Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), compressed])));
    const [err] = await p.closed;
    assert.match(String(err), /header block claims 200 headers/);
    p.client.destroy();
  });

  test('streams: headers, data to FIN, our reply and data back', async () => {
    const p = await sessionPair();
    const streamSeen = once(p.session, 'stream');
    const block = Buffer.concat([
      Buffer.from([0, 0, 0, 1, 0, 0, 0, 10]),
      Buffer.from('streamtype'),
      Buffer.from([0, 0, 0, 5]),
      Buffer.from('stdin'),
    ]);
    const compressed = deflateSync(block, { dictionary: SPDY3_DICTIONARY });
    p.client.write(control(1, Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), compressed])));
    const data = Buffer.from([0, 0, 0, 1, 1, 0, 0, 3, 0x61, 0x62, 0x63]); // stream 1, FIN, "abc"
    p.client.write(data);
    const [stream] = (await streamSeen) as [SpdyStream];
    assert.deepEqual({ ...stream.headers }, { streamtype: 'stdin' });
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    await once(stream, 'end');
    assert.equal(Buffer.concat(chunks).toString(), 'abc');
    await new Promise<void>((r) => stream.end(Buffer.from('xyz'), () => r()));
    p.session.close();
    await p.clientEnded;
    const got = p.received();
    // SYN_REPLY (type 2) for stream 1 first, then DATA "xyz", DATA FIN, GOAWAY.
    assert.equal(got.readUInt16BE(2), 2);
    assert.equal(got.readUInt32BE(8), 1);
    const replyLen = 8 + (got.readUInt32BE(4) & 0xffffff);
    assert.deepEqual(
      got.subarray(replyLen, replyLen + 11),
      Buffer.from([0, 0, 0, 1, 0, 0, 0, 3, 0x78, 0x79, 0x7a]),
    );
    assert.deepEqual(got.subarray(replyLen + 11, replyLen + 19), Buffer.from([0, 0, 0, 1, 1, 0, 0, 0]));
    assert.equal(got.readUInt16BE(replyLen + 19 + 2), 7);
    p.client.destroy();
  });

  // The client side (src/kube/exec.ts runs kubectl's half of exec on it).
  test('client side: odd stream ids, ready on the reply, data both ways to FIN; the last frames survive the end', async () => {
    const p = await sessionPair();
    const client = new SpdySession(p.client, { client: true });
    const clientClosed = once(client, 'close');
    const accepted: SpdyStream[] = [];
    p.session.on('stream', (s) => {
      accepted.push(s);
      s.reply({ accepted: s.headers.streamtype ?? '' });
    });
    const read = (s: SpdyStream) =>
      new Promise<string>((resolve, reject) => {
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('end', () => resolve(Buffer.concat(chunks).toString()));
        s.on('close', () => reject(new Error(`stream ${s.id} closed before its FIN`)));
      });
    const error = client.openStream({ streamtype: 'error' });
    const stdin = client.openStream({ streamtype: 'stdin' });
    assert.deepEqual([error.id, stdin.id], [1, 3]);
    assert.deepEqual({ ...(await error.ready) }, { accepted: 'error' });
    assert.deepEqual({ ...(await stdin.ready) }, { accepted: 'stdin' });
    assert.deepEqual(
      accepted.map((s) => [s.id, s.headers.streamtype]),
      [
        [1, 'error'],
        [3, 'stdin'],
      ],
    );
    const serverGot = read(accepted[1]!);
    stdin.end('to the server');
    assert.equal(await serverGot, 'to the server');
    // The server writes, half-closes and ends the session at once (as serveExec does): the client
    // still gets it all, its data and FIN, before its session ends.
    const status = read(error);
    await new Promise<void>((r) => accepted[0]!.end('{"status":"Success"}', () => r()));
    p.session.close();
    assert.equal(await status, '{"status":"Success"}');
    assert.deepEqual(await clientClosed, [undefined]);
  });

  test("client side: the server's PINGs (even ids) are echoed, ours (odd) are not; a stream the server opens is refused", async (t) => {
    // Our client session on one end, a raw peer writing frames on the other.
    const server = createNetServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    const [peer] = await accepted;
    server.close();
    const client = new SpdySession(socket, { client: true });
    t.after(() => {
      client.close();
      peer.destroy();
      socket.destroy();
    });
    const received: Buffer[] = [];
    peer.on('data', (b: Buffer) => received.push(b));
    peer.write(control(6, Buffer.from([0, 0, 0, 2])));
    peer.write(control(6, Buffer.from([0, 0, 0, 1])));
    const block = Buffer.concat([
      Buffer.from([0, 0, 0, 1, 0, 0, 0, 1]),
      Buffer.from('a'),
      Buffer.from([0, 0, 0, 0]),
    ]);
    const compressed = deflateSync(block, { dictionary: SPDY3_DICTIONARY });
    peer.write(control(1, Buffer.concat([Buffer.from([0, 0, 0, 2, 0, 0, 0, 0, 0, 0]), compressed])));
    await waitUntil(
      'the PING echo and the RST_STREAM',
      async () => Buffer.concat(received).length >= 28,
      5_000,
    );
    const got = Buffer.concat(received);
    assert.deepEqual(got.subarray(0, 12), control(6, Buffer.from([0, 0, 0, 2])));
    // RST_STREAM for stream 2, REFUSED_STREAM (3)
    assert.deepEqual(got.subarray(12, 28), control(3, Buffer.from([0, 0, 0, 2, 0, 0, 0, 3])));
    assert.equal(got.length, 28, 'nothing else: the odd PING is not echoed');
  });
});
