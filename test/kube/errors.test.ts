/**
 * The error classification on errors as they really arise: the client's own
 * requests against a closed port, a silent server, a server that resets, a
 * server with a certificate the kubeconfig does not trust, and an HTTPS
 * server answering with the Status bodies the lab's kube-apiserver 1.35
 * sent (recorded with curl: server-side apply of an unknown field, a
 * wrong-typed value, an invalid name, a field-manager conflict, a webhook
 * that is not up); client-node's ApiException and its exec's WebSocket
 * error; undici's fetch; and the federation's refusal.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApiException } from '@kubernetes/client-node';
import { BUNDLE_ENDPOINT_SERVICE, currentAddress, SPIRE_SERVER_POD } from '../../src/engine/discover.js';
import { BundleOwnerError } from '../../src/federation/engine.js';
import { SpireCliError, SpireServerCli } from '../../src/federation/spire-cli.js';
import { podServerTransport } from '../../src/federation/transport.js';
import { type ClusterClient, clientFromKubeconfig, type KubeObject } from '../../src/kube/client.js';
import { classify, errorCode, KubeApiError, KubeRequestError } from '../../src/kube/errors.js';
import { BundleEndpointError, fetchBundle } from '../../src/spiffe/endpoint.js';
import { tokenAccepted } from '../../src/verify/post.js';

const tmp = mkdtempSync(join(tmpdir(), 'mf-errors-'));
const servers: Array<Server | HttpsServer> = [];
after(() => {
  rmSync(tmp, { recursive: true, force: true });
  // Not awaited: a server's close waits for its last connection, and the silent one's never ends by itself.
  for (const s of servers) {
    s.close();
    (s as HttpsServer).closeAllConnections?.();
  }
});

/** A self-signed serving certificate for 127.0.0.1 (openssl), as PEM. */
function selfSigned(name: string): { cert: string; key: string } {
  const key = join(tmp, `${name}.key`);
  const cert = join(tmp, `${name}.crt`);
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'],
      ...['-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${name}`],
      ...['-addext', 'subjectAltName=IP:127.0.0.1'],
    ],
    { stdio: 'ignore' },
  );
  return { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
}

function kubeconfig(server: string, ca?: string, token = 't'): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'c',
        cluster: {
          server,
          ...(ca ? { 'certificate-authority-data': Buffer.from(ca).toString('base64') } : {}),
        },
      },
    ],
    users: [{ name: 'u', user: { token } }],
    contexts: [{ name: 'cluster-1', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'cluster-1',
  });
}

const listening = <T extends Server | HttpsServer>(s: T): Promise<number> =>
  new Promise((resolve) => {
    servers.push(s);
    s.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port));
  });

const rejection = async (p: Promise<unknown>): Promise<unknown> => {
  try {
    await p;
  } catch (e) {
    return e;
  }
  assert.fail('expected a rejection');
};

const configMap = (extra: Record<string, unknown> = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name: 'a', namespace: 'default' },
  ...extra,
});

/** Status bodies the lab's kube-apiserver 1.35.0 answered a server-side apply with, by the object's name. */
const ANSWERS: Record<string, { code: number; body: Record<string, unknown> }> = {
  'unknown-field': {
    code: 500,
    body: {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message:
        'failed to create typed patch object (default/unknown-field; /v1, Kind=ConfigMap): .bogus: field not declared in schema',
      code: 500,
    },
  },
  'wrong-type': {
    code: 500,
    body: {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message:
        'failed to create typed patch object (default/wrong-type; apps/v1, Kind=Deployment): .spec.replicas: expected numeric (int or float), got string',
      code: 500,
    },
  },
  'bad-name': {
    code: 422,
    body: {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message:
        'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain …',
      reason: 'Invalid',
      details: {
        name: 'Bad_Name',
        kind: 'ConfigMap',
        causes: [
          { reason: 'FieldValueInvalid', message: 'Invalid value: "Bad_Name"', field: 'metadata.name' },
        ],
      },
      code: 422,
    },
  },
  duplicate: {
    code: 400,
    body: {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message:
        'error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal errors:\n  line 1: key "x" already set in map',
      reason: 'BadRequest',
      code: 400,
    },
  },
  owned: {
    code: 409,
    body: {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.a',
      reason: 'Conflict',
      details: {
        causes: [
          {
            reason: 'FieldManagerConflict',
            message: 'conflict with "kubectl-client-side-apply" using v1',
            field: '.data.a',
          },
        ],
      },
      code: 409,
    },
  },
  webhook: {
    code: 500,
    body: {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message:
        'Internal error occurred: failed calling webhook "webhook.cert-manager.io": failed to call webhook: Post "https://cert-manager-webhook.cert-manager.svc:443/validate?timeout=30s": dial tcp 10.0.0.1:443: connect: connection refused',
      reason: 'InternalError',
      details: {
        causes: [{ message: 'failed calling webhook "webhook.cert-manager.io": failed to call webhook' }],
      },
      code: 500,
    },
  },
  busy: {
    code: 429,
    body: {
      kind: 'Status',
      status: 'Failure',
      message: 'too many requests',
      reason: 'TooManyRequests',
      code: 429,
    },
  },
  starting: {
    code: 503,
    body: {
      kind: 'Status',
      status: 'Failure',
      message: 'the server is currently unable to handle the request',
      reason: 'ServiceUnavailable',
      code: 503,
    },
  },
  forbidden: {
    code: 403,
    body: {
      kind: 'Status',
      status: 'Failure',
      message:
        'configmaps "forbidden" is forbidden: User "system:anonymous" cannot patch resource "configmaps"',
      reason: 'Forbidden',
      code: 403,
    },
  },
};

