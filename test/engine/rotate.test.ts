/**
 * `meshfed rotate root` and `meshfed rotate spire-ca` on the lab's real data
 * plane (current profile, 2 clusters, real pods), under continuous
 * cross-cluster traffic: sleep in cluster-1 → helloworld v2 in cluster-2 and
 * back, a new mutual TLS handshake every tenth request, through the peer's
 * east-west gateway (test/helpers/cross-traffic.ts). No request fails
 * through either rotation; afterwards every proxy's SVID chains to the new
 * authority, the old root is trusted nowhere, and check and verify pass.
 * The fleet's SVID TTL is 2m here, so the SVIDs of a new intermediate come
 * within a minute (their half-life).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SPIRE_SERVER_POD } from '../../src/engine/discover.js';
import { readFleetProxies } from '../../src/engine/proxies.js';
import { ROOT_CERT, renewCertificate } from '../../src/engine/rotate.js';
import { SpireServerCli } from '../../src/federation/spire-cli.js';
import { podServerTransport } from '../../src/federation/transport.js';
import { parsePemCertificates } from '../../src/spiffe/x509.js';
import { type CrossTraffic, crossTraffic, describeTraffic } from '../helpers/cross-traffic.js';
import { labSkip, startLab } from '../helpers/engine.js';

type Lab = Awaited<ReturnType<typeof startLab>>;

const rootOf = async (lab: Lab, cluster: string) => {
  const s = await lab.clients
    .get(cluster)!
    .get({ apiVersion: 'v1', kind: 'Secret', namespace: 'cert-manager', name: 'selfsigned-ca' });
  return parsePemCertificates(
    Buffer.from((s!.data as Record<string, string>)['tls.crt']!, 'base64').toString(),
  ).at(-1)!;
};
const spireOf = (lab: Lab, cluster: string) =>
  new SpireServerCli(podServerTransport(lab.clients.get(cluster)!, SPIRE_SERVER_POD));

describe('meshfed rotate on the real data plane (current profile, 2 clusters)', {
  skip: labSkip('current') ?? (process.getuid?.() === 0 ? false : 'real pods need root'),
  timeout: 1_500_000,
}, () => {
  let lab: Lab;
  let traffic: CrossTraffic;
  before(async () => {
    const t0 = Date.now();
    lab = await startLab('current', 2);
    const fleet = join(lab.dir, 'meshfed.yaml');
    writeFileSync(fleet, readFileSync(fleet, 'utf8').replace(/^( +svidTTL: )1h/m, '$12m'));
    const up = await lab.meshfed(['up']);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    traffic = await crossTraffic(lab.dir);
    console.log(
      `# lab up, meshfed up and the cross-cluster routing in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
  });
  /**
   * Runs meshfed under the cross-cluster load: from 3 s before to 3 s after,
   * then on until 1000 requests in all (at most 2 min more).
   */
  async function underTraffic(args: string[]) {
    const load = traffic.start({ concurrency: 8 });
    await new Promise((ok) => setTimeout(ok, 3000));
    const n0 = load.count();
    const r = await lab.meshfed(args);
    const during = load.count() - n0;
    await new Promise((ok) => setTimeout(ok, 3000));
    const results = await load.stop({ atLeast: 1000, maxWaitMs: 120_000 });
    console.log(`# ${during} requests while it ran; ${describeTraffic(results)}`);
    return { r, results, during };
  }
  /** No request failed; at least 1000 in all, and 200 while the command ran. */
  function noneFailed(results: Awaited<ReturnType<typeof underTraffic>>['results'], during: number) {
    let requests = 0;
    for (const [d, x] of Object.entries(results)) {
      assert.equal(x.errors, 0, `${d}: ${x.errors} failed requests (${x.errorSamples.join('; ')})`);
      requests += x.requests;
    }
    assert.ok(requests >= 1000, `only ${requests} requests`);
    assert.ok(during >= 200, `only ${during} requests while it rotated`);
  }
  after(async () => {
    await traffic?.close();
    await lab?.stop();
  });

  test('--dry-run prints the plan and changes nothing; a wrong cluster is bad input', async () => {
    const before_ = (await rootOf(lab, 'cluster-2')).fingerprintSha256;
    const dry = await lab.meshfed(['rotate', 'root', '--cluster', 'cluster-2', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^rotate root of cluster-2 \(SPIRE 1\.15\.3\), 7 steps:/);
    for (const id of ['new-root', 'prepare', 'propagate', 'activate', 'reissue', 'istio-ca', 'retire'])
      assert.match(dry.stdout, new RegExp(`\\d\\. ${id}: `));
    assert.equal((await rootOf(lab, 'cluster-2')).fingerprintSha256, before_, 'the dry run changed the root');
    const bad = await lab.meshfed(['rotate', 'root', '--cluster', 'cluster-9']);
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /--cluster cluster-9: no such cluster in the fleet \(it has cluster-1, cluster-2\)/,
    );
  });

  test('rotate root of cluster-2 under traffic: 0 failed requests; the new root everywhere, the old nowhere', async () => {
    const old = await rootOf(lab, 'cluster-2');
    const { r, results, during } = await underTraffic([
      'rotate',
      'root',
      '--cluster',
      'cluster-2',
      '-o',
      'json',
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const res = JSON.parse(r.stdout) as {
      steps: Array<{ id: string; ms: number; skipped?: boolean }>;
      propagationMs: number;
      newRoot: string;
      oldRoot: string;
    };
    console.log(
      `# steps: ${res.steps.map((s) => `${s.id} ${(s.ms / 1000).toFixed(1)} s`).join(', ')}; propagation ${(res.propagationMs / 1000).toFixed(1)} s`,
    );
    assert.deepEqual(
      res.steps.map((s) => `${s.id}${s.skipped ? ' skipped' : ''}`),
      ['new-root', 'prepare', 'propagate', 'activate', 'reissue', 'istio-ca', 'retire'],
    );
    noneFailed(results, during);
    const now = await rootOf(lab, 'cluster-2');
    assert.notEqual(now.fingerprintSha256, old.fingerprintSha256);
    assert.equal(res.newRoot, now.fingerprintSha256);
    // Every SVID of cluster-2 in use chains to the new root; no proxy of the fleet trusts the old one.
    const views = await readFleetProxies(lab.clients, ['cluster-1', 'cluster-2']);
    assert.ok(views.length >= 8, `${views.length} proxies`);
    for (const p of views) {
      assert.equal(p.error, undefined, `${p.pod}: ${p.error}`);
      assert.ok(
        !p.trusts.get('bar.com')?.has(old.fingerprintSha256),
        `${p.cluster}/${p.pod} still trusts the old root`,
      );
      if (p.trusts.has('bar.com'))
        assert.ok(
          p.trusts.get('bar.com')!.has(now.fingerprintSha256),
          `${p.cluster}/${p.pod} lacks the new root`,
        );
      if (p.cluster === 'cluster-2')
        assert.ok(
          p.svid.some((c) => c.authorityKeyId === now.subjectKeyId),
          `${p.pod}'s SVID is not under the new root`,
        );
    }
    for (const c of ['cluster-1', 'cluster-2']) {
      const held =
        c === 'cluster-2'
          ? await spireOf(lab, c).ownBundle('bar.com')
          : (await spireOf(lab, c).heldBundle('bar.com'))!;
      assert.deepEqual(
        held.x509Authorities.map((a) => a.fingerprintSha256),
        [now.fingerprintSha256],
        `${c}'s bar.com bundle`,
      );
    }
    // check passes: MF211 sees cacerts under the new root, MF205 the peers current.
    const check = await lab.meshfed(['check']);
    assert.equal(check.code, 0, check.stdout);
  });

  test('a rotation stopped after prepare goes on from there when run again', async () => {
    // What a run that stopped after its second step leaves: a new root, and SPIRE prepared under it.
    const c1 = lab.clients.get('cluster-1')!;
    const old = await rootOf(lab, 'cluster-1');
    await renewCertificate(c1, ROOT_CERT, 'test: a rotation that stopped after new-root');
    let root = old;
    for (const end = Date.now() + 60_000; root.fingerprintSha256 === old.fingerprintSha256; ) {
      assert.ok(Date.now() < end, 'cert-manager did not issue the root again within 60 s');
      await new Promise((ok) => setTimeout(ok, 500));
      root = await rootOf(lab, 'cluster-1');
    }
    const prepared = await spireOf(lab, 'cluster-1').prepareX509Authority();
    assert.equal(prepared.upstreamAuthoritySubjectKeyId, root.subjectKeyId);
    const r = await lab.meshfed(['rotate', 'root', '--cluster', 'cluster-1', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const res = JSON.parse(r.stdout) as {
      newRoot: string;
      newAuthority: string;
      steps: Array<{ id: string; skipped?: boolean; detail: string }>;
    };
    assert.deepEqual(
      res.steps.map((s) => `${s.id}${s.skipped ? ' skipped' : ''}`),
      ['new-root skipped', 'prepare skipped', 'propagate', 'activate', 'reissue', 'istio-ca', 'retire'],
      r.stderr,
    );
    assert.equal(
      res.newRoot,
      root.fingerprintSha256,
      'the root cert-manager issued before is the one rotated to, not another',
    );
    assert.equal(
      res.newAuthority,
      prepared.authorityId,
      'the authority prepared before is the one activated',
    );
    assert.deepEqual(
      (await spireOf(lab, 'cluster-1').ownBundle('foo.com')).x509Authorities.map((a) => a.fingerprintSha256),
      [root.fingerprintSha256],
    );
  });

  test('rotate spire-ca of cluster-1 under traffic: 0 failed requests; every proxy of cluster-1 on the new intermediate', async () => {
    const before_ = (await spireOf(lab, 'cluster-1').x509AuthorityState()).active!.authorityId;
    const { r, results, during } = await underTraffic([
      'rotate',
      'spire-ca',
      '--cluster',
      'cluster-1',
      '-o',
      'json',
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const res = JSON.parse(r.stdout) as { newAuthority: string; steps: Array<{ id: string; ms: number }> };
    console.log(`# steps: ${res.steps.map((s) => `${s.id} ${(s.ms / 1000).toFixed(1)} s`).join(', ')}`);
    noneFailed(results, during);
    const state = await spireOf(lab, 'cluster-1').x509AuthorityState();
    assert.notEqual(state.active!.authorityId, before_);
    assert.equal(state.active!.authorityId, res.newAuthority);
    for (const p of await readFleetProxies(lab.clients, ['cluster-1']))
      assert.ok(
        p.svid.some((c) => c.authorityKeyId === res.newAuthority),
        `${p.pod}'s SVID is not of the new intermediate`,
      );
    // The data plane as verify sees it, without the test's routing (it sends sleep to the peer only):
    // polled until istiod has pushed the routing's removal.
    await traffic.close();
    let last = '';
    for (const end = Date.now() + 180_000; ; ) {
      const verify = await lab.meshfed(['verify', '--requests', '10']);
      last = verify.stdout;
      if (verify.code === 0) break;
      assert.ok(Date.now() < end, `verify did not pass within 180 s:\n${last}`);
      await new Promise((ok) => setTimeout(ok, 2000));
    }
  });
});
