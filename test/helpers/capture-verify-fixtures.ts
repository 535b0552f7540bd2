/**
 * Captures test/verify/fixtures from a running lab with real pods (`meshfed
 * lab up` with real istiod, Envoy sidecars, gateways, helloworld and sleep):
 *
 *   npx tsc -p . && node dist/test/helpers/capture-verify-fixtures.js --lab-dir DIR [--out DIR]
 *
 * It reads exactly what `kubeProbe` (src/verify/dataplane.ts) reads, through
 * the API server's exec with meshfed's own client: `sh -c <curlLoop(url, n)>`
 * in the sleep container (its raw stdout, unsplit), and `pilot-agent request
 * GET config_dump?resource=dynamic_active_secrets` and the whole
 * `config_dump` in sleep's istio-proxy container. For each case it sets up a
 * condition on the lab (a Deployment scaled to 0, a Service deleted), polls
 * with a deadline until the condition shows, captures, and restores the
 * condition, also when a step fails or the program is interrupted (SIGINT,
 * SIGTERM); a restore is polled until the data plane is back as before (each
 * cluster's sleep answered by both helloworld versions again). A scaled
 * Deployment gets its replicas and its managedFields' owners back, a deleted
 * Service is re-created as `kubeProbe.withoutLocalService` re-creates it.
 *
 * Nothing is written until every case was captured and restored; then the
 * files and captured.json (capture times, the lab's versions, the fleet's
 * trust domains, each file's exact commands and condition) are written, after
 * checking that no PRIVATE KEY text is in any of them. The README beside them
 * is not written here.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { EAST_WEST_SERVICE } from '../../src/engine/discover.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { type ClusterClient, clientsFor, type KubeObject, type ObjectRef } from '../../src/kube/client.js';
import { labStatus, readLabState } from '../../src/lab/lab.js';
import { APP_NAMESPACES } from '../../src/render/apps.js';
import { ISTIO_NAMESPACE } from '../../src/render/namespaces.js';
import {
  curlLoop,
  dumpSecrets,
  HELLO_URL,
  type HelloTally,
  proxyEndpoints,
  restorable,
  splitRequests,
  tallyHello,
} from '../../src/verify/dataplane.js';
import { REPO_ROOT } from './lab.js';

const HELLOWORLD = APP_NAMESPACES.helloworld;
const SLEEP = APP_NAMESPACES.sleep;
/** The Envoy cluster sleep's requests to helloworld go through (as in dataplane.ts). */
const HELLO_CLUSTER = `outbound|5000||helloworld.${HELLOWORLD}.svc.cluster.local`;
/** Requests per curl capture. */
const REQUESTS = 6;
/** How long a condition (or its undoing) may take to show: pods stopping and starting, istiod pushing. */
const DEADLINE_MS = 240_000;
/** The whole config dump is kept whole below this size, else captured with Envoy's ?mask=. */
const WHOLE_DUMP_MAX = 1_000_000;
/** A name that never resolves (.invalid, RFC 2606): curl's exit 6. */
const UNRESOLVABLE_URL = 'http://nowhere.meshfed.invalid:5000/hello';
/** An address nothing answers on (TEST-NET-1, RFC 5737): the proxy's passthrough connect hangs, curl's exit 28. */
/**
 * A URL nothing answers that stays inside the lab: port 5000 of an address of
 * sleep's own /24 in the pod range that no pod has (.254; the lab numbers pods
 * from the bottom), so sleep's proxy passes the connection through to an
 * address no one holds. Never an address outside the lab's namespaces.
 */
const silentUrl = (sleepIp: string, taken: string[]) => {
  const ip = sleepIp.replace(/\.\d+$/, '.254');
  if (taken.includes(ip)) throw new Error(`${ip} is a pod's address: no silent address to ask`);
  return `http://${ip}:5000/hello`;
};

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const log = (s: string) => process.stderr.write(`${new Date().toISOString()} ${s}\n`);

/**
 * Reads `read` every `everyMs` until `done` holds; throws naming `what` and
 * the last value after `ms`, or after `tries` reads when given.
 */
