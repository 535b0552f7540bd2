/**
 * `meshfed verify`: the guide's walk-through, automated. The checks read the
 * data plane through a `Probe` (curl in each cluster's sleep pod, Envoy's
 * config dump and clusters of a workload's proxy, the ingress address, a
 * mutual TLS request through an east-west gateway) and judge what curl and
 * Envoy print; the parsers and verdicts here are pure, so they are tested on
 * output captured from the lab's real data plane (test/verify/fixtures, with
 * the program that captured it), and `kubeProbe` runs them on real clusters
 * through pod exec (docs/verify.md).
 */

import { connect } from 'node:tls';
import { currentAddress, EAST_WEST_SERVICE } from '../engine/discover.js';
import { parseGoDuration } from '../fleet/durations.js';
import { clusterIndex, peersOf } from '../fleet/model.js';
import type { ClusterClient, KubeObject } from '../kube/client.js';
import { appliedPart } from '../kube/fields.js';
import { APP_NAMESPACES } from '../render/apps.js';
import { workloadSpiffeId } from '../render/identity.js';
import { FIELD_MANAGER } from '../render/meta.js';
import { ISTIO_NAMESPACE } from '../render/namespaces.js';
import { type Bundle, BundleSet } from '../spiffe/bundle.js';
import { configDumpSecrets, type DumpSecret, inspectChain, parseCertInput } from '../spiffe/inspect.js';
import { selfIssuedContext } from '../spiffe/self-issued.js';
import { authorizeMemberOf, spiffeClientOptions } from '../spiffe/tls.js';
import type { X509Svid } from '../spiffe/workload.js';
import { certOrigin } from '../spiffe/x509.js';
import { type CheckDef, type Finding, fail, pass, skip, warn } from './catalog.js';
import {
  type CheckContext,
  clientOf,
  eachCluster,
  notRunUnreachable,
  reachable,
  spireOf,
} from './context.js';
import { REACHABILITY_CHECK } from './reachability.js';

/** What verify needs from the data plane; `kubeProbe` is the real one, tests give hand-written output. */
export interface Probe {
  /** `n` requests with curl from the cluster's sleep pod; each request's output (body, or curl's error line). */
  curl(cluster: string, url: string, n: number): Promise<string[]>;
  /** Envoy's config dump (JSON text) of the first Running pod matching `selector` in `namespace`. */
  configDump(cluster: string, namespace: string, selector: string): Promise<{ pod: string; dump: string }>;
  /** Deletes the cluster's helloworld Service, runs `during`, and puts the Service back exactly as it was. */
  withoutLocalService<T>(cluster: string, during: () => Promise<T>): Promise<T>;
  /** The ingress gateway's address (host or host:port) in a cluster, if it has one. */
  ingressAddress(cluster: string): Promise<string | undefined>;
  /**
   * GET /hello of helloworld through a cluster's east-west gateway at `address`
   * (host:port, SNI of helloworld's port, as a peer's proxy sends it), from
   * where meshfed runs: presents `client`'s SVID and authenticates the server
   * as a member of `server.trustDomain` by `server.bundle`. Resolves with the
   * HTTP answer (status line to body); rejects with why there was none.
   */
  viaGateway(
    cluster: string,
    address: string,
    client: X509Svid,
    server: { trustDomain: string; bundle: Bundle },
  ): Promise<string>;
}

export interface VerifyContext extends CheckContext {
  probe: Probe;
  /** Requests per traffic check (default 20). */
  requests: number;
}

export const HELLO_URL = `http://helloworld.${APP_NAMESPACES.helloworld}:5000/hello`;

/** The marker the probe's shell loop prints after each request, to split curl's output. */
export const REQUEST_END = '#meshfed-request-end';

/** The probe's shell loop in sleep: `n` requests with curl, each followed by the end marker. */
export const curlLoop = (url: string, n: number) =>
  `for i in $(seq 1 ${n}); do curl -sS --max-time 5 '${url.replace(/'/g, '')}' 2>&1; echo; echo '${REQUEST_END}'; done`;

/** Splits the output of the probe's loop into one text per request. */
export function splitRequests(output: string): string[] {
  return output
    .split(`${REQUEST_END}\n`)
    .map((s) => s.trim())
    .filter((s, i, all) => s || i < all.length - 1);
}

export interface HelloTally {
  /** Answers per version ("v1" → 12). */
  versions: Record<string, number>;
  /** Requests that got no helloworld answer, with what came instead (curl's error, Envoy's reply). */
  errors: string[];
  total: number;
}

