/**
 * `meshfed lab up --pods real`, then `meshfed up --lab`: the lab runs what
 * meshfed renders. The SPIRE server StatefulSet and the agent DaemonSet run
 * as real processes from the pods the API server stores (the rendered
 * server.conf with the cert-manager UpstreamAuthority, k8s_psat, the
 * k8sbundle notifier; the agents with the k8s workload attestor and kubelet
 * verification on). Proved here, on the current profile with two clusters:
 * - each SPIRE server process is the lab's build running the rendered
 *   server.conf, read from inside its container;
 * - a workload pod of ours (the spire-agent image's CLI, a small real
 *   process) gets spiffe://<td>/ns/<ns>/sa/<sa> from its node's agent through
 *   the k8s attestor, over its csi.spiffe.io volume; the chain is SVID ←
 *   SPIRE intermediate ← the root the real cert-manager controller issued
 *   (the selfsigned-ca Secret's ca.crt); a process outside the pod's cgroup
 *   gets no identity;
 * - `kubectl exec` into the real containers runs there (working folder,
 *   files, exit code, stdin, cgroup), through the API server and the node
 *   agent's kubelet; logs and kwok's simulated pods still answer;
 * - federation, remote secrets and every check pass (`meshfed check`);
 * - a killed spire-server is restarted by its pod, which is not Ready
 *   meanwhile (status says so), and everything converges;
 * - a change to the rendered config rolls the StatefulSet and the new
 *   config is what runs;
 * - `lab down` leaves no process, cgroup, network namespace or mount.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { execFileBounded } from '../../src/federation/transport.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { KubeApiError } from '../../src/kube/client.js';
import { classify } from '../../src/kube/errors.js';
import { labBinDir } from '../../src/lab/binaries.js';
import type { LabStatus } from '../../src/lab/lab.js';
import { CGROUP_HIERARCHY, execArgv } from '../../src/lab/node/container.js';
import { labNamespaces } from '../../src/lab/node/network.js';
import { labCgroup } from '../../src/lab/node/run.js';
import { runMeshfed } from '../helpers/cli.js';
import { labSkip, startLab } from '../helpers/engine.js';
import { labBin, requireLab, runCommand, waitUntil } from '../helpers/lab.js';

// --pods real needs root: without it the file skips, and fails where the lab is required (CI).
const notRoot = process.getuid?.() === 0 ? undefined : 'needs root (--pods real: namespaces and cgroups)';
if (notRoot && process.env.MESHFED_REQUIRE_LAB === '1') throw new Error(notRoot);

interface Container {
  pid: number;
  root: string;
  workdir: string;
  cgroup: string;
}

const run = runCommand;

/** Every PEM certificate of a file, in order. */
const certs = (pem: string) =>
  (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (p) => new X509Certificate(p),
  );

