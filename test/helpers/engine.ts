/** The lab around an engine test: a lab of N clusters of a profile, the CLI pointed at it with --lab. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { retrying } from '../../src/engine/apply.js';
import type { Profile } from '../../src/fleet/model.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { type ClusterClient, clientsFor } from '../../src/kube/client.js';
import { LAB_ISTIO_BUILDS } from '../../src/lab/binaries.js';
import { withMachineLock } from '../../src/lab/claims.js';
import { apiServerOf } from '../../src/lab/kube.js';
import { readLabState } from '../../src/lab/lab.js';
import { listensOn, portHolders, portSocketStates, processesUnder, running } from '../../src/lab/procfs.js';
import { runMeshfed } from './cli.js';
import { requireLabAsRoot, waitUntil } from './lab.js';

/** Every object of the cluster, as kind/namespace/name (Events and Leases, which controllers churn, left out). */
export async function objectSet(client: ClusterClient): Promise<Set<string>> {
  const out = new Set<string>();
  for (const k of await client.kinds()) {
    if (k.kind === 'Event' || k.kind === 'Lease') continue;
    for (const o of await retrying(() => client.list(k.apiVersion, k.kind)))
      out.add(`${k.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
  }
  return out;
}

export function labSkip(profile: Profile): string | undefined {
  const v = PROFILE_VERSIONS[profile];
  return requireLabAsRoot(
    [
      `bin/kubernetes/${v.kubernetes}/kubectl`,
      `bin/spire/${v.spire}/spire-server`,
      `bin/istio/${LAB_ISTIO_BUILDS[v.istio]}/istioctl`,
      'bin/kwok/0.8.0/stages/.done',
      'bin/cert-manager/1.11.5/crds/.done',
      'bin/cert-manager/1.11.5/webhook',
      'bin/cert-manager/1.11.5/cainjector',
    ],
    'npm run lab:build',
  );
}

/** A lab of the CLI's (`meshfed lab up`), with `extra` flags (`--pods real`), and the CLI against it. */
export async function startLab(profile: Profile, clusters: number, extra: string[] = []) {
  const parent = mkdtempSync(join(tmpdir(), `mf-up-${profile[0]}${clusters}-`));
  const dir = join(parent, 'lab');
  const env = { MESHFED_LAB_DIR: dir, HOME: parent, XDG_CACHE_HOME: join(parent, 'cache') };
  const r = await runMeshfed(
    [
      'lab',
      'up',
      '--clusters',
      String(clusters),
      '--profile',
      profile,
      '--pod-ready-delay',
      '0.3s..0.8s',
      '--pod-stop-delay',
      '0.5s..2s',
      ...extra,
    ],
    { cwd: parent, env },
  );
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const state = readLabState(dir)!;
  const clients = clientsFor(
    state.kubeconfig,
    state.clusters.map((c) => c.context),
  );
  const meshfed = (args: string[]) => runMeshfed([...args, '--lab'], { cwd: parent, env });
  // The folder is removed only after a clean `lab down`: a failed one leaves it (and its logs) to look at.
  const stop = async () => {
    const down = await runMeshfed(['lab', 'down'], { cwd: parent, env });
    assert.equal(
      down.code,
      0,
      `lab down in ${dir} failed; its logs stay there:\n${down.stderr}${down.stdout}`,
    );
    rmSync(parent, { recursive: true, force: true });
  };
  return { parent, dir, env, state, clients, meshfed, stop };
}

const tail = (file: string, lines = 30): string =>
  existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n') : '(no log)';

/** A process as it was started (argv and folder), to start it again as it ran. */
interface Started {
  pid: number;
  argv: string[];
  cwd: string;
}

const startedAs = (pid: number): Started => ({
  pid,
  argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean),
  cwd: readlinkSync(`/proc/${pid}/cwd`),
});

/** Starts `p` again, detached, its output to `logFile`; `exited` says how it ended, once it has. */
function startAgain(p: Started, logFile: string) {
  const log = openSync(logFile, 'w');
  const child = spawn(p.argv[0]!, p.argv.slice(1), {
    cwd: p.cwd,
    detached: true,
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  child.unref();
  const r = { child, exited: undefined as string | undefined };
  child.on('exit', (code, signal) => {
    r.exited = `exited (${signal ?? code})`;
  });
  return r;
}

/**
 * SIGKILLs cluster `index`'s kube-apiserver, runs `whileDown`, then starts it
 * again as it ran (its argv and folder) and waits until that process listens
 * on its port. All under the machine's kwokctl lock: while its port is free,
 * another lab's kwokctl (a test file running beside) could take it, since
 * kwokctl probes for free ports. The killed server's connections can linger
 * in the kernel, closing, after it is gone, and the port can be refused
 * meanwhile (up to tcp_fin_timeout, 60 s, seen under load): the start is
 * tried again each second, as a supervisor restarting it would. A control
 * plane component that exited meanwhile (kube-controller-manager and
 * kube-scheduler exit when they cannot renew their leader lease for 10 s) is
 * started again as it ran, as a node's kubelet restarts its static pods
 * (kwokctl's binary runtime has no supervisor). The server is started again
 * however `whileDown` ends (a lab left without its API server could not be
 * taken down). Returns how many starts it took, the milliseconds from the
 * first start to listening, and the components started again (watched for
 * 20 s after the server listens, outside the lock).
 */
export async function restartApiServer(
  lab: { dir: string; state: { clusters: Array<{ kwokWorkdir: string; kubeconfig: string }> } },
  index: number,
  whileDown: () => Promise<void> = async () => {},
): Promise<{ starts: number; ms: number; restarted: string[] }> {
  const c = lab.state.clusters[index]!;
  const plane = processesUnder(c.kwokWorkdir).map(startedAs);
  const api = plane.find((p) => p.argv[0]!.endsWith('kube-apiserver'));
  assert.ok(api, 'no kube-apiserver process found');
  const others = plane.filter((p) =>
    /\/(kube-controller-manager|kube-scheduler|kwok-controller)$/.test(p.argv[0]!),
  );
  const server = new URL(apiServerOf(c.kubeconfig)!);
  const r = await withMachineLock('kwokctl-create', async () => {
    process.kill(api.pid, 'SIGKILL');
    // The port is free once the process is gone: restart then, not after a guessed pause.
    await waitUntil('the killed kube-apiserver gone', async () => !running(api.pid), 30_000);
    const failed = await whileDown().then(
      () => undefined,
      (e: unknown) => e,
    );
    // Its output goes to a file in the lab folder, shown if it never listens.
    const logFile = join(lab.dir, 'restarted-kube-apiserver.log');
    const port = Number(server.port);
    let restarted = startAgain(api, logFile);
    let starts = 1;
    let lastStart = Date.now();
    const t0 = lastStart;
    await waitUntil(
      'the restarted kube-apiserver listening on its port',
      async () => {
        if (restarted.exited) {
          if (/address already in use/.test(tail(logFile)) && starts < 150) {
            if (Date.now() - lastStart < 1000) return false;
            restarted = startAgain(api, logFile);
            starts++;
            lastStart = Date.now();
            return false;
          }
          throw new Error(`the restarted kube-apiserver ${restarted.exited} (start ${starts})`);
        }
        return listensOn(restarted.child.pid!, server.hostname, port);
      },
      120_000,
    ).catch((e: Error) => {
      const holders = portHolders(port).map((h) => `pid ${h.pid} (${h.state}): ${h.command.slice(0, 200)}`);
      throw new Error(
        `${e.message}\nits log (${logFile}):\n${tail(logFile)}\nholding port ${port}: ${holders.join('\n') || 'no process'}; sockets on it: ${portSocketStates(port).join(', ') || 'none'}`,
      );
    });
    if (failed) throw failed;
    return { starts, ms: Date.now() - t0 };
  });
  // A component whose lease ran out while the server was down exits up to its renew deadline
  // (10 s) later: watched for 20 s, each one that exits is started again once.
  const again: string[] = [];
  const until = Date.now() + 20_000;
  while (Date.now() < until && again.length < others.length) {
    for (const p of others) {
      const name = p.argv[0]!.split('/').pop()!;
      if (!again.includes(name) && !running(p.pid)) {
        startAgain(p, join(lab.dir, `restarted-${name}.log`));
        again.push(name);
      }
    }
    await new Promise((res) => setTimeout(res, 500));
  }
  return { ...r, restarted: again };
}

/**
 * Waits until the istiod of the cluster `client` reaches reports each of
 * `peers` synced in its multi-cluster controller (`/debug/clusterz`, what
 * `istioctl remote-clusters` reads); fails naming what it last reported.
 */
export async function istiodSyncedPeers(
  client: ClusterClient,
  cluster: string,
  peers: string[],
  timeoutMs = 60_000,
): Promise<void> {
  const pods = await client.list('v1', 'Pod', { namespace: 'istio-system', labelSelector: 'app=istiod' });
  const istiod = { namespace: 'istio-system', name: pods[0]!.metadata.name!, container: 'discovery' };
  let clusterz: Array<{ id: string; syncStatus: string }> = [];
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await client.exec(istiod, ['pilot-discovery', 'request', 'GET', '/debug/clusterz']);
    clusterz = JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as typeof clusterz;
    if (peers.every((p) => clusterz.some((z) => z.id === p && z.syncStatus === 'synced'))) return;
    assert.ok(Date.now() < end, `${cluster}'s istiod has not synced its peers: ${JSON.stringify(clusterz)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
