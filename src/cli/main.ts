#!/usr/bin/env node
/** The `meshfed` executable: the only place that touches process.* directly. */
import { homedir } from 'node:os';
import { startupCache } from './startup.js';

// Before the CLI's modules load: what V8 compiled in an earlier run is read from
// the user's cache instead of compiled again (a third of a short run's CPU).
startupCache(process.env, homedir());
const { processIO } = await import('./io.js');
const { runCli } = await import('./run.js');

const code = await runCli(process.argv.slice(2), processIO());
process.exitCode = code;
