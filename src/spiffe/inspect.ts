/**
 * The trust-chain walk of the guide as a library call: read a PEM chain, an
 * Envoy secrets config dump (`istioctl proxy-config secret -o json`, or a
 * full config_dump) or a SPIFFE bundle; describe every certificate (role,
 * origin, subject, issuer, SPIFFE ID, validity, key, fingerprint); judge the
 * SVID against the bundle of its trust domain; warn about near expiry.
 */
import { type Bundle, BundleSet, parseJwksBundle } from './bundle.js';
import { parseTrustDomain } from './id.js';
import { type SvidVerdict, validateX509Svid } from './svid.js';
import { type CertOrigin, type CertView, certOrigin, parsePemCertificates } from './x509.js';

export class InputError extends Error {
  override name = 'InputError';
}

export type InputKind = 'pem' | 'envoy-config-dump' | 'spiffe-bundle';

export interface ParsedInput {
  kind: InputKind;
  /** The presented chain, leaf first (empty for a bundle). */
  chain: CertView[];
  /** Trusted authorities that came with the input (Envoy's validation context, a bundle). */
  trusted: CertView[];
  /** Which Envoy secret it came from. */
  secretName?: string;
}

export interface EnvoySecret {
  name?: string;
  secret?: {
    name?: string;
    tls_certificate?: { certificate_chain?: { inline_bytes?: string } };
    tlsCertificate?: { certificateChain?: { inlineBytes?: string } };
    validation_context?: { trusted_ca?: { inline_bytes?: string } };
    validationContext?: { trustedCa?: { inlineBytes?: string } };
  };
}

/** The secrets of an Envoy config dump (full, or `istioctl proxy-config secret -o json`). */
export function envoySecrets(doc: Record<string, unknown>): EnvoySecret[] {
  const fromDump = (d: Record<string, unknown>) =>
    ((d.dynamicActiveSecrets ?? d.dynamic_active_secrets ?? []) as EnvoySecret[]).concat(
      (d.staticSecrets ?? d.static_secrets ?? []) as EnvoySecret[],
    );
  if (Array.isArray(doc.configs))
    return (doc.configs as Array<Record<string, unknown>>).flatMap((c) => {
      const type = String(c['@type'] ?? '');
      // A whole dump has a SecretsConfigDump section; `config_dump?resource=dynamic_active_secrets` lists the secrets themselves.
      if (type.endsWith('SecretsConfigDump')) return fromDump(c);
      if (type.endsWith('SecretsConfigDump.DynamicSecret')) return [c as EnvoySecret];
      return [];
    });
  return fromDump(doc);
}

const b64pem = (s: string | undefined, what: string): CertView[] => {
  if (!s) return [];
  const text = Buffer.from(s, 'base64').toString('utf8');
  try {
    return parsePemCertificates(text);
  } catch (e) {
    throw new InputError(`${what}: ${(e as Error).message}`);
  }
};

/** Detects the input's format and extracts the chain and trusted authorities. */
export function parseCertInput(text: string, opts: { trustDomain?: string } = {}): ParsedInput {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('-----BEGIN')) {
    try {
      return { kind: 'pem', chain: parsePemCertificates(text), trusted: [] };
    } catch (e) {
      throw new InputError((e as Error).message);
    }
  }
  if (!trimmed.startsWith('{'))
    throw new InputError(
      'input is neither PEM nor JSON (expected a PEM chain, an Envoy config dump or a SPIFFE bundle)',
    );
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`input looks like JSON but does not parse: ${(e as Error).message}`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw new InputError('JSON input must be an object');
  if (Array.isArray(doc.keys)) {
    const td = opts.trustDomain ?? 'unknown.invalid';
    const bundle = parseJwksBundle(text, parseTrustDomain(td));
    return { kind: 'spiffe-bundle', chain: [], trusted: bundle.x509Authorities };
  }
  const secrets = envoySecrets(doc);
  if (secrets.length === 0)
    throw new InputError('JSON input has no Envoy secrets (dynamicActiveSecrets) and no bundle keys');
  let chain: CertView[] = [];
  let trusted: CertView[] = [];
  let secretName: string | undefined;
  for (const s of secrets) {
    const sec = s.secret ?? {};
    const c =
      sec.tlsCertificate?.certificateChain?.inlineBytes ??
      sec.tls_certificate?.certificate_chain?.inline_bytes;
    const t =
      sec.validationContext?.trustedCa?.inlineBytes ?? sec.validation_context?.trusted_ca?.inline_bytes;
    if (c && chain.length === 0) {
      chain = b64pem(c, `secret ${s.name ?? sec.name}`);
      secretName = s.name ?? sec.name;
    }
    if (t) trusted = trusted.concat(b64pem(t, `secret ${s.name ?? sec.name}`));
  }
  return { kind: 'envoy-config-dump', chain, trusted, ...(secretName ? { secretName } : {}) };
}

export interface CertReport {
  index: number;
  role: 'leaf' | 'intermediate' | 'root';
  origin: CertOrigin;
  subject: string;
  issuer: string;
  spiffeId?: string;
  notBefore: string;
  notAfter: string;
  secondsLeft: number;
  key: string;
  sha256: string;
  expiresSoon: boolean;
  trustedOnly: boolean;
}

