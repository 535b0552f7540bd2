/**
 * `meshfed lab --pods simulated` (current profile) end to end, on real programs: two kwok
 * clusters of real Kubernetes 1.35 control planes, the real cert-manager
 * controller, the real spire-controller-manager and a real SPIRE server per
 * cluster, and the lab load balancer; driven through the CLI and the real
 * kubectl.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SpireServerCli } from '../../src/federation/spire-cli.js';
import { execFileBounded, localServerTransport, podServerTransport } from '../../src/federation/transport.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { clientsFor, KubeApiError } from '../../src/kube/client.js';
import { LAB_CERT_MANAGER_VERSION, LAB_SPIRE_CONTROLLER_MANAGER_VERSION } from '../../src/lab/controllers.js';
import { type LabState, type LabStatus, readLabState } from '../../src/lab/lab.js';
import { processesUnder } from '../../src/lab/procfs.js';
import { fetchBundle } from '../../src/spiffe/endpoint.js';
import { runMeshfed } from '../helpers/cli.js';
import { labBin, labKubectl, refused, requireLab, waitUntil } from '../helpers/lab.js';

const V = PROFILE_VERSIONS.current;
const skip = requireLab(
  [
    `bin/kubernetes/${V.kubernetes}/kubectl`,
    `bin/spire/${V.spire}/spire-server`,
    `bin/kwok/0.8.0/stages/.done`,
    `bin/cert-manager/${LAB_CERT_MANAGER_VERSION}/cert-manager-controller`,
    `bin/cert-manager/${LAB_CERT_MANAGER_VERSION}/crds/.done`,
    `bin/spire-controller-manager/${LAB_SPIRE_CONTROLLER_MANAGER_VERSION}/spire-controller-manager`,
    `bin/spire-controller-manager/${LAB_SPIRE_CONTROLLER_MANAGER_VERSION}/crds/.done`,
  ],
  'npm run lab:build',
);

/** Reads whether the peer closes at once without a byte (a load balancer address with nothing real behind it). */
const closedAtOnce = (host: string, port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, host);
    let data = false;
    s.on('data', () => {
      data = true;
    });
    s.on('error', () => resolve(true));
    s.on('close', () => resolve(!data));
    s.setTimeout(3000, () => {
      s.destroy();
      resolve(false);
    });
  });

