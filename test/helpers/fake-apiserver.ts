/**
 * A stand-in API server for tests without a lab: HTTPS on loopback with a
 * certificate of its own, serving discovery (aggregated or per group
 * version) of the kinds it is given; an object read answers 404, a PATCH
 * (an apply) answers the object sent with a new resourceVersion. Each
 * request's method, path and status go to `log`.
 */
import { createHash, webcrypto } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as px from '@peculiar/x509';
import type { AggregatedGroup } from '../../src/kube/client.js';

px.cryptoProvider.set(webcrypto as unknown as Parameters<typeof px.cryptoProvider.set>[0]);

export interface Kind {
  group: string;
  version: string;
  kind: string;
  resource: string;
  namespaced: boolean;
}
const VERBS = ['create', 'delete', 'get', 'list', 'patch'];

/** A stand-in API server serving `kinds` (changed by the tests), logging each request's path and answer. */
export class FakeApiServer {
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
  private resourceVersion = 100;

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

  private answer(req: IncomingMessage, res: ServerResponse, text: string) {
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
    // An object read: every kind served holds nothing. An apply answers what was sent, as written.
    const k = this.kinds.find((x) => path.includes(`/${x.resource}/`));
    if (k && req.method === 'PATCH') {
      const o = JSON.parse(text) as { metadata?: Record<string, unknown> };
      return send(200, {
        ...o,
        metadata: { ...o.metadata, resourceVersion: String(++this.resourceVersion) },
      });
    }
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
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.answer(req, res, Buffer.concat(chunks).toString('utf8')));
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
