/**
 * FleetRender → files: one folder per cluster, one file per phase in apply
 * order, a kustomization.yaml per cluster. Pure: returns path → content, so
 * the CLI alone writes. Same input, byte-identical output.
 */
import { stringify } from 'yaml';
import type { ClusterRender, FleetRender, KubeObject, PendingInput } from './types.js';
import { PHASES } from './types.js';

export type RenderedFiles = Map<string, string>;

const YAML_OPTS = { lineWidth: 0, aliasDuplicateObjects: false } as const;

export function toYamlStream(objects: KubeObject[]): string {
  return objects.map((o) => stringify(o, YAML_OPTS)).join('---\n');
}

export function phaseFileName(phase: string): string {
  return `${String((PHASES.indexOf(phase as never) + 1) * 10).padStart(2, '0')}-${phase}.yaml`;
}

export function clusterFiles(c: ClusterRender): RenderedFiles {
  const files: RenderedFiles = new Map();
  const resources: string[] = [];
  for (const p of c.phases) {
    for (const u of p.upstream) resources.push(u.url);
    const header = [`# meshfed: cluster ${c.cluster} (context ${c.context}), phase ${p.phase}`];
    for (const u of p.upstream) header.push(`# applied first: ${u.name} ${u.version} from ${u.url}`);
    if (p.objects.length > 0) {
      const name = phaseFileName(p.phase);
      files.set(`${c.cluster}/${name}`, `${header.join('\n')}\n${toYamlStream(p.objects)}`);
      resources.push(name);
    }
    if (p.generatorInputs.length > 0) {
      const name = phaseFileName(p.phase).replace(/\.yaml$/, '.operator.yaml');
      files.set(
        `${c.cluster}/${name}`,
        `# meshfed: input to \`istioctl manifest generate -f ${name}\`, not applied directly\n${toYamlStream(p.generatorInputs)}`,
      );
    }
  }
  files.set(
    `${c.cluster}/kustomization.yaml`,
    stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources }, YAML_OPTS),
  );
  return files;
}

export function fleetFiles(r: FleetRender): RenderedFiles {
  const files: RenderedFiles = new Map();
  for (const c of r.clusters) for (const [k, v] of clusterFiles(c)) files.set(k, v);
  return files;
}

/** One YAML stream of everything, with a comment before each cluster and phase. */
export function fleetStream(r: FleetRender): string {
  const parts: string[] = [];
  for (const c of r.clusters)
    for (const p of c.phases)
      for (const o of [...p.objects, ...p.generatorInputs])
        parts.push(`# cluster: ${c.cluster}, phase: ${p.phase}\n${stringify(o, YAML_OPTS)}`);
  return parts.join('---\n');
}

export function allPending(r: FleetRender): Array<PendingInput & { forCluster: string; phase: string }> {
  return r.clusters.flatMap((c) =>
    c.phases.flatMap((p) => p.pending.map((x) => ({ ...x, forCluster: c.cluster, phase: p.phase }))),
  );
}
