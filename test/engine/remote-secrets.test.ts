/**
 * Remote secrets written natively by meshfed, on two real API servers: the
 * same Secret the real `istioctl create-remote-secret` makes, and its token
 * lets a client of the other cluster in as Istio's reader service account.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { remoteSecretOf } from '../../src/engine/remote-secrets.js';
import { execFileBounded } from '../../src/federation/transport.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import type { ClusterClient, KubeObject } from '../../src/kube/client.js';
import { LAB_ISTIO_BUILDS } from '../../src/lab/binaries.js';
import { labBin, requireLab, startTwoClusters } from '../helpers/lab.js';

const V = PROFILE_VERSIONS.current;
const ISTIO = LAB_ISTIO_BUILDS[V.istio]!;
const skip = requireLab(
  [`bin/kubernetes/${V.kubernetes}/kubectl`, `bin/istio/${ISTIO}/istioctl`, 'bin/kwok/0.8.0/kwokctl'],
  'npm run lab:build',
);

describe('remote secrets on real API servers', { skip, timeout: 240_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-remote-'));
  let kubeconfig: string;
  let one: ClusterClient;
  let two: ClusterClient;
  let ours: KubeObject;

  let stopClusters = async (): Promise<unknown> => undefined;

  before(async () => {
    const lab = await startTwoClusters(dir, V.kubernetes);
    ({ kubeconfig, one, two } = lab);
    stopClusters = lab.stop;
  });
  after(async () => {
    await stopClusters();
    rmSync(dir, { recursive: true, force: true });
  });

  test("without Istio's reader service account: an error saying what to install, nothing written", async () => {
    await assert.rejects(
      remoteSecretOf(two, 'cluster-2'),
      /cluster-2: no ServiceAccount istio-system\/istio-reader-service-account \(Istio's base install creates it\): install Istio in cluster-2 first/,
    );
  });

  test('the Secret is the one the real istioctl create-remote-secret makes', async () => {
    for (const o of [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } },
      {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: 'istio-reader-service-account', namespace: 'istio-system' },
      },
    ])
      await two.apply(o);
    ours = await remoteSecretOf(two, 'cluster-2', { labels: { 'app.kubernetes.io/managed-by': 'meshfed' } });
    const r = await execFileBounded(
      labBin('istio', ISTIO, 'istioctl'),
      ['create-remote-secret', '--kubeconfig', kubeconfig, '--context', 'cluster-2', '--name', 'cluster-2'],
      { timeoutMs: 60_000, env: { HOME: dir } },
    );
    assert.equal(r.code, 0, r.stderr);
    const theirs = parseAllDocuments(r.stdout)
      .map((d) => d.toJS() as KubeObject | null)
      .find((o) => o?.kind === 'Secret')!;
    assert.equal(ours.metadata.name, theirs.metadata.name);
    assert.equal(ours.metadata.namespace, theirs.metadata.namespace);
    assert.deepEqual(ours.metadata.annotations, theirs.metadata.annotations);
    for (const [k, v] of Object.entries(theirs.metadata.labels ?? {}))
      assert.equal(ours.metadata.labels?.[k], v, k);
    const data = (o: KubeObject) => o.stringData as Record<string, string>;
    assert.deepEqual(Object.keys(data(ours)), Object.keys(data(theirs)));
    // istioctl found meshfed's token Secret and used the same token: the kubeconfigs are equal.
    assert.deepEqual(parse(data(ours)['cluster-2']!), parse(data(theirs)['cluster-2']!));
  });

  test('held by cluster-1, its token lets a client into cluster-2 as the reader service account, and no further', async () => {
    await one.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } });
    await one.apply(ours);
    const held = await one.get({
      apiVersion: 'v1',
      kind: 'Secret',
      namespace: 'istio-system',
      name: 'istio-remote-secret-cluster-2',
    });
    const kc = join(dir, 'from-secret');
    writeFileSync(kc, Buffer.from((held!.data as Record<string, string>)['cluster-2']!, 'base64'), {
      mode: 0o600,
    });
    const kubectl = labBin('kubernetes', V.kubernetes, 'kubectl');
    const who = await execFileBounded(kubectl, ['--kubeconfig', kc, 'auth', 'whoami', '-o', 'json']);
    assert.equal(who.code, 0, who.stderr);
    const status = (JSON.parse(who.stdout) as { status: { userInfo: { username: string } } }).status;
    assert.equal(status.userInfo.username, 'system:serviceaccount:istio-system:istio-reader-service-account');
    const server = (
      parse(Buffer.from((held!.data as Record<string, string>)['cluster-2']!, 'base64').toString()) as {
        clusters: Array<{ cluster: { server: string } }>;
      }
    ).clusters[0]!.cluster.server;
    assert.equal(server, two.server, 'it names cluster-2, not cluster-1');
    const pods = await execFileBounded(kubectl, ['--kubeconfig', kc, 'get', 'secrets', '-n', 'kube-system']);
    assert.notEqual(pods.code, 0);
    assert.match(pods.stderr, /Forbidden/);
  });
});
