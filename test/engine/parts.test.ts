/**
 * The engine's pure parts: upstream manifests (offline, cache, checksums),
 * istioctl's output, apply order and removal order (down, prune), ownership
 * marks, plan diffs, the progress record.
 */
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  applyObjects,
  countsOf,
  leftToControllers,
  ownedBy,
  retrying,
  withMark,
} from '../../src/engine/apply.js';
import { BootstrapError, bootstrapUntilDone } from '../../src/engine/bootstrap.js';
import { identity, withoutEmptyCaBundles } from '../../src/engine/desired.js';
import { findIstioctl, generateIstio, splitIstioctlOutput } from '../../src/engine/istioctl.js';
import { applyWaves, mapLimit } from '../../src/engine/order.js';
import { comparable, objectDiff } from '../../src/engine/plan.js';
import { ProgressStore, unfinished } from '../../src/engine/progress.js';
import { readerRemoteSecret } from '../../src/engine/remote-secrets.js';
import { RemovalError, removalOrder, removeInOrder } from '../../src/engine/removal.js';
import { bootstrapFailureFor, PeerFailedError, storedForm, upError } from '../../src/engine/up.js';
import { mirrorPath, parseManifests, UpstreamError, UpstreamSource } from '../../src/engine/upstream.js';
import {
  BundleOwnerError,
  type FederationMember,
  fullMesh,
  PER_HOLDER_CONCURRENCY,
} from '../../src/federation/engine.js';
import { SpireServerCli } from '../../src/federation/spire-cli.js';
import { defaultFleet } from '../../src/fleet/load.js';
import {
  type ClusterClient,
  clientsFor,
  KindNotServedError,
  KubeApiError,
  type KubeObject,
} from '../../src/kube/client.js';
import { READER_TOKEN_SECRET } from '../../src/render/remote-secret.js';
import { type Bundle, bundleToJwks } from '../../src/spiffe/bundle.js';
import { type BundleEndpointServer, serveBundle } from '../../src/spiffe/endpoint.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { intermediate, root, svid } from '../helpers/pki.js';

const tmp = mkdtempSync(join(tmpdir(), 'mf-engine-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const CM = (name: string, extra: Partial<KubeObject> = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'spire' },
  ...extra,
});
const manifest = {
  name: 'cert-manager',
  version: '1.2.3',
  url: 'https://example.test/rel/v1.2.3/cert-manager.yaml',
};
const TEXT = 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: cert-manager\n---\n# only a comment\n';

describe('upstream manifests', () => {
  test('--offline reads the mirror path of the URL and never downloads; a missing file names the path to put it at', async () => {
    const dir = join(tmp, 'offline');
    const src = new UpstreamSource({
      offlineDir: dir,
      fetchText: () => Promise.reject(new Error('must not download')),
    });
    await assert.rejects(src.text(manifest), (e: Error) => {
      assert.ok(e instanceof UpstreamError);
      assert.match(e.message, /offline\/example\.test\/rel\/v1\.2\.3\/cert-manager\.yaml/);
      return true;
    });
    const p = mirrorPath(dir, manifest.url);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, TEXT);
    const objects = await new UpstreamSource({ offlineDir: dir }).objects(manifest);
    assert.deepEqual(
      objects.map((o) => `${o.kind}/${o.metadata.name}`),
      ['Namespace/cert-manager'],
    );
  });

  test('with a cache folder, the objects are parsed once: kept as JSON under the digest of the text, a broken cache file parsed again', async () => {
    const dir = join(tmp, 'offline-parsed');
    const cacheDir = join(tmp, 'parsed-cache');
    const p = mirrorPath(dir, manifest.url);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, TEXT);
    const names = async () =>
      (await new UpstreamSource({ offlineDir: dir }).objects(manifest, cacheDir)).map(
        (o) => `${o.kind}/${o.metadata.name}`,
      );
    assert.deepEqual(await names(), ['Namespace/cert-manager']);
    const files = readdirSync(cacheDir).filter((f) => f.endsWith('.json'));
    assert.equal(files.length, 1);
    const file = join(cacheDir, files[0]!);
    // What is read is the cache file: a changed one is what comes back.
    writeFileSync(
      file,
      JSON.stringify([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'from-cache' } }]),
    );
    assert.deepEqual(await names(), ['Namespace/from-cache']);
    writeFileSync(file, '{not json');
    assert.deepEqual(await names(), ['Namespace/cert-manager']);
    // Another text is another file.
    writeFileSync(p, TEXT.replace('cert-manager', 'other'));
    assert.deepEqual(await names(), ['Namespace/other']);
    assert.equal(readdirSync(cacheDir).filter((f) => f.endsWith('.json')).length, 2);
  });

  test('a SHA256SUMS beside the offline files is enforced', async () => {
    const dir = join(tmp, 'offline');
    writeFileSync(join(dir, 'SHA256SUMS'), `${'0'.repeat(64)}  example.test/rel/v1.2.3/cert-manager.yaml\n`);
    await assert.rejects(new UpstreamSource({ offlineDir: dir }).text(manifest), /sha256 .* expected 0{64}/);
    rmSync(join(dir, 'SHA256SUMS'));
  });

  test('a download is cached with its digest; a cached copy that changed is refused', async () => {
    const cacheDir = join(tmp, 'cache');
    let downloads = 0;
    const src = () =>
      new UpstreamSource({
        cacheDir,
        fetchText: async () => {
          downloads++;
          return TEXT;
        },
      });
    assert.equal(await src().text(manifest), TEXT);
    assert.equal(await src().text(manifest), TEXT);
    assert.equal(downloads, 1);
    writeFileSync(mirrorPath(cacheDir, manifest.url), `${TEXT}# tampered\n`);
    await assert.rejects(src().text(manifest), /has sha256 .* expected/);
  });

  test('no network and no --offline: the error says how to work offline', async () => {
    const src = new UpstreamSource({
      cacheDir: join(tmp, 'empty-cache'),
      fetchText: () => Promise.reject(new Error('getaddrinfo ENOTFOUND example.test')),
    });
    await assert.rejects(src.text(manifest), /cannot download .*ENOTFOUND.*--offline DIR/);
  });

  test('parseManifests flattens Lists and refuses a document that is not an object', () => {
    const list = parseManifests(
      'apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n',
      'x',
    );
    assert.equal(list[0]?.metadata.name, 'a');
    assert.throws(
      () => parseManifests('just: text\n', 'm.yaml'),
      /m\.yaml: a document is not a Kubernetes object/,
    );
  });
});

