/**
 * The check runner and renderers, and `meshfed verify`'s judgement of the
 * data plane on captures of a real one (test/verify/fixtures; README.md and
 * captured.json there say how, from what and when each was captured, by
 * test/helpers/capture-verify-fixtures.ts on a 2-cluster lab with real
 * istiod, Envoy sidecars and gateways): the raw output of the probe's curl
 * loop in sleep (both clusters answering, the peer's east-west gateway down,
 * the local helloworld Service removed, no helloworld at all and curl's own
 * errors), and Envoy's config dump of sleep's proxy in both forms
 * pilot-agent gives (the whole /config_dump, and
 * ?resource=dynamic_active_secrets) with the SPIRE-issued SVID and the
 * federated bundles as they were. The captured certificates are judged at
 * the capture time recorded in captured.json, never the wall clock. Broken
 * chains a real capture cannot show are made by the tests and put into two
 * hand-written dumps (synthetic-envoy-*.json, placeholders @@CHAIN@@ and
 * @@ROOTS@@).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Fleet } from '../../src/fleet/model.js';
import { resolveFleet } from '../../src/fleet/resolve.js';
import type { ClusterClient } from '../../src/kube/client.js';
import { type CheckDef, exitCodeFor, type Finding, runChecks, summarize } from '../../src/verify/catalog.js';
import { type CheckContext, makeContext } from '../../src/verify/context.js';
import {
  curlLoop,
  dumpSecrets,
  HELLO_URL,
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
/** What captured.json records (test/helpers/capture-verify-fixtures.ts writes it). */
interface Captured {
  capturedAt: string;
  trustDomains: Record<string, string>;
  versions: Record<string, unknown>;
  files: Record<
    string,
    {
      capturedAt: string;
      condition: string;
      commands: Array<{ cluster: string; container: string; command: string[] }>;
      helloEndpoints?: string[];
      sha256: string;
    }
  >;
}
const captured = JSON.parse(fixture('captured.json')) as Captured;
const b64 = (s: string) => Buffer.from(s).toString('base64');
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

test('the captures are what captured.json says, taken as kubeProbe takes them, with no private key', () => {
  const files = readdirSync(FIX).filter((f) => /^(curl|envoy)-/.test(f));
  assert.deepEqual(
    files.sort(),
    Object.keys(captured.files).sort(),
    'every capture is recorded, and only those',
  );
  for (const [file, c] of Object.entries(captured.files)) {
    assert.equal(createHash('sha256').update(fixture(file)).digest('hex'), c.sha256, `${file} as captured`);
    assert.ok(
      c.commands.every((x) => x.cluster === 'cluster-1'),
      `${file}: from cluster-1's sleep`,
    );
  }
  // The curl files: kubeProbe.curl's exec (sh -c curlLoop) in the sleep container, as curlLoop writes it today.
  for (const file of ['curl-east-west.txt', 'curl-local-only.txt', 'curl-failover.txt'])
    assert.deepEqual(captured.files[file]!.commands, [
      {
        ...captured.files[file]!.commands[0]!,
        container: 'sleep',
        command: ['sh', '-c', curlLoop(HELLO_URL, 6)],
      },
    ]);
  assert.deepEqual(
    captured.files['curl-errors.txt']!.commands.map((x) => x.command),
    [
      ['sh', '-c', curlLoop(HELLO_URL, 4)],
      ['sh', '-c', curlLoop('http://nowhere.meshfed.invalid:5000/hello', 1)],
      ['sh', '-c', curlLoop('http://10.8.1.254:5000/hello', 1)],
    ],
  );
  // The dumps: kubeProbe.configDump's exec in the istio-proxy container, and the whole config_dump.
  assert.deepEqual(captured.files['envoy-secrets-only.json']!.commands[0]!.command, [
    'pilot-agent',
    'request',
    'GET',
    'config_dump?resource=dynamic_active_secrets',
  ]);
  assert.deepEqual(captured.files['envoy-config-dump.json']!.commands[0]!.command, [
    'pilot-agent',
    'request',
    'GET',
    'config_dump',
  ]);
  // What sleep's proxy held for helloworld during each curl capture: the local pod and cluster-2's east-west
  // gateway, both while that gateway had no pod (istiod still pushed its address), the gateway alone once
  // the local Service was removed, nothing with no helloworld anywhere.
  const held = (file: string) => captured.files[file]!.helloEndpoints!.length;
  assert.deepEqual(
    ['curl-east-west.txt', 'curl-local-only.txt', 'curl-failover.txt', 'curl-errors.txt'].map(held),
    [2, 2, 1, 0],
  );
  assert.deepEqual(
    captured.files['curl-local-only.txt']!.helloEndpoints,
    captured.files['curl-east-west.txt']!.helloEndpoints,
  );
  assert.ok(
    captured.files['curl-east-west.txt']!.helloEndpoints!.includes(
      captured.files['curl-failover.txt']!.helloEndpoints![0]!,
    ),
  );
  // No private key in what the capture wrote (README.md names the text it looks for).
  for (const file of [...Object.keys(captured.files), 'captured.json'])
    assert.doesNotMatch(fixture(file), /PRIVATE KEY/, file);
  for (const file of ['envoy-secrets-only.json', 'envoy-config-dump.json']) {
    const keys = fixture(file).match(/"private_key": \{\s*"inline_bytes": "([^"]*)"/g) ?? [];
    assert.equal(keys.length, 1, `${file}: the SVID's key`);
    assert.ok(keys[0]!.endsWith(`"${b64('[redacted]')}"`), `${file}: the key as Envoy redacts it`);
  }
});

