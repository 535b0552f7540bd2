/**
 * The seed profile's SPIRE (1.5.1): static relationships written into
 * server.conf (`federates_with`, as the seed does), bundles bootstrapped by the
 * engine, mutual TLS across the two domains, and a CA rotation under a new
 * cert-manager-shaped root, which SPIRE 1.5 can only do on its own schedule
 * (short ca_ttl; no forced rotation). It also shows why the seed's refresh
 * never happens: the refresh hint SPIRE 1.5 advertises follows the root's lifetime.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  bootstrap,
  type FederationMember,
  federationStatus,
  fullMesh,
  RefreshLog,
  servedBundle,
  type WatchEvent,
  watchFederation,
} from '../../src/federation/engine.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { type LabFederation, startLabFederation } from '../../src/lab/federation.js';
import { authorizeId } from '../../src/spiffe/tls.js';
import { type CertView, issuedBy, parsePemCertificates } from '../../src/spiffe/x509.js';
import { requireLab, waitUntil } from '../helpers/lab.js';
import { allCurrent, contextWith, mtls, registerWorkload, until, withLabLogs } from '../helpers/spire.js';

const VERSION = PROFILE_VERSIONS.seed.spire;
const skip = requireLab(
  [`bin/spire/${VERSION}/spire-server`, `bin/spire/${VERSION}/spire-agent`],
  'npm run lab:build',
);

describe(`seed profile: federation on real SPIRE ${VERSION}`, { skip, timeout: 600_000 }, () => {
  let lab: LabFederation;
  const logged = withLabLogs(() => lab?.logs());
  let foo: FederationMember;
  let bar: FederationMember;

  before(async () => {
    lab = await startLabFederation({
      count: 2,
      spireVersion: VERSION,
      // foo.com rotates its CA every minute or so; SVIDs must live less than a sixth of that.
      staticFullMesh: true,
      domain: (i) => (i === 1 ? { caTTL: '90s', svidTTL: '15s' } : {}),
    });
    [foo, bar] = lab.members as [FederationMember, FederationMember];
  });

  after(async () => {
    if (process.env.MESHFED_LAB_LOGS === '1') console.log(lab?.logs());
    await lab?.stop();
  });

  const d = (i: number) => lab.domains[i] as NonNullable<LabFederation['domains'][number]>;

  test(
    'static relationships + bootstrap: status current both ways, mutual TLS across the domains',
    logged(async () => {
      const pairs = fullMesh(lab.members);
      const steps = await bootstrap(lab.members, pairs);
      assert.deepEqual(
        steps.map((s) => s.result),
        ['created', 'created'],
        JSON.stringify(steps),
      );
      // SPIRE 1.5's API lists only dynamic relationships; the static one is there all the same: it refreshes.
      assert.deepEqual(await foo.server.relationships(), []);
      await foo.server.refresh(bar.trustDomain);
      await assert.rejects(
        foo.server.refresh('nobody.example'),
        /no federation relationship with trust domain "spiffe:\/\/nobody\.example"/,
      );
      const st = await federationStatus(lab.members, pairs);
      assert.deepEqual(
        st.map((s) => s.state),
        ['current', 'current'],
        JSON.stringify(st),
      );

      const hw = await registerWorkload(d(0), '/ns/default/sa/helloworld', [bar.trustDomain]);
      const sl = await registerWorkload(d(1), '/ns/default/sa/sleep', [foo.trustDomain]);
      const r = await mtls(
        { ctx: await contextWith(d(0), hw, [bar.trustDomain]), spiffeId: hw, authorize: authorizeId(sl) },
        { ctx: await contextWith(d(1), sl, [foo.trustDomain]), spiffeId: sl, authorize: authorizeId(hw) },
      );
      assert.ok(r.ok, JSON.stringify(r));
    }),
  );

  test(
    'the refresh hint SPIRE 1.5 advertises follows the root lifetime: without a watch, peers wait months',
    logged(async () => {
      const served = await servedBundle(foo);
      assert.ok(served.refreshHintSeconds !== undefined);
      console.log(`# SPIRE ${VERSION} advertises spiffe_refresh_hint ${served.refreshHintSeconds} s`);
      assert.ok(served.refreshHintSeconds >= 24 * 3600, String(served.refreshHintSeconds));
    }),
  );

  test(
    'CA rotation under a new root: the watch brings it to bar.com; mTLS works on the new chain',
    logged(async () => {
      const pairs = fullMesh(lab.members);
      // Its own bootstrap and workloads (a bootstrap that is already done writes nothing), so the
      // test also runs alone.
      await bootstrap(lab.members, pairs);
      const hw = await registerWorkload(d(0), '/ns/default/sa/helloworld-rotation', [bar.trustDomain]);
      const sl = await registerWorkload(d(1), '/ns/default/sa/sleep-rotation', [foo.trustDomain]);
      const log = new RefreshLog();
      const events: WatchEvent[] = [];
      const watcher = watchFederation(lab.members, pairs, {
        intervalMs: 500,
        log,
        onEvent: (e) => events.push(e),
      });
      try {
        // The watch's first poll only records what is served: the change must come after it.
        await waitUntil('the watch has polled once', async () => watcher.polls >= 1, 30_000);
        const newRoot = parsePemCertificates((await d(0).rotateRoot()).certPem)[0] as CertView;
        // SPIRE prepares its next CA at half of ca_ttl and mints it from the disk root, read again then.
        const changed = await until(
          'foo.com serves the new root',
          async () => events.find((e) => e.type === 'served-changed' && e.peer === foo.name),
          180_000,
        );
        await until('bar.com holds it', () => allCurrent(lab.members, pairs, foo.name), 30_000);
        console.log(
          `# SPIRE ${VERSION}: bar.com held foo.com's new bundle ${Date.now() - changed.at.getTime()} ms after it was served (watch)`,
        );
        const held = await bar.server.heldBundle(foo.trustDomain);
        assert.ok(held?.x509Authorities.some((a) => a.fingerprintSha256 === newRoot.fingerprintSha256));
        assert.ok(events.some((e) => e.type === 'refreshed' && e.holder === bar.name));

        // Workloads: foo's SVID (15 s) is soon issued under the new CA; bar's workload trusts the new root.
        const server = await until(
          'foo workload SVID under the new root',
          async () => {
            const c = await contextWith(d(0), hw);
            const svid = c.svids.find((s) => s.spiffeId === hw);
            return svid?.chain[1] && issuedBy(svid.chain[1], newRoot) ? c : undefined;
          },
          180_000,
        );
        const client = await until(
          'bar workload trusts the new root',
          async () => {
            const c = await contextWith(d(1), sl, [foo.trustDomain]);
            return c.bundles
              .get('foo.com')
              ?.x509Authorities.some((a) => a.fingerprintSha256 === newRoot.fingerprintSha256)
              ? c
              : undefined;
          },
          60_000,
        );
        const r = await mtls(
          { ctx: server, spiffeId: hw, authorize: authorizeId(sl) },
          { ctx: client, spiffeId: sl, authorize: authorizeId(hw) },
        );
        assert.ok(r.ok, JSON.stringify(r));
      } finally {
        await watcher.stop();
      }
    }),
  );
});
