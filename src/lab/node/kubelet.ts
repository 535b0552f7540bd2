/**
 * The kubelet API of one lab node: what SPIRE's `k8s` workload attestor
 * reads. The attestor finds the calling workload's pod UID and container ID
 * in /proc/<pid>/cgroup, then GETs `https://<node name>:10250/pods` with its
 * service account token and looks for a pod whose
 * status.containerStatuses[].containerID (`containerd://<64 hex>`) has that
 * ID as its URL host. It verifies the server's certificate against the
 * cluster CA (the service account's ca.crt) for the host name it dialled,
 * the node name, so the certificate here is the one a real kubelet gets from
 * the kubernetes.io/kubelet-serving signer: issued by the cluster CA, DNS
 * SAN the node name (plus the node's IPs).
 *
 * Authentication and authorisation are the real kubelet's webhook modes
 * (`apiServerAuthorizer`): a TokenReview of the bearer token, then a
 * SubjectAccessReview of `get nodes/proxy` on this node for the reviewed
 * user, answering 401 / 403 / 500 with the kubelet's words. Kubelets from
 * 1.33 (KubeletFineGrainedAuthz) also accept `get nodes/pods` for /pods
 * before falling back to nodes/proxy; nodes/proxy is what every release
 * accepts, and what meshfed's spire-agent ClusterRole grants.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import { isIP } from 'node:net';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import * as px from '@peculiar/x509';
import { clientOfKubeConfig, type KubeObject } from '../../kube/client.js';
import { type CertAndKey, caSigningKey, newEcP256Keys, pkcs8Pem, randomSerial } from '../pki.js';

/** The kube-controller-manager's default --cluster-signing-duration: the longest a kubelet serving certificate lives. */
const YEAR_MS = 365 * 86_400_000;

/**
 * A serving certificate for the kubelet of `nodeName`, signed by the cluster
 * CA, shaped like the kubelet-serving signer's: subject
 * O=system:nodes, CN=system:node:<node>; SANs DNS:<node> and `ips`; EC P-256;
 * key usage digital signature; extended key usage server auth.
 */
export async function issueKubeletCert(o: {
  caCertPem: string;
  caKeyPem: string;
  nodeName: string;
  ips: string[];
  /** At most (and by default) a year. */
  validityMs?: number;
}): Promise<CertAndKey> {
  const validityMs = o.validityMs ?? YEAR_MS;
  if (!(validityMs > 0 && validityMs <= YEAR_MS))
    throw new Error(`a kubelet serving certificate lives a year at most, not ${validityMs} ms`);
  const bad = o.ips.filter((ip) => isIP(ip) === 0);
  if (bad.length) throw new Error(`not IP addresses: ${bad.join(', ')}`);
  const ca = new px.X509Certificate(o.caCertPem);
  const signer = await caSigningKey(o.caCertPem, o.caKeyPem);
  const keys = await newEcP256Keys();
  const now = Date.now();
  // Never past the CA's own end, as the kube-controller-manager's signer caps it.
  const notAfter = new Date(Math.min(now + validityMs, ca.notAfter.getTime()));
  const caKeyId = ca.getExtension(px.SubjectKeyIdentifierExtension)?.keyId;
  const cert = await px.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `O=system:nodes, CN=system:node:${o.nodeName}`,
    // The CA's subject as encoded: Go finds a certificate's parent by the raw bytes of its issuer name.
    issuer: ca.subjectName,
    // Backdated for clocks a little behind this one's, as the kube-controller-manager's signer does.
    notBefore: new Date(now - 5 * 60_000),
    notAfter,
    signingAlgorithm: signer.algorithm,
    publicKey: keys.publicKey,
    signingKey: signer.key,
    extensions: [
      new px.KeyUsagesExtension(px.KeyUsageFlags.digitalSignature, true),
      new px.ExtendedKeyUsageExtension([px.ExtendedKeyUsage.serverAuth]),
      new px.BasicConstraintsExtension(false, undefined, true),
      new px.SubjectAlternativeNameExtension([
        { type: 'dns', value: o.nodeName },
        ...o.ips.map((ip) => ({ type: 'ip' as const, value: ip })),
      ]),
      await px.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ...(caKeyId ? [new px.AuthorityKeyIdentifierExtension(caKeyId)] : []),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await pkcs8Pem(keys.privateKey), notAfter };
}

