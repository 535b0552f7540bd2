/**
 * SPIFFE bundle endpoints (SPIFFE Federation spec): a client that fetches a
 * peer trust domain's bundle over `https_spiffe` (the server must present an
 * X.509-SVID with the expected endpoint SPIFFE ID, verified against a bundle
 * of that trust domain) or `https_web` (ordinary Web PKI), bounded in time and
 * size; and a small server, for tests and the lab. TLS verification is never
 * turned off: a failure is a typed error saying which check failed.
 */
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import { type Bundle, parseJwksBundle } from './bundle.js';
import { parseSpiffeId } from './id.js';
import { toPem } from './x509.js';

export type EndpointErrorCode =
  | 'connect'
  | 'tls'
  | 'wrong-id'
  | 'timeout'
  | 'too-large'
  | 'http-status'
  | 'bad-bundle';

export class BundleEndpointError extends Error {
  override name = 'BundleEndpointError';
  constructor(
    readonly code: EndpointErrorCode,
    message: string,
    readonly url: string,
    options?: { cause?: unknown },
  ) {
    super(`${url}: ${message}`, options);
  }
}

/**
 * Node's codes of a connection that did not happen or broke: the endpoint was
 * not reached. Any other failure of the request (a certificate, the TLS
 * handshake, a non-HTTP answer) is 'tls': the endpoint answered and was not
 * accepted, which callers must not take for "unreachable".
 */
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

export type EndpointProfile =
  | { type: 'https_spiffe'; endpointSpiffeId: string; bundle: Bundle }
  | { type: 'https_web'; ca?: string };

export interface FetchOptions {
  timeoutMs?: number;
  maxBytes?: number;
}

/** Fetches and parses the bundle of `trustDomain` from its bundle endpoint. */
export function fetchBundle(
  url: string,
  trustDomain: string,
  profile: EndpointProfile,
  opts: FetchOptions = {},
): Promise<Bundle> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const maxBytes = opts.maxBytes ?? 1 << 20;
  const u = new URL(url);
  if (u.protocol !== 'https:')
    return Promise.reject(new BundleEndpointError('connect', 'a bundle endpoint URL must be https', url));
  let expected: string | undefined;
  let tlsOpts: Record<string, unknown> = {};
  if (profile.type === 'https_spiffe') {
    expected = parseSpiffeId(profile.endpointSpiffeId).uri;
    tlsOpts = {
      ca: profile.bundle.x509Authorities.map(toPem),
      // The endpoint is identified by its SPIFFE ID, not by a DNS name.
      checkServerIdentity: (_host: string, cert: PeerCertificate) => {
        const uris = (cert.subjectaltname ?? '')
          .split(', ')
          .filter((s) => s.startsWith('URI:'))
          .map((s) => s.slice(4));
        if (uris.length !== 1 || uris[0] !== expected)
          return new BundleEndpointError(
            'wrong-id',
            `server presented ${uris.join(', ') || 'no SPIFFE ID'}, expected ${expected}`,
            url,
          );
        return undefined;
      },
    };
  } else if (profile.ca) tlsOpts = { ca: profile.ca };

  return new Promise<Bundle>((resolve, reject) => {
    let settled = false;
    const fail = (e: BundleEndpointError) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(e);
    };
    const req = request(
      url,
      { method: 'GET', rejectUnauthorized: true, timeout: timeoutMs, agent: false, ...tlsOpts },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          fail(new BundleEndpointError('http-status', `HTTP ${res.statusCode}`, url));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes)
            fail(new BundleEndpointError('too-large', `response larger than ${maxBytes} bytes`, url));
          else chunks.push(c);
        });
        res.on('end', () => {
          if (settled) return;
          try {
            const bundle = parseJwksBundle(Buffer.concat(chunks).toString('utf8'), trustDomain);
            settled = true;
            resolve(bundle);
          } catch (e) {
            fail(new BundleEndpointError('bad-bundle', (e as Error).message, url));
          }
        });
        res.on('error', (e) => fail(new BundleEndpointError('connect', e.message, url, { cause: e })));
      },
    );
    const overall = setTimeout(
      () => fail(new BundleEndpointError('timeout', `no complete answer within ${timeoutMs} ms`, url)),
      timeoutMs,
    );
    req.on('close', () => clearTimeout(overall));
    req.on('timeout', () =>
      fail(new BundleEndpointError('timeout', `no answer within ${timeoutMs} ms`, url)),
    );
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e instanceof BundleEndpointError) return fail(e);
      const connect = e.code !== undefined && CONNECT_CODES.has(e.code);
      fail(
        new BundleEndpointError(connect ? 'connect' : 'tls', `${e.code ?? ''} ${e.message}`.trim(), url, {
          cause: e,
        }),
      );
    });
    req.end();
  });
}

export interface BundleEndpointServer {
  url: string;
  server: Server;
  /** Replaces the bundle served (e.g. after a rotation). */
  setBody(body: string): void;
  close(): Promise<void>;
}

/** Serves a bundle over TLS with the given SVID chain (PEM) and key (PEM) on 127.0.0.1. */
export async function serveBundle(opts: {
  certChainPem: string;
  keyPem: string;
  body: string;
  delayMs?: number;
  port?: number;
}): Promise<BundleEndpointServer> {
  let body = opts.body;
  const server = createServer({ cert: opts.certChainPem, key: opts.keyPem }, (_req, res) => {
    const send = () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    };
    if (opts.delayMs) setTimeout(send, opts.delayMs).unref();
    else send();
  });
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    server,
    setBody: (b) => {
      body = b;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
