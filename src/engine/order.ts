/**
 * The order objects are applied in within a phase, and deleted in (the
 * reverse): definitions before what uses them, identities and config before
 * workloads, admission webhooks last (so that no webhook is called before its
 * backend exists). Within a rank the input order is kept.
 */
import type { KubeObject } from '../render/types.js';

const RANKS: Record<string, number> = {
  Namespace: 0,
  CustomResourceDefinition: 1,
  PriorityClass: 2,
  StorageClass: 2,
  CSIDriver: 2,
  ServiceAccount: 3,
  Secret: 3,
  ConfigMap: 3,
  ClusterRole: 4,
  Role: 4,
  ClusterRoleBinding: 5,
  RoleBinding: 5,
  Service: 6,
  PodDisruptionBudget: 7,
  Deployment: 7,
  StatefulSet: 7,
  DaemonSet: 7,
  HorizontalPodAutoscaler: 8,
  MutatingWebhookConfiguration: 10,
  ValidatingWebhookConfiguration: 10,
};

/** Custom resources (rank 9) come after every built-in kind but before webhooks. */
export function kindRank(kind: string): number {
  return RANKS[kind] ?? 9;
}

/** Groups objects by rank, in apply order; each group may be applied in parallel. */
export function applyWaves<T extends Pick<KubeObject, 'kind'>>(objects: T[]): T[][] {
  const byRank = new Map<number, T[]>();
  for (const o of objects) {
    const r = kindRank(o.kind);
    byRank.set(r, [...(byRank.get(r) ?? []), o]);
  }
  return [...byRank.entries()].sort((a, b) => a[0] - b[0]).map(([, list]) => list);
}

export { mapLimit } from '../fleet/concurrency.js';
