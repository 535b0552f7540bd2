/**
 * A lab node's kubelet API (src/lab/node/kubelet.ts) against a real lab API
 * server: its serving certificate as a Go client verifies it (cluster CA,
 * host name = node name), the real kubelet's webhook authentication and
 * authorisation (TokenReview, then a SubjectAccessReview of get nodes/proxy
 * on the node), the pods it serves, and SPIRE's own `k8s` workload attestor
 * (1.15.3 and 1.5.1, kubelet verification on) attesting a process of a pod
 * through it.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { execFileBounded } from '../../src/federation/transport.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { clientOfKubeConfig } from '../../src/kube/client.js';
import { startLabFederation } from '../../src/lab/federation.js';
import { type KubeCluster, startKubeCluster } from '../../src/lab/kube.js';
import {
  apiServerAuthorizer,
  issueKubeletCert,
  type KubeletServer,
  startKubeletServer,
} from '../../src/lab/node/kubelet.js';
import { makeCertManagerRoot } from '../../src/lab/pki.js';
import { running } from '../../src/lab/procfs.js';
import { LAB_PORTS } from '../../src/lab/spire.js';
import { clusterKubectl, controlPlaneSkip, labBin, requireLab, waitUntil } from '../helpers/lab.js';

const K8S = PROFILE_VERSIONS.current.kubernetes;
const SPIRES = [PROFILE_VERSIONS.current.spire, PROFILE_VERSIONS.seed.spire];
const skip = controlPlaneSkip(K8S);
const spireSkip = requireLab(
  SPIRES.flatMap((v) => [`bin/spire/${v}/spire-server`, `bin/spire/${v}/spire-agent`]),
  'npm run lab:build',
);

/**
 * SPIRE's attestor reads the workload's /proc/<pid>/cgroup and dials the node
 * by name, so its agent runs in a mount namespace of its own where
 * /etc/hosts names the node 127.0.0.1 and the workload's cgroup file is a
 * pod container's. That takes root and unshare(1); CI has both.
 */
function isolationSkip(): string | undefined {
  const ok = process.getuid?.() === 0 && spawnSync('unshare', ['-m', 'true']).status === 0;
  if (ok) return undefined;
  const reason = 'the SPIRE cross-check needs root and `unshare -m` (a private /etc/hosts and cgroup file)';
  if (process.env.MESHFED_REQUIRE_LAB === '1') throw new Error(reason);
  return reason;
}

const NS = 'kl';
const TTL_MS = 8_000;
const YEAR_MS = 365 * 86_400_000;

/** The container ID the lab "runtime" gave a pod's container: 64 hex, as containerd's. */
const containerId = (pod: string, container: string) =>
  createHash('sha256').update(`${pod}/${container}`).digest('hex');

interface Reply {
  status: number;
  body: string;
}

