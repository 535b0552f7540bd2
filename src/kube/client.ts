/**
 * One client per kubeconfig context, behind a narrow interface: get, list,
 * server-side apply, delete. Never the kubeconfig's current context: every
 * client is made for a context named in the fleet.
 *
 * Apply is server-side apply with meshfed's field manager and
 * `fieldValidation=Strict` (an unknown or duplicate field is an error, not a
 * warning); `force` only when asked. A conflict with another field manager
 * is reported with the manager and the fields. Whether an apply changed
 * anything is read from the object's resourceVersion (a no-op apply leaves it
 * alone), so writes can be counted. Delete treats "not found" as done.
 *
 * The kubeconfig is read with @kubernetes/client-node's parts (kubeconfig.ts),
 * which supply each request's credentials and TLS settings (its CA;
 * verification is never turned off);
 * the requests themselves are plain HTTPS, so that query parameters like
 * fieldValidation are ours to set. Each client keeps its connections open
 * between requests (a keep-alive agent of its own): client-node makes a new
 * agent for every request, and a TLS handshake per request was most of a
 * no-op run's CPU.
 */
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, type RequestOptions, request } from 'node:https';
import { dirname, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { isMap, isScalar, isSeq, LineCounter, type Node, parse, parseDocument } from 'yaml';

import { FIELD_MANAGER } from '../render/meta.js';
import type { ObjectMeta } from '../render/types.js';
import { type AppliedMemo, appliedMemo } from './applied-memo.js';
import { type DiscoveryCache, discoveryCache } from './discovery-cache.js';
import { KubeApiError, KubeRequestError, type StatusCause } from './errors.js';
import { spdyExec } from './exec.js';
import { applyChangesNothing } from './fields.js';
import { type KubeconfigView, LiteKubeConfig } from './kubeconfig.js';

export { KubeApiError, KubeRequestError } from './errors.js';

/** An object as the API server returns it: what meshfed renders, plus server-set metadata. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta & {
    resourceVersion?: string;
    uid?: string;
    generation?: number;
    managedFields?: unknown[];
    creationTimestamp?: string;
    deletionTimestamp?: string;
    finalizers?: string[];
  };
  [k: string]: unknown;
}

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
}

export type ApplyAction = 'created' | 'updated' | 'unchanged';

/**
 * Whether an apply changed the object. A new resourceVersion alone does not
 * say so: a controller may have written the object's status (a Deployment
 * rolling out, a PodDisruptionBudget counting pods, a LoadBalancer getting
 * its address) between the apply's read and its patch. What the apply can
 * change is everything but the status and the other managers' entries.
 */
export function wroteSomething(before: KubeObject, after: KubeObject): boolean {
  if (before.metadata.resourceVersion === after.metadata.resourceVersion) return false;
  return !isDeepStrictEqual(applied(before), applied(after));
}

/** What an apply can change in an object: all but its status, resourceVersion and other managers' entries. */
export function applied(o: KubeObject): KubeObject {
  const { status: _status, ...rest } = o as KubeObject & { status?: unknown };
  const { resourceVersion: _rv, managedFields, ...metadata } = o.metadata;
  const ours = ((managedFields ?? []) as Array<{ manager?: string; time?: string }>)
    .filter((m) => m.manager === FIELD_MANAGER)
    .map(({ time: _time, ...m }) => m);
  return { ...rest, metadata: { ...metadata, managedFields: ours } };
}

export interface ApplyOptions {
  /** Take over fields another manager owns. */
  force?: boolean;
  /** Server-side dry run: validated and admitted, not persisted. */
  dryRun?: boolean;
  /**
   * Builds the object to send from the live one (undefined when absent),
   * read just before the apply: how the engine tells what it creates from
   * what it finds.
   */
  prepare?: (before: KubeObject | undefined) => KubeObject;
  /** The live object, when the caller has just read it: not read again. */
  live?: KubeObject;
  /**
   * With `live`: send its resourceVersion, so that the API server applies
   * only onto exactly that object (a precondition) and answers 409 if it
   * changed since it was read; what the apply changed is then told exactly
   * from `live`, however long ago it was read.
   */
  onlyOntoLive?: boolean;
}

/** One operation of a JSON patch (RFC 6902). */
export type JsonPatchOp =
  | { op: 'test' | 'add' | 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/** A kind the API server serves, from discovery. */
export interface ServedKind {
  apiVersion: string;
  kind: string;
  namespaced: boolean;
  verbs: string[];
}

export interface ClusterClient {
  readonly context: string;
  readonly server: string;
  get(ref: ObjectRef): Promise<KubeObject | undefined>;
  list(
    apiVersion: string,
    kind: string,
    o?: { namespace?: string; labelSelector?: string },
  ): Promise<KubeObject[]>;
  apply(obj: KubeObject, o?: ApplyOptions): Promise<{ object: KubeObject; action: ApplyAction }>;
  delete(ref: ObjectRef): Promise<'deleted' | 'absent'>;
  /** A JSON patch (RFC 6902) of one object; 'absent' when it is gone. A failed `test` op is a KubeApiError (422). */
  jsonPatch(
    ref: ObjectRef,
    ops: JsonPatchOp[],
    o?: { subresource?: 'status' },
  ): Promise<'patched' | 'absent'>;
  /**
   * POST of an object the server answers and does not keep (a review:
   * SelfSubjectAccessReview, TokenReview); resolves with the server's answer.
   */
  review(obj: KubeObject): Promise<KubeObject>;
  /** The resource (plural) name the server serves a kind under, or undefined when it does not serve the kind. */
  resourceName(apiVersion: string, kind: string): Promise<string | undefined>;
  /** The API server's version (GET /version): "v1.35.0". */
  version(): Promise<string>;
  /** Every kind the API server serves that can be listed and deleted (preferred versions only). */
  kinds(): Promise<ServedKind[]>;
  /** Runs a command in a container (no TTY), bounded in time and output; resolves with its exit code. */
  exec(
    pod: { namespace: string; name: string; container: string },
    command: string[],
    o?: { stdin?: string; timeoutMs?: number; maxBytes?: number },
  ): Promise<{ code: number; stdout: string; stderr: string }>;
}

export const refOf = (o: KubeObject): ObjectRef => ({
  apiVersion: o.apiVersion,
  kind: o.kind,
  name: o.metadata.name,
  ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}),
});

