/**
 * How the federation engine reaches a SPIRE server: by running the
 * `spire-server` CLI against the server's admin socket. Locally (the lab) the
 * binary runs here; on a cluster the same arguments run through a pod exec
 * into the spire-server container. The engine sees only this interface.
 */
import { spawn } from 'node:child_process';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface SpireServerTransport {
  /** Where the commands go, for messages ("cluster-1: spire/spire-server-0", "lab foo.com"). */
  readonly target: string;
  /** Runs `spire-server <args…>` against the server's API socket. */
  run(args: string[], opts?: { stdin?: string; timeoutMs?: number }): Promise<ExecResult>;
}

export class TransportError extends Error {
  override name = 'TransportError';
}

/** Runs a program with arguments (no shell), bounded in time and output. */
export function execFileBounded(
  file: string,
  args: string[],
  opts: { stdin?: string; timeoutMs?: number; maxBytes?: number; env?: Record<string, string> } = {},
): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const maxBytes = opts.maxBytes ?? 8 << 20;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    const take = (into: Buffer[]) => (b: Buffer) => {
      size += b.length;
      if (size > maxBytes) child.kill('SIGKILL');
      else into.push(b);
    };
    child.stdout.on('data', take(out));
    child.stderr.on('data', take(err));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new TransportError(`cannot run ${file}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL' && size > maxBytes)
        return reject(new TransportError(`${file} ${args[0] ?? ''}: output larger than ${maxBytes} bytes`));
      if (signal)
        return reject(
          new TransportError(`${file} ${args.slice(0, 2).join(' ')}: no answer within ${timeoutMs} ms`),
        );
      resolve({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      });
    });
    child.stdin.on('error', () => {}); // the program may exit before reading stdin
    child.stdin.end(opts.stdin ?? '');
  });
}

/** A spire-server binary on this machine, talking to the server's unix socket. */
export function localServerTransport(
  binary: string,
  socketPath: string,
  target = socketPath,
): SpireServerTransport {
  return {
    target,
    run: (args, opts) => execFileBounded(binary, [...args, '-socketPath', socketPath], opts),
  };
}

/** The part of a Kubernetes client a pod transport needs (src/kube/client.ts implements it). */
export interface PodExec {
  readonly context: string;
  exec(
    pod: { namespace: string; name: string; container: string },
    command: string[],
    o?: { stdin?: string; timeoutMs?: number; maxBytes?: number },
  ): Promise<ExecResult>;
}

/**
 * spire-server in its pod, through a pod exec. The command is relative,
 * `bin/spire-server`: SPIRE's images (1.5 to 1.15) run in WORKDIR /opt/spire,
 * so it is /opt/spire/bin/spire-server there, and the lab maps it to its own
 * build. No -socketPath: the server's socket is SPIRE's default, which is
 * what meshfed renders.
 */
export function podServerTransport(
  client: PodExec,
  pod: { namespace: string; name: string; container?: string },
): SpireServerTransport {
  const target = { namespace: pod.namespace, name: pod.name, container: pod.container ?? 'spire-server' };
  return {
    target: `${client.context}: ${pod.namespace}/${pod.name}`,
    run: (args, opts) => client.exec(target, ['bin/spire-server', ...args], opts ?? {}),
  };
}
