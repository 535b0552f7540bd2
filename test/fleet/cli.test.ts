import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runMeshfed } from '../helpers/cli.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'meshfed-fleet-'));

test('validate: defaults are ok; a bad file exits 2 with file:line:col', async () => {
  const dir = tmp();
  const ok = await runMeshfed(['validate'], { cwd: dir });
  assert.equal(ok.code, 0);
  assert.match(ok.stdout, /ok: \(defaults\): 2 clusters, 1 federation pairs, profile current/);
  writeFileSync(
    join(dir, 'bad.yaml'),
    'apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\nspec:\n  clusters:\n  - name: a\n    trustDomain: A.com\n  - name: b\n',
  );
  const bad = await runMeshfed(['validate', '-f', 'bad.yaml'], { cwd: dir });
  assert.equal(bad.code, 2);
  assert.match(
    bad.stderr,
    /^bad\.yaml:6:18: error: a trust domain must be lowercase \(expected a SPIFFE trust domain like foo\.com, found "A\.com"\) \[MF010/m,
  );
  const json = await runMeshfed(['validate', '-f', 'bad.yaml', '-o', 'json'], { cwd: dir });
  assert.equal(json.code, 2);
  const out = JSON.parse(json.stdout);
  assert.equal(out.valid, false);
  assert.deepEqual([out.problems[0].code, out.problems[0].line, out.problems[0].col], ['MF010', 6, 18]);
});

test('validate reads stdin with -f -, and a missing explicit file is a usage error', async () => {
  const r = await runMeshfed(['validate', '-f', '-'], {
    stdin: 'apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\nspec: {profile: seed}\n',
  });
  assert.equal(r.code, 0);
  assert.match(r.stdout, /profile seed/);
  const missing = await runMeshfed(['validate', '-f', 'nope.yaml'], { cwd: tmp() });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /nope\.yaml does not exist \(run `meshfed init -o nope\.yaml`/);
});

test('init writes a file that validates, and refuses to overwrite without --force', async () => {
  const dir = tmp();
  assert.equal((await runMeshfed(['init', '--clusters', '4'], { cwd: dir })).code, 0);
  assert.match(
    readFileSync(join(dir, 'meshfed.yaml'), 'utf8'),
    /^# yaml-language-server: \$schema=fleet\.schema\.json\n/,
  );
  assert.deepEqual(
    JSON.parse(readFileSync(join(dir, 'fleet.schema.json'), 'utf8')),
    JSON.parse((await runMeshfed(['schema'])).stdout),
  );
  const v = await runMeshfed(['validate'], { cwd: dir });
  assert.match(v.stdout, /4 clusters, 6 federation pairs/);
  const again = await runMeshfed(['init'], { cwd: dir });
  assert.equal(again.code, 2);
  assert.match(again.stderr, /exists; pass --force/);
  assert.equal((await runMeshfed(['init', '--force'], { cwd: dir })).code, 0);
  assert.equal((await runMeshfed(['init', '--clusters', '1'], { cwd: dir })).code, 2);
});

test('schema prints a JSON Schema that forbids unknown keys and lists the profiles', async () => {
  const r = await runMeshfed(['schema']);
  assert.equal(r.code, 0);
  const schema = JSON.parse(r.stdout);
  assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
  assert.equal(schema.additionalProperties, false);
  const spec = schema.properties.spec;
  assert.deepEqual(spec.properties.profile.enum, ['current', 'seed']);
  assert.equal(spec.properties.clusters.items.additionalProperties, false);
});

test('render refuses a bad fleet with exit 2 and writes nothing', async () => {
  const dir = tmp();
  writeFileSync(
    join(dir, 'meshfed.yaml'),
    'apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\nspec: {meshID: 3}\n',
  );
  const r = await runMeshfed(['render', '-o', 'out'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.throws(() => readFileSync(join(dir, 'out', 'cluster-1', 'kustomization.yaml')));
});