export const describeRef = (r: ObjectRef): string =>
  `${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`;

/** A 404 because the API server does not serve the kind at all (its CRD is not there), not because the object is absent. */
export class KindNotServedError extends KubeApiError {
  override name = 'KindNotServedError';
}

export class KubeconfigError extends Error {
  override name = 'KubeconfigError';
}

/**
 * Why an API server could not be reached, decided from the error's code
 * (Node's, OpenSSL's) and the phase it came from, never from its text:
 * before the request (credentials: a certificate-authority file, an exec
 * plugin), connecting, the TLS handshake, or no answer within the bound.
 */
export type UnreachableReason =
  | 'refused'
  | 'tls-untrusted'
  | 'tls-invalid'
  | 'ca-file-missing'
  | 'credential-file-missing'
  | 'exec-plugin-missing'
  | 'exec-plugin-failed'
  | 'timed-out'
  | 'dns'
  | 'network'
  | 'other';

/** A request that never reached the API server (no HTTP answer): its reason and a message naming the context. */
export class KubeUnreachableError extends KubeRequestError {
  override name = 'KubeUnreachableError';
  constructor(
    message: string,
    readonly reason: UnreachableReason,
    /** What the reason means here, in words (for MF101): "connection refused", "no answer within 5 s". */
    readonly why: string,
    /** The Node error behind it, or its code (errors.ts classifies by it). */
    options: { cause?: unknown; code?: string } = {},
  ) {
    super(message, options);
  }
}

/** A cluster that could not be reached: why (typed, and in words) and the whole message naming context and server. */
export interface Unreachable {
  reason: UnreachableReason | 'unauthorized';
  why: string;
  /** "context C (https://server): GET /version: …", for logs and errors. */
  message: string;
  context: string;
  server: string;
}

/** What a failed first request (GET /version) says about reaching the cluster. */
export function unreachableOf(e: unknown, client: { context: string; server: string }): Unreachable {
  const text = (e as Error).message.replace(`${client.context}: `, '');
  // Only the two names: the client itself holds the kubeconfig and its secrets.
  const at = {
    message: `context ${client.context} (${client.server}): ${text}`,
    context: client.context,
    server: client.server,
  };
  if (e instanceof KubeUnreachableError) return { reason: e.reason, why: e.why, ...at };
  if (e instanceof KubeApiError)
    return e.status === 401 || e.status === 403
      ? { reason: 'unauthorized', why: `the API server refused the credentials (HTTP ${e.status})`, ...at }
      : { reason: 'other', why: `the API server answered HTTP ${e.status}`, ...at };
  return { reason: 'other', why: text, ...at };
}

/** OpenSSL's codes for a chain that does not end at a trusted CA. */
const UNTRUSTED_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);
/** OpenSSL's and Node's codes for a certificate that is trusted but not valid here. */
const INVALID_CERT_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_REVOKED',
  'INVALID_PURPOSE',
]);

type CodedError = Error & { code?: string; syscall?: string; path?: string };

