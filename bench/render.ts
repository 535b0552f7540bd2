/**
 * Render benchmark: in-process time to render 2, 16 and 64 clusters (full
 * mesh), and the cold start of `meshfed --help`, `validate` and `render` as
 * whole processes, side by side with Node's bare start and with loading every
 * command's module (what each start paid before commands loaded lazily). Prints numbers; asserts nothing.
 *   npm run build && node dist/bench/render.js
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseFleet } from '../src/fleet/load.js';
import { renderFleet } from '../src/render/index.js';
import { fleetFiles } from '../src/render/output.js';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function fleetOf(n: number) {
  const clusters = Array.from({ length: n }, (_, i) => `{name: c${i + 1}}`).join(', ');
  return parseFleet(`apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\nspec:\n  clusters: [${clusters}]\n`);
}

const rows: Array<[string, string, string]> = [];
for (const n of [2, 16, 64]) {
  const fleet = fleetOf(n);
  const endpoints = Object.fromEntries(
    fleet.clusters.map((c, i) => [c.name, `10.0.${i >> 8}.${i & 255}:8443`]),
  );
  const runs = n >= 64 ? 5 : 15;
  const times: number[] = [];
  let objects = 0;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const r = renderFleet(fleet, { bundleEndpoints: endpoints });
    objects = r.clusters.reduce((s, c) => s + c.phases.reduce((x, p) => x + p.objects.length, 0), 0);
    fleetFiles(r);
    times.push(performance.now() - t);
  }
  rows.push([
    `render+serialise ${n} clusters (${objects} objects, ${fleet.federation.pairs.length} pairs)`,
    `${median(times).toFixed(1)} ms`,
    `median of ${runs}`,
  ]);
}

const main = new URL('../src/cli/main.js', import.meta.url).pathname;
const commands = new URL('../src/cli/commands.js', import.meta.url).href;
// Commands load their modules when they run (src/cli/commands.ts); the
// contrast rows load every command's module, as `--help` did before, and
// nothing at all (Node's own start).
const eager = `const { COMMANDS } = await import(${JSON.stringify(commands)}); await Promise.all(COMMANDS.map((c) => c.load()));`;
for (const [label, argv] of [
  ['process: node, nothing loaded', ['--input-type=module', '-e', '']],
  ['process: meshfed --help', [main, '--help']],
  ['process: meshfed validate (2 clusters)', [main, 'validate']],
  ['process: meshfed render (2 clusters)', [main, 'render', '-o', 'out']],
  ['process: every command module loaded', ['--input-type=module', '-e', eager]],
] as const) {
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'meshfed-bench-'));
    execFileSync(process.execPath, [main, 'init'], { cwd: dir, stdio: 'ignore' });
    const t = performance.now();
    execFileSync(process.execPath, [...argv], { cwd: dir, stdio: 'ignore' });
    times.push(performance.now() - t);
    rmSync(dir, { recursive: true, force: true });
  }
  rows.push([label, `${median(times).toFixed(0)} ms`, 'median of 7, wall clock']);
}

const w = Math.max(...rows.map((r) => r[0].length));
console.log(`meshfed render benchmark (node ${process.version})`);
for (const [a, b, c] of rows) console.log(`${a.padEnd(w)}  ${b.padStart(9)}  ${c}`);
