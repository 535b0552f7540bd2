/**
 * Health: table tests of the rules, then the rules on the states a real
 * control plane goes through (lab: kube-controller-manager and kwok pods
 * with a 2–2.5 s ready delay), checked against kubectl's own rollout status.
 * The control plane is shared; each test rolls out a Deployment of its own,
 * so any one of them runs alone (`--test-name-pattern`).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execFileBounded } from '../../src/federation/transport.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { type ClusterClient, clientsFor, KubeApiError, KubeRequestError } from '../../src/kube/client.js';
import { type Health, healthOf, type ObjectState, worst } from '../../src/kube/health.js';
import { WaitError, waitHealthy } from '../../src/kube/wait.js';
import { type KubeCluster, startKubeCluster } from '../../src/lab/kube.js';
import { DEFAULT_POD_TIMINGS, kwokStagesConfig } from '../../src/lab/stages.js';
import { LAB_DIR, requireLab, waitUntil } from '../helpers/lab.js';

const dep = (
  spec: Record<string, unknown>,
  status: Record<string, unknown>,
  generation = 2,
): ObjectState => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'd', generation },
  spec,
  status: { observedGeneration: generation, ...status },
});

describe('health rules', () => {
  const cases: Array<[string, ObjectState | undefined, Health['status'], RegExp?]> = [
    ['absent', undefined, 'Missing', /not found/],
    [
      'deployment, generation not observed',
      dep({ replicas: 2 }, { observedGeneration: 1 }),
      'Progressing',
      /observe generation 2/,
    ],
    [
      'deployment, updating',
      dep({ replicas: 3 }, { replicas: 3, updatedReplicas: 1 }),
      'Progressing',
      /1 of 3 new replicas updated/,
    ],
    [
      'deployment, old pods left',
      dep({ replicas: 2 }, { replicas: 3, updatedReplicas: 2 }),
      'Progressing',
      /1 old replicas pending termination/,
    ],
    [
      'deployment, not yet available',
      dep({ replicas: 2 }, { replicas: 2, updatedReplicas: 2, availableReplicas: 1 }),
      'Progressing',
      /1 of 2 updated replicas available/,
    ],
    [
      'deployment, done',
      dep({ replicas: 2 }, { replicas: 2, updatedReplicas: 2, availableReplicas: 2 }),
      'Healthy',
    ],
    [
      'deployment, deadline exceeded',
      dep(
        { replicas: 2 },
        {
          conditions: [
            {
              type: 'Progressing',
              status: 'False',
              reason: 'ProgressDeadlineExceeded',
              message: 'ReplicaSet "d-1" has timed out progressing.',
            },
          ],
        },
      ),
      'Degraded',
      /progress deadline: ReplicaSet "d-1" has timed out/,
    ],
    [
      'statefulset, partitioned rollout done above the partition',
      {
        kind: 'StatefulSet',
        metadata: { generation: 1 },
        spec: { replicas: 3, updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: 2 } } },
        status: {
          observedGeneration: 1,
          readyReplicas: 3,
          updatedReplicas: 1,
          currentRevision: 'a',
          updateRevision: 'b',
        },
      },
      'Healthy',
    ],
    [
      'statefulset, revision not current',
      {
        kind: 'StatefulSet',
        metadata: { generation: 1 },
        spec: { replicas: 1 },
        status: {
          observedGeneration: 1,
          readyReplicas: 1,
          updatedReplicas: 0,
          currentRevision: 'a',
          updateRevision: 'b',
        },
      },
      'Progressing',
      /0 of 1 pods at revision b/,
    ],
    [
      'daemonset, unavailable',
      {
        kind: 'DaemonSet',
        metadata: { generation: 1 },
        status: {
          observedGeneration: 1,
          desiredNumberScheduled: 3,
          updatedNumberScheduled: 3,
          numberAvailable: 2,
        },
      },
      'Progressing',
      /2 of 3 updated pods available/,
    ],
    [
      'crd, not established',
      {
        kind: 'CustomResourceDefinition',
        apiVersion: 'apiextensions.k8s.io/v1',
        status: { conditions: [{ type: 'Established', status: 'False', reason: 'Installing' }] },
      },
      'Progressing',
      /Established is False \(Installing\)/,
    ],
    [
      'certificate, ready for an older generation',
      {
        kind: 'Certificate',
        apiVersion: 'cert-manager.io/v1',
        metadata: { generation: 3 },
        status: { conditions: [{ type: 'Ready', status: 'True', observedGeneration: 2 }] },
      },
      'Progressing',
      /Ready is for generation 2, not 3/,
    ],
    [
      'certificate, failed',
      {
        kind: 'Certificate',
        apiVersion: 'cert-manager.io/v1',
        metadata: { generation: 1 },
        status: {
          conditions: [
            {
              type: 'Ready',
              status: 'False',
              reason: 'Failed',
              message: 'issuer not found',
              observedGeneration: 1,
            },
          ],
        },
      },
      'Degraded',
      /Ready is False \(Failed: issuer not found\)/,
    ],
    [
      "a Certificate-named kind of another group is not cert-manager's",
      { kind: 'Certificate', apiVersion: 'example.io/v1', status: {} },
      'Healthy',
    ],
    [
      'load balancer without address',
      { kind: 'Service', apiVersion: 'v1', spec: { type: 'LoadBalancer' }, status: { loadBalancer: {} } },
      'Progressing',
      /load balancer address/,
    ],
    [
      'load balancer with hostname',
      {
        kind: 'Service',
        apiVersion: 'v1',
        spec: { type: 'LoadBalancer' },
        status: { loadBalancer: { ingress: [{ hostname: 'lb.example' }] } },
      },
      'Healthy',
    ],
    [
      'being deleted',
      { kind: 'ConfigMap', apiVersion: 'v1', metadata: { deletionTimestamp: '2026-01-01T00:00:00Z' } },
      'Progressing',
      /being deleted/,
    ],
  ];
  for (const [name, o, status, message] of cases)
    test(name, () => {
      const h = healthOf(o);
      assert.equal(h.status, status, h.message);
      if (message) assert.match(h.message, message);
      else assert.equal(h.message, '');
    });

  test('the worst health wins', () => {
    const p = { status: 'Progressing', message: 'p' } as const;
    const d = { status: 'Degraded', message: 'd' } as const;
    assert.deepEqual(worst([p, d, { status: 'Healthy', message: '' }]), d);
    assert.equal(worst([]).status, 'Healthy');
  });
});

describe('waitHealthy without a cluster', () => {
  test('an error a retry cannot heal (403) ends the wait at once, naming the object and the cause', async () => {
    let reads = 0;
    const forbidden = new KubeApiError(
      'cluster-1: get Deployment spire/d: deployments.apps "d" is forbidden',
      403,
      'Forbidden',
    );
    const client = {
      context: 'cluster-1',
      get: async () => {
        reads++;
        throw forbidden;
      },
    } as unknown as ClusterClient;
    const t0 = Date.now();
    const ref = { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'spire', name: 'd' };
    const err = await waitHealthy(client, [ref], { timeoutMs: 3_000, intervalMs: 100 }).catch(
      (e: unknown) => e,
    );
    assert.ok(err instanceof WaitError, String(err));
    assert.equal(reads, 1);
    assert.ok(Date.now() - t0 < 1_000);
    assert.equal(err.cause, forbidden);
    assert.match(
      err.message,
      /^cluster-1: cannot read Deployment spire\/d while waiting for it \(HTTP 403 Forbidden: not allowed\): /,
    );
  });

  test('no connection is waited out: read again until the bound', async () => {
    let reads = 0;
    const client = {
      context: 'cluster-1',
      get: async () => {
        if (++reads < 3)
          throw new KubeRequestError('cluster-1: GET /apis/apps/v1: connect ECONNREFUSED', {
            code: 'ECONNREFUSED',
          });
        return undefined;
      },
    } as unknown as ClusterClient;
    const ref = { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'spire', name: 'd' };
    const err = await waitHealthy(client, [ref], { timeoutMs: 600, intervalMs: 50 }).catch((e: unknown) => e);
    assert.ok(err instanceof WaitError && /not healthy after/.test(err.message), String(err));
    assert.ok(reads >= 3, `${reads}`);
  });
});

const K8S = PROFILE_VERSIONS.current.kubernetes;
const skip = requireLab(
  [`bin/kubernetes/${K8S}/kubectl`, 'bin/kwok/0.8.0/stages/.done'],
  'npm run lab:build',
);

describe('health on a real control plane', { skip, timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-health-'));
  let cluster: KubeCluster | undefined;
  const kubectl = (args: string[]) =>
    execFileBounded(cluster!.kubectl, ['--kubeconfig', cluster!.kubeconfig, ...args], {
      timeoutMs: 60_000,
    });
  before(async () => {
    const stages = join(dir, 'stages.yaml');
    writeFileSync(
      stages,
      kwokStagesConfig(join(LAB_DIR, 'bin/kwok/0.8.0/stages'), {
        ...DEFAULT_POD_TIMINGS,
        ready: { minMs: 2000, maxMs: 2500 },
      }),
    );
    cluster = await startKubeCluster({
      name: 'health',
      kubernetesVersion: K8S,
      workdir: join(dir, 'kwok'),
      nodes: 2,
      configFiles: [stages],
    });
  });
  after(async () => {
    await cluster?.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  test('a Deployment rollout is Progressing with kubectl-like messages, then Healthy exactly when kubectl says it is done', async () => {
    assert.equal(
      (await kubectl(['create', 'deployment', 'web', '--image=registry.invalid/web:1', '--replicas=3'])).code,
      0,
    );
    // Every distinct health on the way (read every 250 ms; the pods take 2 s to become Ready).
    const seen: Health[] = [];
    await waitUntil(
      'deployment/web Healthy',
      async () => {
        const r = await kubectl(['get', 'deployment', 'web', '-o', 'json']);
        const h = healthOf(JSON.parse(r.stdout) as ObjectState);
        if (seen.at(-1)?.message !== h.message) seen.push(h);
        if (h.status === 'Healthy') return true;
        assert.equal(h.status, 'Progressing', h.message);
        return false;
      },
      60_000,
    );
    // The pods take 2 s to become Ready, so the rollout was seen waiting for availability.
    assert.ok(
      seen.some((h) => /of 3 updated replicas available/.test(h.message)),
      JSON.stringify(seen),
    );
    const rollout = await kubectl(['rollout', 'status', 'deployment/web', '--timeout=1s']);
    assert.equal(rollout.code, 0, 'kubectl agrees the rollout is done');
    assert.match(rollout.stdout, /successfully rolled out/);
    // A new spec: not Healthy until the controller has observed it and the new pods are available.
    assert.equal((await kubectl(['set', 'image', 'deployment/web', 'web=registry.invalid/web:2'])).code, 0);
    const right = healthOf(
      JSON.parse((await kubectl(['get', 'deployment', 'web', '-o', 'json'])).stdout) as ObjectState,
    );
    assert.equal(right.status, 'Progressing', 'an updated spec is not Healthy at once');
    const notYet = await kubectl(['rollout', 'status', 'deployment/web', '--timeout=1ms']);
    assert.notEqual(notYet.code, 0, 'kubectl agrees');
  });

  test('waitHealthy: waits out a rollout with progress lines; a timeout names each object still pending and why', async () => {
    const client = clientsFor(cluster!.kubeconfig, ['kwok-health']).get('kwok-health')!;
    const waited = { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'default', name: 'waited' };
    await client.apply({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'waited', namespace: 'default' },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'waited' } },
        template: {
          metadata: { labels: { app: 'waited' } },
          spec: { containers: [{ name: 'c', image: 'registry.invalid/waited:1' }] },
        },
      },
    });
    // A fresh rollout: its pods take 2 s to become Ready, so the wait reports what it waits for.
    const rolledOut: string[] = [];
    await waitHealthy(client, [waited], {
      timeoutMs: 60_000,
      intervalMs: 100,
      onProgress: (l) => rolledOut.push(l),
    });
    assert.ok(
      rolledOut.some((l) => /^kwok-health: waiting for Deployment default\/waited \(.+\)$/.test(l)),
      rolledOut.join('\n'),
    );
    const done = await kubectl(['rollout', 'status', 'deployment/waited', '--timeout=1s']);
    assert.equal(done.code, 0, `kubectl agrees the rollout is done: ${done.stdout}${done.stderr}`);
    const lines: string[] = [];
    await client.apply({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'stuck', namespace: 'default' },
      spec: {
        selector: { matchLabels: { app: 'stuck' } },
        template: {
          metadata: { labels: { app: 'stuck' } },
          spec: {
            nodeSelector: { 'no-such-node': 'true' },
            containers: [{ name: 'c', image: 'registry.invalid/c:1' }],
          },
        },
      },
    });
    const missing = { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name: 'never' };
    const stuck = { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'default', name: 'stuck' };
    const t0 = Date.now();
    const err = await waitHealthy(client, [waited, stuck, missing], {
      timeoutMs: 3000,
      intervalMs: 200,
      onProgress: (l) => lines.push(l),
    }).catch((e: unknown) => e);
    assert.ok(err instanceof WaitError, String(err));
    assert.ok(Date.now() - t0 < 8000, 'bounded');
    assert.match(err.message, /^kwok-health: not healthy after 3 s: /);
    assert.match(err.message, /Deployment default\/stuck: Progressing, 0 of 1 updated replicas available/);
    assert.match(err.message, /ConfigMap default\/never: Missing, not found/);
    assert.doesNotMatch(err.message, /default\/waited/, 'healthy objects are not named');
    assert.deepEqual(err.pending.map((p) => p.ref.name).sort(), ['never', 'stuck']);
    assert.ok(
      lines.some((l) => /^kwok-health: waiting for Deployment default\/stuck \(.+\) and 1 more$/.test(l)),
      lines.join('\n'),
    );
  });
});