/** Why a request failed on its way to the server (the socket's error). */
function connectReason(e: CodedError): { reason: UnreachableReason; why: string } {
  const code = e.code ?? '';
  if (code === 'ECONNREFUSED') return { reason: 'refused', why: 'connection refused' };
  if (UNTRUSTED_CODES.has(code))
    return {
      reason: 'tls-untrusted',
      why: `TLS: the server's certificate is not signed by a CA the kubeconfig trusts (${code})`,
    };
  if (INVALID_CERT_CODES.has(code))
    return { reason: 'tls-invalid', why: `TLS: the server's certificate is not valid for it (${code})` };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return { reason: 'dns', why: `the server's name does not resolve (${code})` };
  if (['EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(code))
    return { reason: 'network', why: `the connection failed (${code})` };
  return { reason: 'other', why: code ? `the request failed (${code})` : 'the request failed' };
}

/** Why the kubeconfig's credentials and TLS settings could not be made ready (client-node's applyToHTTPSOptions). */
function credentialReason(e: CodedError, kc: KubeconfigView): { reason: UnreachableReason; why: string } {
  const user = kc.getCurrentUser();
  const plugin = user?.exec?.command as string | undefined;
  // The plugin's name only: its arguments and environment may hold secrets.
  if (plugin && e.syscall?.startsWith('spawn'))
    return e.code === 'ENOENT'
      ? {
          reason: 'exec-plugin-missing',
          why: `the exec credential plugin "${plugin}" not found (install it, or put it on PATH)`,
        }
      : {
          reason: 'exec-plugin-failed',
          why: `the exec credential plugin "${plugin}" could not start (${e.code})`,
        };
  if (e.code === 'ENOENT' && e.path) {
    const caFile = kc.getCurrentCluster()?.caFile;
    return e.path === caFile
      ? { reason: 'ca-file-missing', why: `the certificate-authority file ${e.path} does not exist` }
      : { reason: 'credential-file-missing', why: `the credential file ${e.path} does not exist` };
  }
  if (plugin)
    return {
      reason: 'exec-plugin-failed',
      why: `the exec credential plugin "${plugin}" failed${e.message ? `: ${e.message.split('\n')[0]!.slice(0, 200)}` : ''}`,
    };
  return {
    reason: 'other',
    why: `the kubeconfig's credentials could not be used${e.code ? ` (${e.code})` : ''}`,
  };
}

interface Status {
  kind?: string;
  reason?: string;
  message?: string;
  details?: { causes?: StatusCause[] };
}

/** The manager named in a conflict cause: `conflict with "kubectl" using apps/v1`. */
function conflictsOf(s: Status): Array<{ manager: string; field: string }> {
  return (s.details?.causes ?? [])
    .filter((c) => c.reason === 'FieldManagerConflict')
    .map((c) => ({
      manager: /conflict with "([^"]+)"/.exec(c.message ?? '')?.[1] ?? '?',
      field: c.field ?? '?',
    }));
}

interface Resource {
  name: string;
  namespaced: boolean;
}

/** Discovery read: every group version's kinds, and which group versions are their group's preferred. */
interface Discovered {
  preferred: Set<string>;
  resources: Map<string, Map<string, Resource & { verbs: string[] }>>;
}

/** One group of an aggregated discovery document (apidiscovery.k8s.io APIGroupDiscoveryList). */
export interface AggregatedGroup {
  metadata?: { name?: string };
  versions?: Array<{
    version: string;
    freshness?: string;
    resources?: Array<{
      resource: string;
      responseKind?: { kind?: string };
      scope?: string;
      verbs?: string[];
    }>;
  }>;
}

/** The aggregated form first (v2, Kubernetes ≥ 1.30; v2beta1 before), the per-version documents where neither is served. */
const AGGREGATED_ACCEPT = [
  'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList',
  'application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList',
  'application/json',
].join(',');

/**
 * How long `kinds` answers from the run's last aggregated read (a run's
 * `resource` lookups made it) instead of reading /api and /apis again.
 */
export const KINDS_REUSE_MS = 30_000;
/** Writes that can change the kinds a server serves: to CRDs and APIServices. */
const KINDS_CHANGE = /^\/apis\/(apiextensions|apiregistration)\.k8s\.io\//;

class HttpsClusterClient implements ClusterClient {
  private readonly resources = new Map<string, Map<string, Resource>>();
  /** The first aggregated discovery of the run, once started (resource's misses wait for it). */
  private aggregatedRead: Promise<undefined> | undefined;
  private aggregatedDone = false;
  /**
   * The last aggregated read and when it was made: what `kinds` answers
   * from, instead of reading again, while it is at most KINDS_REUSE_MS old
   * and nothing that changes the served kinds went through this client since
   * (a write to a CRD or an APIService, a kind looked up again in its group
   * version because the read lacked it).
   */
  private lastDiscovered: { at: number; discovered: Discovered } | undefined;
  /**
   * Connections kept open between requests. The agent pools sockets by the
   * request's TLS settings (CA, client certificate and key, server name), so
   * credentials that change get connections of their own. At most 16 at a
   * time (more requests queue: a wait reads every pending object at once);
   * an idle socket is closed after 30 s and never keeps the process alive.
   */
  private readonly agent = new Agent({ keepAlive: true, timeout: 30_000, maxSockets: 16 });