describe('istioctl output', () => {
  test('log lines are taken out of the YAML and kept with their level', () => {
    const out = [
      '2026-11-25T10:00:00.123456Z\twarn\tIstioOperator: something deprecated',
      'apiVersion: v1',
      'kind: ConfigMap',
      'metadata:',
      '  name: istio',
      '2026-11-25T10:00:00.2Z\tinfo\tdone',
    ].join('\n');
    const r = splitIstioctlOutput(out);
    assert.deepEqual(r.logs, [
      { level: 'warn', text: 'IstioOperator: something deprecated' },
      { level: 'info', text: 'done' },
    ]);
    assert.deepEqual(
      parseManifests(r.yaml, 'istioctl').map((o) => o.metadata.name),
      ['istio'],
    );
  });
  test("its version is asked once per binary: remembered under the file's identity, asked again when the binary changes", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshfed-istioctl-memo-'));
    try {
      const bin = join(dir, 'istioctl');
      const runs = join(dir, 'runs');
      // A stand-in istioctl that counts its runs and answers the version it was written with.
      const write = (version: string) =>
        writeFileSync(bin, `#!/bin/sh\necho run >> ${runs}\necho "client version: ${version}"\n`, {
          mode: 0o755,
        });
      const ran = () => (existsSync(runs) ? readFileSync(runs, 'utf8').split('\n').length - 1 : 0);
      write('1.30.0');
      const cacheDir = join(dir, 'cache');
      assert.deepEqual(await findIstioctl(bin, { cacheDir }), { path: bin, version: '1.30.0' });
      assert.deepEqual(await findIstioctl(bin, { cacheDir }), { path: bin, version: '1.30.0' });
      assert.equal(ran(), 1, 'the second look-up is answered from the memo');
      // Without a cache folder it is asked every time.
      await findIstioctl(bin);
      assert.equal(ran(), 2);
      // Another binary at the same path (a new build: other content, size and times) is asked again.
      rmSync(bin);
      write('1.31.0-new');
      assert.equal((await findIstioctl(bin, { cacheDir })).version, '1.31.0-new');
      assert.equal(ran(), 3);
      assert.equal((await findIstioctl(bin, { cacheDir })).version, '1.31.0-new');
      assert.equal(ran(), 3);
      // A memo that does not parse is asked past, and written again.
      const [memo] = readdirSync(join(cacheDir, 'istioctl'));
      writeFileSync(join(cacheDir, 'istioctl', memo!), '{not json');
      assert.equal((await findIstioctl(bin, { cacheDir })).version, '1.31.0-new');
      assert.equal(ran(), 4);
      assert.equal((await findIstioctl(bin, { cacheDir })).version, '1.31.0-new');
      assert.equal(ran(), 4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('a generation runs istioctl once per process, also when asked again before it ends (the prefetch, then the istio phase); a failed one is not kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-istioctl-gen-'));
  try {
    const bin = join(dir, 'istioctl');
    const runs = join(dir, 'runs');
    const fail = join(dir, 'fail');
    // A stand-in that takes a while, counts its runs, and prints a ConfigMap named after the operator it was given.
    writeFileSync(
      bin,
      `#!/bin/sh\necho run >> ${runs}\n[ -e ${fail} ] && { echo broken >&2; exit 1; }\nsleep 0.3\n` +
        `name=$(sed -n 's/^  name: //p' "$4" | head -1)\n` +
        'printf "apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: %s\\n  namespace: istio-system\\n" "$name"\n',
      { mode: 0o755 },
    );
    const ran = () => (existsSync(runs) ? readFileSync(runs, 'utf8').split('\n').length - 1 : 0);
    const istioctl = { path: bin, version: '1.30.0' };
    const iop = (name: string) => ({
      apiVersion: 'install.istio.io/v1alpha1',
      kind: 'IstioOperator',
      metadata: { name, namespace: 'istio-system' },
    });
    const [a, b] = await Promise.all([
      generateIstio(istioctl, iop('one')),
      generateIstio(istioctl, iop('one')),
    ]);
    assert.equal(ran(), 1, 'two asks while the first ran: one istioctl');
    assert.equal(a, b);
    assert.deepEqual(
      a.objects.map((o) => o.metadata.name),
      ['one'],
    );
    await generateIstio(istioctl, iop('one'));
    assert.equal(ran(), 1, 'asked again once done: from memory');
    assert.deepEqual(
      (await generateIstio(istioctl, iop('two'))).objects.map((o) => o.metadata.name),
      ['two'],
    );
    assert.equal(ran(), 2, 'another operator: its own run');
    writeFileSync(fail, '');
    await assert.rejects(generateIstio(istioctl, iop('three')), /manifest generate for three failed: broken/);
    rmSync(fail);
    assert.deepEqual(
      (await generateIstio(istioctl, iop('three'))).objects.map((o) => o.metadata.name),
      ['three'],
    );
    assert.equal(ran(), 4, 'a failed generation is run again when asked again');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('apply order', () => {
  test('namespaces and CRDs first, workloads after their config, custom resources after built-ins, webhooks last', () => {
    const kinds = [
      'ValidatingWebhookConfiguration',
      'Certificate',
      'Deployment',
      'ConfigMap',
      'CustomResourceDefinition',
      'Service',
      'Namespace',
      'ClusterRoleBinding',
      'ClusterRole',
    ];
    const waves = applyWaves(kinds.map((kind) => ({ kind })));
    assert.deepEqual(
      waves.map((w) => w.map((o) => o.kind)),
      [
        ['Namespace'],
        ['CustomResourceDefinition'],
        ['ConfigMap'],
        ['ClusterRole'],
        ['ClusterRoleBinding'],
        ['Service'],
        ['Deployment'],
        ['Certificate'],
        ['ValidatingWebhookConfiguration'],
      ],
    );
  });

  test('mapLimit keeps input order and never runs more than the limit at once', async () => {
    let running = 0;
    let most = 0;
    const r = await mapLimit([5, 1, 3, 2, 4], 2, async (n) => {
      running++;
      most = Math.max(most, running);
      await new Promise((res) => setTimeout(res, n * 3));
      running--;
      return n * 10;
    });
    assert.deepEqual(r, [50, 10, 30, 20, 40]);
    assert.equal(most, 2);
  });
});

const owned = (
  kind: string,
  name: string,
  phase: string,
  apiVersion = 'v1',
  namespace?: string,
): KubeObject => ({
  apiVersion,
  kind,
  metadata: {
    name,
    ...(namespace ? { namespace } : {}),
    labels: { 'meshfed.dev/phase': phase },
  },
});
type Ref = { kind: string; namespace?: string; name: string };
const refName = (r: Ref) => `${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`;
const named = (o: KubeObject) => refName({ kind: o.kind, ...o.metadata });

describe('removal order (down, and the prune of up)', () => {
  // What disabling sleep and switching the registrar off spire-controller-manager leave behind, shuffled.
  const stale = [
    owned('Namespace', 'sleep', 'namespaces'),
    owned('ServiceAccount', 'sleep', 'apps', 'v1', 'sleep'),
    owned(
      'CustomResourceDefinition',
      'clusterfederatedtrustdomains.spire.spiffe.io',
      'namespaces',
      'apiextensions.k8s.io/v1',
    ),
    owned('ConfigMap', 'spire-controller-manager', 'spire', 'v1', 'spire'),
    owned('Deployment', 'sleep', 'apps', 'apps/v1', 'sleep'),
    owned('ClusterFederatedTrustDomain', 'cluster-2', 'federation', 'spire.spiffe.io/v1alpha1'),
    owned(
      'ValidatingWebhookConfiguration',
      'spire-controller-manager-webhook',
      'spire',
      'admissionregistration.k8s.io/v1',
    ),
    owned('Service', 'sleep', 'apps', 'v1', 'sleep'),
    owned('Deployment', 'spire-controller-manager', 'spire', 'apps/v1', 'spire'),
    owned('ClusterRole', 'spire-controller-manager', 'spire', 'rbac.authorization.k8s.io/v1'),
    owned('ConfigMap', 'old', 'a-phase-of-another-version', 'v1', 'spire'),
  ];

  test('phases backwards; in a phase webhooks first, workloads before what they use, CRDs last; namespaces at the very end', () => {
    const groups = removalOrder(stale);
    assert.deepEqual(
      groups.map((g) => [g.phase ?? g.noun, g.waves.map((w) => w.map(named))]),
      [
        ['objects of no phase meshfed knows', [['ConfigMap spire/old']]],
        ['apps', [['Deployment sleep/sleep'], ['Service sleep/sleep'], ['ServiceAccount sleep/sleep']]],
        ['federation', [['ClusterFederatedTrustDomain cluster-2']]],
        [
          'spire',
          [
            ['ValidatingWebhookConfiguration spire-controller-manager-webhook'],
            ['Deployment spire/spire-controller-manager'],
            ['ClusterRole spire-controller-manager'],
            ['ConfigMap spire/spire-controller-manager'],
          ],
        ],
        ['namespaces', [['CustomResourceDefinition clusterfederatedtrustdomains.spire.spiffe.io']]],
        ['namespaces', [['Namespace sleep']]],
      ],
    );
    // The custom resource goes before its CRD, the workload before its ServiceAccount, both before the namespace.
    const flat = groups.flatMap((g) => g.waves.flat().map(named));
    const at = (n: string) => flat.indexOf(n);
    assert.ok(
      at('ClusterFederatedTrustDomain cluster-2') <
        at('CustomResourceDefinition clusterfederatedtrustdomains.spire.spiffe.io'),
    );
    assert.ok(at('Deployment sleep/sleep') < at('ServiceAccount sleep/sleep'));
    assert.ok(at('ServiceAccount sleep/sleep') < at('Namespace sleep'));
  });

  test('each wave is deleted and waited for until gone before the next one starts; what it deleted is returned in order', async () => {
    const live = new Map(stale.map((o) => [named(o), o]));
    const log: string[] = [];
    const going = new Map<string, number>();
    const client = {
      context: 'cluster-1',
      delete: async (ref: Ref) => {
        const n = refName(ref);
        // Already gone (another actor): not counted as deleted by this run.
        if (n === 'ConfigMap spire/old') {
          live.delete(n);
          return 'absent';
        }
        log.push(`delete ${n}`);
        going.set(n, 2); // gone after two more reads, as a pod's grace period would have it
        return 'deleted';
      },
      get: async (ref: Ref) => {
        const n = refName(ref);
        const left = going.get(n);
        if (left !== undefined) {
          if (left === 0) {
            live.delete(n);
            going.delete(n);
            log.push(`gone ${n}`);
          } else going.set(n, left - 1);
        }
        return live.get(n);
      },
    } as unknown as ClusterClient;
    const progress: string[] = [];
    const deleted = await removeInOrder(client, stale, {
      timeoutMs: 30_000,
      intervalMs: 20,
      verb: 'pruning',
      onProgress: (g, m) => progress.push(`${g.phase ?? g.noun}: ${m}`),
    });
    assert.deepEqual(
      deleted.map(named),
      stale
        .filter((o) => named(o) !== 'ConfigMap spire/old')
        .map(named)
        .sort((a, b) => log.indexOf(`delete ${a}`) - log.indexOf(`delete ${b}`)),
    );
    // Strictly alternating: no delete before everything deleted earlier is gone.
    for (const [i, line] of log.entries())
      if (line.startsWith('delete '))
        assert.equal(
          log.slice(0, i).filter((l) => l.startsWith('delete ')).length,
          log.slice(0, i).filter((l) => l.startsWith('gone ')).length,
          `${line} while an earlier object was not gone yet:\n${log.join('\n')}`,
        );
    assert.deepEqual(
      log.filter((l) => l.startsWith('delete ')).map((l) => l.slice(7)),
      removalOrder(stale)
        .flatMap((g) => g.waves.flat().map(named))
        .filter((n) => n !== 'ConfigMap spire/old'),
    );
    assert.ok(progress.includes('apps: pruning Deployment sleep/sleep'), progress.join('\n'));
    assert.ok(progress.includes('apps: waiting for Deployment sleep/sleep to be gone'), progress.join('\n'));
  });

  test('an object that stays (a finalizer) ends the wait with an error naming it, before anything after it is deleted', async () => {
    const deletes: string[] = [];
    const client = {
      context: 'cluster-1',
      delete: async (ref: { kind: string; name: string }) => {
        deletes.push(ref.kind);
        return 'deleted';
      },
      get: async (ref: { kind: string }) => (ref.kind === 'Deployment' ? stale[4] : undefined),
    } as unknown as ClusterClient;
    const objects = [stale[1]!, stale[4]!];
    await assert.rejects(
      removeInOrder(client, objects, { timeoutMs: 600, intervalMs: 50 }),
      (e: Error) =>
        e instanceof RemovalError &&
        /^cluster-1: waiting for Deployment sleep\/sleep to be gone after 1 s \(a finalizer/.test(
          e.message,
        ) &&
        (e as Error & { group?: { phase?: string } }).group?.phase === 'apps',
    );
    assert.deepEqual(deletes, ['Deployment']);
  });
});

describe('ownership', () => {
  test('an object meshfed creates gets its labels and created mark; one it finds gets neither', () => {
    const desired = CM('spire-agent', {
      metadata: { name: 'spire-agent', namespace: 'spire', labels: { app: 'x' } },
    });
    const created = withMark(desired, undefined, 'mesh', 'spire');
    assert.equal(created.metadata.labels?.['app.kubernetes.io/managed-by'], 'meshfed');
    assert.equal(created.metadata.labels?.['meshfed.dev/fleet'], 'mesh');
    assert.equal(created.metadata.labels?.['meshfed.dev/phase'], 'spire');
    assert.equal(created.metadata.labels?.app, 'x');
    assert.equal(created.metadata.annotations?.['meshfed.dev/created'], 'true');
    // Found already there (made by someone else): meshfed co-manages fields but claims nothing.
    const found = withMark(created, CM('spire-agent'), 'mesh', 'spire');
    assert.equal(found.metadata.labels?.['app.kubernetes.io/managed-by'], undefined);
    assert.equal(found.metadata.annotations, undefined);
    // Created by meshfed in an earlier run: still meshfed's.
    const again = withMark(desired, created, 'mesh', 'spire');
    assert.equal(again.metadata.annotations?.['meshfed.dev/created'], 'true');
  });

  test('ownedBy needs the labels of the fleet, the created mark and meshfed among the field managers', () => {
    const mine = withMark(CM('a'), undefined, 'mesh', 'spire');
    mine.metadata.managedFields = [{ manager: 'meshfed', operation: 'Apply' }];
    assert.equal(ownedBy(mine, 'mesh'), true);
    assert.equal(ownedBy(mine, 'other-fleet'), false);
    assert.equal(
      ownedBy({ ...mine, metadata: { ...mine.metadata, managedFields: [{ manager: 'kubectl' }] } }, 'mesh'),
      false,
    );
    assert.equal(ownedBy({ ...mine, metadata: { ...mine.metadata, annotations: {} } }, 'mesh'), false);
  });
});

describe('retries', () => {
  /** Runs `fn` under `retrying` with a long bound; how often it ran and how long it took. */
  const tried = async (error: () => unknown) => {
    let calls = 0;
    const t0 = Date.now();
    const e = await retrying(
      async () => {
        calls++;
        throw error();
      },
      { deadlineMs: 4_000 },
    ).catch((x: unknown) => x);
    return { calls, ms: Date.now() - t0, error: e };
  };

  test('an object the API server cannot process (server-side apply: HTTP 500 with no reason) fails at once, as answered', async () => {
    const answer = new KubeApiError(
      'cluster-1: apply ConfigMap spire/x: failed to create typed patch object (spire/x; /v1, Kind=ConfigMap): .bogus: field not declared in schema',
      500,
      undefined,
    );
    const r = await tried(() => answer);
    assert.equal(r.calls, 1);
    assert.ok(r.ms < 1_000, `${r.ms} ms`);
    assert.equal(r.error, answer);
  });

  test('422, 403 and a field-manager conflict fail at once; 503 and a webhook not up yet (500 InternalError) are tried again', async () => {
    for (const [status, reason] of [
      [422, 'Invalid'],
      [403, 'Forbidden'],
    ] as const)
      assert.equal((await tried(() => new KubeApiError('x', status, reason))).calls, 1, `${status}`);
    const conflict = new KubeApiError('x', 409, 'Conflict', [{ manager: 'kubectl', field: '.data.a' }]);
    assert.equal((await tried(() => conflict)).calls, 1);
    for (const [status, reason] of [
      [503, 'ServiceUnavailable'],
      [500, 'InternalError'],
    ] as const) {
      let calls = 0;
      await retrying(async () => {
        if (++calls < 3) throw new KubeApiError('x', status, reason);
      });
      assert.equal(calls, 3, `${status}`);
    }
  });

  test("a dry run's 404s are notes: a kind not served (its CRD not there yet) by the error's type, else the namespace", async () => {
    const client = {
      context: 'cluster-1',
      apply: async (o: KubeObject) => {
        if (o.kind === 'ClusterSPIFFEID')
          throw new KindNotServedError('cluster-1: no such kind', 404, 'NotFound');
        throw new KubeApiError(
          'cluster-1: apply ConfigMap spire/x: namespaces "spire" not found',
          404,
          'NotFound',
        );
      },
    } as unknown as ClusterClient;
    const crd = { apiVersion: 'spire.spiffe.io/v1alpha1', kind: 'ClusterSPIFFEID', metadata: { name: 'x' } };
    const r = await applyObjects(client, [CM('x'), crd], { fleet: 'mesh', phase: 'spire', dryRun: true });
    assert.deepEqual(r.map((a) => `${a.object.kind}: ${a.note}`).sort(), [
      'ClusterSPIFFEID: its CRD is not installed yet, so the server could not check it',
      'ConfigMap: its namespace is not there yet, so the server could not check it',
    ]);
  });

  test('an object the inventory read is applied onto without reading it again; one that changed since (a stale 409) is read and applied as any other', async () => {
    const calls: string[] = [];
    const inventory = (name: string) => ({
      ...CM(name),
      metadata: {
        ...CM(name).metadata,
        resourceVersion: '7',
        annotations: { 'meshfed.dev/created': 'true' },
      },
    });
    const client = {
      context: 'cluster-1',
      apply: async (
        obj: KubeObject,
        o: {
          live?: KubeObject;
          onlyOntoLive?: boolean;
          prepare?: (b: KubeObject | undefined) => KubeObject;
        } = {},
      ) => {
        const sent = o.prepare ? o.prepare(o.live) : obj;
        calls.push(
          `${obj.metadata.name}${o.onlyOntoLive ? ` onto ${o.live?.metadata.resourceVersion}` : ' read'}`,
        );
        if (o.onlyOntoLive && obj.metadata.name === 'changed')
          throw new KubeApiError('cluster-1: the object has been modified', 409, 'Conflict');
        assert.equal(sent.metadata.annotations?.['meshfed.dev/created'], 'true');
        return { object: sent, action: 'unchanged' as const };
      },
    } as unknown as ClusterClient;
    const known = new Map([inventory('same'), inventory('changed')].map((x) => [identity(x), x]));
    const r = await applyObjects(client, [CM('same'), CM('changed'), CM('new')], {
      fleet: 'mesh',
      phase: 'spire',
      known,
    });
    assert.equal(r.length, 3);
    assert.deepEqual(calls.sort(), ['changed onto 7', 'changed read', 'new read', 'same onto 7']);
    // Forced or dry runs read every object (force takes fields back; a dry run is told from the live object).
    calls.length = 0;
    await applyObjects(client, [CM('same')], { fleet: 'mesh', phase: 'spire', known, force: true });
    assert.deepEqual(calls, ['same read']);
  });

  test('an object the inventory read holding exactly what meshfed would apply is not sent (unchanged); drift in it is applied', async () => {
    // The client itself (kube/client.ts) against a stand-in API server: what it sends is what the server logs.
    const api = new FakeApiServer();
    const { kubeconfig, dir } = await api.start();
    after(() => {
      api.server.close();
      api.server.closeAllConnections();
      rmSync(dir, { recursive: true, force: true });
    });
    const client = clientsFor(kubeconfig, ['fake']).get('fake')!;
    const patches = () =>
      api.log.filter((l) => l.startsWith('PATCH')).map((l) => l.split(' ')[1]!.split('/').pop());
    const marks = {
      labels: {
        'app.kubernetes.io/managed-by': 'meshfed',
        'meshfed.dev/fleet': 'mesh',
        'meshfed.dev/phase': 'spire',
      },
      annotations: { 'meshfed.dev/created': 'true' },
    };
    // As the API server returns what meshfed applied: its fields in meshfed's entry, a field of the server's beside them.
    const stored = (name: string, value: string): KubeObject => ({
      ...CM(name, { data: { k: value, server: 'default' } }),
      metadata: {
        ...CM(name).metadata,
        ...marks,
        resourceVersion: '7',
        managedFields: [
          {
            manager: 'meshfed',
            operation: 'Apply',
            apiVersion: 'v1',
            fieldsType: 'FieldsV1',
            fieldsV1: {
              'f:data': { 'f:k': {} },
              'f:metadata': {
                'f:annotations': { 'f:meshfed.dev/created': {} },
                'f:labels': {
                  'f:app.kubernetes.io/managed-by': {},
                  'f:meshfed.dev/fleet': {},
                  'f:meshfed.dev/phase': {},
                },
              },
            },
          },
        ],
      },
    });
    const known = new Map([stored('same', 'v'), stored('drifted', 'edited')].map((x) => [identity(x), x]));
    const r = await applyObjects(
      client,
      [CM('same', { data: { k: 'v' } }), CM('drifted', { data: { k: 'v' } })],
      {
        fleet: 'mesh',
        phase: 'spire',
        known,
      },
    );
    assert.deepEqual(patches(), ['drifted']);
    assert.deepEqual(
      r.map((a) => [a.object.metadata.name, a.action]),
      [
        ['same', 'unchanged'],
        ['drifted', 'updated'],
      ],
    );
    // The same object in another phase would carry another phase label: sent.
    api.log = [];
    await applyObjects(client, [CM('same', { data: { k: 'v' } })], { fleet: 'mesh', phase: 'apps', known });
    assert.deepEqual(patches(), ['same']);
  });

  test('a retried remote secret counts its token Secret once, as created', async () => {
    const tokenSecret = { kind: 'Secret', name: READER_TOKEN_SECRET };
    let secretReads = 0;
    let applies = 0;
    const live = new Map<string, KubeObject>();
    const key = (r: { kind: string; name: string }) => `${r.kind}/${r.name}`;
    const client = {
      context: 'cluster-1',
      server: 'https://127.0.0.1:6443',
      get: async (ref: { kind: string; name: string }) => {
        if (ref.kind === 'ServiceAccount')
          return { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: ref.name } } as KubeObject;
        if (key(ref) === key(tokenSecret) && ++secretReads === 1)
          throw new KubeApiError(
            'cluster-1: get Secret: the server is shutting down',
            503,
            'ServiceUnavailable',
          );
        const o = live.get(key(ref));
        return o && { ...o, data: { token: Buffer.from('t').toString('base64'), 'ca.crt': 'Y2E=' } };
      },
      apply: async (obj: KubeObject, o: { prepare?: (b: KubeObject | undefined) => KubeObject } = {}) => {
        applies++;
        const before = live.get(key({ kind: obj.kind, name: obj.metadata.name }));
        const sent = o.prepare ? o.prepare(before) : obj;
        live.set(key({ kind: sent.kind, name: sent.metadata.name }), sent);
        return { object: sent, action: before ? ('unchanged' as const) : ('created' as const) };
      },
    } as unknown as ClusterClient;
    const r = await readerRemoteSecret(client, 'cluster-1', {
      fleet: 'mesh',
      phase: 'remote-secrets',
      timeoutMs: 10_000,
    });
    assert.equal(
      applies,
      2,
      'the first try applied the Secret, then failed reading it; the second applied it again',
    );
    assert.deepEqual(countsOf(r.applied), { created: 1, updated: 0, unchanged: 0 });
    assert.equal(r.secret.kind, 'Secret');
  });
});

describe('bootstrap in up', () => {
  const servers: BundleEndpointServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  /** A member whose spire-server answers through a recorded transport: its own bundle, nothing held, `bundle set` accepted. */
  const member = (name: string, td: string, own: Bundle, url: string, calls: string[]): FederationMember => ({
    name,
    trustDomain: td,
    server: new SpireServerCli({
      target: `${name}: spire/spire-server-0`,
      run: async (args) => {
        calls.push(`${name} ${args.slice(0, 2).join(' ')}`);
        return { code: 0, stdout: args[1] === 'show' ? bundleToJwks(own) : '', stderr: '' };
      },
    }),
    bundleEndpoint: { url, spiffeId: `spiffe://${td}/spire/server` },
  });

  test('the bundles of 8 clusters: each holder sets its 7 peers several at once, never more than PER_HOLDER_CONCURRENCY; every direction set once', async () => {
    const inFlight = new Map<string, number>();
    const most = new Map<string, number>();
    const sets: string[] = [];
    const members: FederationMember[] = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const name = `cluster-${i + 1}`;
        const td = `td${i + 1}.test`;
        const own: Bundle = {
          trustDomain: td,
          x509Authorities: [(await root()).cert],
          jwtAuthorities: new Map(),
        };
        return {
          name,
          trustDomain: td,
          server: new SpireServerCli({
            target: `${name}: spire/spire-server-0`,
            run: async (args, o) => {
              if (args[0] === 'bundle' && args[1] === 'set') {
                const n = (inFlight.get(name) ?? 0) + 1;
                inFlight.set(name, n);
                most.set(name, Math.max(most.get(name) ?? 0, n));
                await new Promise((r) => setTimeout(r, 30));
                inFlight.set(name, n - 1);
                const peer = /"spiffe:\/\/([^"]+)"/.exec(o?.stdin ?? '')?.[1] ?? JSON.stringify(args);
                sets.push(`${name} ← ${peer}`);
                return { code: 0, stdout: '', stderr: '' };
              }
              // bundle show of its own bundle; bundle list: nothing held yet.
              return { code: 0, stdout: args[1] === 'show' ? bundleToJwks(own) : '', stderr: '' };
            },
          }),
          bundleEndpoint: { url: 'https://127.0.0.1:1', spiffeId: `spiffe://${td}/spire/server` },
        };
      }),
    );
    await bootstrapUntilDone(members, fullMesh(members), { timeoutMs: 30_000 });
    assert.equal(sets.length, 56, sets.join('\n'));
    assert.equal(new Set(sets).size, 56, 'each direction once');
    for (const m of members) {
      const n = most.get(m.name) ?? 0;
      assert.ok(n > 1 && n <= PER_HOLDER_CONCURRENCY, `${m.name}: at most ${n} at once`);
    }
  });

  test("a bundle that is not its trust domain's (BundleOwnerError) ends the bootstrap at once, named, not retried", async () => {
    const fooRoot = await root();
    const strangerInt = await intermediate(await root(), 'foo.com');
    const leaf = await svid(strangerInt, 'spiffe://foo.com/spire/server');
    const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', leaf.keys.privateKey));
    // foo.com's endpoint presents a chain to another root than the bundle foo.com's server hands out.
    const endpoint = await serveBundle({
      certChainPem: `${leaf.pem}\n${strangerInt.pem}\n`,
      keyPem: `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END PRIVATE KEY-----\n`,
      body: '{}',
    });
    servers.push(endpoint);
    const bundle = (td: string): Bundle => ({
      trustDomain: td,
      x509Authorities: [fooRoot.cert],
      jwtAuthorities: new Map(),
    });
    const calls: string[] = [];
    const members = [
      member('cluster-1', 'foo.com', bundle('foo.com'), endpoint.url, calls),
      // bar.com's endpoint is not reachable from here: its bundle is used as read.
      member('cluster-2', 'bar.com', bundle('bar.com'), 'https://127.0.0.1:1', calls),
    ];
    const t0 = Date.now();
    const lines: string[] = [];
    await assert.rejects(
      bootstrapUntilDone(members, [['cluster-1', 'cluster-2']], {
        timeoutMs: 60_000,
        intervalMs: 500,
        progress: (l) => lines.push(l),
      }),
      (e: Error) => {
        assert.match(
          e.message,
          /not retried: cluster-2 ← cluster-1: the bundle read from cluster-1: spire\/spire-server-0 is not foo\.com's/,
        );
        assert.ok(e.cause instanceof BundleOwnerError, String(e.cause));
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 5_000, `${Date.now() - t0} ms`);
    assert.deepEqual(
      calls.filter((c) => c === 'cluster-1 bundle show'),
      ['cluster-1 bundle show'],
      'one read of the refused bundle, no second try',
    );
    assert.ok(!lines.some((l) => /retrying/.test(l)), lines.join('\n'));
  });

  /** A member whose spire-server fails the commands `fails` names ("bundle show") with that stderr; its endpoint does not answer. */
  const failing = async (name: string, td: string, fails: Record<string, string>, calls: string[]) => {
    const own: Bundle = {
      trustDomain: td,
      x509Authorities: [(await root()).cert],
      jwtAuthorities: new Map(),
    };
    const m = member(name, td, own, 'https://127.0.0.1:1', calls);
    const ok = m.server.transport.run;
    const transport = {
      target: m.server.transport.target,
      run: (args: string[], o: { stdin?: string }) => {
        const stderr = fails[args.slice(0, 2).join(' ')];
        return stderr === undefined ? ok(args, o) : Promise.resolve({ code: 1, stdout: '', stderr });
      },
    };
    return { ...m, server: new SpireServerCli(transport) };
  };
  const DENIED = 'Error: rpc error: code = PermissionDenied desc = the admin socket refuses this caller';

  test('a peer whose server fails is at fault once: its holders are stopped because of it, naming it, without its error', async () => {
    const calls: string[] = [];
    const members = [
      await failing('cluster-1', 'foo.com', {}, calls),
      await failing('cluster-2', 'bar.com', { 'bundle show': DENIED }, calls),
      await failing('cluster-3', 'baz.com', {}, calls),
    ];
    const names = members.map((m) => m.name);
    const e = await bootstrapUntilDone(members, fullMesh(members), {
      timeoutMs: 60_000,
      intervalMs: 100,
    }).then(
      () => assert.fail('the bootstrap succeeded'),
      (x: unknown) => x,
    );
    assert.ok(e instanceof BootstrapError, String(e));
    assert.deepEqual(
      e.failures.map((f) => [f.cluster, `${f.holder} ← ${f.peer}`]).sort(),
      [
        ['cluster-2', 'cluster-1 ← cluster-2'],
        ['cluster-2', 'cluster-3 ← cluster-2'],
      ],
      'both pairs that need bar.com fail, both filed under cluster-2',
    );
    assert.deepEqual(e.atFault, ['cluster-2']);
    // What each cluster's federation phase fails with, and the run's report.
    const perCluster = names.map((cluster) => ({
      cluster,
      phase: 'federation' as const,
      error: bootstrapFailureFor(cluster, e),
    }));
    assert.ok(!(perCluster[1]!.error instanceof PeerFailedError));
    for (const i of [0, 2]) {
      const stopped = perCluster[i]!.error;
      assert.ok(stopped instanceof PeerFailedError, `${names[i]}: ${stopped.message}`);
      assert.deepEqual(stopped.peers, ['cluster-2']);
    }
    const report = upError(perCluster);
    const lines = report.message.split('\n');
    assert.equal(lines.length, 3, report.message);
    assert.match(
      lines[0]!,
      /^cluster-2: federation: the bootstrap cannot succeed, not retried: cluster-1 ← cluster-2, cluster-3 ← cluster-2: cluster-2: spire\/spire-server-0: spire-server bundle show: .*PermissionDenied desc = the admin socket refuses this caller \(SPIRE answered PermissionDenied\)$/,
    );
    assert.deepEqual(lines.slice(1), [
      'cluster-1: federation: stopped because cluster-2 failed',
      'cluster-3: federation: stopped because cluster-2 failed',
    ]);
    assert.equal(report.message.split('the admin socket refuses').length - 1, 1, 'the error is told once');
    assert.deepEqual(
      report.failures.map((f) => [f.cluster, f.stoppedBy]),
      [
        ['cluster-2', undefined],
        ['cluster-1', ['cluster-2']],
        ['cluster-3', ['cluster-2']],
      ],
    );
  });

  test('a holder whose own server fails is at fault for its pair, not the peer whose bundle it could not take', async () => {
    const calls: string[] = [];
    const members = [
      await failing('cluster-1', 'foo.com', {}, calls),
      await failing('cluster-2', 'bar.com', { 'bundle list': DENIED }, calls),
    ];
    const e = await bootstrapUntilDone(members, fullMesh(members), {
      timeoutMs: 60_000,
      intervalMs: 100,
    }).then(
      () => assert.fail('the bootstrap succeeded'),
      (x: unknown) => x,
    );
    assert.ok(e instanceof BootstrapError, String(e));
    assert.deepEqual(
      e.failures.map((f) => [f.cluster, `${f.holder} ← ${f.peer}`]),
      [['cluster-2', 'cluster-2 ← cluster-1']],
    );
    assert.ok(bootstrapFailureFor('cluster-1', e) instanceof PeerFailedError);
    assert.match(bootstrapFailureFor('cluster-2', e).message, /cluster-2 ← cluster-1: .*bundle list/);
    assert.ok(
      calls.includes('cluster-1 bundle set'),
      'cluster-1 took cluster-2’s bundle: its pair is not failed',
    );
  });

  test('a failure of the bootstrap that no cluster is named for is every cluster’s own, as thrown', () => {
    const e = new Error('federation pair names "cluster-9", which is not a member');
    assert.equal(bootstrapFailureFor('cluster-1', e), e);
  });
});

describe('objects as applied', () => {
  test("an empty caBundle of a webhook is left to the install's controller; a set one is kept; a Secret is sent as stored", () => {
    const hook = withoutEmptyCaBundles({
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: 'istio-sidecar-injector' },
      webhooks: [
        { name: 'a', clientConfig: { caBundle: '', service: { name: 'istiod' } } },
        { name: 'b', clientConfig: { caBundle: 'LS0t' } },
      ],
    });
    assert.deepEqual(hook.webhooks, [
      { name: 'a', clientConfig: { service: { name: 'istiod' } } },
      { name: 'b', clientConfig: { caBundle: 'LS0t' } },
    ]);
    const secret = storedForm({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'istio-remote-secret-c1', namespace: 'istio-system' },
      stringData: { c1: 'kubeconfig text' },
    });
    assert.deepEqual(secret.data, { c1: Buffer.from('kubeconfig text').toString('base64') });
    assert.equal(secret.stringData, undefined);
    const cm = CM('x', { data: { caBundle: '' } });
    assert.equal(withoutEmptyCaBundles(cm), cm);
  });
});

