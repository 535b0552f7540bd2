/**
 * The lab node agent as a lab daemon: `node agent-main.js <config.json>`
 * (run.ts' NodeAgentConfig). SIGTERM stops every pod it runs, its kubelets
 * and its network, then exits.
 */
import { readFileSync } from 'node:fs';
import { type NodeAgentConfig, runNodeAgent } from './run.js';

const file = process.argv[2];
if (!file) {
  console.error('usage: agent-main.js <config.json>');
  process.exit(2);
}
const config = JSON.parse(readFileSync(file, 'utf8')) as NodeAgentConfig;
const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);
const running = await runNodeAgent(config, log);
log(`node agent of ${config.cluster} running`);
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const)
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping every pod`);
    running.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log(`stop failed: ${(e as Error).message}`);
        process.exit(1);
      },
    );
  });
