/**
 * The portal: a relay process started inside a lab cluster's hub namespace
 * (network.ts) that carries connections across the namespace boundary.
 * Filesystem unix sockets are not scoped by network namespace, so they are
 * the door: the portal listens on TCP inside the hub (a Service's ClusterIP
 * on the hub's lo) and relays to unix sockets that root-namespace processes
 * serve, or listens on a unix socket and relays to pod addresses inside.
 * A `connect` route is a CONNECT door (egress.ts): a unix socket on which
 * the API server's egress proxy asks for any address of the cluster's
 * ranges, which the portal dials from inside.
 * The root-namespace halves (unix ↔ loopback TCP) run in the caller's
 * process: relayUnixToTcp and relayTcpToUnix.
 *
 * Its routes come from a JSON file (RouteTable), which it re-reads when the
 * file changes. After applying a version it writes `<routes>.ready`: the
 * version's generation and what listens, so a caller knows when a change
 * has taken effect (startPortal, PortalHandle.apply).
 */
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { startDaemon, stopDaemon } from '../daemon.js';
import { running } from '../procfs.js';
import { ConnectDoor } from './egress.js';
import { endpointKey, hostPort, Relay } from './relay.js';

const hostPortString = z.string().refine((s) => {
  try {
    hostPort(s);
    return true;
  } catch {
    return false;
  }
}, 'host:port');
const endpoint = z.union([
  z.strictObject({ tcp: hostPortString }),
  z.strictObject({ unix: z.string().startsWith('/') }),
]);
const cidr = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'an IPv4 CIDR');
const routeTable = z.strictObject({
  /** Raised by the writer with each version; the ready file echoes the version applied. */
  generation: z.number().int().nonnegative(),
  routes: z.array(
    z.union([
      z.strictObject({ listen: endpoint, to: z.array(endpoint).min(1) }),
      /**
       * A CONNECT door (egress.ts' ConnectDoor): on a unix socket, dials the
       * CONNECT target from inside the hub when it is in `allow`.
       */
      z.strictObject({
        listen: z.strictObject({ unix: z.string().startsWith('/') }),
        connect: z.strictObject({ allow: z.array(cidr).min(1) }),
      }),
    ]),
  ),
});

export type RouteTable = z.infer<typeof routeTable>;
export type Route = RouteTable['routes'][number];

/** What `<routes>.ready` holds. */
export interface PortalReport {
  generation: number;
  pid: number;
  /** endpointKey of each route listening. */
  listening: string[];
  /** Routes of the generation that could not listen (retried every pass). */
  failed: Array<{ listen: string; error: string }>;
}

export const readyFile = (routesFile: string) => `${routesFile}.ready`;

export function parseRouteTable(text: string): RouteTable {
  const table = routeTable.parse(JSON.parse(text));
  const keys = table.routes.map((r) => endpointKey(r.listen));
  const twice = keys.find((k, i) => keys.indexOf(k) !== i);
  if (twice) throw new Error(`two routes listen on ${twice}`);
  return table;
}

