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
