/**
 * The lab node agent's volumes: what a kubelet puts on the host before a
 * container starts, from the mounts pod-plan.ts computed.
 *
 * ConfigMap, Secret and projected volumes are written the kubelet's way
 * (AtomicWriter, pkg/volume/util/atomic_writer.go): the files live in a
 * timestamped data dir `..<timestamp>`, `..data` links to it, and each
 * top-level name links into `..data`. An update writes a new data dir and
 * swaps `..data` by a rename, so a reader sees the old set of files or the
 * new one, never a mix, and a file it has open keeps its old content: a
 * program that reads its files again (the SPIRE agent its projected token, at
 * each attestation) never reads half an update.
 *
 * Projected service-account tokens come from the API server's TokenRequest,
 * bound to the pod, and are refreshed on the kubelet's schedule.
 */
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, posix, resolve } from 'node:path';
import {
  CoreV1Api,
  type KubeConfig,
  Observable,
  type ObservableMiddleware,
  type V1TokenRequestSpec,
} from '@kubernetes/client-node';
import type { FileItem } from './pod-plan.js';

const DATA = '..data';
const DATA_TMP = '..data_tmp';

/** A volume path the writer refuses: it would land outside the volume, or on the writer's own `..` names. */
export class VolumePathError extends Error {
  override name = 'VolumePathError';
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`invalid volume path "${path}": ${reason}`);
  }
}

/** Relative and without a `..` element (what the API server's validation asks of a subPath); returns it cleaned. */
function relativePath(p: string): string {
  if (p === '') throw new VolumePathError(p, 'must not be empty');
  if (posix.isAbsolute(p)) throw new VolumePathError(p, 'must be a relative path');
  if (p.split('/').includes('..')) throw new VolumePathError(p, "must not contain '..'");
  const clean = posix.normalize(p).replace(/\/+$/, '');
  if (clean === '.') throw new VolumePathError(p, 'names the volume itself');
  return clean;
}

/** The AtomicWriter's validatePath: a relative path, no `..` element, and no name it reserves for itself (`..data`, `..<timestamp>`). */
function payloadPath(p: string): string {
  const clean = relativePath(p);
  if (clean.length > 4096) throw new VolumePathError(p, 'must be at most 4096 characters');
  const parts = clean.split('/');
  if (parts.some((x) => x.length > 255))
    throw new VolumePathError(p, 'a name must be at most 255 characters');
  if (parts[0]!.startsWith('..')) throw new VolumePathError(p, "must not start with '..'");
  return clean;
}

