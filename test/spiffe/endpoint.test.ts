import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type Bundle, bundleToJwks } from '../../src/spiffe/bundle.js';
import {
  BundleEndpointError,
  type BundleEndpointServer,
  fetchBundle,
  serveBundle,
} from '../../src/spiffe/endpoint.js';
import { DAY, type Issued, intermediate, root, svid } from '../helpers/pki.js';

async function keyPem(i: Issued): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', i.keys.privateKey));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END PRIVATE KEY-----\n`;
}
const bundleOf = (td: string, ...r: Issued[]): Bundle => ({
  trustDomain: td,
  x509Authorities: r.map((x) => x.cert),
  jwtAuthorities: new Map(),
  sequence: 7,
});
const code = (c: string) => (e: unknown) => e instanceof BundleEndpointError && e.code === c;

describe('bundle endpoint client against a real TLS server on 127.0.0.1', () => {
  let fooRoot: Issued;
  let barRoot: Issued;
  const servers: BundleEndpointServer[] = [];
  const serve = async (serverSvid: Issued, int: Issued, extra: { body?: string; delayMs?: number } = {}) => {
    const s = await serveBundle({
      certChainPem: `${serverSvid.pem}\n${int.pem}\n`,
      keyPem: await keyPem(serverSvid),
      body: extra.body ?? bundleToJwks(bundleOf('foo.com', fooRoot)),
      ...(extra.delayMs ? { delayMs: extra.delayMs } : {}),
    });
    servers.push(s);
    return s;
  };
  const spiffe = (id = 'spiffe://foo.com/spire/server', roots = [fooRoot]) => ({
    type: 'https_spiffe' as const,
    endpointSpiffeId: id,
    bundle: bundleOf('foo.com', ...roots),
  });
  let fooInt: Issued;
  let good: Issued;
  before(async () => {
    fooRoot = await root();
    barRoot = await root();
    fooInt = await intermediate(fooRoot, 'foo.com');
    good = await svid(fooInt, 'spiffe://foo.com/spire/server');
  });
  after(async () => {
    for (const s of servers) await s.close();
  });

  test('the right SPIFFE ID under the right bundle is accepted and the bundle parsed', async () => {
    const s = await serve(good, fooInt);
    const b = await fetchBundle(s.url, 'foo.com', spiffe());
    assert.equal(b.sequence, 7);
    assert.equal(b.x509Authorities[0]!.fingerprintSha256, fooRoot.cert.fingerprintSha256);
  });
  test('a server presenting another SPIFFE ID is refused', async () => {
    const s = await serve(await svid(fooInt, 'spiffe://foo.com/not/the/server'), fooInt);
    await assert.rejects(fetchBundle(s.url, 'foo.com', spiffe()), code('wrong-id'));
  });
  test('a server of another trust domain (chain to another root) is refused', async () => {
    const barInt = await intermediate(barRoot, 'bar.com');
    const s = await serve(await svid(barInt, 'spiffe://foo.com/spire/server'), barInt);
    await assert.rejects(fetchBundle(s.url, 'foo.com', spiffe()), code('tls'));
  });
  test('an expired server SVID is refused', async () => {
    const s = await serve(
      await svid(fooInt, 'spiffe://foo.com/spire/server', {
        notBefore: new Date(Date.now() - 3 * DAY),
        notAfter: new Date(Date.now() - DAY),
      }),
      fooInt,
    );
    await assert.rejects(fetchBundle(s.url, 'foo.com', spiffe()), code('tls'));
  });
  test('an oversized response is refused', async () => {
    const s = await serve(good, fooInt, { body: `{"keys": [], "pad": "${'x'.repeat(200_000)}"}` });
    await assert.rejects(fetchBundle(s.url, 'foo.com', spiffe(), { maxBytes: 64 * 1024 }), code('too-large'));
  });
  test('a slow response times out', async () => {
    const s = await serve(good, fooInt, { delayMs: 2000 });
    await assert.rejects(fetchBundle(s.url, 'foo.com', spiffe(), { timeoutMs: 300 }), code('timeout'));
  });
  test('https_web verifies against the Web PKI: a server whose CA is not a public root is refused', async () => {
    const web = await svid(fooInt, 'spiffe://foo.com/spire/server', { uris: [] });
    const s = await serve(web, fooInt);
    await assert.rejects(fetchBundle(s.url, 'foo.com', { type: 'https_web' }), code('tls'));
  });
  test('a bundle that does not parse is a bad-bundle error', async () => {
    const s = await serve(good, fooInt, { body: '{"nokeys": true}' });
    await assert.rejects(fetchBundle(s.url, 'foo.com', spiffe()), code('bad-bundle'));
  });
  test("not reached is told from not accepted by Node's code, not the message; the Node error is the cause", async () => {
    // A server (a load balancer with no backend) that hangs up on the client hello: Node says
    // "Client network socket disconnected before secure TLS connection was established", code ECONNRESET.
    const reset = createServer((sock) => sock.once('data', () => sock.end()));
    await new Promise<void>((r) => reset.listen(0, '127.0.0.1', r));
    try {
      const url = `https://127.0.0.1:${(reset.address() as { port: number }).port}`;
      await assert.rejects(fetchBundle(url, 'foo.com', spiffe()), (e: unknown) => {
        assert.ok(e instanceof BundleEndpointError, String(e));
        assert.equal(e.code, 'connect', e.message);
        assert.equal((e.cause as NodeJS.ErrnoException).code, 'ECONNRESET');
        return true;
      });
    } finally {
      await new Promise((r) => reset.close(r));
    }
    // A certificate that does not chain to the bundle: 'tls', with OpenSSL's code on the cause.
    const barInt = await intermediate(barRoot, 'bar.com');
    const s = await serve(await svid(barInt, 'spiffe://foo.com/spire/server'), barInt);
    await assert.rejects(fetchBundle(s.url, 'foo.com', spiffe()), (e: unknown) => {
      assert.ok(e instanceof BundleEndpointError && e.code === 'tls', String(e));
      assert.match(String((e.cause as NodeJS.ErrnoException).code), /^[A-Z_]+$/);
      return true;
    });
  });
});
