/**
 * SPIFFE trust bundles: the JWKS form (keys with use "x509-svid" carrying one
 * DER certificate in x5c, "jwt-svid" keys carrying a kid; spiffe_sequence and
 * spiffe_refresh_hint) and plain PEM bundles; comparison; and a set of bundles
 * keyed by trust domain, which is what federation gives a workload.
 */

import { parseTrustDomain } from './id.js';
import { JsonSyntaxError, parseJsonText } from './json.js';
import {
  CertParseError,
  type CertView,
  certFromDer,
  MAX_CERTIFICATES,
  parsePemCertificates,
} from './x509.js';

export class BundleError extends Error {
  override name = 'BundleError';
}

export interface Bundle {
  trustDomain: string;
  x509Authorities: CertView[];
  /** JWT authorities by key ID (the JWK, as given). */
  jwtAuthorities: Map<string, Record<string, unknown>>;
  sequence?: number;
  refreshHintSeconds?: number;
}

const MAX_BUNDLE_BYTES = 1 << 20;

export function parseJwksBundle(text: string, trustDomain: string): Bundle {
  parseTrustDomain(trustDomain);
  if (text.length > MAX_BUNDLE_BYTES) throw new BundleError(`bundle larger than ${MAX_BUNDLE_BYTES} bytes`);
  let doc: unknown;
  try {
    // parseJsonText, not JSON.parse: V8's message would quote the text, which can be a private "d".
    doc = parseJsonText(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) throw new BundleError(`bundle is ${e.message}`);
    throw e;
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw new BundleError('bundle must be a JSON object (a JWK Set)');
  const o = doc as Record<string, unknown>;
  if (!Array.isArray(o.keys)) throw new BundleError('bundle has no "keys" array');
  const bundle: Bundle = { trustDomain, x509Authorities: [], jwtAuthorities: new Map() };
  if (o.spiffe_sequence !== undefined) {
    if (!Number.isSafeInteger(o.spiffe_sequence) || (o.spiffe_sequence as number) < 0)
      throw new BundleError('spiffe_sequence must be a non-negative integer');
    bundle.sequence = o.spiffe_sequence as number;
  }
  if (o.spiffe_refresh_hint !== undefined) {
    if (!Number.isSafeInteger(o.spiffe_refresh_hint) || (o.spiffe_refresh_hint as number) < 0)
      throw new BundleError('spiffe_refresh_hint must be a non-negative integer (seconds)');
    bundle.refreshHintSeconds = o.spiffe_refresh_hint as number;
  }
  o.keys.forEach((k, i) => {
    if (!k || typeof k !== 'object' || Array.isArray(k)) throw new BundleError(`keys[${i}] is not an object`);
    if (bundle.x509Authorities.length + bundle.jwtAuthorities.size >= MAX_CERTIFICATES)
      throw new BundleError(`bundle has more than ${MAX_CERTIFICATES} keys (meshfed's limit for one bundle)`);
    const key = k as Record<string, unknown>;
    if (typeof key.kty !== 'string') throw new BundleError(`keys[${i}] has no "kty"`);
    if (key.use === 'x509-svid') {
      if (!Array.isArray(key.x5c) || key.x5c.length !== 1 || typeof key.x5c[0] !== 'string')
        throw new BundleError(`keys[${i}] (x509-svid) must carry exactly one certificate in "x5c"`);
      try {
        bundle.x509Authorities.push(certFromDer(Buffer.from(key.x5c[0], 'base64')));
      } catch (e) {
        throw new BundleError(`keys[${i}]: ${(e as Error).message}`);
      }
    } else if (key.use === 'jwt-svid') {
      if (typeof key.kid !== 'string' || key.kid === '')
        throw new BundleError(`keys[${i}] (jwt-svid) needs a "kid"`);
      bundle.jwtAuthorities.set(key.kid, key);
    }
    // Other uses are ignored, as the spec asks.
  });
  return bundle;
}

export function parsePemBundle(text: string, trustDomain: string): Bundle {
  parseTrustDomain(trustDomain);
  try {
    return { trustDomain, x509Authorities: parsePemCertificates(text), jwtAuthorities: new Map() };
  } catch (e) {
    if (e instanceof CertParseError) throw new BundleError(`PEM bundle: ${e.message}`);
    throw e;
  }
}

export function bundleToJwks(b: Bundle): string {
  const keys = [
    // A JWK carries its public key parameters (crv/x/y or n/e) besides x5c; SPIRE's parser needs them.
    ...b.x509Authorities.map((c) => ({
      use: 'x509-svid',
      ...c.node.publicKey.export({ format: 'jwk' }),
      x5c: [c.der.toString('base64')],
    })),
    ...[...b.jwtAuthorities.values()],
  ];
  const doc: Record<string, unknown> = { keys };
  if (b.sequence !== undefined) doc.spiffe_sequence = b.sequence;
  if (b.refreshHintSeconds !== undefined) doc.spiffe_refresh_hint = b.refreshHintSeconds;
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/** Same X.509 and JWT authorities (order ignored). */
export function sameKeys(a: Bundle, b: Bundle): boolean {
  const x = (bb: Bundle) =>
    bb.x509Authorities
      .map((c) => c.fingerprintSha256)
      .sort()
      .join();
  const j = (bb: Bundle) => [...bb.jwtAuthorities.keys()].sort().join();
  return a.trustDomain === b.trustDomain && x(a) === x(b) && j(a) === j(b);
}

/** Whether `b` is newer than `a` by spiffe_sequence (undefined when either has none). */
export function isNewer(b: Bundle, a: Bundle): boolean | undefined {
  if (a.sequence === undefined || b.sequence === undefined) return undefined;
  return b.sequence > a.sequence;
}

/** Bundles by trust domain: a workload's own plus the federated ones. */
export class BundleSet {
  private readonly bundles = new Map<string, Bundle>();
  constructor(bundles: Bundle[] = []) {
    for (const b of bundles) this.add(b);
  }
  add(b: Bundle): void {
    this.bundles.set(b.trustDomain, b);
  }
  get(trustDomain: string): Bundle | undefined {
    return this.bundles.get(trustDomain);
  }
  trustDomains(): string[] {
    return [...this.bundles.keys()].sort();
  }
}
