/**
 * Certificates the lab makes, with @peculiar/x509 over Node's WebCrypto: the
 * stand-in for a cluster's cert-manager root (below), and the primitives the
 * lab's other issuers share (node/kubelet.ts signs kubelet serving
 * certificates with the cluster CA kwokctl made).
 */
import { createPrivateKey, webcrypto, X509Certificate } from 'node:crypto';
import * as px from '@peculiar/x509';
import { randomSerial } from '../spiffe/self-issued.js';

px.cryptoProvider.set(webcrypto as unknown as Parameters<typeof px.cryptoProvider.set>[0]);

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A certificate and its private key, both PEM. */
export interface CertAndKey {
  certPem: string;
  /** PKCS#8 PEM. Written to 0600 files; never printed. */
  keyPem: string;
  notAfter: Date;
}

export async function newEcP256Keys(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

/** Serial numbers as the SPIFFE layer makes them (one function for the lab's issuers and meshfed's). */
export { randomSerial };

export async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const b64 = pkcs8.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

export type SigningAlgorithm =
  | { name: 'RSASSA-PKCS1-v1_5'; hash: 'SHA-256' }
  | { name: 'ECDSA'; namedCurve: string; hash: 'SHA-256' };

/**
 * A CA's private key as a WebCrypto signing key, with the algorithm to sign
 * with; checked against the CA's certificate (a key that is not the CA's
 * would sign certificates nothing verifies). WebCrypto imports neither
 * PKCS#1 (kwokctl's RSA `ca.key`) nor SEC1, so the PEM goes through
 * node:crypto and JWK, which also names the EC curve.
 */
export async function caSigningKey(
  caCertPem: string,
  caKeyPem: string,
): Promise<{ key: webcrypto.CryptoKey; algorithm: SigningAlgorithm }> {
  const k = createPrivateKey(caKeyPem);
  if (!new X509Certificate(caCertPem).checkPrivateKey(k))
    throw new Error("the CA key is not the CA certificate's key");
  const jwk = k.export({ format: 'jwk' });
  let algorithm: SigningAlgorithm;
  if (k.asymmetricKeyType === 'rsa') algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  else if (k.asymmetricKeyType === 'ec' && jwk.crv)
    algorithm = { name: 'ECDSA', namedCurve: jwk.crv, hash: 'SHA-256' };
  else throw new Error(`a CA key of type ${k.asymmetricKeyType} is not supported (RSA or EC only)`);
  return { key: await webcrypto.subtle.importKey('jwk', jwk, algorithm, false, ['sign']), algorithm };
}

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
export async function makeCertManagerRoot(cluster: string, lifetimeMs: number): Promise<CertAndKey> {
  const keys = await newEcP256Keys();
  const now = Date.now();
  const notAfter = new Date(now + lifetimeMs);
  const subject = `CN=certmanager-ca, O=cert-manager, OU=${cluster}`;
  const cert = await px.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject,
    issuer: subject,
    notBefore: new Date(now - 60_000),
    notAfter,
    signingAlgorithm: EC_P256,
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
  return { certPem: cert.toString('pem'), keyPem: await pkcs8Pem(keys.privateKey), notAfter };
}
