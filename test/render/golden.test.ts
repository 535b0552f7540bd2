/**
 * Golden files: the rendered folders for the default fleet (both profiles)
 * and a four-cluster fleet with listed pairs, byte for byte.
 * UPDATE_GOLDEN=1 npm test rewrites them; review the diff before committing.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { defaultFleet, parseFleet } from '../../src/fleet/load.js';
import type { Fleet } from '../../src/fleet/model.js';
import { renderFleet } from '../../src/render/index.js';
import { fleetFiles } from '../../src/render/output.js';
import { REPO_ROOT } from '../helpers/lab.js';

const GOLDEN = join(REPO_ROOT, 'test/render/golden');

const FOUR = parseFleet(`apiVersion: meshfed.dev/v1alpha1
kind: Fleet
spec:
  clusters: [{name: east}, {name: west}, {name: north}, {name: south}]
  federation: {mode: pairs, pairs: [[east, west], [west, north], [north, south], [east, south]]}
`);

const CASES: Array<[string, Fleet, Record<string, string>]> = [
  ['default-current', defaultFleet(), { 'cluster-1': '203.0.113.10:8443', 'cluster-2': '203.0.113.20:8443' }],
  [
    'default-seed',
    defaultFleet({ profile: 'seed' }),
    { 'cluster-1': '203.0.113.10:8443', 'cluster-2': '203.0.113.20:8443' },
  ],
  [
    'four-pairs',
    FOUR,
    { east: 'e.example:8443', west: 'w.example:8443', north: 'n.example:8443', south: 's.example:8443' },
  ],
];

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
  );
}

for (const [name, fleet, endpoints] of CASES) {
  test(`golden: ${name}`, () => {
    const files = fleetFiles(renderFleet(fleet, { bundleEndpoints: endpoints }));
    const dir = join(GOLDEN, name);
    if (process.env.UPDATE_GOLDEN === '1') {
      rmSync(dir, { recursive: true, force: true });
      for (const [rel, content] of files) {
        mkdirSync(dirname(join(dir, rel)), { recursive: true });
        writeFileSync(join(dir, rel), content);
      }
    }
    assert.deepEqual(
      [...files.keys()].sort(),
      listFiles(dir).sort(),
      `file list of ${name} (UPDATE_GOLDEN=1 to accept)`,
    );
    for (const [rel, content] of files) {
      const want = readFileSync(join(dir, rel), 'utf8');
      if (content !== want) {
        const a = content.split('\n');
        const b = want.split('\n');
        const i = a.findIndex((l, k) => l !== b[k]);
        assert.fail(
          `${name}/${rel} differs at line ${i + 1}:\n  golden:   ${b[i]}\n  rendered: ${a[i]}\n(UPDATE_GOLDEN=1 to accept)`,
        );
      }
    }
  });
}
