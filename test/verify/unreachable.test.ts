/**
 * `meshfed check` (before and after `up`) and `meshfed verify` against
 * clusters that cannot be reached, without a lab: a refused port, a TLS
 * server whose CA the kubeconfig does not trust, a certificate-authority file
 * that is not there, an exec credential plugin that is not installed, and a
 * server that accepts and never answers. Every mode fails the run (exit 1),
 * MF101 comes first and names each cluster unreachable with its cause, every
 * other check's finding about such a cluster says it was not run because of
 * MF101 (never passed, never silently skipped), all within --timeout, and no
 * token reaches the output.
 */
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import type { CheckResult } from '../../src/verify/catalog.js';
import { runMeshfed } from '../helpers/cli.js';
import { digitalSignature, issue, root } from '../helpers/pki.js';

const TOKEN = 'S3CRET-token-never-printed';
const PLUGIN = 'meshfed-test-no-such-credential-plugin';
const TIMEOUT_S = 2;
/** The run may take the probe's bound plus this (process start, rendering the fleet for MF104's needs). */
const SLACK_MS = 6_000;

/** Each cluster, how it cannot be reached, and what MF101 must say. */
const CASES = {
  'cluster-1': { reason: 'refused', says: /connection refused/ },
  'cluster-2': { reason: 'tls-untrusted', says: /TLS: the server's certificate is not signed by a CA/ },
  'cluster-3': {
    reason: 'ca-file-missing',
    says: /certificate-authority file \S+missing-ca\.crt does not exist/,
  },
  'cluster-4': {
    reason: 'exec-plugin-missing',
    says: new RegExp(`exec credential plugin "${PLUGIN}" not found`),
  },
  'cluster-5': { reason: 'timed-out', says: new RegExp(`no answer within ${TIMEOUT_S} s`) },
} as const;

let dir: string;
const servers: Server[] = [];
const sockets: Socket[] = [];

const listening = (s: Server) =>
  new Promise<number>((resolve) =>
    s.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port)),
  );

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mf-unreachable-'));
  // A port that refuses: bound, then closed again.
  const gone = createServer();
  const refusedPort = await listening(gone);
  await new Promise((r) => gone.close(r));
  // A TLS server with a certificate from a CA nobody trusts.
  const ca = await root();
  const leaf = await issue({ subject: 'CN=kube-apiserver', issuer: ca, ca: false, usages: digitalSignature });
  const pk = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', leaf.keys.privateKey)).toString('base64');
  const key = `-----BEGIN PRIVATE KEY-----\n${pk.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  const tlsServer = createTlsServer({ key, cert: leaf.pem }, (s) => s.end());
  servers.push(tlsServer);
  const tlsPort = await listening(tlsServer);
  // Accepts and never answers: a frozen API server.
  const silent = createServer((s) => sockets.push(s));
  servers.push(silent);
  const silentPort = await listening(silent);

  const init = await runMeshfed(['init', '--clusters', '5'], { cwd: dir, env: { HOME: dir } });
  assert.equal(init.code, 0, init.stderr);
  const url = (p: number) => `https://127.0.0.1:${p}`;
  writeFileSync(
    join(dir, 'k.yaml'),
    `apiVersion: v1
kind: Config
clusters:
- {name: refused, cluster: {server: "${url(refusedPort)}"}}
- {name: untrusted, cluster: {server: "${url(tlsPort)}"}}
- {name: no-ca-file, cluster: {server: "${url(tlsPort)}", certificate-authority: missing-ca.crt}}
- {name: plugin, cluster: {server: "${url(tlsPort)}"}}
- {name: silent, cluster: {server: "${url(silentPort)}"}}
contexts:
- {name: cluster-1, context: {cluster: refused, user: token}}
- {name: cluster-2, context: {cluster: untrusted, user: token}}
- {name: cluster-3, context: {cluster: no-ca-file, user: token}}
- {name: cluster-4, context: {cluster: plugin, user: exec}}
- {name: cluster-5, context: {cluster: silent, user: token}}
users:
- {name: token, user: {token: ${TOKEN}}}
- {name: exec, user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: ${PLUGIN}, args: [--secret-arg, ${TOKEN}]}}}
`,
  );
});

