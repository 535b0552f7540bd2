/**
 * SPIFFE Workload API client: gRPC over the agent's unix socket.
 *
 * The service definition is the SPIFFE Workload API (the `workload.proto` of
 * go-spiffe), written here as a protobuf descriptor so the package needs no
 * file at run time; test/spiffe/workload-proto.test compares it field by field
 * with the upstream proto. Every call carries the metadata
 * `workload.spiffe.io: true`, as the specification requires.
 *
 * Private keys are held as node:crypto KeyObjects: they print as
 * `PrivateKeyObject { asymmetricKeyType: 'ec' }`, never as key material.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';
import { type Bundle, BundleSet } from './bundle.js';
import { parseSpiffeId } from './id.js';
import { type CertView, certFromDer } from './x509.js';

const bytes = (id: number) => ({ type: 'bytes', id });
const str = (id: number) => ({ type: 'string', id });
const repeated = (type: string, id: number) => ({ rule: 'repeated', type, id });

/** The wire contract of the Workload API (field numbers are what matters). */
export const WORKLOAD_API_DESCRIPTOR = {
  nested: {
    SpiffeWorkloadAPI: {
      methods: {
        FetchX509SVID: {
          requestType: 'X509SVIDRequest',
          responseType: 'X509SVIDResponse',
          responseStream: true,
        },
        FetchX509Bundles: {
          requestType: 'X509BundlesRequest',
          responseType: 'X509BundlesResponse',
          responseStream: true,
        },
        FetchJWTSVID: { requestType: 'JWTSVIDRequest', responseType: 'JWTSVIDResponse' },
        FetchJWTBundles: {
          requestType: 'JWTBundlesRequest',
          responseType: 'JWTBundlesResponse',
          responseStream: true,
        },
      },
    },
    X509SVIDRequest: { fields: {} },
    X509SVIDResponse: {
      fields: {
        svids: repeated('X509SVID', 1),
        crl: repeated('bytes', 2),
        federated_bundles: { keyType: 'string', ...bytes(3) },
      },
    },
    X509SVID: {
      fields: {
        spiffe_id: str(1),
        x509_svid: bytes(2),
        x509_svid_key: bytes(3),
        bundle: bytes(4),
        hint: str(5),
      },
    },
    X509BundlesRequest: { fields: {} },
    X509BundlesResponse: {
      fields: { crl: repeated('bytes', 1), bundles: { keyType: 'string', ...bytes(2) } },
    },
    JWTSVIDRequest: { fields: { audience: repeated('string', 1), spiffe_id: str(2) } },
    JWTSVIDResponse: { fields: { svids: repeated('JWTSVID', 1) } },
    JWTSVID: { fields: { spiffe_id: str(1), svid: str(2), hint: str(3) } },
    JWTBundlesRequest: { fields: {} },
    JWTBundlesResponse: { fields: { bundles: { keyType: 'string', ...bytes(1) } } },
  },
};

export class WorkloadApiError extends Error {
  override name = 'WorkloadApiError';
  constructor(
    message: string,
    /** gRPC status code name, e.g. PERMISSION_DENIED when no entry matches the caller. */
    readonly status: string,
  ) {
    super(message);
  }
}

export interface X509Svid {
  spiffeId: string;
  /** Leaf first, then the intermediates the agent sent. */
  chain: CertView[];
  privateKey: KeyObject;
  hint?: string;
}

export interface X509Context {
  /** The first SVID is the default one. */
  svids: X509Svid[];
  /** The workload's own trust domain bundle and every federated one. */
  bundles: BundleSet;
}

export interface JwtSvid {
  spiffeId: string;
  token: string;
  hint?: string;
}

