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
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

/** The istioctl at `path` and its client version (`istioctl version --remote=false`). */
export async function findIstioctl(path: string): Promise<Istioctl> {
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
    const version =
      r.stdout
        .trim()
        .split('\n')
        .pop()
        ?.replace(/^client version:\s*/i, '') ?? 'unknown';
    return { path, version };
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

export interface Generated {
  objects: KubeObject[];
  warnings: string[];
  cached: boolean;
}

export async function generateIstio(
  istioctl: Istioctl,
  operator: KubeObject,
  o: { cacheDir?: string } = {},
): Promise<Generated> {
  const iop = stringify(operator);
  const key = createHash('sha256').update(`${istioctl.version}\n${iop}`).digest('hex').slice(0, 32);
  const cacheFile = o.cacheDir ? join(o.cacheDir, `istio-${key}.json`) : undefined;
  if (cacheFile && existsSync(cacheFile)) {
    const c = JSON.parse(readFileSync(cacheFile, 'utf8')) as { objects: KubeObject[]; warnings: string[] };
    return { ...c, cached: true };
  }
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-istio-'));
  try {
    writeFileSync(join(dir, 'iop.yaml'), iop);
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
      mkdirSync(o.cacheDir!, { recursive: true });
      writeFileSync(cacheFile, JSON.stringify({ objects, warnings }));
    }
    return { objects, warnings, cached: false };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