after(() => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

async function meshfed(args: string[]): Promise<Run> {
  const t0 = performance.now();
  const r = await runMeshfed([...args, '--kubeconfig', 'k.yaml', '--timeout', `${TIMEOUT_S}s`], {
    cwd: dir,
    env: { HOME: dir },
  });
  return { ...r, ms: performance.now() - t0 };
}

function withinBound(r: Run) {
  assert.ok(r.ms < TIMEOUT_S * 1000 + SLACK_MS, `took ${r.ms.toFixed(0)} ms for a ${TIMEOUT_S} s --timeout`);
}

/** MF101 first and failed, naming each cluster unreachable with its cause; every other finding about a cluster not run because of it. */
function judged(results: CheckResult[]) {
  assert.equal(results[0]?.code, 'MF101', 'reachability comes first');
  const mf101 = results[0]!;
  assert.equal(mf101.status, 'failed', mf101.summary);
  assert.ok(mf101.hint, 'MF101 has a fix');
  for (const [cluster, want] of Object.entries(CASES)) {
    const f = mf101.findings.find((x) => x.cluster === cluster);
    assert.ok(f, `MF101 says nothing of ${cluster}`);
    assert.equal(f.status, 'failed', `${cluster}: ${f.message}`);
    assert.equal(f.data?.reason, want.reason, `${cluster}: ${f.message}`);
    assert.match(f.message, /unreachable/, `${cluster}: ${f.message}`);
    assert.match(f.message, want.says, `${cluster}: ${f.message}`);
  }
  for (const r of results.slice(1)) {
    assert.ok(
      (r.status !== 'passed' && r.status !== 'skipped') || r.findings.every((f) => !f.cluster),
      `${r.code} ${r.status}: ${r.summary}`,
    );
    for (const f of r.findings.filter((x) => x.cluster)) {
      assert.equal(f.status, 'not-run', `${r.code} on ${f.cluster}: ${f.status} ${f.message}`);
      assert.equal(f.because, 'MF101', `${r.code} on ${f.cluster}`);
      assert.match(f.message, /unreachable \(MF101\)/, `${r.code} on ${f.cluster}: ${f.message}`);
    }
  }
}

for (const mode of [['check'], ['check', '--pre'], ['verify', '--requests', '1']])
  test(`${mode.join(' ')}: every unreachable cluster fails the run, named with its cause, within --timeout`, async () => {
    const json = await meshfed([...mode, '-o', 'json']);
    withinBound(json);
    assert.equal(json.code, 1, json.stderr + json.stdout);
    const doc = JSON.parse(json.stdout) as { results: CheckResult[]; counts: Record<string, number> };
    judged(doc.results);
    assert.equal(doc.counts.failed, doc.results.filter((r) => r.status === 'failed').length);
    assert.ok((doc.counts['not-run'] ?? 0) > 0, JSON.stringify(doc.counts));
    assert.ok(!json.stdout.includes(TOKEN) && !json.stderr.includes(TOKEN), 'no token in the output');

    // The text says the same: MF101 failed naming each cluster, the others not run because of it.
    const text = await meshfed(mode);
    withinBound(text);
    assert.equal(text.code, 1, text.stderr + text.stdout);
    assert.match(text.stdout, /^FAIL\s+MF101\s+API servers reachable\s+failed: cluster-1: unreachable/m);
    // MF101's line wraps rather than cut: every cluster and its cause can be read.
    const mf101Text = /^FAIL\s+MF101\s.*(?:\n {10,}.*)*/m.exec(text.stdout)![0].replace(/\s+/g, ' ');
    for (const [cluster, want] of Object.entries(CASES)) {
      assert.match(mf101Text, new RegExp(`${cluster}: unreachable: `), mf101Text);
      assert.match(mf101Text, want.says, mf101Text);
    }
    for (const r of doc.results.slice(1).filter((x) => x.status === 'not-run'))
      assert.match(text.stdout, new RegExp(`^NOT RUN\\s+${r.code}\\s.*not run because of MF101`, 'm'));
    assert.match(text.stdout, /^ {2}MF101: kubectl --context <context> version/m);
    assert.match(
      text.stdout,
      new RegExp(
        `${doc.counts.passed} passed, ${doc.counts.warning} warnings, ${doc.counts.failed} failed, ${doc.counts['not-run']} not run, ${doc.counts.skipped} skipped`,
      ),
    );
    assert.ok(!text.stdout.includes(TOKEN) && !text.stderr.includes(TOKEN), 'no token in the output');
  });

test('--only does not leave reachability out: MF101 runs first and fails the run', async () => {
  const r = await meshfed(['check', '--only', 'MF205', '-o', 'json']);
  withinBound(r);
  assert.equal(r.code, 1, r.stderr + r.stdout);
  const doc = JSON.parse(r.stdout) as { results: CheckResult[] };
  assert.deepEqual(
    doc.results.map((x) => [x.code, x.status]),
    [
      ['MF101', 'failed'],
      ['MF205', 'not-run'],
    ],
  );
  judged(doc.results);
  // --fail-on never still reports them, and exits 0.
  const never = await meshfed(['check', '--fail-on', 'never']);
  assert.equal(never.code, 0);
  assert.match(never.stdout, /^FAIL\s+MF101/m);
});
