/**
 * Pure rendering of a fleet into per-cluster, per-phase objects.
 *
 * Contract: `renderFleet` is deterministic and side-effect free. Objects that
 * depend on values not yet known (peers' bundle endpoint addresses) are held
 * back and reported in `pending`; nothing is ever rendered with a placeholder.
 */
import { type Fleet, peersOf } from '../fleet/model.js';
import { renderApps } from './apps.js';
import { renderCertManager } from './cert-manager.js';
import { renderFederation } from './federation.js';
import { renderIstio } from './istio.js';
import { withOwnership } from './meta.js';
import { renderNamespaces } from './namespaces.js';
import { renderSpire } from './spire.js';
import type {
  ClusterRender,
  FleetRender,
  PhaseName,
  PhaseOutput,
  PhaseRender,
  RenderContext,
  RenderInputs,
} from './types.js';

const PHASE_RENDERERS: ReadonlyArray<[PhaseName, (ctx: RenderContext) => PhaseOutput]> = [
  ['namespaces', renderNamespaces],
  ['cert-manager', renderCertManager],
  ['spire', renderSpire],
  ['federation', renderFederation],
  ['istio', renderIstio],
  ['apps', renderApps],
];

export function renderCluster(fleet: Fleet, clusterName: string, inputs: RenderInputs = {}): ClusterRender {
  const cluster = fleet.clusters.find((c) => c.name === clusterName);
  if (!cluster) throw new Error(`no cluster named "${clusterName}" in fleet ${fleet.name}`);
  const ctx: RenderContext = { fleet, cluster, peers: peersOf(fleet, cluster.name), inputs };
  const phases: PhaseRender[] = PHASE_RENDERERS.map(([phase, render]) => {
    const out = render(ctx);
    return {
      phase,
      objects: (out.objects ?? []).map((o) => withOwnership(o, fleet.name, phase)),
      upstream: out.upstream ?? [],
      generatorInputs: out.generatorInputs ?? [],
      pending: out.pending ?? [],
    };
  });
  return { cluster: cluster.name, context: cluster.context, phases };
}

export function renderFleet(fleet: Fleet, inputs: RenderInputs = {}): FleetRender {
  return {
    fleet: fleet.name,
    profile: fleet.profile,
    clusters: fleet.clusters.map((c) => renderCluster(fleet, c.name, inputs)),
  };
}

export type * from './types.js';
