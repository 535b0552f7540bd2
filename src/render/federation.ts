/**
 * Phase "federation": what depends on the peers' bundle endpoint addresses.
 * current profile: one ClusterFederatedTrustDomain per peer, which
 * spire-controller-manager turns into a SPIRE federation relationship.
 * seed profile: relationships are static server config (see spire.ts); this
 * phase has no objects, only the engine's one-time bundle bootstrap.
 * An address is https://host:port exactly once (the seed doubled the port).
 */
import type { ClusterSpec } from '../fleet/model.js';
import type { KubeObject, PhaseOutput, RenderContext } from './types.js';

export interface PeerEndpoint {
  peer: ClusterSpec;
  /** host:port, or undefined while unknown. */
  address: string | undefined;
}

/** Each peer's bundle endpoint as given (inputs) or declared (fleet), with the fleet's port when none is given. */
export function peerBundleEndpoints(ctx: RenderContext): PeerEndpoint[] {
  return ctx.peers.map((peer) => {
    const raw = ctx.inputs.bundleEndpoints?.[peer.name] ?? peer.bundleEndpoint.address;
    const address =
      raw === undefined
        ? undefined
        : /:\d+$/.test(raw)
          ? raw
          : `${raw}:${ctx.fleet.federation.bundleEndpointPort}`;
    return { peer, address };
  });
}

export function renderFederation(ctx: RenderContext): PhaseOutput {
  if (ctx.fleet.versions.registrar !== 'spire-controller-manager') return {};
  const objects: KubeObject[] = [];
  const pending = [];
  for (const { peer, address } of peerBundleEndpoints(ctx)) {
    const obj: KubeObject = {
      apiVersion: 'spire.spiffe.io/v1alpha1',
      kind: 'ClusterFederatedTrustDomain',
      metadata: { name: peer.trustDomain.replace(/[^a-z0-9-]/g, '-') },
      spec: {
        trustDomain: peer.trustDomain,
        bundleEndpointURL: `https://${address}`,
        bundleEndpointProfile: {
          type: 'https_spiffe',
          endpointSPIFFEID: `spiffe://${peer.trustDomain}/spire/server`,
        },
      },
    };
    if (address === undefined)
      pending.push({
        cluster: peer.name,
        what: 'bundle endpoint address',
        heldBack: [`ClusterFederatedTrustDomain/${obj.metadata.name}`],
      });
    else objects.push(obj);
  }
  return { objects, pending };
}