test('east-west and failover from captured curl output', () => {
  // Both clusters reached from cluster-1's sleep.
  const ew = tallyHello(splitRequests(fixture('curl-east-west.txt')));
  assert.deepEqual(ew, { versions: { v1: 4, v2: 2 }, errors: [], total: 6 });
  const ok = judgeEastWest(ctx, 'cluster-1', ew);
  assert.equal(ok.status, 'passed');
  assert.equal(ok.message, '6 requests: v1 4, v2 2');

  // cluster-2's east-west gateway scaled to 0: sleep's proxy still held the gateway's address beside the
  // local pod's, but the route's retries (connect-failure, 2 retries, another host) ended on the local v1,
  // so no request failed; only v2's absence tells.
  const local = tallyHello(splitRequests(fixture('curl-local-only.txt')));
  assert.deepEqual(local, { versions: { v1: 6 }, errors: [], total: 6 });
  const bad = judgeEastWest(ctx, 'cluster-1', local);
  assert.equal(bad.status, 'failed');
  assert.equal(bad.message, '6 requests: v1 6; no answer from v2');
  const why = { v2: ["cluster-2's east-west gateway istio-system/istio-eastwestgateway has no ready pod"] };
  assert.equal(
    judgeEastWest(ctx, 'cluster-1', local, why).message,
    "6 requests: v1 6; no answer from v2 (cluster-2's east-west gateway istio-system/istio-eastwestgateway has no ready pod)",
  );

  // cluster-1's helloworld Service deleted: every request answered by v2.
  const fo = tallyHello(splitRequests(fixture('curl-failover.txt')));
  assert.deepEqual(fo, { versions: { v2: 6 }, errors: [], total: 6 });
  const failover = judgeFailover(ctx, 'cluster-1', fo);
  assert.equal(failover.status, 'passed');
  assert.equal(failover.message, 'local Service removed: v2 6, restored');
  const stillLocal = judgeFailover(ctx, 'cluster-1', local);
  assert.equal(stillLocal.status, 'failed');
  assert.equal(stillLocal.message, 'the local v1 still answered 6 times without its Service');

  // No helloworld anywhere (Envoy's local reply), a name that does not resolve (curl's own error) and an
  // address in the pod range no pod holds (Envoy's reply when its passthrough connection fails).
  const errs = tallyHello(splitRequests(fixture('curl-errors.txt')));
  assert.deepEqual(errs.versions, {});
  assert.equal(errs.total, 6);
  assert.deepEqual(errs.errors, [
    'no healthy upstream',
    'no healthy upstream',
    'no healthy upstream',
    'no healthy upstream',
    'curl: (6) Could not resolve host: nowhere.meshfed.invalid',
    'upstream connect error or disconnect/reset before headers. reset reason: remote connection failure',
  ]);
  const none = judgeFailover(ctx, 'cluster-2', errs);
  assert.equal(none.status, 'failed');
  assert.match(none.message, /^no remote version answered \(no healthy upstream\)$/);
  const nobody = judgeEastWest(ctx, 'cluster-1', errs);
  assert.equal(nobody.status, 'failed');
  assert.equal(nobody.message, '6 requests: none; no answer from v1, v2; 6 failed (no healthy upstream)');
  assert.ok(fixture('curl-errors.txt').endsWith(`${REQUEST_END}\n`));
});

