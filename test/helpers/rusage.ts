/**
 * Preloaded (`node --import`) into a meshfed subprocess by the hostile-input
 * tests: at exit, writes the process's peak resident set size (KiB) to
 * stderr, so the test can bound memory as well as time.
 */
import { writeSync } from 'node:fs';

process.on('exit', () => {
  writeSync(2, `\nmeshfed-test-rusage maxRSS=${process.resourceUsage().maxRSS}\n`);
});
