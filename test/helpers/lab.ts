/**
 * Lab-dependent tests call `requireLab` with the files they need. Outside CI a
 * missing lab is a skip with the command that builds it; in CI (where
 * MESHFED_REQUIRE_LAB=1) it is a failure, so CI can never pass by skipping.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const REPO_ROOT = new URL('../../../', import.meta.url).pathname;
export const LAB_DIR = join(REPO_ROOT, '.lab');

/**
 * Returns undefined when every path (relative to .lab/) exists, else the skip
 * reason. Throws instead when MESHFED_REQUIRE_LAB=1.
 */
export function requireLab(paths: string[], buildCommand: string): string | undefined {
  const missing = paths.filter((p) => !existsSync(join(LAB_DIR, p)));
  if (missing.length === 0) return undefined;
  const reason = `lab not built: missing .lab/${missing.join(', .lab/')}; run \`${buildCommand}\` (CI does)`;
  if (process.env.MESHFED_REQUIRE_LAB === '1') throw new Error(reason);
  return reason;
}
