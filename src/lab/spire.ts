/**
 * SPIRE trust domains as real processes on this machine: per domain a
 * spire-server and a spire-agent, on their own loopback address (127.77.<block>.<n>)
 * with their own data folder and sockets. The server's UpstreamAuthority is
 * "disk", holding a root made like cert-manager's (so the chain workloads get
 * is root → SPIRE intermediate → SVID); agents attest with a join token and
 * workloads with the unix attestor (selector unix:uid:<uid>).
 *
 * Every process writes its log to <dir>/<name>.log; `logs()` returns them for
 * a failed test. `stop()` ends the processes (TERM, then KILL after a bound)
 * and waits for them; processes still running when Node exits are killed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SpireServerCli } from '../federation/spire-cli.js';
import { federatesWithBlocks, type StaticPeer } from '../federation/static-config.js';
import { execFileBounded, localServerTransport } from '../federation/transport.js';
import { parseGoDuration } from '../fleet/durations.js';
import { spireHas } from '../fleet/versions.js';
import { healthChecksBlock } from '../render/spire/server-conf.js';
import { type CertAndKey, makeCertManagerRoot } from './pki.js';
import { listensOn } from './procfs.js';

/** The loopback address of domain `index` in address block `block`. */
export function labAddress(block: number, index: number): string {
  if (!(block >= 1 && block <= 250 && index >= 1 && index <= 250))
    throw new Error(`lab address out of range: ${block}.${index}`);
  return `127.77.${block}.${index}`;
}

export const LAB_PORTS = {
  server: 18081,
  serverHealth: 18080,
  agentHealth: 18088,
  bundleEndpoint: 18443,
} as const;

export interface TrustDomainOptions {
  /** Cluster name the domain stands for (cluster-1 …); names the root's OU and the log files. */
  name: string;
  trustDomain: string;
  /** 1-based; the domain listens on 127.77.<block>.<index>. */
  index: number;
  /** 1–250: the lab's address block, so that labs of different processes do not collide (default 1). */
  block?: number;
  /** SPIRE release of the binaries (config keys differ across releases). */
  spireVersion: string;
  /** Folder holding spire-server and spire-agent. */
  binDir: string;
  /** Data folder (created). Keep it short: unix socket paths are limited to 107 bytes. */
  dir: string;
  /** Use the cert-manager-shaped root as UpstreamAuthority (default true). */
  upstreamRoot?: boolean;
  /** Lifetime of the root (the seed's cert-manager root: 21600h). */
  rootDuration?: string;
  caTTL?: string;
  svidTTL?: string;
  /** Refresh hint the bundle endpoint advertises (SPIRE's minimum is 1m). */
  refreshHint?: string;
  /** Static relationships written into server.conf (`federates_with`). */
  staticPeers?: StaticPeer[];
  /** Start an agent too (default true). */
  agent?: boolean;
  logLevel?: string;
}

interface Proc {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  running.add(child);
  child.on('exit', () => running.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of running) c.kill('SIGKILL');
    });
  }
}

const q = (s: string) => JSON.stringify(s);

