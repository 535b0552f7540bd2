/**
 * The lab node agent's plan of a container, on the SPIRE pods meshfed renders
 * (both profiles) and on table cases of Kubernetes' rules: ENTRYPOINT/CMD
 * against command/args, `$(VAR)` expansion, env and envFrom with valueFrom,
 * volumes of every kind the rendered pods use, probes with their defaults,
 * and the kubelet's CreateContainerConfigError wording.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { V1Container, V1Pod, V1PodTemplateSpec } from '@kubernetes/client-node';
import { defaultFleet } from '../../src/fleet/load.js';
import type { Profile } from '../../src/fleet/model.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { type KnownImage, knownImage, parseImage, REAL_REPOSITORIES } from '../../src/lab/node/images.js';
import {
  ContainerConfigError,
  containerEnv,
  containerPlan,
  expand,
  type PodObjects,
  parseQuantity,
  probePlan,
} from '../../src/lab/node/pod-plan.js';
import { renderCluster } from '../../src/render/index.js';
import type { KubeObject } from '../../src/render/types.js';

/** The rendered objects of cluster-1 of the default fleet of `profile` (peers' bundle endpoints known, so none is held back). */
function rendered(profile: Profile): KubeObject[] {
  const fleet = defaultFleet({ profile });
  const bundleEndpoints = Object.fromEntries(fleet.clusters.map((c, i) => [c.name, `192.0.2.${i + 1}:8443`]));
  return renderCluster(fleet, fleet.clusters[0]!.name, { bundleEndpoints }).phases.flatMap((p) => p.objects);
}

/**
 * A pod as the API server stores one made from a workload's template: name,
 * node and uid set, and, for a StatefulSet, a claim volume per
 * volumeClaimTemplate (as the StatefulSet controller adds them).
 */
function podOf(objects: KubeObject[], kind: string, name: string): V1Pod {
  const w = objects.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(w, `${kind} ${name} rendered`);
  const spec = (
    w as unknown as {
      spec: { template: V1PodTemplateSpec; volumeClaimTemplates?: Array<{ metadata: { name: string } }> };
    }
  ).spec;
  const podName = `${name}-0`;
  const claims = (spec.volumeClaimTemplates ?? []).map((t) => ({
    name: t.metadata.name,
    persistentVolumeClaim: { claimName: `${t.metadata.name}-${podName}` },
  }));
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      ...spec.template.metadata,
      name: podName,
      namespace: w.metadata.namespace,
      uid: 'c0ffee00-0000-4000-8000-000000000001',
    },
    spec: {
      ...spec.template.spec!,
      volumes: [...(spec.template.spec!.volumes ?? []), ...claims],
      nodeName: 'node-1',
    },
    status: { podIP: '10.0.0.7', hostIP: '10.0.0.1' },
  };
}

/** The pod's namespace's ConfigMaps and Secrets, from the rendered objects. */
function objectsOf(objects: KubeObject[], ns: string): PodObjects {
  const find = (kind: string, name: string) =>
    objects.find((o) => o.kind === kind && o.metadata.namespace === ns && o.metadata.name === name) as
      | { data?: Record<string, string> }
      | undefined;
  return { configMap: (n) => find('ConfigMap', n), secret: (n) => find('Secret', n) };
}

const container = (pod: V1Pod, name: string): V1Container => {
  const c = pod.spec!.containers.find((x) => x.name === name);
  assert.ok(c, `container ${name}`);
  return c;
};

