/**
 * Cluster egress of a lab API server, the way managed clusters give their
 * control planes a way into the cluster network (konnectivity): the API
 * server's `cluster` egress (its EgressSelectorConfiguration, lab.ts) is an
 * HTTP CONNECT proxy on a unix socket, which the node agent serves
 * (EgressProxy, in the root namespace). Each CONNECT target is split:
 *
 * - loopback (127.0.0.0/8, `localhost`, ::1): dialled here, in the root
 *   namespace (the nodes' kubelet APIs, which the API server reaches at the
 *   nodes' Hostname address, localhost: exec, logs, port-forward);
 * - the cluster's pod and Service ranges: carried into the cluster's hub
 *   namespace through a unix socket door the hub's portal listens on
 *   (ConnectDoor, a portal route of its own), which dials the target from
 *   inside the hub: pods over the bridge, ClusterIPs on the hub's portal;
 * - anything else: refused (403) and logged; nothing is dialled.
 *
 * The door speaks the same CONNECT, so the proxy only checks the target,
 * asks the door, and answers the API server what the door answered.
 *
 * The answer is exactly what k8s.io/apiserver's HTTPConnect dialer
 * (egressselector.tunnelHTTPConnect) reads: a status line and an empty
 * header block, then nothing until the client speaks (it fails on any byte
 * buffered after the head).
 */
import { rmSync } from 'node:fs';
import { createServer, isIPv4, type Server, type Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { connectTo, removeStaleSocket } from './relay.js';

/** The whole answer to a CONNECT that was carried. */
export const CONNECT_ESTABLISHED = 'HTTP/1.1 200 Connection established\r\n\r\n';

/** A request or response head longer than this is refused. */
const MAX_HEAD = 8192;
/** A client that sends no complete head within this is dropped. */
const HEAD_TIMEOUT_MS = 10_000;

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  405: 'Method Not Allowed',
  502: 'Bad Gateway',
};

/** A CONNECT this side will not carry: the status it answers and why (logged, and in the answer's body). */
export class ConnectRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** "a.b.c.d/len" as a 32-bit network and mask. */
function parseCidr(cidr: string): { net: number; mask: number } {
  const [ip, len] = cidr.split('/');
  const bits = Number(len);
  if (!ip || !isIPv4(ip) || !(Number.isInteger(bits) && bits >= 0 && bits <= 32))
    throw new RangeError(`"${cidr}" is not an IPv4 CIDR`);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return { net: (ipv4(ip) & mask) >>> 0, mask };
}

const ipv4 = (ip: string): number => ip.split('.').reduce((a, o) => ((a << 8) | Number(o)) >>> 0, 0);

/** Whether IPv4 `ip` is in `cidr`. */
export function inCidr(ip: string, cidr: string): boolean {
  if (!isIPv4(ip)) return false;
  const { net, mask } = parseCidr(cidr);
  return (ipv4(ip) & mask) >>> 0 === net;
}

/** A CONNECT target, "host:port" or "[v6]:port". */
export function splitTarget(target: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(target);
  const port = Number(m?.[3]);
  if (!m || !(port >= 1 && port <= 65535)) throw new ConnectRefusal(400, `"${target}" is not host:port`);
  return { host: (m[1] ?? m[2])!, port };
}

export type EgressRoute =
  | { via: 'loopback'; host: string; port: number }
  | { via: 'cluster'; host: string; port: number };

/**
 * Where the egress proxy carries a CONNECT target: `ranges` are the cluster's
 * pod and Service ranges (IPv4 CIDRs). Throws ConnectRefusal (403) for any
 * other target, names included (the API server asks for addresses: nodes'
 * `localhost`, endpoints' and ClusterIPs' IPs).
 */
export function egressRoute(target: string, ranges: string[]): EgressRoute {
  const { host, port } = splitTarget(target);
  if (host === 'localhost' || host === '::1' || inCidr(host, '127.0.0.0/8'))
    // localhost as 127.0.0.1: what the nodes' kubelets listen on, whatever a name lookup would prefer.
    return { via: 'loopback', host: host === 'localhost' ? '127.0.0.1' : host, port };
  if (ranges.some((r) => inCidr(host, r))) return { via: 'cluster', host, port };
  throw new ConnectRefusal(
    403,
    `${target} is neither loopback nor in the cluster's ranges (${ranges.join(', ')})`,
  );
}

/**
 * Reads an HTTP head (up to the blank line) from `s`; bytes after it are
 * put back on the socket for whoever reads it next.
 */
export function readHead(s: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let finished = false;
    const done = (e?: Error, head?: string) => {
      if (finished) return;
      finished = true;
      s.removeListener('data', onData);
      s.removeListener('end', onEnd);
      s.removeListener('error', onEnd);
      s.setTimeout(0);
      s.pause();
      if (e) reject(e);
      else resolve(head!);
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const i = buf.indexOf('\r\n\r\n');
      if (i >= 0) {
        const rest = buf.subarray(i + 4);
        done(undefined, buf.subarray(0, i).toString('latin1'));
        if (rest.length) s.unshift(rest);
      } else if (buf.length > MAX_HEAD) done(new ConnectRefusal(400, `head longer than ${MAX_HEAD} bytes`));
    };
    const onEnd = (e?: Error) => done(e ?? new Error('closed before a complete head'));
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('error', onEnd);
    s.setTimeout(HEAD_TIMEOUT_MS, () => done(new Error(`no complete head within ${HEAD_TIMEOUT_MS} ms`)));
    s.resume();
  });
}

