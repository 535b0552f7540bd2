/**
 * `meshfed lab --pods simulated` (current profile) end to end, on real
 * programs: two kwok clusters of real Kubernetes 1.35 control planes, a lab
 * node agent per cluster and the lab load balancer; driven through the CLI
 * and the real kubectl. Before `meshfed up` no SPIRE or cert-manager runs
 * anywhere: a pod of an identity-plane image (SPIRE's server) is run for real
 * from the spec the API server stores, a data-plane image's (Istio's proxy)
 * is left to kwok. Needs root, as every lab does.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SpireServerCli } from '../../src/federation/spire-cli.js';
import { execFileBounded, podServerTransport } from '../../src/federation/transport.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { clientsFor } from '../../src/kube/client.js';
import { LAB_CERT_MANAGER_VERSION, LAB_SPIRE_CONTROLLER_MANAGER_VERSION } from '../../src/lab/controllers.js';
import { type LabState, type LabStatus, readLabState } from '../../src/lab/lab.js';
import { CGROUP_HIERARCHY } from '../../src/lab/node/container.js';
import { labNamespaces } from '../../src/lab/node/network.js';
import { labCgroup } from '../../src/lab/node/run.js';
import { processesUnder } from '../../src/lab/procfs.js';
import { parsePemBundle } from '../../src/spiffe/bundle.js';
import { fetchBundle } from '../../src/spiffe/endpoint.js';
import { runMeshfed } from '../helpers/cli.js';
import { labBin, labKubectl, refused, requireLabAsRoot, waitUntil } from '../helpers/lab.js';
import { root } from '../helpers/pki.js';
import { spireServerPod } from '../helpers/spire.js';

const V = PROFILE_VERSIONS.current;
const skip = requireLabAsRoot(
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
  const serverPod = () =>
    podServerTransport(clientsFor(state.kubeconfig, ['cluster-2']).get('cluster-2')!, {
      namespace: 'spire',
      name: 'spire-server-0',
    });

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
    // The control plane's garbage collector is paced for a shared machine (lab.ts CONTROL_PLANE_GC).
    const apiServers = processesUnder(dir).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'kube-apiserver';
      } catch {
        return false;
      }
    });
    assert.equal(apiServers.length, 2);
    for (const pid of apiServers) {
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      assert.ok(
        env.includes('GOGC=400') && env.includes('GOMEMLIMIT=900MiB'),
        env.filter((e) => /^GO/.test(e)).join(' '),
      );
    }
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

  test("a pod of SPIRE's server image runs for real from its stored spec, Istio's proxy image stays kwok's; a LoadBalancer Service reaches the real one and closes at once for the other", async () => {
    await kubectl('cluster-2', ['create', 'namespace', 'spire']);
    await kubectl(
      'cluster-2',
      ['apply', '-f', '-'],
      `${spireServerPod('bar.com', V.spire)}---
apiVersion: apps/v1
kind: Deployment
metadata: {name: gateway, namespace: spire}
spec:
  selector: {matchLabels: {app: gateway}}
  template:
    metadata: {labels: {app: gateway}}
    spec:
      containers:
      - name: istio-proxy
        image: docker.io/istio/proxyv2:${V.istio}
        ports: [{name: tls, containerPort: 15443}]
---
apiVersion: v1
kind: Service
metadata: {name: gateway, namespace: spire}
spec:
  type: LoadBalancer
  selector: {app: gateway}
  ports: [{name: tls, port: 15443}]
`,
    );
    for (const w of ['statefulset/spire-server', 'deployment/gateway'])
      await kubectl('cluster-2', ['-n', 'spire', 'rollout', 'status', w, '--timeout=90s']);
    // The node agent records the pods it runs, with their processes: the server's, not the gateway's.
    const realPods = async () => {
      const r = await runMeshfed(['lab', 'status', '--dir', dir, '-o', 'json']);
      return (JSON.parse(r.stdout) as LabStatus).clusters[1]!.realPods;
    };
    let pods: Awaited<ReturnType<typeof realPods>> = [];
    await waitUntil('the SPIRE server pod running for real', async () => {
      pods = await realPods();
      return pods.some((p) => p.pod === 'spire/spire-server-0' && p.pids['spire-server'] !== undefined);
    });
    assert.deepEqual(
      pods.map((p) => p.pod),
      ['spire/spire-server-0'],
    );
    const pid = pods[0]!.pids['spire-server']!;
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    assert.equal(
      argv[0],
      '/opt/spire/bin/spire-server',
      "the image's path, in the container's mount namespace",
    );
    assert.deepEqual(argv.slice(1), ['run', '-config', '/run/spire/config/server.conf']);
    assert.match(
      readFileSync(`/proc/${pid}/root/run/spire/config/server.conf`, 'utf8'),
      /trust_domain = "bar.com"/,
      "the ConfigMap's file, where the spec mounts it",
    );
    const gateway = JSON.parse(
      await kubectl('cluster-2', ['-n', 'spire', 'get', 'pods', '-l', 'app=gateway', '-o', 'json']),
    ) as { items: Array<{ status: { phase: string; podIP?: string } }> };
    assert.equal(gateway.items[0]?.status.phase, 'Running', "kwok's simulated pod runs");
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
    const own = await new SpireServerCli(serverPod()).ownBundle('bar.com');
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

  test('kubectl exec into the SPIRE server pod runs in its container, through the node agent: the federation CLI, stdin included', async () => {
    const transport = serverPod();
    const inPod = new SpireServerCli(transport);
    assert.equal(await inPod.healthy(), true);
    // bundle set reads the bundle from stdin: a foo.com bundle, handed to bar.com's server through the pod.
    const foo = parsePemBundle((await root()).pem, 'foo.com');
    await inPod.setBundle(foo);
    const held = await inPod.heldBundle('foo.com');
    assert.deepEqual(
      held?.x509Authorities.map((a) => a.fingerprintSha256),
      foo.x509Authorities.map((a) => a.fingerprintSha256),
    );
    // A command that exits non-zero in the container reaches the caller with its exit code and its stderr.
    const bad = await transport.run(['bundle', 'show', '-format', 'bogus'], { timeoutMs: 10_000 });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /bogus/);
  });

  test('at rest, the node agents and the load balancer list nothing: they watch, as a kubelet does; a change reaches a pod at once', async () => {
    // LIST requests the API servers served, by resource (their own metrics): WATCH requests are counted apart.
    const lists = async () => {
      const n = new Map<string, number>();
      for (const c of state.clusters)
        for (const line of (await kubectl(c.context, ['get', '--raw', '/metrics'])).split('\n')) {
          const m = /^apiserver_request_total\{(.*)\} (\S+)$/.exec(line);
          if (!m || !/verb="LIST"/.test(m[1]!)) continue;
          const resource = /resource="([^"]*)"/.exec(m[1]!)?.[1] ?? '';
          n.set(`${c.context} ${resource}`, (n.get(`${c.context} ${resource}`) ?? 0) + Number(m[2]));
        }
      return n;
    };
    const first = await lists();
    // A window of 3 passes of the node agents (a second each) and 6 of the load balancer.
    await new Promise((r) => setTimeout(r, 3_000));
    const then = await lists();
    const listed = [...then]
      .filter(([k, v]) => /(pods|services|configmaps|secrets|nodes)$/.test(k) && v > (first.get(k) ?? 0))
      .map(([k, v]) => `${k} +${v - (first.get(k) ?? 0)}`);
    assert.deepEqual(listed, [], 'lists at rest');
    // What the watches keep follows the cluster: a Service that stops selecting the SPIRE server's pod loses
    // its backend, and gets it back.
    const backend = async () => {
      const r = await runMeshfed(['lab', 'status', '--dir', dir, '-o', 'json']);
      return (JSON.parse(r.stdout) as LabStatus).clusters[1]!.loadBalancers.find(
        (l) => l.service === 'spire/spire-server-bundle-endpoint',
      )?.backend;
    };
    const select = (app: string) =>
      kubectl('cluster-2', [
        '-n',
        'spire',
        'patch',
        'service',
        'spire-server-bundle-endpoint',
        '--type=merge',
        '-p',
        JSON.stringify({ spec: { selector: { app } } }),
      ]);
    await select('nothing');
    await waitUntil('the Service without a backend', async () => (await backend()) === null, 20_000);
    await select('spire-server');
    await waitUntil(
      'the Service with its backend again',
      async () => /-8443\.sock$/.test((await backend()) ?? ''),
      20_000,
    );
  });

  test('lab status: healthy, SPIRE "-" where no server pod is; a stopped node agent is named, and lab up refuses to reuse the lab', async () => {
    const ok = await runMeshfed(['lab', 'status', '--dir', dir, '-o', 'json']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const s = JSON.parse(ok.stdout) as LabStatus;
    assert.equal(s.healthy, true);
    assert.deepEqual(
      s.clusters.map((c) => [
        c.name,
        c.apiServer.ready,
        `${c.nodes.ready}/${c.nodes.total}`,
        c.spireServer.installed,
        c.spireServer.healthy,
      ]),
      [
        ['cluster-1', true, '2/2', false, false],
        ['cluster-2', true, '2/2', true, true],
      ],
    );
    assert.ok(
      s.clusters[1]!.loadBalancers.some(
        (l) =>
          l.service === 'spire/spire-server-bundle-endpoint' && /^unix:.*-8443\.sock$/.test(l.backend ?? ''),
      ),
      JSON.stringify(s.clusters[1]!.loadBalancers),
    );
    const text = await runMeshfed(['lab', 'status', '--dir', dir]);
    assert.match(
      text.stdout,
      /cluster-1\s+foo\.com\s+ok https:\/\/127\.101\.\d+\.254:\d+\s+2\/2 Ready\s+-\s+1\/1 running/,
    );
    assert.match(
      text.stdout,
      /cluster-2\s+bar\.com\s+ok https:\/\/127\.102\.\d+\.254:\d+\s+2\/2 Ready\s+ok\s+1\/1 running/,
    );
    assert.match(text.stdout, /cluster-2: 1 real pod:\n {2}spire\/spire-server-0 \S+ spire-server=\d+/);
    const agent = state.clusters[1]!.daemons.find((d) => d.name === 'cluster-2 node agent')!;
    process.kill(agent.pid, 'SIGKILL');
    await waitUntil(
      'the node agent gone',
      async () =>
        !existsSync(`/proc/${agent.pid}/cmdline`) ||
        readFileSync(`/proc/${agent.pid}/cmdline`, 'utf8') === '',
    );
    const bad = await runMeshfed(['lab', 'status', '--dir', dir]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, new RegExp(`DOWN: cluster-2 node agent \\(pid ${agent.pid}\\)`));
    assert.match(bad.stdout, /NOT healthy/);
    const again = await runMeshfed(['lab', 'up', '--clusters', '2', '--dir', dir]);
    assert.equal(again.code, 1);
    assert.match(
      again.stderr,
      /some of its processes are gone \(cluster-2 node agent\): run `meshfed lab down --dir .*` first/,
    );
  });

  test('lab down, after a node agent was killed, leaves no process, port, cgroup, network namespace or mount behind, and removes the folder', async () => {
    const ports: Array<[string, number]> = [];
    for (const c of state.clusters) {
      const u = new URL(c.apiServer);
      ports.push([u.hostname, Number(u.port)]);
    }
    const lb = JSON.parse(readFileSync(join(dir, 'loadbalancer-status.json'), 'utf8')) as {
      clusters: Record<string, Array<{ address: string }>>;
    };
    for (const rows of Object.values(lb.clusters))
      for (const r of rows) ports.push([r.address.split(':')[0]!, Number(r.address.split(':')[1])]);
    assert.ok(ports.length >= 5);
    assert.ok(processesUnder(dir).length > 0);
    // The killed agent's pod (the SPIRE server) still runs: down must find it by its cgroup.
    assert.ok(existsSync(join(CGROUP_HIERARCHY, labCgroup(state.block))));
    const down = await runMeshfed(['lab', 'down', '--dir', dir]);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /lab down: stopped \d+ parts; removed/);
    assert.deepEqual(processesUnder(dir), []);
    for (const [h, p] of ports)
      assert.equal(await refused(h, p), true, `${h}:${p} still accepts connections`);
    assert.equal(existsSync(join(CGROUP_HIERARCHY, labCgroup(state.block))), false, 'the lab cgroup is left');
    assert.deepEqual(await labNamespaces(state.block), []);
    assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(dir), 'a mount under the lab is left');
    const left = readdirSync('/proc')
      .filter((e) => /^\d+$/.test(e))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes(`/${labCgroup(state.block)}/`);
        } catch {
          return false;
        }
      });
    assert.deepEqual(left, [], 'processes in the lab cgroup are left');
    assert.equal(existsSync(dir), false);
  });
});

describe('meshfed lab: bad input', () => {
  test('lab up on a machine without a program it needs: named with its use and package, nothing started', {
    skip,
  }, async () => {
    const parent = mkdtempSync(join(tmpdir(), 'mf-lab-noprog-'));
    const path = process.env.PATH;
    process.env.PATH = join(parent, 'empty');
    try {
      const r = await runMeshfed(['lab', 'up', '--clusters', '1', '--dir', join(parent, 'lab')], {
        cwd: parent,
      });
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /the lab needs programs this machine does not have: ip \(the pods' and nodes' network/,
      );
      assert.match(r.stderr, /iptables-restore \(Istio's sidecar capture in each pod\)/);
      assert.match(r.stderr, /apt-get install iproute2 util-linux mount iptables\) and run it again/);
      assert.equal(existsSync(join(parent, 'lab')), false);
    } finally {
      process.env.PATH = path;
      rmSync(parent, { recursive: true, force: true });
    }
  });

  test('is refused with exit 2 before anything starts', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'mf-lab-bad-'));
    try {
      for (const [args, message] of [
        [['up', '--clusters', '0'], /--clusters must be a whole number from 1 to 16, not "0"/],
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
