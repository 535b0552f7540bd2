import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { runMeshfed } from '../helpers/cli.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'meshfed-render-'));

test('render with no fleet file writes both clusters in apply order, holds back what needs addresses', async () => {
  const dir = tmp();
  const r = await runMeshfed(['render', '-o', 'out'], { cwd: dir });
  assert.equal(r.code, 0);
  assert.deepEqual(readdirSync(join(dir, 'out')).sort(), ['cluster-1', 'cluster-2']);
  assert.deepEqual(readdirSync(join(dir, 'out/cluster-1')).sort(), [
    '10-namespaces.yaml',
    '20-cert-manager.yaml',
    '30-spire.yaml',
    '50-istio.operator.yaml',
    '50-istio.yaml',
    '60-apps.yaml',
    'kustomization.yaml',
  ]);
  const kust = readFileSync(join(dir, 'out/cluster-1/kustomization.yaml'), 'utf8');
  assert.match(kust, /cert-manager\/releases\/download\/v1\.21\.2\/cert-manager\.yaml/);
  assert.ok(
    kust.indexOf('10-namespaces.yaml') < kust.indexOf('cert-manager.yaml') &&
      kust.indexOf('cert-manager.yaml') < kust.indexOf('20-cert-manager.yaml'),
  );
  assert.doesNotMatch(kust, /operator/);
  assert.match(
    r.stderr,
    /held back in cluster-1\/federation: ClusterFederatedTrustDomain\/bar-com — needs the bundle endpoint address of cluster-2; give --endpoint cluster-2=HOST:PORT/,
  );
  const strict = await runMeshfed(['render', '-o', 'out2', '--require-complete'], { cwd: dir });
  assert.equal(strict.code, 1);
});

test('render with every endpoint is complete and byte-identical across runs', async () => {
  const dir = tmp();
  const args = [
    '--profile',
    'seed',
    '--endpoint',
    'cluster-1=203.0.113.1:8443',
    '--endpoint',
    'cluster-2=spire.bar.example:8443',
    '--require-complete',
  ];
  const a = await runMeshfed(['render', '-o', 'a', ...args], { cwd: dir });
  const b = await runMeshfed(['render', '-o', 'b', ...args], { cwd: dir });
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stderr, '');
  for (const f of readdirSync(join(dir, 'a/cluster-2')))
    assert.equal(
      readFileSync(join(dir, 'a/cluster-2', f), 'utf8'),
      readFileSync(join(dir, 'b/cluster-2', f), 'utf8'),
      f,
    );
  assert.match(
    readFileSync(join(dir, 'a/cluster-2/30-spire.yaml'), 'utf8'),
    /federates_with "foo\.com"[\s\S]*https:\/\/203\.0\.113\.1:8443"/,
  );
  assert.equal(b.code, 0);
});

test('render -o - prints one parseable stream; --cluster limits it', async () => {
  const r = await runMeshfed(['render', '-o', '-', '--cluster', 'cluster-2'], { cwd: tmp() });
  assert.equal(r.code, 0);
  const docs = parseAllDocuments(r.stdout).map((d) => d.toJS());
  assert.ok(docs.length > 30);
  assert.ok(
    docs.every(
      (d) => d.metadata.labels?.['meshfed.dev/fleet'] === 'multi-mesh' || d.kind === 'IstioOperator',
    ),
  );
  assert.doesNotMatch(r.stdout, /cluster: cluster-1,/);
});

test('render rejects bad flags and foreign output folders without writing', async () => {
  const dir = tmp();
  assert.equal((await runMeshfed(['render', '--endpoint', 'cluster-9=1.2.3.4:8443'], { cwd: dir })).code, 2);
  assert.equal((await runMeshfed(['render', '--endpoint', 'cluster-1=https://x'], { cwd: dir })).code, 2);
  assert.equal((await runMeshfed(['render', '--cluster', 'nope'], { cwd: dir })).code, 2);
  assert.equal((await runMeshfed(['render', '--profile', 'old'], { cwd: dir })).code, 2);
  writeFileSync(join(dir, 'notes.txt'), 'mine');
  const r = await runMeshfed(['render', '-o', '.'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /holds files meshfed did not render \(notes\.txt\)/);
  assert.deepEqual(readdirSync(dir), ['notes.txt']);
});