  constructor(
    readonly context: string,
    readonly server: string,
    private readonly kc: KubeconfigView,
    private readonly timeoutMs: number,
    private readonly discoveryCache?: DiscoveryCache,
    private readonly appliedMemo?: AppliedMemo,
  ) {}

  private async call(
    method: string,
    path: string,
    body?: string,
    contentType?: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; json: unknown; headers: IncomingHttpHeaders }> {
    const u = new URL(path, this.server);
    if (method !== 'GET' && KINDS_CHANGE.test(u.pathname)) this.lastDiscovered = undefined;
    const opts: RequestOptions & { headers: Record<string, string> } = {
      method,
      // A URL's hostname keeps an IPv6 address's brackets (https://[::1]:6443); a socket wants it bare.
      hostname: u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      headers: { Accept: 'application/json', ...headers },
    };
    await this.credentials(opts, method, u.pathname);
    // client-node's agent is a new one per request (a proxy's excepted: kept as it is).
    if (!this.kc.getCurrentCluster()?.proxyUrl) opts.agent = this.agent;
    if (body !== undefined) {
      opts.headers['Content-Type'] = contentType ?? 'application/json';
      opts.headers['Content-Length'] = String(Buffer.byteLength(body));
    }
    return new Promise((resolve, reject) => {
      // A deadline for the whole request (connect, TLS, answer), not an idle timer that each byte restarts.
      const deadline = setTimeout(
        () =>
          req.destroy(
            new KubeUnreachableError(
              `no answer from ${this.server} within ${this.timeoutMs / 1000} s (the request's bound)`,
              'timed-out',
              `no answer within ${this.timeoutMs / 1000} s`,
              { code: 'ETIMEDOUT' },
            ),
          ),
        this.timeoutMs,
      );
      const req = request(opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(deadline);
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = { message: text.slice(0, 500) };
          }
          resolve({ status: res.statusCode ?? 0, json, headers: res.headers });
        });
      });
      req.on('error', (e) => {
        clearTimeout(deadline);
        const { reason, why } = e instanceof KubeUnreachableError ? e : connectReason(e as CodedError);
        // The Node error stays the cause: its code (ECONNREFUSED, ECONNRESET, …) is what tells a retry whether it can help.
        reject(
          new KubeUnreachableError(`${this.context}: ${method} ${u.pathname}: ${e.message}`, reason, why, {
            cause: e,
          }),
        );
      });
      if (body !== undefined) req.write(body);
      req.end();
    });
  }

  /**
   * The request's credentials and TLS settings from the kubeconfig (a CA
   * file read, an exec plugin run), within the request's bound: a plugin
   * that hangs is no answer too.
   */
  private async credentials(opts: RequestOptions, method: string, path: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new KubeUnreachableError(
              `${this.context}: ${method} ${path}: the kubeconfig's credentials were not ready within ${this.timeoutMs / 1000} s`,
              'timed-out',
              `credentials not ready within ${this.timeoutMs / 1000} s (exec plugin)`,
            ),
          ),
        this.timeoutMs,
      );
    });
    try {
      await Promise.race([this.kc.applyToHTTPSOptions(opts), bound]);
    } catch (e) {
      if (e instanceof KubeUnreachableError) throw e;
      const { reason, why } = credentialReason(e as CodedError, this.kc);
      throw new KubeUnreachableError(`${this.context}: ${method} ${path}: ${why}`, reason, why);
    } finally {
      clearTimeout(timer);
    }
  }

  private fail(what: string, status: number, json: unknown): never {
    const s = (json ?? {}) as Status;
    throw new KubeApiError(
      `${this.context}: ${what}: ${s.message ?? `HTTP ${status}`}`,
      status,
      s.reason || undefined,
      conflictsOf(s),
      s.details?.causes ?? [],
      s.kind === 'Status',
    );
  }

  /** One group version's resources, read now; `absent` (statuses) answer undefined (404 alone is an empty map). */
  private async discover(
    apiVersion: string,
    absent: number[] = [],
  ): Promise<Map<string, Resource & { verbs: string[] }> | undefined> {
    const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    this.lastDiscovered = undefined;
    const r = await this.call('GET', path);
    if (absent.includes(r.status)) return undefined;
    if (r.status === 404) return new Map();
    if (r.status !== 200) this.fail(`discovery of ${apiVersion}`, r.status, r.json);
    const list = r.json as {
      resources: Array<{ name: string; kind: string; namespaced: boolean; verbs?: string[] }>;
    };
    const m = new Map<string, Resource & { verbs: string[] }>();
    for (const res of list.resources)
      if (!res.name.includes('/'))
        m.set(res.kind, { name: res.name, namespaced: res.namespaced, verbs: res.verbs ?? [] });
    this.resources.set(apiVersion, m);
    return m;
  }

  /**
   * The resource of a kind: from what discovery read (the aggregated
   * documents, read once a run before any other), and read again for its
   * group version on a miss (a CRD may have just been established).
   */
  private async resource(apiVersion: string, kind: string): Promise<Resource> {
    let r = this.resources.get(apiVersion)?.get(kind);
    if (!r && !this.aggregatedDone) {
      this.aggregatedRead ??= this.aggregatedDiscovery()
        .then(
          () => undefined,
          () => undefined, // a failure here is told by the per-version read below
        )
        .finally(() => {
          this.aggregatedDone = true;
        });
      await this.aggregatedRead;
      r = this.resources.get(apiVersion)?.get(kind);
    }
    if (!r) r = (await this.discover(apiVersion))?.get(kind);
    if (!r)
      throw new KindNotServedError(
        `${this.context}: the API server does not serve ${kind} in ${apiVersion} (is its CRD installed and Established?)`,
        404,
        'NotFound',
      );
    return r;
  }

  private async path(ref: {
    apiVersion: string;
    kind: string;
    namespace?: string;
    name?: string;
  }): Promise<string> {
    const res = await this.resource(ref.apiVersion, ref.kind);
    const base = ref.apiVersion.includes('/') ? `/apis/${ref.apiVersion}` : `/api/${ref.apiVersion}`;
    if (res.namespaced && !ref.namespace && ref.name !== undefined)
      throw new KubeApiError(
        `${this.context}: ${ref.kind} ${ref.name} is namespaced but has no namespace`,
        400,
        'BadRequest',
      );
    const ns = res.namespaced && ref.namespace ? `/namespaces/${encodeURIComponent(ref.namespace)}` : '';
    return `${base}${ns}/${res.name}${ref.name !== undefined ? `/${encodeURIComponent(ref.name)}` : ''}`;
  }

  async get(ref: ObjectRef): Promise<KubeObject | undefined> {
    const r = await this.call('GET', await this.path(ref));
    if (r.status === 404) return undefined;
    if (r.status !== 200) this.fail(`get ${describeRef(ref)}`, r.status, r.json);
    return r.json as KubeObject;
  }

  async list(
    apiVersion: string,
    kind: string,
    o: { namespace?: string; labelSelector?: string } = {},
  ): Promise<KubeObject[]> {
    const q = o.labelSelector ? `?labelSelector=${encodeURIComponent(o.labelSelector)}` : '';
    const path = await this.path({ apiVersion, kind, ...(o.namespace ? { namespace: o.namespace } : {}) });
    const r = await this.call('GET', path + q);
    if (r.status !== 200) this.fail(`list ${kind}`, r.status, r.json);
    const items = (r.json as { items: KubeObject[] }).items;
    return items.map((i) => ({ ...i, apiVersion, kind }));
  }

  async apply(obj: KubeObject, o: ApplyOptions = {}): Promise<{ object: KubeObject; action: ApplyAction }> {
    const before = o.live ?? (await this.get(refOf(obj)));
    if (o.prepare) obj = o.prepare(before);
    // Nothing an apply could change: not sent (fields.ts, applied-memo.ts). Never when forced or dry.
    if (
      before &&
      !o.force &&
      !o.dryRun &&
      (applyChangesNothing(obj, before, FIELD_MANAGER) || this.appliedMemo?.unchanged(obj, before))
    )
      return { object: before, action: 'unchanged' };
    const rv = o.onlyOntoLive ? o.live?.metadata.resourceVersion : undefined;
    if (rv) obj = { ...obj, metadata: { ...obj.metadata, resourceVersion: rv } };
    const ref = refOf(obj);
    const q = new URLSearchParams({ fieldManager: FIELD_MANAGER, fieldValidation: 'Strict' });
    if (o.force) q.set('force', 'true');
    if (o.dryRun) q.set('dryRun', 'All');
    const r = await this.call(
      'PATCH',
      `${await this.path(ref)}?${q}`,
      JSON.stringify(obj),
      'application/apply-patch+yaml',
    );
    if (r.status === 409) {
      const c = conflictsOf((r.json ?? {}) as Status);
      if (c.length)
        throw new KubeApiError(
          `${this.context}: apply ${describeRef(ref)}: ${c.map((x) => `${x.field} is owned by "${x.manager}"`).join('; ')} (force takes them over)`,
          409,
          'Conflict',
          c,
          (r.json as Status).details?.causes ?? [],
        );
    }
    if (r.status !== 200 && r.status !== 201) this.fail(`apply ${describeRef(ref)}`, r.status, r.json);
    const object = r.json as KubeObject;
    if (!o.dryRun) this.appliedMemo?.record(obj, object);
    const action: ApplyAction = !before
      ? 'created'
      : wroteSomething(before, object)
        ? 'updated'
        : 'unchanged';
    return { object, action };
  }

  async exec(
    pod: { namespace: string; name: string; container: string },
    command: string[],
    o: { stdin?: string; timeoutMs?: number; maxBytes?: number } = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const u = new URL('/', this.server);
    const opts: RequestOptions & { headers: Record<string, string> } = {
      // A URL's hostname keeps an IPv6 address's brackets (https://[::1]:6443); a socket wants it bare.
      hostname: u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname,
      port: u.port,
      headers: {},
    };
    const path = `/api/v1/namespaces/${pod.namespace}/pods/${pod.name}/exec`;
    await this.credentials(opts, 'POST', path);
    // A connection of its own, upgraded to SPDY and closed with the command (a proxy's agent is kept).
    opts.agent ??= false;
    return spdyExec({
      request: opts,
      pod,
      command,
      ...(o.stdin !== undefined ? { stdin: o.stdin } : {}),
      timeoutMs: o.timeoutMs ?? 30_000,
      maxBytes: o.maxBytes ?? 8 << 20,
      where: `${this.context}: exec in ${pod.namespace}/${pod.name}/${pod.container}`,
    });
  }

  async review(obj: KubeObject): Promise<KubeObject> {
    const path = await this.path({ apiVersion: obj.apiVersion, kind: obj.kind });
    const r = await this.call('POST', path, JSON.stringify(obj));
    if (r.status !== 200 && r.status !== 201) this.fail(`create ${obj.kind}`, r.status, r.json);
    return r.json as KubeObject;
  }

  async resourceName(apiVersion: string, kind: string): Promise<string | undefined> {
    try {
      return (await this.resource(apiVersion, kind)).name;
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 404) return undefined;
      throw e;
    }
  }

  async version(): Promise<string> {
    const r = await this.call('GET', '/version');
    if (r.status !== 200) this.fail('version', r.status, r.json);
    return (r.json as { gitVersion: string }).gitVersion;
  }

  /**
   * Every kind served, from discovery: the aggregated form (GET /api and
   * /apis, Kubernetes ≥ 1.27: every group, version and resource in two
   * answers), revalidated with its ETag so that an unchanged answer is a 304
   * (the last answer is kept in memory and, with a cache folder, on disk);
   * from the per-version documents where the server does not serve the
   * aggregated form. What it reads is what `resource` looks kinds up in.
   */
  async kinds(): Promise<ServedKind[]> {
    const held = this.lastDiscovered;
    const all =
      (held && Date.now() - held.at <= KINDS_REUSE_MS ? held.discovered : undefined) ??
      (await this.aggregatedDiscovery()) ??
      (await this.legacyDiscovery());
    const out: ServedKind[] = [];
    for (const [apiVersion, kinds] of all.resources)
      for (const [kind, r] of kinds)
        if (!all.preferred.has(apiVersion)) continue;
        else if (r.verbs.includes('list') && r.verbs.includes('delete'))
          out.push({ apiVersion, kind, namespaced: r.namespaced, verbs: r.verbs });
    return out.sort((a, b) => `${a.apiVersion}/${a.kind}`.localeCompare(`${b.apiVersion}/${b.kind}`));
  }

  /** Aggregated discovery of the core group (/api) and the others (/apis); undefined where not served. */
  private async aggregatedDiscovery(): Promise<Discovered | undefined> {
    const core = await this.aggregated('/api');
    if (!core) return undefined;
    const groups = await this.aggregated('/apis');
    if (!groups) return undefined;
    const out: Discovered = { preferred: new Set(), resources: new Map() };
    for (const g of [...core, ...groups]) {
      const group = g.metadata?.name ?? '';
      // The versions come in the group's order of preference; a Stale one is an aggregated API that is down.
      const versions = (g.versions ?? []).filter((v) => v.freshness !== 'Stale');
      for (const [i, v] of versions.entries()) {
        const apiVersion = group ? `${group}/${v.version}` : v.version;
        if (i === 0) out.preferred.add(apiVersion);
        const m = new Map<string, Resource & { verbs: string[] }>();
        for (const r of v.resources ?? [])
          if (r.responseKind?.kind)
            m.set(r.responseKind.kind, {
              name: r.resource,
              namespaced: r.scope === 'Namespaced',
              verbs: r.verbs ?? [],
            });
        out.resources.set(apiVersion, m);
        this.resources.set(apiVersion, m);
      }
    }
    this.lastDiscovered = { at: Date.now(), discovered: out };
    return out;
  }

  /** One aggregated discovery document's groups, revalidated by its ETag; undefined when the server answers another form. */
  private async aggregated(path: '/api' | '/apis'): Promise<AggregatedGroup[] | undefined> {
    const held = this.discoveryCache?.get(path);
    const r = await this.call(
      'GET',
      path,
      undefined,
      undefined,
      held ? { Accept: AGGREGATED_ACCEPT, 'If-None-Match': held.etag } : { Accept: AGGREGATED_ACCEPT },
    );
    if (r.status === 304 && held) return held.items;
    if (r.status !== 200) this.fail('discovery', r.status, r.json);
    if (!String(r.headers['content-type'] ?? '').includes('as=APIGroupDiscoveryList')) return undefined;
    const items = (r.json as { items?: AggregatedGroup[] }).items ?? [];
    const etag = r.headers.etag;
    if (etag) this.discoveryCache?.set(path, { etag, items });
    return items;
  }

  /** Discovery one document per group version (a server without the aggregated form). */
  private async legacyDiscovery(): Promise<Discovered> {
    const preferred = new Set<string>();
    const core = await this.call('GET', '/api');
    if (core.status !== 200) this.fail('discovery', core.status, core.json);
    for (const v of (core.json as { versions: string[] }).versions) preferred.add(v);
    const groups = await this.call('GET', '/apis');
    if (groups.status !== 200) this.fail('discovery', groups.status, groups.json);
    for (const g of (groups.json as { groups: Array<{ preferredVersion: { groupVersion: string } }> }).groups)
      preferred.add(g.preferredVersion.groupVersion);
    const resources = new Map<string, Map<string, Resource & { verbs: string[] }>>();
    await Promise.all(
      [...preferred].map(async (apiVersion) => {
        const m = await this.discover(apiVersion, [404, 503]); // 404, 503: an aggregated API that is down
        if (m) resources.set(apiVersion, m);
      }),
    );
    return { preferred, resources };
  }

  async delete(ref: ObjectRef): Promise<'deleted' | 'absent'> {
    const r = await this.call(
      'DELETE',
      await this.path(ref),
      JSON.stringify({ propagationPolicy: 'Background' }),
    );
    if (r.status === 404) return 'absent';
    if (r.status !== 200 && r.status !== 202) this.fail(`delete ${describeRef(ref)}`, r.status, r.json);
    return 'deleted';
  }

  async jsonPatch(
    ref: ObjectRef,
    ops: JsonPatchOp[],
    o: { subresource?: 'status' } = {},
  ): Promise<'patched' | 'absent'> {
    const r = await this.call(
      'PATCH',
      `${await this.path(ref)}${o.subresource ? `/${o.subresource}` : ''}`,
      JSON.stringify(ops),
      'application/json-patch+json',
    );
    if (r.status === 404) return 'absent';
    if (r.status !== 200) this.fail(`patch ${describeRef(ref)}`, r.status, r.json);
    return 'patched';
  }
}

