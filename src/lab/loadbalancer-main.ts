/**
 * The lab load balancer's process (started by `meshfed lab up`, stopped by
 * `meshfed lab down`): reads <dir>/loadbalancer.json, watches every
 * cluster's Services and pods, reconciles its Services of type LoadBalancer
 * on every change and twice a second (a pod's socket appears on disk, not in
 * a watch), and writes what it serves to <dir>/loadbalancer-status.json after each pass.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LB_CONFIG_FILE, LB_STATUS_FILE } from './lab.js';
import { LabLoadBalancer, type LbCluster } from './loadbalancer.js';
import { PassLoop } from './watched.js';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: loadbalancer-main.js LAB_DIR\n');
  process.exit(2);
}
const config = JSON.parse(readFileSync(join(dir, LB_CONFIG_FILE), 'utf8')) as {
  block: number;
  clusters: LbCluster[];
  /** The folder of the listeners' unix socket doors. */
  doors?: string;
};
const log = (cluster: string, message: string) =>
  process.stdout.write(`${new Date().toISOString()} ${cluster}: ${message}\n`);
const loop = new PassLoop(pass, { periodMs: 500, settleMs: 20, log: (m) => log('-', m) });
const lb = new LabLoadBalancer(
  config.clusters,
  config.block,
  (e) => log(e.cluster, e.message),
  config.doors,
  loop.poke,
);

async function pass(): Promise<void> {
  await lb.reconcileAll();
  const clusters: Record<string, Array<{ service: string; address: string; backend: string | null }>> = {};
  for (const c of config.clusters) clusters[c.name] = [];
  for (const row of lb.services())
    clusters[row.cluster]?.push({ service: row.service, address: row.address, backend: row.backend ?? null });
  const tmp = join(dir!, `${LB_STATUS_FILE}.tmp`);
  writeFileSync(tmp, JSON.stringify({ at: new Date().toISOString(), clusters }, null, 2));
  renameSync(tmp, join(dir!, LB_STATUS_FILE));
}

for (const sig of ['SIGTERM', 'SIGINT'] as const)
  process.on(sig, () => {
    void loop
      .stop()
      .then(() => lb.stop())
      .then(() => process.exit(0));
  });
await lb.start();
await loop.start();
