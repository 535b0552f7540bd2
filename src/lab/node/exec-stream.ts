/**
 * The server side of `kubectl exec` as a kubelet speaks it (Kubernetes'
 * "remotecommand" protocol over SPDY/3.1), for containers a lab node agent
 * runs as local processes.
 *
 * The client upgrades an HTTP request (`Upgrade: SPDY/3.1`, offering
 * `X-Stream-Protocol-Version`s); we answer 101 with the version chosen, then
 * the client opens one SPDY stream per channel, named by its `streamtype`
 * header: error, stdin, stdout, stderr, and resize (with a tty, v3 and up).
 * Once all have been accepted the command runs; stdin (to its FIN) goes to
 * the process, its stdout and stderr come back, and at exit the error stream
 * carries the result: for v4 a metav1.Status JSON (Success, or Failure with
 * reason NonZeroExitCode and a cause {reason: ExitCode, message: "<code>"},
 * which kubectl turns into its own exit code), for v2/v3 a message on failure
 * only; then every stream and the session are closed. This mirrors the
 * kubelet's pkg/cri/streaming/remotecommand (httpstream.go, exec.go) and what
 * client-go's tools/remotecommand (v2.go, v3.go, v4.go) expects.
 *
 * Not done: the websocket protocol (v5.channel.k8s.io); an upgrade that is
 * not SPDY gets a 400 with a Status body, which is exactly what makes
 * kubectl ≥ 1.30 fall back from websockets to SPDY. The v1 protocol
 * (channel.k8s.io) is not offered. `tty=true` is served without a terminal:
 * the process gets pipes (no line discipline, no job control, no CR/LF
 * translation), its stderr goes to the stdout stream (as on a terminal,
 * where both are the same device), and resize messages are read and ignored.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Duplex, Readable, Writable } from 'node:stream';
import { RstStatus, SpdySession, type SpdyStream } from '../../kube/spdy.js';

export const PROTOCOL_V4 = 'v4.channel.k8s.io';
export const PROTOCOL_V3 = 'v3.channel.k8s.io';
export const PROTOCOL_V2 = 'v2.channel.k8s.io';
/** What we speak, best first. */
export const SUPPORTED_PROTOCOLS = [PROTOCOL_V4, PROTOCOL_V3, PROTOCOL_V2] as const;

/** How long the client has to open its streams after the upgrade (the kubelet's default). */
const STREAM_CREATION_TIMEOUT_MS = 30_000;