/**
 * A client from a kubeconfig held in memory (a remote secret's), for its
 * current context; refuses one that skips TLS verification.
 */
export function clientFromKubeconfig(text: string, o: { timeoutMs?: number } = {}): ClusterClient {
  const kc = new LiteKubeConfig();
  kc.loadFromObject(parse(text, { merge: true }) as Record<string, unknown>);
  return clientOfKubeConfig(kc, o);
}

/** A client for the current context of a loaded kubeconfig; refuses one that skips TLS verification. */
export function clientOfKubeConfig(kc: KubeconfigView, o: { timeoutMs?: number } = {}): ClusterClient {
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new KubeconfigError('the kubeconfig names no cluster server');
  if (cluster.skipTLSVerify)
    throw new KubeconfigError('the kubeconfig skips TLS verification (insecure-skip-tls-verify)');
  return new HttpsClusterClient(
    kc.getCurrentContext(),
    cluster.server,
    kc,
    o.timeoutMs ?? 30_000,
    discoveryCache(undefined, cluster.server),
    appliedMemo(undefined, cluster.server),
  );
}

/** The kubeconfig path: --kubeconfig, else $KUBECONFIG (its first file), else ~/.kube/config. */
export function kubeconfigPath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  if (flag) return flag;
  const fromEnv = env.KUBECONFIG?.split(':').find(Boolean);
  if (fromEnv) return fromEnv;
  return `${env.HOME ?? ''}/.kube/config`;
}