/** Tallies helloworld answers: "Hello version: v1, instance: helloworld-v1-…". */
export function tallyHello(responses: string[]): HelloTally {
  const t: HelloTally = { versions: {}, errors: [], total: responses.length };
  for (const r of responses) {
    const m = /Hello version: (v\d+), instance: (\S+)/.exec(r);
    if (m) t.versions[m[1]!] = (t.versions[m[1]!] ?? 0) + 1;
    else t.errors.push(r.split('\n')[0]!.slice(0, 200) || '(empty answer)');
  }
  return t;
}

export const versionOf = (ctx: CheckContext, cluster: string) => `v${clusterIndex(ctx.fleet, cluster) + 1}`;

const distribution = (t: HelloTally) =>
  Object.entries(t.versions)
    .sort()
    .map(([v, n]) => `${v} ${n}`)
    .join(', ') || 'none';

/**
 * East-west: every cluster reached from `cluster` answers (its own version and
 * each peer's). `why` (by version) says what was found wrong on the way to a
 * version that did not answer (whyNoAnswer).
 */
export function judgeEastWest(
  ctx: CheckContext,
  cluster: string,
  t: HelloTally,
  why: Record<string, string[]> = {},
): Omit<Finding, 'cluster'> {
  const want = [cluster, ...peersOf(ctx.fleet, cluster).map((p) => p.name)].map((c) => versionOf(ctx, c));
  const missing = want.filter((v) => !t.versions[v]);
  const data = { versions: t.versions, errors: t.errors.length, total: t.total };
  if (missing.length) {
    const named = missing.map((v) => (why[v]?.length ? `${v} (${why[v]!.join('; ')})` : v));
    return fail(
      `${t.total} requests: ${distribution(t)}; no answer from ${named.join(', ')}${t.errors.length ? `; ${t.errors.length} failed (${t.errors[0]})` : ''}`,
      { ...data, ...(Object.keys(why).length ? { why } : {}) },
    );
  }
  if (t.errors.length)
    return warn(`${distribution(t)}; ${t.errors.length} of ${t.total} failed (${t.errors[0]})`, data);
  return pass(`${t.total} requests: ${distribution(t)}`, data);
}

/** Failover: with the local Service gone, only peers' versions answer, and every request is answered. */
export function judgeFailover(
  ctx: CheckContext,
  cluster: string,
  t: HelloTally,
  why: Record<string, string[]> = {},
): Omit<Finding, 'cluster'> {
  const local = versionOf(ctx, cluster);
  const remote = peersOf(ctx.fleet, cluster).map((p) => versionOf(ctx, p.name));
  const data = { versions: t.versions, errors: t.errors.length, total: t.total };
  if (t.versions[local])
    return fail(`the local ${local} still answered ${t.versions[local]} times without its Service`, data);
  if (!remote.some((v) => t.versions[v])) {
    const found = Object.entries(why).flatMap(([v, w]) => w.map((x) => `${v}: ${x}`));
    return fail(
      `no remote version answered (${t.errors[0] ?? 'no answer'})${found.length ? `; ${found.join('; ')}` : ''}`,
      { ...data, ...(found.length ? { why } : {}) },
    );
  }
  if (t.errors.length)
    return fail(`${t.errors.length} of ${t.total} requests failed during failover (${t.errors[0]})`, data);
  return pass(`local Service removed: ${distribution(t)}, restored`, data);
}

// ---- Envoy config dump: identity and trust ----

/** The secrets of a config dump (`/config_dump` or `istioctl proxy-config secret -o json`), by name. */
export function dumpSecrets(dump: string): DumpSecret[] {
  return configDumpSecrets(JSON.parse(dump));
}

/** Identity: the proxy's SVID names the workload, and its trusted CAs include every peer's root (by fingerprint). */
export function judgeIdentity(
  dump: string,
  want: { spiffeId: string; ownRoots: string[]; peerRoots: Record<string, string[]> },
): Omit<Finding, 'cluster'> {
  const secrets = dumpSecrets(dump);
  const svid = secrets.find((s) => s.name === 'default' && s.chain.length);
  const roots = secrets.find((s) => s.name === 'ROOTCA' && s.trusted.length);
  if (!svid)
    return fail('the proxy has no workload certificate (secret "default"): SDS from SPIRE did not deliver');
  const id = svid.chain[0]!.uriSans.find((u) => u.startsWith('spiffe://'));
  if (id !== want.spiffeId)
    return fail(`the proxy's SVID is ${id ?? 'without SPIFFE ID'}, expected ${want.spiffeId}`);
  if (!roots) return fail('the proxy has no trusted CAs (secret "ROOTCA")');
  const have = new Set(roots.trusted.map((c) => c.fingerprintSha256));
  const missing = Object.entries(want.peerRoots)
    .filter(([, fps]) => !fps.some((f) => have.has(f)))
    .map(([td]) => td);
  if (!want.ownRoots.some((f) => have.has(f))) missing.unshift('its own trust domain');
  return missing.length
    ? fail(`${id}: ROOTCA lacks the bundle of ${missing.join(', ')}`)
    : pass(`${id}; trusts ${Object.keys(want.peerRoots).length + 1} trust domains`, {
        spiffeId: id,
        trusted: roots.trusted.length,
      });
}

