/**
 * The lab's pure parts: pod delay ranges and kwok's stages, the load
 * balancer's matching of Services to stood-in pods, the merged kubeconfig,
 * CRDs from Helm-templated release files, and the error when the lab is not
 * built.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { parse, parseAllDocuments } from 'yaml';
import { crdManifests } from '../../src/lab/controllers.js';
import { defaultBlock, labRepositories, mergeKubeconfigs } from '../../src/lab/lab.js';
import { lbAddress, podBackend } from '../../src/lab/loadbalancer.js';
import { isRealPod } from '../../src/lab/node/pod-runtime.js';
import { kwokStagesConfig, parseDelayRange } from '../../src/lab/stages.js';
import { runMeshfed } from '../helpers/cli.js';
import { LAB_DIR, REPO_ROOT, requireLab } from '../helpers/lab.js';

const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

describe('lab parts', () => {
  test('pod delays: a duration, or a range of durations', () => {
    assert.deepEqual(parseDelayRange('2s'), { minMs: 2000, maxMs: 2000 });
    assert.deepEqual(parseDelayRange('500ms..1.5s'), { minMs: 500, maxMs: 1500 });
    for (const bad of ['', '3s..1s', '1s..2s..3s', 'soon', '..2s'])
      assert.equal(parseDelayRange(bad), undefined, bad);
  });

  test("kwok's own stages, with the lab's pod delays set and the rest untouched", {
    skip: requireLab(['bin/kwok/0.8.0/stages/.done'], 'npm run lab:build'),
  }, () => {
    const text = kwokStagesConfig(join(LAB_DIR, 'bin/kwok/0.8.0/stages'), {
      start: { minMs: 100, maxMs: 200 },
      ready: { minMs: 4000, maxMs: 6000 },
    });
    const stages = parseAllDocuments(text).map(
      (d) =>
        d.toJS() as {
          kind: string;
          metadata: { name: string };
          spec: { delay?: { durationMilliseconds?: number; jitterDurationMilliseconds?: number } };
        },
    );
    const by = new Map(stages.map((s) => [s.metadata.name, s]));
    assert.ok(stages.every((s) => s.kind === 'Stage'));
    assert.deepEqual(by.get('pod-ready')!.spec.delay, {
      ...by.get('pod-ready')!.spec.delay,
      durationMilliseconds: 4000,
      jitterDurationMilliseconds: 6000,
    });
    assert.equal(by.get('pod-create')!.spec.delay!.durationMilliseconds, 100);
    assert.equal(by.get('pod-create')!.spec.delay!.jitterDurationMilliseconds, 200);
    // Deletion keeps kwok's own timing (up to the pod's deletion timestamp).
    assert.equal(by.get('pod-delete')!.spec.delay!.durationMilliseconds, 1000);
    assert.ok(by.has('node-initialize') && by.has('node-heartbeat-with-lease'));
    // With a stop delay, deletion takes that instead.
    const fast = parseAllDocuments(
      kwokStagesConfig(join(LAB_DIR, 'bin/kwok/0.8.0/stages'), {
        start: { minMs: 100, maxMs: 200 },
        ready: { minMs: 100, maxMs: 200 },
        stop: { minMs: 300, maxMs: 900 },
      }),
    )
      .map((d) => d.toJS() as { metadata: { name: string }; spec: { delay?: Record<string, unknown> } })
      .find((s) => s.metadata.name === 'pod-delete')!;
    assert.equal(fast.spec.delay!.durationMilliseconds, 300);
    assert.equal(fast.spec.delay!.jitterDurationMilliseconds, 900);
    assert.equal(fast.spec.delay!.jitterDurationFrom, undefined);
  });

  test('stages without the pod lifecycle are refused with the command that restores them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mf-stages-'));
    try {
      writeFileSync(
        join(dir, 'x.yaml'),
        'apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nmetadata: {name: node-initialize}\nspec: {}\n',
      );
      assert.throws(
        () => kwokStagesConfig(dir),
        /has no kwok stage "pod-create": run `npm run lab:build` again/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("load balancer: a Service port goes to the socket of a Ready pod the node agent runs, its targetPort by number or by the container port's name", () => {
    const dir = mkdtempSync(join(tmpdir(), 'mf-lbsock-'));
    try {
      const pod = (ip: string, ready: boolean): V1Pod => ({
        spec: {
          containers: [
            {
              name: 'c',
              ports: [
                { name: 'grpc', containerPort: 8081 },
                { name: 'federation', containerPort: 8443 },
              ],
            },
          ],
        },
        status: { podIP: ip, conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
      });
      writeFileSync(join(dir, '10.0.0.7-8443.sock'), '');
      const real = pod('10.0.0.7', true);
      assert.equal(podBackend(dir, 8443, [real]), `unix:${dir}/10.0.0.7-8443.sock`);
      assert.equal(podBackend(dir, 'federation', [real]), `unix:${dir}/10.0.0.7-8443.sock`);
      assert.equal(podBackend(dir, '8443', [real]), `unix:${dir}/10.0.0.7-8443.sock`);
      assert.equal(podBackend(dir, 'grpc', [real]), undefined, 'no socket for that port');
      assert.equal(podBackend(dir, 8443, [pod('10.0.0.7', false)]), undefined, 'not Ready');
      assert.equal(podBackend(dir, 8443, [pod('10.0.0.8', true)]), undefined, "kwok's pod: no socket");
      assert.equal(podBackend(dir, 8443, [pod('10.0.0.8', true), real]), `unix:${dir}/10.0.0.7-8443.sock`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(lbAddress(7, 2, 1), '127.102.7.1');
    assert.throws(() => lbAddress(7, 2, 251), /out of range/);
  });

  test('simulated pods: the node agents run the identity plane (cert-manager, SPIRE, the registrars), kwok the data plane; real pods: both', () => {
    const identity = [
      'quay.io/jetstack/cert-manager-controller',
      'quay.io/jetstack/cert-manager-webhook',
      'quay.io/jetstack/cert-manager-cainjector',
      'ghcr.io/spiffe/spire-server',
      'ghcr.io/spiffe/spire-agent',
      'gcr.io/spiffe-io/spire-server',
      'gcr.io/spiffe-io/spire-agent',
      'gcr.io/spiffe-io/k8s-workload-registrar',
      'ghcr.io/spiffe/spire-controller-manager',
    ];
    const dataPlane = ['docker.io/istio/pilot', 'docker.io/istio/proxyv2', 'docker.io/curlimages/curl'];
    assert.deepEqual([...labRepositories('simulated')].sort(), [...identity].sort());
    for (const r of [...identity, ...dataPlane]) assert.ok(labRepositories('real').includes(r), r);
    const pod = (image: string): V1Pod => ({ spec: { containers: [{ name: 'c', image }] } });
    assert.equal(isRealPod(pod('ghcr.io/spiffe/spire-server:1.15.3'), labRepositories('simulated')), true);
    assert.equal(isRealPod(pod('docker.io/istio/proxyv2:1.30.5'), labRepositories('simulated')), false);
    assert.equal(isRealPod(pod('docker.io/istio/proxyv2:1.30.5'), labRepositories('real')), true);
    assert.equal(isRealPod(pod('registry.invalid/app:1'), labRepositories('real')), false);
  });

  test('the lab kubeconfig renames each kwokctl context, cluster and user after the cluster', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mf-kc-'));
    try {
      const files = ['cluster-1', 'cluster-2'].map((name, i) => {
        const f = join(dir, `${name}.yaml`);
        writeFileSync(
          f,
          `apiVersion: v1
kind: Config
clusters: [{name: kwok-${name}, cluster: {server: "https://127.0.0.1:3276${i}", certificate-authority: /pki/${name}/ca.crt}}]
users: [{name: kwok-${name}, user: {client-certificate: /pki/${name}/admin.crt, client-key: /pki/${name}/admin.key}}]
contexts: [{name: kwok-${name}, context: {cluster: kwok-${name}, user: kwok-${name}}}]
current-context: kwok-${name}
`,
        );
        return { name, kubeconfig: f };
      });
      const merged = parse(mergeKubeconfigs(files)) as {
        contexts: Array<{ name: string; context: { cluster: string; user: string } }>;
        clusters: Array<{ name: string; cluster: { server: string } }>;
        users: Array<{ name: string; user: { 'client-certificate': string } }>;
        'current-context': string;
      };
      assert.deepEqual(
        merged.contexts.map((c) => [c.name, c.context.cluster, c.context.user]),
        [
          ['cluster-1', 'cluster-1', 'cluster-1-admin'],
          ['cluster-2', 'cluster-2', 'cluster-2-admin'],
        ],
      );
      assert.equal(merged.clusters[1]!.cluster.server, 'https://127.0.0.1:32761');
      assert.equal(merged.users[0]!.user['client-certificate'], '/pki/cluster-1/admin.crt');
      assert.equal(merged['current-context'], 'cluster-1');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("CRDs from cert-manager's Helm-templated files lose their template labels and nothing else", () => {
    const dir = mkdtempSync(join(tmpdir(), 'mf-crd-'));
    try {
      writeFileSync(
        join(dir, 'crd-x.yaml'),
        `# {{- include "cert-manager.crd-check" . }}
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: xs.example.io
  labels:
    app: '{{ template "cert-manager.name" . }}'
    keep: "yes"
spec: {group: example.io}
`,
      );
      const [crd] = parseAllDocuments(crdManifests(dir)).map((d) => d.toJS());
      assert.deepEqual(crd.metadata, { name: 'xs.example.io', labels: { keep: 'yes' } });
      assert.deepEqual(crd.spec, { group: 'example.io' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("address blocks: a folder's usual block is stable and in 1–250", () => {
    const a = defaultBlock('/home/a/.meshfed-lab');
    assert.ok(a >= 1 && a <= 250);
    assert.equal(defaultBlock('/home/a/.meshfed-lab'), a);
    assert.notEqual(defaultBlock('/home/a/.meshfed-lab-ci'), a);
  });

  test('lab up without a built lab: exit 2, naming the command that builds it, nothing started', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'mf-nolab-'));
    const saved = process.env.MESHFED_LAB_BIN;
    process.env.MESHFED_LAB_BIN = join(empty, 'bin');
    try {
      const r = await runMeshfed(['lab', 'up', '--dir', join(empty, 'lab')]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /is not built .* run `npm run lab:build`/);
      assert.equal(existsSync(join(empty, 'lab')), false);
    } finally {
      if (saved === undefined) delete process.env.MESHFED_LAB_BIN;
      else process.env.MESHFED_LAB_BIN = saved;
      rmSync(empty, { recursive: true, force: true });
    }
  });

  test('lab up not as root: exit 1, saying it needs root and why, nothing started', {
    skip:
      process.getuid?.() === 0 && existsSync('/usr/bin/setpriv')
        ? requireLab(['bin/kwok/0.8.0/stages/.done'], 'npm run lab:build')
        : 'needs root and setpriv (to run the CLI as another user)',
  }, async () => {
    const parent = mkdtempSync(join(tmpdir(), 'mf-nonroot-'));
    chmodSync(parent, 0o777);
    try {
      // The CLI as nobody, with the built lab.
      const r = spawnSync(
        '/usr/bin/setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          process.execPath,
          CLI,
          'lab',
          'up',
          '--dir',
          join(parent, 'lab'),
        ],
        {
          encoding: 'utf8',
          env: { ...process.env, HOME: parent, MESHFED_LAB_BIN: join(LAB_DIR, 'bin') },
          timeout: 60_000,
        },
      );
      assert.equal(r.status, 1, r.stderr);
      assert.match(
        r.stderr,
        /the lab needs root: its node agents run pods in network and mount namespaces and cgroups/,
      );
      assert.equal(existsSync(join(parent, 'lab')), false);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });
});
