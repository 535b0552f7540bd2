import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { MAX_CLUSTERS } from '../../fleet/resolve.js';
import { fleetJsonSchema } from '../../fleet/schema.js';
import { fleetTemplate, SCHEMA_FILE } from '../../fleet/template.js';
import { writeOutputFile } from '../files.js';
import { type Command, EXIT_OK, UsageError } from '../io.js';

export const initCommand: Command = {
  name: 'init',
  usage: `Usage: meshfed init [-o FILE|-] [--clusters N] [--force]

Writes meshfed.yaml (or FILE; - prints it). --clusters N lists N clusters
(default 2, the guide's), and writes fleet.schema.json beside it
for editors. Refuses to overwrite an existing file without --force.

Examples:
  meshfed init
  meshfed init --clusters 3 -o fleet.yaml
  meshfed init -o - | less`,
  async run(argv, io) {
    const { values } = parseArgs({
      args: argv,
      options: {
        output: { type: 'string', short: 'o', default: 'meshfed.yaml' },
        clusters: { type: 'string', default: '2' },
        force: { type: 'boolean', default: false },
      },
    });
    const n = Number(values.clusters);
    if (!Number.isInteger(n) || n < 2 || n > MAX_CLUSTERS)
      throw new UsageError(
        `--clusters must be a whole number from 2 to ${MAX_CLUSTERS}, not "${values.clusters}"`,
      );
    const text = fleetTemplate(n);
    if (values.output === '-') {
      io.stdout.write(text);
      return EXIT_OK;
    }
    const path = resolve(io.cwd, values.output);
    if (existsSync(path) && !values.force)
      throw new UsageError(`${values.output} exists; pass --force to overwrite it`);
    writeOutputFile(path, text, values.output);
    // The schema beside it lets editors (yaml-language-server) complete and check the file at once.
    writeOutputFile(
      join(dirname(path), SCHEMA_FILE),
      `${JSON.stringify(fleetJsonSchema(), null, 2)}\n`,
      SCHEMA_FILE,
    );
    io.stdout.write(
      `wrote ${values.output} (${n} clusters) and ${SCHEMA_FILE} for editors; check it with \`meshfed validate -f ${values.output}\`\n`,
    );
    return EXIT_OK;
  },
};
