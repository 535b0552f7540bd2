/**
 * Where the lab's upstream programs are: built by `npm run lab:build` into
 * .lab/bin/<component>/<version>/ of the meshfed checkout, or under
 * $MESHFED_LAB_BIN/<component>/<version>/ when that is set.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const REPO_ROOT = new URL('../../../', import.meta.url).pathname;

export function labBinRoot(): string {
  return process.env.MESHFED_LAB_BIN ?? join(REPO_ROOT, '.lab', 'bin');
}

export function labBinDir(component: string, version: string): string {
  return join(labBinRoot(), component, version);
}

export class LabNotBuiltError extends Error {
  override name = 'LabNotBuiltError';
}

/** The folder of a component's binaries, or a clear error naming the command that builds them. */
export function requireLabBinaries(component: string, version: string, programs: string[]): string {
  const dir = labBinDir(component, version);
  const missing = programs.filter((p) => !existsSync(join(dir, p)));
  if (missing.length)
    throw new LabNotBuiltError(
      `${component} ${version} is not built (${missing.map((m) => join(dir, m)).join(', ')} missing): run \`npm run lab:build\``,
    );
  return dir;
}

/**
 * The istioctl the lab builds for each profile's Istio release. The Go module
 * proxy serves no 1.30.x commit whose dependencies all verify, so the current
 * profile's manifests come from the newest development build it serves
 * (1.32-dev, pinned to the profile's image tag by the IstioOperator); see docs/lab.md.
 */
export const LAB_ISTIO_BUILDS: Readonly<Record<string, string>> = {
  '1.22.1': '1.22.1',
  '1.30.5': '1.32-dev',
};