/** Trust chain: leaf = workload SVID, then SPIRE's intermediate, up to the cert-manager root; valid against the trusted CAs. */
export function judgeChain(dump: string, trustDomain: string, now: Date): Omit<Finding, 'cluster'> {
  const input = parseCertInput(dump, { trustDomain });
  const report = inspectChain(input, { warnWithinSeconds: 0, now });
  const all = [...input.chain, ...input.trusted];
  const roles = input.chain.map((c) => certOrigin(c));
  const issuerRoot = all.find(
    (c) => certOrigin(c) === 'cert-manager root' && input.chain.at(-1)?.issuer === c.subject,
  );
  const problems: string[] = [];
  if (roles[0] !== 'workload SVID') problems.push(`the leaf is a ${roles[0] ?? 'missing certificate'}`);
  if (!roles.slice(1).includes('SPIRE intermediate')) problems.push('no SPIRE intermediate in the chain');
  if (!issuerRoot) problems.push('the chain does not end at a cert-manager root');
  if (report.verdict && !report.verdict.valid)
    problems.push(report.verdict.problems.map((p) => p.message).join('; ') || 'not a valid SVID');
  const path = [...roles, issuerRoot ? 'cert-manager root' : '?'].join(' ← ');
  return problems.length ? fail(`${path}: ${problems.join('; ')}`) : pass(path, { chain: roles.length + 1 });
}

/** SVID rotation observed: the proxy's SVID is younger than the configured SVID TTL (SPIRE renews at half-life). */
export function judgeSvidAge(dump: string, svidTtl: string, now: Date): Omit<Finding, 'cluster'> {
  const svid = dumpSecrets(dump).find((s) => s.name === 'default' && s.chain.length)?.chain[0];
  if (!svid) return fail('no workload certificate in the config dump');
  const ttl = parseGoDuration(svidTtl) ?? 3_600_000;
  const lifetime = svid.notAfter.getTime() - svid.notBefore.getTime();
  const age = now.getTime() - svid.notBefore.getTime();
  const mins = (ms: number) => `${Math.round(ms / 60_000)} min`;
  if (lifetime > ttl + 60_000)
    return fail(`the SVID lives ${mins(lifetime)}, more than the configured ${svidTtl}`);
  if (age > lifetime / 2 + 5 * 60_000)
    return fail(`the SVID is ${mins(age)} old: past half its ${mins(lifetime)} life, it was not renewed`);
  return pass(`SVID ${mins(age)} old of ${mins(lifetime)} (TTL ${svidTtl})`, {
    ageSeconds: Math.round(age / 1000),
  });
}

// ---- the checks ----

async function rootsOf(
  ctx: CheckContext,
): Promise<{ own: Map<string, string[]>; held: Map<string, Map<string, string[]>> }> {
  return ctx.memo('roots', async () => {
    const own = new Map<string, string[]>();
    const held = new Map<string, Map<string, string[]>>();
    await Promise.all(
      reachable(ctx).map(async (c) => {
        const s = spireOf(ctx, c.name);
        const [b, list] = await Promise.all([s.ownBundle(c.trustDomain), s.heldBundles()]);
        own.set(
          c.name,
          b.x509Authorities.map((a) => a.fingerprintSha256),
        );
        held.set(
          c.name,
          new Map([...list].map(([td, x]) => [td, x.x509Authorities.map((a) => a.fingerprintSha256)])),
        );
      }),
    );
    return { own, held };
  });
}

/**
 * Why `peer`'s helloworld gave `cluster`'s sleep no answer, as far as the API
 * servers and SPIRE servers tell: the peer unreachable, its east-west gateway
 * without a Service, an address or a ready pod, its helloworld without a ready
 * pod, or a trust bundle missing on either side (the mutual TLS handshake is
 * then refused). Empty when nothing of these is wrong; what cannot be read is
 * said as such.
 */
