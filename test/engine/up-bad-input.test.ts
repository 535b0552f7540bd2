/**
 * Bad input to the engine on the lab: a fleet file with a problem, and a
 * context whose API server does not answer, exit 2 with nothing written;
 * and (last, since it writes) an object the API server rejects, which fails
 * `up` at once, named, instead of being retried for the whole wait.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { mirrorPath } from '../../src/engine/upstream.js';
import { defaultFleet } from '../../src/fleet/load.js';
import { fleetTemplate } from '../../src/fleet/template.js';
import { LAB_CERT_MANAGER_VERSION } from '../../src/lab/controllers.js';
import { labPrograms } from '../../src/lab/lab.js';
import { writeLabFleetFiles } from '../../src/lab/upstream.js';
import { renderCluster } from '../../src/render/index.js';
import type { KubeObject } from '../../src/render/types.js';
import { labSkip, objectSet, startLab } from '../helpers/engine.js';

describe('bad input: exit 2 and no cluster written; an invalid object fails at once', {
  skip: labSkip('current'),
  timeout: 300_000,
}, () => {
  let lab: Awaited<ReturnType<typeof startLab>>;
  let before_: Set<string>;
  before(async () => {
    lab = await startLab('current', 1);
    before_ = await objectSet(lab.clients.get('cluster-1')!);
  });
  after(async () => lab?.stop());

  test('a fleet file with a problem: file:line error, exit 2', async () => {
    const f = join(lab.parent, 'bad.yaml');
    writeFileSync(
      f,
      'apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\nmetadata: {name: m}\nspec:\n  clusters:\n  - name: Cluster_1\n',
    );
    const r = await lab.meshfed(['up', '-f', f]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /bad\.yaml:6:\d+/);
    assert.deepEqual(await objectSet(lab.clients.get('cluster-1')!), before_);
  });

  test('a context whose API server does not answer: named, exit 2, the reachable cluster untouched', async () => {
    const kc = parse(readFileSync(lab.state.kubeconfig, 'utf8')) as {
      clusters: Array<{ name: string; cluster: Record<string, string> }>;
      contexts: Array<{ name: string; context: { cluster: string; user: string } }>;
    };
    kc.clusters.push({
      name: 'gone',
      cluster: { ...kc.clusters[0]!.cluster, server: 'https://127.0.0.1:1' },
    });
    kc.contexts.push({ name: 'cluster-2', context: { ...kc.contexts[0]!.context, cluster: 'gone' } });
    const kubeconfig = join(lab.parent, 'two.kubeconfig');
    writeFileSync(kubeconfig, JSON.stringify(kc));
    // A two-cluster fleet: cluster-1 is the lab's, cluster-2's context points at a closed port.
    writeFileSync(join(lab.parent, 'two.yaml'), fleetTemplate(2));
    const r2 = await lab.meshfed(['up', '-f', join(lab.parent, 'two.yaml'), '--kubeconfig', kubeconfig]);
    assert.equal(r2.code, 2, r2.stderr);
    assert.match(
      r2.stderr,
      /cannot reach a cluster; nothing was written:\n\s+context cluster-2 \(https:\/\/127\.0\.0\.1:1\)/,
    );
    assert.deepEqual(await objectSet(lab.clients.get('cluster-1')!), before_);
  });

  test('an object the API server rejects (an unknown field in an upstream manifest): up fails within seconds, naming it and why', async () => {
    // The lab's upstream manifests, with one field cert-manager's Deployment does not have (SHA256SUMS made to match).
    const p = labPrograms('current');
    const dir = join(lab.parent, 'typo');
    mkdirSync(dir);
    writeLabFleetFiles(dir, {
      clusters: 2,
      profile: 'current',
      certManagerCrds: join(p.certManager, 'crds'),
      certManagerLabVersion: LAB_CERT_MANAGER_VERSION,
      registrarCrds: join(p.registrarDir, 'crds'),
    });
    const fleet = defaultFleet({ profile: 'current' });
    const url = renderCluster(fleet, fleet.clusters[0]!.name)
      .phases.flatMap((x) => x.upstream)
      .find((u) => u.name === 'cert-manager')!.url;
    const root = join(dir, 'upstream');
    const file = mirrorPath(root, url);
    const docs = parseAllDocuments(readFileSync(file, 'utf8'))
      .map((d) => d.toJS() as KubeObject | null)
      .filter((d): d is KubeObject => d !== null);
    const webhook = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'cert-manager-webhook')!;
    (webhook.spec as Record<string, unknown>).replicaCount = 1;
    const text = docs.map((d) => stringify(d)).join('---\n');
    writeFileSync(file, text);
    const rel = file.slice(root.length + 1);
    const sums = readFileSync(join(root, 'SHA256SUMS'), 'utf8').replace(
      new RegExp(`^[0-9a-f]{64}  ${rel.replace(/[.]/g, '\\.')}$`, 'm'),
      `${createHash('sha256').update(text).digest('hex')}  ${rel}`,
    );
    writeFileSync(join(root, 'SHA256SUMS'), sums);
    // A two-cluster fleet on the lab's one API server: cluster-2's context is cluster-1's.
    const kc = parse(readFileSync(lab.state.kubeconfig, 'utf8')) as {
      contexts: Array<{ name: string; context: { cluster: string; user: string } }>;
    };
    kc.contexts.push({ name: 'cluster-2', context: { ...kc.contexts[0]!.context } });
    const kubeconfig = join(lab.parent, 'same.kubeconfig');
    writeFileSync(kubeconfig, JSON.stringify(kc));

    // The wait is 2 min; a rejected object must end the run long before it. The run is
    // watched, not slept on: it fails the test the moment the deadline passes.
    const deadlineMs = 30_000;
    const t0 = Date.now();
    const run = lab.meshfed([
      'up',
      '-f',
      join(dir, 'meshfed.yaml'),
      '--kubeconfig',
      kubeconfig,
      '--offline',
      root,
      '--timeout',
      '2m',
    ]);
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      run,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `up still running after ${deadlineMs / 1000} s: the rejected object is being retried`,
              ),
            ),
          deadlineMs,
        );
      }),
    ])
      .catch(async (e: unknown) => {
        // Failed at the deadline: let the run end (its retries are bounded by --timeout) before the lab goes.
        await run;
        throw e;
      })
      .finally(() => clearTimeout(timer));
    const seconds = (Date.now() - t0) / 1000;
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(
      r.stderr,
      /cluster-1: cert-manager: cluster-1: apply Deployment cert-manager\/cert-manager-webhook: failed to create typed patch object \(cert-manager\/cert-manager-webhook; apps\/v1, Kind=Deployment\): \.spec\.replicaCount: field not declared in schema/,
      r.stderr,
    );
    assert.doesNotMatch(r.stderr + r.stdout, /retrying Deployment cert-manager\/cert-manager-webhook/);
    assert.ok(seconds < deadlineMs / 1000, `${seconds} s`);
  });
});