async function pollUntil<T>(
  what: string,
  read: () => Promise<T>,
  done: (v: T) => boolean,
  o: { ms?: number; everyMs?: number; tries?: number; show?: (v: T) => string } = {},
): Promise<{ value: T; attempts: number }> {
  const ms = o.ms ?? DEADLINE_MS;
  const deadline = Date.now() + ms;
  for (let attempts = 1; ; attempts++) {
    const value = await read();
    if (done(value)) return { value, attempts };
    if (Date.now() >= deadline || attempts >= (o.tries ?? Number.POSITIVE_INFINITY))
      throw new Error(
        `${what}: not within ${ms / 1000} s${o.tries ? ` or ${o.tries} tries` : ''} (${attempts} tries; last: ${o.show ? o.show(value) : JSON.stringify(value)})`,
      );
    await new Promise((r) => setTimeout(r, o.everyMs ?? 2_000));
  }
}

/** One exec as it was run: where, and the exact argv. */
interface ExecRecord {
  cluster: string;
  namespace: string;
  pod: string;
  container: string;
  command: string[];
  at: string;
}

interface FileRecord {
  capturedAt: string;
  condition: string;
  /** The file is the stdout of these execs, concatenated in this order, unchanged. */
  commands: ExecRecord[];
  /** Captures taken until the capture showed the condition (the last one is the file). */
  attempts: number;
  shows: string;
  /**
   * The curl captures: the endpoints (ip:port) sleep's proxy held for
   * helloworld's Envoy cluster, read from its /clusters just after the
   * capture: a local pod's address, a peer's east-west gateway's, or none.
   */
  helloEndpoints?: string[];
  bytes: number;
  sha256: string;
}

/** Restores of the conditions set up, run on failure and on SIGINT/SIGTERM too, newest first. */
const pending: Array<{ what: string; run: () => Promise<void> }> = [];

/**
 * Sets up a condition, runs `during`, and undoes it. `setUp` registers each
 * undo with `undoWith` as soon as its change is made (before it polls for the
 * change to show), so a failure half-way still undoes what was done.
 */
async function withCondition<T>(
  what: string,
  setUp: (undoWith: (u: () => Promise<void>) => void) => Promise<void>,
  during: () => Promise<T>,
): Promise<T> {
  log(`set up: ${what}`);
  const undos: Array<() => Promise<void>> = [];
  const entry = {
    what,
    run: async () => {
      // Newest first; every undo is tried, the first failure reported.
      let failed: unknown;
      for (const u of undos.splice(0).reverse()) await u().catch((e) => (failed ??= e));
      if (failed) throw failed;
    },
  };
  pending.push(entry);
  try {
    await setUp((u) => undos.push(u));
    return await during();
  } finally {
    pending.splice(pending.indexOf(entry), 1);
    log(`restore: ${what}`);
    await entry.run();
  }
}

for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    log(`${sig}: restoring ${pending.length} condition(s) before exiting`);
    void (async () => {
      for (const p of pending.reverse())
        await p.run().catch((e) => log(`restore of ${p.what} failed: ${(e as Error).message}`));
      process.exit(130);
    })();
  });

const tallyText = (t: HelloTally) =>
  `${t.total} request${t.total === 1 ? '' : 's'}: ${
    Object.entries(t.versions)
      .sort()
      .map(([v, n]) => `${v} ${n}`)
      .join(', ') || 'no helloworld answer'
  }${t.errors.length ? `; errors: ${[...new Set(t.errors)].join(' | ')}` : ''}`;

