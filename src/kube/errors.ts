/**
 * What went wrong talking to an API server (or, through it, to a SPIRE
 * server), and whether trying again can help: one classification by the
 * error's type, its HTTP status, the Kubernetes Status reason and details,
 * and the Node/undici error `code` found on its cause chain. No decision is
 * made by matching a message.
 *
 * Retried: what heals by itself — no connection, a reset, a timeout, 429,
 * 502/503/504, a 500 the API server marks InternalError/ServerTimeout/Timeout
 * (a webhook not serving yet, etcd busy), and an optimistic-concurrency
 * conflict (the object changed between our read and write: every retried
 * closure reads again). Never retried: a refusal (BundleOwnerError), 400,
 * 401, 403, 404, field-manager conflicts, 422, TLS failures, and a 500 with
 * no Status reason. The last is what the kube-apiserver answers when it cannot
 * turn an error into a Status: a server-side apply of an unknown field or a
 * value of the wrong type ("failed to create typed patch object … field not
 * declared in schema", with or without fieldValidation=Strict; tried on the
 * lab's 1.35 API server). The object is invalid; waiting will not fix it.
 */
import { BundleOwnerError } from '../federation/engine.js';
import { SpireCliError } from '../federation/spire-cli.js';

/** A Kubernetes Status cause (details.causes[]): FieldManagerConflict, FieldValueInvalid, … */
export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/** An error the API server answered with: its HTTP status, reason and message. */
export class KubeApiError extends Error {
  override name = 'KubeApiError';
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string | undefined,
    /** For a field manager conflict: who owns which field. */
    readonly conflicts: Array<{ manager: string; field: string }> = [],
    /** The Status's details.causes, as the server sent them. */
    readonly causes: StatusCause[] = [],
    /** Whether the answer was a Kubernetes Status (not, say, a proxy's error page). */
    readonly isStatus = true,
  ) {
    super(message);
  }
}

/**
 * A request that got no answer: no connection, a reset, no answer in time.
 * The Node error is its `cause`; its `code` is that error's (or ETIMEDOUT for
 * meshfed's own request deadline).
 */
export class KubeRequestError extends Error {
  override name = 'KubeRequestError';
  readonly code: string | undefined;
  constructor(message: string, options: { cause?: unknown; code?: string } = {}) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.code = options.code ?? errorCode(options.cause);
  }
}

export type ErrorKind =
  /** No connection, reset, timed out: the server restarting, the network. */
  | 'connection'
  /** 429: the server asks us to slow down. */
  | 'throttled'
  /** The server (or what it calls: a webhook, etcd, an aggregated API) is not answering yet. */
  | 'unavailable'
  /** 409 on a stale read (the object changed under us); the retried closure reads it again. */
  | 'stale'
  /** 400, 422, a 500 with no reason (an unknown field or a wrong type in server-side apply). */
  | 'invalid'
  | 'unauthorized'
  | 'forbidden'
  | 'not-found'
  /** 409 that is not a stale read: another field manager owns a field, the object already exists. */
  | 'conflict'
  /** The server's certificate or ours is not accepted. */
  | 'tls'
  /** A security check said no (a bundle that is not the trust domain's). */
  | 'refused'
  /** An HTTP status or a SPIRE gRPC code nothing above covers. */
  | 'failed'
  /** An error of no type meshfed knows (a bug, a parse error). */
  | 'unknown';

export interface ErrorClass {
  kind: ErrorKind;
  /** Whether trying the same thing again can succeed. */
  retry: boolean;
  /** Why, in a few words, for messages: "HTTP 500 with no reason: the API server cannot process the object". */
  why: string;
}

/** Node (net, dns, tls) and undici codes of a request that may succeed when tried again. */
const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_SOCKET',
]);

/** TLS verification failures (OpenSSL's codes as Node reports them): never healed by a retry. */
const TLS_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

/** Status reasons of a server that will answer later. */
const RETRYABLE_REASONS = new Set([
  'InternalError',
  'ServerTimeout',
  'Timeout',
  'ServiceUnavailable',
  'TooManyRequests',
]);

/** gRPC codes (as the spire-server CLI prints them) of a server that is starting or busy. */
const RETRYABLE_GRPC = new Set(['Unavailable', 'DeadlineExceeded', 'ResourceExhausted', 'Aborted']);

/**
 * The errors along `e`'s chain: `cause` (Error's, undici's), `error` (a ws
 * ErrorEvent, which client-node's exec rejects with) and `errors` (an
 * AggregateError of a connect tried on several addresses). Bounded, no cycles.
 */
export function causeChain(e: unknown): unknown[] {
  const out: unknown[] = [];
  const queue = [e];
  while (queue.length && out.length < 16) {
    const x = queue.shift();
    if (x === undefined || x === null || out.includes(x)) continue;
    out.push(x);
    if (typeof x !== 'object') continue;
    const o = x as { cause?: unknown; error?: unknown; errors?: unknown };
    queue.push(o.cause, o.error);
    if (Array.isArray(o.errors)) queue.push(...o.errors);
  }
  return out;
}

/**
 * The first Node/undici/OpenSSL code on the chain (ECONNREFUSED,
 * UND_ERR_SOCKET, CERT_HAS_EXPIRED, …): an upper-case constant, so that a
 * wrapper's own lower-case code (BundleEndpointError's 'connect') does not
 * hide the Node error's below it.
 */