/**
 * What the kubelet answers a bearer token. A refusal's `reason` is the
 * response body (the kubelet's words, naming the user, never the token);
 * `detail` is for the log only (why a review failed).
 */
export type KubeletDecision =
  | { allowed: true; user: string }
  | { allowed: false; status: 401 | 403 | 500; reason: string; user?: string; detail?: string };

/** May the bearer of `token` get nodes/proxy on `nodeName`? */
export type KubeletAuthorizer = (token: string, nodeName: string) => Promise<KubeletDecision>;

/** The kubelet's authorizer cache keeps allowed decisions 5 min by default; the lab's keeps them 30 s at most. */
const MAX_CACHE_MS = 30_000;

interface ReviewedUser {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/**
 * The real kubelet's `--authentication-token-webhook` and
 * `--authorization-mode=Webhook`, against the API server of `kubeconfig`'s
 * current context (whose user must be allowed to create TokenReviews and
 * SubjectAccessReviews). The TokenReview names no audiences, so the API
 * server checks the token against its own (as for a service account token
 * made without an audience). Allowed decisions are cached up to
 * `cacheTtlMs` (at most 30 s) under a hash of the token: a revoked grant
 * stops working within that time, and the token itself is kept nowhere.
 * Refusals are not cached, so a grant takes effect at the next request.
 */
export function apiServerAuthorizer(
  kubeconfig: KubeConfig,
  o: { cacheTtlMs?: number; timeoutMs?: number } = {},
): KubeletAuthorizer {
  const ttl = Math.min(o.cacheTtlMs ?? MAX_CACHE_MS, MAX_CACHE_MS);
  const client = clientOfKubeConfig(kubeconfig, { timeoutMs: o.timeoutMs ?? 10_000 });
  const allowed = new Map<string, { user: string; until: number }>();
  const unauthorized = (detail?: string): KubeletDecision => ({
    allowed: false,
    status: 401,
    reason: 'Unauthorized',
    ...(detail ? { detail } : {}),
  });
  return async (token, nodeName) => {
    const key = `${createHash('sha256').update(token).digest('hex')}/${nodeName}`;
    const hit = allowed.get(key);
    if (hit && hit.until > Date.now()) return { allowed: true, user: hit.user };

    let reviewed: ReviewedUser;
    try {
      const tr = await client.review({
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        metadata: { name: '' },
        spec: { token },
      } as KubeObject);
      const status = (tr.status ?? {}) as { authenticated?: boolean; user?: ReviewedUser; error?: string };
      if (!status.authenticated || !status.user?.username) return unauthorized(status.error);
      reviewed = status.user;
    } catch (e) {
      return unauthorized(`TokenReview failed: ${(e as Error).message}`);
    }

    const user = reviewed.username ?? '';
    const attrs = `user=${user}, verb=get, resource=nodes`;
    let sar: KubeObject;
    try {
      sar = await client.review({
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        metadata: { name: '' },
        spec: {
          user,
          ...(reviewed.uid ? { uid: reviewed.uid } : {}),
          groups: reviewed.groups ?? [],
          ...(reviewed.extra ? { extra: reviewed.extra } : {}),
          resourceAttributes: {
            verb: 'get',
            group: '',
            version: 'v1',
            resource: 'nodes',
            subresource: 'proxy',
            name: nodeName,
          },
        },
      } as KubeObject);
    } catch (e) {
      return {
        allowed: false,
        status: 500,
        reason: `Authorization error (${attrs}, subresource=proxy)`,
        user,
        detail: `SubjectAccessReview failed: ${(e as Error).message}`,
      };
    }
    if ((sar.status as { allowed?: boolean } | undefined)?.allowed !== true)
      return { allowed: false, status: 403, reason: `Forbidden (${attrs}, subresource(s)=[proxy])`, user };

    const now = Date.now();
    for (const [k, v] of allowed) if (v.until <= now) allowed.delete(k);
    allowed.set(key, { user, until: now + ttl });
    return { allowed: true, user };
  };
}

export interface KubeletServerOptions {
  /** The address to listen on (an IP of the node). */
  host: string;
  /** 10250 on a real node; 0 for any free port. */
  port: number;
  /** PEM serving certificate and key (issueKubeletCert). */
  cert: string;
  key: string;
  nodeName: string;
  /**
   * The pods the node knows, as the API server's JSON gives them; only those
   * bound to this node (spec.nodeName) are served, with the status the
   * caller set (containerStatuses[].containerID, `containerd://<64 hex>`).
   */
  pods: () => V1Pod[] | Promise<V1Pod[]>;
  authorize: KubeletAuthorizer;
  /** One line per request: method, path, status, user. Never the token. */
  log?: (line: string) => void;
}

export interface KubeletServer {
  port: number;
  close(): Promise<void>;
}

/**
 * The bearer token of an `Authorization` header, parsed as Kubernetes' bearer
 * token authenticator does: the scheme is case-insensitive, the token is the
 * second space-separated field and may not be empty.
 */
function bearerToken(header: string | undefined): string | undefined {
  const parts = (header ?? '').trim().split(' ');
  if (parts.length < 2 || parts[0]?.toLowerCase() !== 'bearer') return undefined;
  return parts[1] || undefined;
}

interface Outcome {
  status: number;
  user?: string;
  detail?: string;
}

export async function startKubeletServer(o: KubeletServerOptions): Promise<KubeletServer> {
  const log = o.log ?? (() => {});

  const respond = async (
    req: IncomingMessage,
    res: ServerResponse,
    token: string | undefined,
  ): Promise<Outcome> => {
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): Outcome => {
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return { status };
    };
    // Only GETs are served: refused before authorisation, which is of `get` alone.
    if (req.method !== 'GET') return send(405, 'Method Not Allowed');
    if (!token) return send(401, 'Unauthorized');
    const d = await o.authorize(token, o.nodeName);
    if (!d.allowed) return { ...send(d.status, d.reason), user: d.user, detail: d.detail };
    const path = new URL(req.url ?? '/', 'https://kubelet').pathname;
    let out: Outcome;
    if (path === '/healthz') out = send(200, 'ok');
    else if (path === '/pods' || path === '/pods/') {
      const items = (await o.pods()).filter((p) => p.spec?.nodeName === o.nodeName);
      out = send(
        200,
        JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items }),
        'application/json',
      );
    } else out = send(404, '404 page not found');
    return { ...out, user: d.user };
  };

  const server = createServer({ cert: o.cert, key: o.key, minVersion: 'TLSv1.2' }, (req, res) => {
    const token = bearerToken(req.headers.authorization);
    const line = (r: Outcome) => {
      const text = `${req.method} ${req.url?.split('?')[0]} ${r.status}${r.user ? ` user=${r.user}` : ''}${r.detail ? ` (${r.detail})` : ''}`;
      // An error message quoting the request must not carry the token into the log.
      log(token ? text.split(token).join('<token>') : text);
    };
    respond(req, res, token).then(line, (e: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('Internal Server Error');
      line({ status: 500, detail: (e as Error).message });
    });
  });
  await new Promise<void>((resolve, reject) => {
    const failed = (e: Error) =>
      reject(new Error(`kubelet API of ${o.nodeName} cannot listen on ${o.host}:${o.port}: ${e.message}`));
    server.once('error', failed);
    server.listen(o.port, o.host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
