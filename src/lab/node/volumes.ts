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
 * bound to the pod, and are refreshed on the kubelet's schedule. hostPath
 * volumes live under a directory that stands for the node's "/", so the lab
 * never touches the real host's paths.
 */
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, posix, resolve, sep } from 'node:path';
import {
  CoreV1Api,
  type KubeConfig,
  Observable,
  type ObservableMiddleware,
  type V1Pod,
  type V1TokenRequestSpec,
  type V1Volume,
} from '@kubernetes/client-node';
import {
  type FileItem,
  type MountPlan,
  type MountSource,
  type PodObjects,
  volumeSource,
} from './pod-plan.js';

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

/** A hostPath volume whose path is not of its `type` (the kubelet's words). */
export class HostPathTypeError extends Error {
  override name = 'HostPathTypeError';
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
    if (f.owner !== undefined) chownSync(file, f.owner, -1);
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

/** The node's directories the agent's volumes map to. */
export interface NodeDirs {
  /** Stands for the node's "/": hostPath `/run/x` is `<root>/run/x`. */
  root: string;
  /** What the SPIFFE CSI driver (csi.spiffe.io) publishes to pods on this node: the agent's Workload API socket dir. */
  spiffeSockets: string;
  /** Claims' volumes, `<claims>/<namespace>/<claim>`: they outlive the pod, as a PersistentVolume does. */
  claims: string;
}

/** Where a container path is bound from. */
export interface HostMount {
  containerPath: string;
  hostPath: string;
  readOnly: boolean;
}

export interface VolumeRefresh {
  /** Names of the volumes whose files changed. */
  changed: string[];
  /** A volume that could not be read or written keeps its files; why, per volume. */
  errors: string[];
}

type FilesSource = Extract<MountSource, { kind: 'files' }>;

/** A ConfigMap/Secret/projected volume as written: the spec to read it again from, and the tokens in it by path. */
interface FilesVolume {
  dir: string;
  spec: V1Volume;
  tokens: Map<string, IssuedToken>;
}

/** What is at `path` (symlinks followed), in hostPath type words; undefined when nothing is. */
function fileKind(path: string): string | undefined {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  if (st.isDirectory()) return 'Directory';
  if (st.isFile()) return 'File';
  if (st.isSocket()) return 'Socket';
  if (st.isCharacterDevice()) return 'CharDevice';
  if (st.isBlockDevice()) return 'BlockDevice';
  return 'other';
}

/** Each hostPath type: what must be at the path, and how an `...OrCreate` type makes it when nothing is. */
const HOST_PATH_TYPES: Record<string, { is: string; what: string; create?: (path: string) => void }> = {
  DirectoryOrCreate: { is: 'Directory', what: 'a directory', create: mkdirs },
  Directory: { is: 'Directory', what: 'a directory' },
  // Like the kubelet's: an empty 0644 file, in a directory that must exist.
  FileOrCreate: { is: 'File', what: 'a file', create: (p) => closeSync(openSync(p, 'a', 0o644)) },
  File: { is: 'File', what: 'a file' },
  Socket: { is: 'Socket', what: 'a socket file' },
  CharDevice: { is: 'CharDevice', what: 'a character device' },
  BlockDevice: { is: 'BlockDevice', what: 'a block device' },
};

/** The kubelet's hostPath type check (pkg/volume/hostpath checkType), in its words; no type checks nothing. */
function checkHostPath(path: string, type: string | undefined): void {
  if (!type) return;
  const t = HOST_PATH_TYPES[type];
  if (!t) throw new HostPathTypeError(`${type} is an invalid volume type`);
  const kind = fileKind(path);
  if (kind === undefined && t.create) t.create(path);
  else if (kind !== t.is) throw new HostPathTypeError(`hostPath type check failed: ${path} is not ${t.what}`);
}

/**
 * The host path of `subPath` inside `volumeDir`, made (as a directory with
 * the volume's mode) when missing, as the kubelet does. Symlinks are followed
 * and must not lead out of the volume. For a ConfigMap/Secret/projected volume
 * this is the file in the current data dir: bound at container start, it
 * keeps that content, for the kubelet does not update a subPath mount either.
 */
function subPathOf(volumeDir: string, subPath: string): string {
  const host = join(volumeDir, relativePath(subPath));
  try {
    lstatSync(host);
  } catch {
    mkdirSync(host, { recursive: true, mode: statSync(volumeDir).mode & 0o7777 });
  }
  const base = realpathSync(volumeDir);
  const real = realpathSync(host);
  if (real !== base && !real.startsWith(base + sep))
    throw new VolumePathError(subPath, `leads out of the volume (to ${real})`);
  return real;
}

/**
 * One pod's volumes on the node. `objects` reads the pod's namespace's
 * ConfigMaps and Secrets (the agent's informer cache); `tokens` issues its
 * service-account tokens.
 */
export class PodVolumes {
  /** Host dir of each volume set up, by volume name: a volume is set up once, whatever number of containers mount it. */
  private readonly dirs = new Map<string, string>();
  private readonly files = new Map<string, FilesVolume>();

