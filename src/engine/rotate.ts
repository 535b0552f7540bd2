/**
 * `meshfed rotate root|spire-ca --cluster NAME`: a cluster's cert-manager
 * root (with a new key) or its SPIRE intermediate, rotated without an outage.
 *
 * The order is the whole point. A peer, and every proxy of the fleet, must
 * trust a new authority before anything is issued under it, and the old one
 * leaves the trust bundles only when nothing issued under it is still in use.
 * For the root:
 *
 *   new-root   cert-manager issues the root again with a new key (the root
 *              Certificate's Issuing condition, as `cmctl renew` sets it);
 *              the issuer signs with it from now on, but nothing has asked.
 *   prepare    SPIRE prepares its next intermediate, signed by the new root;
 *              the new root joins SPIRE's bundle beside the old one, and the
 *              bundle endpoint serves both. Nothing is signed with it yet.
 *   propagate  every peer's SPIRE server refreshes the bundle now, and every
 *              proxy of every cluster holds the new root in its ROOTCA.
 *   activate   SPIRE signs with the new intermediate.
 *   reissue    the old root is tainted: SPIRE's agents and server re-issue
 *              every SVID it signed; every proxy of the cluster presents an
 *              SVID under the new root, and so does the bundle endpoint.
 *   istio-ca   Istio's plug-in CA (cacerts) is issued again under the new root.
 *   retire     the old root is revoked: it leaves the bundle, the peers
 *              refresh, and no proxy trusts it any longer.
 *
 * `rotate spire-ca` is prepare, activate and the wait for every proxy of the
 * cluster to present an SVID of the new intermediate (an intermediate is in
 * no bundle, so there is nothing to propagate or revoke; SPIRE refuses to
 * taint one under an UpstreamAuthority, so the SVIDs move at their own
 * half-life, within half the SVID TTL).
 *
 * Each step is verified before the next. Each is read back from the
 * clusters, not from a local record, so running the command again after a
 * failure continues where it stopped; a failure leaves the fleet trusting
 * what it trusted before the step.
 *
 * SPIRE before 1.11 (the seed's 1.5.1) has no API to prepare, activate,
 * taint or revoke: the steps that need it are listed as what it cannot do.
 */
import type { FederationMember, Pair } from '../federation/engine.js';
import { type RefreshLog, refreshHoldersOf, servedBundle } from '../federation/engine.js';
import type { X509AuthorityState } from '../federation/spire-cli.js';
import { parseGoDuration } from '../fleet/durations.js';
import type { Fleet } from '../fleet/model.js';
import { compareVersions } from '../fleet/versions.js';
import type { ClusterClient, KubeObject, ObjectRef } from '../kube/client.js';
import { ROOT_ISSUER } from '../render/cert-manager.js';
import { ISTIO_NAMESPACE } from '../render/namespaces.js';
import type { Bundle } from '../spiffe/bundle.js';
import { fetchBundle } from '../spiffe/endpoint.js';
import { type CertView, parsePemCertificates } from '../spiffe/x509.js';
import { mapLimit } from './order.js';
import { listProxies, type ProxyView, proxyName, readFleetProxies, readProxy } from './proxies.js';

export type RotationKind = 'root' | 'spire-ca';

export type StepId = 'new-root' | 'prepare' | 'propagate' | 'activate' | 'reissue' | 'istio-ca' | 'retire';

export interface PlannedStep {
  id: StepId;
  /** What it does. */
  does: string;
  /** What is verified before the next step. */
  verifies: string;
  /** Set when the fleet's SPIRE cannot do this step: why, and what happens instead. */
  cannot?: string;
}

/** SPIRE 1.11 added tainting and revoking (forced rotation); prepare/activate came in 1.9. */
export const SPIRE_FORCED_ROTATION = '1.11.0';

export function spireCanRotate(fleet: Fleet): boolean {
  return compareVersions(fleet.versions.spire, SPIRE_FORCED_ROTATION) >= 0;
}