describe('meshfed lab (current profile, 2 clusters)', { skip, timeout: 600_000 }, () => {
  const parent = mkdtempSync(join(tmpdir(), 'mf-lab-'));
  const dir = join(parent, 'lab');
  const kubectlBin = labBin('kubernetes', V.kubernetes, 'kubectl');
  let state: LabState;
  const kubectl = (context: string, args: string[], stdin?: string) =>
    labKubectl(V.kubernetes, state.kubeconfig)(context, args, stdin);
  const server = (i: number) =>
    new SpireServerCli(
      localServerTransport(
        labBin('spire', V.spire, 'spire-server'),
        state.clusters[i]!.spireServerSocket,
        state.clusters[i]!.name,
      ),
    );

  before(async () => {
    const up = await runMeshfed(
      ['lab', 'up', '--clusters', '2', '--dir', dir, '--pod-ready-delay', '3s..3.5s', '--pods', 'simulated'],
      { cwd: parent },
    );
    assert.equal(up.code, 0, up.stderr + up.stdout);
    state = readLabState(dir)!;
    assert.match(up.stdout, /lab up in [\d.]+ s: 2 clusters \(cluster-1 foo\.com, cluster-2 bar\.com\)/);
    assert.match(up.stdout, new RegExp(`export KUBECONFIG=${state.kubeconfig}`));
  });
  after(async () => {
    if (existsSync(dir)) await runMeshfed(['lab', 'down', '--dir', dir]);
    rmSync(parent, { recursive: true, force: true });
  });

  test('the kubeconfig has a context per cluster, named like the default fleet; the real kubectl reaches each', async () => {
    assert.deepEqual(
      state.clusters.map((c) => [c.context, c.trustDomain]),
      [
        ['cluster-1', 'foo.com'],
        ['cluster-2', 'bar.com'],
      ],
    );
    const servers = new Set<string>();
    for (const c of state.clusters) {
      const v = JSON.parse(await kubectl(c.context, ['version', '-o', 'json'])) as {
        serverVersion: { gitVersion: string };
      };
      assert.equal(v.serverVersion.gitVersion, `v${V.kubernetes}`);
      const nodes = JSON.parse(await kubectl(c.context, ['get', 'nodes', '-o', 'json'])) as {
        items: Array<{ status: { conditions: Array<{ type: string; status: string }> } }>;
      };
      assert.equal(nodes.items.length, 2);
      assert.ok(
        nodes.items.every((n) => n.status.conditions.some((x) => x.type === 'Ready' && x.status === 'True')),
      );
      servers.add(c.apiServer);
    }
    assert.equal(servers.size, 2, 'each context reaches its own API server');
    const again = await runMeshfed(['lab', 'up', '--clusters', '2', '--dir', dir]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^lab already up: 2 clusters/);
    assert.deepEqual(readLabState(dir), state, 'nothing restarted');
  });

  test('a Deployment becomes Ready, its pods no sooner than the configured delay (3s..3.5s)', async () => {
    await kubectl('cluster-2', ['create', 'namespace', 'web']);
    await kubectl('cluster-2', [
      '-n',
      'web',
      'create',
      'deployment',
      'hello',
      '--image=registry.invalid/hello:1',
      '--replicas=2',
    ]);
    await kubectl('cluster-2', ['-n', 'web', 'rollout', 'status', 'deployment/hello', '--timeout=60s']);
    const pods = JSON.parse(await kubectl('cluster-2', ['-n', 'web', 'get', 'pods', '-o', 'json'])) as {
      items: Array<{
        status: { conditions: Array<{ type: string; status: string; lastTransitionTime: string }> };
      }>;
    };
    assert.equal(pods.items.length, 2);
    for (const p of pods.items) {
      const at = (t: string) => Date.parse(p.status.conditions.find((c) => c.type === t)!.lastTransitionTime);
      // Condition times have whole seconds: Ready comes at least 3 s after scheduling, so ≥ 2 s apart as printed.
      assert.ok(
        at('Ready') - at('PodScheduled') >= 2000,
        `Ready ${at('Ready') - at('PodScheduled')} ms after scheduling`,
      );
    }
  });

  test('the CRDs of the lab controllers are Established; deleting a namespace completes', async () => {
    const crds = JSON.parse(await kubectl('cluster-1', ['get', 'crd', '-o', 'json'])) as {
      items: Array<{
        metadata: { name: string };
        status: { conditions: Array<{ type: string; status: string }> };
      }>;
    };
    const names = crds.items.map((c) => c.metadata.name);
    for (const n of [
      'certificates.cert-manager.io',
      'clusterissuers.cert-manager.io',
      'clusterspiffeids.spire.spiffe.io',
      'clusterfederatedtrustdomains.spire.spiffe.io',
    ])
      assert.ok(names.includes(n), n);
    assert.ok(
      crds.items.every((c) =>
        c.status.conditions.some((x) => x.type === 'Established' && x.status === 'True'),
      ),
    );
    await kubectl('cluster-1', ['create', 'namespace', 'gone']);
    await kubectl('cluster-1', ['-n', 'gone', 'create', 'deployment', 'x', '--image=registry.invalid/x:1']);
    await kubectl('cluster-1', ['delete', 'namespace', 'gone', '--wait=true', '--timeout=120s']);
    const r = await execFileBounded(kubectlBin, [
      '--kubeconfig',
      state.kubeconfig,
      '--context',
      'cluster-1',
      'get',
      'namespace',
      'gone',
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /NotFound/);
  });

  test('the real cert-manager controller issues a self-signed root, then a certificate under it', async () => {
    await kubectl('cluster-1', ['create', 'namespace', 'cert-manager']);
    await kubectl(
      'cluster-1',
      ['apply', '-f', '-'],
      `apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: selfsigned}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: lab-root, namespace: cert-manager}
spec:
  isCA: true
  commonName: certmanager-ca
  secretName: lab-root
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: selfsigned, kind: ClusterIssuer}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: lab-root}
spec: {ca: {secretName: lab-root}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: leaf, namespace: default}
spec:
  commonName: leaf.lab.test
  dnsNames: [leaf.lab.test]
  secretName: leaf
  issuerRef: {name: lab-root, kind: ClusterIssuer}
`,
    );
    await kubectl('cluster-1', [
      '-n',
      'default',
      'wait',
      '--for=condition=Ready',
      'certificate/leaf',
      '--timeout=60s',
    ]);
    await kubectl('cluster-1', [
      '-n',
      'cert-manager',
      'wait',
      '--for=condition=Ready',
      'certificate/lab-root',
      '--timeout=60s',
    ]);
    const secret = JSON.parse(
      await kubectl('cluster-1', ['-n', 'default', 'get', 'secret', 'leaf', '-o', 'json']),
    ) as {
      data: Record<string, string>;
    };
    const leaf = new X509Certificate(Buffer.from(secret.data['tls.crt']!, 'base64'));
    const root = new X509Certificate(Buffer.from(secret.data['ca.crt']!, 'base64'));
    assert.match(root.subject, /CN=certmanager-ca/);
    assert.ok(root.ca);
    assert.ok(leaf.verify(root.publicKey), 'the leaf is signed by the root');
    assert.equal(leaf.checkIssued(root), true);
    assert.match(leaf.subjectAltName ?? '', /DNS:leaf\.lab\.test/);
  });

  test("a ClusterSPIFFEID makes the real spire-controller-manager write the pod's entry into the real SPIRE server; a ClusterFederatedTrustDomain, the relationship", async () => {
    const bar = state.clusters[1]!;
    await kubectl('cluster-1', ['create', 'namespace', 'demo']);
    await kubectl('cluster-1', ['-n', 'demo', 'create', 'serviceaccount', 'sleep']);
    await kubectl(
      'cluster-1',
      ['apply', '-f', '-'],
      `apiVersion: apps/v1
kind: Deployment
metadata: {name: sleep, namespace: demo}
spec:
  selector: {matchLabels: {app: sleep}}
  template:
    metadata: {labels: {app: sleep}}
    spec:
      serviceAccountName: sleep
      containers: [{name: sleep, image: registry.invalid/sleep:1}]
---
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: demo}
spec:
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"
  podSelector: {matchLabels: {app: sleep}}
---
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterFederatedTrustDomain
metadata: {name: bar-com}
spec:
  trustDomain: bar.com
  bundleEndpointURL: ${bar.bundleEndpoint}
  bundleEndpointProfile: {type: https_spiffe, endpointSPIFFEID: spiffe://bar.com/spire/server}
`,
    );
    await kubectl('cluster-1', ['-n', 'demo', 'rollout', 'status', 'deployment/sleep', '--timeout=60s']);
    const pod = JSON.parse(
      await kubectl('cluster-1', ['-n', 'demo', 'get', 'pods', '-l', 'app=sleep', '-o', 'json']),
    ) as {
      items: Array<{ metadata: { uid: string }; spec: { nodeName: string } }>;
    };
    const uid = pod.items[0]!.metadata.uid;
    const node = JSON.parse(
      await kubectl('cluster-1', ['get', 'node', pod.items[0]!.spec.nodeName, '-o', 'json']),
    ) as {
      metadata: { uid: string };
    };
    const foo = server(0);
    let entries: Array<{
      spiffe_id: { path: string; trust_domain: string };
      parent_id: { path: string };
      selectors: Array<{ type: string; value: string }>;
    }> = [];
    await waitUntil('the entry of the sleep pod', async () => {
      const r = await foo.transport.run(['entry', 'show', '-output', 'json']);
      entries = (JSON.parse(r.stdout) as { entries?: typeof entries }).entries ?? [];
      return entries.some((e) => e.selectors.some((s) => s.value === `pod-uid:${uid}`));
    });
    const e = entries.find((x) => x.selectors.some((s) => s.value === `pod-uid:${uid}`))!;
    assert.equal(e.spiffe_id.trust_domain, 'foo.com');
    assert.equal(e.spiffe_id.path, '/ns/demo/sa/sleep');
    assert.equal(e.parent_id.path, `/spire/agent/k8s_psat/cluster-1/${node.metadata.uid}`);
    await waitUntil('the relationship with bar.com', async () =>
      (await foo.relationships()).some((r) => r.trustDomain === 'bar.com'),
    );
    const rel = (await foo.relationships()).find((r) => r.trustDomain === 'bar.com')!;
    assert.equal(rel.bundleEndpointUrl, bar.bundleEndpoint);
    assert.equal(rel.endpointSpiffeId, 'spiffe://bar.com/spire/server');
  });

  test('a LoadBalancer Service of the SPIRE server gets a lab address that serves the real bundle endpoint; one with nothing real behind it closes', async () => {
    await kubectl('cluster-2', ['create', 'namespace', 'spire']);
    await kubectl(
      'cluster-2',
      ['apply', '-f', '-'],
      `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: spire-server, namespace: spire}
spec:
  serviceName: spire-server
  selector: {matchLabels: {app: spire-server}}
  template:
    metadata: {labels: {app: spire-server}}
    spec:
      containers:
      - name: spire-server
        image: ghcr.io/spiffe/spire-server:${V.spire}
        ports: [{name: grpc, containerPort: 8081}, {name: federation, containerPort: 8443}]
---
apiVersion: v1
kind: Service
metadata: {name: spire-server-bundle-endpoint, namespace: spire}
spec:
  type: LoadBalancer
  selector: {app: spire-server}
  ports: [{name: tcp-federation, port: 8443, targetPort: 8443}]
---
apiVersion: v1
kind: Service
metadata: {name: gateway, namespace: spire}
spec:
  type: LoadBalancer
  selector: {app: no-real-process}
  ports: [{name: tls, port: 15443}]
`,
    );
    await kubectl('cluster-2', [
      '-n',
      'spire',
      'rollout',
      'status',
      'statefulset/spire-server',
      '--timeout=60s',
    ]);
    const address = async (svc: string) =>
      (
        await kubectl('cluster-2', [
          '-n',
          'spire',
          'get',
          'service',
          svc,
          '-o',
          'jsonpath={.status.loadBalancer.ingress[0].ip}',
        ])
      ).trim();
    await waitUntil(
      'load balancer addresses',
      async () => (await address('spire-server-bundle-endpoint')) !== '' && (await address('gateway')) !== '',
    );
    const ip = await address('spire-server-bundle-endpoint');
    assert.match(ip, new RegExp(`^127\\.102\\.${state.block}\\.\\d+$`), "from cluster-2's pool");
    const own = await server(1).ownBundle('bar.com');
    let served: Awaited<ReturnType<typeof fetchBundle>> | undefined;
    await waitUntil('the bundle through the load balancer', async () => {
      served = await fetchBundle(`https://${ip}:8443`, 'bar.com', {
        type: 'https_spiffe',
        endpointSpiffeId: 'spiffe://bar.com/spire/server',
        bundle: own,
      }).catch(() => undefined);
      return served !== undefined;
    });
    assert.deepEqual(
      served!.x509Authorities.map((a) => a.fingerprintSha256),
      own.x509Authorities.map((a) => a.fingerprintSha256),
    );
    const gw = await address('gateway');
    assert.notEqual(gw, ip);
    await waitUntil('the gateway listener', async () => !(await refused(gw, 15443)));
    assert.equal(await closedAtOnce(gw, 15443), true, 'nothing real answers behind the gateway');
  });

  test('kubectl exec into the SPIRE server pod reaches the real server: the federation CLI through a pod exec, stdin included', async () => {
    const client = clientsFor(state.kubeconfig, ['cluster-2']).get('cluster-2')!;
    const transport = podServerTransport(client, { namespace: 'spire', name: 'spire-server-0' });
    const inPod = new SpireServerCli(transport);
    assert.equal(await inPod.healthy(), true);
    const served = await inPod.ownBundle('bar.com');
    const local = await server(1).ownBundle('bar.com');
    assert.deepEqual(
      served.x509Authorities.map((a) => a.fingerprintSha256),
      local.x509Authorities.map((a) => a.fingerprintSha256),
    );
    assert.deepEqual(
      (await inPod.relationships()).map((r) => r.trustDomain),
      (await server(1).relationships()).map((r) => r.trustDomain),
    );
    // bundle set reads the bundle from stdin: foo.com's bundle, handed to bar.com's server through the pod.
    const foo = await server(0).ownBundle('foo.com');
    await inPod.setBundle(foo);
    const held = await server(1).heldBundle('foo.com');
    assert.deepEqual(
      held?.x509Authorities.map((a) => a.fingerprintSha256),
      foo.x509Authorities.map((a) => a.fingerprintSha256),
    );
    // kwok's local exec reports a command that exits non-zero as its own
    // failure to run it (500 InternalError, "cmd wait: … exit status 1"),
    // with no exit code; a kubelet reports NonZeroExitCode with the code
    // (lab-real covers that). Either way the failure reaches the caller.
    await assert.rejects(
      transport.run(['bundle', 'show', '-format', 'bogus'], { timeoutMs: 10_000 }),
      (e: unknown) => e instanceof KubeApiError && e.status === 500 && /bogus: exit status 1/.test(e.message),
    );
  });

  test('lab status: healthy, with the load balancer table; a stopped controller is named, and lab up refuses to reuse the lab', async () => {
    const ok = await runMeshfed(['lab', 'status', '--dir', dir, '-o', 'json']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const s = JSON.parse(ok.stdout) as LabStatus;
    assert.equal(s.healthy, true);
    assert.deepEqual(
      s.clusters.map((c) => [
        c.name,
        c.apiServer.ready,
        `${c.nodes.ready}/${c.nodes.total}`,
        c.spireServer.healthy,
      ]),
      [
        ['cluster-1', true, '2/2', true],
        ['cluster-2', true, '2/2', true],
      ],
    );
    assert.ok(
      s.clusters[1]!.loadBalancers.some(
        (l) =>
          l.service === 'spire/spire-server-bundle-endpoint' &&
          l.backend === `${state.clusters[1]!.address}:18443`,
      ),
    );
    const text = await runMeshfed(['lab', 'status', '--dir', dir]);
    assert.match(
      text.stdout,
      /cluster-2\s+bar\.com\s+ok https:\/\/127\.0\.0\.1:\d+\s+2\/2 Ready\s+ok\s+3\/3 running/,
    );
    const scm = state.clusters[1]!.daemons.find((d) => d.name === 'cluster-2 spire-controller-manager')!;
    process.kill(scm.pid, 'SIGKILL');
    await waitUntil(
      'the controller gone',
      async () =>
        !existsSync(`/proc/${scm.pid}/cmdline`) || readFileSync(`/proc/${scm.pid}/cmdline`, 'utf8') === '',
    );
    const bad = await runMeshfed(['lab', 'status', '--dir', dir]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, new RegExp(`DOWN: cluster-2 spire-controller-manager \\(pid ${scm.pid}\\)`));
    assert.match(bad.stdout, /NOT healthy/);
    const again = await runMeshfed(['lab', 'up', '--clusters', '2', '--dir', dir]);
    assert.equal(again.code, 1);
    assert.match(
      again.stderr,
      /some of its processes are gone \(cluster-2 spire-controller-manager\): run `meshfed lab down --dir .*` first/,
    );
  });

  test('lab down leaves no process and no port behind, and removes the folder', async () => {
    const ports: Array<[string, number]> = [];
    for (const c of state.clusters) {
      const u = new URL(c.apiServer);
      ports.push([u.hostname, Number(u.port)], [c.address, 18443], [c.address, 18081]);
    }
    const lb = JSON.parse(readFileSync(join(dir, 'loadbalancer-status.json'), 'utf8')) as {
      clusters: Record<string, Array<{ address: string }>>;
    };
    for (const rows of Object.values(lb.clusters))
      for (const r of rows) ports.push([r.address.split(':')[0]!, Number(r.address.split(':')[1])]);
    assert.ok(ports.length >= 8);
    assert.ok(processesUnder(dir).length > 0);
    const down = await runMeshfed(['lab', 'down', '--dir', dir]);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /lab down: stopped \d+ parts; removed/);
    assert.deepEqual(processesUnder(dir), []);
    for (const [h, p] of ports)
      assert.equal(await refused(h, p), true, `${h}:${p} still accepts connections`);
    assert.equal(existsSync(dir), false);
  });
});

describe('meshfed lab: bad input', () => {
  test('is refused with exit 2 before anything starts', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'mf-lab-bad-'));
    try {
      for (const [args, message] of [
        [['up', '--clusters', '0'], /--clusters must be a whole number from 1 to 20, not "0"/],
        [['up', '--profile', 'edge'], /--profile must be current or seed, not "edge"/],
        [
          ['up', '--pod-ready-delay', '3s..1s'],
          /--pod-ready-delay "3s..1s" is not a duration like 2s or a range like 1s..3s/,
        ],
        [['frob'], /meshfed lab: give build, up, status or down, not "frob"/],
      ] as const) {
        const r = await runMeshfed(['lab', ...args, '--dir', join(parent, 'lab')], { cwd: parent });
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message);
        assert.equal(existsSync(join(parent, 'lab')), false);
      }
      const none = await runMeshfed(['lab', 'status', '--dir', join(parent, 'lab')]);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /no lab in .*: start one with `meshfed lab up`/);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });
});
