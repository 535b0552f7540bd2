/**
 * A PKI shaped like the mesh's, made by the tests: a cert-manager-style root
 * (CN certmanager-ca, O=cert-manager), a SPIRE-style intermediate (URI SAN
 * spiffe://<td>), workload SVIDs, and knobs to break each rule.
 */
import { webcrypto } from 'node:crypto';
import * as px from '@peculiar/x509';
import { type CertView, certFromDer } from '../../src/spiffe/x509.js';

px.cryptoProvider.set(webcrypto as unknown as Parameters<typeof px.cryptoProvider.set>[0]);
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;

export interface Issued {
  cert: CertView;
  keys: CryptoKeyPair;
  pem: string;
  subject: string;
}

let serial = 1;

export interface CertOpts {
  subject: string;
  issuer?: Issued;
  ca: boolean | undefined;
  usages: number;
  uris?: string[];
  notBefore?: Date;
  notAfter?: Date;
}

export async function issue(o: CertOpts): Promise<Issued> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const exts: px.Extension[] = [
    new px.KeyUsagesExtension(o.usages, true),
    await px.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await px.AuthorityKeyIdentifierExtension.create((o.issuer ?? { keys }).keys.publicKey),
  ];
  if (o.ca !== undefined) exts.push(new px.BasicConstraintsExtension(o.ca, undefined, true));
  if (o.uris?.length)
    exts.push(
      new px.SubjectAlternativeNameExtension(o.uris.map((u) => ({ type: 'url' as const, value: u }))),
    );
  const now = Date.now();
  const x = await px.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    subject: o.subject,
    issuer: o.issuer ? o.issuer.subject : o.subject,
    notBefore: o.notBefore ?? new Date(now - DAY),
    notAfter: o.notAfter ?? new Date(now + 30 * DAY),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: (o.issuer ?? { keys }).keys.privateKey,
    extensions: exts,
  });
  const der = Buffer.from(x.rawData);
  return { cert: certFromDer(der), keys, pem: x.toString('pem'), subject: o.subject };
}

const { keyCertSign, cRLSign, digitalSignature, keyEncipherment } = px.KeyUsageFlags;

export const root = () =>
  issue({
    subject: 'CN=certmanager-ca, O=cert-manager',
    ca: true,
    usages: keyCertSign | cRLSign | digitalSignature,
  });
export const intermediate = (issuer: Issued, td: string) =>
  issue({
    subject: `C=US, O=SPIRE, CN=spire-intermediate-${td}`,
    issuer,
    ca: true,
    usages: keyCertSign | cRLSign | digitalSignature,
    uris: [`spiffe://${td}`],
  });
export const svid = (issuer: Issued, id: string, over: Partial<CertOpts> = {}) =>
  issue({
    subject: `C=US, O=SPIRE, CN=workload-${serial}`,
    issuer,
    ca: false,
    usages: digitalSignature | keyEncipherment,
    uris: [id],
    ...over,
  });

export { cRLSign, DAY, digitalSignature, keyCertSign, keyEncipherment };
