import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { type Bundle, BundleSet } from '../../src/spiffe/bundle.js';
import { validateX509Svid } from '../../src/spiffe/svid.js';
import { type CertView, certFromDer } from '../../src/spiffe/x509.js';
import { DAY, digitalSignature, type Issued, intermediate, keyCertSign, root, svid } from '../helpers/pki.js';

const bundle = (td: string, ...roots: Issued[]): Bundle => ({
  trustDomain: td,
  x509Authorities: roots.map((r) => r.cert),
  jwtAuthorities: new Map(),
});

/** openssl's own verdict on the same chain and roots: an independent oracle. */
function opensslAccepts(chain: Issued[], roots: Issued[], at?: Date): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-ossl-'));
  writeFileSync(join(dir, 'leaf.pem'), chain[0]!.pem);
  writeFileSync(
    join(dir, 'untrusted.pem'),
    chain
      .slice(1)
      .map((c) => c.pem)
      .join('\n') || '\n',
  );
  writeFileSync(join(dir, 'roots.pem'), roots.map((c) => c.pem).join('\n'));
  const args = ['verify', '-x509_strict', '-purpose', 'any', '-CAfile', join(dir, 'roots.pem')];
  if (chain.length > 1) args.push('-untrusted', join(dir, 'untrusted.pem'));
  if (at) args.push('-attime', String(Math.floor(at.getTime() / 1000)));
  try {
    execFileSync('openssl', [...args, join(dir, 'leaf.pem')], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

describe('X.509-SVID validation, cross-checked with openssl verify', () => {
  let fooRoot: Issued;
  let barRoot: Issued;
  let fooInt: Issued;
  let barInt: Issued;
  before(async () => {
    fooRoot = await root();
    barRoot = await root();
    fooInt = await intermediate(fooRoot, 'foo.com');
    barInt = await intermediate(barRoot, 'bar.com');
  });
  const set = () => new BundleSet([bundle('foo.com', fooRoot), bundle('bar.com', barRoot)]);

  test('a good chain root → SPIRE intermediate → SVID is valid; so is a federated one', async () => {
    const leaf = await svid(fooInt, 'spiffe://foo.com/ns/sleep/sa/sleep');
    const v = validateX509Svid([leaf.cert, fooInt.cert], set());
    assert.deepEqual(v.problems, []);
    assert.equal(v.valid, true);
    assert.equal(v.spiffeId, 'spiffe://foo.com/ns/sleep/sa/sleep');
    assert.equal(v.anchor, fooRoot.cert.fingerprintSha256);
    assert.equal(opensslAccepts([leaf, fooInt], [fooRoot]), true);
    const remote = await svid(barInt, 'spiffe://bar.com/ns/helloworld/sa/helloworld');
    assert.equal(validateX509Svid([remote.cert, barInt.cert], set()).valid, true);
  });

  const cases: Array<
    [string, () => Promise<{ chain: Issued[]; roots?: Issued[]; at?: Date }>, string, boolean | undefined]
  > = [
    [
      'two URI SANs',
      async () => ({
        chain: [
          await svid(fooInt, 'spiffe://foo.com/a', { uris: ['spiffe://foo.com/a', 'spiffe://foo.com/b'] }),
          fooInt,
        ],
      }),
      'multiple-uri-sans',
      undefined,
    ],
    [
      'non-spiffe URI',
      async () => ({ chain: [await svid(fooInt, 'https://foo.com/a'), fooInt] }),
      'bad-spiffe-id',
      undefined,
    ],
    [
      'no URI SAN',
      async () => ({ chain: [await svid(fooInt, '', { uris: [] }), fooInt] }),
      'no-uri-san',
      undefined,
    ],
    [
      'leaf with CA=true',
      async () => ({ chain: [await svid(fooInt, 'spiffe://foo.com/w', { ca: true }), fooInt] }),
      'leaf-is-ca',
      undefined,
    ],
    [
      'leaf that can sign certificates',
      async () => ({
        chain: [await svid(fooInt, 'spiffe://foo.com/w', { usages: digitalSignature | keyCertSign }), fooInt],
      }),
      'leaf-key-usage',
      undefined,
    ],
    [
      'intermediate that is not a CA',
      async () => {
        const notCa = await svid(fooRoot, 'spiffe://foo.com/x', {
          ca: false,
          usages: keyCertSign | digitalSignature,
        });
        return { chain: [await svid(notCa, 'spiffe://foo.com/w'), notCa] };
      },
      'ca-not-ca',
      false,
    ],
    [
      'expired',
      async () => ({
        chain: [
          await svid(fooInt, 'spiffe://foo.com/w', {
            notBefore: new Date(Date.now() - 3 * DAY),
            notAfter: new Date(Date.now() - DAY),
          }),
          fooInt,
        ],
      }),
      'expired',
      false,
    ],
    [
      'not yet valid',
      async () => ({
        chain: [
          await svid(fooInt, 'spiffe://foo.com/w', {
            notBefore: new Date(Date.now() + DAY),
            notAfter: new Date(Date.now() + 3 * DAY),
          }),
          fooInt,
        ],
      }),
      'not-yet-valid',
      false,
    ],
    [
      'wrong trust domain (bar.com SVID signed under foo.com)',
      async () => ({ chain: [await svid(fooInt, 'spiffe://bar.com/w'), fooInt], roots: [barRoot] }),
      'untrusted-chain',
      false,
    ],
    [
      'broken chain (intermediate of another root)',
      async () => ({ chain: [await svid(fooInt, 'spiffe://foo.com/w'), barInt] }),
      'broken-chain',
      false,
    ],
    [
      'tampered signature',
      async () => {
        const leaf = await svid(fooInt, 'spiffe://foo.com/w');
        const der = Buffer.from(leaf.cert.der);
        der[der.length - 5]! ^= 0xff;
        const pem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`;
        return { chain: [{ ...leaf, cert: certFromDer(der), pem }, fooInt] };
      },
      'broken-chain',
      false,
    ],
    [
      'bundle of another trust domain only',
      async () => ({
        chain: [await svid(fooInt, 'spiffe://foo.com/w'), fooInt],
        roots: [barRoot],
        only: 'bar.com',
      }),
      'no-bundle',
      false,
    ],
  ];

  for (const [name, make, code, opensslExpect] of cases) {
    test(`rejects: ${name}`, async () => {
      const c = (await make()) as { chain: Issued[]; roots?: Issued[]; only?: string };
      const bundles = c.only
        ? new BundleSet([bundle(c.only, ...(c.roots ?? []))])
        : c.roots
          ? new BundleSet([bundle('foo.com', fooRoot), bundle('bar.com', ...c.roots)])
          : set();
      const v = validateX509Svid(
        c.chain.map((x) => x.cert),
        bundles,
      );
      assert.equal(v.valid, false);
      assert.ok(
        v.problems.some((p) => p.code === code),
        `expected ${code}, got ${v.problems.map((p) => p.code).join(', ')}`,
      );
      // openssl can judge chain, signature, CA flags and time; SPIFFE SAN rules are ours alone.
      if (opensslExpect !== undefined) {
        const roots = c.only ? (c.roots ?? []) : (c.roots ?? [fooRoot]);
        assert.equal(opensslAccepts(c.chain, roots), opensslExpect, 'openssl agrees');
      }
    });
  }

  test('validity is judged at the given time, like openssl -attime', async () => {
    const leaf = await svid(fooInt, 'spiffe://foo.com/w');
    const later = new Date(Date.now() + 60 * DAY);
    assert.equal(validateX509Svid([leaf.cert, fooInt.cert], set(), later).valid, false);
    assert.equal(opensslAccepts([leaf, fooInt], [fooRoot], later), false);
    assert.equal(validateX509Svid([leaf.cert, fooInt.cert], set(), new Date()).valid, true);
  });
});

export type { CertView };
