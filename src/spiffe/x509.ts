/**
 * X.509 certificates as SPIFFE sees them: parsing PEM/DER into a small
 * read-only view (node:crypto for keys, signatures and fingerprints,
 * der.ts for the extensions node does not decode), and the role and
 * origin of each certificate in an Istio + SPIRE + cert-manager chain.
 * Only public data is ever read; nothing here touches a private key.
 */
import { X509Certificate as NodeX509 } from 'node:crypto';
import { type CertExtensions, certExtensions } from './der.js';

export class CertParseError extends Error {
  override name = 'CertParseError';
}

export interface CertView {
  der: Buffer;
  node: NodeX509;
  subject: string;
  issuer: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** basicConstraints cA; undefined when the extension is absent. */
  isCA: boolean | undefined;
  /** keyUsage names (digitalSignature, keyCertSign, …); undefined when absent. */
  keyUsage: string[] | undefined;
  uriSans: string[];
  dnsSans: string[];
  keyType: string;
  keyBits: number | undefined;
  keyCurve: string | undefined;
  fingerprintSha256: string;
  selfIssued: boolean;
  /** The Subject Key Identifier, lowercase hex (SPIRE's form of an authority's ID); undefined when absent. */
  subjectKeyId: string | undefined;
  /** The Authority Key Identifier's key ID: the issuer's subjectKeyId; undefined when absent. */
  authorityKeyId: string | undefined;
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*?)-----END CERTIFICATE-----/g;

/**
 * The most certificates meshfed reads from one input: a chain is a handful,
 * a federated trust store a few per trust domain; each costs a parse.
 */
export const MAX_CERTIFICATES = 256;

/** Every CERTIFICATE block of a PEM text, in order (at most MAX_CERTIFICATES). */
export function parsePemCertificates(text: string): CertView[] {
  const out: CertView[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    if (out.length === MAX_CERTIFICATES)
      throw new CertParseError(
        `more than ${MAX_CERTIFICATES} certificates (meshfed's limit for one input); give one chain`,
      );
    out.push(certFromDer(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')));
  }
  if (out.length === 0) throw new CertParseError('no PEM CERTIFICATE block found');
  return out;
}

export function certFromDer(der: Buffer): CertView {
  let node: NodeX509;
  let ext: CertExtensions;
  try {
    node = new NodeX509(der);
    ext = certExtensions(der);
  } catch (e) {
    throw new CertParseError(`not a DER X.509 certificate: ${(e as Error).message}`);
  }
  const notBefore = new Date(node.validFrom);
  const notAfter = new Date(node.validTo);
  // OpenSSL reads a malformed UTCTime as "Bad time value" instead of refusing the certificate.
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime()))
    throw new CertParseError(
      'not a valid X.509 certificate: its validity (notBefore/notAfter) is not a time',
    );
  const details = node.publicKey.asymmetricKeyDetails ?? {};
  return {
    der,
    node,
    subject: node.subject.replace(/\n/g, ', '),
    issuer: node.issuer.replace(/\n/g, ', '),
    serial: node.serialNumber,
    notBefore,
    notAfter,
    isCA: ext.isCA,
    keyUsage: ext.keyUsage,
    uriSans: ext.uriSans,
    dnsSans: ext.dnsSans,
    keyType: (node.publicKey.asymmetricKeyType ?? 'unknown').toUpperCase().replace('EC', 'ECDSA'),
    keyBits: details.modulusLength ?? curveBits(details.namedCurve),
    keyCurve: details.namedCurve,
    fingerprintSha256: node.fingerprint256,
    selfIssued: node.subject === node.issuer,
    subjectKeyId: ext.subjectKeyId,
    authorityKeyId: ext.authorityKeyId,
  };
}

function curveBits(curve: string | undefined): number | undefined {
  if (!curve) return undefined;
  const m = /(\d{3})/.exec(curve);
  return m ? Number(m[1]) : undefined;
}

/** Whether `child` carries a valid signature by `issuer`'s key and names it as issuer. */
export function issuedBy(child: CertView, issuer: CertView): boolean {
  try {
    return child.node.checkIssued(issuer.node) && child.node.verify(issuer.node.publicKey);
  } catch {
    return false;
  }
}

export type CertOrigin = 'cert-manager root' | 'SPIRE intermediate' | 'workload SVID' | 'CA' | 'certificate';

/** Who made a certificate, read from its contents. */
export function certOrigin(c: CertView): CertOrigin {
  const spiffe = c.uriSans.find((u) => u.startsWith('spiffe://'));
  if (c.isCA && c.selfIssued && /O=cert-manager/.test(c.subject)) return 'cert-manager root';
  if (c.isCA && spiffe && !/^spiffe:\/\/[^/]+\/./.test(spiffe)) return 'SPIRE intermediate';
  if (!c.isCA && spiffe) return 'workload SVID';
  return c.isCA ? 'CA' : 'certificate';
}

export function toPem(c: CertView): string {
  const b64 = c.der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}