describe('plan diffs', () => {
  test('server bookkeeping and status are not compared; a change shows as a unified diff', () => {
    const live = CM('a', {
      data: { k: 'old' },
      metadata: { name: 'a', namespace: 'spire', resourceVersion: '5', uid: 'u' },
    });
    const same = { ...live, metadata: { ...live.metadata, resourceVersion: '6' }, status: { x: 1 } };
    assert.equal(objectDiff('ConfigMap spire/a', live, same), undefined);
    const diff = objectDiff('ConfigMap spire/a', live, { ...live, data: { k: 'new' } });
    assert.match(diff ?? '', /^-\s+k: old$/m);
    assert.match(diff ?? '', /^\+\s+k: new$/m);
  });

  test('Secret values never appear, only that they changed', () => {
    const s = (token: string): KubeObject => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'r', namespace: 'istio-system' },
      data: { token },
    });
    assert.doesNotMatch(JSON.stringify(comparable(s('c2VjcmV0LXRva2Vu'))), /c2VjcmV0/);
    const diff =
      objectDiff('Secret istio-system/r', s('c2VjcmV0LXRva2Vu'), s('b3RoZXItc2VjcmV0LXRva2Vu')) ?? '';
    assert.match(diff, /secret, 16 characters/);
    assert.doesNotMatch(diff, /c2VjcmV0|b3RoZXI/);
  });
});