/** The steps of a rotation, for `--dry-run` and for the run itself. Pure. */
export function rotationPlan(fleet: Fleet, cluster: string, kind: RotationKind): PlannedStep[] {
  const c = fleet.clusters.find((x) => x.name === cluster);
  if (!c) throw new Error(`no cluster ${cluster} in the fleet`);
  const td = c.trustDomain;
  const peers = fleet.federation.pairs
    .filter(([a, b]) => a === cluster || b === cluster)
    .map(([a, b]) => (a === cluster ? b : a));
  const half = formatMs((parseGoDuration(fleet.ca.spire.svidTTL) ?? 3_600_000) / 2);
  const old = !spireCanRotate(fleet)
    ? `SPIRE ${fleet.versions.spire} has no API for it (SPIRE ${SPIRE_FORCED_ROTATION} added it)`
    : undefined;
  const steps: PlannedStep[] = [];
  if (kind === 'root')
    steps.push({
      id: 'new-root',
      does: `cert-manager issues ${cluster}'s root (cert-manager/${ROOT_ISSUER}) again with a new key`,
      verifies: 'the root Secret holds a new certificate with a new key and the Certificate is Ready',
    });
  steps.push({
    id: 'prepare',
    does:
      kind === 'root'
        ? `${td}'s SPIRE server prepares its next intermediate under the new root: the new root joins its bundle beside the old`
        : `${td}'s SPIRE server prepares its next intermediate (same root)`,
    verifies:
      kind === 'root'
        ? 'the prepared authority is signed by the new root; the bundle endpoint serves both roots'
        : 'the prepared authority is signed by the current root; the served bundle is unchanged',
    ...(old && {
      cannot: `${old}: SPIRE ${fleet.versions.spire} prepares its next intermediate on its own schedule, at half its CA's life (ca_ttl ${fleet.ca.spire.caTTL}), under the root cert-manager holds then`,
    }),
  });
  if (kind === 'root')
    steps.push({
      id: 'propagate',
      does: `every peer (${peers.join(', ') || 'none'}) refreshes ${td}'s bundle now`,
      verifies: `every peer's SPIRE server holds the new root, and every proxy of the fleet trusts it for ${td}`,
      ...(old && {
        cannot: `${old} to wait for: keep \`meshfed federation watch\` running so the peers refresh as soon as the bundle changes`,
      }),
    });
  steps.push({
    id: 'activate',
    does: `${td}'s SPIRE server signs with the prepared intermediate`,
    verifies: 'the active authority is the prepared one',
    ...(old && {
      cannot: `${old}: it activates its next intermediate on its own schedule, when the active one has a sixth of its life left`,
    }),
  });
  if (kind === 'root') {
    steps.push({
      id: 'reissue',
      does: "the old root is tainted: SPIRE's server and agents re-issue everything it signed",
      verifies: `every proxy of ${cluster} presents an SVID under the new root, and so does the bundle endpoint`,
      ...(old && {
        cannot: `${old}: SVIDs move to the new intermediate at their half-life (${half}) after it activates`,
      }),
    });
    steps.push({
      id: 'istio-ca',
      does: "Istio's plug-in CA (istio-system/cacerts) is issued again under the new root",
      verifies: 'cacerts chains to the new root',
    });
    steps.push({
      id: 'retire',
      does: 'the old root is revoked: it leaves the bundle, and every peer refreshes',
      verifies: "no peer's SPIRE server and no proxy of the fleet trusts the old root any longer",
      ...(old && {
        cannot: `${old}: the old root stays in the bundle, and trusted, until it expires`,
      }),
    });
  } else {
    steps.push({
      id: 'reissue',
      does: `the proxies' SVIDs move to the new intermediate at their half-life (SVID TTL ${fleet.ca.spire.svidTTL}: within ${half}); SPIRE refuses to taint an intermediate under an UpstreamAuthority, and an intermediate is in no bundle, so there is nothing to revoke`,
      verifies: `every proxy of ${cluster} presents an SVID of the new intermediate`,
      ...(old && { cannot: `${old}` }),
    });
  }
  return steps;
}

export type RotationEvent =
  | { type: 'step'; id: StepId; does: string }
  | { type: 'done'; id: StepId; ms: number; detail: string }
  | { type: 'skipped'; id: StepId; why: string }
  | { type: 'waiting'; id: StepId; detail: string };

