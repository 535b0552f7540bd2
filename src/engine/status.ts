/**
 * `meshfed status`: per cluster, per phase, the health of what meshfed owns
 * there (read from the cluster: inventory.ts), with the first thing still
 * pending, and the addresses peers use. Reads only.
 */
import { type Fleet, peersOf } from '../fleet/model.js';
import { type ClusterClient, describeRef, refOf } from '../kube/client.js';
import { type HealthStatus, healthOf, type ObjectState } from '../kube/health.js';
import { PHASE_LABEL } from '../render/meta.js';
import { ENGINE_PHASES, type EnginePhase } from './apply.js';
import { BUNDLE_ENDPOINT_SERVICE, currentAddress, EAST_WEST_SERVICE } from './discover.js';
import { ownedObjects } from './inventory.js';

export interface PhaseStatus {
  phase: EnginePhase;
  /** NotApplied: meshfed owns nothing of this phase in the cluster. */
  status: HealthStatus | 'NotApplied';
  objects: number;
  /** The first object not Healthy, and why. */
  pending?: string;
}

export interface ClusterStatus {
  cluster: string;
  context: string;
  reachable: boolean;
  error?: string;
  phases: PhaseStatus[];
  bundleEndpoint?: string;
  eastWestGateway?: string;
}

export interface FleetStatus {
  fleet: string;
  healthy: boolean;
  clusters: ClusterStatus[];
}

/** Whether a phase owns nothing in this cluster by design (seed federation is static config; no peers, no remote secrets). */
function emptyByDesign(fleet: Fleet, cluster: string, phase: EnginePhase): boolean {
  const peers = peersOf(fleet, cluster).length;
  if (phase === 'federation') return peers === 0 || fleet.versions.registrar !== 'spire-controller-manager';
  if (phase === 'remote-secrets') return peers === 0;
  return false;
}

export async function fleetStatus(fleet: Fleet, clients: Map<string, ClusterClient>): Promise<FleetStatus> {
  const clusters = await Promise.all(
    fleet.clusters.map(async (c): Promise<ClusterStatus> => {
      const client = clients.get(c.context)!;
      try {
        const owned = await ownedObjects(client, fleet.name);
        const phases = ENGINE_PHASES.map((phase): PhaseStatus => {
          const mine = owned.filter((x) => x.metadata.labels?.[PHASE_LABEL] === phase);
          if (!mine.length)
            return {
              phase,
              status: emptyByDesign(fleet, c.name, phase) ? 'Healthy' : 'NotApplied',
              objects: 0,
            };
          const bad = mine
            .map((x) => ({ x, h: healthOf(x as ObjectState) }))
            .filter((r) => r.h.status !== 'Healthy');
          const first = bad[0];
          return {
            phase,
            status: first ? first.h.status : 'Healthy',
            objects: mine.length,
            ...(first ? { pending: `${describeRef(refOf(first.x))}: ${first.h.message}` } : {}),
          };
        });
        const be = await currentAddress(client, BUNDLE_ENDPOINT_SERVICE);
        const ew = await currentAddress(client, EAST_WEST_SERVICE);
        return {
          cluster: c.name,
          context: c.context,
          reachable: true,
          phases,
          ...(be ? { bundleEndpoint: be } : {}),
          ...(ew ? { eastWestGateway: ew } : {}),
        };
      } catch (e) {
        return {
          cluster: c.name,
          context: c.context,
          reachable: false,
          error: (e as Error).message,
          phases: [],
        };
      }
    }),
  );
  return {
    fleet: fleet.name,
    healthy: clusters.every((c) => c.reachable && c.phases.every((p) => p.status === 'Healthy')),
    clusters,
  };
}