test('identity, trust chain and SVID age of the captured Envoy config dumps, at their capture time', () => {
  // The fleet's trust domains as the lab had them: cluster-1's sleep is in foo.com, its peer cluster-2 in bar.com.
  assert.deepEqual(captured.trustDomains, { 'cluster-1': 'foo.com', 'cluster-2': 'bar.com' });
  const own = captured.trustDomains['cluster-1']!;
  const peer = captured.trustDomains['cluster-2']!;
  for (const file of ['envoy-secrets-only.json', 'envoy-config-dump.json']) {
    const dump = fixture(file);
    const at = new Date(captured.files[file]!.capturedAt);
    // The roots as the proxy holds them: per trust domain, in the SPIFFE validator SPIRE's SDS sends as ROOTCA.
    const rootca = dumpSecrets(dump).find((s) => s.name === 'ROOTCA');
    const byDomain = new Map((rootca?.trustDomains ?? []).map((d) => [d.name, d.certs]));
    assert.deepEqual([...byDomain.keys()].sort(), [own, peer].sort(), `${file}: trust_domains`);
    const roots = (td: string) => byDomain.get(td)!.map((c) => c.fingerprintSha256);
    assert.ok(roots(own).length && roots(peer).length);
    assert.notDeepEqual(roots(own), roots(peer), 'each trust domain its own root');
    const want = {
      spiffeId: 'spiffe://foo.com/ns/sleep/sa/sleep',
      ownRoots: roots(own),
      peerRoots: { [peer]: roots(peer) },
    };

    // MF304: the real SVID names sleep, and both bundles reached the proxy.
    const id = judgeIdentity(dump, want);
    assert.equal(id.status, 'passed', `${file}: ${id.message}`);
    assert.equal(id.message, 'spiffe://foo.com/ns/sleep/sa/sleep; trusts 2 trust domains');
    assert.deepEqual(id.data, { spiffeId: 'spiffe://foo.com/ns/sleep/sa/sleep', trusted: 2 });
    // The same dump judged against other expectations: another workload's ID, a peer root it does not hold.
    const other = judgeIdentity(dump, { ...want, spiffeId: 'spiffe://foo.com/ns/default/sa/default' });
    assert.equal(other.status, 'failed');
    assert.equal(
      other.message,
      "the proxy's SVID is spiffe://foo.com/ns/sleep/sa/sleep, expected spiffe://foo.com/ns/default/sa/default",
    );
    const unknownPeer = judgeIdentity(dump, { ...want, peerRoots: { [peer]: ['00:11'] } });
    assert.equal(unknownPeer.status, 'failed');
    assert.equal(
      unknownPeer.message,
      'spiffe://foo.com/ns/sleep/sa/sleep: ROOTCA lacks the bundle of bar.com',
    );
    const swapped = judgeIdentity(dump, { ...want, ownRoots: ['00:11'] });
    assert.match(swapped.message, /ROOTCA lacks the bundle of its own trust domain$/);

    // MF305: workload SVID ← SPIRE intermediate ← cert-manager root, valid when captured; not after the SVID expired.
    const chain = judgeChain(dump, own, at);
    assert.equal(chain.status, 'passed', `${file}: ${chain.message}`);
    assert.equal(chain.message, 'workload SVID ← SPIRE intermediate ← cert-manager root');
    const svid = dumpSecrets(dump).find((s) => s.name === 'default')!.chain[0]!;
    const expired = judgeChain(dump, own, new Date(svid.notAfter.getTime() + 1_000));
    assert.equal(expired.status, 'failed');
    assert.match(expired.message, /expired at/);

    // MF306: the SVID (the fleet's svidTTL 1h) was 14 minutes old when captured: SPIRE had renewed it at half-life.
    const age = judgeSvidAge(dump, '1h', at);
    assert.equal(age.status, 'passed', age.message);
    assert.equal(age.message, 'SVID 14 min old of 60 min (TTL 1h)');
    const late = judgeSvidAge(dump, '1h', new Date(svid.notBefore.getTime() + 40 * 60_000));
    assert.equal(late.status, 'failed');
    assert.equal(late.message, 'the SVID is 40 min old: past half its 60 min life, it was not renewed');
    const shortTtl = judgeSvidAge(dump, '30m', at);
    assert.equal(shortTtl.message, 'the SVID lives 60 min, more than the configured 30m');
  }
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

/** A hand-written dump (synthetic-envoy-*.json) with test-made chain and roots in its placeholders. */
function dump(file: string, chain: Issued[], roots: Issued[]): string {
  return fixture(file)
    .replace('@@CHAIN@@', b64(chain.map((c) => c.pem).join('\n')))
    .replace('@@ROOTS@@', b64(roots.map((c) => c.pem).join('\n')));
}

test('identity, trust chain and SVID age of test-made chains in hand-written dumps', async () => {
  const p = await pki({
    notBefore: new Date(Date.now() - 10 * 60_000),
    notAfter: new Date(Date.now() + 50 * 60_000),
  });
  const want = {
    spiffeId: 'spiffe://foo.com/ns/sleep/sa/sleep',
    ownRoots: [p.rootA.cert.fingerprintSha256],
    peerRoots: { 'bar.com': [p.rootB.cert.fingerprintSha256] },
  };
  for (const file of ['synthetic-envoy-config-dump.json', 'synthetic-envoy-secrets-only.json']) {
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
  const file = 'synthetic-envoy-config-dump.json';
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

test('verify checks through a probe fed with captured curl output', async () => {
  // The captures are cluster-1's sleep's; here each stands for what a cluster's probe returns.
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
  // cluster-1's sleep got both versions; cluster-2's (fed the local-only capture) only v1, not its own v2.
  assert.equal(by.MF301!.status, 'failed');
  assert.deepEqual(
    by.MF301!.findings.map((f) => [f.cluster, f.status, f.message]),
    [
      ['cluster-1', 'passed', '6 requests: v1 4, v2 2'],
      ['cluster-2', 'failed', '6 requests: v1 6; no answer from v2'],
    ],
  );
  assert.equal(by.MF301!.summary, 'failed: cluster-2: 6 requests: v1 6; no answer from v2');
  // Failover from cluster-2 gets only v2, its own version: failed there; cluster-1 gets only v2: passed.
  assert.deepEqual(
    by.MF302!.findings.map((f) => [f.cluster, f.status]),
    [
      ['cluster-1', 'passed'],
      ['cluster-2', 'failed'],
    ],
  );
  assert.match(by.MF302!.findings[1]!.message, /^the local v2 still answered 6 times without its Service/);
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