/**
 * A client for each named context of the kubeconfig. Every context must be
 * there: a missing one is an error listing the contexts the file has.
 */
/**
 * A kubeconfig from its text. A kubeconfig holds tokens, passwords and
 * private keys, so no message shows any of its text: a YAML error is its
 * place and yaml's error code, a wrong shape is the place and what was
 * expected. Only then is it read as client-node reads it (kubeconfig.ts).
 */
export function kubeconfigFromText(text: string, path: string): LiteKubeConfig {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: false });
  const at = (offset: number | undefined) => {
    const p = lc.linePos(offset ?? 0);
    return `kubeconfig ${path}:${p.line}:${p.col}`;
  };
  const fix = 'fix the file, or give another with --kubeconfig';
  const err = doc.errors[0];
  if (err) throw new KubeconfigError(`${at(err.pos[0])}: not valid YAML (${err.code}); ${fix}`);
  if (!isMap(doc.contents))
    throw new KubeconfigError(
      `${at(0)}: a kubeconfig is a YAML mapping (apiVersion: v1, kind: Config, clusters, contexts, users); ${fix}`,
    );
  for (const key of ['clusters', 'contexts', 'users']) {
    const list = doc.contents.get(key, true) as Node | undefined;
    if (list === undefined || (isScalar(list) && list.value === null)) continue;
    if (!isSeq(list)) throw new KubeconfigError(`${at(list.range?.[0])}: "${key}" must be a list; ${fix}`);
    for (const item of list.items)
      if (!isMap(item))
        throw new KubeconfigError(
          `${at((item as Node | null)?.range?.[0])}: each of "${key}" must be a mapping; ${fix}`,
        );
  }
  const kc = new LiteKubeConfig();
  // As client-node's own reading does (js-yaml): merge keys followed, a key twice refused.
  const strict = parseDocument(text, { merge: true });
  const twice = strict.errors[0];
  if (twice) throw new KubeconfigError(`${at(twice.pos[0])}: not a kubeconfig client-node can read; ${fix}`);
  try {
    kc.loadFromObject(strict.toJS() as Record<string, unknown>);
  } catch (e) {
    // client-node's own checks name fields ("clusters[0].cluster.server is missing").
    throw new KubeconfigError(`kubeconfig ${path}: ${(e as Error).message}; ${fix}`);
  }
  kc.makePathsAbsolute(dirname(path));
  return kc;
}

