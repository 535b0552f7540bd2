/**
 * Static federation relationships as SPIRE server configuration: one
 * `federates_with` block per peer inside `server.federation`. SPIRE reads them
 * at start; the seed profile and the lab use them, the dynamic form is
 * `spire-server federation create/update` (see engine.ts).
 */
import { parseSpiffeId, parseTrustDomain } from '../spiffe/id.js';

export interface StaticPeer {
  trustDomain: string;
  /** https URL of the peer's bundle endpoint. */
  bundleEndpointUrl: string;
  /** SPIFFE ID the endpoint presents (https_spiffe). */
  endpointSpiffeId: string;
}

const q = (s: string) => JSON.stringify(s);

export function federatesWithBlocks(peers: StaticPeer[], indent = '    '): string {
  return peers
    .map((p) => {
      const td = parseTrustDomain(p.trustDomain);
      const url = new URL(p.bundleEndpointUrl);
      if (url.protocol !== 'https:')
        throw new Error(`bundle endpoint of ${td} must be https: ${p.bundleEndpointUrl}`);
      const i = indent;
      return `
${i}federates_with ${q(td)} {
${i}  bundle_endpoint_url = ${q(p.bundleEndpointUrl)}
${i}  bundle_endpoint_profile "https_spiffe" {
${i}    endpoint_spiffe_id = ${q(parseSpiffeId(p.endpointSpiffeId).uri)}
${i}  }
${i}}`;
    })
    .join('');
}