export function errorCode(e: unknown): string | undefined {
  for (const x of causeChain(e)) {
    const code = (x as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code)) return code;
  }
  return undefined;
}

/** A Kubernetes Status as client-node's ApiException carries it: numeric `code` (HTTP status), `body`. */
interface ApiExceptionShape {
  code: number;
  body?: unknown;
}

interface StatusFacts {
  status: number;
  reason: string | undefined;
  causes: StatusCause[];
  conflicts: boolean;
  isStatus: boolean;
}

function statusOf(x: unknown): StatusFacts | undefined {
  if (x instanceof KubeApiError)
    return {
      status: x.status,
      reason: x.reason,
      causes: x.causes,
      conflicts: x.conflicts.length > 0,
      isStatus: x.isStatus,
    };
  const a = x as ApiExceptionShape | null;
  if (a instanceof Error && typeof a.code === 'number') {
    const body = (typeof a.body === 'string' ? safeJson(a.body) : a.body) as
      | { kind?: string; reason?: string; details?: { causes?: StatusCause[] } }
      | undefined;
    const causes = body?.details?.causes ?? [];
    return {
      status: a.code,
      reason: body?.reason || undefined,
      causes,
      conflicts: causes.some((c) => c.reason === 'FieldManagerConflict'),
      isStatus: body?.kind === 'Status',
    };
  }
  return undefined;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const cls = (kind: ErrorKind, retry: boolean, why: string): ErrorClass => ({ kind, retry, why });

function classifyStatus(s: StatusFacts): ErrorClass {
  const { status, reason } = s;
  const http = `HTTP ${status}${reason ? ` ${reason}` : ''}`;
  if (status === 429 || reason === 'TooManyRequests')
    return cls('throttled', true, `${http}: the API server is busy`);
  if (status === 401) return cls('unauthorized', false, `${http}: the credentials are not accepted`);
  if (status === 403) return cls('forbidden', false, `${http}: not allowed`);
  if (status === 404 || status === 410) return cls('not-found', false, `${http}: not there`);
  if (status === 409) {
    if (s.conflicts || reason === 'AlreadyExists')
      return cls('conflict', false, `${http}: the object is not meshfed's to change as it is`);
    return cls('stale', true, `${http}: the object changed while it was being written`);
  }
  if (status === 400 || status === 422 || status === 413 || status === 415 || reason === 'Invalid')
    return cls('invalid', false, `${http}: the API server rejects the object`);
  if (status >= 500) {
    if (status === 502 || status === 503 || status === 504)
      return cls('unavailable', true, `${http}: the API server or what it calls is not answering yet`);
    if (status === 500 && reason && RETRYABLE_REASONS.has(reason))
      return cls('unavailable', true, `${http}: the API server or what it calls failed for now`);
    // The kube-apiserver's own 500 with no reason (StatusReasonUnknown): an error it could not
    // turn into a Status. A 500 that is not a Status at all came from something in between.
    if (status === 500 && !reason && !s.isStatus)
      return cls(
        'unavailable',
        true,
        'HTTP 500 that is not a Kubernetes Status: something in between failed',
      );
    if (status === 500 && !reason)
      return cls(
        'invalid',
        false,
        'HTTP 500 with no reason: the API server cannot process the object (an unknown field or a value of the wrong type)',
      );
  }
  return cls('failed', false, http);
}

/** What kind of failure `e` is, and whether trying again can heal it. */
export function classify(e: unknown): ErrorClass {
  // A refusal anywhere on the chain wins: no wrapper may turn it into something to retry.
  for (const x of causeChain(e))
    if (x instanceof BundleOwnerError) return cls('refused', false, 'a security check refused it');
  let spire = false;
  for (const x of causeChain(e)) {
    const s = statusOf(x);
    if (s) return classifyStatus(s);
    if (x instanceof SpireCliError) {
      spire = true;
      // No gRPC code: the command may not have run at all; what it could not reach is further down the chain.
      if (x.grpcCode !== undefined) {
        if (RETRYABLE_GRPC.has(x.grpcCode)) return cls('unavailable', true, `SPIRE answered ${x.grpcCode}`);
        // Internal and Unknown say nothing about whether it lasts (a datastore still opening, or a bug).
        if (x.grpcCode === 'Internal' || x.grpcCode === 'Unknown')
          return cls('unknown', false, `SPIRE answered ${x.grpcCode}`);
        return cls('failed', false, `SPIRE answered ${x.grpcCode}`);
      }
    }
  }
  const code = errorCode(e);
  if (code && RETRYABLE_CODES.has(code)) return cls('connection', true, `${code}: no answer`);
  if (code && TLS_CODES.has(code)) return cls('tls', false, `${code}: TLS verification failed`);
  if (code === 'ENOTFOUND') return cls('connection', false, 'ENOTFOUND: the name does not resolve');
  if (spire) return cls('unknown', false, 'spire-server failed without a gRPC code');
  return cls('unknown', false, code ?? (e instanceof Error ? e.name : typeof e));
}

/** Whether trying the same call again can succeed. */
export const retryable = (e: unknown): boolean => classify(e).retry;