export async function whyNoAnswer(ctx: VerifyContext, cluster: string, peer: string): Promise<string[]> {
  const on = ctx.fleet.clusters.find((c) => c.name === cluster)!;
  const to = ctx.fleet.clusters.find((c) => c.name === peer)!;
  if (!reachable(ctx).some((c) => c.name === peer)) return [`${peer}'s API server is unreachable`];
  const found: string[] = [];
  const look = async (what: string, f: () => Promise<string[]>) => {
    try {
      found.push(...(await f()));
    } catch (e) {
      found.push(`cannot read ${what}: ${(e as Error).message.split('\n')[0]}`);
    }
  };
  const client = clientOf(ctx, peer);
  const ew = EAST_WEST_SERVICE;
  const helloworld = APP_NAMESPACES.helloworld;
  await Promise.all([
    look(`${peer}'s east-west gateway`, async () => {
      const svc = await client.get({
        apiVersion: 'v1',
        kind: 'Service',
        namespace: ew.namespace,
        name: ew.name,
      });
      if (!svc) return [`${peer} has no east-west gateway Service ${ew.namespace}/${ew.name}`];
      if (!(await currentAddress(client, ew))) return [`${peer}'s east-west gateway has no address`];
      if (!(await endpointAddresses(client, ew.namespace, ew.name)).length)
        return [`${peer}'s east-west gateway ${ew.namespace}/${ew.name} has no ready pod`];
      return [];
    }),
    look(`${peer}'s helloworld`, async () =>
      (await endpointAddresses(client, helloworld, 'helloworld')).length
        ? []
        : [`${peer}'s helloworld has no ready pod`],
    ),
    look("the SPIRE servers' bundles", async () => {
      const roots = await rootsOf(ctx);
      const out: string[] = [];
      if (!roots.held.get(cluster)?.get(to.trustDomain)?.length)
        out.push(
          `${cluster}'s SPIRE server holds no bundle of ${to.trustDomain}: ${cluster}'s workloads cannot verify ${peer}'s`,
        );
      if (!roots.held.get(peer)?.get(on.trustDomain)?.length)
        out.push(
          `${peer}'s SPIRE server holds no bundle of ${on.trustDomain}: ${peer}'s workloads refuse ${cluster}'s`,
        );
      return out;
    }),
    look(`sleep's proxy in ${cluster}`, async () => {
      // What the proxy was given (SDS from SPIRE): the peer's root among its trusted CAs?
      const peerRoots = (await rootsOf(ctx)).own.get(peer) ?? [];
      const trusted = new Set(
        dumpSecrets((await sleepDump(ctx, cluster)).dump)
          .filter((x) => x.name === 'ROOTCA')
          .flatMap((x) => x.trusted.map((c) => c.fingerprintSha256)),
      );
      return peerRoots.length && !peerRoots.some((f) => trusted.has(f))
        ? [`sleep's proxy in ${cluster} does not trust ${to.trustDomain} (its ROOTCA lacks ${peer}'s root)`]
        : [];
    }),
  ]);
  return found;
}

/** whyNoAnswer for each of `peers`, by the version each serves. */
async function whyNot(
  ctx: VerifyContext,
  cluster: string,
  peers: Array<{ name: string }>,
): Promise<Record<string, string[]>> {
  const found = await Promise.all(
    peers.map(async (p) => [versionOf(ctx, p.name), await whyNoAnswer(ctx, cluster, p.name)] as const),
  );
  return Object.fromEntries(found.filter(([, w]) => w.length));
}

const sleepDump = (ctx: VerifyContext, cluster: string) =>
  ctx.memo(`dump:${cluster}`, () => ctx.probe.configDump(cluster, APP_NAMESPACES.sleep, 'app=sleep'));

/** The trust domain of MF307's outsider: never a fleet's (.invalid is reserved, RFC 2606). */
export const OUTSIDER_TRUST_DOMAIN = 'outsider.meshfed.invalid';
const MINT_TTL = '5m';

