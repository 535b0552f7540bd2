/**
 * What the lab's clusters serve before `meshfed up`: the CRDs of cert-manager
 * and of the profile's registrar (spire-controller-manager, or the seed's
 * k8s-workload-registrar), from the releases the lab builds (copied by
 * `npm run lab:build`); their controllers run in their pods, from what
 * `meshfed up` applies (the lab node agent). Also the lab's wait for a
 * daemon of its own to be ready.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { execFileBounded } from '../federation/transport.js';
import { type DaemonRecord, daemonAlive, logTail } from './daemon.js';

/** cert-manager v1.11 is the newest whose controller builds from the Go module proxy (docs/lab.md). */
export const LAB_CERT_MANAGER_VERSION = '1.11.5';
export const LAB_SPIRE_CONTROLLER_MANAGER_VERSION = '0.7.0';

/**
 * CRD manifests of a release folder, made appliable: cert-manager ships its
 * CRDs as Helm templates whose labels are template expressions, which are
 * dropped here (the rest is plain YAML).
 */
export function crdManifests(dir: string): string {
  const docs: string[] = [];
  for (const f of readdirSync(dir)
    .filter((n) => n.endsWith('.yaml'))
    .sort()) {
    for (const d of parseAllDocuments(readFileSync(join(dir, f), 'utf8'))) {
      const o = d.toJS() as {
        kind?: string;
        metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
      } | null;
      if (o?.kind !== 'CustomResourceDefinition' || !o.metadata) continue;
      for (const key of ['labels', 'annotations'] as const) {
        const m = o.metadata[key];
        if (!m) continue;
        for (const [k, v] of Object.entries(m)) if (String(v).includes('{{')) delete m[k];
        if (Object.keys(m).length === 0) delete o.metadata[key];
      }
      docs.push(stringify(o, { lineWidth: 0 }));
    }
  }
  return docs.join('---\n');
}

/** Applies the lab's cluster-wide objects with the lab's kubectl (server-side, field manager meshfed-lab) and waits until its CRDs are Established. */
export async function installCrds(
  kubectl: string,
  kubeconfig: string,
  manifests: string,
  timeoutMs = 60_000,
): Promise<string[]> {
  const kc = ['--kubeconfig', kubeconfig];
  const apply = await execFileBounded(
    kubectl,
    [...kc, 'apply', '--server-side', '--field-manager=meshfed-lab', '-o', 'name', '-f', '-'],
    { stdin: manifests, timeoutMs },
  );
  if (apply.code !== 0) throw new Error(`applying the lab's CRDs: ${apply.stderr.trim()}`);
  const names = apply.stdout
    .trim()
    .split('\n')
    .filter((n) => n.startsWith('customresourcedefinition'));
  const wait = await execFileBounded(
    kubectl,
    [...kc, 'wait', '--for=condition=Established', `--timeout=${Math.round(timeoutMs / 1000)}s`, ...names],
    { timeoutMs: timeoutMs + 5000 },
  );
  if (wait.code !== 0) throw new Error(`the lab's CRDs did not become Established: ${wait.stderr.trim()}`);
  return names;
}

/**
 * Waits until `probe` holds, failing early (with the log's tail) when the
 * process has exited. Probes check that the daemon's own pid listens (procfs'
 * listensOn), not merely that something answers on its address.
 */
export async function waitDaemon(
  d: DaemonRecord,
  probe: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!daemonAlive(d)) throw new Error(`${d.name} exited while starting; its log ends:\n${logTail(d)}`);
    if (await probe()) return;
    if (Date.now() > deadline)
      throw new Error(`${d.name} not ready after ${timeoutMs} ms; its log ends:\n${logTail(d)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
