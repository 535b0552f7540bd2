/**
 * Discovery against a stand-in API server (HTTPS on loopback, its own CA):
 * the aggregated documents (GET /api, /apis) read in two requests and kept
 * between runs by ETag, so that an unchanged server answers 304 and a
 * changed one its new documents (never a kept answer without asking); a kind
 * the documents lack is looked up again in its group version; a server
 * without the aggregated form is read one group version at a time.
 */
import assert from 'node:assert/strict';
import { createHash, webcrypto } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as px from '@peculiar/x509';
import { type AggregatedGroup, clientsFor } from '../../src/kube/client.js';

px.cryptoProvider.set(webcrypto as unknown as Parameters<typeof px.cryptoProvider.set>[0]);

interface Kind {
  group: string;
  version: string;
  kind: string;
  resource: string;
  namespaced: boolean;
}
const VERBS = ['create', 'delete', 'get', 'list', 'patch'];

/** A stand-in API server serving `kinds` (changed by the tests), logging each request's path and answer. */
class FakeApiServer {
  kinds: Kind[] = [
    { group: '', version: 'v1', kind: 'ConfigMap', resource: 'configmaps', namespaced: true },
    { group: '', version: 'v1', kind: 'Namespace', resource: 'namespaces', namespaced: false },
    { group: 'apps', version: 'v1', kind: 'Deployment', resource: 'deployments', namespaced: true },
  ];
  /** Whether the aggregated form is served, and the kinds it leaves out (a CRD just established, not there yet). */
  aggregated = true;
  lagging = new Set<string>();
  log: string[] = [];
  server!: Server;

  private groups(core: boolean): AggregatedGroup[] {
    const byGroup = new Map<string, Kind[]>();
    for (const k of this.kinds)
      if ((k.group === '') === core && !this.lagging.has(k.kind))
        byGroup.set(k.group, [...(byGroup.get(k.group) ?? []), k]);
    return [...byGroup].map(([group, ks]) => ({
      metadata: { name: group },
      versions: [...new Set(ks.map((k) => k.version))].map((version) => ({
        version,
        freshness: 'Current',
        resources: ks
          .filter((k) => k.version === version)
          .map((k) => ({
            resource: k.resource,
            responseKind: { group: k.group, version, kind: k.kind },
            scope: k.namespaced ? 'Namespaced' : 'Cluster',
            verbs: VERBS,
          })),
      })),
    }));
  }

  private answer(req: IncomingMessage, res: ServerResponse) {
    const path = (req.url ?? '').split('?')[0]!;
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      this.log.push(`${req.method} ${path} ${status}`);
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(body === undefined ? '' : JSON.stringify(body));
    };
    const wantsAggregated = String(req.headers.accept ?? '').includes('as=APIGroupDiscoveryList');
    if ((path === '/api' || path === '/apis') && this.aggregated && wantsAggregated) {
      const body = {
        kind: 'APIGroupDiscoveryList',
        apiVersion: 'apidiscovery.k8s.io/v2',
        items: this.groups(path === '/api'),
      };
      const etag = `"${createHash('sha256').update(JSON.stringify(body)).digest('hex')}"`;
      if (req.headers['if-none-match'] === etag) return send(304, undefined, { ETag: etag });
      return send(200, body, {
        'Content-Type': 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList',
        ETag: etag,
      });
    }
    if (path === '/api') return send(200, { kind: 'APIVersions', versions: ['v1'] });
    if (path === '/apis') {
      const groups = [...new Set(this.kinds.filter((k) => k.group).map((k) => `${k.group}/${k.version}`))];
      return send(200, {
        kind: 'APIGroupList',
        groups: groups.map((gv) => ({ name: gv.split('/')[0], preferredVersion: { groupVersion: gv } })),
      });
    }
    const gv = /^\/(?:api|apis\/([^/]+))\/([^/]+)$/.exec(path);
    if (gv) {
      const [, group = '', version] = gv;
      const ks = this.kinds.filter((k) => k.group === group && k.version === version);
      if (!ks.length) return send(404, { kind: 'Status', status: 'Failure', reason: 'NotFound' });
      return send(200, {
        kind: 'APIResourceList',
        groupVersion: group ? `${group}/${version}` : version,
        resources: ks.map((k) => ({
          name: k.resource,
          kind: k.kind,
          namespaced: k.namespaced,
          verbs: VERBS,
        })),
      });
    }
    // An object read: every kind served holds nothing.
    const k = this.kinds.find((x) => path.includes(`/${x.resource}/`));
    if (k) return send(404, { kind: 'Status', status: 'Failure', reason: 'NotFound', message: 'not found' });
    return send(404, {
      kind: 'Status',
      status: 'Failure',
      reason: 'NotFound',
      message: 'the server could not find the requested resource',
    });
  }

  async start(): Promise<{ kubeconfig: string; dir: string }> {
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    const cert = await px.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01',
      name: 'CN=fake-apiserver',
      notBefore: new Date(Date.now() - 86_400_000),
      notAfter: new Date(Date.now() + 86_400_000),
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new px.SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }])],
    });
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
    const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
    const pem = cert.toString('pem');
    this.server = createServer({ key, cert: pem }, (req, res) => {
      req.resume();
      req.on('end', () => this.answer(req, res));
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const port = (this.server.address() as AddressInfo).port;
    const dir = mkdtempSync(join(tmpdir(), 'mf-discovery-'));
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: fake',
        '  cluster:',
        `    server: https://127.0.0.1:${port}`,
        `    certificate-authority-data: ${Buffer.from(pem).toString('base64')}`,
        'users:',
        '- name: fake',
        '  user:',
        '    token: not-a-secret',
        'contexts:',
        '- name: fake',
        '  context: {cluster: fake, user: fake}',
        'current-context: fake',
        '',
      ].join('\n'),
    );
    return { kubeconfig, dir };
  }
}

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