for (const profile of ['current', 'seed'] as const) {
  const v = PROFILE_VERSIONS[profile];
  describe(`the rendered SPIRE pods (${profile} profile)`, () => {
    const objects = rendered(profile);
    const spireObjects = objectsOf(objects, 'spire');

    test("spire-server: the image's entrypoint with the rendered args, the rendered server.conf at /run/spire/config, the readiness probe", () => {
      const pod = podOf(objects, 'StatefulSet', 'spire-server');
      const c = container(pod, 'spire-server');
      const known = knownImage(c.image!);
      assert.ok(known, c.image);
      assert.equal(known.version, v.spire);
      const plan = containerPlan(pod, c, known.image, spireObjects);
      assert.deepEqual(plan.argv, [
        '/opt/spire/bin/spire-server',
        'run',
        '-config',
        '/run/spire/config/server.conf',
      ]);
      assert.equal(plan.workdir, '/opt/spire');
      const config = plan.mounts.find((m) => m.path === '/run/spire/config');
      assert.ok(config && config.source.kind === 'files' && config.readOnly);
      const conf = config.source.files.find((f) => f.path === 'server.conf');
      const cm = objects.find(
        (o) => o.kind === 'ConfigMap' && o.metadata.name === 'spire-server',
      ) as unknown as {
        data: Record<string, string>;
      };
      assert.equal(conf?.content.toString(), cm.data['server.conf']);
      assert.match(conf!.content.toString(), /UpstreamAuthority "cert-manager"/);
      assert.deepEqual(config.source.watch.configMaps, ['spire-server']);
      const data = plan.mounts.find((m) => m.path === '/run/spire/data');
      assert.deepEqual(data?.source, {
        kind: 'persistentVolumeClaim',
        claimName: 'spire-data-spire-server-0',
        readOnly: false,
      });
      assert.equal(plan.readiness?.action.kind, 'http');
      assert.deepEqual(
        {
          ...plan.readiness!.action,
          period: plan.readiness!.periodSeconds,
          failures: plan.readiness!.failureThreshold,
        },
        {
          kind: 'http',
          scheme: 'HTTP',
          host: undefined,
          port: 8080,
          path: '/ready',
          headers: [],
          period: plan.readiness!.periodSeconds,
          failures: 3,
        },
      );
    });

    test('spire-agent: MY_NODE_NAME from the downward API, the projected token for audience spire-server, the socket folder on the host', () => {
      const pod = podOf(objects, 'DaemonSet', 'spire-agent');
      const c = container(pod, 'spire-agent');
      const plan = containerPlan(pod, c, knownImage(c.image!)!.image, spireObjects);
      assert.deepEqual(plan.argv, [
        '/opt/spire/bin/spire-agent',
        'run',
        '-config',
        '/run/spire/config/agent.conf',
      ]);
      assert.deepEqual(new Map(plan.env).get('MY_NODE_NAME'), 'node-1');
      const token = plan.mounts.find((m) => m.path === '/var/run/secrets/tokens');
      assert.ok(token?.source.kind === 'files');
      assert.equal(token.source.tokens.length, 1);
      assert.equal(token.source.tokens[0]!.audience, 'spire-server');
      assert.ok(token.source.tokens[0]!.expirationSeconds >= 600);
      const sockets = plan.mounts.find((m) => m.path === '/run/secrets/workload-spiffe-uds');
      assert.deepEqual(sockets?.source, {
        kind: 'hostPath',
        path: '/run/spire/agent-sockets',
        type: 'DirectoryOrCreate',
      });
    });

    test('the registrar runs from its own image with the rendered config', () => {
      const isRegistrar = (o: KubeObject) =>
        (o.kind === 'StatefulSet' || o.kind === 'Deployment') &&
        JSON.stringify(o).includes(
          profile === 'seed' ? 'k8s-workload-registrar:' : 'spire-controller-manager:',
        );
      const w = objects.find(isRegistrar);
      assert.ok(w);
      const pod = podOf(objects, w.kind, w.metadata.name);
      const c = pod.spec!.containers.find((x) => /registrar|controller-manager/.test(x.image ?? ''))!;
      const plan = containerPlan(pod, c, knownImage(c.image!)!.image, spireObjects);
      if (profile === 'seed')
        assert.deepEqual(plan.argv.slice(0, 1), ['/opt/spire/bin/k8s-workload-registrar']);
      else assert.deepEqual(plan.argv.slice(0, 1), ['/spire-controller-manager']);
      assert.ok(
        plan.argv.some((a) => a.includes('/run/spire/registrar/')),
        plan.argv.join(' '),
      );
    });
  });
}

