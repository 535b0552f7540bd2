/**
 * On a lab with real pods where `meshfed up --lab` ran (the engine suite's
 * 2-cluster labs, test/engine/up-suite.ts, so no lab of its own):
 * cert-manager runs in its pods, from the release manifest the engine
 * applied. Proved for both profiles (cert-manager 1.21.2 and 1.15.1, each run
 * by the lab's 1.11.5 build), on two clusters:
 * - the controller, webhook and cainjector pods are real processes of the
 *   lab's build, started from the Deployments' args; no controller runs
 *   outside the cluster; controller and cainjector hold their leader
 *   election leases in kube-system (in-cluster config, projected tokens,
 *   `kubernetes.default.svc` through the lab's Service proxy);
 * - the webhook serves: its dynamic serving CA is in the cert-manager-webhook-ca
 *   Secret, cainjector put it into both webhook configurations as caBundle,
 *   and from inside another pod (the controller's network namespace, through
 *   the webhook Service's ClusterIP and the lab's Service proxy) the caBundle
 *   verifies the webhook's serving certificate for
 *   cert-manager-webhook.cert-manager.svc, while another CA does not; an
 *   AdmissionReview of a Certificate without any name is denied, a good one
 *   is allowed.
 * The webhook is also asked directly here, as the API server asks it (with
 * real pods the API servers call it too, through the lab's egress).
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { execFileBounded } from '../../src/federation/transport.js';
import type { Profile } from '../../src/fleet/model.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { labBinDir } from '../../src/lab/binaries.js';
import { LAB_CERT_MANAGER_VERSION } from '../../src/lab/controllers.js';
import type { LabStatus } from '../../src/lab/lab.js';
import { runMeshfed } from '../helpers/cli.js';
import type { startLab } from '../helpers/engine.js';

type Lab = Awaited<ReturnType<typeof startLab>>;

import { labBin, runCommand } from '../helpers/lab.js';

const notRoot = process.getuid?.() === 0 ? undefined : 'needs root (--pods real: namespaces and cgroups)';
if (notRoot && process.env.MESHFED_REQUIRE_LAB === '1') throw new Error(notRoot);

/** An AdmissionReview of a Certificate CREATE with `spec`, as the API server sends it. */
function certificateReview(uid: string, spec: Record<string, unknown>): string {
  const gvk = { group: 'cert-manager.io', version: 'v1', kind: 'Certificate' };
  const gvr = { group: 'cert-manager.io', version: 'v1', resource: 'certificates' };
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: gvk,
      resource: gvr,
      requestKind: gvk,
      requestResource: gvr,
      name: 'lab-review',
      namespace: 'default',
      operation: 'CREATE',
      userInfo: { username: 'meshfed-lab-test' },
      object: {
        apiVersion: 'cert-manager.io/v1',
        kind: 'Certificate',
        metadata: { name: 'lab-review', namespace: 'default' },
        spec,
      },
      dryRun: false,
    },
  });
}

