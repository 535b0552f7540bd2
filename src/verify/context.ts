/**
 * What checks read: the fleet, one client per cluster, and the reads several
 * checks share (the SPIRE server's entries, the federation status, the
 * discovered addresses), each made once per run.
 */

import { BUNDLE_ENDPOINT_SERVICE, currentAddress, SPIRE_SERVER_POD } from '../engine/discover.js';
import { federationMember } from '../engine/federation.js';
import type { FederationMember } from '../federation/engine.js';
import { SpireServerCli } from '../federation/spire-cli.js';
import { podServerTransport } from '../federation/transport.js';
import type { ClusterSpec, Fleet } from '../fleet/model.js';
import type { ClusterClient, Unreachable } from '../kube/client.js';
import { type Finding, notRun, perCluster } from './catalog.js';

/** The code of the reachability check, which every stage runs first (reachability.ts). */
export const REACHABILITY = 'MF101';
/** What a finding not run because of an unreachable cluster says. */
export const UNREACHABLE_BLOCKING = 'its API server is unreachable';

export interface CheckContext {
  fleet: Fleet;
  /** The clients of the reachable clusters, by cluster name. */
  clients: Map<string, ClusterClient>;
  /** Why a cluster cannot be reached (by cluster name): MF101 fails it, its other checks are not run. */
  unreachable: Map<string, Unreachable>;
  /** API server versions of the reachable clusters, by cluster name. */
  versions: Map<string, string>;
  now: Date;
  /** Bound of one network call of a check. */
  timeoutMs: number;
  /** The value of `f`, computed once per key for the run. */
  memo<T>(key: string, f: () => Promise<T>): Promise<T>;
}

export function makeContext(o: {
  fleet: Fleet;
  clients: Map<string, ClusterClient>;
  versions: Map<string, string>;
  unreachable?: Map<string, Unreachable>;
  now?: Date;
  timeoutMs?: number;
}): CheckContext {
  const cache = new Map<string, Promise<unknown>>();
  return {
    fleet: o.fleet,
    clients: o.clients,
    versions: o.versions,
    unreachable: o.unreachable ?? new Map(),
    now: o.now ?? new Date(),
    timeoutMs: o.timeoutMs ?? 10_000,
    memo<T>(key: string, f: () => Promise<T>): Promise<T> {
      let p = cache.get(key) as Promise<T> | undefined;
      if (!p) {
        p = f();
        cache.set(key, p);
      }
      return p;
    },
  };
}

/** The clusters whose API server answered. */
export function reachable(ctx: CheckContext): ClusterSpec[] {
  return ctx.fleet.clusters.filter((c) => ctx.clients.has(c.name));
}

/** A not-run finding for each cluster that cannot be reached, in fleet order (MF101 says why). */
export function notRunUnreachable(ctx: CheckContext): Finding[] {
  return ctx.fleet.clusters
    .filter((c) => ctx.unreachable.has(c.name))
    .map((c) => ({
      ...notRun(`not run: ${UNREACHABLE_BLOCKING} (${REACHABILITY})`, REACHABILITY),
      cluster: c.name,
    }));
}

/** The names of `names` that cannot be reached. */
export function unreachableAmong(ctx: CheckContext, names: string[]): string[] {
  return names.filter((n) => ctx.unreachable.has(n));
}

/** `f` for every reachable cluster, in parallel, and a not-run finding for each unreachable one. */
export async function eachCluster(
  ctx: CheckContext,
  f: Parameters<typeof perCluster<ClusterSpec>>[1],
): Promise<Finding[]> {
  return [...(await perCluster(reachable(ctx), f)), ...notRunUnreachable(ctx)];
}

export function clientOf(ctx: CheckContext, cluster: string): ClusterClient {
  const c = ctx.clients.get(cluster);
  if (!c) throw new Error(`${cluster} is unreachable: ${ctx.unreachable.get(cluster)?.why ?? 'no client'}`);
  return c;
}

/** The cluster's SPIRE server, through pod exec (`spire-server` in spire/spire-server-0). */
export function spireOf(ctx: CheckContext, cluster: string): SpireServerCli {
  return new SpireServerCli(podServerTransport(clientOf(ctx, cluster), SPIRE_SERVER_POD));
}

/** The bundle endpoint address peers use (host:port), as the cluster's Service says now. */
export function bundleEndpointOf(ctx: CheckContext, cluster: string): Promise<string | undefined> {
  return ctx.memo(`be:${cluster}`, async () =>
    currentAddress(clientOf(ctx, cluster), BUNDLE_ENDPOINT_SERVICE),
  );
}

/** Federation members of the reachable clusters whose bundle endpoint has an address. */
export async function federationMembers(ctx: CheckContext): Promise<FederationMember[]> {
  return ctx.memo('members', async () => {
    const out: FederationMember[] = [];
    for (const c of reachable(ctx)) {
      const be = await bundleEndpointOf(ctx, c.name).catch(() => undefined);
      if (!be) continue;
      out.push(federationMember(c, clientOf(ctx, c.name), be));
    }
    return out;
  });
}
