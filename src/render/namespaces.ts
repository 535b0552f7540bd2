/**
 * Phase "namespaces": the namespaces every later phase writes into, with the
 * labels Istio reads (network on istio-system, injection on app namespaces),
 * and the CRDs SPIRE registration needs, referenced from upstream by version.
 */
import { APP_NAMESPACES, appsInCluster } from './apps.js';
import type { KubeObject, PhaseOutput, RenderContext, UpstreamManifest } from './types.js';

export const SPIRE_NAMESPACE = 'spire';
export const ISTIO_NAMESPACE = 'istio-system';

function namespace(name: string, labels: Record<string, string> = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}

/** spire-controller-manager's CRDs (current) or the registrar's SpiffeID CRD (seed), as published upstream. */
export function registrationCrds(ctx: RenderContext): UpstreamManifest[] {
  const v = ctx.fleet.versions;
  if (v.registrar === 'spire-controller-manager') {
    const base = `https://raw.githubusercontent.com/spiffe/spire-controller-manager/v${v.registrarVersion}/config/crd/bases`;
    return ['clusterspiffeids', 'clusterfederatedtrustdomains', 'clusterstaticentries'].map((plural) => ({
      name: `spire-controller-manager CRD ${plural}`,
      version: v.registrarVersion,
      url: `${base}/spire.spiffe.io_${plural}.yaml`,
    }));
  }
  return [
    {
      name: 'k8s-workload-registrar CRD spiffeids',
      version: v.spire,
      url: `https://raw.githubusercontent.com/spiffe/spire/v${v.spire}/support/k8s/k8s-workload-registrar/mode-crd/config/spiffeid.spiffe.io_spiffeids.yaml`,
    },
  ];
}

export function renderNamespaces(ctx: RenderContext): PhaseOutput {
  const objects = [
    namespace(SPIRE_NAMESPACE),
    namespace(ISTIO_NAMESPACE, { 'topology.istio.io/network': ctx.cluster.network }),
    ...appsInCluster(ctx).map((app) => namespace(APP_NAMESPACES[app], { 'istio-injection': 'enabled' })),
  ];
  return { objects, upstream: registrationCrds(ctx) };
}