describe('the rendered demo apps run for real', () => {
  const fleet = defaultFleet({ profile: 'current' });
  const deployment = (cluster: number, name: string): V1Pod => {
    const objects = renderCluster(fleet, fleet.clusters[cluster]!.name, {
      bundleEndpoints: {},
    }).phases.flatMap((p) => p.objects);
    const d = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === name);
    assert.ok(d, `Deployment ${name} rendered in cluster ${cluster + 1}`);
    const t = (d as unknown as { spec: { template: V1PodTemplateSpec } }).spec.template;
    return {
      metadata: { ...t.metadata, name: `${name}-abc`, namespace: d.metadata.namespace, uid: 'u' },
      spec: { ...t.spec!, nodeName: 'node-1' },
      status: { podIP: '10.0.0.7' },
    };
  };

  test("helloworld v1 and v2: the lab's helloworld 1.0 build, gunicorn on [::]:5000 in /opt/microservices, SERVICE_VERSION", () => {
    for (const [cluster, v] of [
      [0, 'v1'],
      [1, 'v2'],
    ] as const) {
      const pod = deployment(cluster, `helloworld-${v}`);
      const c = pod.spec!.containers[0]!;
      const known = knownImage(c.image!);
      assert.ok(known, c.image);
      assert.equal(known.image.build?.component, 'helloworld');
      assert.equal(known.version, '1.0');
      assert.deepEqual(Object.fromEntries(known.image.env ?? []).SERVICE_VERSION, v, "the image's ENV");
      const plan = containerPlan(pod, c, known.image, {
        configMap: () => undefined,
        secret: () => undefined,
      });
      assert.deepEqual(plan.argv, ['gunicorn', '-b', '[::]:5000', 'app:app', '-k', 'gevent']);
      assert.equal(plan.workdir, '/opt/microservices');
      assert.deepEqual(plan.env, [['SERVICE_VERSION', v]], "the spec's env, which overrides the image's");
      assert.ok(REAL_REPOSITORIES.includes(known.image.repository));
    }
  });

  test("sleep: curl's image with this machine's programs, its spec's command; the image's entrypoint passes curl's arguments on", () => {
    const pod = deployment(0, 'sleep');
    const c = pod.spec!.containers[0]!;
    const known = knownImage(c.image!);
    assert.ok(known?.image.machine, c.image);
    assert.equal(known.image.build, undefined, 'no lab build');
    assert.ok(REAL_REPOSITORIES.includes(known.image.repository), "a pod of its own is the agent's");
    const plan = containerPlan(pod, c, known.image, { configMap: () => undefined, secret: () => undefined });
    assert.deepEqual(plan.argv, ['/bin/sleep', 'infinity']);
    assert.equal(plan.workdir, '/home/curl_user');
    // Without a command: /entrypoint.sh curl, and the script the lab writes at /entrypoint.sh.
    const bare = containerPlan(pod, { ...c, command: undefined }, known.image, {
      configMap: () => undefined,
      secret: () => undefined,
    });
    assert.deepEqual(bare.argv, ['/entrypoint.sh', 'curl']);
    const dir = mkdtempSync(join(tmpdir(), 'mf-curl-entry-'));
    try {
      const script = join(dir, 'entrypoint.sh');
      writeFileSync(script, known.image.machine.files!['/entrypoint.sh']!, { mode: 0o755 });
      assert.match(
        execFileSync(script, ['--version'], { encoding: 'utf8' }),
        /^curl \d/,
        "options are curl's",
      );
      assert.match(execFileSync(script, ['curl', '--version'], { encoding: 'utf8' }), /^curl \d/);
      assert.equal(
        execFileSync(script, ['echo', 'as is'], { encoding: 'utf8' }),
        'as is\n',
        'a command runs as it is',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Kubernetes rules, table by table', () => {
  test('$(VAR) expansion: defined, undefined, $$, unclosed, a lone $', () => {
    const vars = new Map([
      ['A', 'x'],
      ['EMPTY', ''],
    ]);
    const cases: Array<[string, string]> = [
      ['$(A)', 'x'],
      ['a$(A)b$(A)', 'axbx'],
      ['$(EMPTY)-', '-'],
      ['$(B)', '$(B)'],
      ['$$(A)', '$(A)'],
      ['$$', '$'],
      ['$(A', '$(A'],
      ['cost $5', 'cost $5'],
      ['end$', 'end$'],
    ];
    for (const [input, want] of cases) assert.equal(expand(input, vars), want, input);
  });

  const image: KnownImage = {
    repository: 'example/app',
    entrypoint: ['/app'],
    cmd: ['--default'],
    workdir: '/srv',
    build: { component: 'x', programs: {} },
  };
  const pod = (c: Partial<V1Container>): V1Pod => ({
    metadata: { name: 'p', namespace: 'ns', uid: 'u-1', labels: { app: 'web' } },
    spec: { nodeName: 'n1', serviceAccountName: 'sa', containers: [{ name: 'c', ...c }] },
    status: { podIP: '10.1.2.3' },
  });
  const none: PodObjects = { configMap: () => undefined, secret: () => undefined };
  const objs: PodObjects = {
    configMap: (n) =>
      n === 'cm'
        ? {
            data: { K: 'from-cm', PORT: '8080' },
            binaryData: { bin: Buffer.from([0, 1]).toString('base64') },
          }
        : undefined,
    secret: (n) => (n === 's' ? { data: { T: Buffer.from('s3cret').toString('base64') } } : undefined),
  };

  test('argv: command replaces ENTRYPOINT and drops CMD, args replace CMD, both expanded', () => {
    const argv = (c: Partial<V1Container>) => {
      const p = pod(c);
      const cc = p.spec!.containers[0]!;
      return containerPlan(p, cc, image, objs).argv;
    };
    assert.deepEqual(argv({}), ['/app', '--default']);
    assert.deepEqual(argv({ args: ['-v'] }), ['/app', '-v']);
    assert.deepEqual(argv({ command: ['/bin/sh'] }), ['/bin/sh']);
    assert.deepEqual(argv({ command: ['/bin/sh'], args: ['-c', 'x'] }), ['/bin/sh', '-c', 'x']);
    assert.deepEqual(
      argv({
        args: ['--port=$(PORT)', '$(NOPE)'],
        env: [{ name: 'PORT', valueFrom: { configMapKeyRef: { name: 'cm', key: 'PORT' } } }],
      }),
      ['/app', '--port=8080', '$(NOPE)'],
    );
  });

  test('env: envFrom first (with prefix), env after it and winning, values referring to earlier ones, every valueFrom', () => {
    const p = pod({
      envFrom: [{ configMapRef: { name: 'cm' }, prefix: 'CM_' }, { secretRef: { name: 's' } }],
      env: [
        { name: 'CM_K', value: 'overridden' },
        { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'REF', value: '$(POD).$(NS)' },
        { name: 'NS', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
        { name: 'APP', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
        { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
        { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
        { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 's', key: 'T' } } },
        { name: 'MAYBE', valueFrom: { configMapKeyRef: { name: 'gone', key: 'x', optional: true } } },
      ],
    });
    assert.deepEqual(containerEnv(p, p.spec!.containers[0]!, objs), [
      ['CM_K', 'overridden'],
      ['CM_PORT', '8080'],
      ['T', 's3cret'],
      ['POD', 'p'],
      // NS is defined after REF, so REF's reference to it stays as written (as on a real kubelet).
      ['REF', 'p.$(NS)'],
      ['NS', 'ns'],
      ['APP', 'web'],
      ['IP', '10.1.2.3'],
      ['NODE', 'n1'],
      ['TOKEN', 's3cret'],
    ]);
  });

  test("resourceFieldRef as the kubelet gives it: the quantity over the divisor, rounded up; a limit not set is the node's allocatable", () => {
    const p = pod({
      resources: { limits: { cpu: '2', memory: '1Gi' }, requests: { cpu: '100m' } },
      env: [
        { name: 'MEM', valueFrom: { resourceFieldRef: { resource: 'limits.memory', divisor: '1' } } },
        { name: 'MEM_MI', valueFrom: { resourceFieldRef: { resource: 'limits.memory', divisor: '1Mi' } } },
        { name: 'CPU', valueFrom: { resourceFieldRef: { resource: 'limits.cpu', divisor: '1' } } },
        { name: 'REQ_CPU', valueFrom: { resourceFieldRef: { resource: 'requests.cpu' } } },
        { name: 'REQ_MCPU', valueFrom: { resourceFieldRef: { resource: 'requests.cpu', divisor: '1m' } } },
        { name: 'REQ_MEM', valueFrom: { resourceFieldRef: { resource: 'requests.memory' } } },
        { name: 'ZERO_DIV', valueFrom: { resourceFieldRef: { resource: 'limits.cpu', divisor: '0' } } },
      ],
    });
    assert.deepEqual(containerEnv(p, p.spec!.containers[0]!, objs), [
      ['MEM', '1073741824'],
      ['MEM_MI', '1024'],
      ['CPU', '2'],
      ['REQ_CPU', '1'],
      ['REQ_MCPU', '100'],
      // No memory request: its limit.
      ['REQ_MEM', '1073741824'],
      // A 1.29 API server stores a divisor not given as 0; the kubelet divides by 1.
      ['ZERO_DIV', '2'],
    ]);
    const bare = pod({
      env: [{ name: 'M', valueFrom: { resourceFieldRef: { resource: 'limits.memory' } } }],
    });
    assert.deepEqual(containerEnv(bare, bare.spec!.containers[0]!, objs), [['M', String(totalmem())]]);
    assert.equal(parseQuantity('1.5Gi'), 1.5 * 2 ** 30);
    assert.equal(parseQuantity('1e3'), 1000);
    assert.equal(parseQuantity('12x'), undefined);
  });

  test("a container's user: its securityContext's, else the pod's; root when neither says", () => {
    const p = pod({ securityContext: { runAsUser: 1337, runAsGroup: 1337 } });
    assert.deepEqual(containerPlan(p, p.spec!.containers[0]!, image, none).user, { uid: 1337, gid: 1337 });
    const q = pod({});
    q.spec!.securityContext = { runAsUser: 1000 };
    assert.deepEqual(containerPlan(q, q.spec!.containers[0]!, image, none).user, { uid: 1000, gid: 0 });
    const r = pod({});
    assert.equal(containerPlan(r, r.spec!.containers[0]!, image, none).user, undefined);
  });

  test('what the kubelet refuses, in its words: a missing ConfigMap, Secret or key that is not optional; a field it cannot give', () => {
    const refuses = (c: Partial<V1Container>, message: RegExp) => {
      const p = pod(c);
      assert.throws(
        () => containerPlan(p, p.spec!.containers[0]!, image, objs),
        (e: unknown) => {
          assert.ok(e instanceof ContainerConfigError, String(e));
          assert.match(e.message, message);
          return true;
        },
      );
    };
    refuses(
      { env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'gone', key: 'x' } } }] },
      /^configmap "gone" not found$/,
    );
    refuses(
      { env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'cm', key: 'nope' } } }] },
      /^couldn't find key nope in ConfigMap ns\/cm$/,
    );
    refuses(
      { env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'gone', key: 'x' } } }] },
      /^secret "gone" not found$/,
    );
    refuses({ envFrom: [{ secretRef: { name: 'gone' } }] }, /^secret "gone" not found$/);
    refuses(
      { env: [{ name: 'X', valueFrom: { fieldRef: { fieldPath: 'spec.nope' } } }] },
      /unsupported fieldPath "spec.nope"/,
    );
    refuses({ volumeMounts: [{ name: 'absent', mountPath: '/x' }] }, /volume mount "absent" names no volume/);
    assert.deepEqual(
      containerEnv(
        pod({ envFrom: [{ configMapRef: { name: 'gone', optional: true } }] }),
        pod({}).spec!.containers[0]!,
        none,
      ),
      [],
    );
  });

  test('volumes: ConfigMap data and binaryData with items and modes, Secret decoded, emptyDir, CSI', () => {
    const p = pod({
      volumeMounts: [
        { name: 'cfg', mountPath: '/etc/cfg', readOnly: true },
        { name: 'sec', mountPath: '/etc/sec' },
        { name: 'scratch', mountPath: '/tmp' },
        { name: 'spiffe', mountPath: '/spiffe', readOnly: true },
      ],
    });
    p.spec!.volumes = [
      {
        name: 'cfg',
        configMap: {
          name: 'cm',
          items: [
            { key: 'K', path: 'k.txt', mode: 0o600 },
            { key: 'bin', path: 'b' },
          ],
        },
      },
      { name: 'sec', secret: { secretName: 's', defaultMode: 0o400 } },
      { name: 'scratch', emptyDir: {} },
      { name: 'spiffe', csi: { driver: 'csi.spiffe.io', readOnly: true } },
    ];
    const plan = containerPlan(p, p.spec!.containers[0]!, image, objs);
    const [cfg, sec, scratch, spiffe] = plan.mounts;
    assert.ok(cfg?.source.kind === 'files');
    assert.deepEqual(
      cfg.source.files.map((f) => [f.path, [...f.content], f.mode]),
      [
        ['k.txt', [...Buffer.from('from-cm')], 0o600],
        ['b', [0, 1], 0o644],
      ],
    );
    assert.ok(sec?.source.kind === 'files');
    assert.deepEqual(
      sec.source.files.map((f) => [f.path, f.content.toString(), f.mode]),
      [['T', 's3cret', 0o400]],
    );
    assert.deepEqual(sec.source.watch, { configMaps: [], secrets: ['s'] });
    assert.deepEqual(scratch?.source, { kind: 'emptyDir', volume: 'scratch' });
    assert.deepEqual(spiffe?.source, { kind: 'csi', driver: 'csi.spiffe.io', attributes: {} });
  });

  test("projected token files: the volume's defaultMode, 0600 once the pod has an fsGroup or one runAsUser for all", () => {
    const p = pod({ volumeMounts: [{ name: 'tok', mountPath: '/var/run/secrets/tokens' }] });
    p.spec!.volumes = [
      {
        name: 'tok',
        projected: { defaultMode: 0o440, sources: [{ serviceAccountToken: { path: 't', audience: 'a' } }] },
      },
    ];
    const mode = (q: V1Pod) => {
      const src = containerPlan(q, q.spec!.containers[0]!, image, none).mounts[0]!.source;
      assert.ok(src.kind === 'files');
      return src.tokens[0]!.mode;
    };
    const owner = (q: V1Pod) => {
      const src = containerPlan(q, q.spec!.containers[0]!, image, none).mounts[0]!.source;
      assert.ok(src.kind === 'files');
      return src.tokens[0]!.owner;
    };
    assert.equal(mode(p), 0o440);
    assert.equal(mode({ ...p, spec: { ...p.spec!, securityContext: { fsGroup: 1000 } } }), 0o600);
    const users = (a: number | undefined, b: number | undefined): V1Pod => ({
      ...p,
      spec: {
        ...p.spec!,
        securityContext: { runAsUser: a },
        containers: [p.spec!.containers[0]!, { name: 'd', securityContext: { runAsUser: b } }],
      },
    });
    assert.equal(mode(users(1000, undefined)), 0o600, "the pod's runAsUser is every container's");
    assert.equal(owner(users(1000, undefined)), 1000, "and the token file is that user's, who can read it");
    assert.equal(owner({ ...p, spec: { ...p.spec!, securityContext: { fsGroup: 1000 } } }), undefined);
    assert.equal(mode(users(1000, 1001)), 0o440, 'two users: the kubelet leaves the mode alone');
    assert.equal(mode(users(undefined, 1001)), 0o440, 'a container with no user: likewise');
  });

  test("the service-account admission's kube-api-access volume: token, the cluster CA, the namespace; downwardAPI volumes", () => {
    const p = pod({
      volumeMounts: [
        {
          name: 'kube-api-access-x1',
          mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
          readOnly: true,
        },
        { name: 'info', mountPath: '/etc/podinfo' },
      ],
    });
    p.metadata = { ...p.metadata, labels: { b: 'two', a: 'o"ne' }, namespace: 'spire' };
    p.spec!.volumes = [
      {
        name: 'kube-api-access-x1',
        projected: {
          defaultMode: 0o644,
          sources: [
            { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
            { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
            {
              downwardAPI: { items: [{ path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } }] },
            },
          ],
        },
      },
      {
        name: 'info',
        downwardAPI: {
          items: [
            { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
            { path: 'name', fieldRef: { fieldPath: 'metadata.name' }, mode: 0o400 },
          ],
        },
      },
    ];
    const withCa: PodObjects = {
      configMap: (n) => (n === 'kube-root-ca.crt' ? { data: { 'ca.crt': 'PEM' } } : undefined),
      secret: () => undefined,
    };
    const [access, info] = containerPlan(p, p.spec!.containers[0]!, image, withCa).mounts;
    assert.ok(access?.source.kind === 'files' && info?.source.kind === 'files');
    assert.deepEqual(
      access.source.files.map((f) => [f.path, f.content.toString()]),
      [
        ['ca.crt', 'PEM'],
        ['namespace', 'spire'],
      ],
    );
    assert.deepEqual(
      access.source.tokens.map((t) => [t.path, t.audience, t.expirationSeconds]),
      [['token', undefined, 3607]],
    );
    assert.deepEqual(
      info.source.files.map((f) => [f.path, f.content.toString(), f.mode]),
      [
        ['labels', 'a="o\\"ne"\nb="two"', 0o644],
        ['name', p.metadata!.name, 0o400],
      ],
    );
  });

  test('probes: the defaults, a named port, and a port that names nothing', () => {
    const c: V1Container = { name: 'c', ports: [{ name: 'health', containerPort: 9090 }] };
    assert.deepEqual(probePlan(c, { tcpSocket: { port: 'health' as unknown as object } } as never), {
      action: { kind: 'tcp', host: undefined, port: 9090 },
      initialDelaySeconds: 0,
      periodSeconds: 10,
      timeoutSeconds: 1,
      successThreshold: 1,
      failureThreshold: 3,
    });
    assert.deepEqual(probePlan(c, { exec: { command: ['true'] }, periodSeconds: 2 })?.periodSeconds, 2);
    assert.throws(
      () => probePlan(c, { httpGet: { port: 'nope' as unknown as object } } as never),
      /probe port "nope" is not a port of container c/,
    );
    assert.equal(probePlan(c, undefined), undefined);
  });

  test('image references: registry ports are not tags, digests are kept, unknown images are left to kwok', () => {
    assert.deepEqual(parseImage('localhost:5000/spire-server:1.2'), {
      repository: 'localhost:5000/spire-server',
      tag: '1.2',
      digest: undefined,
    });
    assert.deepEqual(parseImage('ghcr.io/spiffe/spire-agent@sha256:abc'), {
      repository: 'ghcr.io/spiffe/spire-agent',
      tag: undefined,
      digest: 'sha256:abc',
    });
    assert.equal(knownImage('ghcr.io/spiffe/spire-controller-manager:v0.7.0')?.version, '0.7.0');
    assert.equal(knownImage('docker.io/library/nginx:1.27'), undefined);
    assert.equal(knownImage('ghcr.io/spiffe/spire-server'), undefined, 'no tag, no version to run');
  });
});