export const VERIFY_CHECKS: CheckDef<VerifyContext>[] = [
  REACHABILITY_CHECK,
  {
    code: 'MF301',
    title: 'East-west traffic',
    category: 'traffic',
    severity: 'error',
    stage: 'verify',
    description: `From sleep in each cluster, N requests to ${HELLO_URL}: every federated cluster's helloworld version answers; the distribution is reported.`,
    hint: 'docs/verify.md#east-west: check the east-west gateway (MF210), remote secrets (MF209) and istioctl proxy-config endpoints deploy/sleep -n sleep',
    run: (ctx) =>
      eachCluster(ctx, async (c) => {
        const t = tallyHello(await ctx.probe.curl(c.name, HELLO_URL, ctx.requests));
        const silent = peersOf(ctx.fleet, c.name).filter((p) => !t.versions[versionOf(ctx, p.name)]);
        return judgeEastWest(ctx, c.name, t, await whyNot(ctx, c.name, silent));
      }),
  },
  {
    code: 'MF302',
    title: 'Failover to peers',
    category: 'traffic',
    severity: 'error',
    stage: 'verify',
    description:
      "With a cluster's own helloworld Service removed, its sleep's requests are all answered by peers' versions; the Service is then restored as it was.",
    hint: "docs/verify.md#failover: the peers' endpoints must be known to this istiod (remote secrets, MF209)",
    // It deletes each helloworld Service for a while: MF301 and MF303 must not run meanwhile.
    changesClusters: true,
    async run(ctx) {
      const out: Finding[] = [];
      // One cluster at a time: each removal changes what its peers' requests may reach.
      for (const c of reachable(ctx)) {
        try {
          const t = await ctx.probe.withoutLocalService(c.name, async () =>
            tallyHello(await ctx.probe.curl(c.name, HELLO_URL, ctx.requests)),
          );
          const peers = peersOf(ctx.fleet, c.name);
          const silent = peers.every((p) => !t.versions[versionOf(ctx, p.name)]) ? peers : [];
          out.push({ ...judgeFailover(ctx, c.name, t, await whyNot(ctx, c.name, silent)), cluster: c.name });
        } catch (e) {
          out.push({ status: 'failed', cluster: c.name, message: (e as Error).message });
        }
      }
      return [...out, ...notRunUnreachable(ctx)];
    },
  },
  {
    code: 'MF303',
    title: 'North-south through each ingress gateway',
    category: 'traffic',
    severity: 'error',
    stage: 'verify',
    description:
      "From another cluster's sleep, GET /hello on each cluster's ingress gateway address answers with helloworld.",
    hint: 'docs/verify.md#north-south: kubectl -n istio-system get svc istio-ingressgateway; the Gateway and VirtualService helloworld in namespace helloworld',
    run: (ctx) =>
      eachCluster(ctx, async (c) => {
        if (!ctx.fleet.apps.ingressRoute.enabled)
          return skip('the fleet has no ingress route (spec.apps.ingressRoute)');
        const addr = await ctx.probe.ingressAddress(c.name);
        if (!addr) return fail('the ingress gateway has no address');
        const from = reachable(ctx).find((x) => x.name !== c.name) ?? c;
        const t = tallyHello(
          await ctx.probe.curl(from.name, `http://${addr}/hello`, Math.min(ctx.requests, 5)),
        );
        return Object.keys(t.versions).length && !t.errors.length
          ? pass(`${addr}/hello from ${from.name}: ${distribution(t)}`, {
              from: from.name,
              versions: t.versions,
            })
          : fail(
              `${addr}/hello from ${from.name}: ${t.errors.length} of ${t.total} failed (${t.errors[0] ?? 'no helloworld answer'})`,
            );
      }),
  },
  {
    code: 'MF304',
    title: 'Workload identity and federated trust in the proxy',
    category: 'identity',
    severity: 'error',
    stage: 'verify',
    description:
      "sleep's proxy holds the SVID spiffe://TD/ns/sleep/sa/sleep (Envoy secret default) and trusts its own and every federated peer's bundle (ROOTCA), compared with what the SPIRE servers hold.",
    hint: 'docs/verify.md#identity: istioctl proxy-config secret deploy/sleep -n sleep; the spire sidecar template and the CSI driver must be in place',
    run: (ctx) =>
      eachCluster(ctx, async (c) => {
        const { dump } = await sleepDump(ctx, c.name);
        const roots = await rootsOf(ctx);
        const held = roots.held.get(c.name) ?? new Map<string, string[]>();
        const peerRoots = Object.fromEntries(
          peersOf(ctx.fleet, c.name).map((p) => [p.trustDomain, held.get(p.trustDomain) ?? []]),
        );
        return judgeIdentity(dump, {
          spiffeId: workloadSpiffeId(c.trustDomain, APP_NAMESPACES.sleep, 'sleep'),
          ownRoots: roots.own.get(c.name) ?? [],
          peerRoots,
        });
      }),
  },
  {
    code: 'MF305',
    title: 'Trust chain: cert-manager root ← SPIRE ← workload',
    category: 'trust-chain',
    severity: 'error',
    stage: 'verify',
    description:
      "The chain sleep's proxy presents is workload SVID ← SPIRE intermediate ← the cluster's cert-manager root, and validates as an X.509-SVID against the proxy's trusted CAs (meshfed certs' library).",
    hint: 'docs/verify.md#trust-chain: meshfed certs on the dump shows each certificate and what is wrong',
    run: (ctx) =>
      eachCluster(ctx, async (c) => judgeChain((await sleepDump(ctx, c.name)).dump, c.trustDomain, ctx.now)),
  },
  {
    code: 'MF306',
    title: 'Rotation: SVID renewal observed',
    category: 'rotation',
    severity: 'error',
    stage: 'verify',
    description:
      "The SVID sleep's proxy holds lives no longer than the fleet's SVID TTL and is younger than half its life plus 5 minutes (SPIRE renews at half-life), so renewals reach the proxy. The configured lifetimes and cert-manager's renewals are MF212 of meshfed check.",
    hint: 'docs/verify.md#rotation: istioctl proxy-config secret deploy/sleep -n sleep shows the SVID validity; kubectl -n spire logs ds/spire-agent',
    run: (ctx) =>
      eachCluster(ctx, async (c) =>
        judgeSvidAge((await sleepDump(ctx, c.name)).dump, ctx.fleet.ca.spire.svidTTL, ctx.now),
      ),
  },
  {
    code: 'MF307',
    title: 'Mutual TLS refuses identities outside the federation',
    category: 'identity',
    severity: 'error',
    stage: 'verify',
    description: `Through each cluster's east-west gateway, from where meshfed runs: helloworld answers a client holding an SVID a federated peer's SPIRE server mints for it (spire-server x509 mint, ${MINT_TTL}), and refuses, in the TLS handshake, one holding an SVID of ${OUTSIDER_TRUST_DOMAIN}, a trust domain outside the federation (a CA made in memory). Skipped where the gateway's address cannot be reached from here.`,
    hint: "docs/verify.md#outsiders: an outsider answered means a proxy trusts a CA beyond the fleet's bundles (istioctl proxy-config secret, ROOTCA); a peer refused means the federation is broken (MF205, MF304)",
    run: (ctx) =>
      eachCluster(ctx, async (c) => {
        const address = await currentAddress(clientOf(ctx, c.name), EAST_WEST_SERVICE);
        if (!address) return skip('the east-west gateway has no address');
        const server = {
          trustDomain: c.trustDomain,
          bundle: await spireOf(ctx, c.name).ownBundle(c.trustDomain),
        };
        const reachableNames = new Set(reachable(ctx).map((x) => x.name));
        const peer = peersOf(ctx.fleet, c.name).find((p) => reachableNames.has(p.name));
        const attempt = (client: X509Svid) =>
          ctx.probe.viaGateway(c.name, address, client, server).then(
            (answer) => ({ answer }),
            (e: unknown) => ({ refused: (e as Error).message }),
          );
        const outsider = (await selfIssuedContext(`spiffe://${OUTSIDER_TRUST_DOMAIN}/ns/sleep/sa/sleep`))
          .svids[0]!;
        const member = peer
          ? {
              id: `spiffe://${peer.trustDomain}/ns/meshfed-verify/sa/probe`,
              ...(await attempt(
                (
                  await spireOf(ctx, peer.name).mintX509Svid(
                    `spiffe://${peer.trustDomain}/ns/meshfed-verify/sa/probe`,
                    MINT_TTL,
                  )
                ).svid,
              )),
            }
          : undefined;
        return judgeOutsider(address, { id: outsider.spiffeId, ...(await attempt(outsider)) }, member);
      }),
  },
];

