/**
 * The trust-chain walk of the guide as a library call: read a PEM chain, an
 * Envoy secrets config dump (`istioctl proxy-config secret -o json`, or a
 * full config_dump) or a SPIFFE bundle; describe every certificate (role,
 * origin, subject, issuer, SPIFFE ID, validity, key, fingerprint); judge the
 * SVID against the bundle of its trust domain; warn about near expiry.
 */
import { type Bundle, BundleSet, parseJwksBundle } from './bundle.js';
import { parseTrustDomain } from './id.js';
import { JsonSyntaxError, parseJsonText } from './json.js';
import { type SvidVerdict, validateX509Svid } from './svid.js';
import {
  type CertOrigin,
  type CertView,
  certOrigin,
  MAX_CERTIFICATES,
  parsePemCertificates,
} from './x509.js';

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

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const kindOf = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;

/** The list under the first of `keys` that `d` has (empty when none), refusing any other shape. */
function listAt(d: Json, keys: string[], where: string): unknown[] {
  for (const k of keys) {
    const v = d[k];
    if (v === undefined) continue;
    if (!Array.isArray(v)) throw new InputError(`${where}.${k} must be a list, found ${kindOf(v)}`);
    return v;
  }
  return [];
}

/** The object at `d[key]` (undefined when absent), refusing any other shape. */
function objectAt(d: Json, keys: string[], where: string): Json | undefined {
  for (const k of keys) {
    const v = d[k];
    if (v === undefined) continue;
    if (!isObject(v)) throw new InputError(`${where}.${k} must be an object, found ${kindOf(v)}`);
    return v;
  }
  return undefined;
}

function stringAt(d: Json | undefined, keys: string[], where: string): string | undefined {
  if (!d) return undefined;
  for (const k of keys) {
    const v = d[k];
    if (v === undefined) continue;
    if (typeof v !== 'string')
      throw new InputError(`${where}.${k} must be a base64 string, found ${kindOf(v)}`);
    return v;
  }
  return undefined;
}

/** A secret of a config dump with where it was found (a JSON path, for messages). */
interface FoundSecret {
  at: string;
  secret: Json;
}

/** A config dump secret: its name (else its JSON path), presented chain and trusted CAs. */
export interface DumpSecret {
  name: string;
  chain: CertView[];
  /** Every trusted authority: trusted_ca's, and each trust domain's of a SPIFFE validator. */
  trusted: CertView[];
  /** With Envoy's SPIFFE certificate validator (what SPIRE's SDS sends): each trust domain's bundle. */
  trustDomains?: Array<{ name: string; certs: CertView[] }>;
}

/**
 * The bundles of Envoy's SPIFFE certificate validator
 * (validation_context.custom_validator_config, typed_config
 * SPIFFECertValidatorConfig: trust_domains[].trust_bundle), which SPIRE's SDS
 * sends as ROOTCA: one per trust domain the workload trusts, federated ones
 * included.
 */
function spiffeValidatorBundles(
  vc: Json,
  where: string,
  name: string,
): Array<{ name: string; certs: CertView[] }> {
  const custom = objectAt(vc, ['customValidatorConfig', 'custom_validator_config'], where);
  const typed = custom && objectAt(custom, ['typedConfig', 'typed_config'], `${where}.customValidatorConfig`);
  if (!typed) return [];
  return listAt(typed, ['trustDomains', 'trust_domains'], `${where}.customValidatorConfig.typedConfig`).map(
    (d, i) => {
      const at = `${where}.customValidatorConfig.typedConfig.trustDomains[${i}]`;
      if (!isObject(d)) throw new InputError(`${at} must be an object, found ${kindOf(d)}`);
      const td = typeof d.name === 'string' ? d.name : '';
      const bundle = objectAt(d, ['trustBundle', 'trust_bundle'], at);
      const bytes = stringAt(bundle, ['inlineBytes', 'inline_bytes'], `${at}.trustBundle`);
      return { name: td, certs: b64pem(bytes, `secret ${name} (${td || at})`) };
    },
  );
}

/**
 * The secrets of a parsed Envoy config dump (full, or `istioctl
 * proxy-config secret -o json`) with their certificates; InputError naming
 * the JSON path for any other shape, and beyond MAX_CERTIFICATES in all.
 */
