/**
 * The lab node agent's volumes. Locally: the kubelet's atomic volume layout
 * and its update rules, hostPath types, subPaths, the token refresh rule.
 * Against a real lab API server: TokenRequest tokens bound to a real Pod
 * (checked by the API server's own TokenReview), and a projected volume that
 * follows its ConfigMap and renews its token.
 */
import assert from 'node:assert/strict';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KubeConfig, type V1Pod, type V1Volume } from '@kubernetes/client-node';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { type ClusterClient, clientFromKubeconfig, type KubeObject } from '../../src/kube/client.js';
import { type KubeCluster, startKubeCluster } from '../../src/lab/kube.js';
import type { KnownImage } from '../../src/lab/node/images.js';
import {
  containerPlan,
  type FileItem,
  type MountPlan,
  type PodObjects,
} from '../../src/lab/node/pod-plan.js';
import {
  HostPathTypeError,
  type IssuedToken,
  needsRefresh,
  PodVolumes,
  TokenRequestError,
  type TokenRequestOf,
  TokenSource,
  VolumePathError,
  writeVolume,
} from '../../src/lab/node/volumes.js';
import { controlPlaneSkip, waitUntil } from '../helpers/lab.js';

const file = (path: string, content: string | Buffer, mode = 0o644): FileItem => ({
  path,
  content: Buffer.from(content),
  mode,
});
const mode = (p: string) => statSync(p).mode & 0o7777;
const DATA_DIR = /^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\w+$/;

