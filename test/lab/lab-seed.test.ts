/**
 * `meshfed lab --profile seed --pods simulated` on real programs: the guide's
 * Kubernetes 1.29 control planes, and the seed's versions named by `lab
 * status`. SPIRE 1.5.1 and the seed's k8s-workload-registrar run in their
 * pods once `meshfed up` applies them: the seed engine suites
 * (test/engine/up-seed-*.test.ts) run those.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { LAB_CERT_MANAGER_VERSION } from '../../src/lab/controllers.js';
import { type LabState, readLabState } from '../../src/lab/lab.js';
import { processesUnder } from '../../src/lab/procfs.js';
import { runMeshfed } from '../helpers/cli.js';
import { labKubectl, requireLabAsRoot } from '../helpers/lab.js';

const V = PROFILE_VERSIONS.seed;
const skip = requireLabAsRoot(
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

  test('lab down leaves no process behind', async () => {
    const down = await runMeshfed(['lab', 'down', '--dir', dir]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(processesUnder(dir), []);
    assert.equal(existsSync(dir), false);
  });
});