/** An exec request, from its path and query. */
export interface ExecRequest {
  namespace: string;
  pod: string;
  /** The pod UID of the kubelet's /exec/{ns}/{pod}/{uid}/{container} form. */
  uid?: string;
  /** Empty when the API-server form leaves `container=` out. */
  container: string;
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/**
 * Parses an exec URL: the kubelet's `/exec/{namespace}/{pod}/{container}`
 * (or `/exec/{namespace}/{pod}/{uid}/{container}`) or the API server's
 * `/api/v1/namespaces/{namespace}/pods/{pod}/exec?container=…`, with the
 * query `command=` (repeated, in order) and the streams asked for: to a
 * kubelet, the API server names them `input`, `output`, `error` and `tty`
 * with "1" (core/v1's ExecStdinParam …, what the kubelet's NewOptions
 * reads); to the API server, kubectl sends `stdin`, `stdout`, `stderr`,
 * `tty` with "true". Either is read. Undefined when the path is neither.
 */
export function parseExecRequest(url: string): ExecRequest | undefined {
  let u: URL;
  try {
    u = new URL(url, 'http://localhost');
  } catch {
    return undefined;
  }
  const seg = u.pathname.split('/').slice(1).map(decodeURIComponentSafe);
  if (seg.some((s) => s === undefined || s === '')) return undefined;
  const s = seg as string[];
  const q = u.searchParams;
  const flag = (...names: string[]) => names.some((n) => ['1', 'true'].includes(q.get(n) ?? ''));
  const opts = {
    command: q.getAll('command'),
    stdin: flag('input', 'stdin'),
    stdout: flag('output', 'stdout'),
    stderr: flag('error', 'stderr'),
    tty: flag('tty'),
  };
  if (s[0] === 'exec' && s.length === 4) return { namespace: s[1]!, pod: s[2]!, container: s[3]!, ...opts };
  if (s[0] === 'exec' && s.length === 5)
    return { namespace: s[1]!, pod: s[2]!, uid: s[3]!, container: s[4]!, ...opts };
  if (
    s.length === 7 &&
    s[0] === 'api' &&
    s[1] === 'v1' &&
    s[2] === 'namespaces' &&
    s[4] === 'pods' &&
    s[6] === 'exec'
  )
    return { namespace: s[3]!, pod: s[5]!, container: q.get('container') ?? '', ...opts };
  return undefined;
}

function decodeURIComponentSafe(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** What `run` returns: a ChildProcess fits. Only the streams asked for need be there. */
export interface ExecProcess {
  stdin?: Writable | null;
  stdout?: Readable | null;
  stderr?: Readable | null;
  /** Called when the client goes away before the process exits. */
  kill?(signal?: NodeJS.Signals | number): boolean;
  /** After the process exited and its stdout/stderr closed. */
  once(event: 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
  once(event: 'error', listener: (err: Error) => void): unknown;
}

/** Starts the command; `stdin` says whether input will come (else give it none), `tty` whether a terminal was asked for. */
export type ExecRunner = (
  argv: string[],
  opts: { stdin: boolean; tty: boolean; request: ExecRequest },
) => ExecProcess | Promise<ExecProcess>;

/** How an exec ended. */
export interface ExecOutcome {
  /** The protocol agreed on, when the upgrade happened. */
  protocol?: string;
  /** The exit code reported (128 + signal number for a signal). */
  exitCode?: number;
  /** Why there is no exit code: a refused request, a failed start, a vanished client. */
  error?: string;
}

/** metav1.Status as the kubelet marshals it (TypeMeta empty, so left out). */
interface Status {
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { causes: Array<{ reason?: string; message: string }> };
  code?: number;
}

/** The v4 status for an exit code, as the kubelet's ServeExec writes it. */
export function exitStatus(code: number): Status {
  if (code === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: exit status ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  };
}

/** apierrors.NewInternalError's status. */
function internalErrorStatus(message: string): Status {
  return {
    metadata: {},
    status: 'Failure',
    message: `Internal error occurred: ${message}`,
    reason: 'InternalError',
    details: { causes: [{ message }] },
    code: 500,
  };
}

/**
 * Refuses an upgrade request on its raw socket: an HTTP error whose body is
 * a metav1.Status, as the API server and kubelet answer. kubectl shows the
 * message (and, for a refused websocket upgrade, falls back to SPDY).
 */
export function refuseUpgrade(
  socket: Duplex,
  code: number,
  message: string,
  extraHeaders: string[] = [],
): void {
  const reasons: Record<number, [string, string]> = {
    400: ['Bad Request', 'BadRequest'],
    401: ['Unauthorized', 'Unauthorized'],
    403: ['Forbidden', 'Forbidden'],
    404: ['Not Found', 'NotFound'],
    500: ['Internal Server Error', 'InternalError'],
  };
  const [text, reason] = reasons[code] ?? ['Error', 'Unknown'];
  const body = JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    code,
  });
  socket.on('error', () => {});
  socket.end(
    [
      `HTTP/1.1 ${code} ${text}`,
      'Content-Type: application/json',
      `Content-Length: ${Buffer.byteLength(body)}`,
      'Connection: close',
      ...extraHeaders,
      '',
      body,
    ].join('\r\n'),
  );
}

/** The protocol versions a request offers, in its order (the header may repeat and hold comma-separated lists). */
function offeredProtocols(req: IncomingMessage): string[] {
  const values = req.headersDistinct['x-stream-protocol-version'] ?? [];
  return values
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
}

/**
 * Serves one exec upgrade (the 'upgrade' event of an http/https server):
 * checks it, answers 101, accepts the client's streams, runs the command via
 * `run(argv, …)` and reports its exit. Resolves when it is all over; never
 * rejects. The caller routes (and authorizes) before: this does not look up
 * the pod or container named in the request.
 */
export async function serveExec(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  run: ExecRunner,
  opts: { streamCreationTimeoutMs?: number } = {},
): Promise<ExecOutcome> {
  socket.on('error', () => {}); // the session reports what matters
  const request = parseExecRequest(req.url ?? '');
  if (!request) {
    refuseUpgrade(socket, 404, `no exec endpoint at ${req.url}`);
    return { error: 'not an exec path' };
  }
  const upgrade = (req.headers.upgrade ?? '').toLowerCase();
  const connection = (req.headers.connection ?? '').toLowerCase();
  if (!connection.includes('upgrade') || !upgrade.includes('spdy/3.1')) {
    refuseUpgrade(
      socket,
      400,
      `unable to upgrade: only SPDY/3.1 is served here, not ${JSON.stringify(upgrade)}`,
    );
    return { error: `upgrade to ${upgrade || 'nothing'} refused` };
  }
  if (request.command.length === 0) {
    refuseUpgrade(socket, 400, 'you must specify at least one command for the container');
    return { error: 'no command' };
  }
  const tty = request.tty;
  const stderr = request.stderr && !tty; // the kubelet drops stderr with a tty too
  if (!request.stdin && !request.stdout && !stderr) {
    refuseUpgrade(socket, 400, 'you must specify at least 1 of stdin, stdout, stderr');
    return { error: 'no stdin, stdout or stderr' };
  }
  const offered = offeredProtocols(req);
  if (offered.length === 0) {
    refuseUpgrade(
      socket,
      400,
      'unable to upgrade: header X-Stream-Protocol-Version does not exist in request',
    );
    return { error: 'no protocol offered' };
  }
  const protocol = offered.find((p) => (SUPPORTED_PROTOCOLS as readonly string[]).includes(p));
  if (!protocol) {
    refuseUpgrade(
      socket,
      403,
      `unable to upgrade: unable to negotiate protocol: client supports ${offered}, server accepts ${SUPPORTED_PROTOCOLS}`,
      SUPPORTED_PROTOCOLS.map((p) => `X-Accepted-Stream-Protocol-Versions: ${p}`),
    );
    return { error: 'no common protocol' };
  }

  socket.write(
    [
      'HTTP/1.1 101 Switching Protocols',
      'Connection: Upgrade',
      'Upgrade: SPDY/3.1',
      `X-Stream-Protocol-Version: ${protocol}`,
      '',
      '',
    ].join('\r\n'),
  );
  if (head.length > 0) socket.unshift(head);
  // Small frames go out at once (Go's connections are TCP_NODELAY too).
  (socket as Partial<Socket>).setNoDelay?.(true);
  const session = new SpdySession(socket);
  const sessionClosed = new Promise<Error | undefined>((resolve) => session.once('close', resolve));

  const wanted: Record<string, boolean> = {
    error: true,
    stdin: request.stdin,
    stdout: request.stdout,
    stderr,
    resize: tty && protocol !== PROTOCOL_V2,
  };
  const streams = await acceptStreams(
    session,
    wanted,
    sessionClosed,
    opts.streamCreationTimeoutMs ?? STREAM_CREATION_TIMEOUT_MS,
  );
  if (typeof streams === 'string') {
    session.close(new Error(streams));
    return { protocol, error: streams };
  }
  const writeStatus = (status: Status) => {
    const error = streams.error!;
    if (protocol === PROTOCOL_V4) error.write(JSON.stringify(status));
    else if (status.status !== 'Success') error.write(status.message ?? 'unknown error');
  };

  let proc: ExecProcess;
  try {
    proc = await run(request.command, { stdin: request.stdin, tty, request });
  } catch (e) {
    const message = `failed to start ${JSON.stringify(request.command)}: ${e instanceof Error ? e.message : e}`;
    writeStatus(internalErrorStatus(message));
    await finishStreams(streams);
    session.close();
    return { protocol, error: message };
  }
  const exited = new Promise<{ code: number } | { error: string }>((resolve) => {
    proc.once('close', (code, signal) => {
      if (code !== null) resolve({ code });
      else resolve({ code: 128 + ((signal && osConstants.signals[signal]) || 0) });
    });
    proc.once('error', (e) => resolve({ error: e.message }));
  });

  // stdin: the client's data to the process, ending at the stream's FIN.
  proc.stdin?.on('error', () => {}); // EPIPE when the process exits without reading it all
  if (streams.stdin && proc.stdin) streams.stdin.pipe(proc.stdin);
  else {
    streams.stdin?.resume();
    proc.stdin?.end();
  }
  streams.resize?.resume(); // terminal sizes mean nothing without a terminal
  // stdout and stderr (on a "tty", both to stdout); each output stream ends
  // (FIN) when all its sources have ended.
  const outputs: Array<Promise<void>> = [];
  const route = (dest: SpdyStream | undefined, sources: Array<Readable | null | undefined>) => {
    const from = sources.filter((s): s is Readable => !!s);
    if (!dest) {
      for (const s of from) s.resume();
      return;
    }
    outputs.push(pipeAll(from, dest));
  };
  if (tty) route(streams.stdout, [proc.stdout, proc.stderr]);
  else {
    route(streams.stdout, [proc.stdout]);
    route(streams.stderr, [proc.stderr]);
  }

  const result = await Promise.race([
    exited,
    sessionClosed.then((e) => ({ gone: e?.message ?? 'the client went away' })),
  ]);
  if ('gone' in result) {
    proc.kill?.('SIGKILL');
    return { protocol, error: result.gone };
  }
  // Input nobody will read any more must not hold the connection up.
  streams.stdin?.unpipe();
  streams.stdin?.resume();
  await Promise.race([Promise.all(outputs), sessionClosed]);
  const outcome: ExecOutcome =
    'code' in result ? { protocol, exitCode: result.code } : { protocol, error: result.error };
  writeStatus('code' in result ? exitStatus(result.code) : internalErrorStatus(result.error));
  await finishStreams(streams);
  session.close();
  return outcome;
}

type Streams = Partial<Record<'error' | 'stdin' | 'stdout' | 'stderr' | 'resize', SpdyStream>>;

/**
 * Accepts the streams the client opens (each by its streamtype, replied to at
 * once, as the kubelet does) until all `wanted` are there; refuses others.
 * Resolves with the streams or a reason.
 */
function acceptStreams(
  session: SpdySession,
  wanted: Record<string, boolean>,
  sessionClosed: Promise<Error | undefined>,
  timeoutMs: number,
): Promise<Streams | string> {
  const streams: Streams = {};
  const missing = new Set(Object.keys(wanted).filter((k) => wanted[k]));
  return new Promise((resolve) => {
    const timer = setTimeout(
      () =>
        resolve(`timed out waiting for the client to create streams (${[...missing].join(', ')} missing)`),
      timeoutMs,
    );
    void sessionClosed.then((e) => {
      clearTimeout(timer);
      resolve(`connection closed while the streams were being created${e ? `: ${e.message}` : ''}`);
    });
    session.on('stream', (s) => {
      const type = s.headers.streamtype ?? '';
      s.on('error', () => {});
      if (!missing.has(type)) {
        s.reset(RstStatus.REFUSED_STREAM);
        return;
      }
      missing.delete(type);
      streams[type as keyof Streams] = s;
      s.reply();
      if (missing.size === 0) {
        clearTimeout(timer);
        resolve(streams);
      }
    });
  });
}

/** Pipes every source into `dest` and ends `dest` once they all have ended (or closed). */
function pipeAll(sources: Readable[], dest: SpdyStream): Promise<void> {
  return new Promise((resolve) => {
    let open = sources.length;
    const done = () => {
      if (--open > 0) return;
      dest.end(() => resolve());
    };
    if (open === 0) {
      open = 1;
      done();
      return;
    }
    for (const s of sources) {
      let over = false;
      const once = () => {
        if (over) return;
        over = true;
        done();
      };
      s.on('end', once);
      s.on('close', once);
      s.on('error', once);
      s.pipe(dest, { end: false });
    }
  });
}

/** Ends our side of every stream (FIN after what is queued), waiting for the error stream's. */
async function finishStreams(streams: Streams): Promise<void> {
  for (const s of Object.values(streams)) if (s !== streams.error) s.end();
  const error = streams.error;
  if (error) await new Promise<void>((resolve) => error.end(() => resolve()));
}
