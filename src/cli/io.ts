/**
 * The terminal edge: commands get their streams, environment and working
 * directory through this interface so that tests can run them in-process.
 */
export interface CliIO {
  stdout: { write(chunk: string): unknown; isTTY?: boolean };
  stderr: { write(chunk: string): unknown; isTTY?: boolean };
  /** Reads all of standard input (for `-` arguments). */
  readStdin(): Promise<string>;
  env: NodeJS.ProcessEnv;
  cwd: string;
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
  summary: string;
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
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
  };
}
