/**
 * One lab, started in a process of its own for the isolation stress test
 * (isolation.test.ts): `node isolation-worker.js spire|meshfed DIR`. It
 * starts a lab of its kind, proves that everything it reaches is its own
 * (a SPIRE lab's servers' pids hold the listening sockets of its addresses; a
 * meshfed lab's bundle endpoint addresses lead to its own node agents' pods,
 * SPIRE servers the node agent runs from a pod spec; each bundle endpoint
 * serves exactly the bundle its own server holds, its API servers answer with
 * their own kube-system), prints one JSON line, waits for
 * a line on stdin, stops the lab, checks that no process of its folder is
 * left, and prints a last JSON line.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { podServerTransport } from '../../src/federation/transport.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { clientsFor } from '../../src/kube/client.js';
import { startLabFederation } from '../../src/lab/federation.js';
import { LB_STATUS_FILE, labDown, labUp } from '../../src/lab/lab.js';
import { listensOn, processesUnder } from '../../src/lab/procfs.js';
import { LAB_PORTS } from '../../src/lab/spire.js';
import { parseJwksBundle, sameKeys } from '../../src/spiffe/bundle.js';
import { fetchBundle } from '../../src/spiffe/endpoint.js';
import { labKubectl, waitUntil } from '../helpers/lab.js';
import { spireServerPod } from '../helpers/spire.js';

const [kind, dir] = process.argv.slice(2) as ['spire' | 'meshfed', string];
const V = PROFILE_VERSIONS.current;
const spireVersion = V.spire;

export interface Reached {
  name: string;
  address: string;
  /** What holds the address is ours: our server process's sockets (SPIRE lab), our node agent's pod socket (meshfed lab). */
  ownSockets: boolean;
  /** The bundle the endpoint serves (authenticated as spiffe://TD/spire/server with our own bundle) is our server's. */
  servesOwnBundle: boolean;
  root: string;
  kubeSystemUid?: string;
}

/** What the domain's bundle endpoint at `endpoint` serves, judged against what its own server holds. */
async function reach(
  name: string,
  trustDomain: string,
  endpoint: { address: string; port: number },
  ownSockets: boolean,
  ownBundleJson: string,
): Promise<Reached> {
  const own = parseJwksBundle(ownBundleJson, trustDomain);
  const served = await fetchBundle(`https://${endpoint.address}:${endpoint.port}`, trustDomain, {
    type: 'https_spiffe',
    endpointSpiffeId: `spiffe://${trustDomain}/spire/server`,
    bundle: own,
  });
  return {
    name,
    address: endpoint.address,
    ownSockets,
    servesOwnBundle: sameKeys(own, served),
    root: own.x509Authorities.map((c) => c.fingerprintSha256).join(','),
  };
}

/** The worker's first line. */
export interface Report {
  kind: 'spire' | 'meshfed';
  dir: string;
  block: number;
  reached: Reached[];
}

const stdinLine = () =>
  new Promise<void>((resolve) => createInterface({ input: process.stdin }).once('line', () => resolve()));

if (kind === 'spire') {
  const fed = await startLabFederation({ count: 2, spireVersion, baseDir: dir, domain: { agent: false } });
  const reached = await Promise.all(
    fed.domains.map(async (d) =>
      reach(
        d.opts.name,
        d.trustDomain,
        { address: d.address, port: LAB_PORTS.bundleEndpoint },
        listensOn(d.pids()[0] ?? -1, d.address, LAB_PORTS.server) &&
          listensOn(d.pids()[0] ?? -1, d.address, LAB_PORTS.bundleEndpoint),
        (await d.server.transport.run(['bundle', 'show', '-format', 'spiffe'])).stdout,
      ),
    ),
  );
  const report: Report = { kind, dir, block: Number(fed.domains[0]!.address.split('.')[2]), reached };
  console.log(JSON.stringify(report));
  await stdinLine();
  await fed.stop();
} else {
  const { state } = await labUp({ dir, clusters: 2, profile: 'current', pods: 'simulated' });
  const clients = clientsFor(
    state.kubeconfig,
    state.clusters.map((c) => c.context),
  );
  const kubectl = labKubectl(V.kubernetes, state.kubeconfig);
  const reached = await Promise.all(
    state.clusters.map(async (c) => {
      // A SPIRE server pod of the cluster's trust domain, which its node agent runs for real.
      await kubectl(c.context, ['create', 'namespace', 'spire']);
      await kubectl(c.context, ['apply', '-f', '-'], spireServerPod(c.trustDomain, spireVersion));
      await kubectl(c.context, [
        '-n',
        'spire',
        'rollout',
        'status',
        'statefulset/spire-server',
        '--timeout=180s',
      ]);
      // Where the load balancer sends the bundle endpoint's address: a pod socket of this lab's own node agent.
      let row: { address: string; backend: string | null } | undefined;
      await waitUntil(
        `${c.name}'s bundle endpoint behind the load balancer`,
        async () => {
          const lb = JSON.parse(readFileSync(join(dir, LB_STATUS_FILE), 'utf8')) as {
            clusters: Record<string, Array<{ service: string; address: string; backend: string | null }>>;
          };
          row = lb.clusters[c.name]?.find((r) => r.service === 'spire/spire-server-bundle-endpoint');
          return !!row?.backend;
        },
        180_000,
      );
      const [address, port] = row!.address.split(':') as [string, string];
      const server = podServerTransport(clients.get(c.context)!, {
        namespace: 'spire',
        name: 'spire-server-0',
      });
      const bundle = await server.run(['bundle', 'show', '-format', 'spiffe']);
      const r = await reach(
        c.name,
        c.trustDomain,
        { address, port: Number(port) },
        row!.backend!.startsWith(`unix:${join(c.agentDir, 'ports')}/`),
        bundle.stdout,
      );
      const ns = await clients
        .get(c.context)!
        .get({ apiVersion: 'v1', kind: 'Namespace', name: 'kube-system' });
      return { ...r, kubeSystemUid: ns?.metadata.uid };
    }),
  );
  const report: Report = { kind, dir, block: state.block, reached };
  console.log(JSON.stringify(report));
  await stdinLine();
  await labDown(dir, { keep: true });
}
console.log(JSON.stringify({ stopped: true, left: processesUnder(dir) }));
process.exit(0);
