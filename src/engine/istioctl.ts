/**
 * Istio's manifests for a cluster, from the real istioctl: `istioctl manifest
 * generate` of the IstioOperator meshfed renders, run offline (it reads no
 * cluster). meshfed applies the result itself, with its own ordering, field
 * manager and health waits, so `up`, `plan` and `down` treat Istio like
 * everything else.
 *
 * istioctl prints its log lines (timestamp, tab, level, tab, text) on stdout
 * among the YAML; they are taken out and returned as warnings. A generation
 * is cached by the digest of istioctl's version and the IstioOperator.
 *
 * istioctl's version is asked once per binary: the answer is kept in the
 * user's cache folder under the binary's path, device, inode, size and
 * modification and change times (any of them different, a new binary: asked
 * again). Starting istioctl to ask cost ~40 ms of CPU, a tenth of a no-op
 * `up` of two clusters.
 */
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { execFileBounded } from '../federation/transport.js';
import type { KubeObject } from '../render/types.js';
import { parseManifests } from './upstream.js';

export class IstioctlError extends Error {
  override name = 'IstioctlError';
}

const LOG_LINE = /^\d{4}-\d\d-\d\dT[\d:.]+Z?\t(\w+)\t(.*)$/;

/** Splits istioctl's stdout into the YAML and its log lines. */
export function splitIstioctlOutput(stdout: string): {
  yaml: string;
  logs: Array<{ level: string; text: string }>;
} {
  const logs: Array<{ level: string; text: string }> = [];
  const yaml: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = LOG_LINE.exec(line);
    if (m) logs.push({ level: m[1]!, text: m[2]! });
    else yaml.push(line);
  }
  return { yaml: yaml.join('\n'), logs };
}

export interface Istioctl {
  path: string;
  version: string;
}

/** The istioctl at `path` and its client version (`istioctl version --remote=false`), from `cacheDir` when this binary was asked before. */
export async function findIstioctl(path: string, o: { cacheDir?: string } = {}): Promise<Istioctl> {
  // A bare name is looked up on the PATH istioctl is started with (execFileBounded's: this process's).
  const memo = o.cacheDir ? versionMemo(path, o.cacheDir, process.env) : undefined;
  const known = memo?.read();
  if (known) return { path, version: known };
  const version = await askVersion(path);
  memo?.write(version);
  return { path, version };
}

