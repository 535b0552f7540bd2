/**
 * A real-pods lab's API server reaches its own cluster through its
 * `cluster` egress (src/lab/node/egress.ts), as a managed cluster's does
 * through konnectivity: on the engine suite's 2-cluster real-pods labs where
 * `meshfed up --lab` ran (test/engine/up-suite.ts; Kubernetes 1.35 and 1.29):
 * - the kube-apiserver runs with the lab's EgressSelectorConfiguration and
 *   its proxy socket is the node agent's (checked first: without the
 *   egress the API server would dial pod addresses from the root
 *   namespace, whose default route leaves the machine, so nothing below
 *   runs then);
 * - `kubectl exec` and `kubectl logs` into the real spire-server pod work,
 *   and the agent's egress proxy carried them (the nodes' kubelets at
 *   localhost, dialled in the root namespace);
 * - the API server's service proxy reaches the real pod behind
 *   spire-server-bundle-endpoint (an endpoint address of the pod network,
 *   through the hub's door), and its pod proxy the pod's health port;
 * - a CONNECT to the Service's ClusterIP on the proxy's socket (what a
 *   webhook's clientConfig.service becomes) reaches the same bundle
 *   endpoint through the hub's portal;
 * - a target outside the cluster is refused and logged, never dialled.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { execFileBounded } from '../../src/federation/transport.js';
import type { Profile } from '../../src/fleet/model.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { connectVia, rest } from '../helpers/connect.js';
import type { startLab } from '../helpers/engine.js';

type Lab = Awaited<ReturnType<typeof startLab>>;

import { labBin } from '../helpers/lab.js';

const notRoot = process.getuid?.() === 0 ? undefined : 'needs root (--pods real: namespaces and cgroups)';
if (notRoot && process.env.MESHFED_REQUIRE_LAB === '1') throw new Error(notRoot);

/** The kube-apiserver process whose arguments name the cluster's kwok folder: its arguments. */
function apiServerArgs(kwokWorkdir: string): string[] | undefined {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let args: string[];
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (args[0]?.endsWith('/kube-apiserver') && args[0].startsWith(`${kwokWorkdir}/`)) return args;
  }
  return undefined;
}

/** An HTTPS GET on a connection CONNECT carried (the bundle endpoint's certificate is SPIFFE's: not verified here). */
function httpsGetOver(socket: import('node:net').Socket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const t = tlsConnect({ socket, rejectUnauthorized: false }, () => {
      t.end(`GET ${path} HTTP/1.1\r\nHost: spire-server-bundle-endpoint\r\nConnection: close\r\n\r\n`);
    });
    let text = '';
    t.on('data', (d: Buffer) => {
      text += d.toString('utf8');
    });
    t.once('end', () => resolve(text));
    t.once('error', reject);
  });
}

