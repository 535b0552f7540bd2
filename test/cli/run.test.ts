import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { VERSION } from '../../src/cli/version.js';
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