/** The target of a CONNECT request head. */
export function connectTarget(head: string): string {
  const m = /^(\S+) (\S+) HTTP\/1\.[01]$/.exec(head.split('\r\n')[0] ?? '');
  if (!m) throw new ConnectRefusal(400, 'not an HTTP/1 request');
  if (m[1] !== 'CONNECT') throw new ConnectRefusal(405, `${m[1]} is not CONNECT`);
  return m[2]!;
}

function answer(s: Socket, status: number, why: string): void {
  const body = `${why}\n`;
  s.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

const errorCode = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

/**
 * An HTTP CONNECT server on a unix socket: each connection's target goes to
 * `dial`, which returns the connected upstream or throws (a ConnectRefusal
 * is answered with its status, anything else with 502). Then bytes flow
 * both ways, as in a Relay.
 */
export class ConnectServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(
    readonly path: string,
    private readonly dial: (target: string) => Promise<Socket>,
    private readonly log: (line: string) => void,
  ) {
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (c) => void this.accept(c));
  }

  static async open(
    path: string,
    dial: (target: string) => Promise<Socket>,
    log: (line: string) => void,
  ): Promise<ConnectServer> {
    const c = new ConnectServer(path, dial, log);
    await removeStaleSocket(path);
    await new Promise<void>((resolve, reject) => {
      c.server.once('error', reject);
      c.server.listen(path, () => {
        c.server.removeListener('error', reject);
        c.server.on('error', (e) => log(`${path}: ${e.message}`));
        resolve();
      });
    });
    return c;
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
  }

  private async accept(client: Socket): Promise<void> {
    this.track(client);
    client.on('error', () => {});
    let target = '(none)';
    let up: Socket;
    try {
      target = connectTarget(await readHead(client));
      up = await this.dial(target);
    } catch (e) {
      const status = e instanceof ConnectRefusal ? e.status : 502;
      this.log(`CONNECT ${target}: ${status}: ${e instanceof ConnectRefusal ? e.message : errorCode(e)}`);
      if (!client.destroyed) answer(client, status, (e as Error).message);
      return;
    }
    this.track(up);
    if (client.destroyed) {
      up.destroy();
      return;
    }
    client.write(CONNECT_ESTABLISHED);
    const done = (e: NodeJS.ErrnoException | null) => {
      if (e && e.code !== 'ERR_STREAM_PREMATURE_CLOSE')
        this.log(`CONNECT ${target}: connection failed: ${errorCode(e)}`);
    };
    pipeline(client, up, done);
    pipeline(up, client, done);
  }

  /** Stops listening, destroys its connections and removes the socket file. */
  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
    rmSync(this.path, { force: true });
  }
}

/**
 * Asks the CONNECT server at unix socket `door` for `target`: the socket,
 * carried once the door answered 200; a ConnectRefusal with the door's
 * status otherwise.
 */
export async function connectThrough(door: string, target: string): Promise<Socket> {
  const s = await connectTo({ unix: door });
  try {
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    const head = await readHead(s);
    const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(head.split('\r\n')[0] ?? '');
    if (!m) throw new ConnectRefusal(502, `the door ${door} answered no HTTP status`);
    const status = Number(m[1]);
    if (status !== 200) throw new ConnectRefusal(status, `the door answered ${status} ${m[2] ?? ''}`.trim());
    return s;
  } catch (e) {
    s.destroy();
    throw e;
  }
}

/**
 * The portal's side (inside the hub): a CONNECT door that dials IPv4 targets
 * in `allow` from the namespace it runs in, and refuses (403) any other.
 */
export class ConnectDoor {
  private constructor(
    private readonly server: ConnectServer,
    private allowed: string[],
  ) {}

  static async open(path: string, allow: string[], log: (line: string) => void): Promise<ConnectDoor> {
    let door: ConnectDoor | undefined;
    const server = await ConnectServer.open(
      path,
      async (target) => {
        const { host, port } = splitTarget(target);
        const ranges = door?.allowed ?? allow;
        if (!ranges.some((r) => inCidr(host, r)))
          throw new ConnectRefusal(403, `${target} is not in ${ranges.join(', ')}`);
        return connectTo({ tcp: `${host}:${port}` });
      },
      (line) => log(`unix:${path}: ${line}`),
    );
    door = new ConnectDoor(server, allow);
    return door;
  }

  allow(): string[] {
    return this.allowed;
  }

  /** New CONNECTs are checked against `ranges`. */
  setAllow(ranges: string[]): void {
    for (const r of ranges) parseCidr(r);
    this.allowed = ranges;
  }

  close(): Promise<void> {
    return this.server.close();
  }
}

export interface EgressProxyOptions {
  /** The unix socket the API server's egress dials (udsName). */
  socket: string;
  /** The portal's CONNECT door into the cluster's hub. */
  door: string;
  /** The cluster's pod and Service ranges (IPv4 CIDRs), carried through the door. */
  ranges: string[];
  log(line: string): void;
}

/** The API server's `cluster` egress, in the root namespace (egressRoute splits the targets). */
export function startEgressProxy(o: EgressProxyOptions): Promise<ConnectServer> {
  for (const r of o.ranges) parseCidr(r);
  return ConnectServer.open(
    o.socket,
    async (target) => {
      const r = egressRoute(target, o.ranges);
      const up =
        r.via === 'loopback'
          ? await connectTo({ tcp: `${r.host}:${r.port}` })
          : await connectThrough(o.door, target);
      // One line a connection: the API server opens few (an exec, a logs stream, a proxied request).
      o.log(`egress: CONNECT ${target}: ${r.via === 'loopback' ? 'dialled here' : 'through the hub'}`);
      return up;
    },
    (line) => o.log(`egress: ${line}`),
  );
}