describe(`a lab node's kubelet API against the Kubernetes ${K8S} API server`, {
  skip,
  timeout: 400_000,
}, () => {
  const workdir = mkdtempSync(join(tmpdir(), 'mf-kubelet-'));
  let cluster: KubeCluster;
  let caPem: string;
  let nodes: [string, string];
  const tokens: Record<string, string> = {};
  const servers: Record<string, KubeletServer & { cert: string }> = {};
  const logs: string[] = [];
  const bodies: string[] = [];

  const kubectl = clusterKubectl(() => cluster);
  const binding = (sa: string, role: string) => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: `${role}-${sa}` },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
    subjects: [{ kind: 'ServiceAccount', name: sa, namespace: NS }],
  });
  const apply = (...objs: object[]) =>
    kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objs }));

  /**
   * A GET as SPIRE's Go client makes it: to 127.0.0.1 (what the node name
   * resolves to), SNI and certificate check for `servername`, trusting `ca`
   * only. Node's check, like Go's, matches the name against the DNS SANs.
   */
  const get = (o: {
    node: string;
    token?: string;
    authorization?: string;
    path?: string;
    ca?: string;
    servername?: string;
  }): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const port = servers[o.node]!.port;
      const servername = o.servername ?? o.node;
      const authorization = o.token ? `Bearer ${o.token}` : o.authorization;
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: o.path ?? '/pods',
          // An IP is no SNI name (RFC 6066): without one, Node checks the IP SANs against the host, as Go does.
          ...(isIP(servername) ? {} : { servername }),
          ca: o.ca ?? caPem,
          agent: false,
          headers: {
            Host: `${servername}:${port}`,
            ...(authorization ? { Authorization: authorization } : {}),
          },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => {
            bodies.push(body);
            resolve({ status: res.statusCode ?? 0, body });
          });
        },
      );
      req.setTimeout(30_000, () => req.destroy(new Error('no answer within 30 s')));
      req.on('error', reject);
      req.end();
    });

  /** The pods as the API server has them, with the container IDs the lab's runtime would have set. */
  let listPods: () => Promise<V1Pod[]>;

  before(async () => {
    cluster = await startKubeCluster({ name: 'kubelet', kubernetesVersion: K8S, workdir, nodes: 2 });
    caPem = readFileSync(cluster.ca.cert, 'utf8');
    const names = JSON.parse(await kubectl(['get', 'nodes', '-o', 'json'])) as {
      items: Array<{ metadata: { name: string } }>;
    };
    nodes = names.items.map((n) => n.metadata.name).sort() as [string, string];
    assert.equal(nodes.length, 2);
    const [n0, n1] = nodes;

    const role = (name: string, resourceNames?: string[]) => ({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name },
      // Exactly what the kubelet asks for: no wildcard, no other verb or subresource.
      rules: [
        {
          apiGroups: [''],
          resources: ['nodes/proxy'],
          verbs: ['get'],
          ...(resourceNames ? { resourceNames } : {}),
        },
      ],
    });
    const pod = (name: string, nodeName: string, containers: string[]) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: NS },
      spec: { nodeName, containers: containers.map((c) => ({ name: c, image: `registry.invalid/${c}:1` })) },
    });
    await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    // The controller manager makes a namespace's default service account a moment later; pods need it.
    await waitUntil(
      `service account ${NS}/default`,
      async () =>
        (
          await execFileBounded(cluster.kubectl, [
            '--kubeconfig',
            cluster.kubeconfig,
            '-n',
            NS,
            'get',
            'serviceaccount',
            'default',
          ])
        ).code === 0,
      30_000,
    );
    await apply(
      ...['reader', 'outsider', 'elsewhere', 'late'].map((name) => ({
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name, namespace: NS },
      })),
      role('kl-node-proxy'),
      role('kl-node-proxy-n1', [n1]),
      binding('reader', 'kl-node-proxy'),
      binding('elsewhere', 'kl-node-proxy-n1'),
      pod('a', n0, ['app']),
      pod('b', n0, ['app', 'sidecar']),
      pod('c', n1, ['app']),
    );
    await kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'pod', '--all', '--timeout=90s']);
    for (const sa of ['reader', 'outsider', 'elsewhere', 'late'])
      tokens[sa] = (await kubectl(['-n', NS, 'create', 'token', sa])).trim();

    const kc = new KubeConfig();
    kc.loadFromFile(cluster.kubeconfig);
    const client = clientOfKubeConfig(kc);
    listPods = async () =>
      ((await client.list('v1', 'Pod', { namespace: NS })) as unknown as V1Pod[]).map((p) => ({
        ...p,
        status: {
          ...p.status,
          containerStatuses: (p.status?.containerStatuses ?? []).map((cs) => ({
            ...cs,
            containerID: `containerd://${containerId(p.metadata!.name!, cs.name)}`,
          })),
        },
      }));
    const authorize = apiServerAuthorizer(kc, { cacheTtlMs: TTL_MS });
    const caKeyPem = readFileSync(cluster.ca.key, 'utf8');
    for (const nodeName of nodes) {
      const { certPem, keyPem } = await issueKubeletCert({
        caCertPem: caPem,
        caKeyPem,
        nodeName,
        ips: ['127.0.0.1'],
      });
      const server = await startKubeletServer({
        host: '127.0.0.1',
        port: 0,
        cert: certPem,
        key: keyPem,
        nodeName,
        // Every pod of the namespace, both nodes': the server serves its own node's.
        pods: listPods,
        authorize,
        log: (line) => logs.push(`${nodeName}: ${line}`),
      });
      servers[nodeName] = { ...server, cert: certPem };
    }
  });

  after(async () => {
    await Promise.all(Object.values(servers).map((s) => s.close()));
    if (cluster?.pids().length) await cluster.stop().catch(() => {});
    rmSync(workdir, { recursive: true, force: true });
  });

  test('the serving certificate: issued by the cluster CA, SANs the node name and its IPs, EC P-256, server auth, a year at most', async () => {
    const [n0] = nodes;
    const cert = new X509Certificate(servers[n0]!.cert);
    const ca = new X509Certificate(caPem);
    assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), 'signed by the cluster CA');
    assert.equal(cert.subjectAltName, `DNS:${n0}, IP Address:127.0.0.1`);
    assert.equal(cert.subject, `O=system:nodes\nCN=system:node:${n0}`);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.equal(cert.ca, false);
    const lifetime = Date.parse(cert.validTo) - Date.parse(cert.validFrom);
    // Backdated 5 min for clocks behind, as the kubelet-serving signer does; then a year at most.
    assert.ok(lifetime <= YEAR_MS + 5 * 60_000, `lives ${lifetime} ms`);
    assert.ok(Date.parse(cert.validFrom) <= Date.now());

    const other = await makeCertManagerRoot('other', 86_400_000);
    await assert.rejects(
      issueKubeletCert({ caCertPem: caPem, caKeyPem: other.keyPem, nodeName: n0, ips: [] }),
      /the CA key is not the CA certificate's key/,
    );
    await assert.rejects(
      issueKubeletCert({
        caCertPem: caPem,
        caKeyPem: readFileSync(cluster.ca.key, 'utf8'),
        nodeName: n0,
        ips: [],
        validityMs: YEAR_MS + 1,
      }),
      /a year at most/,
    );
  });

  test('TLS as a Go client checks it: verified under the cluster CA for the node name; not under another CA, not for another name', async () => {
    const [n0, n1] = nodes;
    assert.equal((await get({ node: n0, token: tokens.reader, path: '/healthz' })).status, 200);
    // The address SPIRE dials without a node name (127.0.0.1) is an IP SAN.
    assert.equal(
      (await get({ node: n0, token: tokens.reader, path: '/healthz', servername: '127.0.0.1' })).status,
      200,
    );
    const other = await makeCertManagerRoot('other', 86_400_000);
    await assert.rejects(get({ node: n0, token: tokens.reader, ca: other.certPem }), {
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
    await assert.rejects(get({ node: n0, token: tokens.reader, servername: n1 }), {
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
  });

  test('a service account granted get nodes/proxy reads exactly this node’s pods, with their container IDs', async () => {
    for (const node of nodes) {
      const r = await get({ node, token: tokens.reader });
      assert.equal(r.status, 200, r.body.slice(0, 300));
      const list = JSON.parse(r.body) as { kind: string; apiVersion: string; items: V1Pod[] };
      assert.equal(list.kind, 'PodList');
      assert.equal(list.apiVersion, 'v1');
      const want = (await listPods()).filter((p) => p.spec?.nodeName === node);
      assert.ok(want.length > 0);
      assert.deepEqual(
        list.items.map((p) => p.metadata?.uid).sort(),
        want.map((p) => p.metadata?.uid).sort(),
        `${node}'s pods`,
      );
      for (const p of list.items) {
        assert.equal(p.spec?.nodeName, node);
        assert.equal(p.status?.phase, 'Running');
        const names = p.spec?.containers.map((c) => c.name).sort();
        assert.deepEqual(p.status?.containerStatuses?.map((c) => c.name).sort(), names);
        for (const cs of p.status?.containerStatuses ?? []) {
          const id = containerId(p.metadata!.name!, cs.name);
          assert.equal(cs.containerID, `containerd://${id}`);
          // SPIRE matches the cgroup's container ID with the URL host of containerID.
          assert.equal(new URL(cs.containerID!).host, id);
        }
      }
    }
  });

  test('the SubjectAccessReview names this node: a grant on the other node only is refused here', async () => {
    const [n0, n1] = nodes;
    const here = await get({ node: n0, token: tokens.elsewhere });
    assert.equal(here.status, 403, here.body.slice(0, 300));
    assert.equal(
      here.body,
      `Forbidden (user=system:serviceaccount:${NS}:elsewhere, verb=get, resource=nodes, subresource(s)=[proxy])`,
    );
    const there = await get({ node: n1, token: tokens.elsewhere });
    assert.equal(there.status, 200, there.body.slice(0, 300));
  });

  test('refusals: 403 without the grant, 401 for a garbage, missing or non-bearer token; no token in any answer or log', async () => {
    const [n0] = nodes;
    const denied = await get({ node: n0, token: tokens.outsider });
    assert.equal(denied.status, 403);
    assert.match(
      denied.body,
      /^Forbidden \(user=system:serviceaccount:kl:outsider, verb=get, resource=nodes/,
    );
    const garbage = `not-a-token-${createHash('sha256').update(workdir).digest('hex')}`;
    for (const r of [
      await get({ node: n0, token: garbage }),
      await get({ node: n0, token: `${tokens.reader}x` }),
      await get({ node: n0 }),
      await get({ node: n0, authorization: `Basic ${Buffer.from(`u:${tokens.reader}`).toString('base64')}` }),
      await get({ node: n0, authorization: 'Bearer' }),
    ])
      assert.deepEqual(r, { status: 401, body: 'Unauthorized' });
    assert.ok(logs.some((l) => / 401$/.test(l)) && logs.some((l) => / 403 user=/.test(l)), logs.join('\n'));
    for (const secret of [...Object.values(tokens), garbage]) {
      assert.ok(!bodies.some((b) => b.includes(secret)), 'a token in an answer');
      assert.ok(!logs.some((l) => l.includes(secret)), 'a token in the log');
    }
  });

  test(`an allowed decision is cached for at most its TTL (${TTL_MS / 1000} s); a refusal is not cached`, async () => {
    const [n0] = nodes;
    const refusedFrom = Date.now();
    assert.equal((await get({ node: n0, token: tokens.late })).status, 403);
    await apply(binding('late', 'kl-node-proxy'));
    let allowedFrom = 0;
    let allowedAt = 0;
    await waitUntil(
      'the new grant lets the token in',
      async () => {
        allowedFrom = Date.now();
        const ok = (await get({ node: n0, token: tokens.late })).status === 200;
        allowedAt = Date.now();
        return ok;
      },
      30_000,
    );
    // Refusals are not cached: the grant works as soon as RBAC sees it, not a TTL after the refusal.
    assert.ok(allowedAt - refusedFrom < TTL_MS, `allowed ${allowedAt - refusedFrom} ms after the refusal`);
    await kubectl(['delete', 'clusterrolebinding', 'kl-node-proxy-late']);
    assert.ok(Date.now() - allowedAt < TTL_MS, 'the revocation took longer than the TTL: nothing to observe');
    assert.equal((await get({ node: n0, token: tokens.late })).status, 200, 'still allowed from the cache');
    let refusedAt = 0;
    await waitUntil(
      'the revoked grant stops working',
      async () => {
        const r = await get({ node: n0, token: tokens.late });
        refusedAt = Date.now();
        return r.status === 403;
      },
      TTL_MS + 15_000,
    );
    assert.ok(
      refusedAt >= allowedFrom + TTL_MS,
      `refused ${refusedAt - allowedFrom} ms after the grant was cached`,
    );
    assert.ok(refusedAt <= allowedAt + TTL_MS + 10_000, `still allowed ${refusedAt - allowedAt} ms after`);
  });

  describe('SPIRE’s k8s workload attestor through this kubelet (kubelet verification on)', {
    skip: spireSkip ?? isolationSkip(),
  }, () => {
    for (const version of SPIRES)
      test(`SPIRE ${version}: a process of pod a gets its SVID; with the other node's certificate, attestation fails`, async () => {
        const [n0, n1] = nodes;
        const fed = await startLabFederation({ count: 1, spireVersion: version, domain: { agent: false } });
        const d = fed.domains[0]!;
        const stops: Array<() => Promise<void>> = [];
        try {
          const uid = (await listPods()).find((p) => p.metadata?.name === 'a')!.metadata!.uid!;
          const spiffeId = `spiffe://${d.trustDomain}/ns/${NS}/pod/a`;
          await d.server.createEntry({
            parentId: d.nodeId,
            spiffeId,
            selectors: [`k8s:pod-uid:${uid}`, 'k8s:container-name:app', `k8s:node-name:${n0}`],
          });
          const bundle = (await d.server.transport.run(['bundle', 'show'])).stdout;
          const bin = labBin('spire', version, 'spire-agent');

          /**
           * An agent configured as meshfed's DaemonSet's (node_name_env), with
           * the kubelet port given, and a workload of pod a's container `app`
           * watching its SVIDs through it.
           */
          const run = async (name: string, kubeletPort: number) => {
            const dir = join(d.opts.dir, name);
            mkdirSync(join(dir, 'data'), { recursive: true });
            const socket = join(dir, 'a.sock');
            writeFileSync(join(dir, 'bootstrap.crt'), bundle);
            writeFileSync(join(dir, 'token'), tokens.reader!, { mode: 0o600 });
            writeFileSync(join(dir, 'hosts'), `127.0.0.1 localhost\n127.0.0.1 ${n0}\n127.0.0.1 ${n1}\n`);
            // A systemd-driver containerd cgroup of pod a's container `app`.
            writeFileSync(
              join(dir, 'cgroup'),
              `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}.slice/cri-containerd-${containerId('a', 'app')}.scope\n`,
            );
            writeFileSync(
              join(dir, 'agent.conf'),
              `agent {
  data_dir = ${JSON.stringify(join(dir, 'data'))}
  log_level = "DEBUG"
  server_address = ${JSON.stringify(d.address)}
  server_port = "${LAB_PORTS.server}"
  socket_path = ${JSON.stringify(socket)}
  trust_bundle_path = ${JSON.stringify(join(dir, 'bootstrap.crt'))}
  trust_domain = ${JSON.stringify(d.trustDomain)}
  join_token = ${JSON.stringify(await d.server.joinToken(d.nodeId))}
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "k8s" {
    plugin_data {
      node_name_env = "MY_NODE_NAME"
      kubelet_secure_port = ${kubeletPort}
      kubelet_ca_path = ${JSON.stringify(cluster.ca.cert)}
      token_path = ${JSON.stringify(join(dir, 'token'))}
      max_poll_attempts = 3
      poll_retry_interval = "200ms"
    }
  }
}
`,
            );
            // The workload waits for a line, then becomes the watcher: its pid is known before the agent starts.
            const workload = spawn(
              'sh',
              ['-c', 'read go && exec "$0" api watch -socketPath "$1"', bin, socket],
              {
                stdio: ['pipe', 'pipe', 'pipe'],
              },
            );
            let out = '';
            workload.stdout!.on('data', (b: Buffer) => {
              out += b;
            });
            workload.stderr!.on('data', (b: Buffer) => {
              out += b;
            });
            const agentLog = join(dir, 'spire-agent.log');
            const logFd = openSync(agentLog, 'a');
            const agent = spawn(
              'unshare',
              [
                '-m',
                '--propagation',
                'private',
                'sh',
                '-c',
                'mount --bind "$1" /etc/hosts && mount --bind "$2" "/proc/$3/cgroup" && exec "$4" run -config "$5"',
                'sh',
                join(dir, 'hosts'),
                join(dir, 'cgroup'),
                String(workload.pid),
                bin,
                join(dir, 'agent.conf'),
              ],
              { stdio: ['ignore', logFd, logFd], env: { ...process.env, MY_NODE_NAME: n0 } },
            );
            closeSync(logFd);
            const kill = async (c: ChildProcess) => {
              if (c.exitCode !== null || c.signalCode !== null) return;
              c.kill('SIGKILL');
              await waitUntil(`${name}: pid ${c.pid} stopped`, async () => !running(c.pid ?? -1), 15_000);
            };
            stops.push(
              () => kill(workload),
              () => kill(agent),
            );
            const log = () => readFileSync(agentLog, 'utf8');
            /** Polls `holds`, failing with the workload's output and the agent's log. */
            const until = (what: string, holds: () => boolean) =>
              waitUntil(`${name}: ${what}`, async () => holds(), 30_000).catch((e: unknown) => {
                throw new Error(`${(e as Error).message}\n--- workload\n${out}\n--- agent\n${log()}`);
              });
            await until('the agent is healthy', () => {
              assert.equal(agent.exitCode, null, `the agent exited:\n${log()}`);
              return spawnSync(bin, ['healthcheck', '-socketPath', socket], { timeout: 10_000 }).status === 0;
            });
            workload.stdin!.end('go\n');
            return { until, output: () => out, log };
          };

          const ok = await run('ok', servers[n0]!.port);
          await ok.until('the workload gets its SVID', () =>
            new RegExp(`SPIFFE ID:\\s+${spiffeId}`).test(ok.output()),
          );
          assert.match(ok.log(), new RegExp(`pod-uid:${uid}`));

          // The agent dials n0 by name, but n1's kubelet answers there, with n1's certificate.
          const wrong = await run('wrong-name', servers[n1]!.port);
          await wrong.until('the agent reports the name mismatch', () =>
            new RegExp(`x509: certificate is valid for ${n1}, not ${n0}`).test(wrong.log()),
          );
          assert.doesNotMatch(wrong.output(), /SPIFFE ID/);
        } finally {
          for (const stop of stops) await stop();
          await fed.stop();
        }
      });
  });
});
