/**
 * The check runner and renderers, and `meshfed verify`'s judgement of the
 * data plane on hand-written fixtures (test/verify/fixtures, README.md there
 * says how each was made): curl's and helloworld's lines as the probe's loop
 * prints them, and Envoy config dumps in both forms pilot-agent gives (the
 * whole /config_dump, and ?resource=dynamic_active_secrets), with certificate
 * chains made by the tests in the mesh's shape. The fixtures imitate those
 * formats; none was captured from a real data plane yet.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Fleet } from '../../src/fleet/model.js';
import { resolveFleet } from '../../src/fleet/resolve.js';
import type { ClusterClient } from '../../src/kube/client.js';
import { type CheckDef, exitCodeFor, type Finding, runChecks, summarize } from '../../src/verify/catalog.js';
import { type CheckContext, makeContext } from '../../src/verify/context.js';
import {
  judgeChain,
  judgeEastWest,
  judgeFailover,
  judgeIdentity,
  judgeSvidAge,
  type Probe,
  REQUEST_END,
  splitRequests,
  tallyHello,
  VERIFY_CHECKS,
  type VerifyContext,
} from '../../src/verify/dataplane.js';
import { formatJson, formatText } from '../../src/verify/format.js';
import { POST_CHECKS } from '../../src/verify/post.js';
import { guessPlural, PRE_CHECKS } from '../../src/verify/pre.js';
import { edgesOf, reportHtml } from '../../src/verify/report.js';
import { parseResultsFile } from '../../src/verify/results-file.js';
import { REPO_ROOT } from '../helpers/lab.js';
import { type Issued, intermediate, root, svid } from '../helpers/pki.js';

const FIX = join(REPO_ROOT, 'test/verify/fixtures');
const fixture = (f: string) => readFileSync(join(FIX, f), 'utf8');
const fleet: Fleet = resolveFleet(undefined).fleet!;
const ctx: CheckContext = makeContext({ fleet, clients: new Map(), versions: new Map() });

test('the runner: worst status, clusters named once per message, thrown errors, --fail-on', async () => {
  const def = (code: string, severity: 'error' | 'warning', findings: Finding[] | Error): CheckDef<null> => ({
    code,
    title: code,
    category: 'spire',
    severity,
    stage: 'post',
    description: '',
    hint: `fix ${code}`,
    run: async () => {
      if (findings instanceof Error) throw findings;
      return findings;
    },
  });
  const seen: string[] = [];
  const results = await runChecks(
    [
      def('MF901', 'error', [
        { status: 'passed', cluster: 'a', message: 'fine' },
        { status: 'failed', cluster: 'b', message: 'server down' },
        { status: 'failed', cluster: 'c', message: 'server down' },
      ]),
      def('MF902', 'warning', [{ status: 'failed', cluster: 'a', message: 'expires soon' }]),
      def('MF903', 'error', new Error('boom')),
      def('MF904', 'error', [
        { status: 'passed', cluster: 'a', message: 'ok' },
        { status: 'passed', cluster: 'b', message: 'ok' },
      ]),
      def('MF905', 'error', []),
    ],
    null,
    { observe: (r) => seen.push(r.code), concurrency: 2 },
  );
  assert.deepEqual(
    results.map((r) => [r.code, r.status]),
    [
      ['MF901', 'failed'],
      ['MF902', 'warning'],
      ['MF903', 'failed'],
      ['MF904', 'passed'],
      ['MF905', 'skipped'],
    ],
  );
  assert.equal(seen.length, 5);
  assert.equal(results[0]!.summary, 'failed: b, c: server down');
  assert.equal(results[0]!.hint, 'fix MF901');
  assert.equal(results[3]!.hint, undefined, 'no fix for a passed check');
  assert.equal(results[3]!.summary, 'ok (a, b)');
  assert.match(results[2]!.summary, /the check could not run: boom/);
  assert.equal(exitCodeFor(results, 'failed'), 1);
  assert.equal(exitCodeFor(results.slice(1, 2), 'failed'), 0);
  assert.equal(exitCodeFor(results.slice(1, 2), 'warning'), 1);
  assert.equal(exitCodeFor(results, 'never'), 0);
  assert.equal(summarize([]), 'nothing to check');
  const text = formatText(results);
  assert.match(text, /^FAIL {5}MF901/m);
  assert.match(text, /^WARN {5}MF902/m);
  assert.match(text, /How to fix:\n {2}MF901: fix MF901\n {2}MF902: fix MF902\n {2}MF903: fix MF903/);
  assert.match(text, /1 passed, 1 warnings, 2 failed, 0 not run, 1 skipped/);
  const json = JSON.parse(formatJson(results, { fleet: 'f', stage: 'post', at: new Date(0) }));
  assert.deepEqual(json.counts, { passed: 1, warning: 1, failed: 2, 'not-run': 0, skipped: 1 });
  assert.equal(json.results[0].findings.length, 3);
});

test('a fatal check runs first and blocks its failed clusters: their later findings are not-run because of it', async () => {
  const order: string[] = [];
  const def = (code: string, findings: Finding[], fatal = false): CheckDef<null> => ({
    code,
    title: code,
    category: 'kubernetes',
    severity: 'error',
    stage: 'post',
    description: '',
    hint: `fix ${code}`,
    ...(fatal ? { fatal, blocking: 'it is down' } : {}),
    run: async () => {
      order.push(code);
      return findings;
    },
  });
  const results = await runChecks(
    [
      def('MF902', [
        { status: 'passed', cluster: 'a', message: 'fine' },
        // A check that forgot the blocked cluster: its finding is turned into not-run, its data dropped.
        { status: 'failed', cluster: 'b', message: 'timeout', data: { x: 1 } },
      ]),
      def('MF903', [{ status: 'passed', message: 'fleet-wide' }]),
      def(
        'MF901',
        [
          { status: 'passed', cluster: 'a', message: 'up' },
          { status: 'failed', cluster: 'b', message: 'down' },
        ],
        true,
      ),
    ],
    null,
    { only: ['MF902', 'MF903'], concurrency: 1 },
  );
  assert.deepEqual(order, ['MF901', 'MF902', 'MF903'], 'the fatal check first, although --only left it out');
  assert.deepEqual(
    results.map((r) => [r.code, r.status]),
    [
      ['MF901', 'failed'],
      ['MF902', 'not-run'],
      ['MF903', 'passed'],
    ],
  );
  assert.deepEqual(results[1]!.findings[1], {
    status: 'not-run',
    cluster: 'b',
    because: 'MF901',
    message: 'not run: it is down (MF901)',
  });
  assert.equal(results[1]!.summary, 'not run because of MF901: b: it is down (MF901); passed on a');
  assert.equal(results[1]!.hint, undefined, 'the fix is the fatal check’s');
  // not-run fails the run like failed, and ranks between warning and failed.
  const notRunOnly = results.slice(1, 2);
  assert.equal(exitCodeFor(notRunOnly, 'failed'), 1);
  assert.equal(exitCodeFor(notRunOnly, 'never'), 0);
  assert.equal(
    summarize([
      { status: 'warning', message: 'w' },
      { status: 'not-run', because: 'MF101', message: 'n' },
    ]).startsWith('not run'),
    true,
  );
  assert.match(
    summarize([
      { status: 'failed', message: 'f' },
      { status: 'not-run', because: 'MF101', message: 'n' },
    ]),
    /^failed: f$/,
  );
  // Text and JSON say the same, and report --from reads it back.
  const text = formatText(results);
  assert.match(text, /^NOT RUN {2}MF902 {2}MF902 {2}not run because of MF901/m);
  assert.match(text, /1 passed, 0 warnings, 1 failed, 1 not run, 0 skipped/);
  const json = formatJson(results, { fleet: 'f', stage: 'post', at: new Date(0) });
  assert.deepEqual(JSON.parse(json).counts, { passed: 1, warning: 0, failed: 1, 'not-run': 1, skipped: 0 });
  assert.deepEqual(parseResultsFile(json), results);
});

test('a check that changes the clusters runs alone, between the others; the others still run up to the limit', async () => {
  // Each fake check records that it started and stays running until the test releases it.
  const running = new Set<string>();
  const release = new Map<string, () => void>();
  const overlaps: string[] = [];
  let most = 0;
  const changing = new Set(['MF903', 'MF907']);
  const def = (code: string): CheckDef<null> => ({
    code,
    title: code,
    category: 'traffic',
    severity: 'error',
    stage: 'verify',
    description: '',
    hint: '',
    ...(changing.has(code) ? { changesClusters: true } : {}),
    run: async () => {
      for (const other of running)
        if (changing.has(code) || changing.has(other)) overlaps.push(`${code} started while ${other} ran`);
      running.add(code);
      most = Math.max(most, running.size);
      await new Promise<void>((r) => release.set(code, r));
      running.delete(code);
      return [{ status: 'passed', message: 'ok' }];
    },
  });
  const codes = ['MF901', 'MF902', 'MF903', 'MF904', 'MF905', 'MF906', 'MF907'];
  const done = runChecks(codes.map(def), null, { concurrency: 2 });
  // Every promise callback has run once setImmediate's turn comes: what can start has started.
  const settled = () => new Promise((r) => setImmediate(r));
  const end = async (...these: string[]) => {
    for (const c of these) release.get(c)!();
    await settled();
    return [...running].sort();
  };
  await settled();
  assert.deepEqual([...running].sort(), ['MF901', 'MF902'], 'two read-only checks at once');
  assert.deepEqual(await end('MF901'), ['MF902'], 'MF903 waits for every check before it to end');
  assert.deepEqual(await end('MF902'), ['MF903'], 'then runs alone');
  assert.deepEqual(await end('MF903'), ['MF904', 'MF905'], 'the checks after it start once it has ended');
  assert.deepEqual(await end('MF904'), ['MF905', 'MF906']);
  assert.deepEqual(await end('MF905', 'MF906'), ['MF907']);
  assert.deepEqual(await end('MF907'), []);
  const results = await done;
  assert.deepEqual(overlaps, []);
  assert.equal(most, 2, 'never more than the limit');
  assert.deepEqual(
    results.map((r) => r.code),
    codes,
    'results in catalog order',
  );
  // The catalog: MF302 deletes the helloworld Services, so MF301 and MF303 must not run beside it.
  assert.deepEqual(
    [...PRE_CHECKS, ...POST_CHECKS, ...VERIFY_CHECKS].filter((c) => c.changesClusters).map((c) => c.code),
    ['MF302'],
  );
});

test('east-west and failover from hand-written curl output', () => {
  const ew = tallyHello(splitRequests(fixture('curl-east-west.txt')));
  assert.deepEqual(ew, { versions: { v1: 3, v2: 3 }, errors: [], total: 6 });
  const ok = judgeEastWest(ctx, 'cluster-1', ew);
  assert.equal(ok.status, 'passed');
  assert.equal(ok.message, '6 requests: v1 3, v2 3');

  const local = tallyHello(splitRequests(fixture('curl-local-only.txt')));
  assert.equal(local.total, 4);
  assert.deepEqual(local.versions, { v1: 3 });
  assert.match(local.errors[0]!, /^upstream connect error/);
  const bad = judgeEastWest(ctx, 'cluster-1', local);
  assert.equal(bad.status, 'failed');
  assert.match(bad.message, /no answer from v2; 1 failed \(upstream connect error/);

  const fo = tallyHello(splitRequests(fixture('curl-failover.txt')));
  assert.equal(judgeFailover(ctx, 'cluster-1', fo).status, 'passed');
  const stillLocal = judgeFailover(ctx, 'cluster-1', local);
  assert.equal(stillLocal.status, 'failed');
  assert.match(stillLocal.message, /local v1 still answered 3 times/);

  const errs = tallyHello(splitRequests(fixture('curl-errors.txt')));
  assert.deepEqual(errs.versions, {});
  assert.deepEqual(errs.errors, [
    'no healthy upstream',
    'curl: (28) Connection timed out after 5002 milliseconds',
    'curl: (6) Could not resolve host: helloworld.helloworld',
    'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
  ]);
  const none = judgeFailover(ctx, 'cluster-2', errs);
  assert.equal(none.status, 'failed');
  assert.match(none.message, /no remote version answered \(no healthy upstream\)/);
  assert.ok(fixture('curl-errors.txt').includes(REQUEST_END));
});

interface Pki {
  rootA: Issued;
  rootB: Issued;
  spireA: Issued;
  leaf: Issued;
}

async function pki(leafOver: Parameters<typeof svid>[2] = {}): Promise<Pki> {
  const rootA = await root();
  const rootB = await root();
  const spireA = await intermediate(rootA, 'foo.com');
  const leaf = await svid(spireA, 'spiffe://foo.com/ns/sleep/sa/sleep', leafOver);
  return { rootA, rootB, spireA, leaf };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
function dump(file: string, chain: Issued[], roots: Issued[]): string {
  return fixture(file)
    .replace('@@CHAIN@@', b64(chain.map((c) => c.pem).join('\n')))
    .replace('@@ROOTS@@', b64(roots.map((c) => c.pem).join('\n')));
}

test('identity, trust chain and SVID age from hand-written Envoy config dumps', async () => {
  const p = await pki({
    notBefore: new Date(Date.now() - 10 * 60_000),
    notAfter: new Date(Date.now() + 50 * 60_000),
  });
  const want = {
    spiffeId: 'spiffe://foo.com/ns/sleep/sa/sleep',
    ownRoots: [p.rootA.cert.fingerprintSha256],
    peerRoots: { 'bar.com': [p.rootB.cert.fingerprintSha256] },
  };
  for (const file of ['envoy-config-dump.json', 'envoy-secrets-only.json']) {
    const good = dump(file, [p.leaf, p.spireA], [p.rootA, p.rootB]);
    const id = judgeIdentity(good, want);
    assert.equal(id.status, 'passed', `${file}: ${id.message}`);
    assert.equal(id.message, 'spiffe://foo.com/ns/sleep/sa/sleep; trusts 2 trust domains');
    const chain = judgeChain(good, 'foo.com', new Date());
    assert.equal(chain.status, 'passed', `${file}: ${chain.message}`);
    assert.equal(chain.message, 'workload SVID ← SPIRE intermediate ← cert-manager root');
    const age = judgeSvidAge(good, '1h', new Date());
    assert.equal(age.status, 'passed', age.message);
    assert.match(age.message, /^SVID 10 min old of 60 min \(TTL 1h\)$/);

    // The peer's bundle missing from ROOTCA: federation did not reach the proxy.
    const noPeer = judgeIdentity(dump(file, [p.leaf, p.spireA], [p.rootA]), want);
    assert.equal(noPeer.status, 'failed');
    assert.match(noPeer.message, /ROOTCA lacks the bundle of bar\.com/);
  }
  const file = 'envoy-config-dump.json';
  // Another workload's SVID.
  const other = await svid(p.spireA, 'spiffe://foo.com/ns/default/sa/default');
  const wrong = judgeIdentity(dump(file, [other, p.spireA], [p.rootA, p.rootB]), want);
  assert.equal(wrong.status, 'failed');
  assert.match(
    wrong.message,
    /is spiffe:\/\/foo\.com\/ns\/default\/sa\/default, expected spiffe:\/\/foo\.com\/ns\/sleep\/sa\/sleep/,
  );
  // A chain without SPIRE's intermediate, signed straight by the root: not the mesh's shape.
  const direct = await svid(p.rootA, 'spiffe://foo.com/ns/sleep/sa/sleep');
  const flat = judgeChain(dump(file, [direct], [p.rootA, p.rootB]), 'foo.com', new Date());
  assert.equal(flat.status, 'failed');
  assert.match(flat.message, /no SPIRE intermediate in the chain/);
  // A chain that does not validate against the trusted CAs.
  const foreign = judgeChain(dump(file, [p.leaf, p.spireA], [p.rootB]), 'foo.com', new Date());
  assert.equal(foreign.status, 'failed');
  // An SVID past half its life: not renewed.
  const stale = await pki({
    notBefore: new Date(Date.now() - 50 * 60_000),
    notAfter: new Date(Date.now() + 10 * 60_000),
  });
  const old = judgeSvidAge(dump(file, [stale.leaf, stale.spireA], [stale.rootA]), '1h', new Date());
  assert.equal(old.status, 'failed');
  assert.match(old.message, /50 min old: past half its 60 min life, it was not renewed/);
  // An SVID living longer than the configured TTL.
  const long = judgeSvidAge(dump(file, [p.leaf, p.spireA], [p.rootA]), '30m', new Date());
  assert.equal(long.status, 'failed');
  assert.match(long.message, /lives 60 min, more than the configured 30m/);
  // No workload certificate at all.
  const empty = judgeIdentity(JSON.stringify({ configs: [] }), want);
  assert.match(empty.message, /no workload certificate/);
});

test('verify checks through a probe fed with hand-written curl output', async () => {
  const removed: string[] = [];
  const probe: Probe = {
    curl: async (cluster, url) => {
      if (url.endsWith('/hello') && url.startsWith('http://127.'))
        return splitRequests(fixture('curl-east-west.txt')).slice(0, 2);
      if (removed.includes(cluster)) return splitRequests(fixture('curl-failover.txt'));
      return splitRequests(fixture(cluster === 'cluster-1' ? 'curl-east-west.txt' : 'curl-local-only.txt'));
    },
    configDump: async () => {
      throw new Error('no pod');
    },
    withoutLocalService: async (cluster, during) => {
      removed.push(cluster);
      try {
        return await during();
      } finally {
        removed.pop();
      }
    },
    ingressAddress: async (cluster) => (cluster === 'cluster-1' ? '127.101.1.3' : undefined),
    viaGateway: async () => {
      throw new Error('MF307 is not among the traffic checks');
    },
  };
  const vctx: VerifyContext = {
    ...makeContext({
      fleet,
      clients: new Map([
        ['cluster-1', {} as never],
        ['cluster-2', {} as never],
      ]),
      versions: new Map(),
    }),
    probe,
    requests: 6,
  };
  const results = await runChecks(VERIFY_CHECKS, vctx, { only: ['traffic'] });
  const by = Object.fromEntries(results.map((r) => [r.code, r]));
  assert.equal(by.MF301!.status, 'failed');
  assert.equal(
    by.MF301!.summary,
    'failed: cluster-2: 4 requests: v1 3; no answer from v2; 1 failed (upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: 111)',
  );
  // Failover from cluster-2 gets only v2, its own version: failed there; cluster-1 gets only v2: passed.
  assert.deepEqual(
    by.MF302!.findings.map((f) => [f.cluster, f.status]),
    [
      ['cluster-1', 'passed'],
      ['cluster-2', 'failed'],
    ],
  );
  assert.equal(removed.length, 0, 'every Service restored');
  assert.deepEqual(
    by.MF303!.findings.map((f) => [f.cluster, f.status, f.message]),
    [
      ['cluster-1', 'passed', '127.101.1.3/hello from cluster-2: v1 1, v2 1'],
      ['cluster-2', 'failed', 'the ingress gateway has no address'],
    ],
  );
});

test('the report: fleet picture with federation edges from MF205, every result, escaped', async () => {
  const results = await runChecks(
    [
      {
        code: 'MF205',
        title: 'Federated bundles current',
        category: 'federation',
        severity: 'error',
        stage: 'post',
        description: '',
        hint: 'meshfed up',
        run: async () => [
          {
            status: 'passed',
            cluster: 'cluster-1',
            message: 'ok',
            data: { holder: 'cluster-1', peer: 'cluster-2' },
          },
          {
            status: 'failed',
            cluster: 'cluster-2',
            message: 'stale <bundle>',
            data: { holder: 'cluster-2', peer: 'cluster-1' },
          },
        ],
      },
    ],
    ctx,
  );
  assert.deepEqual(edgesOf(fleet, results), [
    { a: 'cluster-1', b: 'cluster-2', status: 'failed', detail: 'stale <bundle>' },
  ]);
  assert.deepEqual(edgesOf(fleet, []), [
    { a: 'cluster-1', b: 'cluster-2', status: 'unknown', detail: 'not checked' },
  ]);
  const html = reportHtml(fleet, results, { at: new Date(0) });
  assert.match(html, /<g class="edge" data-a="cluster-1" data-b="cluster-2" data-status="failed">/);
  assert.match(html, /data-cluster="cluster-2" data-status="failed"/);
  assert.match(html, /trust domain bar\.com/);
  assert.match(html, /stale &lt;bundle&gt;/);
  assert.doesNotMatch(html, /<bundle>/);
  assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/, 'self-contained, no script');
});

test('pre checks on given answers: reachability, versions, distinct clusters', async () => {
  const sameUid = {
    get: async () => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kube-system', uid: 'u-1' } }),
  } as unknown as ClusterClient;
  const two = makeContext({
    fleet,
    clients: new Map([
      ['cluster-1', sameUid],
      ['cluster-2', sameUid],
    ]),
    versions: new Map([
      ['cluster-1', 'v1.35.2'],
      ['cluster-2', 'v1.31.0-gke.100'],
    ]),
  });
  // MF101, fatal, runs first whatever --only says.
  const [reach, ...r] = await runChecks(PRE_CHECKS, two, { only: ['MF102', 'MF103'] });
  assert.equal(reach!.code, 'MF101');
  assert.equal(reach!.status, 'passed');
  assert.deepEqual(
    r.map((x) => x.code),
    ['MF102', 'MF103'],
  );
  assert.deepEqual(
    r[0]!.findings.map((f) => [f.cluster, f.status]),
    [
      ['cluster-1', 'passed'],
      ['cluster-2', 'failed'],
    ],
  );
  assert.match(
    r[0]!.summary,
    /cluster-2: Kubernetes v1\.31\.0-gke\.100 is outside what Istio 1\.30 supports \(1\.32–1\.36\)/,
  );
  assert.equal(r[1]!.status, 'failed');
  assert.match(r[1]!.summary, /cluster-1: the same cluster as cluster-2/);
  // An Istio minor without support data: a warning, not a verdict.
  const other = makeContext({
    fleet: { ...fleet, versions: { ...fleet.versions, istio: '1.31.0' } },
    clients: new Map([['cluster-1', sameUid]]),
    versions: new Map([['cluster-1', 'v1.35.0']]),
    unreachable: new Map([
      [
        'cluster-2',
        {
          reason: 'refused',
          why: 'connection refused',
          message: 'context cluster-2 (https://127.0.0.1:1): GET /version: connect ECONNREFUSED 127.0.0.1:1',
          context: 'cluster-2',
          server: 'https://127.0.0.1:1',
        },
      ],
    ]),
  });
  const o = await runChecks(PRE_CHECKS, other, { only: ['MF101', 'MF102'] });
  assert.equal(o[0]!.status, 'failed');
  assert.match(
    o[0]!.summary,
    /cluster-2: unreachable: connection refused \(context cluster-2, https:\/\/127\.0\.0\.1:1\)/,
  );
  assert.deepEqual(o[0]!.findings[1]!.data, {
    reason: 'refused',
    detail: 'context cluster-2 (https://127.0.0.1:1): GET /version: connect ECONNREFUSED 127.0.0.1:1',
  });
  // The unreachable cluster's other checks are not run because of MF101, not skipped.
  assert.deepEqual(
    o[1]!.findings.map((f) => [f.cluster, f.status, f.because]),
    [
      ['cluster-1', 'warning', undefined],
      ['cluster-2', 'not-run', 'MF101'],
    ],
  );
  assert.equal(o[1]!.status, 'not-run');
  assert.match(
    o[1]!.summary,
    /^not run because of MF101: cluster-2: its API server is unreachable \(MF101\); warning on cluster-1$/,
  );
  assert.deepEqual(['Certificate', 'ClusterSPIFFEID', 'Policy', 'Ingress', 'Mesh'].map(guessPlural), [
    'certificates',
    'clusterspiffeids',
    'policies',
    'ingresses',
    'meshes',
  ]);
});
