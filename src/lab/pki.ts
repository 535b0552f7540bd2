/**
 * The lab's stand-in for a cluster's cert-manager root: a self-signed ECDSA
 * P-256 CA made the way cert-manager's SelfSigned issuer makes the seed's
 * `selfsigned-ca` Certificate (CN=certmanager-ca, O=cert-manager, OU=<cluster>;
 * random 128-bit serial; basicConstraints CA critical; keyUsage digital
 * signature, key encipherment and cert sign; a subject key identifier and no
 * authority key identifier, as Go's x509 writes for a self-signed certificate).
 * SPIRE's "disk" UpstreamAuthority reads it, so SPIRE's CA is an intermediate
 * under it, as with cert-manager's UpstreamAuthority in a cluster.
 */
import { randomBytes, webcrypto } from 'node:crypto';
import * as px from '@peculiar/x509';

px.cryptoProvider.set(webcrypto as unknown as Parameters<typeof px.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface RootCa {
  certPem: string;
  /** PKCS#8 PEM. Written to a 0600 file for SPIRE; never printed. */
  keyPem: string;
  notAfter: Date;
}

export async function makeCertManagerRoot(cluster: string, lifetimeMs: number): Promise<RootCa> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f; // positive
  const now = Date.now();
  const notAfter = new Date(now + lifetimeMs);
  const subject = `CN=certmanager-ca, O=cert-manager, OU=${cluster}`;
  const cert = await px.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject,
    issuer: subject,
    notBefore: new Date(now - 60_000),
    notAfter,
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    extensions: [
      new px.KeyUsagesExtension(
        px.KeyUsageFlags.digitalSignature | px.KeyUsageFlags.keyEncipherment | px.KeyUsageFlags.keyCertSign,
        true,
      ),
      new px.BasicConstraintsExtension(true, undefined, true),
      await px.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const b64 = pkcs8.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return {
    certPem: cert.toString('pem'),
    keyPem: `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`,
    notAfter,
  };
}
