/**
 * Typed calls of the `spire-server` CLI through a transport. Output is read in
 * the forms both SPIRE 1.5 and current releases print: bundles as SPIFFE
 * bundles (JWKS, `-format spiffe`), relationships in the "pretty" key : value
 * form. Failures carry the command and SPIRE's own message.
 */
import { createPrivateKey } from 'node:crypto';
import { type Bundle, bundleToJwks, parseJwksBundle, parsePemBundle } from '../spiffe/bundle.js';
import { parseSpiffeId, parseTrustDomain } from '../spiffe/id.js';
import type { X509Svid } from '../spiffe/workload.js';
import { parsePemCertificates } from '../spiffe/x509.js';
import type { ExecResult, SpireServerTransport } from './transport.js';

export class SpireCliError extends Error {
  override name = 'SpireCliError';
  constructor(
    message: string,
    readonly target: string,
    /** gRPC status SPIRE reported, e.g. NotFound, Unavailable; undefined when none was printed. */
    readonly grpcCode?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface Relationship {
  trustDomain: string;
  bundleEndpointUrl: string;
  profile: 'https_spiffe' | 'https_web';
  endpointSpiffeId?: string;
}

export interface AuthorityInfo {
  authorityId: string;
  expiresAt?: Date;
  upstreamAuthoritySubjectKeyId?: string;
}

const tdId = (td: string) => `spiffe://${parseTrustDomain(td)}`;

export class SpireServerCli {
  constructor(readonly transport: SpireServerTransport) {}

  get target(): string {
    return this.transport.target;
  }

  private async ok(args: string[], stdin?: string): Promise<ExecResult> {
    let r: ExecResult;
    try {
      r = await this.transport.run(args, stdin === undefined ? {} : { stdin });
    } catch (e) {
      // The command never ran (the exec could not open, the process could not start): say which, keep why.
      throw new SpireCliError(
        `${this.target}: spire-server ${args.slice(0, 2).join(' ')}: ${(e as Error).message}`,
        this.target,
        undefined,
        { cause: e },
      );
    }
    if (r.code !== 0) {
      const text = `${r.stderr}\n${r.stdout}`.trim();
      const grpcCode = /code = (\w+)/.exec(text)?.[1];
      const message = text.split('\n').filter(Boolean).slice(-3).join(' / ') || `exit code ${r.code}`;
      throw new SpireCliError(
        `${this.target}: spire-server ${args.slice(0, 2).join(' ')}: ${message}`,
        this.target,
        grpcCode,
      );
    }
    return r;
  }

  async healthy(): Promise<boolean> {
    return (await this.healthcheck()) === undefined;
  }

  /** undefined when `spire-server healthcheck` passes; else why not (its output, or why it could not run). */
  async healthcheck(): Promise<string | undefined> {
    try {
      const r = await this.transport.run(['healthcheck'], { timeoutMs: 10_000 });
      if (r.code === 0) return undefined;
      return (
        `${r.stderr}\n${r.stdout}`.trim().split('\n').filter(Boolean).slice(-3).join(' / ') ||
        `exit code ${r.code}`
      );
    } catch (e) {
      return (e as Error).message;
    }
  }

  /** The server's own trust domain bundle. */
  async ownBundle(trustDomain: string): Promise<Bundle> {
    return parseJwksBundle((await this.ok(['bundle', 'show', '-format', 'spiffe'])).stdout, trustDomain);
  }

  /** The bundle this server holds for a federated trust domain; undefined when it holds none. */
  async heldBundle(trustDomain: string): Promise<Bundle | undefined> {
    try {
      const r = await this.ok(['bundle', 'list', '-id', tdId(trustDomain), '-format', 'spiffe']);
      return parseJwksBundle(r.stdout, trustDomain);
    } catch (e) {
      if (e instanceof SpireCliError && e.grpcCode === 'NotFound') return undefined;
      throw e;
    }
  }

  /** Every federated bundle this server holds, by trust domain (one call). */
  async heldBundles(): Promise<Map<string, Bundle>> {
    return parseBundleList((await this.ok(['bundle', 'list', '-format', 'spiffe'])).stdout);
  }

  async setBundle(bundle: Bundle): Promise<void> {
    await this.ok(
      ['bundle', 'set', '-id', tdId(bundle.trustDomain), '-format', 'spiffe'],
      bundleToJwks(bundle),
    );
  }

  async relationships(): Promise<Relationship[]> {
    return parseRelationships((await this.ok(['federation', 'list'])).stdout);
  }

  private relationshipArgs(r: Relationship): string[] {
    const args = [
      '-trustDomain',
      r.trustDomain,
      '-bundleEndpointURL',
      r.bundleEndpointUrl,
      '-bundleEndpointProfile',
      r.profile,
    ];
    if (r.profile === 'https_spiffe')
      args.push('-endpointSpiffeID', parseSpiffeId(r.endpointSpiffeId ?? '').uri);
    return args;
  }

  async createRelationship(r: Relationship): Promise<void> {
    await this.ok(['federation', 'create', ...this.relationshipArgs(r)]);
  }

  async updateRelationship(r: Relationship): Promise<void> {
    await this.ok(['federation', 'update', ...this.relationshipArgs(r)]);
  }

  /**
   * Creates (or updates) several relationships in one call (`federation
   * create|update -data -`, one batch RPC; SPIRE 1.5 to 1.15 print the same):
   * per trust domain, undefined when it was done, else why not. One CLI run
   * per server instead of one per relationship.
   */
  async createRelationships(rs: Relationship[]): Promise<Map<string, SpireCliError | undefined>> {
    return this.batchRelationships('create', rs);
  }

  async updateRelationships(rs: Relationship[]): Promise<Map<string, SpireCliError | undefined>> {
    return this.batchRelationships('update', rs);
  }

  private async batchRelationships(
    verb: 'create' | 'update',
    rs: Relationship[],
  ): Promise<Map<string, SpireCliError | undefined>> {
    const out = new Map<string, SpireCliError | undefined>();
    if (!rs.length) return out;
    const data = {
      federationRelationships: rs.map((r) => ({
        trustDomain: r.trustDomain,
        bundleEndpointURL: r.bundleEndpointUrl,
        bundleEndpointProfile: r.profile,
        ...(r.profile === 'https_spiffe'
          ? { endpointSPIFFEID: parseSpiffeId(r.endpointSpiffeId ?? '').uri }
          : {}),
      })),
    };
    const args = ['federation', verb, '-data', '-'];
    let r: ExecResult;
    try {
      r = await this.transport.run(args, { stdin: JSON.stringify(data) });
    } catch (e) {
      const err = new SpireCliError(
        `${this.target}: spire-server federation ${verb}: ${(e as Error).message}`,
        this.target,
        undefined,
        { cause: e },
      );
      for (const x of rs) out.set(x.trustDomain, err);
      return out;
    }
    // Failed ones are told on stderr, each as a banner and the relationship's block.
    const failed = new Map<string, SpireCliError>();
    const banner = new RegExp(
      `^Failed to ${verb} the following federation relationship \\(code: (\\w+), msg: (".*")\\):$`,
    );
    let pending: { code: string; msg: string } | undefined;
    for (const line of r.stderr.split('\n')) {
      const b = banner.exec(line.trim());
      if (b) {
        let msg = b[2] as string;
        try {
          msg = JSON.parse(msg) as string;
        } catch {
          // Go's %q of an unusual string: shown as printed.
        }
        pending = { code: b[1] as string, msg };
        continue;
      }
      const td = /^Trust domain\s*:\s*(\S+)$/.exec(line.trim())?.[1];
      if (td && pending) {
        failed.set(
          td,
          new SpireCliError(
            `${this.target}: spire-server federation ${verb}: ${td}: code = ${pending.code} desc = ${pending.msg}`,
            this.target,
            pending.code,
          ),
        );
        pending = undefined;
      }
    }
    const done = new Set(parseRelationships(r.stdout).map((x) => x.trustDomain));
    const whole = `${r.stderr}\n${r.stdout}`.trim().split('\n').filter(Boolean).slice(-3).join(' / ');
    for (const x of rs) {
      if (failed.has(x.trustDomain)) out.set(x.trustDomain, failed.get(x.trustDomain));
      else if (r.code === 0 || done.has(x.trustDomain)) out.set(x.trustDomain, undefined);
      // The whole call failed (the request, or its input): every relationship of it did.
      else
        out.set(
          x.trustDomain,
          new SpireCliError(
            `${this.target}: spire-server federation ${verb}: ${whole || `exit code ${r.code}`}`,
            this.target,
            /code = (\w+)/.exec(whole)?.[1],
          ),
        );
    }
    return out;
  }

  /** Makes the server fetch the peer's bundle from its endpoint now. */
  async refresh(trustDomain: string): Promise<void> {
    await this.ok(['federation', 'refresh', '-id', tdId(trustDomain)]);
  }

  /** Registration entries (`entry show`; the text output, the same from SPIRE 1.5 to 1.15). */
  async entries(): Promise<RegistrationEntry[]> {
    return parseEntries((await this.ok(['entry', 'show'])).stdout);
  }

  /** Attested agents (`agent list`). */
  async agents(): Promise<AttestedAgent[]> {
    return parseAgents((await this.ok(['agent', 'list'])).stdout);
  }

  /** Generates a join token; the agent that uses it gets `spiffeId` as an alias. */
  async joinToken(spiffeId: string, ttlSeconds = 600): Promise<string> {
    const r = await this.ok([
      'token',
      'generate',
      '-spiffeID',
      parseSpiffeId(spiffeId).uri,
      '-ttl',
      String(ttlSeconds),
    ]);
    const token = /Token:\s*(\S+)/.exec(r.stdout)?.[1];
    if (!token) throw new SpireCliError(`${this.target}: token generate printed no token`, this.target);
    return token;
  }

  async createEntry(e: {
    parentId: string;
    spiffeId: string;
    selectors: string[];
    federatesWith?: string[];
    x509SvidTtlSeconds?: number;
  }): Promise<string> {
    const args = ['entry', 'create', '-parentID', e.parentId, '-spiffeID', e.spiffeId];
    for (const s of e.selectors) args.push('-selector', s);
    for (const td of e.federatesWith ?? []) args.push('-federatesWith', tdId(td));
    if (e.x509SvidTtlSeconds) args.push('-x509SVIDTTL', String(e.x509SvidTtlSeconds));
    const r = await this.ok(args);
    const id = /Entry ID\s*:\s*(\S+)/.exec(r.stdout)?.[1];
    if (!id) throw new SpireCliError(`${this.target}: entry create printed no entry ID`, this.target);
    return id;
  }

  /**
   * `spire-server x509 mint`: an X.509-SVID for `spiffeId` issued by the
   * server's CA, with its key and the server's root CAs. The key lives only
   * in the returned KeyObject (never in an error or a log).
   */
  async mintX509Svid(spiffeId: string, ttl = '5m'): Promise<{ svid: X509Svid; roots: Bundle }> {
    const id = parseSpiffeId(spiffeId);
    const out = (await this.ok(['x509', 'mint', '-spiffeID', id.uri, '-ttl', ttl])).stdout;
    const part = (from: string, to?: string) => {
      const a = out.indexOf(from);
      const b = to ? out.indexOf(to) : out.length;
      return a >= 0 && b > a ? out.slice(a + from.length, b) : '';
    };
    const chain = parsePemCertificates(part('X509-SVID:', 'Private key:'));
    const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(
      part('Private key:', 'Root CAs:'),
    )?.[0];
    const roots = part('Root CAs:');
    if (!chain.length || !key || !roots.trim())
      throw new SpireCliError(`${this.target}: x509 mint printed no SVID, key and root CAs`, this.target);
    return {
      svid: { spiffeId: id.uri, chain, privateKey: createPrivateKey(key) },
      roots: parsePemBundle(roots, id.trustDomain),
    };
  }

  /** SPIRE ≥ 1.9: prepares a new X.509 authority (minted by the UpstreamAuthority when there is one). */
  async prepareX509Authority(): Promise<AuthorityInfo> {
    return parseAuthority(
      (await this.ok(['localauthority', 'x509', 'prepare', '-output', 'json'])).stdout,
      'prepared_authority',
    );
  }

  async activateX509Authority(authorityId: string): Promise<AuthorityInfo> {
    const r = await this.ok([
      'localauthority',
      'x509',
      'activate',
      '-authorityID',
      authorityId,
      '-output',
      'json',
    ]);
    return parseAuthority(r.stdout, 'activated_authority');
  }

  /** SPIRE ≥ 1.9: the X.509 authorities the server has (active, prepared, old); absent slots are undefined. */
  async x509AuthorityState(): Promise<X509AuthorityState> {
    const doc = JSON.parse(
      (await this.ok(['localauthority', 'x509', 'show', '-output', 'json'])).stdout,
    ) as Record<string, unknown>;
    const slot = (name: string) =>
      doc[name] && (doc[name] as { authority_id?: unknown }).authority_id
        ? parseAuthority(JSON.stringify(doc), name)
        : undefined;
    return { active: slot('active'), prepared: slot('prepared'), old: slot('old') };
  }

  /**
   * SPIRE ≥ 1.11: marks the upstream root that signed the old X.509 authority
   * as tainted (agents and the server re-issue what it signed). SPIRE refuses
   * the root that signed the active authority.
   */
  async taintUpstreamAuthority(subjectKeyId: string): Promise<void> {
    await this.ok(['upstreamauthority', 'taint', '-subjectKeyID', subjectKeyId, '-output', 'json']);
  }

  /** SPIRE ≥ 1.11: removes a tainted upstream root from the trust bundle. */
  async revokeUpstreamAuthority(subjectKeyId: string): Promise<void> {
    await this.ok(['upstreamauthority', 'revoke', '-subjectKeyID', subjectKeyId, '-output', 'json']);
  }
}

export interface X509AuthorityState {
  /** The authority signing now. */
  active?: AuthorityInfo;
  /** In the bundle's reach (its root is in the bundle) but not signing yet. */
  prepared?: AuthorityInfo;
  /** Signed before the active one. */
  old?: AuthorityInfo;
}

/**
 * `bundle list -format spiffe`: for each bundle a banner (a line of 40 '*', a
 * line '* <trust domain>', a line of 40 '*') and the JWKS; the same in SPIRE
 * 1.5 and current releases.
 */
export function parseBundleList(text: string): Map<string, Bundle> {
  const out = new Map<string, Bundle>();
  const parts = text.split(/^\*{40}\n\* (\S+)\n\*{40}\n/m);
  for (let i = 1; i + 1 < parts.length; i += 2) {
    const td = parseTrustDomain(parts[i] as string);
    out.set(td, parseJwksBundle((parts[i + 1] as string).trim(), td));
  }
  return out;
}

export interface RegistrationEntry {
  entryId: string;
  spiffeId: string;
  parentId: string;
  selectors: string[];
  federatesWith: string[];
}

export interface AttestedAgent {
  spiffeId: string;
  attestationType?: string;
  expiresAt?: string;
}

/** "Key   : value" blocks, a new block at each `first` key. */
function blocks(text: string, first: string): Array<Array<[string, string]>> {
  const out: Array<Array<[string, string]>> = [];
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9 -]+?)\s*:\s*(.*)$/.exec(line.trim());
    if (!m) continue;
    const key = m[1] as string;
    if (key === first) out.push([]);
    out.at(-1)?.push([key, (m[2] as string).trim()]);
  }
  return out;
}