let apiServer: { url: string; ca: string };

describe('classify: answers of an API server, through the client', () => {
  let client: ClusterClient;
  before(async () => {
    const { cert, key } = selfSigned('apiserver');
    const server = createHttpsServer({ cert, key }, (req, res) => {
      const send = (code: number, body: unknown) => {
        res.writeHead(code, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      const url = new URL(req.url ?? '/', 'https://x');
      if (url.pathname === '/api/v1')
        return send(200, {
          resources: [
            { name: 'configmaps', kind: 'ConfigMap', namespaced: true },
            { name: 'pods', kind: 'Pod', namespaced: true },
          ],
        });
      if (url.pathname === '/api/v1/namespaces/istio-system/pods') {
        // As kube-apiserver answers a token it does not know, and one it knows but does not allow.
        if (req.headers.authorization === 'Bearer stale')
          return send(401, {
            kind: 'Status',
            status: 'Failure',
            message: 'Unauthorized',
            reason: 'Unauthorized',
            code: 401,
          });
        return send(403, {
          kind: 'Status',
          status: 'Failure',
          message:
            'pods is forbidden: User "system:serviceaccount:istio-system:reader-401" cannot list resource "pods" in API group "" in the namespace "istio-system"',
          reason: 'Forbidden',
          details: { kind: 'pods' },
          code: 403,
        });
      }
      const name = url.pathname.split('/').pop() ?? '';
      if (req.method === 'GET') return send(404, { kind: 'Status', reason: 'NotFound', code: 404 });
      if (name === 'proxy') {
        // A proxy in front of the API server, not the API server: a page, no Status.
        res.writeHead(500, { 'Content-Type': 'text/html' });
        return res.end('<html><body>Internal Server Error</body></html>');
      }
      const a = ANSWERS[name];
      return a ? send(a.code, a.body) : send(200, {});
    });
    const port = await listening(server);
    apiServer = { url: `https://127.0.0.1:${port}`, ca: cert };
    client = clientFromKubeconfig(kubeconfig(apiServer.url, cert));
  });

  const applied = async (name: string) =>
    rejection(client.apply(configMap({ metadata: { name, namespace: 'default' } })));

  test('server-side apply of an unknown field or a wrong type: HTTP 500 with no reason, invalid, never retried', async () => {
    for (const name of ['unknown-field', 'wrong-type']) {
      const e = await applied(name);
      assert.ok(e instanceof KubeApiError, String(e));
      assert.equal(e.status, 500);
      assert.equal(e.reason, undefined);
      const c = classify(e);
      assert.equal(c.kind, 'invalid', name);
      assert.equal(c.retry, false, name);
      assert.match(
        e.message,
        /^cluster-1: apply ConfigMap default\/(unknown-field|wrong-type): failed to create typed patch object/,
      );
    }
  });

  test('400, 403, 422 and a field-manager conflict are never retried; the Status causes are kept', async () => {
    const bad = await applied('bad-name');
    assert.ok(bad instanceof KubeApiError);
    assert.deepEqual(
      bad.causes.map((c) => c.reason),
      ['FieldValueInvalid'],
    );
    assert.deepEqual(classify(bad), {
      kind: 'invalid',
      retry: false,
      why: 'HTTP 422 Invalid: the API server rejects the object',
    });
    assert.equal(classify(await applied('duplicate')).kind, 'invalid');
    assert.equal(classify(await applied('forbidden')).kind, 'forbidden');
    const owned = classify(await applied('owned'));
    assert.equal(owned.kind, 'conflict');
    assert.equal(owned.retry, false);
  });

  test('a webhook not up yet (500 InternalError), 429 and 503 are retried', async () => {
    for (const [name, kind] of [
      ['webhook', 'unavailable'],
      ['busy', 'throttled'],
      ['starting', 'unavailable'],
    ] as const) {
      const c = classify(await applied(name));
      assert.equal(c.kind, kind, name);
      assert.equal(c.retry, true, name);
    }
  });

  test('a 500 that is not a Kubernetes Status (a proxy in between) is retried', async () => {
    const e = await applied('proxy');
    assert.ok(e instanceof KubeApiError && e.status === 500 && !e.isStatus, String(e));
    assert.equal(classify(e).kind, 'unavailable');
    assert.equal(classify(e).retry, true);
  });

  test('a 409 without a field-manager cause (the object changed under a read) is retried: the caller reads again', () => {
    const e = new KubeApiError('x', 409, 'Conflict', [], []);
    assert.equal(classify(e).kind, 'stale');
    assert.equal(classify(e).retry, true);
  });
});

describe('classify: requests that get no answer, by the Node code on the cause chain', () => {
  test('a closed port: ECONNREFUSED, kept as the cause, retried', async () => {
    const e = await rejection(clientFromKubeconfig(kubeconfig('https://127.0.0.1:1')).version());
    assert.ok(e instanceof KubeRequestError, String(e));
    assert.equal(e.code, 'ECONNREFUSED');
    assert.equal((e.cause as NodeJS.ErrnoException).code, 'ECONNREFUSED');
    assert.deepEqual(classify(e), { kind: 'connection', retry: true, why: 'ECONNREFUSED: no answer' });
  });

  test('a server that resets the connection: ECONNRESET, retried', async () => {
    const port = await listening(createServer((s) => s.resetAndDestroy()));
    const e = await rejection(clientFromKubeconfig(kubeconfig(`https://127.0.0.1:${port}`)).version());
    assert.equal(errorCode(e), 'ECONNRESET');
    assert.equal(classify(e).retry, true);
  });

  test("a silent server: the request's own deadline, ETIMEDOUT, retried", async () => {
    const port = await listening(createServer(() => {}));
    const e = await rejection(
      clientFromKubeconfig(kubeconfig(`https://127.0.0.1:${port}`), { timeoutMs: 200 }).version(),
    );
    assert.ok(e instanceof KubeRequestError, String(e));
    assert.equal(e.code, 'ETIMEDOUT');
    assert.equal(classify(e).kind, 'connection');
    assert.equal(classify(e).retry, true);
  });

  test('a server whose certificate the kubeconfig does not trust: a TLS failure, never retried', async () => {
    const { cert, key } = selfSigned('stranger');
    const other = selfSigned('other');
    const port = await listening(createHttpsServer({ cert, key }, (_q, r) => r.end('{}')));
    const e = await rejection(
      clientFromKubeconfig(kubeconfig(`https://127.0.0.1:${port}`, other.cert)).version(),
    );
    assert.equal(classify(e).kind, 'tls', `${errorCode(e)}`);
    assert.equal(classify(e).retry, false);
  });

  test("client-node's exec to a closed port rejects with a WebSocket ErrorEvent; its error's code is found", async () => {
    const client = clientFromKubeconfig(kubeconfig('https://127.0.0.1:1'));
    const e = await rejection(
      client.exec({ namespace: 'spire', name: 'spire-server-0', container: 'spire-server' }, ['true']),
    );
    assert.ok(e instanceof KubeRequestError, String(e));
    assert.equal(errorCode(e), 'ECONNREFUSED');
    assert.equal(classify(e).retry, true);
  });

  test("undici's fetch failed: the code is on its cause", async () => {
    // Not port 1: fetch refuses "bad ports" before connecting. A port just closed refuses the connection.
    const s = createServer();
    const port = await new Promise<number>((r) =>
      s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port)),
    );
    await new Promise((r) => s.close(r));
    const e = await rejection(fetch(`http://127.0.0.1:${port}/`));
    assert.equal(errorCode(e), 'ECONNREFUSED');
    assert.equal(classify(e).retry, true);
  });
});