/** Messages as proto-loader decodes them from the descriptor (field names as in the proto). */
interface RawSvid {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

type ServiceClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

let serviceCtor: grpc.ServiceClientConstructor | undefined;
function service(): grpc.ServiceClientConstructor {
  if (!serviceCtor) {
    const def = fromJSON(WORKLOAD_API_DESCRIPTOR as unknown as Parameters<typeof fromJSON>[0], {
      keepCase: false,
      defaults: true,
      longs: String,
    });
    serviceCtor = grpc.loadPackageDefinition(def).SpiffeWorkloadAPI as grpc.ServiceClientConstructor;
  }
  return serviceCtor;
}

/** DER concatenation → certificates (the Workload API sends chains and bundles so). */
export function splitDerCertificates(buf: Buffer): CertView[] {
  const out: CertView[] = [];
  let off = 0;
  while (off < buf.length) {
    if (buf[off] !== 0x30) throw new WorkloadApiError(`not a DER certificate at byte ${off}`, 'INVALID');
    const l0 = buf[off + 1] ?? 0;
    let len: number;
    let hdr: number;
    if (l0 < 0x80) {
      len = l0;
      hdr = 2;
    } else {
      const n = l0 & 0x7f;
      if (n < 1 || n > 4) throw new WorkloadApiError(`bad DER length at byte ${off}`, 'INVALID');
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + (buf[off + 2 + i] ?? 0);
      hdr = 2 + n;
    }
    const end = off + hdr + len;
    if (end > buf.length) throw new WorkloadApiError('truncated DER certificate', 'INVALID');
    out.push(certFromDer(buf.subarray(off, end)));
    off = end;
  }
  return out;
}

function bundleOf(trustDomain: string, der: Buffer): Bundle {
  return { trustDomain, x509Authorities: splitDerCertificates(der), jwtAuthorities: new Map() };
}

function toContext(msg: { svids: RawSvid[]; federated_bundles: Record<string, Buffer> }): X509Context {
  const bundles = new BundleSet();
  const svids = msg.svids.map((s): X509Svid => {
    const id = parseSpiffeId(s.spiffe_id);
    if (!bundles.get(id.trustDomain)) bundles.add(bundleOf(id.trustDomain, s.bundle));
    return {
      spiffeId: id.uri,
      chain: splitDerCertificates(s.x509_svid),
      privateKey: createPrivateKey({ key: s.x509_svid_key, format: 'der', type: 'pkcs8' }),
      ...(s.hint ? { hint: s.hint } : {}),
    };
  });
  for (const [key, der] of Object.entries(msg.federated_bundles)) {
    // Keys are trust domain names or, from older agents, trust domain IDs.
    const td = key.startsWith('spiffe://') ? parseSpiffeId(key).trustDomain : key;
    bundles.add(bundleOf(td, der));
  }
  return { svids, bundles };
}

function bundlesFrom(msg: { bundles: Record<string, Buffer> }): BundleSet {
  const set = new BundleSet();
  for (const [key, der] of Object.entries(msg.bundles)) {
    const td = key.startsWith('spiffe://') ? parseSpiffeId(key).trustDomain : key;
    set.add(bundleOf(td, der));
  }
  return set;
}

export interface Watch<T> extends AsyncIterable<T> {
  close(): void;
}

export interface WorkloadApiOptions {
  /** How long `fetch*` keeps retrying while the agent has no identity for the caller yet. */
  timeoutMs?: number;
}

/** Statuses an agent returns while it is starting or has not yet synced the caller's entry. */
const RETRYABLE = new Set([grpc.status.PERMISSION_DENIED, grpc.status.UNAVAILABLE]);

export class WorkloadApiClient {
  private readonly client: ServiceClient;
  private readonly timeoutMs: number;

  constructor(
    readonly socketPath: string,
    opts: WorkloadApiOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    const Ctor = service();
    this.client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure()) as ServiceClient;
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('workload.spiffe.io', 'true');
    return md;
  }