export function parseEntries(text: string): RegistrationEntry[] {
  return blocks(text, 'Entry ID').map((b) => {
    const all = (k: string) => b.filter(([key]) => key === k).map(([, v]) => v);
    return {
      entryId: all('Entry ID')[0] ?? '',
      spiffeId: all('SPIFFE ID')[0] ?? '',
      parentId: all('Parent ID')[0] ?? '',
      selectors: all('Selector'),
      federatesWith: all('FederatesWith'),
    };
  });
}

export function parseAgents(text: string): AttestedAgent[] {
  return blocks(text, 'SPIFFE ID').map((b) => {
    const get = (k: string) => b.find(([key]) => key === k)?.[1];
    const a: AttestedAgent = { spiffeId: get('SPIFFE ID') ?? '' };
    const t = get('Attestation type');
    if (t) a.attestationType = t;
    const x = get('Expiration time');
    if (x) a.expiresAt = x;
    return a;
  });
}

export function parseRelationships(text: string): Relationship[] {
  const out: Relationship[] = [];
  let cur: Partial<Relationship> | undefined;
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z ]+?)\s*:\s*(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, key, value] = m as unknown as [string, string, string];
    if (key === 'Trust domain') {
      cur = { trustDomain: value };
      out.push(cur as Relationship);
    } else if (cur && key === 'Bundle endpoint URL') cur.bundleEndpointUrl = value;
    else if (cur && key === 'Bundle endpoint profile') cur.profile = value as Relationship['profile'];
    else if (cur && key === 'Endpoint SPIFFE ID') cur.endpointSpiffeId = value;
  }
  return out;
}

function parseAuthority(text: string, field: string): AuthorityInfo {
  const doc = JSON.parse(text) as Record<string, Record<string, unknown>>;
  const a = doc[field];
  if (!a || typeof a.authority_id !== 'string') throw new Error(`no ${field}.authority_id in SPIRE's answer`);
  const info: AuthorityInfo = { authorityId: a.authority_id };
  if (a.expires_at !== undefined) info.expiresAt = new Date(Number(a.expires_at) * 1000);
  if (typeof a.upstream_authority_subject_key_id === 'string')
    info.upstreamAuthoritySubjectKeyId = a.upstream_authority_subject_key_id;
  return info;
}
