/**
 * `meshfed lab --profile seed` on real programs: the guide's Kubernetes 1.29
 * control planes, SPIRE 1.5.1 servers and the seed's k8s-workload-registrar
 * (CRD mode) turning a labelled pod into a SpiffeID and a SPIRE entry.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execFileBounded } from '../../src/federation/transport.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { LAB_CERT_MANAGER_VERSION } from '../../src/lab/controllers.js';
import { type LabState, readLabState } from '../../src/lab/lab.js';
import { processesUnder } from '../../src/lab/procfs.js';
import { SPIRE_MANAGED_LABEL } from '../../src/render/identity.js';
import { runMeshfed } from '../helpers/cli.js';
import { labBin, labKubectl, requireLab, waitUntil } from '../helpers/lab.js';

const V = PROFILE_VERSIONS.seed;
const skip = requireLab(
  [
    `bin/kubernetes/${V.kubernetes}/kubectl`,
    `bin/spire/${V.spire}/spire-server`,
    `bin/spire/${V.spire}/k8s-workload-registrar`,
    `bin/spire/${V.spire}/crds/.done`,
    `bin/cert-manager/${LAB_CERT_MANAGER_VERSION}/cert-manager-controller`,
  ],
  'npm run lab:build',
);

describe('meshfed lab (seed profile, 2 clusters)', { skip, timeout: 300_000 }, () => {
  const parent = mkdtempSync(join(tmpdir(), 'mf-lab-seed-'));
  const dir = join(parent, 'lab');
  let state: LabState;
  const kubectl = (context: string, args: string[], stdin?: string) =>
    labKubectl(V.kubernetes, state.kubeconfig)(context, args, stdin);

  before(async () => {
    const up = await runMeshfed(['lab', 'up', '--profile', 'seed', '--dir', dir, '--pods', 'simulated'], {
      cwd: parent,
    });
    assert.equal(up.code, 0, up.stderr + up.stdout);
    state = readLabState(dir)!;
  });
  after(async () => {
    if (existsSync(dir)) await runMeshfed(['lab', 'down', '--dir', dir]);
    rmSync(parent, { recursive: true, force: true });
  });

  test('each context reaches a Kubernetes 1.29 API server; lab status names the seed versions', async () => {
    for (const c of state.clusters) {
      const v = JSON.parse(await kubectl(c.context, ['version', '-o', 'json'])) as {
        serverVersion: { gitVersion: string };
      };
      assert.equal(v.serverVersion.gitVersion, `v${V.kubernetes}`);
    }
    const s = await runMeshfed(['lab', 'status', '--dir', dir]);
    assert.equal(s.code, 0, s.stdout);
    assert.match(
      s.stdout,
      /seed profile, Kubernetes 1\.29\.4, SPIRE 1\.5\.1, cert-manager 1\.11\.5, k8s-workload-registrar 1\.5\.1/,
    );
  });

  test('the real k8s-workload-registrar turns a labelled pod into a SpiffeID and an entry in the real SPIRE 1.5.1 server', async () => {
    await kubectl('cluster-2', ['create', 'namespace', 'demo']);
    await kubectl('cluster-2', ['-n', 'demo', 'create', 'serviceaccount', 'sleep']);
    await kubectl(
      'cluster-2',
      ['apply', '-f', '-'],
      `apiVersion: apps/v1
kind: Deployment
metadata: {name: sleep, namespace: demo}
spec:
  selector: {matchLabels: {app: sleep}}
  template:
    metadata: {labels: {app: sleep, ${SPIRE_MANAGED_LABEL}: "true"}}
    spec:
      serviceAccountName: sleep
      containers: [{name: sleep, image: registry.invalid/sleep:1}]
`,
    );
    await kubectl('cluster-2', ['-n', 'demo', 'rollout', 'status', 'deployment/sleep', '--timeout=60s']);
    const pod = (
      JSON.parse(await kubectl('cluster-2', ['-n', 'demo', 'get', 'pods', '-o', 'json'])) as {
        items: Array<{ metadata: { uid: string }; spec: { nodeName: string } }>;
      }
    ).items[0]!;
    const bar = state.clusters[1]!;
    let shown = '';
    await waitUntil('the entry of the sleep pod', async () => {
      const r = await execFileBounded(labBin('spire', V.spire, 'spire-server'), [
        'entry',
        'show',
        '-socketPath',
        bar.spireServerSocket,
        '-selector',
        `k8s:pod-uid:${pod.metadata.uid}`,
      ]);
      shown = r.stdout;
      return r.code === 0 && /Found 1 entry/.test(r.stdout);
    });
    assert.match(shown, /SPIFFE ID\s+: spiffe:\/\/bar\.com\/ns\/demo\/sa\/sleep/);
    assert.match(
      shown,
      new RegExp(
        `Parent ID\\s+: spiffe://bar\\.com/k8s-workload-registrar/cluster-2/node/${pod.spec.nodeName}`,
      ),
    );
    const ids = JSON.parse(await kubectl('cluster-2', ['-n', 'demo', 'get', 'spiffeids', '-o', 'json'])) as {
      items: Array<{ spec: { spiffeId: string } }>;
    };
    assert.deepEqual(
      ids.items.map((i) => i.spec.spiffeId),
      ['spiffe://bar.com/ns/demo/sa/sleep'],
    );
  });

  test('lab down leaves no process behind', async () => {
    const down = await runMeshfed(['lab', 'down', '--dir', dir]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(processesUnder(dir), []);
    assert.equal(existsSync(dir), false);
  });
});