/** The tests, on a 2-cluster real-pods lab where `meshfed up` ran (the engine suite's, up-suite.ts). */
export function certManagerRealSuite(profile: Profile, labOf: () => Lab): void {
  const V = PROFILE_VERSIONS[profile];
  describe(`cert-manager ${V.certManager} runs in its pods (--pods real, ${profile} profile)`, {
    skip: notRoot,
  }, () => {
    let lab: Lab;
    const kubectl = labBin('kubernetes', V.kubernetes, 'kubectl');
    const k = async (cluster: string, args: string[]) => {
      const r = await execFileBounded(
        kubectl,
        ['--kubeconfig', lab.state.kubeconfig, '--context', cluster, ...args],
        { timeoutMs: 60_000 },
      );
      return { code: r.code, out: r.stdout, err: r.stderr };
    };
    const json = async (cluster: string, args: string[]) => {
      const r = await k(cluster, [...args, '-o', 'json']);
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out);
    };

    before(() => {
      lab = labOf();
    });

    test("the controller, webhook and cainjector are real processes of the lab's build; none runs outside", async () => {
      const status = JSON.parse(
        (await runMeshfed(['lab', 'status', '-o', 'json'], { cwd: lab.parent, env: lab.env })).stdout,
      ) as LabStatus;
      const build = labBinDir('cert-manager', LAB_CERT_MANAGER_VERSION);
      for (const c of lab.state.clusters) {
        const real = status.clusters.find((x) => x.name === c.name)!.realPods!;
        for (const [deployment, container, program] of [
          ['cert-manager', 'cert-manager-controller', 'cert-manager-controller'],
          ['cert-manager-webhook', 'cert-manager-webhook', 'webhook'],
          ['cert-manager-cainjector', 'cert-manager-cainjector', 'cainjector'],
        ] as const) {
          const pod = real.find((p) =>
            new RegExp(`^cert-manager/${deployment}-[a-z0-9]+-[a-z0-9]+$`).test(p.pod),
          );
          assert.ok(pod, `${c.name}: no real pod of ${deployment}: ${real.map((p) => p.pod).join(', ')}`);
          const pid = pod.pids[container];
          assert.ok(pid, `${c.name}: ${pod.pod} has no process for ${container}`);
          const exe = statSync(`/proc/${pid}/exe`);
          const want = statSync(join(build, program));
          assert.deepEqual(
            [exe.dev, exe.ino],
            [want.dev, want.ino],
            `${c.name}: ${container} is not the lab's ${program}`,
          );
          // The argv is the Deployment's (the release's args, $(POD_NAMESPACE) expanded).
          const dep = await json(c.name, ['-n', 'cert-manager', 'get', 'deployment', deployment]);
          const args = (dep.spec.template.spec.containers[0].args as string[]).map((a) =>
            a.replaceAll('$(POD_NAMESPACE)', 'cert-manager'),
          );
          const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(1, -1);
          assert.deepEqual(argv, args, `${c.name}: ${container}'s argv`);
        }
        assert.ok(
          !c.daemons.some((d) => d.name.includes('cert-manager')),
          `${c.name}: a cert-manager daemon runs outside: ${c.daemons.map((d) => d.name).join(', ')}`,
        );
        // Leader election in-cluster, as the release configures it.
        const leases = await json(c.name, ['-n', 'kube-system', 'get', 'leases']);
        const held = new Set(
          (leases.items as Array<{ metadata: { name: string }; spec?: { holderIdentity?: string } }>)
            .filter((l) => l.spec?.holderIdentity)
            .map((l) => l.metadata.name),
        );
        for (const l of ['cert-manager-controller', 'cert-manager-cainjector-leader-election'])
          assert.ok(held.has(l), `${c.name}: lease ${l} not held: ${[...held].join(', ')}`);
      }
    });

    test('the webhook serves from its dynamic CA, which cainjector put into both webhook configurations', async () => {
      for (const c of lab.state.clusters) {
        const secret = await json(c.name, ['-n', 'cert-manager', 'get', 'secret', 'cert-manager-webhook-ca']);
        const ca = Buffer.from(secret.data['ca.crt'], 'base64').toString();
        assert.match(ca, /BEGIN CERTIFICATE/);
        let caBundle = '';
        for (const kind of ['validatingwebhookconfiguration', 'mutatingwebhookconfiguration']) {
          const hook = await json(c.name, ['get', kind, 'cert-manager-webhook']);
          const bundle = Buffer.from(hook.webhooks[0].clientConfig.caBundle ?? '', 'base64').toString();
          assert.equal(bundle.trim(), ca.trim(), `${c.name}: ${kind}'s caBundle is not the webhook's CA`);
          if (kind.startsWith('validating')) caBundle = bundle;
        }
        // From the controller's pod: its network namespace, the webhook
        // Service's ClusterIP (the lab's Service proxy), TLS verified against
        // the caBundle for the Service's name. bash's <(…) keeps the CA off
        // the container's files.
        const ask = (cacert: string, body: string) =>
          k(c.name, [
            '-n',
            'cert-manager',
            'exec',
            'deploy/cert-manager',
            '-c',
            'cert-manager-controller',
            '--',
            '/bin/bash',
            '-c',
            'exec /usr/bin/curl -sS --max-time 20 --cacert <(printf "%s\\n" "$1") -H "Content-Type: application/json" --data "$2" https://cert-manager-webhook.cert-manager.svc/validate',
            '_',
            cacert,
            body,
          ]);
        const good = {
          secretName: 'lab-review',
          dnsNames: ['a.lab.test'],
          issuerRef: { name: 'ca', kind: 'ClusterIssuer' },
        };
        const allowed = await ask(caBundle, certificateReview('good-1', good));
        assert.equal(allowed.code, 0, `${c.name}: ${allowed.err}${allowed.out}`);
        const a = JSON.parse(allowed.out);
        assert.equal(a.response.uid, 'good-1');
        assert.equal(a.response.allowed, true, `${c.name}: ${allowed.out}`);
        // No commonName, dnsNames, URIs, IP or email addresses: cert-manager's validation refuses it.
        const { dnsNames: _none, ...bad } = good;
        const denied = await ask(caBundle, certificateReview('bad-1', bad));
        assert.equal(denied.code, 0, `${c.name}: ${denied.err}${denied.out}`);
        const d = JSON.parse(denied.out);
        assert.equal(d.response.uid, 'bad-1');
        assert.equal(d.response.allowed, false, `${c.name}: ${denied.out}`);
        assert.match(d.response.status.message, /at least one of commonName, dnsNames/);
        // Another CA does not verify the webhook's certificate.
        const otherCa = await runCommand([
          'openssl',
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          '/dev/null',
          '-subj',
          '/CN=not-the-webhook-ca',
          '-days',
          '1',
        ]);
        assert.equal(otherCa.code, 0, otherCa.out);
        const other = await ask(otherCa.out, certificateReview('good-2', good));
        assert.notEqual(other.code, 0, `${c.name}: another CA verified the webhook: ${other.out}`);
        assert.match(other.err, /certificate/i);
      }
    });
  });
}
