/**
 * Dispatches `meshfed <command> …` to a command. Kept apart from main.ts so
 * tests can call it in-process with a fake CliIO.
 */
import { parseArgs } from 'node:util';
import { PROFILE_VERSIONS } from '../fleet/versions.js';
import { COMMANDS } from './commands.js';
import { type CliIO, EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from './io.js';
import { table } from './table.js';
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
    `  ${'version'.padEnd(width)}  meshfed's version and each profile's upstream versions`,
    '',
    'Run `meshfed <command> --help` for a command’s options.',
    '',
  ].join('\n');
}

const VERSION_USAGE = `Usage: meshfed version [-o text|json]

meshfed's version, the Node.js it runs on, and the upstream versions each
profile installs (Kubernetes it is tested with, Istio, SPIRE, cert-manager,
the registrar, the SPIFFE CSI driver).`;

/** `meshfed version`: meshfed's, Node's and each profile's upstream versions. */
function version(argv: string[], io: CliIO): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(`${VERSION_USAGE}\n`);
    return EXIT_OK;
  }
  let output: string | undefined;
  try {
    output = parseArgs({
      args: argv,
      options: { output: { type: 'string', short: 'o', default: 'text' } },
    }).values.output;
  } catch (e) {
    output = (e as Error).message;
  }
  if (output !== 'text' && output !== 'json') {
    io.stderr.write(
      `meshfed version: -o must be text or json (${terminalSafe(String(output))})\n${VERSION_USAGE}\n`,
    );
    return EXIT_USAGE;
  }
  if (output === 'json') {
    io.stdout.write(
      `${JSON.stringify({ meshfed: VERSION, node: process.version, profiles: PROFILE_VERSIONS }, null, 2)}\n`,
    );
    return EXIT_OK;
  }
  const rows = [['PROFILE', 'KUBERNETES', 'ISTIO', 'SPIRE', 'CERT-MANAGER', 'REGISTRAR', 'SPIFFE CSI']];
  for (const [p, v] of Object.entries(PROFILE_VERSIONS))
    rows.push([
      p,
      v.kubernetes,
      v.istio,
      v.spire,
      v.certManager,
      `${v.registrar} ${v.registrarVersion}`,
      v.spiffeCsiDriver,
    ]);
  io.stdout.write(`meshfed ${VERSION} (Node.js ${process.version})\n\n${table(rows)}\n`);
  return EXIT_OK;
}

export async function runCli(argv: string[], io: CliIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(topHelp());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version') {
    io.stdout.write(`meshfed ${VERSION}\n`);
    return EXIT_OK;
  }
  if (name === 'version') return version(rest, io);
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
