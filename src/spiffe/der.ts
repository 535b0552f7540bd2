/**
 * The few X.509 extensions node:crypto's X509Certificate does not decode,
 * read straight from the certificate's DER (RFC 5280, section 4.2.1):
 * basic constraints, key usage, subject alternative names (URI and DNS),
 * subject and authority key identifiers. A small reader of DER's
 * tag-length-value form, strict about lengths: a certificate whose
 * extensions do not parse is refused, as a full ASN.1 parser would.
 *
 * Loading a general ASN.1 library (@peculiar/x509 and its asn1js schemas)
 * cost about 75 ms of every run that reads a trust bundle; this is what of it
 * the certificate view needs.
 */

export class DerError extends Error {
  override name = 'DerError';
}

interface Tlv {
  /** The identifier octet (class, constructed bit, tag number < 31). */
  tag: number;
  /** Where the value starts and ends in the buffer. */
  start: number;
  end: number;
}

/** One TLV at `off`, its value within [off, limit). */
function tlv(b: Uint8Array, off: number, limit: number): Tlv {
  if (off + 2 > limit) throw new DerError('truncated');
  const tag = b[off]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not used in a certificate');
  let len = b[off + 1]!;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('bad length');
    if (start + n > limit) throw new DerError('truncated');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]!;
    start += n;
  }
  const end = start + len;
  if (end > limit) throw new DerError('truncated');
  return { tag, start, end };
}

/** The TLVs inside a constructed value, in order. */
function children(b: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let off = t.start; off < t.end; ) {
    const c = tlv(b, off, t.end);
    out.push(c);
    off = c.end;
  }
  return out;
}

const SEQUENCE = 0x30;
const OID = 0x06;
const BOOLEAN = 0x01;
const OCTET_STRING = 0x04;
const BIT_STRING = 0x03;

function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DerError(`${what}: not the expected ASN.1 type`);
  return t;
}

/** Dotted form of an OBJECT IDENTIFIER's value. */
function oid(b: Uint8Array, t: Tlv): string {
  const arcs: number[] = [];
  let v = 0;
  for (let i = t.start; i < t.end; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if (!(b[i]! & 0x80)) {
      arcs.push(v);
      v = 0;
    }
  }
  if (arcs.length === 0) throw new DerError('empty object identifier');
  const first = arcs[0]!;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

const hex = (b: Uint8Array, t: Tlv): string => Buffer.from(b.subarray(t.start, t.end)).toString('hex');
const ia5 = (b: Uint8Array, t: Tlv): string => Buffer.from(b.subarray(t.start, t.end)).toString('latin1');

/** Key usage bit names, bit 0 first (RFC 5280 KeyUsage). */
export const KEY_USAGES = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const;

export interface CertExtensions {
  /** basicConstraints cA; undefined when the extension is absent. */
  isCA: boolean | undefined;
  keyUsage: string[] | undefined;
  uriSans: string[];
  dnsSans: string[];
  subjectKeyId: string | undefined;
  authorityKeyId: string | undefined;
}

/** The extensions of a DER certificate that the certificate view reads; the first of each kind counts. */
export function certExtensions(der: Uint8Array): CertExtensions {
  const out: CertExtensions = {
    isCA: undefined,
    keyUsage: undefined,
    uriSans: [],
    dnsSans: [],
    subjectKeyId: undefined,
    authorityKeyId: undefined,
  };
  const cert = expect(tlv(der, 0, der.length), SEQUENCE, 'certificate');
  const tbs = expect(children(der, cert)[0], SEQUENCE, 'tbsCertificate');
  const exts = children(der, tbs).find((t) => t.tag === 0xa3); // [3] EXPLICIT Extensions
  if (!exts) return out;
  const seen = new Set<string>();
  for (const ext of children(der, expect(children(der, exts)[0], SEQUENCE, 'extensions'))) {
    const parts = children(der, expect(ext, SEQUENCE, 'extension'));
    const id = oid(der, expect(parts[0], OID, 'extension id'));
    const value = expect(parts[parts[1]?.tag === BOOLEAN ? 2 : 1], OCTET_STRING, `extension ${id}`);
    if (seen.has(id)) continue;
    seen.add(id);
    const inner = tlv(der, value.start, value.end);
    switch (id) {
      case '2.5.29.19': {
        // BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL }
        const first = children(der, expect(inner, SEQUENCE, 'basicConstraints'))[0];
        out.isCA = first?.tag === BOOLEAN ? first.end > first.start && der[first.start] !== 0 : false;
        break;
      }
      case '2.5.29.15': {
        // KeyUsage ::= BIT STRING; bit 0 is the first octet's high bit.
        const bits = expect(inner, BIT_STRING, 'keyUsage');
        if (bits.end === bits.start) throw new DerError('keyUsage: empty bit string');
        const unused = der[bits.start]!;
        if (unused > 7) throw new DerError('keyUsage: bad unused bits');
        const usage: string[] = [];
        const n = (bits.end - bits.start - 1) * 8 - unused;
        for (let i = 0; i < n && i < KEY_USAGES.length; i++)
          if (der[bits.start + 1 + (i >> 3)]! & (0x80 >> (i & 7))) usage.push(KEY_USAGES[i]!);
        out.keyUsage = usage;
        break;
      }
      case '2.5.29.17':
        // GeneralNames ::= SEQUENCE OF GeneralName; dNSName [2] and uniformResourceIdentifier [6] are IA5String.
        for (const n of children(der, expect(inner, SEQUENCE, 'subjectAltName'))) {
          if (n.tag === 0x82) out.dnsSans.push(ia5(der, n));
          else if (n.tag === 0x86) out.uriSans.push(ia5(der, n));
        }
        break;
      case '2.5.29.14':
        out.subjectKeyId = hex(der, expect(inner, OCTET_STRING, 'subjectKeyIdentifier'));
        break;
      case '2.5.29.35': {
        // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING OPTIONAL, … }
        const key = children(der, expect(inner, SEQUENCE, 'authorityKeyIdentifier')).find(
          (t) => t.tag === 0x80,
        );
        out.authorityKeyId = key ? hex(der, key) : undefined;
        break;
      }
    }
  }
  return out;
}
