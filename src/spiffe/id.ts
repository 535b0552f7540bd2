/**
 * SPIFFE IDs and trust domains as the SPIFFE ID specification defines them
 * (spiffe://<trust domain>/<path>): parsing, validation and the normal form.
 * Every rejection is a SpiffeIdError naming the rule broken, so callers and
 * tests can tell "uppercase scheme" from "dot segment" without string matching.
 */

export type SpiffeIdRule =
  | 'empty'
  | 'scheme'
  | 'trust-domain-empty'
  | 'trust-domain-chars'
  | 'trust-domain-too-long'
  | 'port'
  | 'userinfo'
  | 'query-fragment'
  | 'path-empty-segment'
  | 'path-dot-segment'
  | 'path-chars'
  | 'path-trailing-slash'
  | 'too-long';

export class SpiffeIdError extends Error {
  override name = 'SpiffeIdError';
  constructor(
    readonly rule: SpiffeIdRule,
    message: string,
    readonly input: string,
  ) {
    super(`${message} (in ${JSON.stringify(input.length > 80 ? `${input.slice(0, 77)}...` : input)})`);
  }
}

export interface SpiffeId {
  trustDomain: string;
  /** "" or "/seg/seg". */
  path: string;
  /** spiffe://<trustDomain><path> */
  uri: string;
}

const TD_CHARS = /^[a-z0-9._-]+$/;
const PATH_SEGMENT_CHARS = /^[A-Za-z0-9._-]+$/;
const MAX_URI = 2048;
const MAX_TD = 255;

/** Parses a bare trust domain name ("foo.com"). */
export function parseTrustDomain(input: string): string {
  if (input.length === 0)
    throw new SpiffeIdError('trust-domain-empty', 'a trust domain must not be empty', input);
  if (input.includes('://'))
    throw new SpiffeIdError('scheme', 'give the trust domain name without a scheme', input);
  if (input.includes(':')) throw new SpiffeIdError('port', 'a trust domain must not contain a port', input);
  if (input.includes('@'))
    throw new SpiffeIdError('userinfo', 'a trust domain must not contain userinfo', input);
  if (input.length > MAX_TD)
    throw new SpiffeIdError('trust-domain-too-long', `a trust domain is at most ${MAX_TD} characters`, input);
  if (!TD_CHARS.test(input))
    throw new SpiffeIdError(
      'trust-domain-chars',
      'a trust domain may contain only lowercase a-z, 0-9, ".", "-" and "_"',
      input,
    );
  return input;
}

/** Parses "spiffe://td/path". The ID must already be in normal form: the spec forbids case folding of the path. */
export function parseSpiffeId(input: string): SpiffeId {
  if (input.length === 0) throw new SpiffeIdError('empty', 'a SPIFFE ID must not be empty', input);
  if (input.length > MAX_URI)
    throw new SpiffeIdError('too-long', `a SPIFFE ID is at most ${MAX_URI} bytes`, input);
  if (!input.startsWith('spiffe://'))
    throw new SpiffeIdError('scheme', 'a SPIFFE ID starts with the lowercase scheme "spiffe://"', input);
  const rest = input.slice('spiffe://'.length);
  if (/[?#]/.test(rest))
    throw new SpiffeIdError('query-fragment', 'a SPIFFE ID has no query or fragment', input);
  const slash = rest.indexOf('/');
  const td = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  try {
    parseTrustDomain(td);
  } catch (e) {
    if (e instanceof SpiffeIdError)
      throw new SpiffeIdError(e.rule, e.message.replace(/ \(in .*\)$/, ''), input);
    throw e;
  }
  if (path !== '') {
    if (path === '/' || path.endsWith('/'))
      throw new SpiffeIdError('path-trailing-slash', 'a SPIFFE ID path must not end with "/"', input);
    for (const seg of path.slice(1).split('/')) {
      if (seg === '')
        throw new SpiffeIdError('path-empty-segment', 'a SPIFFE ID path has no empty segments ("//")', input);
      if (seg === '.' || seg === '..')
        throw new SpiffeIdError('path-dot-segment', 'a SPIFFE ID path has no "." or ".." segments', input);
      if (!PATH_SEGMENT_CHARS.test(seg))
        throw new SpiffeIdError(
          'path-chars',
          'SPIFFE ID path segments may contain only a-z, A-Z, 0-9, ".", "-" and "_"',
          input,
        );
    }
  }
  return { trustDomain: td, path, uri: `spiffe://${td}${path}` };
}

/** Returns the problem with a trust domain name, or undefined when it is valid. */
export function checkTrustDomain(input: string): string | undefined {
  try {
    parseTrustDomain(input);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

export function isSpiffeId(input: string): boolean {
  try {
    parseSpiffeId(input);
    return true;
  } catch {
    return false;
  }
}

/** The ID of a trust domain's SPIRE server, the endpoint ID of its bundle endpoint. */
export function serverId(trustDomain: string): string {
  return `spiffe://${parseTrustDomain(trustDomain)}/spire/server`;
}
