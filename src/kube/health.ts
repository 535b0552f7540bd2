/**
 * Health of a Kubernetes object, as a pure function of the object the API
 * server returned (or its absence). The rules follow kubectl's rollout status
 * for workloads and the objects' own conditions elsewhere:
 *
 * - every workload check first compares metadata.generation with
 *   status.observedGeneration: a status the controller has not caught up
 *   with says nothing about the spec just applied;
 * - Deployment: updated, then not-old, then available replicas; a
 *   ProgressDeadlineExceeded condition is Degraded;
 * - StatefulSet: ready and updated replicas, the update revision current
 *   (RollingUpdate with a partition counts only the pods above it);
 * - DaemonSet: updated and available pods on every scheduled node;
 * - CustomResourceDefinition: Established; cert-manager Certificates and
 *   issuers: their Ready condition (for the generation observed);
 * - Service of type LoadBalancer: an ingress ip or hostname;
 * - everything else: Healthy once it exists.
 *
 * Each result says what is still pending, in words, so a wait can show it
 * and a timeout can name it.
 */

export type HealthStatus = 'Healthy' | 'Progressing' | 'Degraded' | 'Missing' | 'Unknown';

/** Worst first: a set of objects is as healthy as its worst member. */
const RANK: Record<HealthStatus, number> = {
  Degraded: 0,
  Missing: 1,
  Unknown: 2,
  Progressing: 3,
  Healthy: 4,
};

export interface Health {
  status: HealthStatus;
  /** What is pending or wrong ("2 of 3 updated replicas are available"); empty when Healthy. */
  message: string;
}

export function worst(hs: Health[]): Health {
  return hs.reduce<Health>((w, h) => (RANK[h.status] < RANK[w.status] ? h : w), {
    status: 'Healthy',
    message: '',
  });
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
}

/** The shape of the objects health reads (a superset of every kind's fields it looks at). */
export interface ObjectState {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; generation?: number; deletionTimestamp?: string };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

const healthy: Health = { status: 'Healthy', message: '' };
const progressing = (message: string): Health => ({ status: 'Progressing', message });
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

function conditions(o: ObjectState): Condition[] {
  const c = o.status?.conditions;
  return Array.isArray(c) ? (c as Condition[]) : [];
}

function generationObserved(o: ObjectState): Health | undefined {
  const generation = o.metadata?.generation;
  const observed = o.status?.observedGeneration;
  if (generation !== undefined && (typeof observed !== 'number' || observed < generation))
    return progressing(`waiting for the controller to observe generation ${generation}`);
  return undefined;
}

function deployment(o: ObjectState): Health {
  const pending = generationObserved(o);
  if (pending) return pending;
  const s = o.status ?? {};
  const cond = conditions(o).find((c) => c.type === 'Progressing');
  if (cond?.reason === 'ProgressDeadlineExceeded')
    return {
      status: 'Degraded',
      message: `rollout exceeded its progress deadline: ${cond.message ?? ''}`.trim(),
    };
  const want = typeof o.spec?.replicas === 'number' ? o.spec.replicas : 1;
  const updated = num(s.updatedReplicas);
  if (updated < want) return progressing(`${updated} of ${want} new replicas updated`);
  if (num(s.replicas) > updated)
    return progressing(`${num(s.replicas) - updated} old replicas pending termination`);
  if (num(s.availableReplicas) < updated)
    return progressing(`${num(s.availableReplicas)} of ${updated} updated replicas available`);
  return healthy;
}

function statefulSet(o: ObjectState): Health {
  const pending = generationObserved(o);
  if (pending) return pending;
  const s = o.status ?? {};
  const want = typeof o.spec?.replicas === 'number' ? o.spec.replicas : 1;
  if (num(s.readyReplicas) < want) return progressing(`${num(s.readyReplicas)} of ${want} pods ready`);
  const strategy = o.spec?.updateStrategy as
    | { type?: string; rollingUpdate?: { partition?: number } }
    | undefined;
  if (strategy?.type === 'OnDelete') return healthy;
  const partition = strategy?.rollingUpdate?.partition ?? 0;
  if (partition > 0) {
    const above = want - partition;
    if (num(s.updatedReplicas) < above)
      return progressing(`${num(s.updatedReplicas)} of ${above} pods above partition ${partition} updated`);
    return healthy;
  }
  if (s.updateRevision !== undefined && s.currentRevision !== s.updateRevision)
    return progressing(`${num(s.updatedReplicas)} of ${want} pods at revision ${String(s.updateRevision)}`);
  return healthy;
}

function daemonSet(o: ObjectState): Health {
  const pending = generationObserved(o);
  if (pending) return pending;
  const s = o.status ?? {};
  const want = num(s.desiredNumberScheduled);
  if (num(s.updatedNumberScheduled) < want)
    return progressing(`${num(s.updatedNumberScheduled)} of ${want} updated pods scheduled`);
  if (num(s.numberAvailable) < want)
    return progressing(`${num(s.numberAvailable)} of ${want} updated pods available`);
  return healthy;
}

function condition(o: ObjectState, type: string, generationAware: boolean): Health {
  const c = conditions(o).find((x) => x.type === type);
  if (!c) return progressing(`no ${type} condition yet`);
  const generation = o.metadata?.generation;
  if (
    generationAware &&
    generation !== undefined &&
    c.observedGeneration !== undefined &&
    c.observedGeneration < generation
  )
    return progressing(`${type} is for generation ${c.observedGeneration}, not ${generation}`);
  if (c.status === 'True') return healthy;
  const why = [c.reason, c.message].filter(Boolean).join(': ');
  // cert-manager marks a Certificate that failed to issue with Issuing=False and reason Failed.
  if (c.status === 'False' && /Fail|Error|Invalid/i.test(c.reason ?? ''))
    return { status: 'Degraded', message: `${type} is False${why ? ` (${why})` : ''}` };
  return progressing(`${type} is ${c.status}${why ? ` (${why})` : ''}`);
}

function service(o: ObjectState): Health {
  if (o.spec?.type !== 'LoadBalancer') return healthy;
  const ingress = (
    o.status?.loadBalancer as { ingress?: Array<{ ip?: string; hostname?: string }> } | undefined
  )?.ingress;
  if (ingress?.some((i) => i.ip || i.hostname)) return healthy;
  return progressing('waiting for a load balancer address');
}

const CERT_MANAGER_READY = new Set(['Certificate', 'Issuer', 'ClusterIssuer', 'CertificateRequest']);

/** Health of `o`, or Missing when the API server has no such object. */
export function healthOf(o: ObjectState | undefined): Health {
  if (!o) return { status: 'Missing', message: 'not found' };
  if (o.metadata?.deletionTimestamp) return progressing('being deleted');
  const group = (o.apiVersion ?? '').split('/').slice(0, -1).join('/');
  switch (o.kind) {
    case 'Deployment':
      return deployment(o);
    case 'StatefulSet':
      return statefulSet(o);
    case 'DaemonSet':
      return daemonSet(o);
    case 'CustomResourceDefinition':
      return condition(o, 'Established', false);
    case 'Service':
      return service(o);
    default:
      if (group === 'cert-manager.io' && CERT_MANAGER_READY.has(o.kind ?? ''))
        return condition(o, 'Ready', true);
      return healthy;
  }
}
