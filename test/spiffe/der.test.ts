/**
 * The certificate view's extensions, read by der.ts, against a full ASN.1
 * parser's reading (@peculiar/x509, what x509.ts used before) of the same
 * certificates: every combination the mesh's certificates use, and the
 * shapes around them (no extensions, cA false, all nine key usages, names of
 * other kinds, critical flags, an AKI without a key ID), and malformed
 * extensions, which both refuse.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as px from '@peculiar/x509';
import { certExtensions } from '../../src/spiffe/der.js';
import { CertParseError, certFromDer, parsePemCertificates } from '../../src/spiffe/x509.js';

px.cryptoProvider.set(webcrypto as unknown as Parameters<typeof px.cryptoProvider.set>[0]);
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** What @peculiar/x509 reads from the same certificate, in the view's terms. */
function reference(der: Buffer) {
  const pc = new px.X509Certificate(new Uint8Array(der));
  const bc = pc.getExtension(px.BasicConstraintsExtension);
  const ku = pc.getExtension(px.KeyUsagesExtension);
  const names = pc.getExtension(px.SubjectAlternativeNameExtension)?.names.items ?? [];
  const ski = pc.getExtension(px.SubjectKeyIdentifierExtension);
  const aki = pc.getExtension(px.AuthorityKeyIdentifierExtension);
  return {
    isCA: bc === null ? undefined : bc.ca,
    keyUsage:
      ku === null
        ? undefined
        : Object.entries(px.KeyUsageFlags)
            .filter(([k, v]) => typeof v === 'number' && Number.isNaN(Number(k)) && (ku.usages & v) !== 0)
            .map(([k]) => k),
    uriSans: names.filter((n) => n.type === 'url').map((n) => n.value),
    dnsSans: names.filter((n) => n.type === 'dns').map((n) => n.value),
    subjectKeyId: ski?.keyId.toLowerCase(),
    authorityKeyId: aki?.keyId?.toLowerCase(),
  };
}

async function make(extensions: (keys: webcrypto.CryptoKeyPair) => Promise<px.Extension[]> | px.Extension[]) {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const x = await px.X509CertificateGenerator.createSelfSigned({
    serialNumber: '0a',
    name: 'CN=der-test, O=meshfed',
    notBefore: new Date(Date.now() - 86_400_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: ALG,
    keys,
    extensions: await extensions(keys),
  });
  return Buffer.from(x.rawData);
}

const F = px.KeyUsageFlags;
const ALL_USAGES =
  F.digitalSignature |
  F.nonRepudiation |
  F.keyEncipherment |
  F.dataEncipherment |
  F.keyAgreement |
  F.keyCertSign |
  F.cRLSign |
  F.encipherOnly |
  F.decipherOnly;

const shapes: Array<[string, (k: webcrypto.CryptoKeyPair) => Promise<px.Extension[]> | px.Extension[]]> = [
  ['no extensions', () => []],
  [
    'a SPIRE intermediate: CA, keyCertSign|cRLSign, URI SAN, SKI, AKI',
    async (k) => [
      new px.BasicConstraintsExtension(true, undefined, true),
      new px.KeyUsagesExtension(F.keyCertSign | F.cRLSign, true),
      new px.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://foo.com' }]),
      await px.SubjectKeyIdentifierExtension.create(k.publicKey),
      await px.AuthorityKeyIdentifierExtension.create(k.publicKey),
    ],
  ],
  [
    'a workload SVID: cA false with a path length, three usages, URI and DNS names',
    async (k) => [
      new px.BasicConstraintsExtension(false, 2, false),
      new px.KeyUsagesExtension(F.digitalSignature | F.keyEncipherment | F.keyAgreement, true),
      new px.ExtendedKeyUsageExtension([px.ExtendedKeyUsage.serverAuth]),
      new px.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'a.example' },
        { type: 'url', value: 'spiffe://foo.com/ns/a/sa/b' },
        { type: 'email', value: 'x@example.com' },
        { type: 'ip', value: '10.0.0.1' },
        { type: 'dns', value: '*.b.example' },
      ]),
      await px.SubjectKeyIdentifierExtension.create(k.publicKey),
    ],
  ],
  ['all nine key usages', () => [new px.KeyUsagesExtension(ALL_USAGES)]],
  ['decipherOnly alone (the second octet)', () => [new px.KeyUsagesExtension(F.decipherOnly)]],
  ['no key usage bit', () => [new px.KeyUsagesExtension(0)]],
  ['cA absent from basic constraints (false)', () => [new px.BasicConstraintsExtension(false)]],
  [
    'an AKI with the issuer name and serial but no key ID',
    // SEQUENCE { [1] { [2] "ca.example" }, [2] 5 }, written out: @peculiar/x509 cannot make it.
    () => [
      new px.Extension(
        '2.5.29.35',
        false,
        Buffer.concat([
          Buffer.from([0x30, 0x11, 0xa1, 0x0c, 0x82, 0x0a]),
          Buffer.from('ca.example'),
          Buffer.from([0x82, 0x01, 0x05]),
        ]),
      ),
    ],
  ],
];