/**
 * One client per context; `text` is the kubeconfig's when the caller read it
 * already (bounded); `cacheDir`: where the API servers' discovery documents
 * (discovery/, discovery-cache.ts) and what meshfed's applies made of each
 * object (applied/, applied-memo.ts) are kept between runs; in memory only
 * when absent.
 */
export function clientsFor(
  kubeconfig: string,
  contexts: string[],
  o: { timeoutMs?: number; text?: string; cacheDir?: string } = {},
): Map<string, ClusterClient> {
  let text = o.text;
  if (text === undefined)
    try {
      text = readFileSync(kubeconfig, 'utf8');
    } catch (e) {
      throw new KubeconfigError(`cannot read kubeconfig ${kubeconfig}: ${(e as Error).message}`);
    }
  const base = kubeconfigFromText(text, kubeconfig);
  const known = base.getContexts().map((c) => c.name);
  const missing = contexts.filter((c) => !known.includes(c));
  if (missing.length)
    throw new KubeconfigError(
      `kubeconfig ${kubeconfig} has no context ${missing.map((m) => `"${m}"`).join(', ')} (it has: ${known.join(', ') || 'none'}); name the clusters' contexts in the fleet file (spec.clusters[].context)`,
    );
  const out = new Map<string, ClusterClient>();
  for (const name of contexts) {
    const kc = kubeconfigFromText(text, kubeconfig);
    kc.setCurrentContext(name);
    const server = kc.getCurrentCluster()?.server;
    if (!server)
      throw new KubeconfigError(`kubeconfig ${kubeconfig}: context "${name}" names no cluster server`);
    if (kc.getCurrentCluster()?.skipTLSVerify)
      throw new KubeconfigError(
        `kubeconfig ${kubeconfig}: context "${name}" skips TLS verification (insecure-skip-tls-verify); meshfed does not talk to an API server it cannot authenticate: give the cluster's CA`,
      );
    out.set(
      name,
      new HttpsClusterClient(
        name,
        server,
        kc,
        o.timeoutMs ?? 30_000,
        discoveryCache(o.cacheDir && join(o.cacheDir, 'discovery'), server),
        appliedMemo(o.cacheDir && join(o.cacheDir, 'applied'), server),
      ),
    );
  }
  return out;
}