describe('classify: wrappers with codes of their own', () => {
  test("a bundle endpoint not reached: BundleEndpointError's 'connect' does not hide Node's ECONNREFUSED below it", async () => {
    const bundle = { trustDomain: 'foo.com', x509Authorities: [], jwtAuthorities: new Map() };
    const e = await rejection(
      fetchBundle('https://127.0.0.1:1', 'foo.com', {
        type: 'https_spiffe',
        endpointSpiffeId: 'spiffe://foo.com/spire/server',
        bundle,
      }),
    );
    assert.ok(e instanceof BundleEndpointError && e.code === 'connect', String(e));
    assert.equal(errorCode(e), 'ECONNREFUSED');
    assert.equal(classify(e).retry, true);
  });
});

describe('classify: errors of other types', () => {
  test("client-node's ApiException: its numeric code is the HTTP status, its body the Status", () => {
    const typed = new ApiException(500, 'Unsuccessful HTTP Request', ANSWERS['unknown-field']!.body, {});
    assert.equal(classify(typed).kind, 'invalid');
    const webhook = new ApiException(500, 'Unsuccessful HTTP Request', ANSWERS.webhook!.body, {});
    assert.equal(classify(webhook).retry, true);
    const conflict = new ApiException(409, 'Unsuccessful HTTP Request', ANSWERS.owned!.body, {});
    assert.equal(classify(conflict).kind, 'conflict');
  });

  test('a BundleOwnerError is a refusal, never retried, however it is wrapped', () => {
    const refusal = new BundleOwnerError("the bundle read from x is not foo.com's");
    assert.deepEqual(classify(refusal), {
      kind: 'refused',
      retry: false,
      why: 'a security check refused it',
    });
    const wrapped = new Error('bootstrap failed', { cause: new Error('pair', { cause: refusal }) });
    assert.equal(classify(wrapped).kind, 'refused');
  });

  test('spire-server: Unavailable is retried, PermissionDenied is not; no gRPC code, Internal and Unknown are unknown', () => {
    assert.equal(classify(new SpireCliError('x', 't', 'Unavailable')).retry, true);
    assert.equal(classify(new SpireCliError('x', 't', 'PermissionDenied')).retry, false);
    assert.equal(classify(new SpireCliError('x', 't')).kind, 'unknown');
    assert.equal(classify(new SpireCliError('x', 't', 'Internal')).kind, 'unknown');
  });

  test('an error of no known type with a message that mentions a code is not classified by its message', () => {
    const e = new Error('cluster-1: PATCH /api: connect ECONNREFUSED 127.0.0.1:6443');
    assert.equal(classify(e).kind, 'unknown');
    assert.equal(classify(e).retry, false);
  });
});

