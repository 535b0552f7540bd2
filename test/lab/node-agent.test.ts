/**
 * The lab node agent runs a pod of a known image for real, from the pod as
 * the API server stores it, beside kwok: a real kube-apiserver (kwok's
 * stages told to leave pods of known images alone), the agent in this
 * process, a real SPIRE server pod (its config from a ConfigMap volume, its
 * data in an emptyDir, its readiness from its own /ready probe, gated by a startup probe), a Service
 * in front of it, and a simulated pod next to it that kwok keeps running.
 *
 * Proves: the pod's status comes from the process (IP from the lab's pod
 * network, containerID, Ready from the probe); the process runs the lab's
 * build in a kubelet-shaped cgroup of the pod; the Service's ClusterIP
 * reaches it from another namespace of the cluster; the pod reaches the API
 * server through the `kubernetes` Service; a killed process is restarted and
 * the pod is not Ready meanwhile; a deleted pod leaves no process, namespace
 * or cgroup; the simulated pod stays kwok's. Needs root.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { labBinDir } from '../../src/lab/binaries.js';
import { claimBlock, releaseBlock } from '../../src/lab/claims.js';
import { type KubeCluster, KWOK_VERSION, startKubeCluster } from '../../src/lab/kube.js';
import { CGROUP_HIERARCHY, cgroupProcesses } from '../../src/lab/node/container.js';
import { REAL_REPOSITORIES } from '../../src/lab/node/images.js';
import { labNamespaces } from '../../src/lab/node/network.js';
import { labCgroup, type RunningNodeAgent, runNodeAgent } from '../../src/lab/node/run.js';
import { DEFAULT_POD_TIMINGS, kwokStagesConfig } from '../../src/lab/stages.js';
import { LAB_DIR, requireLab, runCommand, waitUntil } from '../helpers/lab.js';

const K8S = PROFILE_VERSIONS.current.kubernetes;
const SPIRE = PROFILE_VERSIONS.current.spire;
const notRoot = process.getuid?.() === 0 ? undefined : 'needs root (network and mount namespaces, cgroups)';
const skip =
  notRoot ??
  requireLab(
    [
      `bin/kubernetes/${K8S}/kube-apiserver`,
      `bin/kwok/${KWOK_VERSION}/kwokctl`,
      `bin/spire/${SPIRE}/spire-server`,
    ],
    'npm run lab:build',
  );

const SERVER_CONF = `server {
  bind_address = "0.0.0.0"
  bind_port = "8081"
  socket_path = "/tmp/spire-server/private/api.sock"
  trust_domain = "node-agent.test"
  data_dir = "/run/spire/data"
  log_level = "INFO"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "/run/spire/data/datastore.sqlite3"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
}
health_checks {
  listener_enabled = true
  bind_address = "0.0.0.0"
  bind_port = "8080"
  live_path = "/live"
  ready_path = "/ready"
}
`;

const spirePod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'spire-server-0', namespace: 'spire', labels: { app: 'spire-server' } },
  spec: {
    containers: [
      {
        name: 'spire-server',
        image: `ghcr.io/spiffe/spire-server:${SPIRE}`,
        args: ['-config', '/run/spire/config/server.conf'],
        ports: [
          { containerPort: 8081, name: 'grpc' },
          { containerPort: 8080, name: 'healthz' },
        ],
        // Readiness only once the startup probe has passed (not before 5 s), then at once, not a period later.
        startupProbe: { httpGet: { path: '/ready', port: 8080 }, initialDelaySeconds: 5, periodSeconds: 1 },
        readinessProbe: { httpGet: { path: '/ready', port: 8080 }, periodSeconds: 30 },
        volumeMounts: [
          { name: 'config', mountPath: '/run/spire/config', readOnly: true },
          { name: 'data', mountPath: '/run/spire/data' },
          { name: 'socket', mountPath: '/tmp/spire-server/private' },
        ],
      },
    ],
    volumes: [
      { name: 'config', configMap: { name: 'spire-server' } },
      { name: 'data', emptyDir: {} },
      { name: 'socket', emptyDir: {} },
    ],
  },
};

const sh = runCommand;

describe('the lab node agent runs a pod of a known image from its stored spec', {
  skip,
  timeout: 600_000,
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-agent-'));
  const owner = `node-agent test ${process.pid}`;
  let block = 0;
  let cluster: KubeCluster;
  let api: CoreV1Api;
  let running: RunningNodeAgent;
  const logs: string[] = [];
  const cgroup = () => labCgroup(block);

  const pod = async (name = 'spire-server-0'): Promise<V1Pod | undefined> =>
    api.readNamespacedPod({ name, namespace: 'spire' }).catch(() => undefined);
  const ready = (p: V1Pod | undefined) =>
    p?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  const serverPid = (p: V1Pod | undefined) => {
    const recorded = JSON.parse(readFileSync(join(dir, 'agent', 'pods.json'), 'utf8')) as {
      pods: Array<{ pod: string; pids: Record<string, number> }>;
    };
    return recorded.pods.find((x) => x.pod === `spire/${p?.metadata?.name}`)?.pids['spire-server'];
  };

  before(async () => {
    block = await claimBlock({ owner });
    const stages = join(dir, 'stages.yaml');
    writeFileSync(
      stages,
      kwokStagesConfig(
        join(LAB_DIR, 'bin', 'kwok', KWOK_VERSION, 'stages'),
        DEFAULT_POD_TIMINGS,
        REAL_REPOSITORIES,
      ),
    );
    cluster = await startKubeCluster({
      name: 'agent-1',
      kubernetesVersion: K8S,
      workdir: join(dir, 'kwok'),
      nodes: 1,
      configFiles: [stages],
      enableCrds: ['Logs'],
    });
    const kc = new KubeConfig();
    kc.loadFromFile(cluster.kubeconfig);
    api = kc.makeApiClient(CoreV1Api);
    running = await runNodeAgent(
      {
        cluster: 'agent-1',
        kubeconfig: cluster.kubeconfig,
        dir: join(dir, 'agent'),
        block,
        clusterIndex: 0,
        ca: cluster.ca,
      },
      (line) => logs.push(line),
    );
    await api.createNamespace({ body: { metadata: { name: 'spire' } } });
    await api.createNamespacedConfigMap({
      namespace: 'spire',
      body: { metadata: { name: 'spire-server' }, data: { 'server.conf': SERVER_CONF } },
    });
    await api.createNamespacedService({
      namespace: 'spire',
      body: {
        metadata: { name: 'spire-server' },
        spec: {
          selector: { app: 'spire-server' },
          ports: [{ name: 'grpc', port: 8081, targetPort: 'grpc' }],
        },
      },
    });
    // Pods need the namespace's default ServiceAccount, which the controller manager makes.
    await waitUntil('the default ServiceAccount of spire', async () =>
      api.readNamespacedServiceAccount({ name: 'default', namespace: 'spire' }).then(
        () => true,
        () => false,
      ),
    );
    await api.createNamespacedPod({ namespace: 'spire', body: spirePod });
    await api.createNamespacedPod({
      namespace: 'spire',
      body: {
        metadata: { name: 'simulated', namespace: 'spire' },
        spec: { containers: [{ name: 'app', image: 'registry.invalid/app:1' }] },
      },
    });
  });

  after(async () => {
    await running?.stop().catch((e: unknown) => console.log(`agent stop: ${(e as Error).message}`));
    if (cluster?.pids().length) await cluster.stop().catch(() => {});
    if (block) await releaseBlock(block, owner);
    if (logs.length) console.log(`agent log:\n${logs.join('\n')}`);
    rmSync(dir, { recursive: true, force: true });
  });

  test('the SPIRE server pod runs for real: Ready from its own probes (startup, then readiness at once), its address from the pod network', async () => {
    await waitUntil('spire-server-0 Ready', async () => ready(await pod()), 120_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${logs.join('\n')}`);
    });
    const p = (await pod())!;
    assert.match(
      p.status!.podIP!,
      new RegExp(`^10\\.${block}\\.1\\.\\d+$`),
      'not an address of the pod network',
    );
    const cs = p.status!.containerStatuses![0]!;
    assert.match(cs.containerID!, /^containerd:\/\/[0-9a-f]{64}$/);
    assert.equal(cs.restartCount, 0);
    // A kubelet's startup probe: readiness is not probed before it passes (5 s in), and is probed
    // as soon as it has (not 30 s later, the readiness period); the container reports started.
    assert.equal(cs.started, true);
    const readyAt = p.status!.conditions!.find((c) => c.type === 'Ready')!.lastTransitionTime!;
    const after = (new Date(readyAt).getTime() - new Date(cs.state!.running!.startedAt!).getTime()) / 1000;
    assert.ok(after >= 4 && after <= 20, `Ready ${after} s after the container started`);
    const pid = serverPid(p)!;
    assert.ok(pid, 'the agent records no pid');
    // The process is the lab's SPIRE build, seen at the image's path, in the pod's kubelet-shaped cgroup.
    const exe = statSync(`/proc/${pid}/exe`);
    const build = statSync(join(labBinDir('spire', SPIRE), 'spire-server'));
    assert.deepEqual(
      [exe.dev, exe.ino],
      [build.dev, build.ino],
      "the process is not the lab's spire-server build",
    );
    const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    assert.match(
      lines,
      new RegExp(
        `pids:/${cgroup()}/kubepods/besteffort/pod${p.metadata!.uid}/${cs.containerID!.slice(13)}\\n`,
      ),
    );
  });

  test("the simulated pod beside it stays kwok's", async () => {
    await waitUntil(
      'the simulated pod Running',
      async () => (await pod('simulated'))?.status?.phase === 'Running',
    );
    const p = (await pod('simulated'))!;
    assert.doesNotMatch(
      p.status?.podIP ?? '',
      new RegExp(`^10\\.${block}\\.`),
      'the agent took a pod it cannot run',
    );
    const recorded = readFileSync(join(dir, 'agent', 'pods.json'), 'utf8');
    assert.doesNotMatch(recorded, /simulated/);
  });

  test("the Service's ClusterIP reaches the pod from the node's namespace; the pod reaches the API server", async () => {
    const svc = await api.readNamespacedService({ name: 'spire-server', namespace: 'spire' });
    const node = await running.network.node((await pod())!.spec!.nodeName!);
    const tcp = (ns: string, host: string, port: number) =>
      sh(['nsenter', `--net=${ns}`, '--', '/bin/bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`]);
    await waitUntil(
      'the ClusterIP routed',
      async () => (await tcp(node.netns, svc.spec!.clusterIP!, 8081)).code === 0,
      30_000,
    );
    // A port the Service does not have is not routed.
    assert.notEqual((await tcp(node.netns, svc.spec!.clusterIP!, 8080)).code, 0);
    // The kubernetes Service: TLS to the real API server, whose certificate names kubernetes.default.svc.
    const kube = await api.readNamespacedService({ name: 'kubernetes', namespace: 'default' });
    const r = await sh([
      'nsenter',
      `--net=${node.netns}`,
      '--',
      'openssl',
      's_client',
      '-connect',
      `${kube.spec!.clusterIP}:443`,
      '-servername',
      'kubernetes.default.svc',
      '-verify_hostname',
      'kubernetes.default.svc',
      '-CAfile',
      join(dir, 'kwok', 'clusters', 'agent-1', 'pki', 'ca.crt'),
      '-verify_return_error',
    ]);
    assert.match(r.out, /Verify return code: 0 \(ok\)/, r.out);
  });

  test('a killed server process is restarted: the pod is not Ready meanwhile, then Ready again', async () => {
    const before = (await pod())!;
    const pid = serverPid(before)!;
    process.kill(pid, 'SIGKILL');
    await waitUntil('the pod not Ready after the kill', async () => !ready(await pod()), 30_000);
    await waitUntil(
      'the pod Ready again, restarted once',
      async () => {
        const p = await pod();
        return ready(p) && p?.status?.containerStatuses?.[0]?.restartCount === 1;
      },
      90_000,
    );
    const after = (await pod())!;
    const cs = after.status!.containerStatuses![0]!;
    assert.equal(cs.lastState?.terminated?.exitCode, 137);
    assert.notEqual(
      cs.containerID,
      before.status!.containerStatuses![0]!.containerID,
      'a restart is a new container',
    );
    assert.notEqual(serverPid(after), pid);
    // kubectl logs reaches the container's output (kwok serves it from the files the agent names), --previous the run before.
    const logs = async (previous: boolean) => {
      const args = ['--kubeconfig', cluster.kubeconfig, 'logs', '-n', 'spire', 'spire-server-0'];
      const r = await sh([cluster.kubectl, ...args, ...(previous ? ['--previous'] : [])]);
      assert.equal(r.code, 0, r.out);
      return r.out;
    };
    let current = '';
    await waitUntil('kubectl logs of the restarted server', async () => {
      current = await logs(false);
      return /Starting Server APIs/.test(current);
    });
    const previous = await logs(true);
    assert.match(previous, /Starting Server APIs/);
    assert.notEqual(previous, current, "the previous run's log is the current one");
  });

  test('a deleted pod leaves no process, namespace or cgroup; the agent stops clean', async () => {
    const p = (await pod())!;
    const pid = serverPid(p)!;
    await api.deleteNamespacedPod({ name: 'spire-server-0', namespace: 'spire' });
    await waitUntil('the pod gone from the API server', async () => (await pod()) === undefined, 60_000);
    assert.throws(() => readFileSync(`/proc/${pid}/cmdline`), 'the server process still runs');
    assert.deepEqual(cgroupProcesses(`${cgroup()}/kubepods/besteffort/pod${p.metadata!.uid}`), []);
    assert.equal(
      existsSync(join(CGROUP_HIERARCHY, cgroup(), 'kubepods', 'besteffort', `pod${p.metadata!.uid}`)),
      false,
    );
    const namespaces = await labNamespaces(block);
    assert.equal(namespaces.filter((n) => /-p[0-9a-f]{8}$/.test(n)).length, 0, namespaces.join(', '));
    await running.stop();
    assert.deepEqual(await labNamespaces(block), []);
    assert.equal(existsSync(join(CGROUP_HIERARCHY, cgroup())), false, "the lab's cgroup is left");
  });
});