describe('certificate extensions (der.ts) against @peculiar/x509', () => {
  for (const [name, exts] of shapes)
    test(name, async () => {
      const der = await make(exts);
      const view = certFromDer(der);
      const want = reference(der);
      assert.deepEqual(
        {
          isCA: view.isCA,
          keyUsage: view.keyUsage,
          uriSans: view.uriSans,
          dnsSans: view.dnsSans,
          subjectKeyId: view.subjectKeyId,
          authorityKeyId: view.authorityKeyId,
        },
        want,
      );
    });

  test('the values themselves, not only agreement', async () => {
    const der = await make(async (k) => [
      new px.BasicConstraintsExtension(true),
      new px.KeyUsagesExtension(F.digitalSignature | F.decipherOnly),
      new px.SubjectAlternativeNameExtension([
        { type: 'url', value: 'spiffe://bar.com/x' },
        { type: 'dns', value: 'h.example' },
      ]),
      await px.SubjectKeyIdentifierExtension.create(k.publicKey),
    ]);
    const e = certExtensions(der);
    assert.equal(e.isCA, true);
    assert.deepEqual(e.keyUsage, ['digitalSignature', 'decipherOnly']);
    assert.deepEqual(e.uriSans, ['spiffe://bar.com/x']);
    assert.deepEqual(e.dnsSans, ['h.example']);
    assert.match(e.subjectKeyId ?? '', /^[0-9a-f]{40}$/);
    assert.equal(e.authorityKeyId, undefined);
  });

  test('an RSA certificate made by OpenSSL: CA with a path length, DNS and URI names, SKI and AKI', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshfed-der-'));
    try {
      execFileSync(
        'openssl',
        [
          ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=der-rsa'],
          ...['-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')],
          ...['-addext', 'basicConstraints=critical,CA:TRUE,pathlen:1'],
          ...['-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'],
          ...['-addext', 'subjectAltName=DNS:a.example,URI:spiffe://rsa.example,IP:127.0.0.1'],
        ],
        { stdio: 'ignore' },
      );
      const [view] = parsePemCertificates(readFileSync(join(dir, 'c.pem'), 'utf8'));
      const want = reference(view!.der);
      assert.deepEqual(want.keyUsage, ['digitalSignature', 'keyCertSign', 'cRLSign']);
      assert.deepEqual(
        {
          isCA: view!.isCA,
          keyUsage: view!.keyUsage,
          uriSans: view!.uriSans,
          dnsSans: view!.dnsSans,
          subjectKeyId: view!.subjectKeyId,
          authorityKeyId: view!.authorityKeyId,
        },
        want,
      );
      assert.equal(view!.subjectKeyId, view!.authorityKeyId);
      assert.equal(view!.keyType, 'RSA');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const [name, oid, value] of [
    ['a key usage that is not a bit string', '2.5.29.15', Buffer.from([0x04, 0x01, 0x00])],
    ['a truncated subject alternative name', '2.5.29.17', Buffer.from([0x30, 0x08, 0x86, 0x03, 0x61])],
    ['basic constraints that are not a sequence', '2.5.29.19', Buffer.from([0x04, 0x00])],
    ['a subject key identifier that is not an octet string', '2.5.29.14', Buffer.from([0x30, 0x00])],
  ] as const)
    test(`refused: ${name}`, async () => {
      const der = await make(() => [new px.Extension(oid, false, value)]);
      assert.throws(() => reference(der));
      assert.throws(() => certFromDer(der), CertParseError);
    });

  test('a PEM chain reads the same through parsePemCertificates', async () => {
    const der = await make(() => [new px.BasicConstraintsExtension(true)]);
    const pem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`;
    assert.equal(parsePemCertificates(pem)[0]!.isCA, true);
  });
});
