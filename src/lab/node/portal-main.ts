/**
 * The portal's process (portal.ts): run inside a hub namespace as
 * `nsenter --net=<hub> node portal-main.js <routes.json>`. It applies the
 * route file every half second when it changed, logs each route change and
 * error to stderr (addresses only), and on SIGTERM or SIGINT closes its
 * listeners, removes its unix socket files and exits 0.
 */
import { Portal } from './portal.js';

const routesFile = process.argv[2];
if (!routesFile) {
  process.stderr.write('usage: portal-main.js ROUTES_JSON\n');
  process.exit(2);
}
const log = (line: string): void => {
  process.stderr.write(`${new Date().toISOString()} portal: ${line}\n`);
};
const portal = new Portal(routesFile, log);
const POLL_MS = 500;

let stopping = false;
// The pass under way, so that stopping waits for it instead of racing a listener it is opening.
let pass: Promise<void> = Promise.resolve();

function loop(): void {
  if (stopping) return;
  pass = portal.poll().catch((e: unknown) => log(`pass failed: ${(e as Error).message}`));
  void pass.then(() => setTimeout(loop, POLL_MS));
}

for (const sig of ['SIGTERM', 'SIGINT'] as const)
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping`);
    void pass
      .then(() => portal.stop())
      .then(
        () => process.exit(0),
        (e: unknown) => {
          log(`stop failed: ${(e as Error).message}`);
          process.exit(1);
        },
      );
  });
log(`pid ${process.pid} on ${routesFile}`);
loop();
