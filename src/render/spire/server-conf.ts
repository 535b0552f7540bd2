/**
 * SPIRE server and agent configuration files (HCL text), per cluster.
 *
 * Both profiles use `default_x509_svid_ttl` (SPIRE ≥ 1.5 reads it; the older
 * `default_svid_ttl` is deprecated). The cluster's CA is an intermediate under
 * its cert-manager root (UpstreamAuthority "cert-manager"); k8s_psat names
 * this cluster; the bundle endpoint serves over https_spiffe on the fleet's
 * port. `federates_with` blocks are present only when `peers` are given with
 * their addresses (the seed profile's static federation); the current profile
 * declares relationships as ClusterFederatedTrustDomain objects instead.
 */
import { federatesWithBlocks } from '../../federation/static-config.js';
import type { ClusterSpec, Fleet } from '../../fleet/model.js';
import { spireHas } from '../../fleet/versions.js';
import { WORKLOAD_SOCKET_DIR } from '../identity.js';

export const SERVER_SOCKET = '/tmp/spire-server/private/api.sock';
export const SERVER_PORT = 8081;
export const HEALTH_PORT = 8080;
export const TRUST_BUNDLE_CONFIGMAP = 'trust-bundle';

export interface FederatedPeer {
  trustDomain: string;
  /** host:port of the peer's bundle endpoint. */
  address: string;
}

const q = (s: string) => JSON.stringify(s);

/** The health_checks block: server and agent answer probes the same way (cluster: 0.0.0.0, lab: its loopback address). */
export function healthChecksBlock(bindAddress: string, port: number): string {
  return `health_checks {
  listener_enabled = true
  bind_address = ${q(bindAddress)}
  bind_port = "${port}"
  live_path = "/live"
  ready_path = "/ready"
}
`;
}
const HEALTH_CHECKS = healthChecksBlock('0.0.0.0', HEALTH_PORT);

export function serverConf(fleet: Fleet, cluster: ClusterSpec, peers: FederatedPeer[] = []): string {
  const federatesWith = federatesWithBlocks(
    peers.map((p) => ({
      trustDomain: p.trustDomain,
      bundleEndpointUrl: `https://${p.address}`,
      endpointSpiffeId: `spiffe://${p.trustDomain}/spire/server`,
    })),
  );
  // SPIRE < 1.8 refuses the key; its endpoint then advertises a hint derived from the CA lifetime.
  const refreshHint = spireHas(fleet.versions.spire, 'bundleEndpointRefreshHint')
    ? `      refresh_hint = ${q(fleet.federation.refreshHint)}\n`
    : '';
  return `server {
  bind_address = "0.0.0.0"
  bind_port = "${SERVER_PORT}"
  socket_path = ${q(SERVER_SOCKET)}
  trust_domain = ${q(cluster.trustDomain)}
  data_dir = "/run/spire/data"
  log_level = "INFO"
  ca_key_type = "ec-p256"
  ca_ttl = ${q(fleet.ca.spire.caTTL)}
  default_x509_svid_ttl = ${q(fleet.ca.spire.svidTTL)}
  ca_subject {
    country = ["US"]
    organization = ["SPIRE"]
    common_name = ${q(`spire-intermediate-${cluster.name}`)}
  }

  federation {
    bundle_endpoint {
      address = "0.0.0.0"
      port = ${fleet.federation.bundleEndpointPort}
${refreshHint}    }${federatesWith}
  }
}

plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "/run/spire/data/datastore.sqlite3"
    }
  }

  NodeAttestor "k8s_psat" {
    plugin_data {
      clusters = {
        ${q(cluster.name)} = {
          use_token_review_api_validation = true
          service_account_allow_list = ["spire:spire-agent"]
        }
      }
    }
  }

  KeyManager "disk" {
    plugin_data {
      keys_path = "/run/spire/data/keys.json"
    }
  }

  UpstreamAuthority "cert-manager" {
    plugin_data {
      namespace = "cert-manager"
      issuer_name = "selfsigned-ca"
      issuer_kind = "ClusterIssuer"
      issuer_group = "cert-manager.io"
    }
  }

  Notifier "k8sbundle" {
    plugin_data {
      namespace = "spire"
      config_map = ${q(TRUST_BUNDLE_CONFIGMAP)}
      config_map_key = "bundle.crt"
    }
  }
}

${HEALTH_CHECKS}`;
}

/**
 * The agent: SDS names Istio's federation needs (default / "null" / ROOTCA),
 * the Workload API socket where the CSI driver shares it, and the k8s workload
 * attestor verifying the kubelet's certificate (the seed skipped that).
 */
export function agentConf(cluster: ClusterSpec): string {
  return `agent {
  data_dir = "/run/spire"
  log_level = "INFO"
  server_address = "spire-server.spire.svc"
  server_port = "${SERVER_PORT}"
  socket_path = ${q(`${WORKLOAD_SOCKET_DIR}/socket`)}
  trust_bundle_path = "/run/spire/bundle/bundle.crt"
  trust_domain = ${q(cluster.trustDomain)}
  sds {
    default_svid_name = "default"
    default_bundle_name = "null"
    default_all_bundles_name = "ROOTCA"
  }
}

plugins {
  NodeAttestor "k8s_psat" {
    plugin_data {
      cluster = ${q(cluster.name)}
    }
  }

  KeyManager "memory" {
    plugin_data {}
  }

  WorkloadAttestor "k8s" {
    plugin_data {
      node_name_env = "MY_NODE_NAME"
    }
  }
}

${HEALTH_CHECKS}`;
}
