/**
 * The terminal edge: commands get their streams, environment and working
 * directory through this interface so that tests can run them in-process.
 */
export interface CliIO {
  stdout: { write(chunk: string): unknown; isTTY?: boolean };
  stderr: { write(chunk: string): unknown; isTTY?: boolean };
  /**
   * Reads standard input (for `-` arguments), stopping after `maxBytes` + 1
   * bytes so that a caller can tell input beyond its limit without holding it.
   */
  readStdin(maxBytes: number): Promise<string>;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /**
   * Calls `listener` once when the user asks the command to stop (SIGINT or
   * SIGTERM), instead of the process ending there (a second signal ends it);
   * returns a function that gives the signals back. For long-running commands (`federation watch`);
   * absent where nothing can be signalled.
   */
  onInterrupt?(listener: (signal: string) => void): () => void;
}

/** Exit codes: 0 success, 1 something checked failed or a runtime error, 2 bad input or usage. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A bad-input error: the CLI prints its message and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface Command {
  name: string;
  /** Full help text shown by `meshfed <name> --help`. */
  usage: string;
  run(argv: string[], io: CliIO): Promise<number>;
}

export function processIO(): CliIO {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    onInterrupt(listener) {
      const signals = ['SIGINT', 'SIGTERM'] as const;
      let told = false;
      const off = () => {
        for (const s of signals) process.off(s, on);
      };
      // The first signal asks the command to stop; a second one ends the process as if unhandled.
      function on(signal: NodeJS.Signals) {
        if (!told) {
          told = true;
          listener(signal);
          return;
        }
        off();
        process.kill(process.pid, signal);
      }
      for (const s of signals) process.on(s, on);
      return off;
    },
    readStdin: async (maxBytes) => {
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const chunk of process.stdin) {
        chunks.push(chunk as Buffer);
        n += (chunk as Buffer).length;
        if (n > maxBytes) break;
      }
      return Buffer.concat(chunks)
        .subarray(0, maxBytes + 1)
        .toString('utf8');
    },
  };
}
