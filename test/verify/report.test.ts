/**
 * `meshfed report`'s HTML opened in real headless Chromium (Debian's
 * chromium): the DOM it parsed has the fleet picture and every result, and
 * the screenshot shows the elements in their colours: a failed federation
 * edge and the boxes of the clusters it joins in red, the healthy edges in
 * green.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { resolveFleet } from '../../src/fleet/resolve.js';
import { type CheckResult, runChecks } from '../../src/verify/catalog.js';
import { makeContext } from '../../src/verify/context.js';
import { reportHtml, STATUS_COLOUR } from '../../src/verify/report.js';
import { chromium, chromiumSkip as skip } from '../helpers/chromium.js';
import { runMeshfed } from '../helpers/cli.js';
import { colourArea, readPng } from '../helpers/png.js';

const fleet = (() => {
  const r = resolveFleet({
    apiVersion: 'meshfed.dev/v1alpha1',
    kind: 'Fleet',
    metadata: { name: 'three' },
    spec: {
      clusters: [
        { name: 'east', context: 'east', trustDomain: 'east.example', network: 'east-net' },
        { name: 'west', context: 'west', trustDomain: 'west.example', network: 'west-net' },
        { name: 'south', context: 'south', trustDomain: 'south.example', network: 'south-net' },
      ],
    },
  } as never);
  assert.deepEqual(
    r.problems.filter((p) => p.severity === 'error'),
    [],
  );
  return r.fleet!;
})();

async function results(broken: boolean): Promise<CheckResult[]> {
  const dirs: Array<[string, string, boolean]> = [
    ['east', 'west', !broken],
    ['west', 'east', true],
    ['east', 'south', true],
    ['south', 'east', true],
    ['west', 'south', true],
    ['south', 'west', true],
  ];
  return runChecks(
    [
      {
        code: 'MF205',
        title: 'Federated bundles current',
        category: 'federation',
        severity: 'error',
        stage: 'post',
        description: '',
        hint: 'meshfed up',
        run: async () =>
          dirs.map(([holder, peer, ok]) => ({
            status: ok ? ('passed' as const) : ('failed' as const),
            cluster: holder,
            message: ok ? `holds ${peer}'s current bundle` : `stale bundle of ${peer}`,
            data: { holder, peer },
          })),
      },
      {
        code: 'MF210',
        title: 'Gateway and bundle endpoint addresses set',
        category: 'gateways',
        severity: 'error',
        stage: 'post',
        description: '',
        hint: '',
        run: async () =>
          fleet.clusters.map((c, i) => ({
            status: 'passed' as const,
            cluster: c.name,
            message: 'set',
            data: { bundleEndpoint: `10.0.${i}.1:8443`, eastWestGateway: `10.0.${i}.2:15443` },
          })),
      },
    ],
    makeContext({ fleet, clients: new Map(), versions: new Map() }),
  );
}

test('the report in headless Chromium: DOM and screenshot', { skip, timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-report-'));
  try {
    const shots: Record<string, ReturnType<typeof readPng>> = {};
    for (const broken of [false, true]) {
      const name = broken ? 'broken' : 'healthy';
      const html = join(dir, `${name}.html`);
      writeFileSync(html, reportHtml(fleet, await results(broken), { at: new Date(0) }));
      const dom = await chromium(dir, ['--dump-dom', `file://${html}`]);
      assert.equal((dom.match(/<g class="cluster"/g) ?? []).length, 3, 'three cluster boxes');
      assert.equal((dom.match(/<g class="edge"/g) ?? []).length, 3, 'three federation edges');
      assert.match(dom, /trust domain west\.example/);
      assert.match(dom, /east-west 10\.0\.1\.2:15443/);
      assert.equal((dom.match(/<tr class="result"/g) ?? []).length, 2);
      const png = join(dir, `${name}.png`);
      await chromium(dir, ['--window-size=1100,1000', `--screenshot=${png}`, `file://${html}`]);
      shots[name] = readPng(readFileSync(png));
      assert.equal(shots[name]!.width, 1100);
    }
    const red = (n: string) => colourArea(shots[n]!, STATUS_COLOUR.failed);
    const green = (n: string) => colourArea(shots[n]!, STATUS_COLOUR.passed);
    // Healthy: green edges and boxes across the picture; red only in the "0 failed" count.
    assert.ok(green('healthy').n > 5000, `green pixels: ${green('healthy').n}`);
    assert.ok(green('healthy').maxX - green('healthy').minX > 600, 'the green spans the picture');
    assert.ok(red('healthy').n < 1500, `red pixels when healthy: ${red('healthy').n}`);
    // Broken east ⇄ west: that edge and both boxes turn red, the south edges stay green.
    const r = red('broken');
    assert.ok(r.n > red('healthy').n + 4000, `red pixels: ${r.n} (healthy ${red('healthy').n})`);
    assert.ok(r.maxX - r.minX > 450, 'red from the east box to the west box');
    assert.ok(green('broken').n > 1000, 'the south edges are still green');
    assert.ok(green('broken').n < green('healthy').n - 3000, 'less green than when healthy');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('meshfed report --from renders saved results without a cluster; bad input exits 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-report-cli-'));
  try {
    const saved = join(dir, 'check.json');
    writeFileSync(saved, JSON.stringify({ results: await results(true) }));
    const out = join(dir, 'r.html');
    const r = await runMeshfed(['report', '--from', saved, '--out', out], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /report: .*r\.html/);
    const html = readFileSync(out, 'utf8');
    assert.match(html, /data-cluster="cluster-1"/, 'the default fleet: no fleet file in the folder');
    writeFileSync(join(dir, 'bad.json'), '{"nope": 1}');
    const bad = await runMeshfed(['report', '--from', 'bad.json'], { cwd: dir });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--from bad\.json: no "results" list/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