async function main(): Promise<void> {
  const dir = arg('lab-dir') ?? process.env.MESHFED_LAB_DIR;
  if (!dir) throw new Error('give the lab: --lab-dir DIR (or MESHFED_LAB_DIR)');
  const out = resolve(arg('out') ?? join(REPO_ROOT, 'test/verify/fixtures'));
  const state = readLabState(resolve(dir));
  if (!state) throw new Error(`no lab in ${dir} (no lab.json)`);
  if (state.pods !== 'real')
    throw new Error(`the lab in ${dir} runs simulated pods: no data plane to capture`);
  const status = await labStatus(dir);
  if (!status?.healthy) throw new Error(`the lab in ${dir} is not healthy (meshfed lab status --dir ${dir})`);
  const [one, two] = state.clusters;
  if (!one || !two || state.clusters.length !== 2) throw new Error('the capture wants a lab of 2 clusters');
  const clients = clientsFor(
    state.kubeconfig,
    state.clusters.map((c) => c.context),
  );
  const client = (c: { context: string }) => clients.get(c.context)!;
  const startedAt = new Date().toISOString();

  const runningPod = async (c: ClusterClient, namespace: string, selector: string) => {
    // kubeProbe's choice: the first Running pod of the selector.
    const pods = (await c.list('v1', 'Pod', { namespace, labelSelector: selector })).filter(
      (p) => (p.status as { phase?: string } | undefined)?.phase === 'Running',
    );
    if (!pods.length) throw new Error(`${c.context}: no Running pod ${selector} in ${namespace}`);
    return pods[0]!.metadata.name;
  };
  const sleepPods = new Map<string, string>();
  for (const c of state.clusters) sleepPods.set(c.name, await runningPod(client(c), SLEEP, 'app=sleep'));

  /** An exec in cluster `c`'s sleep pod, as kubeProbe runs it: its raw stdout and how it was run. */
  const execSleep = async (
    c: (typeof state.clusters)[number],
    container: 'sleep' | 'istio-proxy',
    command: string[],
    timeoutMs = 60_000,
  ): Promise<{ stdout: string; record: ExecRecord }> => {
    const pod = sleepPods.get(c.name)!;
    const at = new Date().toISOString();
    const r = await client(c).exec({ namespace: SLEEP, name: pod, container }, command, { timeoutMs });
    if (r.code !== 0 && !r.stdout)
      throw new Error(`${c.name}: exec in ${SLEEP}/${pod}/${container}: exit ${r.code}: ${r.stderr.trim()}`);
    return { stdout: r.stdout, record: { cluster: c.name, namespace: SLEEP, pod, container, command, at } };
  };
  const curl = async (c: (typeof state.clusters)[number], url: string, n: number) => {
    const r = await execSleep(c, 'sleep', ['sh', '-c', curlLoop(url, n)], n * 7_000 + 30_000);
    return { ...r, tally: tallyHello(splitRequests(r.stdout)) };
  };
  /**
   * The addresses (ip:port) sleep's proxy in cluster `c` sends helloworld's
   * requests to (Envoy's /clusters). proxyEndpoints also returns the
   * cluster's own lines' keys (observability_name, default_priority, …):
   * only host:port entries are endpoints.
   */
  const helloEndpoints = async (c: (typeof state.clusters)[number]) =>
    proxyEndpoints(
      (await execSleep(c, 'istio-proxy', ['pilot-agent', 'request', 'GET', 'clusters'])).stdout,
      HELLO_CLUSTER,
    ).filter((a) => /^(\d{1,3}\.){3}\d{1,3}:\d+$|^\[[0-9a-f:]+\]:\d+$/i.test(a));
  const readyEndpoints = async (c: ClusterClient, namespace: string, service: string) => {
    const slices = (await c.list('discovery.k8s.io/v1', 'EndpointSlice', {
      namespace,
      labelSelector: `kubernetes.io/service-name=${service}`,
    })) as Array<
      KubeObject & { endpoints?: Array<{ addresses?: string[]; conditions?: { ready?: boolean } }> }
    >;
    return slices.flatMap((s) =>
      (s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).flatMap((e) => e.addresses ?? []),
    );
  };
  const podsOf = async (c: ClusterClient, namespace: string, selector: string) =>
    (await c.list('v1', 'Pod', { namespace, labelSelector: selector })).map((p) => p.metadata.name);

  /** Both helloworld versions answer each cluster's sleep: the lab's normal state, before and after each case. */
  const bothAnswer = async (what: string) => {
    for (const c of state.clusters)
      await pollUntil(
        `${what}: ${c.name}'s sleep answered by v1 and v2`,
        async () => (await curl(c, HELLO_URL, REQUESTS)).tally,
        (t) => !!t.versions.v1 && !!t.versions.v2,
        { show: tallyText },
      );
  };

  /**
   * Scales a Deployment to `replicas`; the returned function puts back its
   * replicas and then its managedFields' owners (the patch made this client
   * own spec.replicas; the owners before are given back, the controller's
   * status entry kept as it is now).
   */
  const scale = async (c: ClusterClient, namespace: string, name: string, replicas: number) => {
    const ref: ObjectRef = { apiVersion: 'apps/v1', kind: 'Deployment', namespace, name };
    const before = await c.get(ref);
    if (!before) throw new Error(`${c.context}: no Deployment ${namespace}/${name}`);
    const was = (before.spec as { replicas?: number }).replicas ?? 1;
    const owners = (before.metadata.managedFields ?? []) as Array<{ subresource?: string }>;
    await c.jsonPatch(ref, [
      { op: 'test', path: '/spec/replicas', value: was },
      { op: 'replace', path: '/spec/replicas', value: replicas },
    ]);
    log(`${c.context}: ${namespace}/${name} scaled ${was} → ${replicas}`);
    return {
      was,
      undo: async () => {
        await c.jsonPatch(ref, [{ op: 'replace', path: '/spec/replicas', value: was }]);
        const now = await c.get(ref);
        const status = ((now?.metadata.managedFields ?? []) as Array<{ subresource?: string }>).filter(
          (m) => m.subresource === 'status',
        );
        await c.jsonPatch(ref, [
          {
            op: 'replace',
            path: '/metadata/managedFields',
            value: [...owners.filter((m) => m.subresource !== 'status'), ...status],
          },
        ]);
        log(`${c.context}: ${namespace}/${name} scaled back to ${was}`);
      },
    };
  };
  const deploymentReady = (c: ClusterClient, namespace: string, name: string, want: number) =>
    pollUntil(
      `${c.context}: ${namespace}/${name} has ${want} ready replicas`,
      async () => {
        const d = await c.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace, name });
        const s = (d?.status ?? {}) as {
          readyReplicas?: number;
          replicas?: number;
          updatedReplicas?: number;
        };
        return { ready: s.readyReplicas ?? 0, replicas: s.replicas ?? 0 };
      },
      (s) => s.ready === want && s.replicas === want,
    );

  const files: Record<string, { text: string; record: Omit<FileRecord, 'bytes' | 'sha256'> }> = {};
  const curlCase = async (
    file: string,
    c: (typeof state.clusters)[number],
    condition: string,
    shows: (t: HelloTally) => boolean,
  ) => {
    const { value, attempts } = await pollUntil(
      `${file}: a capture that shows the condition`,
      () => curl(c, HELLO_URL, REQUESTS),
      (r) => shows(r.tally),
      { show: (r) => tallyText(r.tally), everyMs: 1_000, tries: 20 },
    );
    const held = await helloEndpoints(c);
    files[file] = {
      text: value.stdout,
      record: {
        capturedAt: value.record.at,
        condition,
        commands: [value.record],
        attempts,
        shows: tallyText(value.tally),
        helloEndpoints: held,
      },
    };
    log(
      `${file}: ${tallyText(value.tally)} (${attempts} capture${attempts > 1 ? 's' : ''}); sleep's proxy held ${held.join(', ') || 'no helloworld endpoint'}`,
    );
  };

  log(`lab ${state.dir}: ${state.clusters.map((c) => `${c.name} ${c.trustDomain}`).join(', ')}`);
  await bothAnswer('before the captures');

  // ---- Envoy config dumps of cluster-1's sleep proxy: the lab as it runs ----
  const secrets = await execSleep(one, 'istio-proxy', [
    'pilot-agent',
    'request',
    'GET',
    'config_dump?resource=dynamic_active_secrets',
  ]);
  let whole = await execSleep(one, 'istio-proxy', ['pilot-agent', 'request', 'GET', 'config_dump']);
  let wholeHow = 'the whole config dump, kept whole';
  if (whole.stdout.length > WHOLE_DUMP_MAX) {
    whole = await execSleep(one, 'istio-proxy', [
      'pilot-agent',
      'request',
      'GET',
      'config_dump?mask=dynamic_active_secrets',
    ]);
    wholeHow = `the whole config_dump was over ${WHOLE_DUMP_MAX} bytes: captured with Envoy's ?mask=dynamic_active_secrets (the SecretsConfigDump section only)`;
  }
  for (const [file, d] of [
    ['envoy-secrets-only.json', secrets],
    ['envoy-config-dump.json', whole],
  ] as const) {
    // pilot-agent prints Envoy's refusal (a 400) on stdout too: the capture must be the dump.
    const doc = JSON.parse(d.stdout) as unknown;
    const s = dumpSecrets(d.stdout);
    const svid = s.find((x) => x.name === 'default' && x.chain.length);
    const roots = s.find((x) => x.name === 'ROOTCA');
    if (!svid || !roots?.trustDomains?.length)
      throw new Error(`${file}: no SVID (default) or no trusted bundles (ROOTCA) in the dump`);
    const keys = JSON.stringify(doc).match(/"private_key":\{"inline_bytes":"[^"]*"\}/g) ?? [];
    if (!keys.length || keys.some((k) => !k.includes(Buffer.from('[redacted]').toString('base64'))))
      throw new Error(`${file}: a private key is not shown as [redacted]`);
    files[file] = {
      text: d.stdout,
      record: {
        capturedAt: d.record.at,
        condition: `none: the lab as it runs (${file === 'envoy-config-dump.json' ? wholeHow : 'the form kubeProbe.configDump fetches'})`,
        commands: [d.record],
        attempts: 1,
        shows: `secret default: ${svid.chain[0]!.uriSans.join(', ')} (chain of ${svid.chain.length}); ROOTCA: ${roots.trustDomains
          .map((t) => `${t.name} (${t.certs.length} root${t.certs.length > 1 ? 's' : ''})`)
          .join(', ')}`,
      },
    };
    log(`${file}: ${d.stdout.length} bytes; ${files[file]!.record.shows}`);
  }
  const node = (
    JSON.parse(whole.stdout) as {
      configs: Array<{
        '@type': string;
        bootstrap?: {
          node?: {
            metadata?: { ISTIO_VERSION?: string };
            user_agent_build_version?: {
              version?: { major_number?: number; minor_number?: number; patch?: number };
              metadata?: Record<string, string>;
            };
          };
        };
      }>;
    }
  ).configs.find((c) => c['@type'].endsWith('BootstrapConfigDump'))?.bootstrap?.node;

  // ---- curl-east-west.txt: the lab as it runs ----
  await curlCase(
    'curl-east-west.txt',
    one,
    `none: the lab as it runs; ${one.name}'s sleep to ${HELLO_URL}, re-captured until both v1 (${one.name}) and v2 (${two.name}) answered with no error`,
    (t) => !!t.versions.v1 && !!t.versions.v2 && !t.errors.length,
  );

  // ---- curl-local-only.txt: cluster-2's east-west gateway scaled to 0 ----
  const ew = EAST_WEST_SERVICE;
  await withCondition(
    `${two.name}'s east-west gateway ${ew.namespace}/${ew.name} scaled to 0`,
    async (undoWith) => {
      const s = await scale(client(two), ew.namespace, ew.name, 0);
      undoWith(async () => {
        await s.undo();
        await deploymentReady(client(two), ew.namespace, ew.name, s.was);
        await pollUntil(
          `${two.name}'s east-west gateway Service has a ready endpoint again`,
          () => readyEndpoints(client(two), ew.namespace, ew.name),
          (a) => a.length > 0,
        );
        await bothAnswer(`after ${two.name}'s east-west gateway came back`);
      });
      await pollUntil(
        `${two.name}'s east-west gateway has no pod and no ready endpoint`,
        async () => ({
          pods: await podsOf(client(two), ew.namespace, 'app=istio-eastwestgateway'),
          endpoints: await readyEndpoints(client(two), ew.namespace, ew.name),
        }),
        (x) => !x.pods.length && !x.endpoints.length,
      );
    },
    () =>
      curlCase(
        'curl-local-only.txt',
        one,
        `${two.name}'s east-west gateway Deployment ${ew.namespace}/${ew.name} scaled to 0 replicas, polled until it had no pod and its Service no ready endpoint; ${one.name}'s sleep to ${HELLO_URL}, re-captured until v2 no longer answered; then scaled back and polled until both versions answered again`,
        (t) => !!t.versions.v1 && !t.versions.v2,
      ),
  );

  // ---- curl-failover.txt: cluster-1's helloworld Service deleted ----
  const svcRef: ObjectRef = { apiVersion: 'v1', kind: 'Service', namespace: HELLOWORLD, name: 'helloworld' };
  await withCondition(
    `${one.name}'s helloworld Service deleted`,
    async (undoWith) => {
      const svc = await client(one).get(svcRef);
      if (!svc) throw new Error(`${one.name}: no helloworld Service to delete`);
      const local = await readyEndpoints(client(one), HELLOWORLD, 'helloworld');
      if (!local.length) throw new Error(`${one.name}: helloworld has no ready endpoint`);
      const held = async () => (await helloEndpoints(one)).filter((a) => local.includes(a.split(':')[0]!));
      undoWith(async () => {
        // Re-created as kubeProbe.withoutLocalService does: what meshfed's apply set in it.
        await client(one).apply(restorable(svc));
        log(`${one.name}: Service ${HELLOWORLD}/helloworld re-created`);
        await pollUntil(
          `${one.name}'s sleep proxy sends to the local helloworld again`,
          held,
          (a) => a.length === local.length,
        );
        await bothAnswer(`after ${one.name}'s helloworld Service came back`);
      });
      await client(one).delete(svcRef);
      log(`${one.name}: Service ${HELLOWORLD}/helloworld deleted`);
      // istiod takes the local endpoints out of sleep's proxy (as kubeProbe.withoutLocalService waits).
      await pollUntil(`${one.name}'s sleep proxy drops the local helloworld`, held, (a) => !a.length);
    },
    () =>
      curlCase(
        'curl-failover.txt',
        one,
        `${one.name}'s helloworld Service (${HELLOWORLD}/helloworld) deleted, polled until sleep's proxy no longer held the local helloworld endpoint; ${one.name}'s sleep to ${HELLO_URL}, re-captured until only v2 answered with no error; the Service then re-created as kubeProbe.withoutLocalService does (its metadata without resourceVersion, uid, creationTimestamp, managedFields; its spec without clusterIP, clusterIPs) and polled until the proxy held the local endpoint again`,
        (t) => !!t.versions.v2 && !t.versions.v1 && !t.errors.length,
      ),
  );

  // ---- curl-errors.txt: helloworld scaled to 0 in both clusters, and two URLs curl itself fails on ----
  const hello = state.clusters.map((c, i) => ({ c, name: `helloworld-v${i + 1}` }));
  await withCondition(
    `helloworld scaled to 0 in ${state.clusters.map((c) => c.name).join(' and ')}`,
    async (undoWith) => {
      // Undone last: every helloworld back, then both versions answer both sleeps.
      undoWith(() => bothAnswer('after helloworld came back'));
      for (const h of hello) {
        const s = await scale(client(h.c), HELLOWORLD, h.name, 0);
        undoWith(async () => {
          await s.undo();
          await deploymentReady(client(h.c), HELLOWORLD, h.name, s.was);
        });
      }
      await pollUntil(
        `no helloworld pod in either cluster, and ${one.name}'s sleep proxy holds no helloworld endpoint`,
        async () => ({
          pods: (
            await Promise.all(hello.map((h) => podsOf(client(h.c), HELLOWORLD, 'app=helloworld')))
          ).flat(),
          endpoints: await helloEndpoints(one),
        }),
        (x) => !x.pods.length && !x.endpoints.length,
      );
    },
    async () => {
      const { value, attempts } = await pollUntil(
        'curl-errors.txt: no helloworld answer',
        () => curl(one, HELLO_URL, 4),
        (r) => !Object.keys(r.tally.versions).length,
        { show: (r) => tallyText(r.tally), tries: 20 },
      );
      const unresolvable = await curl(one, UNRESOLVABLE_URL, 1);
      const pods = await client(one).list('v1', 'Pod');
      const ipOf = (p: KubeObject) => (p.status as { podIP?: string } | undefined)?.podIP ?? '';
      const sleepPod = pods.find((p) => p.metadata.name === sleepPods.get(one.name))!;
      const BLACKHOLE_URL = silentUrl(ipOf(sleepPod), pods.map(ipOf));
      const blackhole = await curl(one, BLACKHOLE_URL, 1);
      const all = [value, unresolvable, blackhole];
      files['curl-errors.txt'] = {
        text: all.map((r) => r.stdout).join(''),
        record: {
          capturedAt: value.record.at,
          condition: `helloworld-v1 (${one.name}) and helloworld-v2 (${two.name}) scaled to 0 replicas, polled until neither had a pod and ${one.name}'s sleep proxy held no endpoint of ${HELLO_CLUSTER}; then, in that state, 3 loops from ${one.name}'s sleep, their outputs concatenated in this order: 4 requests to ${HELLO_URL}, 1 to ${UNRESOLVABLE_URL} (a name under .invalid, which never resolves), 1 to ${BLACKHOLE_URL} (an address of sleep's /24 in the lab's pod range that no pod has: sleep's proxy passes the connection through to it); then both scaled back and polled until both versions answered again`,
          commands: all.map((r) => r.record),
          attempts,
          shows: all.map((r) => tallyText(r.tally)).join(' + '),
          helloEndpoints: await helloEndpoints(one),
        },
      };
      log(`curl-errors.txt: ${files['curl-errors.txt'].record.shows}`);
    },
  );

  // ---- the lab as it was ----
  await bothAnswer('after the captures');
  for (const c of state.clusters) {
    const pod = await runningPod(client(c), SLEEP, 'app=sleep');
    if (pod !== sleepPods.get(c.name)) throw new Error(`${c.name}: sleep's pod changed during the capture`);
  }

  // ---- write ----
  const istiod = Object.fromEntries(
    await Promise.all(
      state.clusters.map(async (c) => {
        const d = await client(c).get({
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          namespace: ISTIO_NAMESPACE,
          name: 'istiod',
        });
        const spec = d?.spec as { template?: { spec?: { containers?: Array<{ image?: string }> } } };
        return [c.name, spec?.template?.spec?.containers?.[0]?.image ?? '?'];
      }),
    ),
  );
  const v = node?.user_agent_build_version?.version;
  const captured = {
    capturedBy:
      'test/helpers/capture-verify-fixtures.ts: npx tsc -p . && node dist/test/helpers/capture-verify-fixtures.js --lab-dir DIR',
    capturedAt: startedAt,
    finishedAt: new Date().toISOString(),
    lab: { dir: state.dir, profile: state.profile, pods: state.pods, createdAt: state.createdAt },
    versions: {
      kubernetes: status.versions.kubernetes,
      apiServers: Object.fromEntries(
        await Promise.all(state.clusters.map(async (c) => [c.name, await client(c).version()])),
      ),
      istio: PROFILE_VERSIONS[state.profile].istio,
      istiod,
      istioProxyBuild: node?.metadata?.ISTIO_VERSION ?? '?',
      envoy: v ? `${v.major_number ?? 0}.${v.minor_number ?? 0}.${v.patch ?? 0}` : '?',
      envoyRevision: node?.user_agent_build_version?.metadata?.['revision.sha'] ?? '?',
      spire: status.versions.spire,
      certManager: status.versions.certManager,
      registrar: status.versions.registrar,
      kwok: status.versions.kwok,
      from: "kubernetes, spire, certManager, registrar, kwok: `meshfed lab status -o json` (labStatus); apiServers: GET /version; istio: the profile's release (src/fleet/versions.ts), istiod: the image istiod's Deployment runs; istioProxyBuild: ISTIO_VERSION in the node metadata of sleep's proxy (the lab's build, docs/lab.md); envoy, envoyRevision: user_agent_build_version in the same bootstrap (envoy-config-dump.json)",
    },
    trustDomains: Object.fromEntries(state.clusters.map((c) => [c.name, c.trustDomain])),
    files: {} as Record<string, FileRecord>,
  };
  for (const [file, f] of Object.entries(files))
    captured.files[file] = {
      ...f.record,
      bytes: Buffer.byteLength(f.text),
      sha256: createHash('sha256').update(f.text).digest('hex'),
    };
  const written: Record<string, string> = {
    ...Object.fromEntries(Object.entries(files).map(([k, f]) => [k, f.text])),
    'captured.json': `${JSON.stringify(captured, null, 2)}\n`,
  };
  for (const [file, text] of Object.entries(written))
    if (/PRIVATE KEY/.test(text)) throw new Error(`${file} holds PRIVATE KEY text: not written`);
  mkdirSync(out, { recursive: true });
  for (const [file, text] of Object.entries(written)) {
    writeFileSync(join(out, file), text);
    log(`wrote ${join(out, file)} (${Buffer.byteLength(text)} bytes)`);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    log(`capture failed: ${(e as Error).stack ?? e}`);
    process.exit(1);
  },
);