describe('progress record', () => {
  test('a run that stopped is described on the next start; a finished run is not', () => {
    const path = join(tmp, 'p', 'mesh.progress.json');
    const fleet = defaultFleet();
    const s1 = new ProgressStore(path);
    assert.equal(unfinished(s1.previous), undefined);
    s1.runStarted(fleet, false);
    s1.phaseDone('cluster-1', 'namespaces', { created: 3, updated: 0, unchanged: 0 });
    s1.phaseStarted('cluster-2', 'spire');
    s1.record({ bundleEndpoints: { 'cluster-1': '10.0.0.1:8443' } });
    const s2 = new ProgressStore(path);
    assert.equal(unfinished(s2.previous), 'cluster-2 in spire (started)');
    assert.equal(s2.previous?.bundleEndpoints['cluster-1'], '10.0.0.1:8443');
    s2.runStarted(fleet, false);
    s2.runDone();
    assert.equal(unfinished(new ProgressStore(path).previous), undefined);
    assert.ok(!existsSync(`${path}.tmp`));
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).fleet, fleet.name);
  });
});

test("istiod's validator failurePolicy: applied while meshfed owns it, left to istiod once istiod does", () => {
  const desired = {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name: 'istio-validator-istio-system' },
    webhooks: [{ name: 'rev.validation.istio.io', failurePolicy: 'Ignore', sideEffects: 'None' }],
  };
  const policyOwner = (manager: string) => ({
    ...desired,
    metadata: {
      name: desired.metadata.name,
      managedFields: [
        {
          manager,
          fieldsV1: { 'f:webhooks': { 'k:{"name":"rev.validation.istio.io"}': { 'f:failurePolicy': {} } } },
        },
      ],
    },
  });
  const policy = (o: unknown) => (o as typeof desired).webhooks[0]!.failurePolicy;
  assert.equal(policy(leftToControllers(desired, undefined)), 'Ignore', 'created with the install’s Ignore');
  assert.equal(policy(leftToControllers(desired, policyOwner('meshfed'))), 'Ignore', 'still meshfed’s: kept');
  assert.equal(
    policy(leftToControllers(desired, policyOwner('pilot-discovery'))),
    undefined,
    'istiod’s: left to it',
  );
  const other = { ...desired, metadata: { name: 'another' } };
  assert.equal(
    policy(leftToControllers(other, policyOwner('pilot-discovery'))),
    'Ignore',
    'only istiod’s validator',
  );
});
