/**
 * meshfed's kubeconfig reader (kube/kubeconfig.ts) against client-node's
 * KubeConfig, which it stands in for: from the same kubeconfig, each
 * request gets the same CA, client certificate and key, headers, basic auth
 * and TLS server name, for every kind of user (certificate and key files or
 * data, token, basic auth, impersonation, an exec credential plugin); what
 * it does not do itself (an auth-provider, a proxy) is client-node's own.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { kubeconfigFromText } from '../../src/kube/client.js';

const dir = mkdtempSync(join(tmpdir(), 'mf-kubeconfig-'));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'ca.crt'), 'CA FILE');
writeFileSync(join(dir, 'client.crt'), 'CERT FILE');
writeFileSync(join(dir, 'client.key'), 'KEY FILE');
const plugin = join(dir, 'plugin.sh');
writeFileSync(
  plugin,
  '#!/bin/sh\necho \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"from-plugin"}}\'\n',
);
chmodSync(plugin, 0o755);
const b64 = (s: string) => Buffer.from(s).toString('base64');

const users: Record<string, string> = {
  files: '{client-certificate: client.crt, client-key: client.key}',
  data: `{client-certificate-data: ${b64('CERT DATA')}, client-key-data: ${b64('KEY DATA')}}`,
  token: '{token: abc, as: someone}',
  basic: '{username: me, password: pw}',
  exec: `{exec: {apiVersion: client.authentication.k8s.io/v1, command: ${plugin}, interactiveMode: Never}}`,
};
const text = `apiVersion: v1
kind: Config
clusters:
- name: file-ca
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: ca.crt}
- name: data-ca
  cluster: {server: "https://[::1]:6443", certificate-authority-data: ${b64('CA DATA')}, tls-server-name: kubernetes}
users:
${Object.entries(users)
  .map(([name, user]) => `- name: ${name}\n  user: ${user}`)
  .join('\n')}
contexts:
${Object.keys(users)
  .flatMap((u) => [
    `- name: ${u}-file\n  context: {cluster: file-ca, user: ${u}}`,
    `- name: ${u}-data\n  context: {cluster: data-ca, user: ${u}}`,
  ])
  .join('\n')}
current-context: token-file
`;
const file = join(dir, 'config');
writeFileSync(file, text);

/** What a request gets, without the agent (meshfed's client has its own). */
const applied = async (kc: { applyToHTTPSOptions(o: RequestOptions): Promise<void> }) => {
  const o: RequestOptions = { headers: {} };
  await kc.applyToHTTPSOptions(o);
  const { agent: _agent, ...rest } = o;
  return JSON.parse(
    JSON.stringify(rest, (_k, v) => (v?.type === 'Buffer' ? Buffer.from(v.data).toString() : v)),
  );
};

test("each context's request options are client-node's", async () => {
  const contexts = Object.keys(users).flatMap((u) => [`${u}-file`, `${u}-data`]);
  for (const name of contexts) {
    const lite = kubeconfigFromText(text, file);
    lite.setCurrentContext(name);
    const full = new KubeConfig();
    full.loadFromFile(file);
    full.setCurrentContext(name);
    assert.equal(lite.getCurrentCluster()?.server, full.getCurrentCluster()?.server, name);
    assert.deepEqual(await applied(lite), await applied(full), name);
  }
  const kc = kubeconfigFromText(text, file);
  kc.setCurrentContext('exec-data');
  const o = await applied(kc);
  assert.equal(o.headers.Authorization, 'Bearer from-plugin');
  assert.equal(o.ca, 'CA DATA');
  assert.equal(o.servername, 'kubernetes');
  kc.setCurrentContext('files-file');
  assert.equal(kc.getCurrentCluster()?.caFile, join(dir, 'ca.crt'));
  assert.deepEqual([(await applied(kc)).cert, (await applied(kc)).key], ['CERT FILE', 'KEY FILE']);
});

test("a proxy-url and an auth-provider are client-node's own: its agent, its token file", async () => {
  writeFileSync(join(dir, 'token'), 'from-file');
  const kc = kubeconfigFromText(
    `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", proxy-url: "http://127.0.0.1:3128"}
users:
- name: u
  user: {auth-provider: {name: tokenfile, config: {tokenFile: ${join(dir, 'token')}}}}
contexts:
- {name: x, context: {cluster: c, user: u}}
current-context: x
`,
    file,
  );
  const o: RequestOptions = { headers: {} };
  await kc.applyToHTTPSOptions(o);
  assert.equal((o.headers as Record<string, string>).Authorization, 'Bearer from-file');
  assert.equal(o.agent?.constructor.name, 'HttpsProxyAgent');
});

test('a kubeconfig with a key twice, or a cluster without a server, is refused as client-node refuses it', () => {
  assert.throws(
    () => kubeconfigFromText('apiVersion: v1\nkind: Config\nusers: []\nusers: []\n', file),
    /config:4:1: not a kubeconfig client-node can read/,
  );
  assert.throws(
    () => kubeconfigFromText('apiVersion: v1\nkind: Config\nclusters:\n- {name: c, cluster: {}}\n', file),
    /clusters\[0\]\.cluster\.server is missing/,
  );
});

test('a CA, certificate or key file is read again once its last read is 5 s old (a renewed certificate is taken)', async (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
  const certFile = join(dir, 'renewed.crt');
  writeFileSync(certFile, 'CERT 1');
  const kc = kubeconfigFromText(
    text.replace('client-certificate: client.crt', `client-certificate: ${certFile}`),
    file,
  );
  kc.setCurrentContext('files-file');
  assert.equal((await applied(kc)).cert, 'CERT 1');
  writeFileSync(certFile, 'CERT 2');
  t.mock.timers.tick(4_000);
  assert.equal((await applied(kc)).cert, 'CERT 1');
  t.mock.timers.tick(1_001);
  assert.equal((await applied(kc)).cert, 'CERT 2');
});
