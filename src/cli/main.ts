#!/usr/bin/env node
/** The `meshfed` executable: the only place that touches process.* directly. */
import { processIO } from './io.js';
import { runCli } from './run.js';

const code = await runCli(process.argv.slice(2), processIO());
process.exitCode = code;
