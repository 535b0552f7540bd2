/**
 * `meshfed rotate` without a lab: bad input exits 2 naming the problem
 * before any cluster is touched (the kubeconfig's API server counts the
 * connections made to it); `--dry-run` prints the plan from the fleet file
 * alone, for both profiles (the seed's SPIRE 1.5.1 says what it cannot do);
 * a run against API servers that do not answer changes nothing (exit 1);
 * the plan itself, step by step.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { rotationPlan, spireCanRotate } from '../../src/engine/rotate.js';
import { defaultFleet } from '../../src/fleet/load.js';
import { runMeshfed } from '../helpers/cli.js';

describe('meshfed rotate: input and unreachable clusters', () => {
  let dir: string;
  let server: Server;
  let connections = 0;
  const run = (args: string[]) => runMeshfed(args, { cwd: dir, env: { HOME: dir } });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mf-rotcli-'));
    server = createServer((s) => {
      connections++;
      s.destroy();
    });
    const port = await new Promise<number>((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
    );
    const init = await run(['init', '--clusters', '2']);
    assert.equal(init.code, 0, init.stderr);
    writeFileSync(
      join(dir, 'k.yaml'),
      `apiVersion: v1
kind: Config
clusters:
- {name: closes, cluster: {server: "https://127.0.0.1:${port}"}}
contexts:
- {name: cluster-1, context: {cluster: closes, user: token}}
- {name: cluster-2, context: {cluster: closes, user: token}}
users:
- {name: token, user: {token: not-a-real-token}}
`,
    );
  });
  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('bad input: exit 2, the problem named, no cluster touched', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['rotate'], /name what to rotate first: root or spire-ca/],
      [['rotate', '--cluster', 'cluster-1'], /name what to rotate first: root or spire-ca/],
      [
        ['rotate', 'intermediate', '--cluster', 'cluster-1'],
        /unknown authority "intermediate"; it is root or spire-ca/,
      ],
      [['rotate', 'root', '--kubeconfig', 'k.yaml'], /root: --cluster NAME is required/],
      [
        ['rotate', 'root', '--cluster', 'cluster-9', '--kubeconfig', 'k.yaml'],
        /--cluster cluster-9: no such cluster in the fleet \(it has cluster-1, cluster-2\)/,
      ],
      [
        ['rotate', 'root', '--cluster', 'cluster-1', '--dry-run', '-o', 'yaml'],
        /-o must be text or json, not "yaml"/,
      ],
      [['rotate', 'spire-ca', '--cluster', 'cluster-1', '--bogus'], /spire-ca: Unknown option '--bogus'/],
      [
        ['rotate', 'root', '--cluster', 'cluster-1', '--timeout', 'soon', '--kubeconfig', 'k.yaml'],
        /--timeout "soon" is not a Go duration/,
      ],
    ];
    for (const [args, want] of cases) {
      const r = await run(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, want, args.join(' '));
    }
    assert.equal(connections, 0, 'bad input reached an API server');
  });

  test('--dry-run: the steps from the fleet file alone, no cluster touched', async () => {
    const r = await run(['rotate', 'root', '--cluster', 'cluster-2', '--dry-run', '--kubeconfig', 'k.yaml']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^rotate root of cluster-2 \(SPIRE 1\.15\.3\), 7 steps:\n {2}1\. new-root: /);
    assert.match(
      r.stdout,
      /3\. propagate: every peer \(cluster-1\) refreshes bar\.com's bundle now\n {5}verifies: every peer's SPIRE server holds the new root, and every proxy of the fleet trusts it for bar\.com/,
    );
    assert.doesNotMatch(r.stdout, /cannot:/);
    const seed = await run([
      'rotate',
      'root',
      '--cluster',
      'cluster-1',
      '--dry-run',
      '--profile',
      'seed',
      '-o',
      'json',
    ]);
    assert.equal(seed.code, 0, seed.stderr);
    const plan = JSON.parse(seed.stdout) as { spire: string; steps: Array<{ id: string; cannot?: string }> };
    assert.equal(plan.spire, '1.5.1');
    assert.deepEqual(
      plan.steps.filter((s) => s.cannot).map((s) => s.id),
      ['prepare', 'propagate', 'activate', 'reissue', 'retire'],
    );
    assert.match(plan.steps.find((s) => s.id === 'propagate')!.cannot!, /meshfed federation watch/);
    assert.equal(connections, 0, 'a dry run reached an API server');
  });

  test('a run on SPIRE 1.5.1 or with API servers that do not answer: exit 1, nothing changed', async () => {
    const r = await run([
      'rotate',
      'spire-ca',
      '--cluster',
      'cluster-1',
      '--kubeconfig',
      'k.yaml',
      '--timeout',
      '5s',
    ]);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.match(
      r.stderr,
      /cannot rotate: every cluster must be reachable .*nothing was changed:\n {2}cluster-1: /,
    );
  });
});

test('the plan: root has seven steps in order, spire-ca three; SPIRE 1.5.1 says what it cannot do', () => {
  const current = defaultFleet();
  assert.equal(spireCanRotate(current), true);
  assert.deepEqual(
    rotationPlan(current, 'cluster-2', 'root').map((s) => s.id),
    ['new-root', 'prepare', 'propagate', 'activate', 'reissue', 'istio-ca', 'retire'],
  );
  assert.deepEqual(
    rotationPlan(current, 'cluster-1', 'spire-ca').map((s) => s.id),
    ['prepare', 'activate', 'reissue'],
  );
  assert.match(
    rotationPlan(current, 'cluster-2', 'root')[2]!.does,
    /every peer \(cluster-1\) refreshes bar\.com's bundle now/,
  );
  assert.match(rotationPlan(current, 'cluster-1', 'spire-ca')[2]!.does, /within 30 min/);
  assert.ok(rotationPlan(current, 'cluster-1', 'root').every((s) => !s.cannot));
  const seed = defaultFleet({ profile: 'seed' });
  assert.equal(spireCanRotate(seed), false);
  const steps = rotationPlan(seed, 'cluster-1', 'spire-ca');
  assert.ok(
    steps.every((s) => s.cannot?.startsWith('SPIRE 1.5.1 has no API for it')),
    JSON.stringify(steps),
  );
  assert.throws(() => rotationPlan(current, 'cluster-9', 'root'), /no cluster cluster-9/);
});
