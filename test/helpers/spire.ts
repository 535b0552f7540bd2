/**
 * Helpers for tests against real SPIRE: a workload's Workload API client per
 * domain, entries for this test process (unix:uid selector), and one mutual
 * TLS exchange between two SPIFFE workloads on loopback.
 */
import { once } from 'node:events';
import * as tls from 'node:tls';
import { type FederationMember, federationStatus, type Pair } from '../../src/federation/engine.js';
import type { LabTrustDomain } from '../../src/lab/spire.js';
import {
  type Authorizer,
  authorizeClient,
  spiffeClientOptions,
  spiffeServerOptions,
} from '../../src/spiffe/tls.js';
import { WorkloadApiClient, type X509Context } from '../../src/spiffe/workload.js';

export const UID_SELECTOR = `unix:uid:${process.getuid?.() ?? 0}`;

/** Registers this process as `path` in the domain, federating with `federatesWith`; returns the SPIFFE ID. */
export async function registerWorkload(
  d: LabTrustDomain,
  path: string,
  federatesWith: string[] = [],
): Promise<string> {
  const spiffeId = `spiffe://${d.trustDomain}${path}`;
  await d.server.createEntry({ parentId: d.nodeId, spiffeId, selectors: [UID_SELECTOR], federatesWith });
  return spiffeId;
}

/** Waits until the domain's agent gives this process `spiffeId` and bundles of every `trusts` domain. */
export async function contextWith(
  d: LabTrustDomain,
  spiffeId: string,
  trusts: string[] = [],
): Promise<X509Context> {
  const client = new WorkloadApiClient(d.workloadSocket, { timeoutMs: 60_000 });
  try {
    return await client.waitForX509Context(
      (c) =>
        c.svids.some((s) => s.spiffeId === spiffeId) && trusts.every((td) => c.bundles.get(td) !== undefined),
    );
  } finally {
    client.close();
  }
}

export interface MtlsEnd {
  ctx: X509Context;
  spiffeId: string;
  authorize: Authorizer;
}

export type MtlsResult = { ok: true; serverSaw: string; clientGot: string } | { ok: false; error: string };

/** One TLS connection from `client` to `server`, both presenting SVIDs and authorising the peer. */
export async function mtls(server: MtlsEnd, client: MtlsEnd): Promise<MtlsResult> {
  let serverSaw = '';
  let serverError = '';
  const srv = tls.createServer(spiffeServerOptions(server.ctx, server.spiffeId), (socket) => {
    const verdict = authorizeClient(socket, server.ctx, server.authorize);
    if ('spiffeId' in verdict) {
      serverSaw = verdict.spiffeId;
      socket.end(`hello ${verdict.spiffeId} from ${server.spiffeId}`);
    } else serverError = verdict.refused;
  });
  srv.on('tlsClientError', (e) => {
    serverError = e.message;
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  try {
    return await new Promise<MtlsResult>((resolve) => {
      let data = '';
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        servername: 'spiffe',
        ...spiffeClientOptions(client.ctx, client.authorize, client.spiffeId),
      });
      socket.setEncoding('utf8');
      socket.on('data', (d) => {
        data += d;
      });
      socket.on('error', (e) =>
        resolve({ ok: false, error: `client: ${e.message}${serverError ? `; server: ${serverError}` : ''}` }),
      );
      socket.on('close', () =>
        resolve(
          data
            ? { ok: true, serverSaw, clientGot: data }
            : {
                ok: false,
                error: `closed without an answer${serverError ? `; server: ${serverError}` : ''}`,
              },
        ),
      );
    });
  } finally {
    srv.close();
  }
}

export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The status of every direction when all (or all towards `peer`) are current; else undefined. */
export async function allCurrent(members: FederationMember[], pairs: Pair[], peer?: string) {
  const st = await federationStatus(members, pairs);
  return st.filter((s) => !peer || s.peer === peer).every((s) => s.state === 'current') ? st : undefined;
}

/** Wraps a test body so that the lab's process logs are printed when it fails. */
export function withLabLogs(logs: () => string | undefined) {
  return (fn: () => Promise<void>) => async () => {
    try {
      await fn();
    } catch (e) {
      console.log(`--- lab logs (the test failed) ---\n${logs() ?? '(no lab)'}`);
      throw e;
    }
  };
}

/**
 * A SPIRE server of `trustDomain` as a pod of the `spire` namespace (a
 * StatefulSet `spire-server` of SPIRE's own image, configured by a ConfigMap,
 * data in an emptyDir), its bundle endpoint on 8443 behind a LoadBalancer
 * Service `spire-server-bundle-endpoint`: the smallest SPIRE a lab's node
 * agent runs for real without `meshfed up`. Apply it to a cluster whose
 * `spire` namespace exists.
 */
export function spireServerPod(trustDomain: string, spireVersion: string): string {
  return `apiVersion: v1
kind: ConfigMap
metadata: {name: spire-server, namespace: spire}
data:
  server.conf: |
    server {
      bind_address = "0.0.0.0"
      bind_port = "8081"
      trust_domain = "${trustDomain}"
      data_dir = "/run/spire/data"
      log_level = "DEBUG"
      federation {
        bundle_endpoint {
          address = "0.0.0.0"
          port = 8443
        }
      }
    }
    plugins {
      DataStore "sql" {
        plugin_data {
          database_type = "sqlite3"
          connection_string = "/run/spire/data/datastore.sqlite3"
        }
      }
      KeyManager "memory" {
        plugin_data {}
      }
      NodeAttestor "join_token" {
        plugin_data {}
      }
    }
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: spire-server, namespace: spire}
spec:
  serviceName: spire-server
  selector: {matchLabels: {app: spire-server}}
  template:
    metadata: {labels: {app: spire-server}}
    spec:
      containers:
      - name: spire-server
        image: ghcr.io/spiffe/spire-server:${spireVersion}
        args: [-config, /run/spire/config/server.conf]
        ports: [{name: grpc, containerPort: 8081}, {name: federation, containerPort: 8443}]
        volumeMounts:
        - {name: config, mountPath: /run/spire/config, readOnly: true}
        - {name: data, mountPath: /run/spire/data}
      volumes:
      - {name: config, configMap: {name: spire-server}}
      - {name: data, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: spire-server-bundle-endpoint, namespace: spire}
spec:
  type: LoadBalancer
  selector: {app: spire-server}
  ports: [{name: tcp-federation, port: 8443, targetPort: federation}]
`;
}
