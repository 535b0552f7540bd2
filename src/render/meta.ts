/**
 * Labels and annotations every object meshfed renders carries, so that `down`
 * and `plan` can prove what meshfed owns (together with its field manager).
 */
import type { KubeObject, PhaseName } from './types.js';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'meshfed';
export const FLEET_LABEL = 'meshfed.dev/fleet';
export const PHASE_LABEL = 'meshfed.dev/phase';
export const FIELD_MANAGER = 'meshfed';
/**
 * Set on every object meshfed created (it was absent when meshfed applied it):
 * `down` deletes only objects carrying it, meshfed's labels and meshfed's
 * field manager. Objects that existed before are co-managed, never deleted.
 */
export const CREATED_ANNOTATION = 'meshfed.dev/created';

/** Returns a copy of `obj` with meshfed's ownership labels merged into its metadata. */
export function withOwnership(obj: KubeObject, fleet: string, phase: PhaseName): KubeObject {
  return {
    ...obj,
    metadata: {
      ...obj.metadata,
      labels: {
        ...obj.metadata.labels,
        [MANAGED_BY_LABEL]: MANAGED_BY,
        [FLEET_LABEL]: fleet,
        [PHASE_LABEL]: phase,
      },
    },
  };
}

/** "Kind/namespace/name" or "Kind/name" for messages and pending lists. */
export function objectRef(obj: KubeObject): string {
  const ns = obj.metadata.namespace;
  return ns ? `${obj.kind}/${ns}/${obj.metadata.name}` : `${obj.kind}/${obj.metadata.name}`;
}