/** A fresh directory per test, removed after the file's tests. */
const scratch = (() => {
  const root = mkdtempSync(join(tmpdir(), 'mf-vol-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  return () => {
    const d = join(root, String(++n));
    mkdirSync(d);
    return d;
  };
})();

describe('the atomic volume writer, as the kubelet lays out a ConfigMap/Secret volume', {
  timeout: 30_000,
}, () => {
  test('..data links to a timestamped data dir, each top-level name links into ..data; modes as given whatever the umask', () => {
    const dir = join(scratch(), 'vol');
    const umask = process.umask(0o077);
    try {
      assert.equal(
        writeVolume(dir, [file('a', 'A'), file('sub/deep/b', 'B', 0o600), file('c', 'C', 0o400)]),
        true,
      );
    } finally {
      process.umask(umask);
    }
    const names = readdirSync(dir).sort();
    const data = readlinkSync(join(dir, '..data'));
    assert.match(data, DATA_DIR);
    assert.deepEqual(names, [data, '..data', 'a', 'c', 'sub'].sort(), 'no ..data_tmp or other name left');
    assert.equal(readlinkSync(join(dir, 'a')), '..data/a');
    assert.equal(readlinkSync(join(dir, 'sub')), '..data/sub', 'a directory is linked at its top level only');
    assert.ok(lstatSync(join(dir, data, 'sub')).isDirectory());
    assert.equal(readFileSync(join(dir, 'sub/deep/b'), 'utf8'), 'B');
    assert.equal(mode(join(dir, 'a')), 0o644);
    assert.equal(mode(join(dir, 'sub/deep/b')), 0o600);
    assert.equal(mode(join(dir, 'c')), 0o400);
    for (const d of [dir, join(dir, data), join(dir, data, 'sub'), join(dir, data, 'sub/deep')])
      assert.equal(mode(d), 0o755, d);
  });

  test('the same files again: nothing written (same data dir, inodes, mtimes); a change: a new data dir, the old one gone', () => {
    const dir = scratch();
    const files = [file('a', 'A'), file('d/b', 'B')];
    writeVolume(dir, files);
    const data = readlinkSync(join(dir, '..data'));
    const before = [join(dir, data), join(dir, data, 'a'), join(dir, data, 'd/b'), join(dir, 'a')].map((p) =>
      lstatSync(p),
    );
    assert.equal(writeVolume(dir, [file('a', 'A'), file('d/b', 'B')]), false);
    assert.equal(readlinkSync(join(dir, '..data')), data);
    const again = [join(dir, data), join(dir, data, 'a'), join(dir, data, 'd/b'), join(dir, 'a')].map((p) =>
      lstatSync(p),
    );
    assert.deepEqual(
      again.map((s) => [s.ino, s.mtimeMs, s.ctimeMs]),
      before.map((s) => [s.ino, s.mtimeMs, s.ctimeMs]),
    );

    assert.equal(writeVolume(dir, [file('a', 'A2'), file('d/b', 'B')]), true);
    const next = readlinkSync(join(dir, '..data'));
    assert.notEqual(next, data);
    assert.equal(existsSync(join(dir, data)), false, 'the previous data dir is removed');
    assert.equal(readFileSync(join(dir, 'a'), 'utf8'), 'A2');
  });

  test('a name that goes away is removed, top-level or nested; then writing the same set is a no-op', () => {
    const dir = scratch();
    writeVolume(dir, [file('a', 'A'), file('b', 'B'), file('d/x', 'X'), file('d/y', 'Y')]);
    assert.equal(writeVolume(dir, [file('a', 'A'), file('d/x', 'X')]), true, 'd/y alone is gone: a write');
    assert.deepEqual(readdirSync(join(dir, 'd')), ['x']);
    assert.equal(existsSync(join(dir, 'b')), false);
    assert.throws(() => lstatSync(join(dir, 'b')), /ENOENT/, 'the visible link of b is gone too');
    assert.equal(writeVolume(dir, [file('a', 'A'), file('d/x', 'X')]), false);
    assert.equal(writeVolume(dir, []), true, 'every file gone');
    assert.deepEqual(readdirSync(dir).sort(), [readlinkSync(join(dir, '..data')), '..data'].sort());
  });

  test('a ..data whose data dir is gone (removed by hand): the next write starts afresh', () => {
    const dir = scratch();
    writeVolume(dir, [file('a', 'A')]);
    rmSync(join(dir, readlinkSync(join(dir, '..data'))), { recursive: true });
    assert.equal(writeVolume(dir, [file('a', 'A')]), true);
    assert.equal(readFileSync(join(dir, 'a'), 'utf8'), 'A');
  });

  test('a reader with the file open across an update still reads the old content, whole; a fresh open reads the new', () => {
    const dir = scratch();
    const old = Buffer.alloc(1 << 20, 'o');
    const fresh = Buffer.alloc(1 << 20, 'n');
    writeVolume(dir, [file('big', old)]);
    const fd = openSync(join(dir, 'big'), 'r');
    try {
      assert.equal(writeVolume(dir, [file('big', fresh)]), true);
      const got = Buffer.alloc(old.length + 1);
      let n = 0;
      for (let r = 1; r > 0 && n < got.length; n += r) r = readSync(fd, got, n, got.length - n, n);
      assert.equal(n, old.length, 'the old file, whole');
      assert.ok(got.subarray(0, n).equals(old), 'old bytes only');
    } finally {
      closeSync(fd);
    }
    assert.ok(readFileSync(join(dir, 'big')).equals(fresh));
  });

  test('a path that is absolute, climbs with .., or takes a name of the writer is refused, naming it, before anything is written', () => {
    const dir = scratch();
    writeVolume(dir, [file('a', 'A')]);
    const data = readlinkSync(join(dir, '..data'));
    const refused: Array<[string, RegExp]> = [
      ['../x', /must not contain '\.\.'/],
      ['a/../../x', /must not contain '\.\.'/],
      ['x/..', /must not contain '\.\.'/],
      ['/x', /must be a relative path/],
      ['..data/x', /must not start with '\.\.'/],
      ['..2020_01_01_00_00_00.1/x', /must not start with '\.\.'/],
      ['', /must not be empty/],
    ];
    for (const [p, reason] of refused)
      assert.throws(
        () => writeVolume(dir, [file('a', 'changed'), file(p, 'evil')]),
        (e: unknown) =>
          e instanceof VolumePathError &&
          e.path === p &&
          e.message.includes(`"${p}"`) &&
          reason.test(e.message),
        p,
      );
    assert.equal(readlinkSync(join(dir, '..data')), data);
    assert.equal(readFileSync(join(dir, 'a'), 'utf8'), 'A');
    assert.equal(existsSync(join(dir, '..', 'x')), false);
  });
});

describe("the kubelet's token refresh rule", { timeout: 30_000 }, () => {
  const issued = (ttlSeconds: number): IssuedToken => {
    const issuedAt = new Date('2030-01-01T00:00:00Z');
    return { token: 't', issuedAt, expiresAt: new Date(issuedAt.getTime() + ttlSeconds * 1000) };
  };
  const at = (t: IssuedToken, seconds: number) => new Date(t.issuedAt.getTime() + seconds * 1000);

  test('at 80% of its validity', () => {
    const t = issued(3600);
    assert.equal(needsRefresh(t, at(t, 0)), false);
    assert.equal(needsRefresh(t, at(t, 2879)), false);
    assert.equal(needsRefresh(t, at(t, 2880)), true);
  });

  test('at 24 hours when that comes first', () => {
    const t = issued(48 * 3600);
    assert.equal(needsRefresh(t, at(t, 24 * 3600 - 1)), false);
    assert.equal(needsRefresh(t, at(t, 24 * 3600)), true);
  });
});

describe('TokenSource: a request the API server does not answer', { timeout: 30_000 }, () => {
  let server: Server;
  const sockets = new Set<Socket>();
  before(async () => {
    // Accepts the connection and never speaks: not even the TLS handshake completes.
    server = createServer((s) => sockets.add(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });

  test('fails within its deadline, naming the service account', async () => {
    const kc = new KubeConfig();
    const port = (server.address() as { port: number }).port;
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `https://127.0.0.1:${port}`, skipTLSVerify: false }],
      users: [{ name: 'u', token: 'not-a-token' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const started = Date.now();
    await assert.rejects(
      new TokenSource(kc, 500).token({
        namespace: 'ns',
        serviceAccount: 'sa',
        audience: undefined,
        expirationSeconds: 600,
        pod: { name: 'p', uid: 'u' },
      }),
      (e: unknown) =>
        e instanceof TokenRequestError && /serviceaccount ns\/sa .*no answer within 500 ms/.test(e.message),
    );
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
  });
});

/** A pod as the API server stores one, with the given volumes, each mounted by container "c" at /v/<name>. */
function podWith(volumes: V1Volume[], subPaths: Record<string, string> = {}): V1Pod {
  return {
    metadata: { name: 'p', namespace: 'ns', uid: 'u-1' },
    spec: {
      serviceAccountName: 'sa',
      containers: [
        {
          name: 'c',
          volumeMounts: volumes.map((v) => ({
            name: v.name,
            mountPath: `/v/${v.name}`,
            ...(subPaths[v.name] ? { subPath: subPaths[v.name] } : {}),
          })),
        },
      ],
      volumes,
    },
  };
}

const IMAGE: KnownImage = {
  repository: 'example/app',
  entrypoint: ['/app'],
  cmd: [],
  workdir: '/',
  build: { component: 'x', programs: {} },
};
const noTokens = { token: () => Promise.reject(new Error('no token expected')) };
/** A node's directories, fresh. */
const nodeDirs = () => {
  const d = scratch();
  return { root: join(d, 'root'), spiffeSockets: join(d, 'spiffe'), claims: join(d, 'claims') };
};

describe('PodVolumes on the node (no API server)', { timeout: 30_000 }, () => {
  const plan = (pod: V1Pod, objects: PodObjects): MountPlan[] =>
    containerPlan(pod, pod.spec!.containers[0]!, IMAGE, objects).mounts;
  const none: PodObjects = { configMap: () => undefined, secret: () => undefined };

  test('hostPath under the node root: DirectoryOrCreate creates, Directory/File/Socket require, FileOrCreate makes an empty 0644 file', async () => {
    const node = nodeDirs();
    const podDir = scratch();
    const hostPath = async (path: string, type: string | undefined) => {
      const pod = podWith([{ name: 'h', hostPath: { path, ...(type ? { type } : {}) } }]);
      return (await new PodVolumes(pod, none, noTokens, node).materialize(podDir, plan(pod, none)))[0]!;
    };
    const sockets = await hostPath('/run/spire/agent-sockets', 'DirectoryOrCreate');
    assert.equal(sockets.hostPath, join(node.root, 'run/spire/agent-sockets'));
    assert.ok(statSync(sockets.hostPath).isDirectory());
    assert.equal(sockets.containerPath, '/v/h');
    assert.equal((await hostPath('/run/spire/agent-sockets', 'Directory')).hostPath, sockets.hostPath);
    assert.equal(
      (await hostPath('/../../etc', 'DirectoryOrCreate')).hostPath,
      join(node.root, 'etc'),
      '.. does not climb out of the node root',
    );
    const missing = join(node.root, 'nope');
    await assert.rejects(hostPath('/nope', 'Directory'), {
      name: 'HostPathTypeError',
      message: `hostPath type check failed: ${missing} is not a directory`,
    });
    assert.equal(existsSync(missing), false);
    await assert.rejects(
      hostPath('/run', 'File'),
      (e: unknown) => e instanceof HostPathTypeError && /is not a file$/.test(e.message),
    );
    const made = await hostPath('/run/flag', 'FileOrCreate');
    assert.ok(statSync(made.hostPath).isFile());
    assert.equal(statSync(made.hostPath).size, 0);
    assert.equal((await hostPath('/run/flag', 'File')).hostPath, made.hostPath);
    await assert.rejects(hostPath('/run/flag', 'Socket'), /is not a socket file/);
    await assert.rejects(hostPath('/nodir/flag', 'FileOrCreate'), /ENOENT/, 'its directory must exist');
    await assert.rejects(hostPath('/run', 'Directry'), /Directry is an invalid volume type/);
    const untyped = await hostPath('/var/absent', undefined);
    assert.equal(untyped.hostPath, join(node.root, 'var/absent'));
    assert.equal(existsSync(untyped.hostPath), false, 'no type: nothing checked, nothing made');
  });

  test("a projected token: asked for once per volume whatever the containers, for the pod's account and bound to it; renewed when due", async () => {
    const calls: TokenRequestOf[] = [];
    const issuedAt = new Date();
    const counting = {
      token: async (r: TokenRequestOf): Promise<IssuedToken> => {
        calls.push(r);
        return {
          token: `token-${calls.length}`,
          issuedAt,
          expiresAt: new Date(issuedAt.getTime() + 3600_000),
        };
      },
    };
    const pod = podWith([
      {
        name: 'tok',
        projected: { sources: [{ serviceAccountToken: { path: 'sa/token', audience: 'spire-server' } }] },
      },
    ]);
    pod.spec!.containers.push({ ...pod.spec!.containers[0]!, name: 'd' });
    const podDir = scratch();
    const volumes = new PodVolumes(pod, none, counting, nodeDirs());
    for (const c of pod.spec!.containers) {
      const [tok] = await volumes.materialize(podDir, containerPlan(pod, c, IMAGE, none).mounts);
      assert.equal(readFileSync(join(tok!.hostPath, 'sa/token'), 'utf8'), 'token-1');
    }
    assert.deepEqual(calls, [
      {
        namespace: 'ns',
        serviceAccount: 'sa',
        audience: 'spire-server',
        expirationSeconds: 3600,
        pod: { name: 'p', uid: 'u-1' },
      },
    ]);
    assert.equal(mode(join(podDir, 'volumes/tok/sa/token')), 0o644, "the projected volume's default mode");
    assert.deepEqual(await volumes.refresh(new Date(issuedAt.getTime() + 2879_000)), {
      changed: [],
      errors: [],
    });
    assert.equal(calls.length, 1, 'not due: not asked for');
    assert.deepEqual(await volumes.refresh(new Date(issuedAt.getTime() + 2880_000)), {
      changed: ['tok'],
      errors: [],
    });
    assert.equal(readFileSync(join(podDir, 'volumes/tok/sa/token'), 'utf8'), 'token-2');
  });

  test('refresh: a ConfigMap gone leaves the volume as it was and says why; back again, the volume follows it', async () => {
    let data: Record<string, string> | undefined = { greeting: 'hello' };
    const objects: PodObjects = {
      configMap: (n) => (n === 'cm' && data ? { data } : undefined),
      secret: () => undefined,
    };
    const pod = podWith([{ name: 'cfg', configMap: { name: 'cm' } }]);
    const podDir = scratch();
    const volumes = new PodVolumes(pod, objects, noTokens, nodeDirs());
    const [cfg] = await volumes.materialize(podDir, plan(pod, objects));
    assert.deepEqual(await volumes.refresh(), { changed: [], errors: [] });
    data = undefined;
    assert.deepEqual(await volumes.refresh(), {
      changed: [],
      errors: ['volume "cfg": configmap "cm" not found'],
    });
    assert.equal(readFileSync(join(cfg!.hostPath, 'greeting'), 'utf8'), 'hello');
    data = { other: 'x' };
    assert.deepEqual(await volumes.refresh(), { changed: ['cfg'], errors: [] });
    assert.deepEqual(
      readdirSync(cfg!.hostPath).filter((n) => !n.startsWith('..')),
      ['other'],
    );
  });

  test('emptyDir 0777, shared by the containers; CSI csi.spiffe.io is the node socket dir; a claim outlives its pod dir', async () => {
    const node = nodeDirs();
    const podDir = scratch();
    const pod = podWith([
      { name: 'scratch', emptyDir: {} },
      { name: 'spiffe', csi: { driver: 'csi.spiffe.io', readOnly: true } },
      { name: 'data', persistentVolumeClaim: { claimName: 'data-p-0' } },
    ]);
    const volumes = new PodVolumes(pod, none, noTokens, node);
    const [scratchDir, spiffe, data] = await volumes.materialize(podDir, plan(pod, none));
    assert.equal(scratchDir!.hostPath, join(podDir, 'volumes/scratch'));
    assert.equal(mode(scratchDir!.hostPath), 0o777);
    writeFileSync(join(scratchDir!.hostPath, 'kept'), 'x');
    const second = await volumes.materialize(podDir, plan(pod, none));
    assert.equal(second[0]!.hostPath, scratchDir!.hostPath);
    assert.equal(
      readFileSync(join(scratchDir!.hostPath, 'kept'), 'utf8'),
      'x',
      'a second container sees the same dir',
    );
    assert.equal(spiffe!.hostPath, node.spiffeSockets);
    assert.ok(statSync(node.spiffeSockets).isDirectory());
    assert.equal(data!.hostPath, join(node.claims, 'ns/data-p-0'));
    writeFileSync(join(data!.hostPath, 'db'), 'rows');
    rmSync(podDir, { recursive: true });
    const [, , again] = await new PodVolumes(pod, none, noTokens, node).materialize(
      scratch(),
      plan(pod, none),
    );
    assert.equal(
      readFileSync(join(again!.hostPath, 'db'), 'utf8'),
      'rows',
      'the next pod of the claim finds its data',
    );
    const other = podWith([{ name: 'x', csi: { driver: 'other.csi.example' } }]);
    await assert.rejects(
      new PodVolumes(other, none, noTokens, node).materialize(podDir, plan(other, none)),
      /CSI driver other.csi.example is not one the lab node provides/,
    );
  });

  test('subPath: a file of a ConfigMap volume resolves to the file of that moment, read-only; an emptyDir subPath is made; one leading out is refused', async () => {
    const node = nodeDirs();
    const podDir = scratch();
    let greeting = 'hello';
    const objects: PodObjects = {
      configMap: (n) => (n === 'cm' ? { data: { greeting } } : undefined),
      secret: () => undefined,
    };
    const pod = podWith(
      [
        { name: 'cfg', configMap: { name: 'cm' } },
        { name: 'logs', emptyDir: {} },
      ],
      { cfg: 'greeting', logs: 'app/one' },
    );
    const volumes = new PodVolumes(pod, objects, noTokens, node);
    const [cfg, logs] = await volumes.materialize(podDir, plan(pod, objects));
    assert.equal(readFileSync(cfg!.hostPath, 'utf8'), 'hello');
    assert.equal(cfg!.readOnly, true, 'API data is mounted read-only');
    const data = readlinkSync(join(podDir, 'volumes/cfg/..data'));
    assert.equal(
      cfg!.hostPath,
      join(podDir, 'volumes/cfg', data, 'greeting'),
      'the file, not the ..data link',
    );
    assert.equal(logs!.hostPath, join(podDir, 'volumes/logs/app/one'));
    assert.ok(statSync(logs!.hostPath).isDirectory());

    greeting = 'bonjour';
    assert.deepEqual(await volumes.refresh(), { changed: ['cfg'], errors: [] });
    assert.equal(readFileSync(join(podDir, 'volumes/cfg/greeting'), 'utf8'), 'bonjour');
    const restarted = await volumes.materialize(podDir, plan(pod, objects));
    assert.notEqual(restarted[0]!.hostPath, cfg!.hostPath, 'a container started later gets the new file');
    assert.equal(readFileSync(restarted[0]!.hostPath, 'utf8'), 'bonjour');

    const climbing = podWith([{ name: 'logs', emptyDir: {} }], { logs: '../cfg' });
    await assert.rejects(
      new PodVolumes(climbing, none, noTokens, node).materialize(podDir, plan(climbing, none)),
      (e: unknown) =>
        e instanceof VolumePathError && e.path === '../cfg' && /must not contain/.test(e.message),
    );
    symlinkSync('/etc', join(podDir, 'volumes/logs/out'));
    const escaping = podWith([{ name: 'logs', emptyDir: {} }], { logs: 'out' });
    await assert.rejects(
      new PodVolumes(escaping, none, noTokens, node).materialize(podDir, plan(escaping, none)),
      (e: unknown) =>
        e instanceof VolumePathError && e.path === 'out' && /leads out of the volume/.test(e.message),
    );
  });
});

const K8S = PROFILE_VERSIONS.current.kubernetes;
const skip = controlPlaneSkip(K8S);

interface Claims {
  aud: string[];
  iat: number;
  exp: number;
  sub: string;
  'kubernetes.io': { namespace: string; pod: { name: string; uid: string } };
}
const claimsOf = (token: string): Claims =>
  JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Claims;

describe(`volumes against a real Kubernetes ${K8S} API server`, { skip, timeout: 300_000 }, () => {
  const workdir = mkdtempSync(join(tmpdir(), 'mf-vol-kube-'));
  const NS = 'vol';
  let cluster: KubeCluster;
  let client: ClusterClient;
  let tokens: TokenSource;
  let pod: V1Pod;

  const apply = async (o: object) => (await client.apply(o as KubeObject)).object;
  const review = async (token: string, audiences?: string[]) =>
    (
      await client.review({
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        metadata: { name: '' },
        spec: { token, ...(audiences ? { audiences } : {}) },
      })
    ).status as {
      authenticated?: boolean;
      audiences?: string[];
      user?: { username: string };
      error?: string;
    };

  before(async () => {
    cluster = await startKubeCluster({ name: 'volumes', kubernetesVersion: K8S, workdir });
    client = clientFromKubeconfig(readFileSync(cluster.kubeconfig, 'utf8'));
    const kc = new KubeConfig();
    kc.loadFromFile(cluster.kubeconfig);
    tokens = new TokenSource(kc);
    await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    await apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'vol-sa', namespace: NS } });
    await apply({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'vol-cm', namespace: NS },
      data: { greeting: 'hello' },
    });
    pod = (await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'vol-pod', namespace: NS },
      spec: {
        serviceAccountName: 'vol-sa',
        // Only the volume under test: no injected kube-api-access volume.
        automountServiceAccountToken: false,
        containers: [
          {
            name: 'c',
            image: 'registry.invalid/app:1',
            volumeMounts: [{ name: 'cfg', mountPath: '/etc/cfg' }],
          },
        ],
        volumes: [
          {
            name: 'cfg',
            projected: {
              sources: [
                { configMap: { name: 'vol-cm' } },
                { serviceAccountToken: { path: 'token', audience: 'spire-server', expirationSeconds: 3600 } },
              ],
            },
          },
        ],
      },
    })) as unknown as V1Pod;
  });
  after(async () => {
    if (cluster?.pids().length) await cluster.stop().catch(() => {});
    rmSync(workdir, { recursive: true, force: true });
  });

  const request = (audience: string | undefined, expirationSeconds: number) =>
    tokens.token({
      namespace: NS,
      serviceAccount: 'vol-sa',
      audience,
      expirationSeconds,
      pod: { name: pod.metadata!.name!, uid: pod.metadata!.uid! },
    });

  test('TokenRequest: the audience and validity asked for, bound to the pod; TokenReview accepts it for that audience only', async () => {
    for (const seconds of [3600, 7200]) {
      const t = await request('spire-server', seconds);
      const c = claimsOf(t.token);
      assert.deepEqual(c.aud, ['spire-server']);
      assert.equal(c.exp - c.iat, seconds);
      assert.equal(t.expiresAt.getTime() - t.issuedAt.getTime(), seconds * 1000);
      assert.equal(c.sub, `system:serviceaccount:${NS}:vol-sa`);
      assert.deepEqual(c['kubernetes.io'].pod, { name: 'vol-pod', uid: pod.metadata!.uid });
      const ok = await review(t.token, ['spire-server']);
      assert.equal(ok.authenticated, true, ok.error);
      assert.equal(ok.user?.username, `system:serviceaccount:${NS}:vol-sa`);
      const other = await review(t.token, ['someone-else']);
      assert.notEqual(other.authenticated, true);
      assert.match(other.error ?? '', /audience/);
    }
  });

  test("TokenRequest with no audience: the API server's own audiences", async () => {
    const t = await request(undefined, 3600);
    const c = claimsOf(t.token);
    assert.ok(!c.aud.includes('spire-server'));
    // A review without audiences checks against the API server's: the token must carry exactly those.
    const r = await review(t.token);
    assert.equal(r.authenticated, true, r.error);
    assert.deepEqual(c.aud, r.audiences);
  });

  test('TokenRequest for a pod uid that is not the pod: refused', async () => {
    await assert.rejects(
      tokens.token({
        namespace: NS,
        serviceAccount: 'vol-sa',
        audience: 'spire-server',
        expirationSeconds: 3600,
        pod: { name: 'vol-pod', uid: '00000000-0000-4000-8000-000000000000' },
      }),
      (e: unknown) => e instanceof TokenRequestError && /vol-sa .*HTTP 409.*uid/i.test(e.message),
    );
  });

  test('a projected volume: ConfigMap and token written; refresh follows a ConfigMap update, renews a due token, and otherwise changes nothing', async () => {
    // The informer cache the agent would feed the getter from.
    const cache = new Map<string, KubeObject>();
    const sync = async () => {
      const cm = await client.get({ apiVersion: 'v1', kind: 'ConfigMap', name: 'vol-cm', namespace: NS });
      if (cm) cache.set('vol-cm', cm);
    };
    await sync();
    const objects: PodObjects = {
      configMap: (n) => cache.get(n) as { data?: Record<string, string> } | undefined,
      secret: () => undefined,
    };
    const podDir = scratch();
    const volumes = new PodVolumes(pod, objects, tokens, nodeDirs());
    const [cfg] = await volumes.materialize(
      podDir,
      containerPlan(pod, pod.spec!.containers[0]!, IMAGE, objects).mounts,
    );
    assert.equal(cfg!.containerPath, '/etc/cfg');
    assert.equal(readFileSync(join(cfg!.hostPath, 'greeting'), 'utf8'), 'hello');
    const first = readFileSync(join(cfg!.hostPath, 'token'), 'utf8');
    assert.deepEqual(claimsOf(first).aud, ['spire-server']);
    assert.equal(claimsOf(first)['kubernetes.io'].pod.uid, pod.metadata!.uid);
    assert.equal(mode(join(cfg!.hostPath, 'token')), 0o644, "the projected volume's default mode");
    assert.equal((await review(first, ['spire-server'])).authenticated, true);

    assert.deepEqual(await volumes.refresh(), { changed: [], errors: [] }, 'nothing changed');

    await apply({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'vol-cm', namespace: NS },
      data: { greeting: 'bonjour' },
    });
    await waitUntil(
      'the ConfigMap update reaches the cache',
      async () => {
        await sync();
        return (cache.get('vol-cm') as { data?: Record<string, string> }).data?.greeting === 'bonjour';
      },
      30_000,
    );
    assert.deepEqual(await volumes.refresh(), { changed: ['cfg'], errors: [] });
    assert.equal(readFileSync(join(cfg!.hostPath, 'greeting'), 'utf8'), 'bonjour');
    assert.equal(readFileSync(join(cfg!.hostPath, 'token'), 'utf8'), first, 'a token not due is kept');
    assert.deepEqual(await volumes.refresh(), { changed: [], errors: [] });

    // 80% of the hour later, the token is due: a new one from the API server, bound to the same pod.
    const due = new Date(claimsOf(first).iat * 1000 + 2880_000);
    assert.deepEqual(await volumes.refresh(due), { changed: ['cfg'], errors: [] });
    const renewed = readFileSync(join(cfg!.hostPath, 'token'), 'utf8');
    assert.notEqual(renewed, first);
    assert.equal(claimsOf(renewed)['kubernetes.io'].pod.uid, pod.metadata!.uid);
    assert.equal((await review(renewed, ['spire-server'])).authenticated, true);
  });
});
