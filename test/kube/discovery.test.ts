/**
 * Discovery against a stand-in API server (HTTPS on loopback, its own CA):
 * the aggregated documents (GET /api, /apis) read in two requests and kept
 * between runs by ETag, so that an unchanged server answers 304 and a
 * changed one its new documents (never a kept answer without asking); a kind
 * the documents lack is looked up again in its group version; a server
 * without the aggregated form is read one group version at a time.
 */
import assert from 'node:assert/strict';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { clientsFor } from '../../src/kube/client.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';

describe('discovery: aggregated, kept between runs by ETag', () => {
  const api = new FakeApiServer();
  let kubeconfig = '';
  let dir = '';
  /** A client as a new run makes it, with the cache folder. */
  const run = () => clientsFor(kubeconfig, ['fake'], { cacheDir: join(dir, 'cache') }).get('fake')!;
  const kindsOf = async () => (await run().kinds()).map((k) => `${k.apiVersion}/${k.kind}`);

  before(async () => {
    ({ kubeconfig, dir } = await api.start());
  });
  after(() => {
    api.server.close();
    api.server.closeAllConnections();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the first run reads two documents; the next ones are answered 304 and read no group version', async () => {
    api.log = [];
    assert.deepEqual(await kindsOf(), ['apps/v1/Deployment', 'v1/ConfigMap', 'v1/Namespace']);
    assert.deepEqual(api.log, ['GET /api 200', 'GET /apis 200']);
    assert.equal(readdirSync(join(dir, 'cache', 'discovery')).length, 1);
    api.log = [];
    const c = run();
    assert.deepEqual(
      (await c.kinds()).map((k) => `${k.apiVersion}/${k.kind}`),
      ['apps/v1/Deployment', 'v1/ConfigMap', 'v1/Namespace'],
    );
    // And every kind's resource comes from them: a read asks for the object only.
    assert.equal(
      await c.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'x', name: 'y' }),
      undefined,
    );
    assert.deepEqual(api.log, [
      'GET /api 304',
      'GET /apis 304',
      'GET /apis/apps/v1/namespaces/x/deployments/y 404',
    ]);
  });

  test("a run's kinds() answers from the read its lookups made, and reads again after a CRD is written through the client", async () => {
    const crd = {
      group: 'apiextensions.k8s.io',
      version: 'v1',
      kind: 'CustomResourceDefinition',
      resource: 'customresourcedefinitions',
      namespaced: false,
    };
    api.kinds.push(crd);
    try {
      await kindsOf();
      const c = run();
      api.log = [];
      assert.equal(await c.resourceName('apps/v1', 'Deployment'), 'deployments');
      const kinds = (await c.kinds()).map((k) => `${k.apiVersion}/${k.kind}`);
      assert.deepEqual(kinds, [
        'apiextensions.k8s.io/v1/CustomResourceDefinition',
        'apps/v1/Deployment',
        'v1/ConfigMap',
        'v1/Namespace',
      ]);
      assert.deepEqual(api.log, ['GET /api 304', 'GET /apis 304'], 'one read for both');
      // A write to a CRD may change what is served: the next kinds() asks.
      api.log = [];
      assert.equal(
        await c.delete({
          apiVersion: 'apiextensions.k8s.io/v1',
          kind: 'CustomResourceDefinition',
          name: 'x',
        }),
        'absent',
      );
      assert.deepEqual((await c.kinds()).length, 4);
      assert.deepEqual(api.log, [
        'DELETE /apis/apiextensions.k8s.io/v1/customresourcedefinitions/x 404',
        'GET /api 304',
        'GET /apis 304',
      ]);
      // A write elsewhere does not.
      api.log = [];
      await c.delete({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'x', name: 'y' });
      await c.kinds();
      assert.deepEqual(api.log, ['DELETE /api/v1/namespaces/x/configmaps/y 404']);
    } finally {
      api.kinds = api.kinds.filter((k) => k !== crd);
    }
  });

  test('a server whose kinds changed answers with its new documents, which replace the kept ones', async () => {
    await kindsOf();
    api.kinds.push({
      group: 'example.com',
      version: 'v1',
      kind: 'Widget',
      resource: 'widgets',
      namespaced: true,
    });
    api.kinds = api.kinds.filter((k) => k.kind !== 'Deployment');
    api.log = [];
    assert.deepEqual(await kindsOf(), ['example.com/v1/Widget', 'v1/ConfigMap', 'v1/Namespace']);
    assert.deepEqual(api.log, ['GET /api 304', 'GET /apis 200']);
    api.log = [];
    assert.deepEqual(await kindsOf(), ['example.com/v1/Widget', 'v1/ConfigMap', 'v1/Namespace']);
    assert.deepEqual(api.log, ['GET /api 304', 'GET /apis 304']);
  });

  test('a kind the documents lack (a CRD just established) is looked up in its group version', async () => {
    api.kinds.push({
      group: 'example.com',
      version: 'v1',
      kind: 'Gadget',
      resource: 'gadgets',
      namespaced: false,
    });
    api.lagging.add('Gadget');
    try {
      const c = run();
      api.log = [];
      assert.equal(await c.resourceName('example.com/v1', 'Gadget'), 'gadgets');
      assert.deepEqual(api.log, ['GET /api 304', 'GET /apis 304', 'GET /apis/example.com/v1 200']);
      // Not served at all: the group version says so, every time it is asked (no answer is remembered as absent).
      api.log = [];
      assert.equal(await c.resourceName('example.com/v1', 'Gizmo'), undefined);
      assert.equal(await c.resourceName('example.com/v1', 'Gizmo'), undefined);
      assert.deepEqual(api.log, ['GET /apis/example.com/v1 200', 'GET /apis/example.com/v1 200']);
    } finally {
      api.lagging.clear();
    }
  });

  test('a kept file that is not one (truncated, another server) is read over', async () => {
    for (const f of readdirSync(join(dir, 'cache', 'discovery')))
      writeFileSync(join(dir, 'cache', 'discovery', f), '{"server": "https://elsewhere", "documents": {');
    api.log = [];
    assert.ok((await kindsOf()).includes('v1/ConfigMap'));
    assert.deepEqual(api.log, ['GET /api 200', 'GET /apis 200']);
  });

  test('a server without the aggregated form: one document per preferred group version (after asking /api for it)', async () => {
    api.aggregated = false;
    try {
      api.log = [];
      assert.deepEqual(await kindsOf(), [
        'example.com/v1/Gadget',
        'example.com/v1/Widget',
        'v1/ConfigMap',
        'v1/Namespace',
      ]);
      assert.deepEqual(api.log.sort(), [
        'GET /api 200',
        'GET /api 200',
        'GET /api/v1 200',
        'GET /apis 200',
        'GET /apis/example.com/v1 200',
      ]);
    } finally {
      api.aggregated = true;
    }
  });
});