/** The tests, on a 2-cluster real-pods lab where `meshfed up` ran (the engine suite's, up-suite.ts). */
export function egressLabSuite(profile: Profile, labOf: () => Lab): void {
  const V = PROFILE_VERSIONS[profile];
  describe(`a real-pods lab's API server reaches its cluster through the egress proxy (${profile} profile, Kubernetes ${V.kubernetes})`, {
    skip: notRoot,
  }, () => {
    let lab: Lab;
    let cdir: string;
    let agentLog: string;
    let egressOn = false;
    const k = (args: string[]) =>
      execFileBounded(
        labBin('kubernetes', V.kubernetes, 'kubectl'),
        ['--kubeconfig', lab.state.kubeconfig, '--context', 'cluster-1', ...args],
        { timeoutMs: 60_000 },
      );
    /** The egress lines the agent logged since `from` (a length of its log). */
    const egressLines = (from: number) =>
      readFileSync(agentLog, 'utf8')
        .slice(from)
        .split('\n')
        .filter((l) => l.includes(' egress: '));
    const logLength = () => readFileSync(agentLog, 'utf8').length;
    /** Nothing that would leave the lab is asked of the API server unless its egress is the agent's proxy. */
    const requireEgress = () =>
      assert.ok(egressOn, 'the API server does not run with the lab egress: not asking it');

    before(() => {
      lab = labOf();
      const c = lab.state.clusters[0]!;
      cdir = join(lab.dir, c.name);
      agentLog = join(c.agentDir!, 'agent.log');
    });

    test("the kube-apiserver's cluster egress is HTTPConnect on the node agent's socket", () => {
      const c = lab.state.clusters[0]!;
      const args = apiServerArgs(c.kwokWorkdir);
      assert.ok(args, `no kube-apiserver of ${c.kwokWorkdir}`);
      const config = join(cdir, 'egress-selector.yaml');
      assert.ok(args.includes(`--egress-selector-config-file=${config}`), args.join(' '));
      const text = readFileSync(config, 'utf8');
      assert.match(text, /kind: EgressSelectorConfiguration/);
      assert.match(text, /- name: cluster\n {2}connection:\n {4}proxyProtocol: HTTPConnect/);
      assert.ok(text.includes(`udsName: ${JSON.stringify(join(cdir, 'egress.sock'))}`), text);
      assert.ok(
        readFileSync(agentLog, 'utf8').includes(
          `egress: the API server's CONNECT proxy on ${join(cdir, 'egress.sock')}`,
        ),
        'the node agent serves it',
      );
      egressOn = true;
    });

    test('kubectl exec and kubectl logs into the real spire-server pod, carried by the egress to the node kubelet', async () => {
      requireEgress();
      const from = logLength();
      const r = await k([
        '-n',
        'spire',
        'exec',
        'spire-server-0',
        '-c',
        'spire-server',
        '--',
        'sh',
        '-c',
        'pwd; echo to-stderr >&2; exit 7',
      ]);
      assert.equal(r.code, 7, r.stderr);
      assert.equal(r.stdout, '/opt/spire\n');
      assert.match(r.stderr, /to-stderr/);
      const logs = await k(['-n', 'spire', 'logs', 'spire-server-0', '-c', 'spire-server', '--tail', '20']);
      assert.equal(logs.code, 0, logs.stderr);
      assert.match(logs.stdout, /level=/, 'SPIRE server log lines');
      const lines = egressLines(from);
      assert.ok(
        lines.filter((l) => /egress: CONNECT localhost:\d+: dialled here/.test(l)).length >= 2,
        `the exec and the logs went through the egress to a kubelet at localhost:\n${lines.join('\n')}`,
      );
    });

    test("the API server's service proxy reaches the real pod behind spire-server-bundle-endpoint, its pod proxy the pod's health port", async () => {
      requireEgress();
      const pod = await k(['-n', 'spire', 'get', 'pod', 'spire-server-0', '-o', 'jsonpath={.status.podIP}']);
      assert.equal(pod.code, 0, pod.stderr);
      const ip = pod.stdout;
      assert.match(ip, /^10\.\d+\.\d+\.\d+$/);
      const from = logLength();
      const bundle = await k([
        'get',
        '--raw',
        '/api/v1/namespaces/spire/services/https:spire-server-bundle-endpoint:8443/proxy/',
      ]);
      assert.equal(bundle.code, 0, bundle.stderr);
      const keys = (JSON.parse(bundle.stdout) as { keys?: Array<{ use?: string }> }).keys ?? [];
      assert.ok(
        keys.some((x) => x.use === 'x509-svid'),
        `the bundle endpoint serves the trust bundle: ${bundle.stdout.slice(0, 300)}`,
      );
      const ready = await k([
        'get',
        '--raw',
        '/api/v1/namespaces/spire/pods/spire-server-0:8080/proxy/ready',
      ]);
      assert.equal(ready.code, 0, ready.stderr);
      const lines = egressLines(from);
      for (const port of [8443, 8080])
        assert.ok(
          lines.some((l) => l.includes(`egress: CONNECT ${ip}:${port}: through the hub`)),
          `${ip}:${port} through the hub:\n${lines.join('\n')}`,
        );
    });

    test("a CONNECT to the Service's ClusterIP (what a webhook's service reference becomes) reaches the pod through the hub's portal", async () => {
      requireEgress();
      const svc = await k([
        '-n',
        'spire',
        'get',
        'svc',
        'spire-server-bundle-endpoint',
        '-o',
        'jsonpath={.spec.clusterIP}',
      ]);
      assert.equal(svc.code, 0, svc.stderr);
      // The server may answer 500 for a moment ("unable to retrieve local bundle",
      // its datastore busy on a loaded machine): asked again, with a deadline.
      const end = Date.now() + 30_000;
      for (;;) {
        const c = await connectVia(join(cdir, 'egress.sock'), `${svc.stdout}:8443`);
        assert.equal(c.head, 'HTTP/1.1 200 Connection established\r\n\r\n');
        const answer = await httpsGetOver(c.socket, '/');
        if (!/^HTTP\/1\.1 500 /.test(answer) || Date.now() > end) {
          assert.match(answer, /^HTTP\/1\.1 200 /);
          assert.match(answer, /"x509-svid"/);
          break;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    });

    test('a target outside the cluster is refused with 403 and logged; nothing is dialled', async () => {
      const from = logLength();
      // Another cluster's pod network of the same block, then the outside network's gateway.
      const block = lab.state.block;
      for (const target of [`10.${block}.16.1:443`, '192.0.2.1:443']) {
        const c = await connectVia(join(cdir, 'egress.sock'), target);
        assert.match(c.head, /^HTTP\/1\.1 403 Forbidden\r\n/, target);
        await rest(c);
        assert.ok(
          egressLines(from).some((l) => l.includes(`egress: CONNECT ${target}: 403`)),
          egressLines(from).join('\n'),
        );
      }
    });
  });
}