type Attempt = { id: string } & ({ answer: string } | { refused: string });

const gotThrough = (a: Attempt): a is { id: string; answer: string } => 'answer' in a;
const statusLine = (a: { answer: string }) => a.answer.split('\r\n')[0] ?? '';
/** A TLS or socket error from a connection attempt that never reached the gateway (nothing listening, no route). */
const unreached = (a: Attempt) =>
  !gotThrough(a) && /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|no answer within/.test(a.refused);

/**
 * MF307's verdict: the outsider refused in the handshake, and the federated
 * peer's identity answered (else the refusal says nothing of the trust).
 */
export function judgeOutsider(
  address: string,
  outsider: Attempt,
  member?: Attempt,
): Omit<Finding, 'cluster'> {
  if (unreached(outsider) && (!member || unreached(member)))
    return skip(`${address} cannot be reached from here (${(outsider as { refused: string }).refused})`);
  if (gotThrough(outsider))
    return fail(
      `${address}: ${outsider.id}, of a trust domain outside the federation, got through mutual TLS: ${statusLine(outsider)}`,
    );
  if (!member)
    return warn(
      `${address}: ${outsider.id} refused (${outsider.refused}); no federated peer to compare with`,
    );
  if (!gotThrough(member))
    return fail(
      `${address}: a federated peer's identity ${member.id} was refused too (${member.refused}): the outsider's refusal proves nothing`,
    );
  const hello = tallyHello([member.answer]);
  return pass(
    `${address}: ${outsider.id} refused (${outsider.refused.split('\n')[0]}); ${member.id} answered: ${Object.keys(hello.versions)[0] ?? statusLine(member)}`,
    { refused: outsider.refused.split('\n')[0], answered: statusLine(member) },
  );
}

