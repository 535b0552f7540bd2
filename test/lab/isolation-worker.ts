/**
 * One lab, started in a process of its own for the isolation stress test
 * (isolation.test.ts): `node isolation-worker.js spire|meshfed DIR`. It
 * starts a lab of its kind, proves that everything it reaches is its own
 * (its SPIRE servers' pids hold the listening sockets of its addresses, each
 * bundle endpoint serves exactly the bundle its own server holds, its API
 * servers answer with their own kube-system), prints one JSON line, waits for
 * a line on stdin, stops the lab, checks that no process of its folder is
 * left, and prints a last JSON line.
 */
import { createInterface } from 'node:readline';
import { execFileBounded } from '../../src/federation/transport.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { clientsFor } from '../../src/kube/client.js';
import { labBinDir } from '../../src/lab/binaries.js';
import { startLabFederation } from '../../src/lab/federation.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import { listensOn, processesUnder } from '../../src/lab/procfs.js';
import { LAB_PORTS } from '../../src/lab/spire.js';
import { parseJwksBundle, sameKeys } from '../../src/spiffe/bundle.js';
import { fetchBundle } from '../../src/spiffe/endpoint.js';

const [kind, dir] = process.argv.slice(2) as ['spire' | 'meshfed', string];
const spireVersion = PROFILE_VERSIONS.current.spire;

export interface Reached {
  name: string;
  address: string;
  /** Our server process holds the API and bundle endpoint sockets of the address. */
  ownSockets: boolean;
  /** The bundle the endpoint serves (authenticated as spiffe://TD/spire/server with our own bundle) is our server's. */
  servesOwnBundle: boolean;
  root: string;
  kubeSystemUid?: string;
}

/** What the domain's bundle endpoint serves, judged against what its own server holds. */
async function reach(
  name: string,
  trustDomain: string,
  address: string,
  serverPid: number,
  ownBundleJson: string,
): Promise<Reached> {
  const own = parseJwksBundle(ownBundleJson, trustDomain);
  const served = await fetchBundle(`https://${address}:${LAB_PORTS.bundleEndpoint}`, trustDomain, {
    type: 'https_spiffe',
    endpointSpiffeId: `spiffe://${trustDomain}/spire/server`,
    bundle: own,
  });
  return {
    name,
    address,
    ownSockets:
      listensOn(serverPid, address, LAB_PORTS.server) &&
      listensOn(serverPid, address, LAB_PORTS.bundleEndpoint),
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
        d.address,
        d.pids()[0] ?? -1,
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
  const spireServer = `${labBinDir('spire', spireVersion)}/spire-server`;
  const reached = await Promise.all(
    state.clusters.map(async (c) => {
      const pid = c.daemons.find((d) => d.name.endsWith('spire-server'))?.pid ?? -1;
      const bundle = await execFileBounded(spireServer, [
        'bundle',
        'show',
        '-format',
        'spiffe',
        '-socketPath',
        c.spireServerSocket,
      ]);
      const r = await reach(c.name, c.trustDomain, c.address, pid, bundle.stdout);
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
