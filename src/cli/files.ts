/**
 * Every file meshfed reads from the user (fleet files, kubeconfigs, `certs`
 * inputs and bundles, `report --from` results) and every file it writes
 * (`render -o`, `report --out`, `init -o`) goes through here, so that:
 *
 * - a read is bounded: at most `limit` bytes are ever held (a device like
 *   /dev/zero, a FIFO or a huge file stops at the limit, and the error names
 *   it); only regular files, FIFOs and character devices are read;
 * - a read or write that cannot happen (a directory, no permission, a path
 *   under /proc) is a UsageError (exit 2) naming the path, the reason and
 *   what to do, never a raw errno and never a loop;
 * - directories are made one level at a time (no `recursive`, which spins
 *   on some pseudo-filesystems).
 */
import {
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type CliIO, UsageError } from './io.js';

/** Size limits of what meshfed reads, by input. Each is far above any real input of its kind. */
export const INPUT_LIMITS = {
  fleet: 512 << 10,
  kubeconfig: 4 << 20,
  certs: 16 << 20,
  bundle: 1 << 20,
  results: 16 << 20,
} as const;

export type InputKind = keyof typeof INPUT_LIMITS;

const REASONS: Record<string, string> = {
  ENOENT: 'it does not exist',
  EISDIR: 'it is a directory',
  ENOTDIR: 'a part of its path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'the path is too long',
  ENOSPC: 'no space left on the device',
  EEXIST: 'a file is in the way',
  EBUSY: 'the file is busy',
  EINVAL: 'the file system refuses it',
};

/** "permission denied (EACCES)", for an error from node:fs. */
export function fsReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code) return `${REASONS[code] ?? 'the operating system refused'} (${code})`;
  return e instanceof Error ? e.message : String(e);
}

function tooLarge(label: string, kind: InputKind): UsageError {
  return new UsageError(
    `${label} is larger than the ${INPUT_LIMITS[kind]} bytes meshfed reads as a ${kind} input; give the right file (a ${kind} input is far smaller)`,
  );
}

/** The bytes of `path` as UTF-8 text, at most INPUT_LIMITS[kind] of them. */
export function readInputFile(path: string, label: string, kind: InputKind): string {
  const limit = INPUT_LIMITS[kind];
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new UsageError(`cannot read ${label}: ${fsReason(e)}; give a readable ${kind} file`);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory())
      throw new UsageError(`cannot read ${label}: it is a directory; give a ${kind} file`);
    if (!st.isFile() && !st.isFIFO() && !st.isCharacterDevice())
      throw new UsageError(`cannot read ${label}: not a regular file; give a ${kind} file`);
    if (st.isFile() && st.size > limit) throw tooLarge(label, kind);
    // One byte more than the limit tells "exactly at the limit" from "beyond it".
    const buf = Buffer.allocUnsafe(Math.min(limit + 1, st.isFile() ? st.size + 1 : limit + 1));
    let n = 0;
    while (n < buf.length) {
      let got: number;
      try {
        got = readSync(fd, buf, n, buf.length - n, null);
      } catch (e) {
        if (e instanceof UsageError) throw e;
        throw new UsageError(`cannot read ${label}: ${fsReason(e)}; give a readable ${kind} file`);
      }
      if (got === 0) break;
      n += got;
    }
    if (n > limit) throw tooLarge(label, kind);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** A file argument (`-` for standard input), resolved against the working directory, read bounded. */
export async function readInput(arg: string, io: CliIO, kind: InputKind): Promise<string> {
  if (arg === '-') {
    const text = await io.readStdin(INPUT_LIMITS[kind]);
    if (Buffer.byteLength(text) > INPUT_LIMITS[kind]) throw tooLarge('standard input', kind);
    return text;
  }
  return readInputFile(resolve(io.cwd, arg), arg, kind);
}

/** Makes `dir` and its missing parents, one level at a time; UsageError when it cannot. */
export function ensureOutputDir(dir: string, label: string): void {
  const missing: string[] = [];
  let at = dir;
  for (;;) {
    let isDir: boolean | undefined;
    try {
      isDir = statSync(at).isDirectory();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new UsageError(`cannot write ${label}: ${at}: ${fsReason(e)}; choose another output path`);
    }
    if (isDir === false)
      throw new UsageError(
        `cannot write ${label}: ${at} is a file, not a directory; choose another output path`,
      );
    if (isDir) break;
    missing.unshift(at);
    const up = dirname(at);
    if (up === at) break;
    at = up;
  }
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (e) {
      throw new UsageError(
        `cannot write ${label}: cannot make ${d}: ${fsReason(e)}; choose another output path`,
      );
    }
  }
}

/** Writes `content` to `path` through a temporary file beside it (a reader never sees half a file). */
export function writeOutputFile(path: string, content: string, label: string): void {
  ensureOutputDir(dirname(path), label);
  try {
    writeFileSync(`${path}.tmp`, content);
    renameSync(`${path}.tmp`, path);
  } catch (e) {
    throw new UsageError(`cannot write ${label}: ${path}: ${fsReason(e)}; choose another output path`);
  }
}
