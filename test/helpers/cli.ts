/** Runs the CLI in-process with captured output, for tests. */
import type { CliIO } from '../../src/cli/io.js';
import { runCli } from '../../src/cli/run.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runMeshfed(
  argv: string[],
  opts: { cwd?: string; stdin?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    readStdin: async () => opts.stdin ?? '',
    env: opts.env ?? {},
    cwd: opts.cwd ?? process.cwd(),
  };
  const code = await runCli(argv, io);
  return { code, stdout, stderr };
}