export interface RotationOptions {
  fleet: Fleet;
  cluster: string;
  kind: RotationKind;
  /** Every reachable cluster's client, by cluster name. */
  clients: ReadonlyMap<string, ClusterClient>;
  /** The fleet's SPIRE servers as federation members (every cluster needed: the rotated one and its peers). */
  members: FederationMember[];
  pairs: Pair[];
  log?: RefreshLog;
  onEvent?: (e: RotationEvent) => void;
  /** Bounds of the waits, in ms (defaults: 2 min each; reissue for spire-ca: half the SVID TTL plus 2 min). */
  deadlines?: Partial<Record<StepId, number>>;
  pollMs?: number;
}

export interface RotationResult {
  kind: RotationKind;
  cluster: string;
  steps: Array<{ id: StepId; ms: number; detail: string; skipped?: boolean }>;
  /** From the moment the cluster's bundle endpoint served the new root to the moment every proxy of every other cluster trusted it. */
  propagationMs?: number;
  oldRoot?: string;
  newRoot?: string;
  oldAuthority?: string;
  newAuthority?: string;
}

/** A step failed; the fleet still works as before it, and running the command again continues from it. */
export class RotationError extends Error {
  override name = 'RotationError';
  constructor(
    readonly step: StepId,
    message: string,
    readonly next: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const ROOT_CERT: ObjectRef = {
  apiVersion: 'cert-manager.io/v1',
  kind: 'Certificate',
  namespace: 'cert-manager',
  name: ROOT_ISSUER,
};
const ISTIO_CA_CERT: ObjectRef = {
  apiVersion: 'cert-manager.io/v1',
  kind: 'Certificate',
  namespace: ISTIO_NAMESPACE,
  name: 'cacerts',
};
const secretOf = (c: ObjectRef): ObjectRef => ({
  apiVersion: 'v1',
  kind: 'Secret',
  namespace: c.namespace!,
  name: c.name,
});

export async function rotate(o: RotationOptions): Promise<RotationResult> {
  const { fleet, cluster, kind } = o;
  const spec = fleet.clusters.find((c) => c.name === cluster);
  if (!spec) throw new Error(`no cluster ${cluster} in the fleet`);
  if (!spireCanRotate(fleet))
    throw new RotationError(
      'prepare',
      `SPIRE ${fleet.versions.spire} cannot prepare, activate, taint or revoke an authority on demand (SPIRE ${SPIRE_FORCED_ROTATION} added it)`,
      `see \`meshfed rotate ${kind} --cluster ${cluster} --dry-run\` for what this SPIRE does on its own schedule`,
    );
  const client = o.clients.get(cluster);
  const member = o.members.find((m) => m.name === cluster);
  if (!client || !member) throw new Error(`${cluster}: no API server or SPIRE server to rotate`);
  const td = spec.trustDomain;
  const spire = member.server;
  const plan = rotationPlan(fleet, cluster, kind);
  const poll = o.pollMs ?? 1_000;
  const deadline = (id: StepId) =>
    o.deadlines?.[id] ??
    (kind === 'spire-ca' && id === 'reissue'
      ? (parseGoDuration(fleet.ca.spire.svidTTL) ?? 3_600_000) / 2 + 120_000
      : 120_000);
  const others = fleet.clusters.map((c) => c.name).filter((n) => n !== cluster && o.clients.has(n));
  const result: RotationResult = { kind, cluster, steps: [] };
  const emit = (e: RotationEvent) => o.onEvent?.(e);
  const again = `run \`meshfed rotate ${kind} --cluster ${cluster}\` again: it reads where the rotation stands and goes on from there`;

  async function step(id: StepId, run: () => Promise<string>): Promise<void> {
    const p = plan.find((s) => s.id === id)!;
    emit({ type: 'step', id, does: p.does });
    const t = Date.now();
    let detail: string;
    try {
      detail = await run();
    } catch (e) {
      if (e instanceof RotationError) throw e;
      throw new RotationError(id, `${id}: ${(e as Error).message}`, again, { cause: e });
    }
    const ms = Date.now() - t;
    result.steps.push({ id, ms, detail });
    emit({ type: 'done', id, ms, detail });
  }
  const skip = (id: StepId, why: string) => {
    result.steps.push({ id, ms: 0, detail: why, skipped: true });
    emit({ type: 'skipped', id, why });
  };

  /** Polls until `done` holds for what `read` returns; a RotationError naming what lags at the deadline. */
  async function until<T>(
    id: StepId,
    read: () => Promise<T>,
    lagging: (v: T) => string[],
    what: string,
  ): Promise<T> {
    const end = Date.now() + deadline(id);
    let last = '';
    for (;;) {
      let v: T | undefined;
      let lag: string[];
      try {
        v = await read();
        lag = lagging(v);
      } catch (e) {
        lag = [(e as Error).message];
      }
      if (!lag.length) return v as T;
      const now = `${what}: waiting for ${lag.slice(0, 4).join(', ')}${lag.length > 4 ? ` and ${lag.length - 4} more` : ''}`;
      if (now !== last) emit({ type: 'waiting', id, detail: now });
      last = now;
      if (Date.now() >= end)
        throw new RotationError(
          id,
          `${what} within ${formatMs(deadline(id))}: not yet ${lag.join('; ')}`,
          again,
        );
      await new Promise((r) => setTimeout(r, poll));
    }
  }

  /**
   * Every peer's SPIRE server refreshes this trust domain's bundle now; then
   * polls until `holds` is true of what each holds (undefined: no bundle).
   */
  async function refreshPeers(id: StepId, holds: (b: Bundle | undefined) => boolean, what: string) {
    const refreshed = await refreshHoldersOf(o.members, o.pairs, cluster, o.log);
    const failed = refreshed.filter((s) => s.error);
    if (failed.length) throw new Error(failed.map((s) => `${s.holder}: ${s.error}`).join('; '));
    await until(
      id,
      async () =>
        Promise.all(
          refreshed.map(async (s) => ({
            holder: s.holder,
            b: await o.members.find((m) => m.name === s.holder)!.server.heldBundle(td),
          })),
        ),
      (v) => v.filter((h) => !holds(h.b)).map((h) => `${h.holder}'s SPIRE server`),
      what,
    );
    return refreshed;
  }
  const proxies = (clusters: string[]) => readFleetProxies(o.clients, clusters);
  /**
   * Polls the proxies of `clusters` until `ok` holds for each; a proxy that
   * satisfied it is not read again (pods are listed again each round, so a
   * new pod is read), which keeps the polling light on the clusters.
   */
  async function untilProxies(
    id: StepId,
    clusters: string[],
    ok: (p: ProxyView) => boolean,
    what: string,
  ): Promise<ProxyView[]> {
    const done = new Map<string, ProxyView>();
    return until(
      id,
      async () => {
        const refs = (await Promise.all(clusters.map((c) => listProxies(o.clients.get(c)!, c)))).flat();
        const read = await mapLimit(
          refs.filter((r) => !done.has(proxyName(r))),
          6,
          (r) => readProxy(o.clients.get(r.cluster)!, r),
        );
        for (const v of read) if (!v.error && ok(v)) done.set(proxyName(v), v);
        return refs.map((r) => done.get(proxyName(r)) ?? read.find((v) => proxyName(v) === proxyName(r))!);
      },
      (v) => lag(v, ok),
      what,
    );
  }
  const lag = (views: ProxyView[], ok: (p: ProxyView) => boolean) =>
    views
      .filter((p) => p.error || !ok(p))
      .map((p) => (p.error ? `${proxyName(p)} (${p.error})` : proxyName(p)));

  const state = await spire.x509AuthorityState();
  if (!state.active)
    throw new RotationError('prepare', `${td}'s SPIRE server has no active X.509 authority`, again);

  if (kind === 'spire-ca') {
    const rootSkid = state.active.upstreamAuthoritySubjectKeyId;
    let prepared =
      state.prepared && state.prepared.upstreamAuthoritySubjectKeyId === rootSkid
        ? state.prepared
        : undefined;
    result.oldAuthority = state.active.authorityId;
    // An earlier run activated, and proxies still present SVIDs of the authority before: go on waiting for them.
    const oldId = state.old?.authorityId;
    const behind = oldId
      ? (await proxies([cluster])).some((p) => p.svid.some((c) => c.authorityKeyId === oldId))
      : false;
    if (behind) {
      result.oldAuthority = oldId;
      prepared = state.active;
      skip('prepare', `an earlier run prepared ${short(state.active.authorityId)}`);
      skip('activate', `an earlier run activated ${short(state.active.authorityId)}`);
    } else if (prepared)
      skip(
        'prepare',
        `${td} already has a prepared authority ${short(prepared.authorityId)} under the same root`,
      );
    else
      await step('prepare', async () => {
        const before = await servedBundle(member);
        prepared = await spire.prepareX509Authority();
        if (prepared.upstreamAuthoritySubjectKeyId !== rootSkid)
          throw new Error(
            `the prepared authority is signed by ${prepared.upstreamAuthoritySubjectKeyId}, not the current root ${rootSkid}`,
          );
        const after = await servedBundle(member);
        const same = fps(after).join() === fps(before).join();
        if (!same) throw new Error('the served bundle changed: the root is not what it was');
        return `prepared ${short(prepared.authorityId)} under root ${short(rootSkid)}; served bundle unchanged`;
      });
    if (!behind)
      await step('activate', async () => {
        await spire.activateX509Authority(prepared!.authorityId);
        const now = await spire.x509AuthorityState();
        if (now.active?.authorityId !== prepared!.authorityId)
          throw new Error(`the active authority is ${now.active?.authorityId}, not ${prepared!.authorityId}`);
        return `active ${short(prepared!.authorityId)}`;
      });
    result.newAuthority = prepared!.authorityId;
    await step('reissue', async () => {
      const views = await untilProxies(
        'reissue',
        [cluster],
        (p) => p.svid.some((c) => c.authorityKeyId === prepared!.authorityId),
        `every proxy of ${cluster} presenting an SVID of ${short(prepared!.authorityId)}`,
      );
      return `${views.length} proxies present SVIDs of the new intermediate`;
    });
    return result;
  }

  // ---- the root ----
  let root = await secretRoot(client, ROOT_CERT);
  const bundle = async () => fps(await spire.ownBundle(td));
  const activeRoot = state.active.upstreamAuthoritySubjectKeyId;
  // Where a rotation stands, read from the cluster: the root the issuer holds against the one SPIRE signs under.
  const oldSkid =
    root.subjectKeyId !== activeRoot
      ? activeRoot
      : state.old?.upstreamAuthoritySubjectKeyId &&
          state.old.upstreamAuthoritySubjectKeyId !== root.subjectKeyId
        ? state.old.upstreamAuthoritySubjectKeyId
        : undefined;
  const ownRoots = await spire.ownBundle(td);
  let oldRoot = ownRoots.x509Authorities.find((c) => oldSkid && c.subjectKeyId === oldSkid);
  // SPIRE signs under the issuer's root, and an older root is still in its bundle: an earlier run stopped after activating.
  const finishing = root.subjectKeyId === activeRoot && oldRoot !== undefined;
  if (root.subjectKeyId === activeRoot && !finishing) {
    oldRoot = root;
    await step('new-root', async () => {
      await renewCertificate(client, ROOT_CERT, 'meshfed rotate root: a new root with a new key');
      root = await until(
        'new-root',
        async () => ({ cert: await secretRoot(client, ROOT_CERT), ready: await ready(client, ROOT_CERT) }),
        (v) =>
          v.cert.fingerprintSha256 === oldRoot!.fingerprintSha256 || !v.ready
            ? ['cert-manager to issue it']
            : [],
        'a new root',
      ).then((v) => v.cert);
      if (
        root.node.publicKey
          .export({ format: 'der', type: 'spki' })
          .equals(oldRoot!.node.publicKey.export({ format: 'der', type: 'spki' }))
      )
        throw new Error(
          'the new root has the old key: the root Certificate must say privateKey.rotationPolicy: Always (meshfed up renders it so)',
        );
      return `new root ${short(root.fingerprintSha256)} (key ${short(root.subjectKeyId ?? '?')}), old ${short(oldRoot!.fingerprintSha256)}`;
    });
  } else
    skip(
      'new-root',
      finishing
        ? 'the root was renewed by an earlier run'
        : `cert-manager already holds the new root ${short(root.fingerprintSha256)}`,
    );
  result.newRoot = root.fingerprintSha256;
  result.oldRoot = oldRoot?.fingerprintSha256;
  if (!oldRoot && !finishing)
    throw new RotationError(
      'new-root',
      `SPIRE's bundle has no root with key ${oldSkid}: cannot tell the old root`,
      again,
    );

  let cur: X509AuthorityState = await spire.x509AuthorityState();
  if (cur.active?.upstreamAuthoritySubjectKeyId === root.subjectKeyId) {
    skip('prepare', 'SPIRE already signs under the new root');
    skip('propagate', 'done by an earlier run (SPIRE signs under the new root)');
    skip('activate', 'SPIRE already signs under the new root');
  } else {
    let prepared =
      cur.prepared?.upstreamAuthoritySubjectKeyId === root.subjectKeyId ? cur.prepared : undefined;
    if (prepared) skip('prepare', `SPIRE already prepared ${short(prepared.authorityId)} under the new root`);
    else
      await step('prepare', async () => {
        prepared = await spire.prepareX509Authority();
        if (prepared.upstreamAuthoritySubjectKeyId !== root.subjectKeyId)
          throw new Error(
            `the prepared authority is signed by ${prepared.upstreamAuthoritySubjectKeyId}, not the new root ${root.subjectKeyId}`,
          );
        await until(
          'prepare',
          bundle,
          (b) => (b.includes(root.fingerprintSha256) ? [] : ["the new root in SPIRE's bundle"]),
          'the new root in the bundle',
        );
        return `prepared ${short(prepared.authorityId)} under the new root; the bundle holds ${(await bundle()).length} roots`;
      });
    await step('propagate', async () => {
      await until(
        'propagate',
        async () => fps(await servedBundle(member)),
        (b) => (b.includes(root.fingerprintSha256) ? [] : ['the bundle endpoint to serve it']),
        'the new root served',
      );
      const served = Date.now();
      const refreshed = await refreshPeers(
        'propagate',
        (b) => b !== undefined && fps(b).includes(root.fingerprintSha256),
        `every peer holding ${td}'s new root`,
      );
      const views = await untilProxies(
        'propagate',
        [...others, cluster],
        (p) => !p.trusts.has(td) || p.trusts.get(td)!.has(root.fingerprintSha256),
        `every proxy of the fleet trusting ${td}'s new root`,
      );
      result.propagationMs = Date.now() - served;
      return `${refreshed.length} peers refreshed; ${views.filter((p) => p.trusts.has(td)).length} proxies trust the new root, ${formatMs(result.propagationMs)} after it was served`;
    });
    await step('activate', async () => {
      await spire.activateX509Authority(prepared!.authorityId);
      cur = await spire.x509AuthorityState();
      if (cur.active?.authorityId !== prepared!.authorityId)
        throw new Error(`the active authority is ${cur.active?.authorityId}, not ${prepared!.authorityId}`);
      result.newAuthority = prepared!.authorityId;
      return `SPIRE signs with ${short(prepared!.authorityId)} under the new root`;
    });
  }

  const stale = oldSkid ?? oldRoot?.subjectKeyId;
  const inBundle = async () =>
    (await spire.ownBundle(td)).x509Authorities.some((c) => c.subjectKeyId === stale);
  if (!stale || !(await inBundle())) {
    skip('reissue', 'the old root is not in the bundle any more');
  } else {
    await step('reissue', async () => {
      await spire.taintUpstreamAuthority(stale).catch((e: Error) => {
        // Tainted by an earlier run: SPIRE says so; anything else stops here.
        if (!/already tainted/i.test(e.message)) throw e;
      });
      const views = await untilProxies(
        'reissue',
        [cluster],
        (p) => p.svid.length > 0 && p.svid.some((c) => c.authorityKeyId === root.subjectKeyId),
        `every proxy of ${cluster} presenting an SVID under the new root`,
      );
      const anchor = { trustDomain: td, x509Authorities: [root], jwtAuthorities: new Map() };
      await until(
        'reissue',
        () =>
          fetchBundle(
            member.bundleEndpoint.url,
            td,
            { type: 'https_spiffe', endpointSpiffeId: member.bundleEndpoint.spiffeId, bundle: anchor },
            { timeoutMs: 5_000 },
          ),
        () => [],
        'the bundle endpoint presenting a certificate under the new root',
      );
      return `${views.length} proxies and the bundle endpoint present certificates under the new root`;
    });
  }
  await step('istio-ca', async () => {
    const ca = await secretRoot(client, ISTIO_CA_CERT, 'ca.crt').catch(() => undefined);
    if (ca?.fingerprintSha256 === root.fingerprintSha256) return 'cacerts already chains to the new root';
    await renewCertificate(client, ISTIO_CA_CERT, 'meshfed rotate root: Istio CA under the new root');
    await until(
      'istio-ca',
      async () => ({
        ca: await secretRoot(client, ISTIO_CA_CERT, 'ca.crt'),
        ready: await ready(client, ISTIO_CA_CERT),
      }),
      (v) =>
        v.ca.fingerprintSha256 === root.fingerprintSha256 && v.ready
          ? []
          : ['cert-manager to issue cacerts under the new root'],
      'cacerts under the new root',
    );
    return 'cacerts issued under the new root';
  });
  if (!stale || !(await inBundle())) skip('retire', 'the old root is not in the bundle any more');
  else
    await step('retire', async () => {
      await spire.revokeUpstreamAuthority(stale);
      await until(
        'retire',
        async () => ((await inBundle()) ? ['SPIRE to drop it from its bundle'] : []),
        (x) => x,
        'the old root out of the bundle',
      );
      const refreshed = await refreshPeers(
        'retire',
        (b) => !b?.x509Authorities.some((c) => c.subjectKeyId === stale),
        `no peer holding ${td}'s old root`,
      );
      const oldFp = oldRoot?.fingerprintSha256;
      const views = await untilProxies(
        'retire',
        [cluster, ...others],
        (p) => !oldFp || !p.trusts.get(td)?.has(oldFp),
        `no proxy of the fleet trusting ${td}'s old root`,
      );
      return `old root revoked; ${refreshed.length} peers and ${views.length} proxies hold only the new one`;
    });
  return result;
}

/** The root certificate a cert-manager Certificate's Secret holds (the last of tls.crt, or `key`). */
async function secretRoot(client: ClusterClient, cert: ObjectRef, key = 'tls.crt'): Promise<CertView> {
  const s = await client.get(secretOf(cert));
  const b64 = (s?.data as Record<string, string> | undefined)?.[key];
  if (!b64) throw new Error(`Secret ${cert.namespace}/${cert.name} has no ${key}`);
  const certs = parsePemCertificates(Buffer.from(b64, 'base64').toString('utf8'));
  return certs.at(-1)!;
}

async function ready(client: ClusterClient, cert: ObjectRef): Promise<boolean> {
  const c = await client.get(cert);
  const conds =
    (c?.status as { conditions?: Array<{ type: string; status: string }> } | undefined)?.conditions ?? [];
  return (
    conds.some((x) => x.type === 'Ready' && x.status === 'True') &&
    !conds.some((x) => x.type === 'Issuing' && x.status === 'True')
  );
}

/** Asks cert-manager to issue a Certificate again now: its Issuing condition, as `cmctl renew` sets it. */
export async function renewCertificate(
  client: ClusterClient,
  cert: ObjectRef,
  message: string,
): Promise<void> {
  const c: KubeObject | undefined = await client.get(cert);
  if (!c) throw new Error(`Certificate ${cert.namespace}/${cert.name} missing: run meshfed up first`);
  const conds = (c.status as { conditions?: Array<{ type: string; status: string }> } | undefined)
    ?.conditions;
  if (conds?.some((x) => x.type === 'Issuing' && x.status === 'True')) return; // already being issued
  const condition = {
    type: 'Issuing',
    status: 'True',
    reason: 'ManuallyTriggered',
    message,
    lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
  await client.jsonPatch(
    cert,
    conds
      ? [{ op: 'add', path: '/status/conditions/-', value: condition }]
      : [{ op: 'add', path: '/status/conditions', value: [condition] }],
    { subresource: 'status' },
  );
}

const fps = (b: { x509Authorities: CertView[] }) => b.x509Authorities.map((c) => c.fingerprintSha256).sort();
const short = (s: string | undefined) => (s ?? '?').replace(/:/g, '').slice(0, 12).toLowerCase();

export function formatMs(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}