async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  proc?: Proc,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  proc?.exited.then((c) => {
    exitCode = c;
  });
  while (Date.now() < deadline) {
    if (exitCode !== undefined)
      throw new Error(`${what}: the process exited (code ${exitCode}) before it was ready`);
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms`);
}

export class LabTrustDomain {
  readonly address: string;
  readonly serverSocket: string;
  readonly workloadSocket: string;
  readonly server: SpireServerCli;
  /** The join-token alias of this domain's agent: parent ID for workload entries. */
  readonly nodeId: string;
  root: CertAndKey | undefined;
  private serverProc: Proc | undefined;
  private agentProc: Proc | undefined;

  constructor(readonly opts: TrustDomainOptions) {
    this.address = labAddress(opts.block ?? 1, opts.index);
    this.serverSocket = join(opts.dir, 'server.sock');
    this.workloadSocket = join(opts.dir, 'workload.sock');
    this.server = new SpireServerCli(
      localServerTransport(join(opts.binDir, 'spire-server'), this.serverSocket, `lab ${opts.trustDomain}`),
    );
    this.nodeId = `spiffe://${opts.trustDomain}/lab/node`;
  }

  get trustDomain(): string {
    return this.opts.trustDomain;
  }

  get bundleEndpointUrl(): string {
    return `https://${this.address}:${LAB_PORTS.bundleEndpoint}`;
  }

  get bundleEndpointSpiffeId(): string {
    return `spiffe://${this.opts.trustDomain}/spire/server`;
  }

  serverConf(): string {
    const o = this.opts;
    const d = o.dir;
    const upstream =
      o.upstreamRoot === false
        ? ''
        : `
  UpstreamAuthority "disk" {
    plugin_data {
      cert_file_path = ${q(join(d, 'root.crt'))}
      key_file_path = ${q(join(d, 'root.key'))}
    }
  }`;
    return `server {
  bind_address = ${q(this.address)}
  bind_port = "${LAB_PORTS.server}"
  socket_path = ${q(this.serverSocket)}
  trust_domain = ${q(o.trustDomain)}
  data_dir = ${q(join(d, 'server'))}
  log_level = ${q(o.logLevel ?? 'INFO')}
  ca_key_type = "ec-p256"
  ca_ttl = ${q(o.caTTL ?? '24h')}
  default_x509_svid_ttl = ${q(o.svidTTL ?? '1h')}
  ca_subject {
    country = ["US"]
    organization = ["SPIRE"]
    common_name = ${q(`spire-intermediate-${o.name}`)}
  }
  federation {
    bundle_endpoint {
      address = ${q(this.address)}
      port = ${LAB_PORTS.bundleEndpoint}
${spireHas(o.spireVersion, 'bundleEndpointRefreshHint') ? `      refresh_hint = ${q(o.refreshHint ?? '1m')}\n` : ''}    }${federatesWithBlocks(o.staticPeers ?? [], '    ')}
  }
}

plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = ${q(join(d, 'server', 'datastore.sqlite3'))}
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      keys_path = ${q(join(d, 'server', 'keys.json'))}
    }
  }${upstream}
}

${healthChecksBlock(this.address, LAB_PORTS.serverHealth)}`;
  }

  agentConf(token: string): string {
    const d = this.opts.dir;
    return `agent {
  data_dir = ${q(join(d, 'agent'))}
  log_level = ${q(this.opts.logLevel ?? 'INFO')}
  server_address = ${q(this.address)}
  server_port = "${LAB_PORTS.server}"
  socket_path = ${q(this.workloadSocket)}
  trust_bundle_path = ${q(join(d, 'bootstrap.crt'))}
  trust_domain = ${q(this.opts.trustDomain)}
  join_token = ${q(token)}
}

plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}

${healthChecksBlock(this.address, LAB_PORTS.agentHealth)}`;
  }

  private spawn(name: string, args: string[]): Proc {
    const log = openSync(join(this.opts.dir, `${name}.log`), 'a');
    const child = spawn(join(this.opts.binDir, name), args, { stdio: ['ignore', log, log] });
    track(child);
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    return { name, child, exited };
  }

  /** Starts the server (writing the root first, unless it exists), then the agent. */
  async start(timeoutMs = 60_000): Promise<void> {
    const o = this.opts;
    mkdirSync(join(o.dir, 'server'), { recursive: true });
    mkdirSync(join(o.dir, 'agent'), { recursive: true });
    if (o.upstreamRoot !== false && !existsSync(join(o.dir, 'root.crt'))) await this.rotateRoot();
    writeFileSync(join(o.dir, 'server.conf'), this.serverConf());
    await this.startServer(timeoutMs);
    if (o.agent !== false) await this.startAgent(timeoutMs);
  }

  async startServer(timeoutMs = 60_000): Promise<void> {
    const proc = this.spawn('spire-server', ['run', '-config', join(this.opts.dir, 'server.conf')]);
    this.serverProc = proc;
    // Healthy through its own socket, and *this* process holds the API and bundle endpoint
    // ports of the domain's address (another lab's server there would answer a connect too).
    const pid = proc.child.pid ?? -1;
    await waitFor(
      `${this.trustDomain} spire-server`,
      async () =>
        listensOn(pid, this.address, LAB_PORTS.server) &&
        listensOn(pid, this.address, LAB_PORTS.bundleEndpoint) &&
        (await this.server.healthy()),
      timeoutMs,
      proc,
    );
  }

  async startAgent(timeoutMs = 60_000): Promise<void> {
    const d = this.opts.dir;
    // The agent trusts the server through the bundle read over the admin socket, not by skipping verification.
    const pem = await this.server.transport.run(['bundle', 'show']);
    writeFileSync(join(d, 'bootstrap.crt'), pem.stdout);
    // Join tokens are single-use and the agent keeps its key in memory: every start attests anew.
    const token = await this.server.joinToken(this.nodeId);
    writeFileSync(join(d, 'agent.conf'), this.agentConf(token), { mode: 0o600 });
    this.agentProc = this.spawn('spire-agent', ['run', '-config', join(d, 'agent.conf')]);
    const bin = join(this.opts.binDir, 'spire-agent');
    await waitFor(
      `${this.trustDomain} spire-agent`,
      async () =>
        (await execFileBounded(bin, ['healthcheck', '-socketPath', this.workloadSocket])).code === 0,
      timeoutMs,
      this.agentProc,
    );
  }

  /** Writes a new cert-manager-shaped root for the disk UpstreamAuthority (read again at the next mint). */
  async rotateRoot(): Promise<CertAndKey> {
    this.root = await makeCertManagerRoot(
      this.opts.name,
      parseGoDuration(this.opts.rootDuration ?? '21600h') ?? 0,
    );
    writeFileSync(join(this.opts.dir, 'root.key'), this.root.keyPem, { mode: 0o600 });
    writeFileSync(join(this.opts.dir, 'root.crt'), this.root.certPem);
    return this.root;
  }

  private static async end(p: Proc | undefined, graceMs: number): Promise<void> {
    if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
    p.child.kill('SIGTERM');
    const t = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
    await p.exited;
    clearTimeout(t);
  }

  async stopServer(graceMs = 5000): Promise<void> {
    await LabTrustDomain.end(this.serverProc, graceMs);
  }

  async stop(graceMs = 5000): Promise<void> {
    await LabTrustDomain.end(this.agentProc, graceMs);
    await this.stopServer(graceMs);
  }

  /** pids of the processes still running. */
  pids(): number[] {
    return [this.serverProc, this.agentProc]
      .filter((p): p is Proc => !!p && p.child.exitCode === null && p.child.signalCode === null)
      .map((p) => p.child.pid ?? -1);
  }

  logs(): string {
    return ['spire-server', 'spire-agent']
      .map((n) => join(this.opts.dir, `${n}.log`))
      .filter(existsSync)
      .map((f) => `--- ${f}\n${readFileSync(f, 'utf8')}`)
      .join('\n');
  }
}
