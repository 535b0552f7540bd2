/**
 * The federation engine and the Workload API client against real SPIRE
 * (the current profile's version): three trust domains as real spire-server
 * and spire-agent processes on loopback, this test process as the workload.
 */
import assert from 'node:assert/strict';
import { createPublicKey, type JsonWebKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { inspect } from 'node:util';
import {
  bootstrap,
  ensureRelationships,
  type FederationMember,
  federationStatus,
  fullMesh,
  type Pair,
  RefreshLog,
  refreshHoldersOf,
  type WatchEvent,
  watchFederation,
} from '../../src/federation/engine.js';
import { SpireServerCli } from '../../src/federation/spire-cli.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { type LabFederation, startLabFederation } from '../../src/lab/federation.js';
import { fetchBundle } from '../../src/spiffe/endpoint.js';
import { inspectChain, parseCertInput } from '../../src/spiffe/inspect.js';
import { authorizeId, authorizeMemberOf } from '../../src/spiffe/tls.js';
import { WorkloadApiClient, type X509Context } from '../../src/spiffe/workload.js';
import { type CertView, issuedBy, parsePemCertificates, toPem } from '../../src/spiffe/x509.js';
import { requireLab, waitUntil } from '../helpers/lab.js';
import { allCurrent, contextWith, mtls, registerWorkload, until, withLabLogs } from '../helpers/spire.js';

const VERSION = PROFILE_VERSIONS.current.spire;
const skip = requireLab(
  [`bin/spire/${VERSION}/spire-server`, `bin/spire/${VERSION}/spire-agent`],
  'npm run lab:build',
);

describe(`federation on real SPIRE ${VERSION}`, { skip, timeout: 600_000 }, () => {
  let lab: LabFederation;
  const logged = withLabLogs(() => lab?.logs());
  let foo: FederationMember;
  let bar: FederationMember;
  let baz: FederationMember;

  before(async () => {
    lab = await startLabFederation({ count: 3, spireVersion: VERSION });
    [foo, bar, baz] = lab.members as [FederationMember, FederationMember, FederationMember];
  });

  after(async () => {
    if (process.env.MESHFED_LAB_LOGS === '1') console.log(lab?.logs());
    await lab?.stop();
  });

  const d = (i: number) => lab.domains[i] as NonNullable<LabFederation['domains'][number]>;
  /**
   * The full mesh federated, for a test that needs it: bootstrap and
   * relationships write nothing when an earlier test made them, so the test
   * also runs alone.
   */
  const federated = async () => {
    const mesh = fullMesh(lab.members);
    await bootstrap(lab.members, mesh);
    await ensureRelationships(lab.members, mesh);
    return mesh;
  };

  test(
    'two domains federated by the engine: mutual TLS across them by SPIFFE ID; not without federation; not with a wrong ID',
    logged(async () => {
      const pair: Pair[] = [[foo.name, bar.name]];
      const steps = await bootstrap(lab.members, pair);
      assert.deepEqual(steps.map((s) => `${s.holder}<-${s.peer}:${s.result}`).sort(), [
        'cluster-1<-cluster-2:created',
        'cluster-2<-cluster-1:created',
      ]);
      const rel = await ensureRelationships(lab.members, pair);
      assert.ok(
        rel.every((s) => s.result === 'created'),
        JSON.stringify(rel),
      );

      const helloworld = await registerWorkload(d(0), '/ns/default/sa/helloworld', [bar.trustDomain]);
      const sleep = await registerWorkload(d(1), '/ns/default/sa/sleep', [foo.trustDomain]);
      const lonely = await registerWorkload(d(2), '/ns/default/sa/sleep');
      const server = await contextWith(d(0), helloworld, [bar.trustDomain]);
      const client = await contextWith(d(1), sleep, [foo.trustDomain]);
      const outsider = await contextWith(d(2), lonely);

      const ok = await mtls(
        { ctx: server, spiffeId: helloworld, authorize: authorizeId(sleep) },
        { ctx: client, spiffeId: sleep, authorize: authorizeId(helloworld) },
      );
      assert.ok(ok.ok, JSON.stringify(ok));
      assert.equal(ok.serverSaw, sleep);
      assert.match(ok.clientGot, /from spiffe:\/\/foo\.com\/ns\/default\/sa\/helloworld/);

      // baz.com is not federated with foo.com: neither trusts the other.
      const refused = await mtls(
        { ctx: server, spiffeId: helloworld, authorize: authorizeMemberOf(baz.trustDomain) },
        { ctx: outsider, spiffeId: lonely, authorize: authorizeId(helloworld) },
      );
      assert.equal(refused.ok, false);
      assert.doesNotMatch(JSON.stringify(refused), /hello/);

      // Federated, but the client expects another workload.
      const wrongId = await mtls(
        { ctx: server, spiffeId: helloworld, authorize: authorizeId(sleep) },
        {
          ctx: client,
          spiffeId: sleep,
          authorize: authorizeId('spiffe://foo.com/ns/default/sa/productpage'),
        },
      );
      assert.equal(wrongId.ok, false);
      assert.match(
        (wrongId as { error: string }).error,
        /not authorised \(expected spiffe:\/\/foo\.com\/ns\/default\/sa\/productpage\)/,
      );

      // And the server refuses a client it does not expect.
      const wrongClient = await mtls(
        { ctx: server, spiffeId: helloworld, authorize: authorizeId('spiffe://bar.com/ns/other/sa/x') },
        { ctx: client, spiffeId: sleep, authorize: authorizeId(helloworld) },
      );
      assert.equal(wrongClient.ok, false);
    }),
  );

  test(
    'the chain a workload receives is cert-manager root → SPIRE intermediate → SVID',
    logged(async () => {
      const id = await registerWorkload(d(0), '/ns/default/sa/chain');
      const ctx = await contextWith(d(0), id);
      const svid = ctx.svids.find((s) => s.spiffeId === id);
      assert.ok(svid);
      const input = parseCertInput(svid.chain.map(toPem).join(''));
      const report = inspectChain(input, {
        bundles: [ctx.bundles.get('foo.com') as NonNullable<ReturnType<X509Context['bundles']['get']>>],
      });
      assert.deepEqual(
        report.certificates.map((c) => `${c.role}:${c.origin}`),
        ['leaf:workload SVID', 'intermediate:SPIRE intermediate', 'root:cert-manager root'],
      );
      assert.equal(report.verdict?.valid, true, JSON.stringify(report.verdict?.problems));
      assert.equal(report.certificates[2]?.subject.includes('OU=cluster-1'), true);
      assert.equal(report.certificates[1]?.spiffeId, 'spiffe://foo.com');
    }),
  );

  test(
    'full mesh of three: bootstrap and relationships, then status is current for all 6 directions; a re-run writes nothing',
    logged(async () => {
      const mesh = fullMesh(lab.members);
      const steps = await bootstrap(lab.members, mesh);
      assert.equal(steps.length, 6);
      assert.equal(steps.filter((s) => s.result === 'created').length, 4, JSON.stringify(steps)); // foo↔bar existed
      assert.equal(steps.filter((s) => s.result === 'unchanged').length, 2);
      await ensureRelationships(lab.members, mesh);
      const again = [
        ...(await bootstrap(lab.members, mesh)),
        ...(await ensureRelationships(lab.members, mesh)),
      ];
      assert.ok(
        again.every((s) => s.result === 'unchanged'),
        JSON.stringify(again),
      );

      const st = await federationStatus(lab.members, mesh);
      assert.equal(st.length, 6);
      for (const s of st) {
        assert.equal(s.state, 'current', JSON.stringify(s));
        assert.ok(s.expiresAt && s.expiresAt.getTime() > Date.now());
        assert.ok(s.ageSeconds !== undefined && s.ageSeconds >= 0);
      }
      // baz.com now reaches foo.com.
      const hw = await registerWorkload(d(0), '/ns/default/sa/helloworld-mesh', [
        bar.trustDomain,
        baz.trustDomain,
      ]);
      const sl = await registerWorkload(d(2), '/ns/default/sa/sleep-mesh', [foo.trustDomain]);
      const r = await mtls(
        { ctx: await contextWith(d(0), hw, [baz.trustDomain]), spiffeId: hw, authorize: authorizeId(sl) },
        { ctx: await contextWith(d(2), sl, [foo.trustDomain]), spiffeId: sl, authorize: authorizeId(hw) },
      );
      assert.ok(r.ok, JSON.stringify(r));
    }),
  );

  test(
    "rotation of foo.com's root and CA: every peer holds the new bundle, with the watch and with the refresh hint alone; mTLS still works",
    logged(async () => {
      const mesh = fullMesh(lab.members);
      // Its own federation and workloads (bootstrap and relationships write nothing when earlier
      // tests made them), so the test also runs alone.
      await bootstrap(lab.members, mesh);
      await ensureRelationships(lab.members, mesh);
      const hw = await registerWorkload(d(0), '/ns/default/sa/helloworld-rotation', [bar.trustDomain]);
      const sl = await registerWorkload(d(1), '/ns/default/sa/sleep-rotation', [foo.trustDomain]);
      const log = new RefreshLog();
      const rotate = async () => {
        await d(0).rotateRoot();
        return foo.server.prepareX509Authority();
      };

      // 1. With meshfed's watch. Its first poll only records what is served: rotate after it.
      const events: WatchEvent[] = [];
      const watcher = watchFederation(lab.members, mesh, {
        intervalMs: 500,
        log,
        onEvent: (e) => events.push(e),
      });
      let prepared: Awaited<ReturnType<typeof rotate>>;
      let withWatch: number;
      // Stopped however this ends: a watch left polling keeps the test process alive.
      try {
        await waitUntil('the watch has polled once', async () => watcher.polls >= 1, 30_000);
        const t0 = Date.now();
        prepared = await rotate();
        await until(
          "peers hold foo.com's new bundle (watch)",
          () => allCurrent(lab.members, mesh, foo.name),
          60_000,
        );
        withWatch = Date.now() - t0;
      } finally {
        await watcher.stop();
      }
      assert.ok(
        events.some((e) => e.type === 'served-changed' && e.peer === foo.name),
        JSON.stringify(events),
      );
      assert.ok(events.some((e) => e.type === 'refreshed' && e.holder === bar.name && e.peer === foo.name));
      assert.ok(log.get(bar.name, foo.name));

      // The new authority signs from now on; the old one is tainted so workloads rotate at once.
      // (With an UpstreamAuthority SPIRE taints the old root, not the local authority.)
      const previous = (await foo.server.transport.run(['localauthority', 'x509', 'show', '-output', 'json']))
        .stdout;
      const oldRoot = (JSON.parse(previous) as { active?: { upstream_authority_subject_key_id?: string } })
        .active?.upstream_authority_subject_key_id;
      assert.ok(oldRoot, previous);
      await foo.server.activateX509Authority(prepared.authorityId);
      const taint = await foo.server.transport.run(['upstreamauthority', 'taint', '-subjectKeyID', oldRoot]);
      assert.equal(taint.code, 0, taint.stderr);

      const newRoot = parsePemCertificates(d(0).root?.certPem ?? '')[0] as CertView;
      const holdsNewRoot = (c: X509Context) =>
        c.bundles
          .get('foo.com')
          ?.x509Authorities.some((a) => a.fingerprintSha256 === newRoot.fingerprintSha256);
      const server = await until(
        'foo workload SVID chains to the new root',
        async () => {
          const c = await contextWith(d(0), hw);
          const svid = c.svids.find((s) => s.spiffeId === hw);
          return svid?.chain[1] && holdsNewRoot(c) && issuedBy(svid.chain[1], newRoot) ? c : undefined;
        },
        60_000,
      );
      const client = await until(
        'bar workload trusts the new root',
        async () => {
          const c = await contextWith(d(1), sl, [foo.trustDomain]);
          return holdsNewRoot(c) ? c : undefined;
        },
        60_000,
      );
      const r = await mtls(
        { ctx: server, spiffeId: hw, authorize: authorizeId(sl) },
        { ctx: client, spiffeId: sl, authorize: authorizeId(hw) },
      );
      assert.ok(r.ok, JSON.stringify(r));

      // 2. The refresh hint alone (1m on these endpoints: SPIRE polls every 15 s). From a settled
      // fleet: the taint above makes foo.com's server rotate its own SVID, and a rotation racing
      // that one is another test.
      await until(
        "peers hold foo.com's bundle after the taint",
        () => allCurrent(lab.members, mesh, foo.name),
        60_000,
      );
      const t1 = Date.now();
      await rotate();
      const stale = await federationStatus(lab.members, mesh);
      assert.ok(
        stale.some((s) => s.peer === foo.name && s.state === 'stale'),
        JSON.stringify(stale),
      );
      await until(
        "peers hold foo.com's new bundle (refresh hint alone)",
        () => allCurrent(lab.members, mesh, foo.name),
        120_000,
      );
      const hintAlone = Date.now() - t1;
      console.log(`# rotation propagation: watch ${withWatch} ms, refresh hint alone ${hintAlone} ms`);
    }),
  );

  test(
    'security: an endpoint presenting another SPIFFE ID is refused; a bundle of another trust domain is refused',
    logged(async () => {
      await federated();
      const fooBundle = await foo.server.ownBundle(foo.trustDomain);
      await assert.rejects(
        fetchBundle(foo.bundleEndpoint.url, foo.trustDomain, {
          type: 'https_spiffe',
          endpointSpiffeId: 'spiffe://foo.com/not/the/server',
          bundle: fooBundle,
        }),
        (e: Error & { code?: string }) => e.code === 'wrong-id',
      );
      // bar's endpoint authenticated with foo's bundle: bar's certificate does not chain to it.
      await assert.rejects(
        fetchBundle(bar.bundleEndpoint.url, bar.trustDomain, {
          type: 'https_spiffe',
          endpointSpiffeId: bar.bundleEndpoint.spiffeId,
          bundle: { ...fooBundle, trustDomain: bar.trustDomain },
        }),
        (e: Error & { code?: string }) => e.code === 'tls',
      );

      // A member whose server is really baz.com's: bootstrap refuses to hand its bundle to foo as bar's.
      const before = await foo.server.heldBundle(bar.trustDomain);
      const impostor: FederationMember = { ...bar, server: new SpireServerCli(baz.server.transport) };
      const steps = await bootstrap([foo, impostor], [[foo.name, impostor.name]]);
      const toFoo = steps.find((s) => s.holder === foo.name);
      assert.equal(toFoo?.result, 'failed');
      assert.match(
        toFoo?.error ?? '',
        /is not bar\.com's: it does not authenticate https:\/\/127\.77\.\d+\.2:18443 as spiffe:\/\/bar\.com\/spire\/server/,
      );
      const afterwards = await foo.server.heldBundle(bar.trustDomain);
      assert.deepEqual(
        afterwards?.x509Authorities.map((c) => c.fingerprintSha256),
        before?.x509Authorities.map((c) => c.fingerprintSha256),
      );

      // A relationship pointing at the wrong endpoint: SPIRE refuses what it serves; status shows it stale, not current.
      await foo.server.updateRelationship({
        trustDomain: bar.trustDomain,
        bundleEndpointUrl: baz.bundleEndpoint.url,
        profile: 'https_spiffe',
        endpointSpiffeId: bar.bundleEndpoint.spiffeId,
      });
      const refresh = await refreshHoldersOf([foo, bar], [[foo.name, bar.name]], bar.name);
      assert.equal(refresh[0]?.result, 'failed', JSON.stringify(refresh));
      const healed = await ensureRelationships(lab.members, fullMesh(lab.members));
      assert.equal(healed.filter((s) => s.result === 'updated').length, 1, JSON.stringify(healed));
    }),
  );

  test(
    'one SPIRE server stopped: status names it, the other pairs keep working; a re-run after restart heals',
    logged(async () => {
      const mesh = await federated();
      const hw = await registerWorkload(d(0), '/ns/default/sa/helloworld-stopped', [baz.trustDomain]);
      const sl = await registerWorkload(d(2), '/ns/default/sa/sleep-stopped', [foo.trustDomain]);
      await d(1).stopServer();
      const st = await federationStatus(lab.members, mesh);
      const byDir = new Map(st.map((s) => [`${s.holder}<-${s.peer}`, s]));
      assert.equal(byDir.get('cluster-1<-cluster-2')?.state, 'peer-unreachable');
      assert.equal(byDir.get('cluster-2<-cluster-1')?.state, 'holder-unreachable');
      assert.match(byDir.get('cluster-2<-cluster-1')?.detail ?? '', /lab bar\.com/);
      assert.equal(byDir.get('cluster-1<-cluster-3')?.state, 'current');
      assert.equal(byDir.get('cluster-3<-cluster-1')?.state, 'current');
      const steps = await bootstrap(lab.members, mesh);
      assert.equal(steps.filter((s) => s.result === 'failed').length, 4, JSON.stringify(steps));
      assert.ok(
        steps.filter((s) => s.result !== 'failed').every((s) => s.holder !== bar.name && s.peer !== bar.name),
      );

      const r = await mtls(
        { ctx: await contextWith(d(0), hw, [baz.trustDomain]), spiffeId: hw, authorize: authorizeId(sl) },
        { ctx: await contextWith(d(2), sl, [foo.trustDomain]), spiffeId: sl, authorize: authorizeId(hw) },
      );
      assert.ok(r.ok, JSON.stringify(r));

      await d(1).startServer();
      const healed = [
        ...(await bootstrap(lab.members, mesh)),
        ...(await ensureRelationships(lab.members, mesh)),
      ];
      assert.ok(
        healed.every((s) => s.result !== 'failed'),
        JSON.stringify(healed),
      );
      await until('all pairs current after restart', () => allCurrent(lab.members, mesh), 60_000);
    }),
  );

  test(
    "Workload API: the X.509 stream sends an update when an identity is added; bundles; a JWT-SVID that verifies with the bundle's JWT key",
    logged(async () => {
      await federated();
      const sleep = await registerWorkload(d(1), '/ns/default/sa/sleep-jwt', [foo.trustDomain]);
      // The stream below starts from an identity the agent already gives (with foo.com's bundle).
      await contextWith(d(1), sleep, [foo.trustDomain]);
      const client = new WorkloadApiClient(d(1).workloadSocket, { timeoutMs: 30_000 });
      try {
        const stream = client.watchX509Context();
        const seen: string[][] = [];
        const added = 'spiffe://bar.com/ns/default/sa/added-later';
        let registered = false;
        for await (const ctx of stream) {
          seen.push(ctx.svids.map((s) => s.spiffeId).sort());
          if (!registered) {
            registered = true;
            await registerWorkload(d(1), '/ns/default/sa/added-later');
          } else if (ctx.svids.some((s) => s.spiffeId === added)) break;
        }
        stream.close();
        assert.ok(seen.length >= 2, JSON.stringify(seen));
        assert.equal(seen[0]?.includes(added), false);

        const bundles = await client.fetchX509Bundles();
        assert.deepEqual(bundles.trustDomains(), ['bar.com', 'foo.com']);
        const own = await bar.server.ownBundle(bar.trustDomain);
        assert.deepEqual(
          bundles.get('bar.com')?.x509Authorities.map((c) => c.fingerprintSha256),
          own.x509Authorities.map((c) => c.fingerprintSha256),
        );

        const [jwt] = await client.fetchJwtSvids(['helloworld.foo.com'], sleep);
        assert.ok(jwt);
        assert.equal(jwt.spiffeId, sleep);
        const [h, p, sig] = jwt.token.split('.') as [string, string, string];
        const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { kid: string; alg: string };
        const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as {
          sub: string;
          aud: string[];
          exp: number;
        };
        assert.equal(claims.sub, jwt.spiffeId);
        assert.deepEqual(claims.aud, ['helloworld.foo.com']);
        assert.ok(claims.exp * 1000 > Date.now());
        const jwk = own.jwtAuthorities.get(header.kid);
        assert.ok(jwk, `no JWT authority ${header.kid} in bar.com's bundle`);
        const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
        const alg = { ES256: 'sha256', ES384: 'sha384', RS256: 'sha256' }[header.alg] ?? 'sha256';
        const signed = Buffer.from(`${h}.${p}`);
        const signature = Buffer.from(sig, 'base64url');
        assert.equal(verify(alg, signed, { key, dsaEncoding: 'ieee-p1363' }, signature), true);
        signature[5] = (signature[5] ?? 0) ^ 1;
        assert.equal(verify(alg, signed, { key, dsaEncoding: 'ieee-p1363' }, signature), false);
      } finally {
        client.close();
      }
    }),
  );

  test(
    'nothing logged or printed contains key material',
    logged(async () => {
      // Its own output and events (alone or after the others): what bootstrap, relationships
      // and status print, and what the watch reports through a change of foo.com's bundle.
      const rootKeys = () => lab.domains.map((dom) => readFileSync(`${dom.opts.dir}/root.key`, 'utf8'));
      const keys = rootKeys();
      const pair: Pair[] = [[foo.name, bar.name]];
      const output = [
        await bootstrap(lab.members, pair),
        await ensureRelationships(lab.members, pair),
        await federationStatus(lab.members, pair),
      ].map((o) => JSON.stringify(o));
      const events: WatchEvent[] = [];
      const watcher = watchFederation(lab.members, pair, {
        intervalMs: 500,
        onEvent: (e) => events.push(e),
      });
      try {
        await waitUntil('the watch has polled once', async () => watcher.polls >= 1, 30_000);
        await d(0).rotateRoot();
        await foo.server.prepareX509Authority();
        await waitUntil(
          'the watch refreshed bar.com from foo.com',
          async () => events.some((e) => e.type === 'refreshed' && e.holder === bar.name),
          60_000,
        );
      } finally {
        await watcher.stop();
      }
      keys.push(...rootKeys());
      const secrets = keys.map((key) => key.split('\n')[1] ?? 'missing');
      const id = await registerWorkload(d(0), '/ns/default/sa/key-material');
      const ctx = await contextWith(d(0), id);
      for (const s of ctx.svids) {
        const der = s.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64');
        secrets.push(der.slice(-48));
      }
      const printed = [
        lab.logs(),
        JSON.stringify(events),
        output.join('\n'),
        inspect(ctx, { depth: 8 }),
      ].join('\n');
      assert.ok(printed.length > 1000);
      assert.doesNotMatch(printed, /PRIVATE KEY/);
      for (const s of secrets)
        assert.equal(printed.includes(s), false, 'a private key appears in logs or output');
    }),
  );
});
