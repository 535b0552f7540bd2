/**
 * Dispatches `meshfed <command> …` to a command. Kept apart from main.ts so
 * tests can call it in-process with a fake CliIO.
 */
import { COMMANDS } from './commands.js';
import { type CliIO, EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from './io.js';
import { terminalSafe } from './terminal.js';
import { VERSION } from './version.js';

function topHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length), 8);
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    'meshfed: take several Kubernetes clusters to one verified, federated Istio mesh with SPIRE identities.',
    '',
    'Usage: meshfed <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `meshfed <command> --help` for a command’s options.',
    '',
  ].join('\n');
}

export async function runCli(argv: string[], io: CliIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(topHelp());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version' || name === 'version') {
    io.stdout.write(`meshfed ${VERSION}\n`);
    return EXIT_OK;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (!entry) {
    io.stderr.write(
      `meshfed: unknown command "${terminalSafe(name)}". Run \`meshfed --help\` for the list.\n`,
    );
    return EXIT_USAGE;
  }
  const command = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(`${command.usage.trimEnd()}\n`);
    return EXIT_OK;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (
      err instanceof UsageError ||
      (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))
    ) {
      io.stderr.write(
        `meshfed ${name}: ${terminalSafe((err as Error).message)}\nRun \`meshfed ${name} --help\` for usage.\n`,
      );
      return EXIT_USAGE;
    }
    io.stderr.write(`meshfed ${name}: ${terminalSafe(err instanceof Error ? err.message : String(err))}\n`);
    return EXIT_FAILED;
  }
}
