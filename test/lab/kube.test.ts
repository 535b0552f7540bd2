/**
 * A real Kubernetes control plane from the lab (kwokctl's binary runtime on
 * the binaries `npm run lab:build` made: etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler; kwok for nodes and pods), driven by
 * the real kubectl of the same release.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execFileBounded } from '../../src/federation/transport.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { type KubeCluster, startKubeCluster } from '../../src/lab/kube.js';
import { clusterKubectl, controlPlaneSkip } from '../helpers/lab.js';

const K8S = PROFILE_VERSIONS.current.kubernetes;
const skip = controlPlaneSkip(K8S);

const CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'widgets.lab.meshfed.dev' },
  spec: {
    group: 'lab.meshfed.dev',
    names: { kind: 'Widget', plural: 'widgets', singular: 'widget' },
    scope: 'Namespaced',
    versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object' } } }],
  },
};

describe(`Kubernetes ${K8S} control plane in the lab`, { skip, timeout: 300_000 }, () => {
  const workdir = mkdtempSync(join(tmpdir(), 'mf-kube-'));
  let cluster: KubeCluster;
  const kubectl = clusterKubectl(() => cluster);

  before(async () => {
    cluster = await startKubeCluster({ name: 'cluster-1', kubernetesVersion: K8S, workdir, nodes: 2 });
  });
  after(async () => {
    if (cluster?.pids().length) await cluster.stop().catch(() => {});
    rmSync(workdir, { recursive: true, force: true });
  });

  test('kubectl reaches the real API server of the release; two simulated nodes are Ready', async () => {
    const version = JSON.parse(await kubectl(['version', '-o', 'json'])) as {
      serverVersion: { gitVersion: string };
    };
    assert.equal(version.serverVersion.gitVersion, `v${K8S}`);
    const nodes = JSON.parse(await kubectl(['get', 'nodes', '-o', 'json'])) as {
      items: Array<{ status: { conditions: Array<{ type: string; status: string }> } }>;
    };
    assert.equal(nodes.items.length, 2);
    for (const n of nodes.items)
      assert.ok(n.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True'));
  });

  test('a Deployment becomes Ready (the real controller manager and scheduler, pods run by kwok)', async () => {
    await kubectl(['create', 'deployment', 'hello', '--image=registry.invalid/hello:1', '--replicas=3']);
    await kubectl(['rollout', 'status', 'deployment/hello', '--timeout=60s']);
    const d = JSON.parse(await kubectl(['get', 'deployment', 'hello', '-o', 'json'])) as {
      status: { readyReplicas: number; observedGeneration: number };
    };
    assert.equal(d.status.readyReplicas, 3);
    const pods = JSON.parse(await kubectl(['get', 'pods', '-l', 'app=hello', '-o', 'json'])) as {
      items: Array<{ spec: { nodeName: string } }>;
    };
    assert.equal(pods.items.length, 3);
    assert.ok(pods.items.every((p) => p.spec.nodeName.startsWith('node-')));
  });

  test('a CRD becomes Established; deleting a namespace completes', async () => {
    await kubectl(['apply', '-f', '-'], JSON.stringify(CRD));
    await kubectl(['wait', '--for=condition=Established', `crd/${CRD.metadata.name}`, '--timeout=30s']);
    await kubectl(['create', 'namespace', 'doomed']);
    await kubectl(['-n', 'doomed', 'create', 'configmap', 'c', '--from-literal=a=b']);
    await kubectl(
      ['-n', 'doomed', 'apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'lab.meshfed.dev/v1', kind: 'Widget', metadata: { name: 'w' } }),
    );
    await kubectl(['delete', 'namespace', 'doomed', '--wait=true', '--timeout=60s']);
    const r = await execFileBounded(cluster.kubectl, [
      '--kubeconfig',
      cluster.kubeconfig,
      'get',
      'namespace',
      'doomed',
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /NotFound|not found/);
  });

  test('stopping the cluster leaves no process and no listening port behind', async () => {
    const server = /server: (https:\/\/\S+)/.exec(await kubectl(['config', 'view', '--minify']))?.[1];
    assert.ok(server);
    const pids = cluster.pids();
    assert.ok(pids.length >= 5, `expected etcd, apiserver, controller manager, scheduler, kwok: ${pids}`);
    await cluster.stop();
    // stop() returns once every process has exited: nothing to wait for here.
    assert.deepEqual(cluster.pids(), []);
    for (const pid of pids)
      assert.equal(
        existsSync(`/proc/${pid}/cmdline`) && readFileSync(`/proc/${pid}/cmdline`, 'utf8') !== '',
        false,
        `process ${pid} still runs`,
      );
    const u = new URL(server);
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect(Number(u.port), u.hostname);
      s.on('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.on('error', () => resolve(true));
    });
    assert.equal(refused, true, `${server} still accepts connections`);
  });
});
