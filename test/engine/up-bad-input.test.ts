/**
 * Bad input to the engine on the lab: a fleet file with a problem, and a
 * context whose API server does not answer, exit 2 with nothing written.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { fleetTemplate } from '../../src/fleet/template.js';
import { labSkip, objectSet, startLab } from '../helpers/engine.js';

describe('bad input: exit 2 and no cluster written', { skip: labSkip('current'), timeout: 300_000 }, () => {
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
});