/** The name of the data dir `..data` links to; undefined before the first write (or when that dir is gone). */
function currentDataDir(dir: string): string | undefined {
  let target: string;
  try {
    target = readlinkSync(join(dir, DATA));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return existsSync(join(dir, target)) ? target : undefined;
}

function sameContent(path: string, content: Buffer): boolean {
  try {
    return readFileSync(path).equals(content);
  } catch {
    // Missing, or a directory where a file now goes: either way, a write.
    return false;
  }
}

/** Every path of `files` and each directory above it: what the new data dir will hold. */
function pathsWithParents(files: Map<string, FileItem>): Set<string> {
  const out = new Set<string>();
  for (const p of files.keys()) {
    const parts = p.split('/');
    for (let i = 1; i <= parts.length; i++) out.add(parts.slice(0, i).join('/'));
  }
  return out;
}

/** The kubelet's data dir name: `..2006_01_02_15_04_05.` (UTC) and a random suffix. */
function timestamp(now: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `..${now.getUTCFullYear()}_${p(now.getUTCMonth() + 1)}_${p(now.getUTCDate())}_${p(now.getUTCHours())}_${p(now.getUTCMinutes())}_${p(now.getUTCSeconds())}.`;
}

/** mkdir -p where every directory it makes is 0755 whatever the umask: group and others must be able to walk in. */
function mkdirs(dir: string): void {
  const first = mkdirSync(dir, { recursive: true });
  if (first === undefined) return;
  const top = resolve(first);
  for (let d = resolve(dir); d.startsWith(top); d = dirname(d)) chmodSync(d, 0o755);
}

/** For each top-level name, `<name>` → `..data/<name>`, where missing (they never change once made). */
function linkVisible(dir: string, files: Map<string, FileItem>): void {
  for (const top of new Set([...files.keys()].map((p) => p.split('/')[0]!))) {
    try {
      lstatSync(join(dir, top));
    } catch {
      symlinkSync(join(DATA, top), join(dir, top));
    }
  }
}

/**
 * Writes `files` into volume dir `dir` as the kubelet's AtomicWriter does.
 * Returns false, having written nothing, when the volume already holds
 * exactly these files; true when it wrote a new data dir and swapped to it.
 * A path that is absolute, has a `..` element or starts with `..` (the
 * writer's own names) throws VolumePathError before anything is written. File modes are as given, directories 0755.
 */
export function writeVolume(dir: string, files: FileItem[]): boolean {
  // Later items win, as in the kubelet's payload map.
  const payload = new Map(files.map((f) => [payloadPath(f.path), f]));
  mkdirs(dir);
  const old = currentDataDir(dir);
  const wanted = pathsWithParents(payload);
  // What the previous write made and this one does not.
  const gone =
    old === undefined
      ? []
      : readdirSync(join(dir, old), { recursive: true, encoding: 'utf8' }).filter((p) => !wanted.has(p));
  if (
    old !== undefined &&
    gone.length === 0 &&
    [...payload].every(([p, f]) => sameContent(join(dir, old, p), f.content))
  ) {
    // The kubelet still makes the visible links here (kubernetes#121472: a crash between the swap and the links).
    linkVisible(dir, payload);
    return false;
  }

  const data = mkdtempSync(join(dir, timestamp(new Date())));
  chmodSync(data, 0o755);
  for (const [p, f] of payload) {
    const file = join(data, p);
    mkdirs(dirname(file));
    writeFileSync(file, f.content, { mode: f.mode });
    // writeFile's mode passes through the umask; the file must have exactly the one asked for.
    chmodSync(file, f.mode);
  }
  // The swap: a rename over `..data` is atomic, so readers see the old data dir or the new one.
  rmSync(join(dir, DATA_TMP), { force: true });
  symlinkSync(basename(data), join(dir, DATA_TMP));
  renameSync(join(dir, DATA_TMP), join(dir, DATA));
  linkVisible(dir, payload);

  // Visible links of names that went away (only the writer's: a subPath dir the kubelet made stays).
  for (const p of gone) if (!p.includes('/')) rmSync(join(dir, p), { force: true });
  // The previous data dir, and any a crash left before its swap: every `..` name is the writer's.
  for (const name of readdirSync(dir))
    if (name.startsWith('..') && name !== DATA && name !== basename(data))
      rmSync(join(dir, name), { recursive: true, force: true });
  return true;
}

/** A token from the API server's TokenRequest. */
export interface IssuedToken {
  token: string;
  expiresAt: Date;
  /** expiresAt less the validity the API server granted (it may shorten what was asked): the kubelet's `iat`. */
  issuedAt: Date;
}

export interface TokenRequestOf {
  namespace: string;
  serviceAccount: string;
  /** Undefined or empty: the API server's own audiences. */
  audience: string | undefined;
  expirationSeconds: number;
  /** The pod the token is bound to: it stops being valid when the pod goes. */
  pod: { name: string; uid: string };
}

export class TokenRequestError extends Error {
  override name = 'TokenRequestError';
}

/** Aborts a client-node request after `ms` (client-node sets no deadline of its own). */
function deadline(ms: number): { middleware: ObservableMiddleware[]; middlewareMergeStrategy: 'append' } {
  return {
    middleware: [
      {
        pre: (ctx) => {
          ctx.setSignal(AbortSignal.timeout(ms));
          return new Observable(Promise.resolve(ctx));
        },
        post: (res) => new Observable(Promise.resolve(res)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

/** The API server's message for a refused request (client-node's own message carries the whole answer and its headers). */
function apiMessage(e: unknown, timeoutMs: number): string {
  const { code, body, name } = e as { code?: number; body?: unknown; name?: string };
  if (name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  if (code === undefined) return (e as Error).message;
  let status: { message?: string } | undefined;
  try {
    status = (typeof body === 'string' ? JSON.parse(body) : body) as typeof status;
  } catch {
    status = undefined;
  }
  return `HTTP ${code}${status?.message ? `: ${status.message}` : ''}`;
}

/** Service-account tokens for pods, from the API server's TokenRequest, as the kubelet's token manager asks for them. */
export class TokenSource {
  private readonly api: CoreV1Api;

  constructor(
    kc: KubeConfig,
    private readonly timeoutMs = 30_000,
  ) {
    this.api = kc.makeApiClient(CoreV1Api);
  }

  async token(r: TokenRequestOf): Promise<IssuedToken> {
    const what = `TokenRequest for serviceaccount ${r.namespace}/${r.serviceAccount} (pod ${r.pod.name})`;
    const res = await this.api
      .createNamespacedServiceAccountToken(
        {
          name: r.serviceAccount,
          namespace: r.namespace,
          body: {
            // client-node's type requires audiences; with none, the API server fills in its own
            // (--api-audiences), as for the kubelet's nil list.
            spec: {
              ...(r.audience ? { audiences: [r.audience] } : {}),
              expirationSeconds: r.expirationSeconds,
              boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: r.pod.name, uid: r.pod.uid },
            } as V1TokenRequestSpec,
          },
        },
        deadline(this.timeoutMs),
      )
      .catch((e: unknown) => {
        throw new TokenRequestError(`${what}: ${apiMessage(e, this.timeoutMs)}`);
      });
    const token = res.status?.token;
    const expiresAt = res.status?.expirationTimestamp;
    const seconds = res.spec.expirationSeconds;
    if (!token || !expiresAt || seconds === undefined)
      throw new TokenRequestError(`${what}: the answer has no token, expiration or validity`);
    return { token, expiresAt, issuedAt: new Date(expiresAt.getTime() - seconds * 1000) };
  }
}

const MAX_TOKEN_AGE_MS = 24 * 3600 * 1000;

/**
 * The kubelet's rule (token_manager.go requiresRefresh): a token is renewed
 * once 80% of its validity has passed, or once it is 24 hours old. (The
 * kubelet also subtracts up to 10 s of jitter to spread a node's requests;
 * the lab's few pods need none, and its tests want the rule exact.)
 */
export function needsRefresh(t: IssuedToken, now: Date): boolean {
  const issued = t.issuedAt.getTime();
  const ttl = t.expiresAt.getTime() - issued;
  return now.getTime() >= issued + Math.min(0.8 * ttl, MAX_TOKEN_AGE_MS);
}
