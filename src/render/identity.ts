/**
 * How a pod asks for a SPIRE identity, in one place so that the SPIRE
 * registration objects, the Istio gateways and the demo apps agree.
 *
 * current profile (spire-controller-manager): a ClusterSPIFFEID selects pods by
 *   the label below and lists the peers' trust domains in `federatesWith`.
 * seed profile (k8s-workload-registrar, CRD mode): the registrar reads the pod
 *   annotation `spiffe.io/federatesWith` (comma-separated trust domains).
 * Both: Istio's `spire` injection template is requested by annotation, and the
 * SPIFFE ID is spiffe://<trust domain>/ns/<namespace>/sa/<service account>,
 * the only shape Istio accepts.
 */
import type { RenderContext } from './types.js';

export const SPIRE_MANAGED_LABEL = 'spiffe.io/spire-managed-identity';
export const FEDERATES_WITH_ANNOTATION = 'spiffe.io/federatesWith';
export const INJECT_TEMPLATES_ANNOTATION = 'inject.istio.io/templates';
/** Where Istio's proxies look for the SPIFFE Workload API socket. */
export const WORKLOAD_SOCKET_DIR = '/run/secrets/workload-spiffe-uds';
export const CSI_DRIVER = 'csi.spiffe.io';

/** Trust domains of the peers this cluster federates with, in fleet order. */
export function peerTrustDomains(ctx: RenderContext): string[] {
  return ctx.peers.map((p) => p.trustDomain);
}

/** Labels and annotations a meshed pod template carries to get a federated SPIRE identity. */
export function workloadIdentityMeta(
  ctx: RenderContext,
  opts: { injectTemplates?: boolean } = { injectTemplates: true },
): { labels: Record<string, string>; annotations: Record<string, string> } {
  const annotations: Record<string, string> = {};
  if (opts.injectTemplates !== false) annotations[INJECT_TEMPLATES_ANNOTATION] = 'sidecar,spire';
  const peers = peerTrustDomains(ctx);
  if (ctx.fleet.versions.registrar === 'k8s-workload-registrar' && peers.length > 0) {
    annotations[FEDERATES_WITH_ANNOTATION] = peers.join(',');
  }
  return { labels: { [SPIRE_MANAGED_LABEL]: 'true' }, annotations };
}

/** The SPIFFE ID Istio expects for a workload. */
export function workloadSpiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}
