import { parseArgs } from 'node:util';
import { fleetJsonSchema } from '../../fleet/schema.js';
import { type Command, EXIT_OK } from '../io.js';

export const schemaCommand: Command = {
  name: 'schema',
  usage: `Usage: meshfed schema

Prints the JSON Schema of meshfed.yaml. Point your editor at it, e.g. with a
first line "# yaml-language-server: $schema=<path to the schema>".

Examples:
  meshfed schema > fleet.schema.json`,
  async run(argv, io) {
    // No options and no arguments: anything given is a mistake to report, not to ignore.
    parseArgs({ args: argv, options: {}, strict: true, allowPositionals: false });
    io.stdout.write(`${JSON.stringify(fleetJsonSchema(), null, 2)}\n`);
    return EXIT_OK;
  },
};