// ---- the real probe ----

/** The Envoy cluster sleep's requests to helloworld go through. */
const HELLO_CLUSTER = `outbound|5000||helloworld.${APP_NAMESPACES.helloworld}.svc.cluster.local`;

/** The SNI a peer's proxy sends to an east-west gateway (AUTO_PASSTHROUGH) for helloworld's port. */
const HELLO_SNI = `outbound_.5000_._.helloworld.${APP_NAMESPACES.helloworld}.svc.cluster.local`;

/** How long istiod may take to push a Service's removal (or return) to a proxy. */
const PUSH_DEADLINE_MS = 30_000;

/**
 * The addresses (ip:port) of an Envoy cluster's endpoints in the admin
 * `/clusters` text, whose lines are `<cluster>::<host>::<stat>::<value>`, and
 * `<cluster>::<setting>::<value>` for the cluster's own settings.
 */
export function proxyEndpoints(clustersText: string, envoyCluster: string): string[] {
  const out = new Set<string>();
  for (const line of clustersText.split('\n')) {
    const [name, address] = line.split('::');
    if (name === envoyCluster && address && /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:.]+\]):\d+$/i.test(address))
      out.add(address);
  }
  return [...out];
}

/** The ready endpoints (ip:port) of a Service, from its EndpointSlices. */
async function endpointAddresses(
  client: ClusterClient,
  namespace: string,
  service: string,
): Promise<string[]> {
  const slices = (await client.list('discovery.k8s.io/v1', 'EndpointSlice', {
    namespace,
    labelSelector: `kubernetes.io/service-name=${service}`,
  })) as Array<
    KubeObject & {
      ports?: Array<{ port?: number }>;
      endpoints?: Array<{ addresses?: string[]; conditions?: { ready?: boolean } }>;
    }
  >;
  return slices.flatMap((s) =>
    (s.endpoints ?? [])
      .filter((e) => e.conditions?.ready !== false)
      .flatMap((e) => (e.addresses ?? []).flatMap((a) => (s.ports ?? []).map((p) => `${a}:${p.port}`))),
  );
}

/**
 * The Service as it can be made again: what meshfed's apply set in it (so that
 * meshfed owns the same fields as before and its next `up` finds nothing to
 * change), else the object without what the server assigned.
 */
export function restorable(svc: KubeObject): KubeObject {
  const ours = appliedPart(svc, FIELD_MANAGER);
  if (ours) return ours;
  const {
    resourceVersion: _rv,
    uid: _uid,
    creationTimestamp: _ct,
    managedFields: _mf,
    ...metadata
  } = svc.metadata;
  const spec = { ...(svc.spec as Record<string, unknown>) };
  delete spec.clusterIP;
  delete spec.clusterIPs;
  return { apiVersion: 'v1', kind: 'Service', metadata, spec };
}