/** Writes a file whole or not at all (a reader polling it never sees half of it). */
function writeAtomically(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

export function writeRouteTable(file: string, table: RouteTable): void {
  writeAtomically(file, `${JSON.stringify(table, null, 2)}\n`);
}

function readReport(routesFile: string): PortalReport | undefined {
  try {
    return JSON.parse(readFileSync(readyFile(routesFile), 'utf8')) as PortalReport;
  } catch {
    return undefined;
  }
}

/**
 * The route table's relays, in the portal process: `poll()` applies the
 * file when it changed (or when a route of it still fails to listen) and
 * writes the ready report.
 */
export class Portal {
  private readonly relays = new Map<string, Relay | ConnectDoor>();
  private readonly failed = new Map<string, string>();
  private version = '';
  private table: RouteTable | undefined;

  constructor(
    readonly routesFile: string,
    private readonly log: (line: string) => void,
  ) {}

  async poll(): Promise<void> {
    const version = this.fileVersion();
    if (version !== this.version) {
      this.version = version;
      try {
        this.table = parseRouteTable(readFileSync(this.routesFile, 'utf8'));
      } catch (e) {
        this.log(`${this.routesFile}: ${(e as Error).message}; keeping the routes applied`);
        return;
      }
    } else if (this.failed.size === 0) return;
    if (this.table) await this.apply(this.table);
  }

  /** Identity of the file's content: writers replace it by rename, so the inode changes with each version. */
  private fileVersion(): string {
    try {
      const s = statSync(this.routesFile);
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code ?? 'unreadable';
    }
  }

  private async apply(table: RouteTable): Promise<void> {
    const wanted = new Map(table.routes.map((r) => [endpointKey(r.listen), r]));
    for (const [key, relay] of this.relays)
      if (!wanted.has(key)) {
        this.relays.delete(key);
        await relay.close();
        this.log(`${key}: removed`);
      }
    for (const [key, route] of wanted) await this.applyRoute(key, route);
    for (const key of this.failed.keys()) if (!wanted.has(key)) this.failed.delete(key);
    const report: PortalReport = {
      generation: table.generation,
      pid: process.pid,
      listening: [...this.relays.keys()],
      failed: [...this.failed].map(([listen, error]) => ({ listen, error })),
    };
    writeAtomically(readyFile(this.routesFile), `${JSON.stringify(report)}\n`);
  }

  private async applyRoute(key: string, route: Route): Promise<void> {
    const to =
      'to' in route ? route.to.map(endpointKey).join(', ') : `CONNECT to ${route.connect.allow.join(', ')}`;
    let relay = this.relays.get(key);
    if (relay && 'to' in route !== relay instanceof Relay) {
      // A route that changed kind: closed, then opened as the new kind.
      this.relays.delete(key);
      await relay.close();
      relay = undefined;
    }
    if (relay instanceof Relay && 'to' in route) {
      if (relay.targets().map(endpointKey).join(', ') !== to) this.log(`${key} → ${to}`);
      relay.retarget(route.to);
      return;
    }
    if (relay instanceof ConnectDoor && 'connect' in route) {
      if (relay.allow().join(', ') !== route.connect.allow.join(', ')) this.log(`${key} → ${to}`);
      relay.setAllow(route.connect.allow);
      return;
    }
    try {
      this.relays.set(
        key,
        'to' in route
          ? await Relay.open(route.listen, route.to, this.log)
          : await ConnectDoor.open(route.listen.unix, route.connect.allow, this.log),
      );
      this.failed.delete(key);
      this.log(`${key} → ${to}`);
    } catch (e) {
      const error = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      if (this.failed.get(key) !== error) this.log(`${key}: cannot listen: ${error}`);
      this.failed.set(key, error);
    }
  }

  /** Closes every listener (and their connections); unix socket files are removed. */
  async stop(): Promise<void> {
    await Promise.all([...this.relays.values()].map((r) => r.close()));
    this.relays.clear();
    rmSync(readyFile(this.routesFile), { force: true });
  }
}

const PORTAL_MAIN = fileURLToPath(new URL('./portal-main.js', import.meta.url));

export interface PortalHandle {
  pid: number;
  /** Replaces the routes (the next generation) and resolves once the portal listens on each. */
  apply(routes: Route[]): Promise<void>;
  /** TERM (KILL after a grace); resolves once the process is gone. */
  stop(): Promise<void>;
}

/**
 * Starts a portal in the namespace at `netnsPath` on `routesFile` (written
 * before, writeRouteTable), its output appended to `logFile`, and resolves
 * once it listens on every route of the file.
 */
export async function startPortal(
  netnsPath: string,
  routesFile: string,
  logFile: string,
  timeoutMs = 15_000,
): Promise<PortalHandle> {
  const { generation } = parseRouteTable(readFileSync(routesFile, 'utf8'));
  rmSync(readyFile(routesFile), { force: true });
  const started = startDaemon(
    'portal',
    'nsenter',
    [`--net=${netnsPath}`, process.execPath, PORTAL_MAIN, routesFile],
    logFile,
  );
  // nsenter --net execs node in place (no fork): the pid runs node, which
  // is what stopDaemon checks argv[0] against. Once the portal has reported
  // ready, it has long been exec'd.
  const daemon = { ...started, name: `portal in ${netnsPath}`, program: process.execPath };
  const pid = daemon.pid;
  const stop = () => stopDaemon(daemon);
  const waitFor = (g: number) => waitForReport(routesFile, logFile, pid, g, timeoutMs);
  try {
    await waitFor(generation);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    pid,
    stop,
    async apply(routes) {
      const next = parseRouteTable(readFileSync(routesFile, 'utf8')).generation + 1;
      writeRouteTable(routesFile, { generation: next, routes });
      await waitFor(next);
    },
  };
}

/** Polls the ready file until portal `pid` reports `generation` with every route listening. */
async function waitForReport(
  routesFile: string,
  logFile: string,
  pid: number,
  generation: number,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = readReport(routesFile);
    if (r?.pid === pid && r.generation === generation && r.failed.length === 0) return;
    const tail = () => {
      try {
        return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-5).join('\n');
      } catch {
        return '(no log)';
      }
    };
    if (!running(pid)) throw new Error(`the portal (pid ${pid}) exited; its log ends:\n${tail()}`);
    if (Date.now() > deadline) {
      const report =
        r?.pid === pid
          ? `it reports generation ${r.generation}${r.failed.map((f) => `, ${f.listen}: ${f.error}`).join('')}`
          : 'no report';
      throw new Error(
        `the portal (pid ${pid}) does not listen on routes generation ${generation} within ${timeoutMs} ms (${report}); its log ends:\n${tail()}`,
      );
    }
    await new Promise((res) => setTimeout(res, 25));
  }
}

export interface RelayHandle {
  /** Where it listens: a TCP relay opened on port 0 learns its port here. */
  address(): ReturnType<Relay['address']>;
  close(): Promise<void>;
}

/** Root-namespace side: a unix socket at `path` relayed to TCP `target` (loopback). */
export function relayUnixToTcp(
  path: string,
  target: { host: string; port: number },
  log: (line: string) => void = () => {},
): Promise<RelayHandle> {
  return Relay.open({ unix: path }, [{ tcp: `${target.host}:${target.port}` }], log);
}

/** Root-namespace side: TCP `listen` (loopback; port 0 for any) relayed to the unix socket at `path`. */
export function relayTcpToUnix(
  listen: { host: string; port: number },
  path: string,
  log: (line: string) => void = () => {},
): Promise<RelayHandle> {
  return Relay.open({ tcp: `${listen.host}:${listen.port}` }, [{ unix: path }], log);
}
