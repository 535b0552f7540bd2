/**
 * The federation engine: makes N SPIRE servers trust each other and keeps
 * them trusting each other across CA rotations.
 *
 * - bootstrap: each server of a federated pair gets the peer's current bundle
 *   (read from the peer's server, written with `bundle set`), skipped when it
 *   already holds the same keys.
 * - relationships: the dynamic form (`federation create/update`) of "fetch
 *   this peer's bundle from this URL, authenticating this SPIFFE ID"; the
 *   static form is static-config.ts.
 * - status: per ordered pair (holder, peer), whether the holder holds what the
 *   peer's bundle endpoint serves now, and how old and how close to expiry it is.
 * - refresh / watch: when a peer's served bundle changes, every server that
 *   federates with it refreshes at once instead of at its refresh hint.
 *
 * Servers are reached through SpireServerCli (any transport); endpoints are
 * read directly over https_spiffe, authenticated with the peer's own bundle.
 * Work on different servers runs in parallel; failures are per pair, never
 * thrown for the whole run, so one dead server does not stop the others.
 */
import { mapLimit } from '../fleet/concurrency.js';
import { type Bundle, sameKeys } from '../spiffe/bundle.js';
import { BundleEndpointError, fetchBundle } from '../spiffe/endpoint.js';
import { type Relationship, SpireCliError, type SpireServerCli } from './spire-cli.js';

export interface FederationMember {
  /** Cluster name. */
  name: string;
  trustDomain: string;
  server: SpireServerCli;
  bundleEndpoint: { url: string; spiffeId: string };
}

/** Unordered pairs of member names; `fullMesh` makes every pair. */
export type Pair = readonly [string, string];

export function fullMesh(members: Array<{ name: string }>): Pair[] {
  const out: Pair[] = [];
  members.forEach((a, i) => {
    for (const b of members.slice(i + 1)) out.push([a.name, b.name]);
  });
  return out;
}

/** Every (holder, peer) direction of the pairs. */
export function directions(
  members: FederationMember[],
  pairs: Pair[],
): Array<[FederationMember, FederationMember]> {
  const byName = new Map(members.map((m) => [m.name, m]));
  const get = (n: string) => {
    const m = byName.get(n);
    if (!m) throw new Error(`federation pair names "${n}", which is not a member`);
    return m;
  };
  return pairs.flatMap(([a, b]) => [
    [get(a), get(b)] as [FederationMember, FederationMember],
    [get(b), get(a)] as [FederationMember, FederationMember],
  ]);
}

export type StepResult = 'created' | 'updated' | 'unchanged' | 'failed';

