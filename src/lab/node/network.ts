/**
 * Network namespaces for the lab's real pods: each lab cluster gets a hub
 * namespace holding a bridge, and each pod (or node) a namespace of its own
 * whose eth0 is a veth into that bridge, so that lab processes reach each
 * other by their pod addresses while every packet stays on this machine.
 *
 * Nothing here ever touches the root network namespace: every `ip` command
 * that is not `ip netns …` runs with `-n <one of our namespaces>`, and veth
 * pairs are created inside the hub with their peer placed straight into the
 * pod's namespace, so no interface of ours ever exists outside them. The hub
 * has no route off the machine, so the pods' default route (via the hub)
 * leads nowhere else.
 *
 * Address plan of block b (a claimed lab block, claims.ts) and cluster n:
 * the cluster's network is 10.b.(16n).0/20, the hub 10.b.(16n).1, node k
 * 10.b.(16n).(10+k), and pods take 10.b.(16n+1).0 … 10.b.(16n+15).254.
 */
import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { execFileBounded } from '../../federation/transport.js';
import { BLOCK_MAX, BLOCK_MIN } from '../claims.js';
import { running } from '../procfs.js';

export const CLUSTERS_PER_BLOCK = 16;
export const PREFIX_LENGTH = 20;
/** Nodes 0…244 take 10.b.(16n).10 … .254. */
export const MAX_NODES = 245;
/** 15 /24s of the /20, less its broadcast address (10.b.(16n+15).255). */
export const POD_ADDRESSES = 15 * 256 - 1;

function checkBlock(b: number): void {
  if (!(Number.isInteger(b) && b >= BLOCK_MIN && b <= BLOCK_MAX))
    throw new RangeError(`lab block ${b} is not a whole number from ${BLOCK_MIN} to ${BLOCK_MAX}`);
}

function checkCluster(b: number, n: number): void {
  checkBlock(b);
  if (!(Number.isInteger(n) && n >= 0 && n < CLUSTERS_PER_BLOCK))
    throw new RangeError(`lab cluster index ${n} is not a whole number from 0 to ${CLUSTERS_PER_BLOCK - 1}`);
}

/** The cluster's pod network, "10.b.(16n).0/20". */
export function clusterNetwork(b: number, n: number): string {
  checkCluster(b, n);
  return `10.${b}.${16 * n}.0/${PREFIX_LENGTH}`;
}

/** The hub's address on its bridge: every pod's default gateway. */
export function hubAddress(b: number, n: number): string {
  checkCluster(b, n);
  return `10.${b}.${16 * n}.1`;
}

/** Node k's (0-based) address. */
export function nodeAddress(b: number, n: number, k: number): string {
  checkCluster(b, n);
  if (!(Number.isInteger(k) && k >= 0 && k < MAX_NODES))
    throw new RangeError(`node index ${k} is not a whole number from 0 to ${MAX_NODES - 1}`);
  return `10.${b}.${16 * n}.${10 + k}`;
}

/** The i-th pod address (0-based) of the cluster. */
export function podAddress(b: number, n: number, i: number): string {
  checkCluster(b, n);
  if (!(Number.isInteger(i) && i >= 0 && i < POD_ADDRESSES))
    throw new RangeError(`pod address index ${i} is not a whole number from 0 to ${POD_ADDRESSES - 1}`);
  return `10.${b}.${16 * n + 1 + Math.floor(i / 256)}.${i % 256}`;
}

/**
 * Hands out a cluster's pod addresses: the lowest free one, so the same
 * sequence of takes and releases always gives the same addresses, and the
 * same key keeps its address while it holds it.
 */
export class PodAddresses {
  private readonly byKey = new Map<string, number>();
  private readonly used = new Set<number>();

  constructor(
    readonly block: number,
    readonly cluster: number,
  ) {
    checkCluster(block, cluster);
  }

  take(key: string): string {
    let i = this.byKey.get(key);
    if (i === undefined) {
      i = 0;
      while (this.used.has(i)) i++;
      if (i >= POD_ADDRESSES)
        throw new RangeError(
          `cluster ${this.cluster} of lab block ${this.block}: all ${POD_ADDRESSES} pod addresses are taken`,
        );
      this.byKey.set(key, i);
      this.used.add(i);
    }
    return podAddress(this.block, this.cluster, i);
  }

  release(key: string): void {
    const i = this.byKey.get(key);
    if (i === undefined) return;
    this.byKey.delete(key);
    this.used.delete(i);
  }
}

/** The hub's namespace name, `mf<b>c<n>`. */
export function hubNamespace(b: number, n: number): string {
  checkCluster(b, n);
  return `mf${b}c${n}`;
}

