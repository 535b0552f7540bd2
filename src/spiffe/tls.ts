/**
 * Mutual TLS between SPIFFE workloads with node:tls: each side presents its
 * X.509-SVID and authenticates the peer in two steps, both enforced:
 *   1. OpenSSL verifies the peer's chain against every trusted bundle (the
 *      workload's own and the federated ones): standard verification stays on;
 *   2. the SPIFFE check: the chain must end in the bundle of the peer's *own*
 *      trust domain (validateX509Svid), and the peer's SPIFFE ID must be
 *      authorised by the caller (an exact ID, or any member of a trust domain).
 */
import type {
  ConnectionOptions,
  PeerCertificate,
  SecureContextOptions,
  TLSSocket,
  TlsOptions,
} from 'node:tls';
import type { BundleSet } from './bundle.js';
import { parseSpiffeId, parseTrustDomain } from './id.js';
import { validateX509Svid } from './svid.js';
import type { X509Context } from './workload.js';
import { type CertView, certFromDer, toPem } from './x509.js';

export type Authorizer = { description: string; allows(spiffeId: string): boolean };

export function authorizeId(id: string): Authorizer {
  const want = parseSpiffeId(id).uri;
  return { description: want, allows: (got) => got === want };
}

export function authorizeMemberOf(trustDomain: string): Authorizer {
  const td = parseTrustDomain(trustDomain);
  return {
    description: `any ID in ${td}`,
    allows: (got) => {
      try {
        return parseSpiffeId(got).trustDomain === td;
      } catch {
        return false;
      }
    },
  };
}

export class SpiffeTlsError extends Error {
  override name = 'SpiffeTlsError';
}

/** The peer's chain as presented (leaf first), from a detailed PeerCertificate. */
export function presentedChain(cert: PeerCertificate): CertView[] {
  const chain: CertView[] = [];
  const seen = new Set<string>();
  let c: PeerCertificate | undefined = cert;
  while (c?.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    chain.push(certFromDer(c.raw));
    const next: PeerCertificate | undefined = (c as PeerCertificate & { issuerCertificate?: PeerCertificate })
      .issuerCertificate;
    c = next && next !== c ? next : undefined;
  }
  return chain;
}

/** The SPIFFE check of a presented chain; returns the peer's ID or throws. */
export function authenticatePeer(chain: CertView[], bundles: BundleSet, authorizer: Authorizer): string {
  const verdict = validateX509Svid(chain, bundles);
  if (!verdict.valid || !verdict.spiffeId)
    throw new SpiffeTlsError(
      `peer SVID rejected: ${verdict.problems.map((p) => `${p.code}: ${p.message}`).join('; ')}`,
    );
  if (!authorizer.allows(verdict.spiffeId))
    throw new SpiffeTlsError(
      `peer ${verdict.spiffeId} is not authorised (expected ${authorizer.description})`,
    );
  return verdict.spiffeId;
}

function baseOptions(ctx: X509Context, spiffeId?: string): SecureContextOptions {
  const svid = spiffeId ? ctx.svids.find((s) => s.spiffeId === spiffeId) : ctx.svids[0];
  if (!svid) throw new SpiffeTlsError(`the X.509 context holds no SVID${spiffeId ? ` for ${spiffeId}` : ''}`);
  const ca: string[] = [];
  for (const td of ctx.bundles.trustDomains())
    for (const a of ctx.bundles.get(td)?.x509Authorities ?? []) ca.push(toPem(a));
  return {
    cert: svid.chain.map(toPem).join(''),
    // node:tls takes PEM; the text lives only inside the secure context.
    key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
    ca,
    minVersion: 'TLSv1.2',
  };
}

/** Options for tls.connect: presents the SVID, authenticates the server by SPIFFE ID. */
export function spiffeClientOptions(
  ctx: X509Context,
  authorizer: Authorizer,
  /** Which of the workload's SVIDs to present (default: the first). */
  spiffeId?: string,
): ConnectionOptions & {
  checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;
  rejectUnauthorized: true;
} {
  return {
    ...baseOptions(ctx, spiffeId),
    rejectUnauthorized: true,
    checkServerIdentity: (_host, cert) => {
      try {
        authenticatePeer(presentedChain(cert), ctx.bundles, authorizer);
        return undefined;
      } catch (e) {
        return e as Error;
      }
    },
  };
}

/**
 * Options for tls.createServer: requires a client SVID. Call `authorizeClient`
 * on every 'secureConnection' socket; it ends sockets whose peer is not authorised.
 */
export function spiffeServerOptions(
  ctx: X509Context,
  /** Which of the workload's SVIDs to present (default: the first). */
  spiffeId?: string,
): TlsOptions & { requestCert: true; rejectUnauthorized: true } {
  return { ...baseOptions(ctx, spiffeId), requestCert: true, rejectUnauthorized: true };
}

/**
 * The SPIFFE check of a connected client: its ID when authorised; otherwise
 * the socket is closed (without an 'error' event, which nobody may listen to)
 * and the reason returned.
 */
export function authorizeClient(
  socket: TLSSocket,
  ctx: X509Context,
  authorizer: Authorizer,
): { spiffeId: string } | { refused: string } {
  try {
    return {
      spiffeId: authenticatePeer(presentedChain(socket.getPeerCertificate(true)), ctx.bundles, authorizer),
    };
  } catch (e) {
    socket.destroy();
    return { refused: (e as Error).message };
  }
}