async function askVersion(path: string): Promise<string> {
  const home = mkdtempSync(join(tmpdir(), 'meshfed-istioctl-'));
  try {
    const r = await execFileBounded(path, ['version', '--remote=false', '--short'], {
      timeoutMs: 30_000,
      env: { HOME: home },
    }).catch((e: Error) => {
      throw new IstioctlError(
        `cannot run istioctl (${path}): ${e.message}; give its path with --istioctl or $MESHFED_ISTIOCTL`,
      );
    });
    if (r.code !== 0) throw new IstioctlError(`${path} version failed: ${r.stderr.trim().slice(0, 300)}`);
    return (
      r.stdout
        .trim()
        .split('\n')
        .pop()
        ?.replace(/^client version:\s*/i, '') ?? 'unknown'
    );
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/**
 * The file a bare name runs, as the shell finds it on PATH; undefined when
 * none is found, or when PATH has a relative folder (which file that names
 * depends on where the run is): then istioctl is asked every time.
 */
function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  if (name.includes('/')) return resolve(name);
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir || !isAbsolute(dir)) return undefined;
    const p = join(dir, name);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

/**
 * The version of the binary `path` names, kept under what identifies its
 * file (path, device, inode, size, mtime, ctime: a rebuilt, replaced or
 * touched binary is asked again). Reading or writing the memo never fails a
 * run: at worst istioctl is asked.
 */
function versionMemo(path: string, cacheDir: string, env: NodeJS.ProcessEnv) {
  const file = onPath(path, env);
  const identity = (): string | undefined => {
    if (!file) return undefined;
    try {
      const st = statSync(file, { bigint: true });
      return [file, st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs].join(' ');
    } catch {
      return undefined;
    }
  };
  const id = identity();
  const memoFile = id
    ? join(cacheDir, 'istioctl', `${createHash('sha256').update(file!).digest('hex').slice(0, 32)}.json`)
    : undefined;
  return {
    read(): string | undefined {
      if (!memoFile) return undefined;
      try {
        const m = JSON.parse(readFileSync(memoFile, 'utf8')) as { identity?: unknown; version?: unknown };
        return m.identity === id && typeof m.version === 'string' ? m.version : undefined;
      } catch {
        return undefined;
      }
    },
    write(version: string): void {
      // The binary must be the one that answered: one replaced meanwhile is not remembered.
      if (!memoFile || identity() !== id) return;
      try {
        mkdirSync(join(cacheDir, 'istioctl'), { recursive: true });
        writeFileSync(`${memoFile}.${process.pid}.tmp`, JSON.stringify({ identity: id, version }));
        renameSync(`${memoFile}.${process.pid}.tmp`, memoFile);
      } catch {
        // a memo that cannot be written costs a run of istioctl, not correctness
      }
    },
  };
}

export interface Generated {
  objects: KubeObject[];
  warnings: string[];
  cached: boolean;
}

/**
 * The generations of this process, by istioctl, operator and cache folder:
 * `up` starts each cluster's at the start of its run (`prefetchIstio`), and
 * its istio phase takes the same promise, finished or not. Their objects are
 * never changed by the engine (what it sends is built as copies).
 */
const generations = new Map<string, Promise<Generated>>();

/** `istioctl manifest generate` of `operator`, once per process, and from `o.cacheDir` when generated before. */
export function generateIstio(
  istioctl: Istioctl,
  operator: KubeObject,
  o: { cacheDir?: string } = {},
): Promise<Generated> {
  // Keyed by the operator's JSON (as rendered, in its order): printing it as YAML is left to a generation.
  const key = createHash('sha256')
    .update(`${istioctl.version}\njson\n${JSON.stringify(operator)}`)
    .digest('hex')
    .slice(0, 32);
  const memo = JSON.stringify([istioctl.path, key, o.cacheDir ?? null]);
  let g = generations.get(memo);
  if (!g) {
    g = generate(istioctl, operator, key, o.cacheDir);
    generations.set(memo, g);
    // A failure is not kept: the next ask runs istioctl again, and says why itself.
    g.catch(() => generations.delete(memo));
  }
  return g;
}

async function generate(
  istioctl: Istioctl,
  operator: KubeObject,
  key: string,
  cacheDir: string | undefined,
): Promise<Generated> {
  const cacheFile = cacheDir ? join(cacheDir, `istio-${key}.json`) : undefined;
  if (cacheFile && existsSync(cacheFile)) {
    const c = JSON.parse(readFileSync(cacheFile, 'utf8')) as { objects: KubeObject[]; warnings: string[] };
    return { ...c, cached: true };
  }
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-istio-'));
  try {
    writeFileSync(join(dir, 'iop.yaml'), stringify(operator));
    const r = await execFileBounded(istioctl.path, ['manifest', 'generate', '-f', join(dir, 'iop.yaml')], {
      timeoutMs: 120_000,
      maxBytes: 64 << 20,
      env: { HOME: dir },
    });
    const { yaml, logs } = splitIstioctlOutput(r.stdout);
    const errLogs = splitIstioctlOutput(r.stderr).logs;
    if (r.code !== 0)
      throw new IstioctlError(
        `istioctl ${istioctl.version} manifest generate for ${operator.metadata.name} failed: ${r.stderr.trim().slice(0, 500)}`,
      );
    const warnings = [...logs, ...errLogs]
      .filter((l) => l.level === 'warn' || l.level === 'error')
      .map((l) => `istioctl: ${l.text}`);
    const objects = parseManifests(yaml, `istioctl ${istioctl.version} manifest generate`);
    if (cacheFile) {
      mkdirSync(cacheDir!, { recursive: true });
      writeFileSync(cacheFile, JSON.stringify({ objects, warnings }));
    }
    return { objects, warnings, cached: false };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