for (const profile of ['current', 'seed'] as const) {
  const V = PROFILE_VERSIONS[profile];
  describe(`meshfed lab --pods real (${profile} profile): the lab runs what meshfed renders`, {
    skip: notRoot ?? labSkip(profile) ?? requireLab(['bin/helloworld/1.0/.stamp'], 'npm run lab:build'),
    timeout: 1_800_000,
  }, () => {
    let lab: Awaited<ReturnType<typeof startLab>>;
    const apis = new Map<string, CoreV1Api>();
    const api = (cluster: string) => apis.get(cluster)!;

    /** The containers the cluster's node agent records running, by "namespace/pod". */
    const recorded = (cluster: string): Map<string, Record<string, Container>> => {
      const c = lab.state.clusters.find((x) => x.name === cluster)!;
      const r = JSON.parse(readFileSync(join(c.agentDir!, 'pods.json'), 'utf8')) as {
        pods: Array<{ pod: string; containers: Record<string, Container> }>;
      };
      return new Map(r.pods.map((p) => [p.pod, p.containers]));
    };
    const server = (cluster: string) => recorded(cluster).get('spire/spire-server-0')?.['spire-server'];
    const serverPod = (cluster: string): Promise<V1Pod | undefined> =>
      api(cluster)
        .readNamespacedPod({ name: 'spire-server-0', namespace: 'spire' })
        .catch(() => undefined);
    const ready = (p: V1Pod | undefined) =>
      p?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

    before(async () => {
      lab = await startLab(profile, 2, ['--pods', 'real']);
      for (const c of lab.state.clusters) {
        const kc = new KubeConfig();
        kc.loadFromFile(c.kubeconfig);
        apis.set(c.name, kc.makeApiClient(CoreV1Api));
      }
      const up = await lab.meshfed(['up']);
      assert.equal(up.code, 0, `up on real pods failed:\n${up.stderr}`);
    });
    after(async () => lab?.stop());

    test('each SPIRE server is a real process of the lab build, running the rendered server.conf', async () => {
      const labStatus = JSON.parse(
        (await runMeshfed(['lab', 'status', '-o', 'json'], { cwd: lab.parent, env: lab.env })).stdout,
      ) as LabStatus;
      for (const c of lab.state.clusters) {
        const real = labStatus.clusters.find((x) => x.name === c.name)!.realPods!.map((p) => p.pod);
        assert.ok(real.includes('spire/spire-server-0'), `${c.name}: real pods ${real.join(', ')}`);
        assert.equal(
          real.filter((p) => p.startsWith('spire/spire-agent-')).length,
          2,
          `${c.name}: an agent per node`,
        );
        const s = server(c.name)!;
        const exe = statSync(`/proc/${s.pid}/exe`);
        const build = statSync(join(labBinDir('spire', V.spire), 'spire-server'));
        assert.deepEqual([exe.dev, exe.ino], [build.dev, build.ino], `${c.name}: not the lab's spire-server`);
        // What the process reads at /run/spire/config/server.conf is the rendered ConfigMap's.
        const running = readFileSync(`/proc/${s.pid}/root/run/spire/config/server.conf`, 'utf8');
        const cm = await api(c.name).readNamespacedConfigMap({ name: 'spire-server', namespace: 'spire' });
        assert.equal(running, cm.data!['server.conf']);
        assert.match(running, /UpstreamAuthority "cert-manager"/);
        assert.match(running, /NodeAttestor "k8s_psat"/);
      }
    });

    test("kubectl exec runs in the real container, through the API server and the node's kubelet; logs and kwok's pods still answer", async () => {
      const kubectl = labBin('kubernetes', V.kubernetes, 'kubectl');
      const k = (args: string[], stdin?: string) =>
        execFileBounded(kubectl, ['--kubeconfig', lab.state.kubeconfig, '--context', 'cluster-1', ...args], {
          timeoutMs: 60_000,
          ...(stdin !== undefined ? { stdin } : {}),
        });
      // In the spire-server container: its working folder (the image's), its config, the exit code.
      const inServer = await k([
        '-n',
        'spire',
        'exec',
        'spire-server-0',
        '-c',
        'spire-server',
        '--',
        'sh',
        '-c',
        'pwd; cat /run/spire/config/server.conf | grep -c UpstreamAuthority; echo to-stderr >&2; exit 7',
      ]);
      assert.equal(inServer.code, 7, inServer.stderr);
      assert.equal(inServer.stdout, '/opt/spire\n1\n');
      assert.match(inServer.stderr, /to-stderr/);
      // The SPIRE CLI the engine uses, against the real server.
      const health = await k([
        '-n',
        'spire',
        'exec',
        'spire-server-0',
        '-c',
        'spire-server',
        '--',
        'bin/spire-server',
        'healthcheck',
      ]);
      assert.equal(health.code, 0, health.stderr);
      assert.match(health.stdout, /Server is healthy/);
      // stdin reaches the command and ends.
      const echo = await k(
        ['-n', 'spire', 'exec', '-i', 'spire-server-0', '-c', 'spire-server', '--', 'cat'],
        'through stdin\n',
      );
      assert.equal(echo.stdout, 'through stdin\n', echo.stderr);
      // In a spire-agent container: the exec'd process is in that container's cgroup (as a runtime's exec).
      const agent = [...recorded('cluster-1')].find(([pod]) => pod.startsWith('spire/spire-agent-'))!;
      const cg = await k([
        '-n',
        'spire',
        'exec',
        agent[0].split('/')[1]!,
        '-c',
        'spire-agent',
        '--',
        'cat',
        '/proc/self/cgroup',
      ]);
      assert.equal(cg.code, 0, cg.stderr);
      assert.ok(
        cg.stdout.split('\n').some((l) => l.endsWith(`:pids:/${agent[1]['spire-agent']!.cgroup}`)),
        `not in the container's cgroup ${agent[1]['spire-agent']!.cgroup}:\n${cg.stdout}`,
      );
      // Logs of a real container, passed on to kwok (which reads the agent's log files).
      const logs = await k(['-n', 'spire', 'logs', 'spire-server-0', '-c', 'spire-server', '--tail', '50']);
      assert.equal(logs.code, 0, logs.stderr);
      assert.match(logs.stdout, /level=/);
      // A pod kwok simulates (an image the lab does not know): its exec is passed on to kwok, which has nothing to run there.
      const made = await k([
        '-n',
        'default',
        'run',
        'kwok-only',
        '--image=docker.io/library/nginx:1.27',
        '--restart=Never',
      ]);
      assert.equal(made.code, 0, made.stderr);
      const end = Date.now() + 30_000;
      let phase = '';
      while (phase !== 'Running' && Date.now() < end) {
        phase = (await k(['-n', 'default', 'get', 'pod', 'kwok-only', '-o', 'jsonpath={.status.phase}']))
          .stdout;
        if (phase !== 'Running') await new Promise((r) => setTimeout(r, 500));
      }
      assert.equal(phase, 'Running', "kwok's pod never ran");
      const sim = await k(['-n', 'default', 'exec', 'kwok-only', '--', 'true']);
      assert.notEqual(sim.code, 0);
      assert.match(sim.stderr, /no exec found/);
    });

    // The demo apps (docs/lab.md): helloworld is Istio's sample app (gunicorn with gevent, the lab's
    // helloworld build) and sleep curl's image with this machine's curl; both are the node agent's pods.
    test('the demo apps are real: sleep curls helloworld, which answers with its version and pod name', async () => {
      const kubectl = labBin('kubernetes', V.kubernetes, 'kubectl');
      const labStatus = JSON.parse(
        (await runMeshfed(['lab', 'status', '-o', 'json'], { cwd: lab.parent, env: lab.env })).stdout,
      ) as LabStatus;
      for (const [i, c] of lab.state.clusters.entries()) {
        const k = (args: string[]) =>
          execFileBounded(kubectl, ['--kubeconfig', lab.state.kubeconfig, '--context', c.context, ...args], {
            timeoutMs: 60_000,
          });
        const version = `v${i + 1}`;
        const real = labStatus.clusters.find((x) => x.name === c.name)!.realPods!;
        const hw = real.find((p) => p.pod.startsWith(`helloworld/helloworld-${version}-`));
        const sleeper = real.find((p) => p.pod.startsWith('sleep/sleep-'));
        assert.ok(hw && sleeper, `${c.name}: real pods ${real.map((p) => p.pod).join(', ')}`);
        // The helloworld process is gunicorn under this machine's python3, in the build's working folder.
        const pid = hw.pids.helloworld!;
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
        assert.deepEqual(argv, [
          '/usr/bin/python3',
          '-m',
          'gunicorn',
          '-b',
          '[::]:5000',
          'app:app',
          '-k',
          'gevent',
        ]);
        const hwName = hw.pod.split('/')[1]!;
        // Ready from the node agent (the rendered Deployment has no probes: Ready once it runs).
        await waitUntil(`${c.name}: ${hw.pod} Ready`, async () =>
          ready(await api(c.name).readNamespacedPod({ name: hwName, namespace: 'helloworld' })),
        );
        // From the sleep pod, as upstream's guide does. Its sidecar (injected by istiod) balances the
        // requests between the local helloworld and the peer's through the east-west gateway: asked
        // until the local pod answers, with a deadline; every answer is one of the two versions.
        const answers: string[] = [];
        let hello = { code: -1, stdout: '', stderr: '' };
        await waitUntil(`${c.name}: curl from sleep reaches the local helloworld`, async () => {
          hello = await k([
            '-n',
            'sleep',
            'exec',
            sleeper.pod.split('/')[1]!,
            '-c',
            'sleep',
            '--',
            'curl',
            '-sS',
            '--max-time',
            '10',
            'helloworld.helloworld:5000/hello',
          ]);
          if (hello.code === 0) answers.push(hello.stdout);
          return hello.stdout === `Hello version: ${version}, instance: ${hwName}\n`;
        }).catch(() => undefined);
        assert.ok(
          answers.includes(`Hello version: ${version}, instance: ${hwName}\n`),
          `${c.name}: ${hello.stderr} ${answers.join('')}`,
        );
        for (const a of answers) assert.match(a, /^Hello version: v[12], instance: helloworld-v[12]-\S+\n$/);
        // [::]:5000 is dual-stack: the pod's own ::1 answers too (IPv6 is on in the lab's pod namespaces).
        const six = await k([
          '-n',
          'helloworld',
          'exec',
          hwName,
          '-c',
          'helloworld',
          '--',
          'curl',
          '-sS',
          '--max-time',
          '10',
          'http://[::1]:5000/health',
        ]);
        assert.equal(six.stdout, 'Helloworld is healthy', `${c.name}: ${six.stderr}`);
      }
    });

    // meshfed's own exec (src/kube/exec.ts: remotecommand v4 over SPDY/3.1, as kubectl's), through the
    // API server to the node's kubelet. A 1.29 API server's websocket exec (v4) cannot half-close stdin:
    // a command that reads stdin to its end lost its output and exit status there.
    test("meshfed's exec: stdin to its end, output, exit codes and refusals, through the API server", async () => {
      const client = lab.clients.get(lab.state.clusters[0]!.context)!;
      const pod = { namespace: 'spire', name: 'spire-server-0', container: 'spire-server' };
      assert.deepEqual(await client.exec(pod, ['cat'], { stdin: 'x', timeoutMs: 20_000 }), {
        code: 0,
        stdout: 'x',
        stderr: '',
      });
      assert.deepEqual(
        await client.exec(pod, ['sh', '-c', 'pwd; echo to-stderr >&2; exit 3'], { timeoutMs: 20_000 }),
        { code: 3, stdout: '/opt/spire\n', stderr: 'to-stderr\n' },
      );
      // 1 MB of stdin, in and back out intact (and counted by the command, which needs its end).
      const big = Buffer.alloc(1 << 20, 'abcdefghij').toString();
      const back = await client.exec(pod, ['cat'], { stdin: big, timeoutMs: 60_000 });
      assert.equal(back.code, 0, back.stderr);
      assert.ok(back.stdout === big, `cat gave back ${back.stdout.length} bytes, not the 1 MiB sent`);
      const count = await client.exec(pod, ['wc', '-c'], { stdin: big, timeoutMs: 60_000 });
      assert.deepEqual([count.code, count.stdout.trim()], [0, String(1 << 20)]);
      // The SPIRE CLI as the engine runs it: a bundle read from stdin to its end.
      const show = await client.exec(pod, ['bin/spire-server', 'bundle', 'show', '-format', 'spiffe']);
      assert.equal(show.code, 0, show.stderr);
      const set = await client.exec(
        pod,
        ['bin/spire-server', 'bundle', 'set', '-format', 'spiffe', '-id', 'spiffe://exec-test.example'],
        { stdin: show.stdout, timeoutMs: 20_000 },
      );
      assert.equal(set.code, 0, set.stderr);
      assert.match(set.stdout, /bundle set/i);
      const del = await client.exec(pod, [
        'bin/spire-server',
        'bundle',
        'delete',
        '-id',
        'spiffe://exec-test.example',
      ]);
      assert.equal(del.code, 0, del.stderr);
      // Output over the bound is an error, not a truncated answer.
      await assert.rejects(
        client.exec(pod, ['cat'], { stdin: big, maxBytes: 1000 }),
        /output over 1000 bytes/,
      );
      // Refused upgrades carry the HTTP status and the Status (errors.ts classifies them).
      await assert.rejects(client.exec({ ...pod, name: 'no-such-pod' }, ['true']), (e: unknown) => {
        assert.ok(e instanceof KubeApiError, String(e));
        assert.deepEqual([e.status, e.reason], [404, 'NotFound']);
        assert.match(e.message, /"no-such-pod" not found/);
        assert.equal(classify(e).retry, false);
        return true;
      });
      await assert.rejects(client.exec({ ...pod, container: 'nope' }, ['true']), (e: unknown) => {
        assert.ok(e instanceof KubeApiError, String(e));
        assert.equal(e.status, 400);
        assert.match(e.message, /container nope is not valid/);
        return true;
      });
    });

    test("a workload pod's SVID comes from its node's agent through the k8s attestor, under cert-manager's root", async () => {
      const c = lab.state.clusters[0]!;
      const core = api(c.name);
      await core.createNamespace({ body: { metadata: { name: 'svid-test' } } });
      await waitUntil('the default ServiceAccount of svid-test', async () =>
        core.readNamespacedServiceAccount({ name: 'default', namespace: 'svid-test' }).then(
          () => true,
          () => false,
        ),
      );
      const socket = '/run/secrets/workload-spiffe-uds/socket';
      // The spire-agent image of the profile (its CLI is the small real process of the workload).
      const agentPod = (await core.listNamespacedPod({ namespace: 'spire' })).items.find((p) =>
        p.metadata?.name?.startsWith('spire-agent-'),
      )!;
      const agentImage = agentPod.spec!.containers.find((x) => x.name === 'spire-agent')!.image!;
      await core.createNamespacedPod({
        namespace: 'svid-test',
        body: {
          metadata: { name: 'workload', labels: { 'spiffe.io/spire-managed-identity': 'true' } },
          spec: {
            containers: [
              {
                name: 'workload',
                image: agentImage,
                command: ['/opt/spire/bin/spire-agent', 'api', 'watch', '-socketPath', socket],
                volumeMounts: [
                  { name: 'spiffe', mountPath: '/run/secrets/workload-spiffe-uds', readOnly: true },
                ],
              },
            ],
            volumes: [{ name: 'spiffe', csi: { driver: 'csi.spiffe.io', readOnly: true } }],
          },
        },
      });
      let workload: Container | undefined;
      await waitUntil(
        'the workload container running',
        async () => {
          workload = recorded(c.name).get('svid-test/workload')?.workload;
          return workload !== undefined;
        },
        60_000,
      );
      const fetch = [
        '/opt/spire/bin/spire-agent',
        'api',
        'fetch',
        'x509',
        '-socketPath',
        socket,
        '-write',
        '/tmp',
      ];
      let last = '';
      await waitUntil(
        'an X509-SVID fetched inside the workload container',
        async () => {
          const r = await run(execArgv(workload!, fetch));
          last = r.out;
          return r.code === 0;
        },
        90_000,
      ).catch((e: Error) => {
        throw new Error(`${e.message}; the last fetch said: ${last}`);
      });
      const out = `/proc/${workload!.pid}/root/tmp`;
      const [leaf, intermediate] = certs(readFileSync(join(out, 'svid.0.pem'), 'utf8'));
      assert.ok(leaf && intermediate, 'the SVID chain has the leaf and the SPIRE intermediate');
      // One SPIFFE ID (the seed's registrar adds the pod's name as a DNS SAN beside it).
      const uris = (leaf.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('URI:'));
      assert.deepEqual(uris, [`URI:spiffe://${c.trustDomain}/ns/svid-test/sa/default`]);
      assert.ok(leaf.verify(intermediate.publicKey), 'the SVID is not signed by the SPIRE intermediate');
      // The root the real cert-manager controller issued in this cluster.
      const secret = await core.readNamespacedSecret({ name: 'selfsigned-ca', namespace: 'cert-manager' });
      const root = new X509Certificate(Buffer.from(secret.data!['ca.crt']!, 'base64'));
      assert.ok(
        intermediate.verify(root.publicKey),
        "the SPIRE intermediate is not signed by cert-manager's root",
      );
      assert.ok(intermediate.ca, 'the SPIRE intermediate is a CA');
      const bundle = certs(readFileSync(join(out, 'bundle.0.pem'), 'utf8'));
      assert.ok(
        bundle.some((b) => b.fingerprint256 === root.fingerprint256),
        "the trust bundle does not hold cert-manager's root",
      );
      // The same command in the container's namespaces and root, but outside its cgroup: no pod, no identity.
      const outside = await run([
        'nsenter',
        `--target=${workload!.pid}`,
        '--mount',
        '--net',
        '--',
        'chroot',
        workload!.root,
        ...fetch.slice(0, -2),
      ]);
      assert.notEqual(outside.code, 0, `a process outside the pod got an SVID:\n${outside.out}`);
      assert.match(outside.out, /no identity issued|PermissionDenied/);
    });

    test('meshfed check passes on real SPIRE: federation, remote secrets, every control-plane check', async () => {
      const r = await lab.meshfed(['check']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      // The seed's SPIRE 1.5.1 serves a refresh hint of a tenth of its root's lifetime: MF213 warns.
      assert.match(
        r.stdout,
        profile === 'seed'
          ? /15 passed, 1 warnings?, 0 failed, 0 not run, 0 skipped/
          : /16 passed, 0 warnings, 0 failed, 0 not run, 0 skipped/,
      );
      if (profile === 'seed') assert.match(r.stdout, /WARN\s+MF213/);
    });

    test('a killed spire-server is restarted by its pod; not Ready meanwhile; status and check say so; all converges', async () => {
      const c = lab.state.clusters[1]!;
      const before = server(c.name)!;
      process.kill(before.pid, 'SIGKILL');
      await waitUntil('the SPIRE server pod not Ready', async () => !ready(await serverPod(c.name)), 30_000);
      // Down for as long as status and check take: each process the pod restarts meanwhile is killed too
      // (under load, status alone took longer than the first back-off, and check met a Ready server again).
      const killed: number[] = [];
      const keepDown = setInterval(() => {
        const s = server(c.name);
        if (s && s.pid !== before.pid && !killed.includes(s.pid)) {
          killed.push(s.pid);
          try {
            process.kill(s.pid, 'SIGKILL');
          } catch {}
        }
      }, 100);
      let during: Awaited<ReturnType<typeof lab.meshfed>>;
      let checked: Awaited<ReturnType<typeof lab.meshfed>>;
      try {
        [during, checked] = await Promise.all([lab.meshfed(['status']), lab.meshfed(['check'])]);
      } finally {
        clearInterval(keepDown);
      }
      assert.notEqual(during.code, 0, `status says all is well while the server is down:\n${during.stdout}`);
      assert.match(during.stdout, /spire-server/);
      assert.notEqual(checked.code, 0, `check passes while the server is down:\n${checked.stdout}`);
      assert.match(checked.stdout, /FAIL\s+MF20[12]/);
      console.log(`# restarts killed while status and check ran: ${killed.length}`);
      await waitUntil(
        'the SPIRE server pod Ready again, restarted',
        async () => {
          const p = await serverPod(c.name);
          return (
            ready(p) &&
            (p?.status?.containerStatuses?.find((x) => x.name === 'spire-server')?.restartCount ?? 0) >= 1
          );
        },
        120_000,
      );
      assert.notEqual(server(c.name)!.pid, before.pid);
      // Converged: status and check pass again, polled with a deadline (a loaded machine can take
      // longer than MF202's 10 s bound for one healthcheck exec, on any cluster).
      let last = '';
      await waitUntil(
        'status and check passing again',
        async () => {
          const after = await lab.meshfed(['status']);
          const check = after.code === 0 ? await lab.meshfed(['check']) : after;
          last = check.stdout;
          return after.code === 0 && check.code === 0;
        },
        120_000,
      ).catch((e: Error) => assert.fail(`${e.message}\n${last}`));
    });

    test('a changed SPIRE config rolls the StatefulSet, and the new config is what runs', async () => {
      const fleet = join(lab.dir, 'meshfed.yaml');
      const text = readFileSync(fleet, 'utf8');
      assert.match(text, /caTTL: 24h/);
      writeFileSync(fleet, text.replace('caTTL: 24h', 'caTTL: 30h'));
      const c = lab.state.clusters[0]!;
      const oldUid = (await serverPod(c.name))!.metadata!.uid;
      const up = await lab.meshfed(['up']);
      assert.equal(up.code, 0, up.stderr);
      await waitUntil(
        'a new SPIRE server pod running the new config',
        async () => {
          const p = await serverPod(c.name);
          const s = server(c.name);
          if (!p || p.metadata?.uid === oldUid || !ready(p) || !s) return false;
          return readFileSync(`/proc/${s.pid}/root/run/spire/config/server.conf`, 'utf8').includes(
            'ca_ttl = "30h"',
          );
        },
        180_000,
      );
    });

    test('lab down leaves no process, cgroup, network namespace or mount behind', async () => {
      const block = lab.state.block;
      const agentDirs = lab.state.clusters.map((c) => c.agentDir!);
      await lab.stop();
      lab = undefined as unknown as typeof lab;
      assert.equal(
        existsSync(join(CGROUP_HIERARCHY, labCgroup(block))),
        false,
        'the lab cgroup is still there',
      );
      assert.deepEqual(await labNamespaces(block), []);
      const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
      for (const d of agentDirs) assert.ok(!mounts.includes(d), `a mount under ${d} is left`);
      // Its processes: by their folder in their arguments, or by their cgroup (the pods' processes).
      const left = readdirSync('/proc')
        .filter((e) => /^\d+$/.test(e))
        .flatMap((pid) => {
          try {
            const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
            const cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
            return agentDirs.some((d) => args.includes(d)) || cgroup.includes(`/${labCgroup(block)}/`)
              ? [`${pid} ${args}`]
              : [];
          } catch {
            return [];
          }
        });
      assert.deepEqual(left, [], 'processes of the lab are left');
    });
  });
}
