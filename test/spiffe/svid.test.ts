/**
 * X.509-SVID validation, cross-checked with `openssl verify` as an
 * independent oracle. openssl's answer is one of two verdicts: the chain
 * verified, or it was rejected with the verify errors it printed (`error N at
 * D depth lookup: REASON`). Anything else (openssl missing, an argument it
 * refuses, a PEM it cannot read) fails the test: it is not a rejection, and
 * counting it as one would make agreement with meshfed certain.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

/** One verify error as openssl prints it: its X509_V_ERR number, the chain depth, the reason. */
type VerifyError = [code: number, depth: number, reason: string];
type OpensslVerdict = { accepted: true } | { accepted: false; errors: VerifyError[] };
const ACCEPTED: OpensslVerdict = { accepted: true };
const rejected = (...errors: VerifyError[]): OpensslVerdict => ({ accepted: false, errors });

/**
 * openssl's own verdict on the same chain and roots. Accepted: exit 0 and
 * `<leaf>: OK`. Rejected: exit 2 with at least one verify error and
 * `error <leaf>: verification failed`. openssl also exits 2 when it cannot
 * read the leaf, but then prints no verify error, so it lands in the throw.
 */
function opensslVerify(chain: Issued[], roots: Issued[], at?: Date): OpensslVerdict {
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-ossl-'));
  const leaf = join(dir, 'leaf.pem');
  writeFileSync(leaf, chain[0]!.pem);
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
  const r = spawnSync('openssl', [...args, leaf], { encoding: 'utf8', timeout: 30_000 });
  rmSync(dir, { recursive: true, force: true });
  if (r.error) throw new Error(`openssl did not run: ${r.error.message}`);
  if (r.status === 0 && r.stdout === `${leaf}: OK\n`) return ACCEPTED;
  const errors = [...r.stderr.matchAll(/^error (\d+) at (\d+) depth lookup: (.+)$/gm)].map(
    (m): VerifyError => [Number(m[1]), Number(m[2]), m[3]!],
  );
  if (r.status === 2 && errors.length > 0 && r.stderr.includes(`error ${leaf}: verification failed\n`))
    return rejected(...errors);
  throw new Error(
    `openssl verify neither accepted nor rejected the chain (exit ${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`,
  );
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
    assert.deepEqual(opensslVerify([leaf, fooInt], [fooRoot]), ACCEPTED);
    const remote = await svid(barInt, 'spiffe://bar.com/ns/helloworld/sa/helloworld');
    assert.equal(validateX509Svid([remote.cert, barInt.cert], set()).valid, true);
  });

  const cases: Array<
    [string, () => Promise<{ chain: Issued[]; roots?: Issued[]; at?: Date }>, string, OpensslVerdict]
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
      ACCEPTED,
    ],
    [
      'non-spiffe URI',
      async () => ({ chain: [await svid(fooInt, 'https://foo.com/a'), fooInt] }),
      'bad-spiffe-id',
      ACCEPTED,
    ],
    [
      'no URI SAN',
      async () => ({ chain: [await svid(fooInt, '', { uris: [] }), fooInt] }),
      'no-uri-san',
      ACCEPTED,
    ],
    [
      'leaf with CA=true',
      async () => ({ chain: [await svid(fooInt, 'spiffe://foo.com/w', { ca: true }), fooInt] }),
      'leaf-is-ca',
      ACCEPTED,
    ],
    [
      'leaf that can sign certificates',
      async () => ({
        chain: [await svid(fooInt, 'spiffe://foo.com/w', { usages: digitalSignature | keyCertSign }), fooInt],
      }),
      'leaf-key-usage',
      rejected([82, 0, 'Key usage keyCertSign invalid for non-CA cert']),
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
      rejected([79, 1, 'invalid CA certificate'], [82, 1, 'Key usage keyCertSign invalid for non-CA cert']),
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
      rejected([10, 0, 'certificate has expired']),
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
      rejected([9, 0, 'certificate is not yet valid']),
    ],
    [
      'wrong trust domain (bar.com SVID signed under foo.com)',
      async () => ({ chain: [await svid(fooInt, 'spiffe://bar.com/w'), fooInt], roots: [barRoot] }),
      'untrusted-chain',
      rejected([20, 1, 'unable to get local issuer certificate']),
    ],
    [
      'broken chain (intermediate of another root)',
      async () => ({ chain: [await svid(fooInt, 'spiffe://foo.com/w'), barInt] }),
      'broken-chain',
      rejected([20, 0, 'unable to get local issuer certificate']),
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
      rejected([7, 0, 'certificate signature failure']),
    ],
    [
      'bundle of another trust domain only',
      async () => ({
        chain: [await svid(fooInt, 'spiffe://foo.com/w'), fooInt],
        roots: [barRoot],
        only: 'bar.com',
      }),
      'no-bundle',
      rejected([20, 1, 'unable to get local issuer certificate']),
    ],
  ];

  for (const [name, make, code, openssl] of cases) {
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
      // openssl judges chain, signature, CA flags, key usage and time: there it
      // must reject, with the error that names the same fault. The SPIFFE SAN
      // rules and a CA leaf are ours alone: openssl accepts those chains, which
      // shows the rejection comes from the SPIFFE rule and not from the chain.
      const roots = c.only ? (c.roots ?? []) : (c.roots ?? [fooRoot]);
      assert.deepEqual(opensslVerify(c.chain, roots), openssl, 'openssl verify');
    });
  }

  test('validity is judged at the given time, like openssl -attime', async () => {
    const leaf = await svid(fooInt, 'spiffe://foo.com/w');
    const later = new Date(Date.now() + 60 * DAY);
    assert.equal(validateX509Svid([leaf.cert, fooInt.cert], set(), later).valid, false);
    // 60 days on, the 30-day root, intermediate and leaf have all expired.
    assert.deepEqual(
      opensslVerify([leaf, fooInt], [fooRoot], later),
      rejected(
        [10, 2, 'certificate has expired'],
        [10, 1, 'certificate has expired'],
        [10, 0, 'certificate has expired'],
      ),
    );
    assert.equal(validateX509Svid([leaf.cert, fooInt.cert], set(), new Date()).valid, true);
  });
});

export type { CertView };