  private stream<R, T>(method: string, request: object, map: (msg: R) => T): Watch<T> {
    const call = (this.client[method] as (r: object, m: grpc.Metadata) => grpc.ClientReadableStream<R>)(
      request,
      this.metadata(),
    );
    const queue: T[] = [];
    let failure: Error | undefined;
    let ended = false;
    let wake: (() => void) | undefined;
    const notify = () => {
      wake?.();
      wake = undefined;
    };
    call.on('data', (msg: R) => {
      try {
        queue.push(map(msg));
      } catch (e) {
        failure = e as Error;
        call.cancel();
      }
      notify();
    });
    call.on('error', (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED || !ended)
        failure ??= new WorkloadApiError(
          `${method}: ${e.details || e.message}`,
          grpc.status[e.code] ?? 'UNKNOWN',
        );
      ended = true;
      notify();
    });
    call.on('end', () => {
      ended = true;
      notify();
    });
    const close = () => {
      ended = true;
      call.cancel();
      notify();
    };
    return {
      close,
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            const next = queue.shift();
            if (next !== undefined) {
              yield next;
              continue;
            }
            if (failure) throw failure;
            if (ended) return;
            await new Promise<void>((r) => {
              wake = r;
            });
          }
        } finally {
          close();
        }
      },
    };
  }

  /** The stream of X.509 contexts: one now, then one at every SVID or bundle change. */
  watchX509Context(): Watch<X509Context> {
    return this.stream('FetchX509SVID', {}, toContext);
  }

  /** The stream of X.509 bundles (own and federated). */
  watchX509Bundles(): Watch<BundleSet> {
    return this.stream('FetchX509Bundles', {}, bundlesFrom);
  }

  /** The current X.509 context, retrying while the agent has no identity for the caller yet. */
  fetchX509Context(): Promise<X509Context> {
    return this.first(() => this.watchX509Context());
  }

  /** Waits (bounded) for an X.509 context that satisfies `ready`, e.g. holds a given SVID and federated bundle. */
  async waitForX509Context(
    ready: (c: X509Context) => boolean,
    timeoutMs = this.timeoutMs,
  ): Promise<X509Context> {
    const deadline = Date.now() + timeoutMs;
    let last: X509Context | undefined;
    while (Date.now() < deadline) {
      const w = this.watchX509Context();
      const timer = setTimeout(() => w.close(), Math.max(0, deadline - Date.now()));
      try {
        for await (const c of w) {
          last = c;
          if (ready(c)) return c;
        }
      } catch (e) {
        const status = e instanceof WorkloadApiError ? e.status : '';
        if (status !== 'PERMISSION_DENIED' && status !== 'UNAVAILABLE') throw e;
        await new Promise((r) => setTimeout(r, 200));
      } finally {
        clearTimeout(timer);
        w.close();
      }
    }
    const have = last
      ? `SVIDs ${last.svids.map((s) => s.spiffeId).join(', ') || 'none'}; bundles ${last.bundles.trustDomains().join(', ')}`
      : 'no answer from the agent';
    throw new WorkloadApiError(
      `no matching X.509 context within ${timeoutMs} ms (last: ${have})`,
      'DEADLINE_EXCEEDED',
    );
  }

  fetchX509Bundles(): Promise<BundleSet> {
    return this.first(() => this.watchX509Bundles());
  }

  private async first<T>(open: () => Watch<T>): Promise<T> {
    const deadline = Date.now() + this.timeoutMs;
    let delay = 100;
    for (;;) {
      const w = open();
      try {
        for await (const v of w) return v;
        throw new WorkloadApiError('the agent closed the stream without an answer', 'UNAVAILABLE');
      } catch (e) {
        const retry =
          e instanceof WorkloadApiError &&
          RETRYABLE.has(grpc.status[e.status as keyof typeof grpc.status] as grpc.status);
        if (!retry || Date.now() + delay > deadline) throw e;
      } finally {
        w.close();
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 2000);
    }
  }

  /** JWT-SVIDs for an audience (all of the caller's identities, or only `spiffeId`). */
  fetchJwtSvids(audience: string[], spiffeId?: string): Promise<JwtSvid[]> {
    return new Promise((resolve, reject) => {
      (this.client.FetchJWTSVID as (r: object, m: grpc.Metadata, cb: grpc.requestCallback<unknown>) => void)(
        { audience, spiffe_id: spiffeId ?? '' },
        this.metadata(),
        (err, res) => {
          if (err) {
            reject(
              new WorkloadApiError(
                `FetchJWTSVID: ${err.details || err.message}`,
                grpc.status[err.code] ?? '',
              ),
            );
            return;
          }
          const svids = (res as { svids: Array<{ spiffe_id: string; svid: string; hint: string }> }).svids;
          resolve(
            svids.map((s) => ({ spiffeId: s.spiffe_id, token: s.svid, ...(s.hint ? { hint: s.hint } : {}) })),
          );
        },
      );
    });
  }

  close(): void {
    this.client.close();
  }
}
