/** Every meshfed subcommand, in the order `meshfed --help` lists them. */
import type { Command } from './io.js';

export const COMMANDS: Command[] = [];
