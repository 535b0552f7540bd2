/**
 * The pure parts of verify's newer judgements, on given input: MF307's
 * verdict (judgeOutsider), the reasons MF301 and MF302 attach to a silent
 * peer (judgeEastWest, judgeFailover with `why`), the endpoints read from
 * Envoy's admin /clusters text, and the self-issued outsider SVID itself
 * (a real mutual TLS handshake on loopback, refused by a server that does
 * not trust its CA and accepted by one that does). The checks run on the
 * lab's real data plane in test/verify/check.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { resolveFleet } from '../../src/fleet/resolve.js';
import { BundleSet } from '../../src/spiffe/bundle.js';
import { selfIssuedContext } from '../../src/spiffe/self-issued.js';
import { validateX509Svid } from '../../src/spiffe/svid.js';
import { authorizeMemberOf, spiffeClientOptions, spiffeServerOptions } from '../../src/spiffe/tls.js';
import { makeContext } from '../../src/verify/context.js';
import {
  judgeEastWest,
  judgeFailover,
  judgeOutsider,
  OUTSIDER_TRUST_DOMAIN,
  proxyEndpoints,
  tallyHello,
} from '../../src/verify/dataplane.js';

const ctx = makeContext({ fleet: resolveFleet(undefined).fleet!, clients: new Map(), versions: new Map() });
const HELLO =
  'HTTP/1.1 200 OK\r\nserver: istio-envoy\r\n\r\nHello version: v1, instance: helloworld-v1-abc\n';
const outsiderId = `spiffe://${OUTSIDER_TRUST_DOMAIN}/ns/sleep/sa/sleep`;
const memberId = 'spiffe://bar.com/ns/meshfed-verify/sa/probe';

test('MF307: the outsider refused and the peer answered passes; any other outcome says what it means', () => {
  const refused = { id: outsiderId, refused: 'TLS alert "certificate unknown" from the server' };
  const ok = judgeOutsider('127.101.1.2:15443', refused, { id: memberId, answer: HELLO });
  assert.equal(ok.status, 'passed');
  assert.equal(
    ok.message,
    `127.101.1.2:15443: ${outsiderId} refused (TLS alert "certificate unknown" from the server); ${memberId} answered: v1`,
  );
  // The outsider got through: a proxy trusts a CA beyond the fleet's bundles.
  const open = judgeOutsider('a:1', { id: outsiderId, answer: HELLO }, { id: memberId, answer: HELLO });
  assert.equal(open.status, 'failed');
  assert.match(open.message, /outside the federation, got through mutual TLS: HTTP\/1\.1 200 OK/);
  // The peer refused as well: the refusal proves nothing about the trust.
  const both = judgeOutsider('a:1', refused, {
    id: memberId,
    refused: 'TLS alert "certificate unknown" from the server',
  });
  assert.equal(both.status, 'failed');
  assert.match(both.message, /federated peer's identity .* was refused too/);
  // Nothing reached from here (a private load balancer): skipped, saying so.
  const away = judgeOutsider(
    'a:1',
    { id: outsiderId, refused: 'ECONNREFUSED: connect ECONNREFUSED a:1' },
    { id: memberId, refused: 'ECONNREFUSED: connect ECONNREFUSED a:1' },
  );
  assert.equal(away.status, 'skipped');
  assert.match(away.message, /cannot be reached from here/);
  // No federated peer to compare with: a warning, not a pass.
  assert.equal(judgeOutsider('a:1', refused).status, 'warning');
});

test('MF301 and MF302 name why a silent peer did not answer', () => {
  const local = tallyHello(['Hello version: v1, instance: a', 'Hello version: v1, instance: a']);
  const why = { v2: ["cluster-2's east-west gateway istio-system/istio-eastwestgateway has no ready pod"] };
  const ew = judgeEastWest(ctx, 'cluster-1', local, why);
  assert.equal(ew.status, 'failed');
  assert.equal(
    ew.message,
    "2 requests: v1 2; no answer from v2 (cluster-2's east-west gateway istio-system/istio-eastwestgateway has no ready pod)",
  );
  assert.deepEqual((ew.data as { why: unknown }).why, why);
  // Nothing found wrong: the version is named alone.
  assert.match(judgeEastWest(ctx, 'cluster-1', local).message, /no answer from v2$/);
  const none = tallyHello([
    'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
  ]);
  const fo = judgeFailover(ctx, 'cluster-1', none, why);
  assert.equal(fo.status, 'failed');
  assert.match(
    fo.message,
    /no remote version answered \(upstream connect error.*\); v2: cluster-2's east-west gateway/,
  );
});

test('the endpoints of one Envoy cluster in the admin /clusters text', () => {
  const text = [
    'outbound|5000||helloworld.helloworld.svc.cluster.local::observability_name::outbound|5000||helloworld.helloworld.svc.cluster.local',
    'outbound|5000||helloworld.helloworld.svc.cluster.local::10.127.1.7:5000::cx_active::1',
    'outbound|5000||helloworld.helloworld.svc.cluster.local::10.127.1.7:5000::health_flags::healthy',
    'outbound|5000||helloworld.helloworld.svc.cluster.local::127.102.8.2:15443::cx_active::0',
    'outbound|9080||details.bookinfo.svc.cluster.local::10.127.1.9:9080::cx_active::0',
  ].join('\n');
  // The cluster's own settings (observability_name, …) are not endpoints.
  assert.deepEqual(proxyEndpoints(text, 'outbound|5000||helloworld.helloworld.svc.cluster.local'), [
    '10.127.1.7:5000',
    '127.102.8.2:15443',
  ]);
  assert.deepEqual(proxyEndpoints(text, 'outbound|5000||nothing'), []);
});

test('the self-issued outsider SVID: a valid X.509-SVID of its own trust domain; refused by a server that does not trust its CA, answered by one that does', async () => {
  const outsider = await selfIssuedContext(outsiderId);
  assert.equal(outsider.svids[0]!.spiffeId, outsiderId);
  assert.equal(
    validateX509Svid(outsider.svids[0]!.chain, outsider.bundles).valid,
    true,
    'valid under its own CA',
  );
  // A helloworld-like server of foo.com, with foo.com's CA; the client authenticates it by that CA.
  const foo = await selfIssuedContext('spiffe://foo.com/ns/helloworld/sa/helloworld');
  const fooCa = foo.bundles.get('foo.com')!;
  const serve = async (trusted: BundleSet) => {
    const server = createServer(spiffeServerOptions({ svids: foo.svids, bundles: trusted }), (s) =>
      s.end('hello\n'),
    );
    server.on('tlsClientError', () => {});
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return server;
  };
  const call = (port: number) =>
    new Promise<string>((resolve, reject) => {
      const s: TLSSocket = connect({
        ...spiffeClientOptions(
          { svids: outsider.svids, bundles: new BundleSet([fooCa]) },
          authorizeMemberOf('foo.com'),
        ),
        host: '127.0.0.1',
        port,
      });
      let got = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        got += d;
      });
      s.on('error', reject);
      s.on('close', () => (got ? resolve(got) : reject(new Error('closed without an answer'))));
    });
  const strict = await serve(new BundleSet([fooCa]));
  const lax = await serve(new BundleSet([fooCa, outsider.bundles.get(OUTSIDER_TRUST_DOMAIN)!]));
  try {
    await assert.rejects(call((strict.address() as AddressInfo).port), /alert|closed without an answer/);
    // The same client, its CA trusted: answered. The refusal is about trust, nothing else.
    assert.equal(await call((lax.address() as AddressInfo).port), 'hello\n');
  } finally {
    strict.close();
    lax.close();
  }
});