describe('every failure keeps its cause', () => {
  test('spire-server through an exec that cannot open: a SpireCliError naming the command, the exec error its cause', async () => {
    const cli = new SpireServerCli(
      podServerTransport(clientFromKubeconfig(kubeconfig('https://127.0.0.1:1')), SPIRE_SERVER_POD),
    );
    const e = await rejection(cli.ownBundle('foo.com'));
    assert.ok(e instanceof SpireCliError, String(e));
    assert.match(e.message, /^cluster-1: spire\/spire-server-0: spire-server bundle show: /);
    assert.ok(e.cause instanceof KubeRequestError, String(e.cause));
    assert.deepEqual(classify(e), { kind: 'connection', retry: true, why: 'ECONNREFUSED: no answer' });
  });

  test("a failed healthcheck says why: the CLI's own words, or why it could not run", async () => {
    const cli = new SpireServerCli({
      target: 't',
      run: async () => ({
        code: 1,
        stdout: '',
        stderr:
          'Error: rpc error: code = Unavailable desc = connection error: dial unix /tmp/spire-server/private/api.sock: connect: no such file or directory\n',
      }),
    });
    assert.match((await cli.healthcheck()) ?? '', /code = Unavailable .*api\.sock/);
    const down = new SpireServerCli({
      target: 't',
      run: () =>
        Promise.reject(
          new KubeRequestError(
            'cluster-1: exec in spire/spire-server-0/spire-server: Unexpected server response: 404',
          ),
        ),
    });
    assert.match((await down.healthcheck()) ?? '', /Unexpected server response: 404/);
    assert.equal(await down.healthy(), false);
  });

  test('reading a Service\'s address: a 403 is an error, not "no address"; no Service is no address', async () => {
    const forbidden = new KubeApiError(
      'cluster-1: get Service spire/x: services "x" is forbidden',
      403,
      'Forbidden',
    );
    const client = (get: () => Promise<KubeObject | undefined>) =>
      ({ context: 'cluster-1', get }) as unknown as ClusterClient;
    const e = await rejection(
      currentAddress(
        client(() => Promise.reject(forbidden)),
        BUNDLE_ENDPOINT_SERVICE,
      ),
    );
    assert.equal(e, forbidden);
    assert.equal(
      await currentAddress(
        client(async () => undefined),
        BUNDLE_ENDPOINT_SERVICE,
      ),
      undefined,
    );
  });

  test("MF209's token check: a 401 is a rejected token; a 403 whose message has '401' in it is not", async () => {
    const stale = await tokenAccepted(kubeconfig(apiServer.url, apiServer.ca, 'stale'), 5_000);
    assert.match(stale ?? '', /^token rejected \(401\): /);
    const notAllowed = await tokenAccepted(kubeconfig(apiServer.url, apiServer.ca, 'reader'), 5_000);
    assert.ok(notAllowed && !/token rejected/.test(notAllowed), notAllowed);
    assert.match(notAllowed, /reader-401" cannot list resource "pods"/);
  });
});