export function configDumpSecrets(doc: unknown): DumpSecret[] {
  if (!isObject(doc)) throw new InputError('JSON input must be an object');
  let count = 0;
  return envoySecrets(doc).map(({ at, secret: s }) => {
    const sec = objectAt(s, ['secret'], at) ?? {};
    const name = typeof s.name === 'string' ? s.name : typeof sec.name === 'string' ? sec.name : at;
    const tls = objectAt(sec, ['tlsCertificate', 'tls_certificate'], `${at}.secret`);
    const chainSrc =
      tls && objectAt(tls, ['certificateChain', 'certificate_chain'], `${at}.secret.tlsCertificate`);
    const c = stringAt(
      chainSrc,
      ['inlineBytes', 'inline_bytes'],
      `${at}.secret.tlsCertificate.certificateChain`,
    );
    const vc = objectAt(sec, ['validationContext', 'validation_context'], `${at}.secret`);
    const caSrc = vc && objectAt(vc, ['trustedCa', 'trusted_ca'], `${at}.secret.validationContext`);
    const t = stringAt(caSrc, ['inlineBytes', 'inline_bytes'], `${at}.secret.validationContext.trustedCa`);
    const byDomain = vc ? spiffeValidatorBundles(vc, `${at}.secret.validationContext`, name) : [];
    const out = {
      name,
      chain: b64pem(c, `secret ${name}`),
      trusted: [...b64pem(t, `secret ${name}`), ...byDomain.flatMap((d) => d.certs)],
      ...(byDomain.length ? { trustDomains: byDomain } : {}),
    };
    count += out.chain.length + out.trusted.length;
    if (count > MAX_CERTIFICATES)
      throw new InputError(
        `the config dump holds more than the ${MAX_CERTIFICATES} certificates meshfed reads (at ${at})`,
      );
    return out;
  });
}

/** The secrets of an Envoy config dump (full, or `istioctl proxy-config secret -o json`). */
function envoySecrets(doc: Json): FoundSecret[] {
  const fromDump = (d: Json, where: string): FoundSecret[] =>
    (['dynamicActiveSecrets', 'dynamic_active_secrets'].some((k) => d[k] !== undefined)
      ? listAt(d, ['dynamicActiveSecrets', 'dynamic_active_secrets'], where).map((s, i) => ({
          s,
          at: `${where}.dynamicActiveSecrets[${i}]`,
        }))
      : []
    )
      .concat(
        listAt(d, ['staticSecrets', 'static_secrets'], where).map((s, i) => ({
          s,
          at: `${where}.staticSecrets[${i}]`,
        })),
      )
      .map(({ s, at }) => {
        if (!isObject(s)) throw new InputError(`${at} must be an object, found ${kindOf(s)}`);
        return { at, secret: s };
      });
  if (doc.configs !== undefined)
    return listAt(doc, ['configs'], '$').flatMap((c, i) => {
      const at = `$.configs[${i}]`;
      if (!isObject(c)) throw new InputError(`${at} must be an object, found ${kindOf(c)}`);
      const type = typeof c['@type'] === 'string' ? c['@type'] : '';
      // A whole dump has a SecretsConfigDump section; `config_dump?resource=dynamic_active_secrets` lists the secrets themselves.
      if (type.endsWith('SecretsConfigDump')) return fromDump(c, at);
      if (type.endsWith('SecretsConfigDump.DynamicSecret')) return [{ at, secret: c }];
      return [];
    });
  return fromDump(doc, '$');
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

/**
 * Detects the input's format and extracts the chain and trusted
 * authorities. Every shape problem is an InputError (or a BundleError,
 * CertParseError, SpiffeIdError) naming where in the input it is; an input
 * with no certificate at all is one too, never an empty report.
 */
export function parseCertInput(text: string, opts: { trustDomain?: string } = {}): ParsedInput {
  const input = parseAnyCertInput(text, opts);
  const n = input.chain.length + input.trusted.length;
  if (n === 0)
    throw new InputError(
      input.kind === 'spiffe-bundle'
        ? 'the bundle holds no X.509 authority (no key with use "x509-svid"); give a bundle with one, or a PEM chain'
        : 'the config dump holds no certificate (no tls_certificate.certificate_chain nor validation_context.trusted_ca); dump the proxy whose secrets you want (istioctl proxy-config secret POD -o json)',
    );
  if (n > MAX_CERTIFICATES)
    throw new InputError(
      `the input holds ${n} certificates, more than the ${MAX_CERTIFICATES} meshfed reads; give one chain`,
    );
  return input;
}

function parseAnyCertInput(text: string, opts: { trustDomain?: string }): ParsedInput {
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
  let doc: unknown;
  try {
    doc = parseJsonText(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) throw new InputError(`input looks like JSON but is ${e.message}`);
    throw e;
  }
  if (!isObject(doc)) throw new InputError('JSON input must be an object');
  if (doc.keys !== undefined) {
    const td = opts.trustDomain ?? 'unknown.invalid';
    const bundle = parseJwksBundle(text, parseTrustDomain(td));
    return { kind: 'spiffe-bundle', chain: [], trusted: bundle.x509Authorities };
  }
  const secrets = configDumpSecrets(doc);
  if (secrets.length === 0)
    throw new InputError('JSON input has no Envoy secrets (dynamicActiveSecrets) and no bundle keys');
  // The first secret with a chain is the one judged; every secret's trusted CAs count.
  const judged = secrets.find((x) => x.chain.length > 0);
  const chain = judged?.chain ?? [];
  const secretName = judged?.name;
  const trusted = secrets.flatMap((x) => x.trusted);
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
