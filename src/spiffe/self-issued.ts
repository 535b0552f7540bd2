/**
 * A trust domain of one's own, made in memory: a self-signed CA (URI SAN
 * spiffe://<td>) and an X.509-SVID under it, as a workload's X509Context.
 * `meshfed verify` presents it to the mesh as a workload of a trust domain
 * outside the federation, which every proxy must refuse (MF307). Nothing is
 * written anywhere; the key lives only in the returned KeyObject.
 */
import { KeyObject, randomBytes, webcrypto } from 'node:crypto';
import * as px from '@peculiar/x509';
import { BundleSet } from './bundle.js';
import { parseSpiffeId } from './id.js';
import type { X509Context } from './workload.js';
import { certFromDer } from './x509.js';

px.cryptoProvider.set(webcrypto as unknown as Parameters<typeof px.cryptoProvider.set>[0]);

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A random positive 128-bit serial number, hex (as Go's and cert-manager's issuers make them). */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f; // positive
  return b.toString('hex');
}

/** An X509Context holding one SVID for `spiffeId`, valid for `lifetimeMs`, from a new CA of its trust domain. */
export async function selfIssuedContext(spiffeId: string, lifetimeMs = 10 * 60_000): Promise<X509Context> {
  const id = parseSpiffeId(spiffeId);
  const gen = () =>
    webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']) as Promise<webcrypto.CryptoKeyPair>;
  const [caKeys, keys] = await Promise.all([gen(), gen()]);
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + lifetimeMs);
  const caName = `O=meshfed, CN=${id.trustDomain}`;
  const ca = await px.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: caName,
    issuer: caName,
    notBefore,
    notAfter,
    signingAlgorithm: EC_P256,
    publicKey: caKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new px.BasicConstraintsExtension(true, undefined, true),
      new px.KeyUsagesExtension(px.KeyUsageFlags.keyCertSign | px.KeyUsageFlags.cRLSign, true),
      await px.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
      new px.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${id.trustDomain}` }]),
    ],
  });
  const leaf = await px.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: 'O=meshfed',
    issuer: caName,
    notBefore,
    notAfter,
    signingAlgorithm: EC_P256,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new px.BasicConstraintsExtension(false, undefined, true),
      new px.KeyUsagesExtension(
        px.KeyUsageFlags.digitalSignature | px.KeyUsageFlags.keyEncipherment | px.KeyUsageFlags.keyAgreement,
        true,
      ),
      new px.ExtendedKeyUsageExtension([px.ExtendedKeyUsage.serverAuth, px.ExtendedKeyUsage.clientAuth]),
      await px.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await px.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
      new px.SubjectAlternativeNameExtension([{ type: 'url', value: id.uri }]),
    ],
  });
  const caView = certFromDer(Buffer.from(ca.rawData));
  return {
    svids: [
      {
        spiffeId: id.uri,
        chain: [certFromDer(Buffer.from(leaf.rawData))],
        privateKey: KeyObject.from(keys.privateKey),
      },
    ],
    bundles: new BundleSet([
      { trustDomain: id.trustDomain, x509Authorities: [caView], jwtAuthorities: new Map() },
    ]),
  };
}
