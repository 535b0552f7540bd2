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
import { createServer, request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import * as px from '@peculiar/x509';
import { clientOfKubeConfig, type KubeObject } from '../../kube/client.js';
import { type CertAndKey, caSigningKey, newEcP256Keys, pkcs8Pem, randomSerial } from '../pki.js';
import { type ExecRunner, parseExecRequest, refuseUpgrade, serveExec } from './exec-stream.js';

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
  /** DNS names besides the node's (the lab adds `localhost`, the address the API server dials). */
  dnsNames?: string[];
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
        ...(o.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
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

/** A caller authenticated by a client certificate the cluster CA issued: CN the user, O the groups. */
export interface CertificateUser {
  username: string;
  groups: string[];
}

/**
 * May the caller (the bearer of a token, or a certificate's user) `verb`
 * (default get) nodes/proxy on `nodeName`?
 */
export type KubeletAuthorizer = (
  caller: string | CertificateUser,
  nodeName: string,
  verb?: string,
) => Promise<KubeletDecision>;

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
  return async (caller, nodeName, verb = 'get') => {
    const who =
      typeof caller === 'string'
        ? `token:${createHash('sha256').update(caller).digest('hex')}`
        : `x509:${JSON.stringify([caller.username, caller.groups])}`;
    const key = `${who}/${nodeName}/${verb}`;
    const hit = allowed.get(key);
    if (hit && hit.until > Date.now()) return { allowed: true, user: hit.user };

    let reviewed: ReviewedUser;
    if (typeof caller !== 'string') reviewed = { username: caller.username, groups: caller.groups };
    else
      try {
        const tr = await client.review({
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          metadata: { name: '' },
          spec: { token: caller },
        } as KubeObject);
        const status = (tr.status ?? {}) as { authenticated?: boolean; user?: ReviewedUser; error?: string };
        if (!status.authenticated || !status.user?.username) return unauthorized(status.error);
        reviewed = status.user;
      } catch (e) {
        return unauthorized(`TokenReview failed: ${(e as Error).message}`);
      }

    const user = reviewed.username ?? '';
    const attrs = `user=${user}, verb=${verb}, resource=nodes`;
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
            verb,
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
  /**
   * PEM CA whose client certificates authenticate callers, as a kubelet's
   * `--client-ca-file` does (the API server's kubelet client certificate): CN
   * the user, O the groups. Callers may still bring a bearer token instead.
   */
  clientCa?: string;
  /**
   * `exec` into a container this node runs for real: the runner that starts
   * a command in it, or undefined for a container it does not run.
   */
  exec?: (target: { namespace: string; pod: string; container: string }) => ExecRunner | undefined;
  /**
   * Where requests this server does not serve go, authorised first (kwok's
   * own server, which simulates the other pods and serves logs): https,
   * verified against `ca`, presenting `cert`.
   */
  upstream?: { host: string; port: number; ca: string; cert: string; key: string };
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

/** The verb a kubelet authorises a request method as. */
const VERBS: Record<string, string> = {
  GET: 'get',
  HEAD: 'get',
  POST: 'create',
  PUT: 'update',
  PATCH: 'patch',
  DELETE: 'delete',
};

/** The caller of a request: its bearer token, else the user of a verified client certificate. */
function callerOf(req: IncomingMessage, clientCa: boolean): string | CertificateUser | undefined {
  const token = bearerToken(req.headers.authorization);
  if (token) return token;
  const socket = req.socket as TLSSocket;
  if (!clientCa || !socket.authorized) return undefined;
  const subject = socket.getPeerCertificate().subject ?? {};
  const cn = subject.CN;
  const o = subject.O;
  const username = Array.isArray(cn) ? cn[0] : cn;
  if (!username) return undefined;
  return { username, groups: o === undefined ? [] : Array.isArray(o) ? o : [o] };
}

export async function startKubeletServer(o: KubeletServerOptions): Promise<KubeletServer> {
  const log = o.log ?? (() => {});
  const upstreamTls = o.upstream
    ? { ca: o.upstream.ca, cert: o.upstream.cert, key: o.upstream.key, minVersion: 'TLSv1.2' as const }
    : undefined;

  /** Who is calling, and may they do this here? A refusal is answered by `refuse`. */
  const admit = async (
    req: IncomingMessage,
    refuse: (status: number, body: string) => void,
  ): Promise<{ user: string } | { refused: Outcome }> => {
    const caller = callerOf(req, o.clientCa !== undefined);
    if (!caller) {
      refuse(401, 'Unauthorized');
      return { refused: { status: 401 } };
    }
    const d = await o.authorize(caller, o.nodeName, VERBS[req.method ?? ''] ?? 'get');
    if (!d.allowed) {
      refuse(d.status, d.reason);
      return { refused: { status: d.status, user: d.user, detail: d.detail } };
    }
    return { user: d.user };
  };

  const respond = async (req: IncomingMessage, res: ServerResponse): Promise<Outcome> => {
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): Outcome => {
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return { status };
    };
    // Only GETs are served here (others may be passed on): refused before authorisation.
    if (req.method !== 'GET' && !o.upstream) return send(405, 'Method Not Allowed');
    const who = await admit(req, (status, body) => send(status, body));
    if ('refused' in who) return who.refused;
    const path = new URL(req.url ?? '/', 'https://kubelet').pathname;
    let out: Outcome;
    if (req.method === 'GET' && path === '/healthz') out = send(200, 'ok');
    else if (req.method === 'GET' && (path === '/pods' || path === '/pods/')) {
      const items = (await o.pods()).filter((p) => p.spec?.nodeName === o.nodeName);
      out = send(
        200,
        JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items }),
        'application/json',
      );
    } else if (o.upstream) out = await passOn(req, res, o.upstream, upstreamTls!);
    else out = send(404, '404 page not found');
    return { ...out, user: who.user };
  };

  /** An upgrade: `exec` into a container run here, else passed on (kwok's pods), else refused. */
  const upgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<Outcome> => {
    const who = await admit(req, (status, body) => refuseUpgrade(socket, status, body));
    if ('refused' in who) return who.refused;
    const path = new URL(req.url ?? '/', 'https://kubelet').pathname;
    const exec = path.startsWith('/exec/') ? parseExecRequest(req.url ?? '') : undefined;
    const runner = exec
      ? o.exec?.({ namespace: exec.namespace, pod: exec.pod, container: exec.container })
      : undefined;
    if (runner) {
      const r = await serveExec(req, socket, head, runner);
      return {
        status: 101,
        user: who.user,
        detail: r.error ?? `exec ${exec!.namespace}/${exec!.pod}/${exec!.container}: exit ${r.exitCode}`,
      };
    }
    if (o.upstream) {
      passOnUpgrade(req, socket, head, o.upstream, upstreamTls!);
      return { status: 101, user: who.user, detail: 'passed on' };
    }
    refuseUpgrade(socket, 404, `${path}: nothing here serves it`);
    return { status: 404, user: who.user };
  };

  const server = createServer(
    {
      cert: o.cert,
      key: o.key,
      minVersion: 'TLSv1.2',
      ...(o.clientCa ? { ca: o.clientCa, requestCert: true, rejectUnauthorized: false } : {}),
    },
    (req, res) => {
      const line = requestLog(req, log);
      respond(req, res).then(line, (e: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('Internal Server Error');
        line({ status: 500, detail: (e as Error).message });
      });
    },
  );
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const line = requestLog(req, log);
    socket.on('error', () => {});
    upgrade(req, socket, head).then(line, (e: unknown) => {
      socket.destroy();
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

/** The log line of a request once answered (method, path, status, user, detail), never its token. */
function requestLog(req: IncomingMessage, log: (line: string) => void): (r: Outcome) => void {
  const token = bearerToken(req.headers.authorization);
  return (r) => {
    const text = `${req.method} ${req.url?.split('?')[0]} ${r.status}${r.user ? ` user=${r.user}` : ''}${r.detail ? ` (${r.detail})` : ''}`;
    // An error message quoting the request must not carry the token into the log.
    log(token ? text.split(token).join('<token>') : text);
  };
}

type UpstreamTls = { ca: string; cert: string; key: string; minVersion: 'TLSv1.2' };

/** Passes a request on to the upstream kubelet API and its answer back, streamed (`logs -f`). */
function passOn(
  req: IncomingMessage,
  res: ServerResponse,
  up: { host: string; port: number },
  tls: UpstreamTls,
): Promise<Outcome> {
  return new Promise((resolve) => {
    const { authorization: _a, host: _h, ...headers } = req.headers;
    const out = httpsRequest(
      { host: up.host, port: up.port, method: req.method, path: req.url, headers, ...tls },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
        resolve({ status: ur.statusCode ?? 502, detail: 'passed on' });
      },
    );
    out.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('Bad Gateway');
      resolve({ status: 502, detail: `upstream: ${e.message}` });
    });
    res.on('close', () => out.destroy());
    req.pipe(out);
  });
}

/** Passes an upgrade (exec, attach, port-forward of pods run elsewhere) on to the upstream, both ways. */
function passOnUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  up: { host: string; port: number },
  tls: UpstreamTls,
): void {
  const upstream = tlsConnect({ host: up.host, port: up.port, ...tls }, () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]!;
      if (/^(authorization|host)$/i.test(name)) continue;
      lines.push(`${name}: ${req.rawHeaders[i + 1]}`);
    }
    lines.push(`Host: ${up.host}:${up.port}`, '', '');
    upstream.write(lines.join('\r\n'));
    if (head.length) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  const close = () => {
    upstream.destroy();
    socket.destroy();
  };
  upstream.on('error', close);
  upstream.on('close', close);
  socket.on('close', close);
}
