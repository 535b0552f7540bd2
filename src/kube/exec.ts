/**
 * A command in a container, as `kubectl exec` runs it: Kubernetes'
 * remotecommand protocol (v4.channel.k8s.io, else v3/v2) over SPDY/3.1.
 *
 * Why not websockets (client-node's Exec): a 1.29 API server negotiates
 * v4.channel.k8s.io over a websocket, which cannot half-close stdin, so a
 * command that reads stdin to its end (`spire-server bundle set`) never sees
 * it without the whole connection closing, and its output and exit status
 * are lost. SPDY half-closes a stream with a FIN, and every API server
 * (1.29 … 1.35) proxies it to the kubelet.
 *
 * The request: POST /api/v1/namespaces/{ns}/pods/{pod}/exec?container=…&
 * command=…(repeated)&stdin=true&stdout=true&stderr=true, with
 * `Connection: Upgrade`, `Upgrade: SPDY/3.1` and the protocol versions
 * offered (`X-Stream-Protocol-Version`, best first). After the 101, the
 * client opens one stream per channel, named by its `streamtype` header, in
 * client-go's order (error, stdin, stdout, stderr), each once the previous
 * one was accepted; then stdin is written and half-closed (FIN); stdout and
 * stderr are read to their FIN; the error stream carries the result: for v4
 * a metav1.Status JSON (Success, or Failure with reason NonZeroExitCode and a
 * cause {reason: ExitCode, message: "<code>"}), for v2/v3 a message on
 * failure only (client-go's tools/remotecommand v2.go … v4.go).
 *
 * An upgrade the server refuses (403 for pods/exec, 404 for no such pod, a
 * kubelet error) rejects with a KubeApiError of its HTTP status and Status
 * body, which errors.ts classifies.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import { type RequestOptions, request } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { KubeApiError, KubeRequestError, type StatusCause } from './errors.js';
import { SpdySession, type SpdyStream } from './spdy.js';

export const EXEC_PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io'] as const;
const V4 = EXEC_PROTOCOLS[0];

/** A metav1.Status, as far as exec reads it. */
interface Status {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { causes?: StatusCause[] };
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface SpdyExecOptions {
  /**
   * The HTTPS request's options with the kubeconfig's credentials and TLS
   * settings applied (hostname, port, ca, cert/key, an Authorization
   * header, …); method, path and the upgrade headers are set here.
   */
  request: RequestOptions & { headers?: Record<string, string | string[]> };
  pod: { namespace: string; name: string; container: string };
  command: string[];
  /** Written to the command's stdin, which is then closed; no stdin at all when undefined. */
  stdin?: string | Buffer;
  timeoutMs: number;
  /** stdout and stderr together, at most. */
  maxBytes: number;
  /** Names the exec in messages: "ctx: exec in ns/pod/container". */
  where: string;
}

/** The exec path and query for a pod's container. */
export function execPath(
  pod: { namespace: string; name: string; container: string },
  command: string[],
  stdin: boolean,
): string {
  const q = new URLSearchParams();
  if (pod.container) q.set('container', pod.container);
  for (const c of command) q.append('command', c);
  if (stdin) q.set('stdin', 'true');
  q.set('stdout', 'true');
  q.set('stderr', 'true');
  return `/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/pods/${encodeURIComponent(pod.name)}/exec?${q}`;
}

/** Runs the command; resolves with its exit code and output, rejects as the module comment says. */
export function spdyExec(o: SpdyExecOptions): Promise<ExecResult> {
  const { where, maxBytes, timeoutMs } = o;
  const path = execPath(o.pod, o.command, o.stdin !== undefined);
  return new Promise<ExecResult>((resolve, reject) => {
    let settled = false;
    let req: ClientRequest | undefined;
    let socket: Duplex | undefined;
    let session: SpdySession | undefined;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (session) session.close();
      else {
        req?.destroy();
        socket?.destroy();
      }
      f();
    };
    const fail = (e: Error) => finish(() => reject(e));
    const timer = setTimeout(() => {
      fail(new Error(`${where}: no answer within ${timeoutMs} ms`));
      socket?.destroy();
    }, timeoutMs);

    req = request({
      ...o.request,
      method: 'POST',
      path,
      headers: {
        ...o.request.headers,
        Connection: 'Upgrade',
        Upgrade: 'SPDY/3.1',
        'X-Stream-Protocol-Version': [...EXEC_PROTOCOLS],
      },
    });
    req.on('error', (e) => fail(new KubeRequestError(`${where}: ${e.message}`, { cause: e })));
    // Not upgraded: the server's answer is an error (a Status, usually).
    req.on('response', (res) => {
      readBody(res, 64 * 1024).then(
        (text) => fail(refusal(where, res.statusCode ?? 0, text)),
        (e: Error) => fail(new KubeRequestError(`${where}: ${e.message}`, { cause: e })),
      );
    });
    req.on('upgrade', (res, sock, head) => {
      socket = sock;
      sock.on('error', () => {}); // the session reports what matters
      if (settled) {
        sock.destroy();
        return;
      }
      const protocol = res.headers['x-stream-protocol-version'];
      if (!(EXEC_PROTOCOLS as readonly string[]).includes(protocol as string)) {
        fail(
          new KubeRequestError(
            `${where}: the server agreed to no protocol we offered (${JSON.stringify(protocol ?? '')}; offered ${EXEC_PROTOCOLS.join(', ')})`,
          ),
        );
        return;
      }
      if (head.length > 0) sock.unshift(head);
      (sock as Partial<Socket>).setNoDelay?.(true);
      session = new SpdySession(sock, { client: true });
      run(session, protocol as string).then(
        (r) => finish(() => resolve(r)),
        (e: Error) => fail(e),
      );
    });
    req.end();

    /** Streams, stdin, output, status. Rejects on a failure; `fail` may also end it from outside. */
    async function run(s: SpdySession, protocol: string): Promise<ExecResult> {
      const sessionClosed = new Promise<Error | undefined>((r) => s.once('close', r));
      s.on('stream', (peer) => peer.on('error', () => {})); // refused by the session
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const status: Buffer[] = [];
      let bytes = 0;
      const read = (stream: SpdyStream, into: Buffer[], bounded: boolean) =>
        new Promise<boolean>((done) => {
          let ended = false;
          stream.on('error', () => {});
          stream.on('data', (c: Buffer) => {
            if (bounded) {
              bytes += c.length;
              if (bytes > maxBytes) fail(new Error(`${where}: output over ${maxBytes} bytes`));
            } else if (Buffer.concat(into).length + c.length > 64 * 1024) return; // a Status is small
            into.push(c);
          });
          stream.on('end', () => {
            ended = true;
            done(true);
          });
          stream.on('close', () => done(ended));
        });
      const open = async (type: string) => {
        const stream = s.openStream({ streamtype: type });
        const closed = sessionClosed.then((e) => {
          throw new KubeRequestError(
            `${where}: the connection closed while the ${type} stream was being created${e ? `: ${e.message}` : ''}`,
            { cause: e },
          );
        });
        closed.catch(() => {}); // once the stream is ready, a later close is not this one's to report
        await Promise.race([stream.ready, closed]);
        return stream;
      };
      const errorStream = await open('error');
      const statusRead = read(errorStream, status, false);
      const stdin = o.stdin !== undefined ? await open('stdin') : undefined;
      const stdout = await open('stdout');
      const stdoutRead = read(stdout, out, true);
      const stderr = await open('stderr');
      const stderrRead = read(stderr, err, true);
      if (stdin) {
        stdin.on('error', () => {});
        stdin.resume(); // the server may close it; nothing comes on it
        stdin.end(typeof o.stdin === 'string' ? Buffer.from(o.stdin) : o.stdin);
      }
      const [statusEnded] = await Promise.all([statusRead, stdoutRead, stderrRead]);
      const text = Buffer.concat(status).toString('utf8');
      const result = {
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (protocol !== V4) {
        if (!statusEnded && text === '')
          throw new KubeRequestError(`${where}: the connection closed before the command's status came`);
        if (text !== '') throw new KubeRequestError(`${where}: ${text}`);
        return { code: 0, ...result };
      }
      if (text === '')
        throw new KubeRequestError(
          `${where}: the ${statusEnded ? 'error stream ended' : 'connection closed'} without the command's status`,
        );
      let st: Status;
      try {
        st = JSON.parse(text) as Status;
      } catch {
        throw new KubeRequestError(`${where}: the error stream holds no Status: ${text.slice(0, 200)}`);
      }
      if (st.status === 'Success') return { code: 0, ...result };
      const exit = st.details?.causes?.find((c) => c.reason === 'ExitCode')?.message;
      if (st.reason === 'NonZeroExitCode' && exit !== undefined && /^\d+$/.test(exit))
        return { code: Number(exit), ...result };
      throw new KubeApiError(
        `${where}: ${st.message ?? 'the command failed'}`,
        st.code ?? 500,
        st.reason || undefined,
        [],
        st.details?.causes ?? [],
      );
    }
  });
}

function readBody(res: IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      if (size < max) chunks.push(c);
      size += c.length;
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8').slice(0, max)));
    res.on('error', reject);
  });
}

/** The error of a refused upgrade: its HTTP status and, when it is one, the Status the server sent. */
function refusal(where: string, status: number, text: string): KubeApiError {
  let s: Status | undefined;
  try {
    s = JSON.parse(text) as Status;
  } catch {
    s = undefined;
  }
  const isStatus = s?.kind === 'Status';
  const message = s?.message ?? (text.trim().slice(0, 300) || `HTTP ${status}`);
  return new KubeApiError(
    `${where}: ${message}`,
    status,
    s?.reason || undefined,
    [],
    s?.details?.causes ?? [],
    isStatus,
  );
}
