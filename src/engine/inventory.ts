/**
 * What meshfed owns in a cluster, read from the cluster itself (no local
 * state needed): every served kind is listed with meshfed's label selector
 * for the fleet, and an object counts only when it also carries meshfed's
 * created mark and meshfed's field manager (ownedBy).
 */
import { type ClusterClient, KubeApiError, type KubeObject } from '../kube/client.js';
import { FLEET_LABEL, MANAGED_BY, MANAGED_BY_LABEL } from '../render/meta.js';
import { ownedBy, retrying } from './apply.js';
import { mapLimit } from './order.js';

export const fleetSelector = (fleet: string) => `${MANAGED_BY_LABEL}=${MANAGED_BY},${FLEET_LABEL}=${fleet}`;

export async function ownedObjects(client: ClusterClient, fleet: string): Promise<KubeObject[]> {
  const kinds = await retrying(() => client.kinds());
  const lists = await mapLimit(
    kinds.filter((k) => k.kind !== 'Event'),
    8,
    (k) =>
      // A kind whose storage is still initialising answers 503 for a moment; an
      // aggregated API that is down keeps answering so: nothing of meshfed's there.
      retrying(() => client.list(k.apiVersion, k.kind, { labelSelector: fleetSelector(fleet) }), {
        deadlineMs: 15_000,
      }).catch((e) => {
        if (e instanceof KubeApiError && [404, 405, 503].includes(e.status)) return [];
        throw e;
      }),
  );
  return lists.flat().filter((o) => ownedBy(o, fleet));
}
