import { parseArgs } from 'node:util';
import { formatProblem } from '../../fleet/problems.js';
import { loadFleetArg } from '../fleet-arg.js';
import { type Command, EXIT_OK, EXIT_USAGE, UsageError } from '../io.js';
import { terminalSafe } from '../terminal.js';

export const validateCommand: Command = {
  name: 'validate',
  usage: `Usage: meshfed validate [-f FILE|-] [-o text|json]

Checks the fleet file (default ./meshfed.yaml, or the built-in two-cluster
fleet when there is none). Every problem is reported at once; exit code 2 when
any is an error.

Examples:
  meshfed validate
  meshfed validate -f fleet.yaml -o json`,
  async run(argv, io) {
    const { values } = parseArgs({
      args: argv,
      options: {
        file: { type: 'string', short: 'f' },
        output: { type: 'string', short: 'o', default: 'text' },
      },
    });
    if (values.output !== 'text' && values.output !== 'json') throw new UsageError('-o must be text or json');
    const src = await loadFleetArg(values.file, io);
    const { fleet, problems } = src.result;
    if (values.output === 'json') {
      io.stdout.write(
        `${JSON.stringify({ file: src.label, valid: fleet !== undefined, problems }, null, 2)}\n`,
      );
    } else {
      for (const p of problems) io.stderr.write(`${terminalSafe(formatProblem(src.label, p))}\n`);
      if (fleet)
        io.stdout.write(
          `ok: ${src.label}: ${fleet.clusters.length} clusters, ${fleet.federation.pairs.length} federation pairs, profile ${fleet.profile}\n`,
        );
    }
    return fleet ? EXIT_OK : EXIT_USAGE;
  },
};