const SHORT_NAME = /^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/;

/** A pod's (or node's) namespace name, `mf<b>c<n>-<short>`. */
export function podNamespace(b: number, n: number, short: string): string {
  if (!SHORT_NAME.test(short))
    throw new RangeError(
      `namespace short name "${short}": lowercase letters, digits and inner dashes, at most 40`,
    );
  return `${hubNamespace(b, n)}-${short}`;
}

/**
 * The hub-side veth of a pod's namespace. Linux caps interface names at 15
 * characters, so the short name goes in as a hash (32 bits, base 36, at most
 * 7 characters): `v250c15x` + 7 = 15. The name only has to be unique inside
 * its hub; attachNamespace checks it with the veth's alias (the pod
 * namespace's name), so a hash collision is an error, not a stolen link.
 */
export function vethName(b: number, n: number, short: string): string {
  podNamespace(b, n, short); // checks the short name
  const hash = createHash('sha256').update(short).digest().readUInt32BE(0);
  const name = `v${b}c${n}x${hash.toString(36)}`;
  if (name.length > 15) throw new Error(`veth name ${name} is longer than 15 characters`);
  return name;
}

export class NetworkError extends Error {
  override name = 'NetworkError';
  constructor(
    readonly command: string[],
    readonly stderr: string,
  ) {
    super(`${command.join(' ')}: ${stderr}`);
  }
}

/** Runs `ip` (no shell), with `stdin` if given (a batch); a failure names the command, its input and its stderr. */
async function ip(args: string[], stdin?: string): Promise<string> {
  const command = ['ip', ...args, ...(stdin ? [`<<< ${stdin.trim().split('\n').join('; ')}`] : [])];
  const r = await execFileBounded('ip', args, { timeoutMs: 30_000, ...(stdin ? { stdin } : {}) }).catch(
    (e: unknown) => {
      throw new NetworkError(command, (e as Error).message);
    },
  );
  if (r.code !== 0) throw new NetworkError(command, r.stderr.trim() || `exit code ${r.code}`);
  return r.stdout;
}

/** `ip` inside one of our namespaces: the only way this module changes anything but the namespace list. */
const ipIn = (netns: string, args: string[]) => ip(['-n', netns, ...args]);

/**
 * Several `ip` commands inside one namespace, in order, in one process
 * (`ip -batch`: it stops at the first that fails). A pod's namespace takes
 * about 25 commands; one process each cost its node agent a fork apiece
 * (~170 `ip` processes a cluster in a first `up`).
 */
async function ipBatchIn(netns: string, commands: string[][]): Promise<void> {
  if (commands.length)
    await ip(['-n', netns, '-batch', '-'], `${commands.map((c) => c.join(' ')).join('\n')}\n`);
}

interface Link {
  ifname: string;
  ifalias?: string;
}

async function links(netns: string): Promise<Link[]> {
  return JSON.parse(await ipIn(netns, ['-j', 'link', 'show'])) as Link[];
}

