/**
 * Node's module compile cache (node:module enableCompileCache, Node ≥ 22.1):
 * V8's compiled code of meshfed and its dependencies, kept between runs in
 * the user's cache folder ($XDG_CACHE_HOME/meshfed/compile, else
 * ~/.cache/meshfed/compile), never inside the package, which may be
 * read-only and is shared. Node keys it by its version and each file's
 * content, so a new build or a new Node reads nothing stale. Where Node has
 * no compile cache, or the folder cannot be written, nothing happens; a
 * cache the user set (NODE_COMPILE_CACHE) is left as it is, and
 * NODE_DISABLE_COMPILE_CACHE turns it off.
 */
import * as nodeModule from 'node:module';
import { join } from 'node:path';

export function compileCacheDir(env: NodeJS.ProcessEnv, home: string): string {
  return join(env.XDG_CACHE_HOME || join(home, '.cache'), 'meshfed', 'compile');
}

/** Turns the compile cache on; returns Node's status name, or 'unavailable'. */
export function startupCache(env: NodeJS.ProcessEnv, home: string): string {
  const enable = (nodeModule as { enableCompileCache?: (dir?: string) => { status: number } })
    .enableCompileCache;
  if (!enable || env.NODE_DISABLE_COMPILE_CACHE) return 'unavailable';
  try {
    const { status } = enable(env.NODE_COMPILE_CACHE || compileCacheDir(env, home));
    const names = (nodeModule as { constants?: { compileCacheStatus?: Record<string, number> } }).constants
      ?.compileCacheStatus;
    return Object.entries(names ?? {}).find(([, v]) => v === status)?.[0] ?? String(status);
  } catch {
    return 'unavailable';
  }
}
