/**
 * X.509-SVID validation per the SPIFFE X509-SVID specification: the leaf has
 * exactly one URI SAN, a SPIFFE ID; it is not a CA and may sign but not
 * certify; every CA in the chain is a CA allowed to sign certificates; the
 * chain ends in an authority of the bundle of the SVID's own trust domain
 * (taken from a federated BundleSet); every certificate is valid at `now`.
 * The result lists every problem found, each with a stable code.
 */
import type { BundleSet } from './bundle.js';
import { parseSpiffeId, SpiffeIdError } from './id.js';
import { type CertView, issuedBy } from './x509.js';

export type SvidProblemCode =
  | 'no-uri-san'
  | 'multiple-uri-sans'
  | 'bad-spiffe-id'
  | 'leaf-is-ca'
  | 'leaf-key-usage'
  | 'ca-not-ca'
  | 'ca-key-usage'
  | 'expired'
  | 'not-yet-valid'
  | 'no-bundle'
  | 'untrusted-chain'
  | 'broken-chain';

export interface SvidProblem {
  code: SvidProblemCode;
  /** Index in the presented chain (0 = leaf), or -1 for the chain as a whole. */
  index: number;
  message: string;
}

export interface SvidVerdict {
  valid: boolean;
  spiffeId?: string;
  trustDomain?: string;
  /** Fingerprint of the bundle authority the chain ends in, when it does. */
  anchor?: string;
  problems: SvidProblem[];
}

export function validateX509Svid(chain: CertView[], bundles: BundleSet, now: Date = new Date()): SvidVerdict {
  const problems: SvidProblem[] = [];
  const leaf = chain[0];
  if (!leaf)
    return { valid: false, problems: [{ code: 'broken-chain', index: -1, message: 'no certificate given' }] };
  const verdict: SvidVerdict = { valid: false, problems };

  const uris = leaf.uriSans;
  if (uris.length === 0)
    problems.push({
      code: 'no-uri-san',
      index: 0,
      message: 'the leaf has no URI SAN; an X.509-SVID has exactly one, its SPIFFE ID',
    });
  else if (uris.length > 1)
    problems.push({
      code: 'multiple-uri-sans',
      index: 0,
      message: `the leaf has ${uris.length} URI SANs; an X.509-SVID has exactly one`,
    });
  else {
    try {
      const id = parseSpiffeId(uris[0]!);
      if (id.path === '')
        problems.push({
          code: 'bad-spiffe-id',
          index: 0,
          message: 'a leaf SVID’s SPIFFE ID must have a path',
        });
      verdict.spiffeId = id.uri;
      verdict.trustDomain = id.trustDomain;
    } catch (e) {
      problems.push({
        code: 'bad-spiffe-id',
        index: 0,
        message: e instanceof SpiffeIdError ? e.message : String(e),
      });
    }
  }
  if (leaf.isCA === true)
    problems.push({ code: 'leaf-is-ca', index: 0, message: 'the leaf is a CA (basicConstraints cA=true)' });
  const ku = leaf.keyUsage ?? [];
  if (!ku.includes('digitalSignature') || ku.includes('keyCertSign') || ku.includes('cRLSign'))
    problems.push({
      code: 'leaf-key-usage',
      index: 0,
      message: `the leaf's keyUsage must include digitalSignature and not keyCertSign or cRLSign (has: ${ku.join(', ') || 'none'})`,
    });
  chain.slice(1).forEach((c, i) => {
    if (c.isCA !== true)
      problems.push({
        code: 'ca-not-ca',
        index: i + 1,
        message: 'an intermediate is not a CA (basicConstraints cA must be true)',
      });
    if (!(c.keyUsage ?? []).includes('keyCertSign'))
      problems.push({
        code: 'ca-key-usage',
        index: i + 1,
        message: 'an intermediate lacks keyUsage keyCertSign',
      });
  });
  chain.forEach((c, i) => {
    if (now < c.notBefore)
      problems.push({
        code: 'not-yet-valid',
        index: i,
        message: `not valid before ${c.notBefore.toISOString()}`,
      });
    if (now > c.notAfter)
      problems.push({ code: 'expired', index: i, message: `expired at ${c.notAfter.toISOString()}` });
  });

  if (verdict.trustDomain) {
    const bundle = bundles.get(verdict.trustDomain);
    if (!bundle)
      problems.push({
        code: 'no-bundle',
        index: -1,
        message: `no bundle for trust domain ${verdict.trustDomain} (have: ${bundles.trustDomains().join(', ') || 'none'})`,
      });
    else {
      for (let i = 0; i + 1 < chain.length; i++)
        if (!issuedBy(chain[i]!, chain[i + 1]!)) {
          problems.push({
            code: 'broken-chain',
            index: i,
            message: `certificate ${i} is not signed by certificate ${i + 1}`,
          });
          break;
        }
      // The chain is trusted when some presented certificate is a bundle authority or is signed by one.
      let anchor: CertView | undefined;
      for (let i = 0; i < chain.length && !anchor; i++) {
        const c = chain[i]!;
        anchor = bundle.x509Authorities.find(
          (a) => a.fingerprintSha256 === c.fingerprintSha256 || issuedBy(c, a),
        );
        if (anchor) {
          if (now < anchor.notBefore || now > anchor.notAfter)
            problems.push({
              code: now > anchor.notAfter ? 'expired' : 'not-yet-valid',
              index: -1,
              message: 'the bundle authority is not valid now',
            });
        }
      }
      if (!anchor)
        problems.push({
          code: 'untrusted-chain',
          index: -1,
          message: `the chain does not end in an authority of the ${verdict.trustDomain} bundle`,
        });
      else verdict.anchor = anchor.fingerprintSha256;
    }
  }
  verdict.valid = problems.length === 0;
  return verdict;
}