/** The IPv4 addresses ("a.b.c.d/len") of `dev` in `netns`. */
async function ipv4Addresses(netns: string, dev: string): Promise<string[]> {
  const out = JSON.parse(await ipIn(netns, ['-j', '-4', 'addr', 'show', 'dev', dev])) as Array<{
    addr_info?: Array<{ local: string; prefixlen: number }>;
  }>;
  return out.flatMap((l) => l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
}

async function allNamespaces(): Promise<string[]> {
  // Lines are "name" or "name (id: N)".
  return (await ip(['netns', 'list']))
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((l) => l !== '');
}

async function ensureNamespace(name: string): Promise<void> {
  if (!(await allNamespaces()).includes(name)) await ip(['netns', 'add', name]);
  await ipIn(name, ['link', 'set', 'lo', 'up']);
}

export interface Netns {
  name: string;
  /** What `nsenter --net=` and setns take. */
  path: string;
  ip: string;
}

const netnsPath = (name: string) => `/run/netns/${name}`;

/**
 * The lab load balancer's pools this lab's pods reach through their hub:
 * 127.(100+n).b.0/24 for clusters n = 1…CLUSTERS_PER_BLOCK
 * (loadbalancer.ts' lbAddress), as a pod of a real cluster reaches a cloud
 * load balancer's address from inside the cluster.
 */
export function loadBalancerPools(b: number): string[] {
  checkBlock(b);
  return Array.from({ length: CLUSTERS_PER_BLOCK }, (_, i) => `127.${101 + i}.${b}.0/24`);
}

/**
 * Loopback addresses are routable in `name` (route_localnet): packets to the
 * load balancer's 127.x pools may leave a pod by eth0 and arrive at the hub,
 * which delivers them to its portal (the pools are local there, inside 127/8).
 */
async function routeLocalnet(name: string): Promise<void> {
  await ip(['netns', 'exec', name, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet']);
}

/**
 * The hub bridge's own MAC address, locally administered, one per cluster
 * network. Set, not left to Linux: a bridge whose address nobody set takes
 * the lowest of its ports' (the veths' random ones), so a pod whose veth
 * came lower changed the gateway's MAC under every other pod, whose ARP
 * entry then pointed nowhere until it went stale and was probed again; their
 * connections through the hub (to the API server, Services) stalled for
 * 20 to 50 s, long enough for client-go's HTTP/2 health check to drop the
 * connection (cert-manager lost its leader lease so, now and then, in a first
 * `up` of 8 clusters).
 */
export function hubMac(b: number, n: number): string {
  checkCluster(b, n);
  return ['02', '6d', '66', b, n, 1]
    .map((x) => (typeof x === 'number' ? x.toString(16).padStart(2, '0') : x))
    .join(':');
}

/** The cluster's hub: namespace `mf<b>c<n>`, lo up, bridge br0 with the hub address and its own MAC (hubMac). Idempotent. */
export async function createHub(b: number, n: number): Promise<Netns> {
  const name = hubNamespace(b, n);
  await ensureNamespace(name);
  await routeLocalnet(name);
  const bridge = (await links(name)).some((l) => l.ifname === 'br0');
  await ipBatchIn(name, [
    ...(bridge ? [] : [['link', 'add', 'br0', 'type', 'bridge']]),
    ['link', 'set', 'br0', 'address', hubMac(b, n)],
    ['addr', 'replace', `${hubAddress(b, n)}/${PREFIX_LENGTH}`, 'dev', 'br0'],
    ['link', 'set', 'br0', 'up'],
  ]);
  return { name, path: netnsPath(name), ip: hubAddress(b, n) };
}

/** `ip` is a host of the cluster's /20 that is neither its network, its broadcast nor the hub. */
function checkClusterHost(b: number, n: number, address: string): void {
  const o = address.split('.').map(Number);
  const inNetwork = isIPv4(address) && o[0] === 10 && o[1] === b && Math.floor(o[2]! / 16) === n;
  const special = [`10.${b}.${16 * n}.0`, `10.${b}.${16 * n + 15}.255`, hubAddress(b, n)];
  if (!inNetwork || special.includes(address))
    throw new RangeError(`${address} is not a pod or node address of ${clusterNetwork(b, n)}`);
}

/**
 * The veth pair between the hub's bridge and the pod's eth0, made when
 * either end is missing (a pod namespace deleted and made again while a
 * process still held the old one leaves its peer elsewhere); its hub side
 * on the bridge and up.
 */
async function ensureVeth(hub: string, name: string, veth: string): Promise<void> {
  const hubSide = (await links(hub)).find((l) => l.ifname === veth);
  if (hubSide && hubSide.ifalias !== name)
    throw new Error(
      `veth ${veth} in ${hub} belongs to ${hubSide.ifalias ?? 'something else'}, not ${name} (hash collision)`,
    );
  const podSide = (await links(name)).some((l) => l.ifname === 'eth0');
  const attach = ['link', 'set', veth, 'master', 'br0', 'up'];
  if (hubSide && podSide) return ipBatchIn(hub, [attach]);
  if (podSide) await ipIn(name, ['link', 'del', 'eth0']);
  await ipBatchIn(hub, [
    ...(hubSide ? [['link', 'del', veth]] : []),
    ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name],
    ['link', 'set', veth, 'alias', name],
    attach,
  ]);
}

/**
 * A pod's (or node's) namespace on the cluster's hub: eth0 with `address`/20
 * and a default route via the hub. Idempotent: an existing namespace with
 * the same address is kept (with what runs in it); one with another address
 * is an error, since moving a running pod's address would break its peers.
 */
export async function attachNamespace(b: number, n: number, short: string, address: string): Promise<Netns> {
  checkClusterHost(b, n, address);
  const hub = (await createHub(b, n)).name;
  const name = podNamespace(b, n, short);
  const veth = vethName(b, n, short);
  await ensureNamespace(name);
  await ensureVeth(hub, name, veth);
  const want = `${address}/${PREFIX_LENGTH}`;
  const have = await ipv4Addresses(name, 'eth0');
  const other = have.filter((a) => a !== want);
  if (other.length > 0)
    throw new Error(`${name} already has ${other.join(', ')} on eth0, not ${want}: delete it first`);
  const lo = await ipv4Addresses(name, 'lo');
  await ipBatchIn(name, [
    ...(have.length === 0 ? [['addr', 'add', want, 'dev', 'eth0']] : []),
    ['link', 'set', 'eth0', 'up'],
    ['route', 'replace', 'default', 'via', hubAddress(b, n)],
    // Only 127.0.0.0/16 is the pod's own (127.0.0.1, and 127.0.0.6, which
    // Istio's sidecar binds its inbound connections to the app from): the load
    // balancer's pools, 127.101.0.0 and up, go to the hub.
    ...(lo.includes('127.0.0.1/8')
      ? [
          ['addr', 'add', '127.0.0.1/16', 'dev', 'lo'],
          ['addr', 'del', '127.0.0.1/8', 'dev', 'lo'],
        ]
      : []),
    ...loadBalancerPools(b).map((pool) => ['route', 'replace', pool, 'via', hubAddress(b, n), 'dev', 'eth0']),
  ]);
  await routeLocalnet(name);
  return { name, path: netnsPath(name), ip: address };
}

const OUR_NAMESPACE = /^mf(\d+)c(\d+)(?:-(.+))?$/;

/**
 * Ends the processes running in `name` (TERM, KILL after `graceMs`): a
 * namespace only goes away with the last process in it, and one left alive
 * would keep its interfaces and addresses, unnamed and out of reach.
 */
async function stopProcessesIn(name: string, graceMs = 5000): Promise<void> {
  const pids = (await ip(['netns', 'pids', name]))
    .split('\n')
    .filter((l) => /^\d+$/.test(l))
    .map(Number)
    .filter((p) => p !== process.pid);
  const signal = (sig: NodeJS.Signals) => {
    for (const p of pids.filter(running))
      try {
        process.kill(p, sig);
      } catch {
        // gone meanwhile
      }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  let killed = false;
  while (pids.some(running)) {
    if (!killed && Date.now() > deadline) {
      signal('SIGKILL');
      killed = true;
    }
    if (Date.now() > deadline + 10_000)
      throw new Error(`${name}: processes ${pids.filter(running).join(', ')} do not exit`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Deletes one of our namespaces (`mf<b>c<n>` or `mf<b>c<n>-<short>`), ending what runs in it. */
export async function deleteNamespace(name: string): Promise<void> {
  const m = OUR_NAMESPACE.exec(name);
  if (!m) throw new RangeError(`${name} is not a lab network namespace (mf<b>c<n>[-<short>])`);
  if (!(await allNamespaces()).includes(name)) return;
  await stopProcessesIn(name);
  const [b, n, short] = [Number(m[1]), Number(m[2]), m[3]];
  const hub = hubNamespace(b, n);
  // The kernel tears a namespace down in the background; deleting the veth
  // now means the hub has none of this pod's left when we return.
  if (short !== undefined && (await allNamespaces()).includes(hub)) {
    const veth = vethName(b, n, short);
    if ((await links(hub)).some((l) => l.ifname === veth)) await ipIn(hub, ['link', 'del', veth]);
  }
  await ip(['netns', 'delete', name]);
}

/** Every namespace of lab block `b`, hubs and pods. */
export async function labNamespaces(b: number): Promise<string[]> {
  checkBlock(b);
  return (await allNamespaces()).filter((name) => OUR_NAMESPACE.exec(name)?.[1] === String(b));
}

/** Deletes every namespace of block `b`, pods first, then hubs; fails if any is left. */
export async function deleteLabNetworks(b: number): Promise<void> {
  const names = await labNamespaces(b);
  const isHub = (name: string) => OUR_NAMESPACE.exec(name)?.[3] === undefined;
  await Promise.all(names.filter((x) => !isHub(x)).map(deleteNamespace));
  await Promise.all(names.filter(isHub).map(deleteNamespace));
  const left = await labNamespaces(b);
  if (left.length > 0) throw new Error(`lab block ${b}: namespaces ${left.join(', ')} are still there`);
}

function checkHostAddress(address: string): void {
  if (!isIPv4(address)) throw new RangeError(`${address} is not an IPv4 address`);
}

/** A /32 on the hub's lo: an address (a Service's ClusterIP) pods reach through their default route. */
export async function addHubAddress(b: number, n: number, address: string): Promise<void> {
  checkHostAddress(address);
  await ipIn(hubNamespace(b, n), ['addr', 'replace', `${address}/32`, 'dev', 'lo']);
}

/** Removes an address addHubAddress added; nothing to do when it is not there. */
export async function removeHubAddress(b: number, n: number, address: string): Promise<void> {
  checkHostAddress(address);
  const hub = hubNamespace(b, n);
  if ((await ipv4Addresses(hub, 'lo')).includes(`${address}/32`))
    await ipIn(hub, ['addr', 'del', `${address}/32`, 'dev', 'lo']);
}