export interface PairStep {
  holder: string;
  peer: string;
  result: StepResult;
  error?: string;
  /** What failed, as thrown: its type tells a refusal from a server that is not up yet. */
  cause?: unknown;
  /**
   * Of a failed step, whose part failed: the peer's (its server could not
   * give its bundle, or the bundle does not authenticate its endpoint) or
   * the holder's (its server could not list or take the bundle).
   */
  failedAt?: 'holder' | 'peer';
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * Starts one read per member at once and returns its result by member name.
 * Each result is awaited later by the pairs that need it, so a failure
 * belongs to those pairs, not to the run.
 */
function perMember<T>(
  members: FederationMember[],
  read: (m: FederationMember) => Promise<T>,
): (name: string) => Promise<T> {
  const started = new Map<string, Promise<T>>();
  for (const m of members) {
    const p = read(m);
    p.catch(() => {}); // handled by the pairs that await it
    started.set(m.name, p);
  }
  return (name) => started.get(name) ?? Promise.reject(new Error(`"${name}" is not a member`));
}

/**
 * The most calls at once into one holder's server: a fleet of 8 has 7 peers
 * a holder, one pod exec each; one at a time made the bootstrap of 8 clusters
 * take about 10 s on the lab, and a real fleet adds a round trip to each.
 */
export const PER_HOLDER_CONCURRENCY = 4;

/** Across holders parallel; per holder at most PER_HOLDER_CONCURRENCY at once (one server's CLI is not hammered). */
async function perHolder<T>(
  dirs: Array<[FederationMember, FederationMember]>,
  fn: (holder: FederationMember, peer: FederationMember) => Promise<T>,
): Promise<T[]> {
  const groups = new Map<string, Array<[FederationMember, FederationMember]>>();
  for (const d of dirs) groups.set(d[0].name, [...(groups.get(d[0].name) ?? []), d]);
  const results = await Promise.all(
    [...groups.values()].map((g) => mapLimit(g, PER_HOLDER_CONCURRENCY, ([h, p]) => fn(h, p))),
  );
  return results.flat();
}

export class BundleOwnerError extends Error {
  override name = 'BundleOwnerError';
}

/**
 * Reads a member's bundle from its server and checks it is that trust
 * domain's: it must authenticate the member's bundle endpoint as the endpoint
 * SPIFFE ID of that trust domain. A bundle that authenticates another ID (the
 * transport reaches another domain's server, or the endpoint is another
 * domain's) is refused. An endpoint this machine cannot reach is not a refusal:
 * the bundle is then used as read.
 */
export async function verifiedOwnBundle(m: FederationMember): Promise<Bundle> {
  const bundle = await m.server.ownBundle(m.trustDomain);
  const refused = await endpointRefuses(m, bundle);
  if (refused)
    throw new BundleOwnerError(
      `the bundle read from ${m.server.target} is not ${m.trustDomain}'s: it does not authenticate ${m.bundleEndpoint.url} as ${m.bundleEndpoint.spiffeId} (${message(refused)})`,
      { cause: refused },
    );
  return bundle;
}

/**
 * Whether `bundle` fails to authenticate the member's bundle endpoint as its
 * SPIFFE ID: the error when the endpoint answered and was not accepted;
 * false when it was; undefined when the endpoint was not reached, so nothing
 * can be told.
 */
async function endpointRefuses(m: FederationMember, bundle: Bundle): Promise<Error | false | undefined> {
  try {
    await fetchBundle(
      m.bundleEndpoint.url,
      m.trustDomain,
      { type: 'https_spiffe', endpointSpiffeId: m.bundleEndpoint.spiffeId, bundle },
      { timeoutMs: 5000 },
    );
    return false;
  } catch (e) {
    if (e instanceof BundleEndpointError && (e.code === 'connect' || e.code === 'timeout')) return undefined;
    return e instanceof Error ? e : new Error(String(e));
  }
}

/** Every holder gets each peer's current bundle. Idempotent: an up-to-date holder is not written. */
export function bootstrap(members: FederationMember[], pairs: Pair[]): Promise<PairStep[]> {
  return bootstrapDirections(directions(members, pairs));
}

/**
 * `bootstrap` for the given directions (holder, peer) only: what a repair
 * re-bootstraps. Each peer's bundle is read and checked once
 * (`verifiedOwnBundle`), each holder's list once.
 */
export async function bootstrapDirections(
  dirs: Array<[FederationMember, FederationMember]>,
): Promise<PairStep[]> {
  const involved = (i: 0 | 1) => [...new Map(dirs.map((d) => [d[i].name, d[i]])).values()];
  const own = perMember(involved(1), verifiedOwnBundle);
  const heldBy = perMember(involved(0), (m) => m.server.heldBundles());
  return perHolder(dirs, async (holder, peer): Promise<PairStep> => {
    let failedAt: 'holder' | 'peer' = 'peer';
    try {
      const bundle = await own(peer.name);
      failedAt = 'holder';
      const held = (await heldBy(holder.name)).get(peer.trustDomain);
      if (held && sameKeys(held, bundle))
        return { holder: holder.name, peer: peer.name, result: 'unchanged' };
      await holder.server.setBundle(bundle);
      return { holder: holder.name, peer: peer.name, result: held ? 'updated' : 'created' };
    } catch (e) {
      return {
        holder: holder.name,
        peer: peer.name,
        result: 'failed',
        error: message(e),
        cause: e,
        failedAt,
      };
    }
  });
}

export function relationshipTo(peer: FederationMember): Relationship {
  return {
    trustDomain: peer.trustDomain,
    bundleEndpointUrl: peer.bundleEndpoint.url,
    profile: 'https_spiffe',
    endpointSpiffeId: peer.bundleEndpoint.spiffeId,
  };
}

const sameRelationship = (a: Relationship, b: Relationship) =>
  a.trustDomain === b.trustDomain &&
  a.bundleEndpointUrl === b.bundleEndpointUrl &&
  a.profile === b.profile &&
  (a.endpointSpiffeId ?? '') === (b.endpointSpiffeId ?? '');

/**
 * Dynamic relationships (`federation create/update`), created or corrected,
 * never duplicated. Each holder's creations go in one call and its
 * corrections in another (`-data`, a batch), not one call per peer; the
 * result is still per direction.
 */
export async function ensureRelationships(members: FederationMember[], pairs: Pair[]): Promise<PairStep[]> {
  const existing = perMember(members, (m) => m.server.relationships());
  const dirs = directions(members, pairs);
  const holders = [...new Map(dirs.map(([h]) => [h.name, h])).values()];
  const byHolder = new Map(
    await Promise.all(
      holders.map(async (holder): Promise<[string, Map<string, PairStep>]> => {
        const steps = new Map<string, PairStep>();
        const peers = dirs.filter(([h]) => h.name === holder.name).map(([, p]) => p);
        let have: Relationship[];
        try {
          have = await existing(holder.name);
        } catch (e) {
          for (const peer of peers)
            steps.set(peer.name, {
              holder: holder.name,
              peer: peer.name,
              result: 'failed',
              error: message(e),
              cause: e,
            });
          return [holder.name, steps];
        }
        const create: FederationMember[] = [];
        const update: FederationMember[] = [];
        for (const peer of peers) {
          const had = have.find((r) => r.trustDomain === peer.trustDomain);
          if (had && sameRelationship(had, relationshipTo(peer)))
            steps.set(peer.name, { holder: holder.name, peer: peer.name, result: 'unchanged' });
          else (had ? update : create).push(peer);
        }
        const apply = async (todo: FederationMember[], result: 'created' | 'updated') => {
          if (!todo.length) return;
          const rs = todo.map(relationshipTo);
          const done =
            result === 'created'
              ? await holder.server.createRelationships(rs)
              : await holder.server.updateRelationships(rs);
          for (const peer of todo) {
            const e = done.get(peer.trustDomain);
            steps.set(
              peer.name,
              e
                ? { holder: holder.name, peer: peer.name, result: 'failed', error: message(e), cause: e }
                : { holder: holder.name, peer: peer.name, result },
            );
          }
        };
        await apply(update, 'updated');
        await apply(create, 'created');
        return [holder.name, steps];
      }),
    ),
  );
  return holders.flatMap((h) =>
    dirs.filter(([x]) => x.name === h.name).map(([, p]) => byHolder.get(h.name)!.get(p.name)!),
  );
}

export type PairState =
  /** The holder holds exactly what the peer serves now. */
  | 'current'
  /** The holder holds a bundle of the peer, but not the one served now. */
  | 'stale'
  /** The holder holds no bundle of the peer. */
  | 'missing'
  /** The peer's server or bundle endpoint cannot be reached, so what it serves now is unknown. */
  | 'peer-unreachable'
  /** The holder's server cannot be reached. */
  | 'holder-unreachable';

export interface PairStatus {
  holder: string;
  peer: string;
  state: PairState;
  heldSequence?: number;
  servedSequence?: number;
  /** Seconds since the newest X.509 authority of the held bundle became valid. */
  ageSeconds?: number;
  /** When the last X.509 authority of the held bundle expires. */
  expiresAt?: Date;
  /** When the first X.509 authority of the held bundle expires: from then on it trusts less. */
  earliestExpiresAt?: Date;
  /** The refresh hint the peer's bundle endpoint serves now (`spiffe_refresh_hint`), when it gives one. */
  refreshHintSeconds?: number;
  /**
   * Of a stale direction: whether the held bundle still authenticates the
   * peer's bundle endpoint. SPIRE authenticates the endpoint with the bundle
   * it holds, so only then can a refresh (SPIRE's own, or `refreshHoldersOf`)
   * bring it current; when false, only a new bootstrap can.
   */
  selfHeals?: boolean;
  /** When this engine last made the holder refresh from the peer (refresh or watch), if it did. */
  lastRefreshed?: Date;
  detail?: string;
}

/**
 * What a member's bundle endpoint serves now, authenticated with `anchor` (a
 * bundle of the member obtained before) or else with the member's own bundle
 * read from its server; a failure with a given anchor is retried with the latter.
 */
export async function servedBundle(
  peer: FederationMember,
  timeoutMs = 5000,
  anchor?: Bundle,
): Promise<Bundle> {
  const fetchWith = (bundle: Bundle) =>
    fetchBundle(
      peer.bundleEndpoint.url,
      peer.trustDomain,
      { type: 'https_spiffe', endpointSpiffeId: peer.bundleEndpoint.spiffeId, bundle },
      { timeoutMs },
    );
  if (anchor) {
    try {
      return await fetchWith(anchor);
    } catch (e) {
      // An endpoint that cannot be reached is told as such: asking the peer's server would not reach it either.
      if (e instanceof BundleEndpointError && (e.code === 'connect' || e.code === 'timeout')) throw e;
      // Else the endpoint's certificate may chain to an authority newer than the anchor.
    }
  }
  return fetchWith(await peer.server.ownBundle(peer.trustDomain));
}

/** When the engine last refreshed holder ← peer; shared by refresh, watch and status. */
export class RefreshLog {
  private readonly at = new Map<string, Date>();
  record(holder: string, peer: string, when = new Date()): void {
    this.at.set(`${holder}\u0000${peer}`, when);
  }
  get(holder: string, peer: string): Date | undefined {
    return this.at.get(`${holder}\u0000${peer}`);
  }
}

export async function federationStatus(
  members: FederationMember[],
  pairs: Pair[],
  opts: { log?: RefreshLog; now?: Date } = {},
): Promise<PairStatus[]> {
  const now = opts.now ?? new Date();
  const served = perMember(members, (m) => servedBundle(m));
  const heldBy = perMember(members, (m) => m.server.heldBundles());
  return Promise.all(
    directions(members, pairs).map(async ([holder, peer]): Promise<PairStatus> => {
      const base: PairStatus = { holder: holder.name, peer: peer.name, state: 'current' };
      const last = opts.log?.get(holder.name, peer.name);
      if (last) base.lastRefreshed = last;
      let held: Bundle | undefined;
      try {
        held = (await heldBy(holder.name)).get(peer.trustDomain);
      } catch (e) {
        return { ...base, state: 'holder-unreachable', detail: message(e) };
      }
      if (!held)
        return {
          ...base,
          state: 'missing',
          detail: `${holder.name} holds no bundle for ${peer.trustDomain}`,
        };
      if (held.sequence !== undefined) base.heldSequence = held.sequence;
      const auths = held.x509Authorities;
      if (auths.length) {
        const newest = Math.max(...auths.map((a) => a.notBefore.getTime()));
        base.ageSeconds = Math.round((now.getTime() - newest) / 1000);
        base.expiresAt = new Date(Math.max(...auths.map((a) => a.notAfter.getTime())));
        base.earliestExpiresAt = new Date(Math.min(...auths.map((a) => a.notAfter.getTime())));
      }
      let current: Bundle;
      try {
        current = await served(peer.name);
      } catch (e) {
        return { ...base, state: 'peer-unreachable', detail: message(e) };
      }
      if (current.sequence !== undefined) base.servedSequence = current.sequence;
      if (current.refreshHintSeconds !== undefined) base.refreshHintSeconds = current.refreshHintSeconds;
      if (!sameKeys(held, current)) {
        const refused = await endpointRefuses(peer, held);
        return {
          ...base,
          state: 'stale',
          ...(refused === undefined ? {} : { selfHeals: !refused }),
          detail: `${holder.name} holds ${held.x509Authorities.length} X.509 authorities of ${peer.trustDomain}; its endpoint serves ${current.x509Authorities.length}, not the same${refused ? `; the held bundle no longer authenticates ${peer.bundleEndpoint.url} (${message(refused)})` : ''}`,
        };
      }
      return base;
    }),
  );
}

/** The holder fetches the peer's bundle from its endpoint now (`federation refresh`). */
async function refreshOne(
  holder: FederationMember,
  peer: FederationMember,
  log?: RefreshLog,
): Promise<PairStep> {
  try {
    await holder.server.refresh(peer.trustDomain);
    log?.record(holder.name, peer.name);
    return { holder: holder.name, peer: peer.name, result: 'updated' };
  } catch (e) {
    const error =
      e instanceof SpireCliError &&
      (e.grpcCode === 'NotFound' || /no federation relationship/.test(e.message))
        ? `${message(e)} (no relationship: run the relationships step first)`
        : message(e);
    return { holder: holder.name, peer: peer.name, result: 'failed', error, cause: e };
  }
}

/**
 * Makes every member that federates with `peer` refresh its bundle now (or
 * only the `holders` named).
 */
export async function refreshHoldersOf(
  members: FederationMember[],
  pairs: Pair[],
  peer: string,
  log?: RefreshLog,
  holders?: ReadonlySet<string>,
): Promise<PairStep[]> {
  const dirs = directions(members, pairs).filter(
    ([h, p]) => p.name === peer && (!holders || holders.has(h.name)),
  );
  return Promise.all(dirs.map(([holder, p]) => refreshOne(holder, p, log)));
}

/** Every holder refreshes every peer now: each holder its peers in turn, holders in parallel. */
export function refreshAll(
  members: FederationMember[],
  pairs: Pair[],
  log?: RefreshLog,
): Promise<PairStep[]> {
  return perHolder(directions(members, pairs), (holder, peer) => refreshOne(holder, peer, log));
}

export type WatchEvent =
  /** The first poll round has ended: what is served is recorded, changes are seen from now on. */
  | { type: 'watching'; peers: string[]; at: Date }
  | { type: 'served-changed'; peer: string; sequence?: number; at: Date }
  | { type: 'refreshed'; holder: string; peer: string; at: Date }
  /** Told once per holder and error; the refresh is tried again at every poll until it succeeds. */
  | { type: 'refresh-failed'; holder: string; peer: string; error: string; at: Date }
  | { type: 'endpoint-unreachable'; peer: string; error: string; at: Date }
  | { type: 'endpoint-back'; peer: string; at: Date }
  /** A member's SPIRE server (or what reaches it: its API server) does not answer its health check. */
  | { type: 'server-unreachable'; cluster: string; error: string; at: Date }
  /** It answers again; each direction it holds is refreshed once (it may have missed a change meanwhile). */
  | { type: 'server-back'; cluster: string; at: Date };

export interface Watcher {
  /**
   * Poll rounds completed so far by every member (each member polls on its
   * own, so one that is slow to answer delays only itself). The first only
   * records what is served, so a change made before it ends is never seen as
   * a change: a caller that changes a bundle waits for `polls >= 1` first (or
   * the `watching` event).
   */
  readonly polls: number;
  stop(): Promise<void>;
}

export interface WatchOptions {
  intervalMs?: number;
  onEvent?: (e: WatchEvent) => void;
  log?: RefreshLog;
  /**
   * Refresh every direction once in the first round: a watch that starts (or
   * starts again) cannot know what changed before it, so it catches up.
   */
  catchUp?: boolean;
  /**
   * How often each member's SPIRE server is health-checked (`spire-server
   * healthcheck` through its transport), so that a server or API server that
   * goes away is told even when nothing is owed to it (default: the interval,
   * at least 10 s; 0: never).
   */
  serverCheckMs?: number;
}

/**
 * Polls every member's bundle endpoint each `intervalMs`; when what one serves
 * changes, refreshes every server that federates with it. The first poll only
 * records what is served. Each member is polled on its own (a member whose
 * endpoint or server does not answer delays only its own polls, each bounded
 * by the endpoint's and the transport's timeouts), and each member's server is
 * health-checked every `serverCheckMs`. Errors become events; the watch goes
 * on: a refresh that failed (the holder's server or API server away) is owed,
 * and tried again at each poll of that peer until it succeeds.
 */
export function watchFederation(
  members: FederationMember[],
  pairs: Pair[],
  opts: WatchOptions = {},
): Watcher {
  const interval = opts.intervalMs ?? 2000;
  const serverCheckMs = opts.serverCheckMs ?? Math.max(interval, 10_000);
  const emit = opts.onEvent ?? (() => {});
  const federated = new Set(pairs.flat());
  const watched = members.filter((m) => federated.has(m.name));
  const dirs = directions(members, pairs);
  const last = new Map<string, Bundle>();
  const down = new Set<string>();
  const serverDown = new Set<string>();
  /** Per peer, the holders that still have to refresh from it, with the last error told of each. */
  const owed = new Map<string, Map<string, string | undefined>>();
  const due = (peer: string) => {
    const d = owed.get(peer) ?? new Map<string, string | undefined>();
    owed.set(peer, d);
    return d;
  };
  /** Every holder of `peer` refreshes from it. */
  const owe = (peer: string) => {
    for (const [h, p] of dirs) if (p.name === peer) due(peer).set(h.name, undefined);
  };
  /** `holder` refreshes from every peer it holds. */
  const oweHolder = (holder: string) => {
    for (const [h, p] of dirs)
      if (h.name === holder && !due(p.name).has(holder)) due(p.name).set(holder, undefined);
  };
  if (opts.catchUp) for (const m of watched) owe(m.name);
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  const inFlight = new Set<Promise<void>>();
  const completed = new Map<string, number>();
  let polls = 0;

  const refreshOwed = async (m: FederationMember) => {
    const d = owed.get(m.name);
    if (!d?.size) return;
    for (const step of await refreshHoldersOf(members, pairs, m.name, opts.log, new Set(d.keys()))) {
      if (step.result !== 'failed') {
        d.delete(step.holder);
        emit({ type: 'refreshed', holder: step.holder, peer: step.peer, at: new Date() });
        continue;
      }
      const error = step.error ?? '';
      if (d.get(step.holder) !== error)
        emit({ type: 'refresh-failed', holder: step.holder, peer: step.peer, error, at: new Date() });
      d.set(step.holder, error);
    }
  };

  const pollOne = async (m: FederationMember) => {
    let b: Bundle;
    try {
      b = await servedBundle(m, Math.min(interval * 2, 5000), last.get(m.name));
    } catch (e) {
      if (!down.has(m.name))
        emit({
          type: 'endpoint-unreachable',
          peer: m.name,
          // The endpoint's own errors name its URL; the peer's server's (its bundle to authenticate it) do not.
          error: e instanceof BundleEndpointError ? message(e) : `${m.bundleEndpoint.url}: ${message(e)}`,
          at: new Date(),
        });
      down.add(m.name);
      return;
    }
    if (down.delete(m.name)) emit({ type: 'endpoint-back', peer: m.name, at: new Date() });
    const prev = last.get(m.name);
    last.set(m.name, b);
    if (prev && !sameKeys(prev, b)) {
      emit({
        type: 'served-changed',
        peer: m.name,
        ...(b.sequence !== undefined ? { sequence: b.sequence } : {}),
        at: new Date(),
      });
      owe(m.name);
    }
    await refreshOwed(m);
  };

  const checkOne = async (m: FederationMember) => {
    const why = await m.server.healthcheck();
    if (why === undefined) {
      if (!serverDown.delete(m.name)) return;
      emit({ type: 'server-back', cluster: m.name, at: new Date() });
      oweHolder(m.name);
    } else if (!serverDown.has(m.name)) {
      serverDown.add(m.name);
      emit({
        type: 'server-unreachable',
        cluster: m.name,
        error: `${m.server.target}: ${why}`,
        at: new Date(),
      });
    }
  };

  const later = (fn: () => void, ms: number) => {
    if (stopped) return;
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  /** Runs `work` for `m` now and again `ms` after each run ends, until stopped; its failures are its own. */
  const every = (
    m: FederationMember,
    ms: number,
    work: (m: FederationMember) => Promise<void>,
    then?: () => void,
  ) => {
    const run = () => {
      if (stopped) return;
      const p: Promise<void> = work(m)
        .catch(() => {}) // every failure is an event already; nothing may end the loop
        .then(() => {
          then?.();
          later(run, ms);
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    };
    return run;
  };
  for (const m of watched) {
    every(m, interval, pollOne, () => {
      completed.set(m.name, (completed.get(m.name) ?? 0) + 1);
      const round = Math.min(...watched.map((w) => completed.get(w.name) ?? 0));
      if (round <= polls) return;
      polls = round;
      if (polls === 1) emit({ type: 'watching', peers: watched.map((w) => w.name), at: new Date() });
    })();
    if (serverCheckMs > 0) later(every(m, serverCheckMs, checkOne), serverCheckMs);
  }
  return {
    get polls() {
      return polls;
    },
    async stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      while (inFlight.size) await Promise.all([...inFlight]);
    },
  };
}
