/** Every meshfed subcommand, in the order `meshfed --help` lists them. */
import { certsCommand } from './commands/certs.js';
import { checkCommand, reportCommand, verifyCommand } from './commands/check.js';
import { downCommand, planCommand, statusCommand, upCommand } from './commands/engine.js';
import { initCommand } from './commands/init.js';
import { labCommand } from './commands/lab.js';
import { renderCommand } from './commands/render.js';
import { schemaCommand } from './commands/schema.js';
import { validateCommand } from './commands/validate.js';
import type { Command } from './io.js';

export const COMMANDS: Command[] = [
  initCommand,
  validateCommand,
  schemaCommand,
  renderCommand,
  planCommand,
  upCommand,
  statusCommand,
  downCommand,
  checkCommand,
  verifyCommand,
  reportCommand,
  certsCommand,
  labCommand,
];