export interface ChainReport {
  kind: InputKind;
  secretName?: string;
  certificates: CertReport[];
  verdict?: SvidVerdict & { against?: string };
  warnings: string[];
}

/**
 * Inspects an input. The chain is judged against, in order: given bundles,
 * else the trusted authorities that came with the input (Envoy's ROOTCA),
 * filed under the SVID's own trust domain.
 */
export function inspectChain(
  input: ParsedInput,
  opts: { now?: Date; warnWithinSeconds?: number; bundles?: Bundle[] } = {},
): ChainReport {
  const now = opts.now ?? new Date();
  const warnWithin = opts.warnWithinSeconds ?? 7 * 24 * 3600;
  let verdict: ChainReport['verdict'];
  let anchor: CertView | undefined;
  if (input.chain.length > 0) {
    const td = input.chain[0]!.uriSans.find((u) => u.startsWith('spiffe://'))
      ?.slice(9)
      .split('/')[0];
    const set = new BundleSet(opts.bundles ?? []);
    if (!opts.bundles && td && input.trusted.length > 0)
      set.add({ trustDomain: td, x509Authorities: input.trusted, jwtAuthorities: new Map() });
    const v = validateX509Svid(input.chain, set, now);
    verdict = { ...v, ...(v.trustDomain && set.get(v.trustDomain) ? { against: v.trustDomain } : {}) };
    if (v.trustDomain && v.anchor)
      anchor = set.get(v.trustDomain)?.x509Authorities.find((a) => a.fingerprintSha256 === v.anchor);
  }
  const presented = new Set(input.chain.map((c) => c.fingerprintSha256));
  const extraRoots = input.trusted.filter((t) => !presented.has(t.fingerprintSha256));
  // The bundle authority the chain ends in, shown as the root when it was not presented.
  if (anchor && !presented.has(anchor.fingerprintSha256) && !extraRoots.includes(anchor))
    extraRoots.push(anchor);
  const all = [...input.chain, ...extraRoots];
  const warnings: string[] = [];
  const certificates = all.map((c, i): CertReport => {
    const left = Math.floor((c.notAfter.getTime() - now.getTime()) / 1000);
    const role: CertReport['role'] =
      input.chain.length > 0 && i === 0 ? 'leaf' : c.selfIssued ? 'root' : 'intermediate';
    const expiresSoon = left < warnWithin;
    if (left < 0) warnings.push(`certificate ${i} (${c.subject}) expired ${-left}s ago`);
    else if (expiresSoon) warnings.push(`certificate ${i} (${c.subject}) expires in ${formatSeconds(left)}`);
    const spiffeId = c.uriSans.find((u) => u.startsWith('spiffe://'));
    return {
      index: i,
      role,
      origin: certOrigin(c),
      subject: c.subject,
      issuer: c.issuer,
      ...(spiffeId ? { spiffeId } : {}),
      notBefore: c.notBefore.toISOString(),
      notAfter: c.notAfter.toISOString(),
      secondsLeft: left,
      key: `${c.keyType}${c.keyCurve ? ` ${c.keyCurve}` : ''}${c.keyBits ? ` ${c.keyBits}-bit` : ''}`,
      sha256: c.fingerprintSha256,
      expiresSoon,
      trustedOnly: i >= input.chain.length,
    };
  });
  const report: ChainReport = {
    kind: input.kind,
    certificates,
    warnings,
    ...(input.secretName ? { secretName: input.secretName } : {}),
  };
  if (verdict) report.verdict = verdict;
  return report;
}

export function formatSeconds(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d > 0 ? `${d}d${h}h` : h > 0 ? `${h}h${m}m` : `${m}m${s % 60}s`;
}

/** The report as a tree a person reads. */
export function formatChainReport(r: ChainReport): string {
  const lines: string[] = [
    `${r.kind}${r.secretName ? ` (secret ${r.secretName})` : ''}: ${r.certificates.length} certificates`,
  ];
  r.certificates.forEach((c, i) => {
    const pad = '   '.repeat(i);
    lines.push(`${pad}└─ [${c.role}] ${c.origin}${c.trustedOnly ? ' (trusted, not presented)' : ''}`);
    lines.push(`${pad}   subject:  ${c.subject}`);
    lines.push(`${pad}   issuer:   ${c.issuer}`);
    if (c.spiffeId) lines.push(`${pad}   spiffe:   ${c.spiffeId}`);
    lines.push(
      `${pad}   valid:    ${c.notBefore} → ${c.notAfter} (${c.secondsLeft < 0 ? 'EXPIRED' : `${formatSeconds(c.secondsLeft)} left`})`,
    );
    lines.push(`${pad}   key:      ${c.key}`);
    lines.push(`${pad}   sha256:   ${c.sha256}`);
  });
  if (r.verdict) {
    const v = r.verdict;
    lines.push(
      v.valid
        ? `verdict: VALID X.509-SVID ${v.spiffeId} against the ${v.against} bundle`
        : `verdict: INVALID${v.spiffeId ? ` (${v.spiffeId})` : ''}`,
    );
    for (const p of v.problems)
      lines.push(`  - [${p.code}]${p.index >= 0 ? ` certificate ${p.index}:` : ''} ${p.message}`);
  }
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  return `${lines.join('\n')}\n`;
}
