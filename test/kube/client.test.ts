/**
 * The per-context client against real API servers (two lab control planes,
 * one kubeconfig): server-side apply with meshfed's field manager and strict
 * field validation, conflicts named with their owner, dry run, discovery of
 * a freshly established CRD, delete with "not found" as done; and the
 * kubeconfig errors that stop meshfed before it touches a cluster.
 *
 * The clusters are shared (starting them is the slow part), but each test
 * works on a ConfigMap of its own name and writes the state it starts from,
 * so any one test runs alone (`--test-name-pattern`) and in any order.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execFileBounded } from '../../src/federation/transport.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import {
  type ClusterClient,
  clientsFor,
  KubeApiError,
  KubeconfigError,
  type KubeObject,
} from '../../src/kube/client.js';
import { retryable } from '../../src/kube/errors.js';
import type { KubeCluster } from '../../src/lab/kube.js';
import { requireLab, startTwoClusters, waitUntil } from '../helpers/lab.js';

const K8S = PROFILE_VERSIONS.current.kubernetes;
const skip = requireLab([`bin/kubernetes/${K8S}/kubectl`, 'bin/kwok/0.8.0/kwokctl'], 'npm run lab:build');

const configMap = (
  name: string,
  data: Record<string, string>,
  extra: Record<string, unknown> = {},
): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'default' },
  data,
  ...extra,
});
const configMapRef = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', name, namespace: 'default' });

describe('kube client on real API servers', { skip, timeout: 240_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-client-'));
  const clusters: KubeCluster[] = [];
  let kubeconfig: string;
  let one: ClusterClient;
  let two: ClusterClient;
  const kubectl = (args: string[], stdin?: string) =>
    execFileBounded(clusters[0]!.kubectl, ['--kubeconfig', kubeconfig, '--context', 'cluster-1', ...args], {
      timeoutMs: 60_000,
      ...(stdin ? { stdin } : {}),
    });

  let stopClusters = async (): Promise<unknown> => undefined;

  before(async () => {
    const lab = await startTwoClusters(dir, K8S);
    clusters.push(...lab.clusters);
    ({ kubeconfig, one, two } = lab);
    stopClusters = lab.stop;
  });
  after(async () => {
    await stopClusters();
    rmSync(dir, { recursive: true, force: true });
  });

  test('each client talks to its own context, whatever the current context is', async () => {
    assert.notEqual(one.server, two.server);
    await one.apply(configMap('where', { where: 'one' }));
    assert.equal(await two.get(configMapRef('where')), undefined);
    assert.deepEqual((await one.get(configMapRef('where')))?.data, { where: 'one' });
    await one.delete(configMapRef('where'));
  });

  test('apply: created, then unchanged (no write), then updated; the field manager is meshfed', async () => {
    assert.equal((await one.apply(configMap('apply', { a: '1' }))).action, 'created');
    const same = await one.apply(configMap('apply', { a: '1' }));
    assert.equal(same.action, 'unchanged');
    const changed = await one.apply(configMap('apply', { a: '2' }));
    assert.equal(changed.action, 'updated');
    const managers = (
      changed.object.metadata.managedFields as Array<{ manager: string; operation: string }>
    ).map((m) => `${m.manager}/${m.operation}`);
    assert.deepEqual(managers, ['meshfed/Apply']);
  });

  test("apply: a controller's status write between the apply's read and its patch is not meshfed's update", async () => {
    const svc = (ip?: string): KubeObject => ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'racing', namespace: 'default' },
      spec: { type: 'LoadBalancer', ports: [{ port: 80 }], selector: { app: ip ? 'b' : 'a' } },
    });
    const refOfSvc = { apiVersion: 'v1', kind: 'Service', name: 'racing', namespace: 'default' };
    await one.apply(svc());
    // The read happens first, then (as a cloud controller would) the status
    // changes; the apply's patch writes nothing of its own.
    let n = 0;
    const racing = Object.create(one) as ClusterClient;
    racing.get = async (ref) => {
      const live = await one.get(ref);
      const status = JSON.stringify({ status: { loadBalancer: { ingress: [{ ip: `127.0.0.${++n}` }] } } });
      const r = await kubectl([
        'patch',
        'service',
        'racing',
        '--subresource=status',
        '--type=merge',
        '-p',
        status,
      ]);
      assert.equal(r.code, 0, r.stderr);
      return live;
    };
    // Nothing to change in what was read: not sent at all (the object answered is the one read).
    const same = await racing.apply(svc());
    assert.equal(same.action, 'unchanged');
    assert.equal(
      (same.object as { status?: { loadBalancer?: { ingress?: unknown[] } } }).status?.loadBalancer?.ingress,
      undefined,
    );
    // Forced, it is sent: the status written meanwhile is not meshfed's update.
    const forced = await racing.apply(svc(), { force: true });
    assert.equal(forced.action, 'unchanged');
    assert.equal(
      (forced.object as { status?: { loadBalancer?: { ingress?: unknown[] } } }).status?.loadBalancer?.ingress
        ?.length,
      1,
    );
    // A real change still counts, with the status racing it.
    assert.equal((await racing.apply(svc('b'))).action, 'updated');
    await one.delete(refOfSvc);
  });

  test('apply onto a live object read earlier: applied onto exactly that version (told exactly), refused with a stale 409 once it changed, dry run too', async () => {
    const v1 = (await one.apply(configMap('onto', { a: '1' }))).object;
    const v2 = (await one.apply(configMap('onto', { a: '2' }))).object;
    const same = await one.apply(configMap('onto', { a: '2' }), { live: v2, onlyOntoLive: true });
    assert.equal(same.action, 'unchanged');
    assert.equal(same.object.metadata.resourceVersion, v2.metadata.resourceVersion);
    // resourceVersion is a precondition, not a field meshfed comes to own.
    assert.doesNotMatch(JSON.stringify(same.object.metadata.managedFields), /resourceVersion/);
    const onto = await one.apply(configMap('onto', { a: '3' }), { live: v2, onlyOntoLive: true });
    assert.equal(onto.action, 'updated');
    for (const dryRun of [true, false])
      await assert.rejects(
        one.apply(configMap('onto', { a: '4' }), { live: v1, onlyOntoLive: true, dryRun }),
        (e: Error) => e instanceof KubeApiError && e.status === 409 && !e.conflicts.length && retryable(e),
      );
    assert.deepEqual((await one.get(configMapRef('onto')))?.data, { a: '3' });
    await one.delete(configMapRef('onto'));
  });

  test('strict field validation: an unknown field is refused, naming it; nothing is written', async () => {
    await one.apply(configMap('strict', { a: '2' }));
    await assert.rejects(
      one.apply(configMap('strict', { a: '3' }, { bogus: true })),
      (e: unknown) =>
        e instanceof KubeApiError &&
        e.status === 500 &&
        /\.bogus: field not declared in schema/.test(e.message),
    );
    assert.deepEqual((await one.get(configMapRef('strict')))?.data, { a: '2' });
  });

  test('a field another manager owns is a conflict naming the manager and the field; force takes it over', async () => {
    const r = await kubectl(
      ['apply', '--server-side', '--force-conflicts', '--field-manager=platform-team', '-f', '-'],
      JSON.stringify(configMap('conflict', { a: 'theirs' })),
    );
    assert.equal(r.code, 0, r.stderr);
    const conflict = await one.apply(configMap('conflict', { a: 'ours' })).catch((e: unknown) => e);
    assert.ok(conflict instanceof KubeApiError, String(conflict));
    assert.equal(conflict.status, 409);
    assert.deepEqual(conflict.conflicts, [{ manager: 'platform-team', field: '.data.a' }]);
    assert.match(
      conflict.message,
      /cluster-1: apply ConfigMap default\/conflict: \.data\.a is owned by "platform-team" \(force takes them over\)/,
    );
    const forced = await one.apply(configMap('conflict', { a: 'ours' }), { force: true });
    assert.equal(forced.action, 'updated');
    assert.deepEqual(forced.object.data, { a: 'ours' });
  });

  test('dry run: validated by the server, not persisted', async () => {
    await one.apply(configMap('dry-run', { a: 'real' }));
    const dry = await one.apply(configMap('dry-run', { a: 'dry' }), { dryRun: true });
    assert.deepEqual(dry.object.data, { a: 'dry' });
    assert.deepEqual((await one.get(configMapRef('dry-run')))?.data, { a: 'real' });
    await assert.rejects(
      one.apply(configMap('dry-run', { a: 'dry' }, { bogus: true }), { dryRun: true }),
      /\.bogus: field not declared in schema/,
    );
  });

  test('a CRD applied and Established is served at once (discovery read again); its objects list', async () => {
    const crd: KubeObject = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'widgets.lab.meshfed.dev' },
      spec: {
        group: 'lab.meshfed.dev',
        names: { kind: 'Widget', plural: 'widgets', singular: 'widget' },
        scope: 'Namespaced',
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: 'object',
                properties: { spec: { type: 'object', properties: { size: { type: 'integer' } } } },
              },
            },
          },
        ],
      },
    };
    await assert.rejects(
      one.list('lab.meshfed.dev/v1', 'Widget'),
      /does not serve Widget in lab\.meshfed\.dev\/v1 \(is its CRD installed and Established\?\)/,
    );
    await one.apply(crd);
    await waitUntil('the CRD Established', async () => {
      const c = await one.get({
        apiVersion: 'apiextensions.k8s.io/v1',
        kind: 'CustomResourceDefinition',
        name: crd.metadata.name,
      });
      return ((c?.status as { conditions?: Array<{ type: string; status: string }> })?.conditions ?? []).some(
        (x) => x.type === 'Established' && x.status === 'True',
      );
    });
    await one.apply({
      apiVersion: 'lab.meshfed.dev/v1',
      kind: 'Widget',
      metadata: { name: 'w', namespace: 'default' },
      spec: { size: 3 },
    });
    const widgets = await one.list('lab.meshfed.dev/v1', 'Widget', { namespace: 'default' });
    assert.deepEqual(
      widgets.map((w) => [w.kind, w.metadata.name, (w.spec as { size: number }).size]),
      [['Widget', 'w', 3]],
    );
    await assert.rejects(
      one.apply({
        apiVersion: 'lab.meshfed.dev/v1',
        kind: 'Widget',
        metadata: { name: 'w', namespace: 'default' },
        spec: { size: 3, colour: 'red' },
      }),
      /\.spec\.colour: field not declared in schema/,
    );
  });

  test('delete: deleted, then absent (not found is done)', async () => {
    const ref = configMapRef('delete');
    await one.apply(configMap('delete', { a: '1' }));
    assert.equal(await one.delete(ref), 'deleted');
    await waitUntil('gone', async () => (await one.get(ref)) === undefined);
    assert.equal(await one.delete(ref), 'absent');
  });

  test('kubeconfig errors: a missing context lists the ones there are; a cluster without TLS verification is refused', () => {
    assert.throws(
      () => clientsFor(kubeconfig, ['cluster-1', 'cluster-9']),
      (e: unknown) =>
        e instanceof KubeconfigError &&
        /has no context "cluster-9" \(it has: cluster-1, cluster-2\)/.test(e.message),
    );
    const insecure = join(dir, 'insecure');
    writeFileSync(
      insecure,
      `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`,
    );
    assert.throws(() => clientsFor(insecure, ['x']), /skips TLS verification/);
    assert.throws(() => clientsFor(join(dir, 'nope'), ['x']), /cannot read kubeconfig/);
  });
});
