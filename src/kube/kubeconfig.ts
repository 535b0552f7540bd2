/**
 * A kubeconfig's contexts, clusters and users, and each request's
 * credentials and TLS settings, without loading @kubernetes/client-node as
 * a whole: its index (and its KubeConfig's module) loads the generated API
 * client, 826 modules and about 0.2 s of CPU at every start of meshfed,
 * which makes its own requests and uses none of it.
 *
 * This is client-node's KubeConfig (1.x, src/config.ts) for what meshfed
 * uses, built on client-node's own parts: its parsing and validation of the
 * lists (config_types: the same objects, the same errors) and its exec
 * credential plugin support (exec_auth: the same spawn, cache and expiry).
 * CA, client certificate and key (file or data; a file is read again when
 * its last read is 5 s old, where client-node reads it for every request),
 * bearer token, basic auth, impersonation and the TLS
 * server name are applied here as client-node applies them. Everything else
 * (an auth-provider: oidc, azure, gcp, a token file; a proxy-url) is handed
 * to client-node's full KubeConfig, loaded then.
 */
import { readFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { isAbsolute, join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import {
  type Cluster,
  type Context,
  newClusters,
  newContexts,
  newUsers,
  type User,
} from '@kubernetes/client-node/dist/config_types.js';
import { ExecAuth } from '@kubernetes/client-node/dist/exec_auth.js';

/** What meshfed's client reads of a kubeconfig: client-node's KubeConfig is one too. */
export interface KubeconfigView {
  getCurrentContext(): string;
  getCurrentCluster(): Cluster | null;
  getCurrentUser(): User | null;
  applyToHTTPSOptions(opts: RequestOptions): Promise<void>;
}

/** How long a CA, certificate or key file read is used before it is read again (a renewed certificate is taken within this). */
const FILE_FRESH_MS = 5_000;
const files = new Map<string, { at: number; data: Buffer }>();

function fileOrData(file: string | undefined, data: string | undefined): Buffer | null {
  if (file) {
    const now = Date.now();
    const had = files.get(file);
    if (had && now - had.at < FILE_FRESH_MS) return had.data;
    const read = readFileSync(file);
    files.set(file, { at: now, data: read });
    return read;
  }
  if (data) return Buffer.from(data, 'base64');
  return null;
}

export class LiteKubeConfig implements KubeconfigView {
  private contexts: Context[] = [];
  private clusters: Cluster[] = [];
  private users: User[] = [];
  private currentContext = '';
  private readonly exec = new ExecAuth();
  /** client-node's KubeConfig for what is not done here, made at its first use. */
  private full: Promise<KubeConfig> | undefined;

  /** The kubeconfig as parsed YAML (an object), checked as client-node checks it. */
  loadFromObject(obj: Record<string, unknown>): void {
    this.clusters = newClusters(obj.clusters);
    this.contexts = newContexts(obj.contexts);
    this.users = newUsers(obj.users);
    this.currentContext = obj['current-context'] as string;
  }

  getContexts(): Context[] {
    return this.contexts;
  }
  getCurrentContext(): string {
    return this.currentContext;
  }
  setCurrentContext(name: string): void {
    this.currentContext = name;
  }
  private find<T extends { name: string }>(list: T[], name: string | undefined): T | null {
    return list.find((x) => x.name === name) ?? null;
  }
  getCurrentCluster(): Cluster | null {
    const ctx = this.find(this.contexts, this.currentContext);
    return ctx ? this.find(this.clusters, ctx.cluster) : null;
  }
  getCurrentUser(): User | null {
    const ctx = this.find(this.contexts, this.currentContext);
    return ctx ? this.find(this.users, ctx.user) : null;
  }

  /** Relative file paths (CA, client certificate and key) from the kubeconfig's folder. */
  makePathsAbsolute(root: string): void {
    const abs = (f: string) => (!root || isAbsolute(f) ? f : join(root, f));
    for (const c of this.clusters) if (c.caFile) c.caFile = abs(c.caFile);
    for (const u of this.users) {
      if (u.certFile) u.certFile = abs(u.certFile);
      if (u.keyFile) u.keyFile = abs(u.keyFile);
    }
  }

  /** The request's CA, client credentials and headers, as client-node's applyToHTTPSOptions sets them (no agent: the caller has its own). */
  async applyToHTTPSOptions(opts: RequestOptions): Promise<void> {
    const user = this.getCurrentUser();
    const cluster = this.getCurrentCluster();
    if ((user?.authProvider && !user.exec) || cluster?.proxyUrl) {
      this.full ??= this.fullKubeConfig();
      return (await this.full).applyToHTTPSOptions(opts);
    }
    if (!user) return;
    if (cluster?.skipTLSVerify) opts.rejectUnauthorized = false;
    if (cluster?.tlsServerName) opts.servername = cluster.tlsServerName;
    const ca = cluster ? fileOrData(cluster.caFile, cluster.caData) : null;
    if (ca) opts.ca = ca;
    const cert = fileOrData(user.certFile, user.certData);
    if (cert) opts.cert = cert;
    const key = fileOrData(user.keyFile, user.keyData);
    if (key) opts.key = key;
    opts.headers ??= {};
    const headers = opts.headers as Record<string, string>;
    if (user.impersonateUser != null) headers['Impersonate-User'] = user.impersonateUser;
    if (this.exec.isAuthProvider(user)) await this.exec.applyAuthentication(user, opts);
    if (user.token) headers.Authorization = `Bearer ${user.token}`;
    if (user.username) opts.auth = `${user.username}:${user.password}`;
  }

  private async fullKubeConfig(): Promise<KubeConfig> {
    const { KubeConfig } = await import('@kubernetes/client-node');
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: this.clusters,
      contexts: this.contexts,
      users: this.users,
      currentContext: this.currentContext,
    });
    return kc;
  }
}