/** Reads `read` until `done` says so or `ms` pass (every second); the last value read. */
async function pollUntil<T>(read: () => Promise<T>, done: (v: T) => boolean, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (done(v) || Date.now() >= deadline) return v;
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

/** The probe on real clusters: pod exec into sleep (curl) and into a proxy (pilot-agent's config dump). */
export function kubeProbe(ctx: CheckContext, timeoutMs = 60_000): Probe {
  const firstPod = async (
    client: ClusterClient,
    namespace: string,
    selector: string,
  ): Promise<KubeObject> => {
    const pods = (await client.list('v1', 'Pod', { namespace, labelSelector: selector })).filter(
      (p) => (p.status as { phase?: string } | undefined)?.phase === 'Running',
    );
    if (!pods.length) throw new Error(`no Running pod ${selector} in ${namespace}`);
    return pods[0]!;
  };
  const run = async (cluster: string, namespace: string, pod: string, container: string, cmd: string[]) => {
    const r = await clientOf(ctx, cluster).exec({ namespace, name: pod, container }, cmd, { timeoutMs });
    if (r.code !== 0 && !r.stdout)
      throw new Error(`exec in ${namespace}/${pod}: exit ${r.code}: ${r.stderr.trim().slice(0, 200)}`);
    return r.stdout;
  };
  return {
    async curl(cluster, url, n) {
      const pod = await firstPod(clientOf(ctx, cluster), APP_NAMESPACES.sleep, 'app=sleep');
      return splitRequests(
        await run(cluster, APP_NAMESPACES.sleep, pod.metadata.name, 'sleep', ['sh', '-c', curlLoop(url, n)]),
      );
    },
    async configDump(cluster, namespace, selector) {
      const pod = await firstPod(clientOf(ctx, cluster), namespace, selector);
      const dump = await run(cluster, namespace, pod.metadata.name, 'istio-proxy', [
        'pilot-agent',
        'request',
        'GET',
        'config_dump?resource=dynamic_active_secrets',
      ]);
      return { pod: pod.metadata.name, dump };
    },
    async withoutLocalService(cluster, during) {
      const client = clientOf(ctx, cluster);
      const ref = {
        apiVersion: 'v1',
        kind: 'Service',
        namespace: APP_NAMESPACES.helloworld,
        name: 'helloworld',
      };
      const svc = await client.get(ref);
      if (!svc) throw new Error('no helloworld Service to remove');
      const local = await endpointAddresses(client, APP_NAMESPACES.helloworld, 'helloworld');
      const sleep = await firstPod(client, APP_NAMESPACES.sleep, 'app=sleep');
      // What sleep's proxy sends helloworld's requests to now (pilot-agent's view of Envoy's clusters).
      const held = async () =>
        proxyEndpoints(
          await run(cluster, APP_NAMESPACES.sleep, sleep.metadata.name, 'istio-proxy', [
            'pilot-agent',
            'request',
            'GET',
            'clusters',
          ]),
          HELLO_CLUSTER,
        ).filter((a) => local.includes(a));
      await client.delete(ref);
      let out: Awaited<ReturnType<typeof during>>;
      try {
        // istiod takes the local endpoints out of sleep's proxy: polled, with a deadline.
        const left = await pollUntil(held, (a) => a.length === 0, PUSH_DEADLINE_MS);
        if (left.length)
          throw new Error(
            `sleep's proxy still sent to the local helloworld (${left.join(', ')}) ${PUSH_DEADLINE_MS / 1000} s after its Service was removed: istiod did not push the change`,
          );
        out = await during();
      } finally {
        await client.apply(restorable(svc));
      }
      // Back as before: the local endpoints in sleep's proxy again, before the next check runs.
      const back = await pollUntil(held, (a) => a.length === local.length, PUSH_DEADLINE_MS);
      if (back.length < local.length)
        throw new Error(
          `the helloworld Service was put back, but sleep's proxy did not send to the local helloworld again within ${PUSH_DEADLINE_MS / 1000} s`,
        );
      return out;
    },
    async viaGateway(_cluster, address, client, server) {
      const at = address.lastIndexOf(':');
      const options = spiffeClientOptions(
        { svids: [client], bundles: new BundleSet([server.bundle]) },
        authorizeMemberOf(server.trustDomain),
      );
      return new Promise<string>((resolve, reject) => {
        const socket = connect({
          ...options,
          host: address.slice(0, at),
          port: Number(address.slice(at + 1)),
          servername: HELLO_SNI,
          ALPNProtocols: ['istio-http/1.1'],
        });
        let answer = '';
        const timer = setTimeout(
          () => socket.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)),
          timeoutMs,
        );
        socket.setEncoding('utf8');
        socket.on('secureConnect', () =>
          socket.write(
            `GET /hello HTTP/1.1\r\nHost: ${new URL(HELLO_URL).host}\r\nConnection: close\r\n\r\n`,
          ),
        );
        socket.on('data', (d: string) => {
          answer += d;
        });
        socket.on('error', (e: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          // OpenSSL's "…:ssl/tls alert certificate unknown:…:SSL alert number 46" says it in its alert.
          const alert = /tls alert ([a-z ]+)/.exec(e.message)?.[1];
          reject(
            new Error(alert ? `TLS alert "${alert}" from the server` : `${e.code ?? 'error'}: ${e.message}`),
          );
        });
        socket.on('close', () => {
          clearTimeout(timer);
          if (answer) resolve(answer);
          else reject(new Error('the connection closed without an answer'));
        });
      });
    },
    async ingressAddress(cluster) {
      const svc = await clientOf(ctx, cluster).get({
        apiVersion: 'v1',
        kind: 'Service',
        namespace: ISTIO_NAMESPACE,
        name: 'istio-ingressgateway',
      });
      const ing = (
        svc?.status as { loadBalancer?: { ingress?: Array<{ ip?: string; hostname?: string }> } } | undefined
      )?.loadBalancer?.ingress?.[0];
      return ing?.ip ?? ing?.hostname;
    },
  };
}
