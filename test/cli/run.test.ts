import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { VERSION } from '../../src/cli/version.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { runMeshfed } from '../helpers/cli.js';

test('unknown command exits 2 and names the command', async () => {
  const r = await runMeshfed(['frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command "frobnicate"/);
});

test('--help lists commands and exits 0; no arguments exits 2', async () => {
  const help = await runMeshfed(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: meshfed <command>/);
  assert.equal((await runMeshfed([])).code, 2);
});

test('VERSION matches package.json', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
  assert.equal(VERSION, pkg.version);
});

test("version: meshfed's, Node's and each profile's upstream versions; -o json; bad flags exit 2", async () => {
  const text = await runMeshfed(['version']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`^meshfed ${VERSION.replace(/\./g, '\\.')} \\(Node\\.js v\\d+`));
  for (const [profile, v] of Object.entries(PROFILE_VERSIONS)) {
    const row = text.stdout.split('\n').find((l) => l.startsWith(`${profile} `));
    assert.ok(row, `no row for ${profile}:\n${text.stdout}`);
    for (const x of [v.kubernetes, v.istio, v.spire, v.certManager, `${v.registrar} ${v.registrarVersion}`])
      assert.ok(row.includes(x), `${profile} row lacks ${x}: ${row}`);
  }
  assert.ok(text.stdout.endsWith('\n'), 'the table ends its last line');
  const json = await runMeshfed(['version', '-o', 'json']);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), {
    meshfed: VERSION,
    node: process.version,
    profiles: PROFILE_VERSIONS,
  });
  assert.equal((await runMeshfed(['--version'])).stdout, `meshfed ${VERSION}\n`);
  for (const bad of [['-o', 'yaml'], ['--frob']]) {
    const r = await runMeshfed(['version', ...bad]);
    assert.equal(r.code, 2, bad.join(' '));
    assert.match(r.stderr, /-o must be text or json/);
  }
  assert.match((await runMeshfed(['--help'])).stdout, /\n {2}version +meshfed's version/);
});
