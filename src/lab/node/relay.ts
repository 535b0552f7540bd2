/**
 * Byte relays between TCP and unix-socket endpoints: the pieces the portal
 * (portal-main.ts) and its root-namespace side (portal.ts) are made of.
 *
 * A relay listens on one endpoint and, per connection, connects to one of
 * its targets, taking them in turn and skipping a target that refuses; when
 * all refuse, the client is closed. Bytes flow through stream.pipeline both
 * ways, so backpressure holds (nothing is buffered without bound), an end
 * (half-close) on one side is passed to the other, and an error on either
 * side destroys both.
 */
import { existsSync, lstatSync, rmSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { pipeline } from 'node:stream';

/** "host:port" over TCP, or a filesystem unix socket's path. */
export type Endpoint = { tcp: string } | { unix: string };

export const endpointKey = (e: Endpoint): string => ('tcp' in e ? `tcp:${e.tcp}` : `unix:${e.unix}`);

export function hostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !(Number.isInteger(port) && port >= 0 && port <= 65535))
    throw new RangeError(`"${s}" is not host:port`);
  return { host: s.slice(0, i), port };
}

/** A connect that takes longer than this counts as a refusal (an address nothing answers ARP for). */
const CONNECT_TIMEOUT_MS = 3000;

const errorCode = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

/**
 * Connects to `e`. allowHalfOpen (here and on the relay's server): a socket
 * that receives an end must not end its own side, which still relays the
 * other direction.
 */
export function connectTo(e: Endpoint): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s =
      'tcp' in e
        ? connect({ ...hostPort(e.tcp), allowHalfOpen: true })
        : connect({ path: e.unix, allowHalfOpen: true });
    s.setTimeout(CONNECT_TIMEOUT_MS, () =>
      s.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })),
    );
    s.once('error', reject);
    s.once('connect', () => {
      s.setTimeout(0);
      s.removeListener('error', reject);
      resolve(s);
    });
  });
}

/**
 * A leftover socket file at `path` (its process is gone: connecting is
 * refused) is removed so the path can be listened on again; a live one, or
 * anything that is not a socket, is left alone and listening fails.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path) || !lstatSync(path).isSocket()) return;
  const live = await connectTo({ unix: path }).then(
    (s) => {
      s.destroy();
      return true;
    },
    () => false,
  );
  if (!live) rmSync(path, { force: true });
}

export class Relay {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private turn = 0;

  private constructor(
    readonly listen: Endpoint,
    private to: Endpoint[],
    private readonly log: (line: string) => void,
  ) {
    // pauseOnConnect: nothing is read from a client before its target is connected.
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (c) => this.accept(c));
  }

  /** Listens on `listen`; resolves once listening, rejects with the listen error (EADDRINUSE, EADDRNOTAVAIL …). */
  static async open(listen: Endpoint, targets: Endpoint[], log: (line: string) => void): Promise<Relay> {
    const r = new Relay(listen, targets, log);
    if ('unix' in listen) await removeStaleSocket(listen.unix);
    await new Promise<void>((resolve, reject) => {
      r.server.once('error', reject);
      const ready = () => {
        r.server.removeListener('error', reject);
        r.server.on('error', (e) => log(`${endpointKey(listen)}: ${e.message}`));
        resolve();
      };
      if ('unix' in listen) r.server.listen(listen.unix, ready);
      else r.server.listen(hostPort(listen.tcp).port, hostPort(listen.tcp).host, ready);
    });
    return r;
  }

  /** Where it listens (the port a TCP relay opened on port 0 got). */
  address(): AddressInfo | string {
    return this.server.address()!;
  }

  targets(): Endpoint[] {
    return this.to;
  }

  /** New connections go to `targets`; connections already relayed stay where they are. */
  retarget(targets: Endpoint[]): void {
    this.to = targets;
  }

  /** Stops listening and destroys its connections; a unix socket's file is removed. */
  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
    if ('unix' in this.listen) rmSync(this.listen.unix, { force: true });
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
  }

  private accept(client: Socket): void {
    this.track(client);
    // Until the target is connected nothing else listens on the client: a
    // reset then only destroys it, which the code below sees.
    client.on('error', () => {});
    void this.connectTarget().then((up) => {
      if (!up) {
        this.log(`${endpointKey(this.listen)}: every target refused; connection closed`);
        client.destroy();
        return;
      }
      this.track(up);
      if (client.destroyed) {
        up.destroy();
        return;
      }
      const done = (e: NodeJS.ErrnoException | null) => {
        // The second direction of a failed connection ends "prematurely": not news.
        if (e && e.code !== 'ERR_STREAM_PREMATURE_CLOSE')
          this.log(`${endpointKey(this.listen)}: connection failed: ${errorCode(e)}`);
      };
      pipeline(client, up, done);
      pipeline(up, client, done);
    });
  }

  /** The first target, from this connection's turn on, that accepts; undefined when all refuse. */
  private async connectTarget(): Promise<Socket | undefined> {
    const targets = this.to;
    const first = this.turn++;
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(first + i) % targets.length]!;
      try {
        return await connectTo(t);
      } catch (e) {
        this.log(`${endpointKey(this.listen)}: target ${endpointKey(t)} refused (${errorCode(e)})`);
      }
    }
    return undefined;
  }
}