  constructor(
    private readonly pod: V1Pod,
    private readonly objects: PodObjects,
    private readonly tokens: Pick<TokenSource, 'token'>,
    private readonly node: NodeDirs,
  ) {}

  /**
   * Sets up the volumes of `mounts` not set up yet (under
   * `<podDir>/volumes/<volume>` for files and emptyDir) and returns, for each
   * mount, the host path to bind at its container path.
   */
  async materialize(podDir: string, mounts: MountPlan[]): Promise<HostMount[]> {
    const out: HostMount[] = [];
    for (const m of mounts) {
      let dir = this.dirs.get(m.volume);
      if (dir === undefined) {
        dir = await this.setUp(join(podDir, 'volumes', m.volume), m);
        this.dirs.set(m.volume, dir);
      }
      out.push({
        containerPath: m.path,
        hostPath: m.subPath ? subPathOf(dir, m.subPath) : dir,
        // The kubelet mounts API data (ConfigMap, Secret, projected) read-only whatever the mount says.
        readOnly:
          m.readOnly ||
          m.source.kind === 'files' ||
          (m.source.kind === 'persistentVolumeClaim' && m.source.readOnly),
      });
    }
    return out;
  }

  private async setUp(dir: string, m: MountPlan): Promise<string> {
    const s = m.source;
    switch (s.kind) {
      case 'files': {
        const spec = this.pod.spec?.volumes?.find((v) => v.name === m.volume);
        if (!spec) throw new Error(`volume "${m.volume}" is not a volume of the pod`);
        const v: FilesVolume = { dir, spec, tokens: new Map() };
        writeVolume(dir, await this.payload(v, s, new Date()));
        this.files.set(m.volume, v);
        return dir;
      }
      case 'emptyDir':
        mkdirSync(dir, { recursive: true });
        // The kubelet's emptyDir is 0777: any user of the pod's containers may write to it.
        chmodSync(dir, 0o777);
        return dir;
      case 'hostPath': {
        // Resolved against "/" first, so `..` cannot climb out of the node's root.
        const host = join(this.node.root, posix.resolve('/', s.path));
        checkHostPath(host, s.type);
        return host;
      }
      case 'persistentVolumeClaim': {
        const claim = join(this.node.claims, this.namespace(), s.claimName);
        mkdirSync(claim, { recursive: true });
        return claim;
      }
      case 'csi':
        if (s.driver !== 'csi.spiffe.io')
          throw new Error(`volume "${m.volume}": CSI driver ${s.driver} is not one the lab node provides`);
        mkdirs(this.node.spiffeSockets);
        return this.node.spiffeSockets;
    }
  }

  private namespace(): string {
    return this.pod.metadata?.namespace ?? 'default';
  }

  /** The volume's files and its tokens, each token reissued when missing or due (`now`). */
  private async payload(v: FilesVolume, s: FilesSource, now: Date): Promise<FileItem[]> {
    const name = this.pod.metadata?.name;
    const uid = this.pod.metadata?.uid;
    const tokenFiles: FileItem[] = [];
    for (const t of s.tokens) {
      let issued = v.tokens.get(t.path);
      if (!issued || needsRefresh(issued, now)) {
        if (!name || !uid) throw new Error('a token is bound to the pod: the pod needs a name and a uid');
        issued = await this.tokens.token({
          namespace: this.namespace(),
          serviceAccount: this.pod.spec?.serviceAccountName || 'default',
          audience: t.audience,
          expirationSeconds: t.expirationSeconds,
          pod: { name, uid },
        });
        v.tokens.set(t.path, issued);
      }
      tokenFiles.push({
        path: t.path,
        content: Buffer.from(issued.token),
        mode: t.mode,
        ...(t.owner !== undefined ? { owner: t.owner } : {}),
      });
    }
    return [...s.files, ...tokenFiles];
  }

  /**
   * Reads every ConfigMap/Secret/projected volume again (from `objects`, as
   * it is now), renews the tokens that are due at `now`, and rewrites the
   * volumes whose files changed. A volume that fails (an object gone, a
   * TokenRequest refused) keeps its files, as with the kubelet.
   */
  async refresh(now = new Date()): Promise<VolumeRefresh> {
    const out: VolumeRefresh = { changed: [], errors: [] };
    for (const [name, v] of this.files) {
      try {
        // The same spec as at setup, so a files source again.
        const s = volumeSource(this.pod, v.spec, this.objects) as FilesSource;
        if (writeVolume(v.dir, await this.payload(v, s, now))) out.changed.push(name);
      } catch (e) {
        out.errors.push(`volume "${name}": ${(e as Error).message}`);
      }
    }
    return out;
  }
}
