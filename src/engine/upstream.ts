/**
 * Upstream manifests (cert-manager's release manifest, the registrar's CRDs)
 * at run time, for the fleet's versions.
 *
 * Where a manifest comes from, first match wins:
 * 1. `--offline DIR`: the file at DIR/<host>/<path of its URL> (a mirror
 *    layout: `meshfed upstream pull` and the lab write it). With --offline
 *    nothing is downloaded; a missing file is an error naming the path.
 * 2. the cache (~/.cache/meshfed/upstream, or $XDG_CACHE_HOME), same layout;
 * 3. the URL, over HTTPS with the system's CAs, then cached.
 *
 * Integrity: a digest meshfed knows for the URL (PINNED_SHA256, or a
 * SHA256SUMS file beside the offline files) must match. A download with no
 * known digest has its sha256 recorded beside the cached copy, and the cached
 * copy is checked against that record every time it is read.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parseAllDocuments } from 'yaml';
import type { KubeObject, UpstreamManifest } from '../render/types.js';

/** sha256 of upstream files meshfed has verified by hand, by URL. */
export const PINNED_SHA256: Readonly<Record<string, string>> = {};

export class UpstreamError extends Error {
  override name = 'UpstreamError';
}

export interface UpstreamOptions {
  /** Use only this folder (mirror layout); never download. */
  offlineDir?: string;
  /** Cache folder; default $XDG_CACHE_HOME/meshfed/upstream or ~/.cache/meshfed/upstream. */
  cacheDir?: string;
  /** Download function (tests); default global fetch. */
  fetchText?: (url: string) => Promise<string>;
  env?: NodeJS.ProcessEnv;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** The mirror path of a URL below a folder: DIR/<host>/<path>. */
export function mirrorPath(dir: string, url: string): string {
  const u = new URL(url);
  const parts = u.pathname.split('/').filter((p) => p && p !== '..' && p !== '.');
  return join(dir, u.hostname, ...parts);
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'meshfed', 'upstream');
}

/** Digests listed in DIR/SHA256SUMS ("<hex>  <host>/<path>" per line), by mirror-relative path. */
function sumsOf(dir: string): Map<string, string> {
  const f = join(dir, 'SHA256SUMS');
  const m = new Map<string, string>();
  if (!existsSync(f)) return m;
  for (const line of readFileSync(f, 'utf8').split('\n')) {
    const x = /^([0-9a-f]{64})\s+\*?(.+)$/.exec(line.trim());
    if (x) m.set(x[2]!, x[1]!);
  }
  return m;
}

async function download(url: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow', signal: AbortSignal.timeout(60_000) });
  } catch (e) {
    const cause = (e as { cause?: { message?: string } }).cause?.message;
    throw new UpstreamError(`${(e as Error).message}${cause ? ` (${cause})` : ''}`);
  }
  if (!res.ok) throw new UpstreamError(`HTTP ${res.status}`);
  return res.text();
}

export class UpstreamSource {
  private readonly memo = new Map<string, Promise<KubeObject[]>>();
  constructor(private readonly o: UpstreamOptions = {}) {}

  /** The manifest's text, from the offline folder, the cache or its URL. */
  async text(m: UpstreamManifest): Promise<string> {
    const pinned = PINNED_SHA256[m.url];
    const check = (text: string, where: string, want: string | undefined) => {
      if (want && sha256(text) !== want)
        throw new UpstreamError(
          `${m.name} ${m.version}: ${where} has sha256 ${sha256(text)}, expected ${want}; remove it and fetch it again`,
        );
      return text;
    };
    if (this.o.offlineDir) {
      const p = mirrorPath(this.o.offlineDir, m.url);
      if (!existsSync(p))
        throw new UpstreamError(
          `${m.name} ${m.version}: --offline ${this.o.offlineDir} has no ${p} (download ${m.url} to that path)`,
        );
      const rel = p.slice(this.o.offlineDir.length).replace(/^\/+/, '');
      return check(readFileSync(p, 'utf8'), p, pinned ?? sumsOf(this.o.offlineDir).get(rel));
    }
    const cacheDir = this.o.cacheDir ?? defaultCacheDir(this.o.env);
    const cached = mirrorPath(cacheDir, m.url);
    if (existsSync(cached)) {
      const recorded = existsSync(`${cached}.sha256`)
        ? readFileSync(`${cached}.sha256`, 'utf8').trim()
        : undefined;
      return check(readFileSync(cached, 'utf8'), cached, pinned ?? recorded);
    }
    let text: string;
    try {
      text = await (this.o.fetchText ?? download)(m.url);
    } catch (e) {
      throw new UpstreamError(
        `${m.name} ${m.version}: cannot download ${m.url}: ${(e as Error).message}; with no network, put the file at ${mirrorPath('DIR', m.url)} and pass --offline DIR`,
      );
    }
    check(text, m.url, pinned);
    mkdirSync(dirname(cached), { recursive: true });
    writeFileSync(`${cached}.tmp`, text);
    writeFileSync(`${cached}.sha256`, `${sha256(text)}\n`);
    renameSync(`${cached}.tmp`, cached);
    return text;
  }

  /**
   * The manifest's objects (empty documents and Lists flattened away). With
   * `cacheDir`, the parse is kept there as JSON under the digest of the text
   * (checked as above, every time), so that a run does not parse YAML again:
   * parsing cert-manager's release takes about 0.3 s of CPU, reading the
   * JSON a few ms. A cache file that cannot be read is parsed again.
   */
  objects(m: UpstreamManifest, cacheDir?: string): Promise<KubeObject[]> {
    let p = this.memo.get(m.url);
    if (!p) {
      p = this.text(m).then((t) => parsedOnce(t, `${m.name} ${m.version} (${m.url})`, cacheDir));
      this.memo.set(m.url, p);
    }
    return p;
  }
}

/** What parseManifests makes of a text changes with meshfed: its cache files are named with this too. */
const PARSED_FORMAT = 'upstream-objects-1';

function parsedOnce(text: string, source: string, cacheDir: string | undefined): KubeObject[] {
  if (!cacheDir) return parseManifests(text, source);
  const file = join(cacheDir, `upstream-${sha256(`${PARSED_FORMAT}\n${text}`)}.json`);
  try {
    const cached = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    if (Array.isArray(cached)) return cached as KubeObject[];
  } catch {
    // not there yet, or not readable: parse
  }
  const objects = parseManifests(text, source);
  const json = JSON.stringify(objects);
  // Only what JSON carries exactly (no .inf, no NaN) is kept.
  if (!isDeepStrictEqual(JSON.parse(json), objects)) return objects;
  try {
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(`${file}.${process.pid}.tmp`, json);
    renameSync(`${file}.${process.pid}.tmp`, file);
  } catch {
    // a cache that cannot be written costs time, not correctness
  }
  return objects;
}

/** Kubernetes objects of a YAML stream; a document that is not one is an error naming it. */
export function parseManifests(text: string, source: string): KubeObject[] {
  const out: KubeObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length)
      throw new UpstreamError(`${source}: YAML error: ${doc.errors[0]!.message.split('\n')[0]}`);
    const v = doc.toJS() as KubeObject | null;
    if (v === null || v === undefined) continue;
    const items = v.kind?.endsWith('List') && Array.isArray(v.items) ? (v.items as KubeObject[]) : [v];
    for (const o of items) {
      if (typeof o?.apiVersion !== 'string' || typeof o.kind !== 'string' || !o.metadata?.name)
        throw new UpstreamError(
          `${source}: a document is not a Kubernetes object (no apiVersion, kind or name)`,
        );
      out.push(o);
    }
  }
  return out;
}
