/**
 * The fleet's SPIRE servers as members of the federation engine
 * (src/federation/engine.ts): each reached through pod exec into
 * spire/spire-server-0, its bundle endpoint at the address peers use, as
 * `spiffe://<trust domain>/spire/server`. The one place they are built, for
 * `up`'s bootstrap, the checks and `meshfed federation`.
 */
import type { FederationMember } from '../federation/engine.js';
import { SpireServerCli } from '../federation/spire-cli.js';
import { type PodExec, podServerTransport } from '../federation/transport.js';
import type { ClusterSpec, Fleet } from '../fleet/model.js';
import type { ClusterClient } from '../kube/client.js';
import { BUNDLE_ENDPOINT_SERVICE, currentAddress, SPIRE_SERVER_POD } from './discover.js';

export function federationMember(cluster: ClusterSpec, client: PodExec, address: string): FederationMember {
  return {
    name: cluster.name,
    trustDomain: cluster.trustDomain,
    server: new SpireServerCli(podServerTransport(client, SPIRE_SERVER_POD)),
    bundleEndpoint: {
      url: `https://${address}`,
      spiffeId: `spiffe://${cluster.trustDomain}/spire/server`,
    },
  };
}

export interface FleetMembers {
  /** The clusters whose bundle endpoint address is known, in fleet order. */
  members: FederationMember[];
  /** Why a cluster is not a member (no address known), by cluster name. */
  absent: Map<string, string>;
}

/**
 * Every cluster of the fleet as a member, its bundle endpoint address taken
 * from the fleet file when it gives one, else from its Service now, else from
 * `recorded` (the addresses `up` last discovered: an API server that does not
 * answer cannot say where its endpoint is, and the endpoint may well serve).
 * `clients` is by cluster name; the Service of a cluster in `unreachable` is
 * not read (it would only time out again). A cluster with no client or
 * address is absent.
 */
export async function fleetMembers(
  fleet: Fleet,
  clients: Map<string, ClusterClient>,
  o: { recorded?: Record<string, string>; unreachable?: ReadonlySet<string> } = {},
): Promise<FleetMembers> {
  const recorded = o.recorded ?? {};
  const absent = new Map<string, string>();
  const found = await Promise.all(
    fleet.clusters.map(async (c) => {
      const client = clients.get(c.name);
      if (!client) {
        absent.set(c.name, 'no client for its context');
        return undefined;
      }
      let why = `its Service ${BUNDLE_ENDPOINT_SERVICE.namespace}/${BUNDLE_ENDPOINT_SERVICE.name} has no address`;
      if (o.unreachable?.has(c.name)) why = 'its API server is unreachable';
      const address =
        c.bundleEndpoint.address ??
        (o.unreachable?.has(c.name)
          ? undefined
          : await currentAddress(client, BUNDLE_ENDPOINT_SERVICE).catch((e: unknown) => {
              why = `its Service could not be read (${e instanceof Error ? e.message : String(e)})`;
              return undefined;
            })) ??
        recorded[c.name];
      if (!address) {
        absent.set(c.name, `no bundle endpoint address: ${why}, and no run of \`meshfed up\` recorded one`);
        return undefined;
      }
      return federationMember(c, client, address);
    }),
  );
  return { members: found.filter((m) => m !== undefined), absent };
}
