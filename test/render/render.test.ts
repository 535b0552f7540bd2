import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { stringify } from 'yaml';
import { defaultFleet, parseFleet } from '../../src/fleet/load.js';
import type { Fleet } from '../../src/fleet/model.js';
import { issuanceOrder } from '../../src/render/cert-manager.js';
import { renderFleet } from '../../src/render/index.js';
import type { FleetRender, KubeObject } from '../../src/render/types.js';

const ENDPOINTS2 = { 'cluster-1': '203.0.113.10:8443', 'cluster-2': 'spire.bar.example:8443' };
export const FOUR = parseFleet(`apiVersion: meshfed.dev/v1alpha1
kind: Fleet
spec:
  clusters: [{name: east}, {name: west}, {name: north}, {name: south, bundleEndpoint: {type: NodePort, nodePort: 30843}}]
  federation: {mode: pairs, pairs: [[east, west], [west, north], [north, south]]}
`);
const ENDPOINTS4 = {
  east: 'e.example:8443',
  west: 'w.example:8443',
  north: 'n.example:8443',
  south: '198.51.100.4:30843',
};

function objects(r: FleetRender, cluster: string, phase?: string): KubeObject[] {
  const c = r.clusters.find((x) => x.cluster === cluster)!;
  return c.phases
    .filter((p) => !phase || p.phase === phase)
    .flatMap((p) => [...p.objects, ...p.generatorInputs]);
}
const find = (objs: KubeObject[], kind: string, name?: string) =>
  objs.filter((o) => o.kind === kind && (!name || o.metadata.name === name));

/** Everything a cluster says it federates with, read back from the rendered objects. */
function federatedDomains(r: FleetRender, fleet: Fleet, cluster: string) {
  const objs = objects(r, cluster);
  const serverConf = String(
    (find(objs, 'ConfigMap', 'spire-server')[0]!.data as Record<string, string>)['server.conf'],
  );
  const spire =
    fleet.profile === 'seed'
      ? [...serverConf.matchAll(/federates_with "([^"]+)"/g)].map((m) => m[1]!)
      : find(objs, 'ClusterFederatedTrustDomain').map((o) => (o.spec as { trustDomain: string }).trustDomain);
  const op = find(objs, 'IstioOperator')[0]!.spec as { meshConfig: { trustDomainAliases: string[] } };
  const workloads = new Set<string>();
  for (const o of objs) {
    if (o.kind === 'ClusterSPIFFEID')
      for (const td of (o.spec as { federatesWith: string[] }).federatesWith) workloads.add(td);
    const ann = (o.spec as { template?: { metadata?: { annotations?: Record<string, string> } } } | undefined)
      ?.template?.metadata?.annotations;
    const fw = ann?.['spiffe.io/federatesWith'];
    if (fw) for (const td of fw.split(',')) workloads.add(td);
  }
  return {
    spire: spire.sort(),
    aliases: [...op.meshConfig.trustDomainAliases].sort(),
    workloads: [...workloads].sort(),
  };
}

const CASES: Array<[string, Fleet, Record<string, string>]> = [
  ['default current', defaultFleet(), ENDPOINTS2],
  ['default seed', defaultFleet({ profile: 'seed' }), ENDPOINTS2],
  ['four clusters, listed pairs', FOUR, ENDPOINTS4],
  [
    'four clusters, seed',
    { ...FOUR, profile: 'seed', versions: defaultFleet({ profile: 'seed' }).versions },
    ENDPOINTS4,
  ],
];

describe('cross-cluster invariants', () => {
  for (const [name, fleet, endpoints] of CASES) {
    test(`${name}: SPIRE federation, Istio aliases and workload federatesWith name exactly the peers`, () => {
      const r = renderFleet(fleet, { bundleEndpoints: endpoints });
      for (const c of fleet.clusters) {
        const peers = fleet.federation.pairs
          .filter((p) => p.includes(c.name))
          .map((p) => fleet.clusters.find((x) => x.name === (p[0] === c.name ? p[1] : p[0]))!.trustDomain)
          .sort();
        const got = federatedDomains(r, fleet, c.name);
        assert.deepEqual(got, { spire: peers, aliases: peers, workloads: peers }, `cluster ${c.name}`);
        // symmetric: every peer names this cluster back
        for (const td of peers) {
          const peer = fleet.clusters.find((x) => x.trustDomain === td)!;
          assert.ok(federatedDomains(r, fleet, peer.name).spire.includes(c.trustDomain));
        }
      }
      assert.equal(r.clusters.flatMap((c) => c.phases.flatMap((p) => p.pending)).length, 0);
    });
  }
});

describe('rendered output', () => {
  for (const [name, fleet, endpoints] of CASES) {
    const r = renderFleet(fleet, { bundleEndpoints: endpoints });
    const text = stringify(r);
    test(`${name}: deterministic`, () =>
      assert.equal(stringify(renderFleet(fleet, { bundleEndpoints: endpoints })), text));
    test(`${name}: no placeholder, no doubled port, no unpinned image`, () => {
      assert.doesNotMatch(text, /<[a-z_]+>|TODO|PLACEHOLDER/);
      assert.doesNotMatch(text, /:\d+:\d+/);
      for (const m of text.matchAll(/image: (\S+)/g))
        assert.match(m[1]!, /:[\w.-]+$/, `unpinned image ${m[1]}`);
      assert.doesNotMatch(text, /:latest\b/);
    });
    test(`${name}: RBAC has no wildcard and the SPIRE server API is not exposed`, () => {
      for (const c of r.clusters) {
        const objs = objects(r, c.cluster);
        for (const role of objs.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole'))
          for (const rule of role.rules as Array<Record<string, string[]>>)
            for (const field of ['verbs', 'resources', 'apiGroups'])
              assert.ok(!rule[field]!.includes('*'), `${role.metadata.name} ${field}`);
        assert.equal((find(objs, 'Service', 'spire-server')[0]!.spec as { type: string }).type, 'ClusterIP');
        assert.doesNotMatch(JSON.stringify(objs), /skip_kubelet_verification/);
      }
    });
    test(`${name}: every object carries meshfed ownership labels`, () => {
      for (const c of r.clusters)
        for (const p of c.phases)
          for (const o of p.objects) {
            assert.equal(o.metadata.labels?.['app.kubernetes.io/managed-by'], 'meshfed');
            assert.equal(o.metadata.labels?.['meshfed.dev/phase'], p.phase);
          }
    });
  }
});

test('server.conf names the cluster in k8s_psat and its own trust domain; the bundle endpoint Service follows the fleet', () => {
  const r = renderFleet(FOUR, { bundleEndpoints: ENDPOINTS4 });
  const south = objects(r, 'south');
  const conf = (find(south, 'ConfigMap', 'spire-server')[0]!.data as Record<string, string>)['server.conf']!;
  assert.match(conf, /trust_domain = "south\.multi-mesh"/);
  assert.match(conf, /clusters = \{\s+"south" = \{/);
  assert.match(conf, /UpstreamAuthority "cert-manager"/);
  const be = find(south, 'Service', 'spire-server-bundle-endpoint')[0]!.spec as {
    type: string;
    ports: Array<{ nodePort?: number }>;
  };
  assert.deepEqual([be.type, be.ports[0]!.nodePort], ['NodePort', 30843]);
  const cftd = find(objects(r, 'north'), 'ClusterFederatedTrustDomain').map(
    (o) => (o.spec as { bundleEndpointURL: string }).bundleEndpointURL,
  );
  assert.deepEqual(cftd.sort(), ['https://198.51.100.4:30843', 'https://w.example:8443']);
});

test('a missing peer address holds back exactly the objects that need it', () => {
  const seed = renderFleet(defaultFleet({ profile: 'seed' }), {
    bundleEndpoints: { 'cluster-1': '203.0.113.10:8443' },
  });
  const c2 = seed.clusters[1]!.phases.find((p) => p.phase === 'spire')!;
  assert.ok(
    find(c2.objects, 'StatefulSet', 'spire-server').length === 1,
    'cluster-2 knows cluster-1’s address',
  );
  const c1 = seed.clusters[0]!.phases.find((p) => p.phase === 'spire')!;
  assert.equal(find(c1.objects, 'StatefulSet', 'spire-server').length, 0);
  assert.deepEqual(c1.pending, [
    {
      cluster: 'cluster-2',
      what: 'bundle endpoint address',
      heldBack: ['ConfigMap/spire/spire-server', 'StatefulSet/spire/spire-server'],
    },
  ]);
  assert.equal(
    find(c1.objects, 'Service', 'spire-server-bundle-endpoint').length,
    1,
    'the Service to discover is still rendered',
  );
});

test('the server restarts when, and only when, its config changes', () => {
  const hash = (endpoints: Record<string, string>) => {
    const r = renderFleet(defaultFleet({ profile: 'seed' }), { bundleEndpoints: endpoints });
    const sts = find(objects(r, 'cluster-1'), 'StatefulSet', 'spire-server')[0]!;
    return (sts.spec as { template: { metadata: { annotations: Record<string, string> } } }).template.metadata
      .annotations['meshfed.dev/config-sha256'];
  };
  assert.equal(hash(ENDPOINTS2), hash({ ...ENDPOINTS2 }));
  assert.notEqual(hash(ENDPOINTS2), hash({ ...ENDPOINTS2, 'cluster-2': '203.0.113.99:8443' }));
});

test('the spire injection template targets native sidecars from Istio 1.27 on', () => {
  const tmpl = (f: Fleet) => {
    const op = find(
      objects(renderFleet(f, { bundleEndpoints: ENDPOINTS2 }), 'cluster-1'),
      'IstioOperator',
    )[0]!;
    return (op.spec as { values: { sidecarInjectorWebhook: { templates: { spire: string } } } }).values
      .sidecarInjectorWebhook.templates.spire;
  };
  assert.match(tmpl(defaultFleet({ profile: 'seed' })), /^ {2}containers:\n {2}- name: istio-proxy/m);
  assert.match(tmpl(defaultFleet()), /^ {2}initContainers:\n {2}- name: istio-proxy/m);
  const at127 = defaultFleet();
  at127.versions = { ...at127.versions, istio: '1.27.0' };
  assert.match(tmpl(at127), /initContainers/);
});

test('helloworld: one Service everywhere, a distinct version per cluster; bookinfo only where asked', () => {
  const r = renderFleet(FOUR, { bundleEndpoints: ENDPOINTS4 });
  const versions = FOUR.clusters.map(
    (c) =>
      find(objects(r, c.name, 'apps'), 'Deployment').find((d) => d.metadata.name.startsWith('helloworld-'))!
        .metadata.name,
  );
  assert.deepEqual(versions, ['helloworld-v1', 'helloworld-v2', 'helloworld-v3', 'helloworld-v4']);
  const svcs = FOUR.clusters.map((c) =>
    JSON.stringify(find(objects(r, c.name, 'apps'), 'Service', 'helloworld')[0]!.spec),
  );
  assert.equal(new Set(svcs).size, 1);
  const withBookinfo = FOUR.clusters
    .filter((c) => find(objects(r, c.name, 'apps'), 'Deployment', 'productpage-v1').length > 0)
    .map((c) => c.name);
  assert.deepEqual(withBookinfo, ['west']);
});

test("cert-manager's objects in issuance order: the root CA with its self-signed issuer, then the CA issuer on its secret with what it issues", () => {
  const r = renderFleet(defaultFleet({ profile: 'current' }), { bundleEndpoints: ENDPOINTS2 });
  const names = (g: KubeObject[]) => g.map((o) => `${o.kind} ${o.metadata.name}`);
  const groups = issuanceOrder(objects(r, 'cluster-1', 'cert-manager')).map(names);
  assert.deepEqual(groups, [
    ['Issuer selfsigned', 'Certificate selfsigned-ca'],
    ['ClusterIssuer selfsigned-ca', 'Certificate cacerts'],
  ]);
  // The order is read from the references, not the list: reversed, it is the same.
  const reversed = [...objects(r, 'cluster-1', 'cert-manager')].reverse();
  assert.deepEqual(
    issuanceOrder(reversed).map(names),
    groups.map((g) => [...g].reverse()),
  );
  // A CA issuer whose secret no Certificate here writes waits for nothing; other kinds come first.
  const lone: KubeObject[] = [
    {
      apiVersion: 'cert-manager.io/v1',
      kind: 'ClusterIssuer',
      metadata: { name: 'ext' },
      spec: { ca: { secretName: 'byo' } },
    },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: 'cert-manager' } },
  ];
  assert.deepEqual(issuanceOrder(lone).map(names), [['ClusterIssuer ext', 'ConfigMap x']]);
});

test('SPIRE server, agent and controller manager are probed every second until they first answer ready', () => {
  for (const profile of ['current', 'seed'] as const) {
    const r = renderFleet(defaultFleet({ profile }), { bundleEndpoints: ENDPOINTS2 });
    const spire = objects(r, 'cluster-1', 'spire');
    const containers = [
      ...find(spire, 'StatefulSet', 'spire-server'),
      ...find(spire, 'DaemonSet', 'spire-agent'),
    ].flatMap(
      (o) =>
        (o.spec as { template: { spec: { containers: Array<Record<string, unknown>> } } }).template.spec
          .containers,
    );
    for (const c of containers) {
      // The seed's k8s-workload-registrar and the CSI driver's containers serve no health endpoint.
      if (!c.readinessProbe) continue;
      const startup = c.startupProbe as { periodSeconds: number; failureThreshold: number; httpGet: unknown };
      const ready = c.readinessProbe as { httpGet: unknown };
      assert.ok(startup, `${profile}: ${c.name} has no startup probe`);
      assert.equal(startup.periodSeconds, 1, `${profile}: ${c.name}`);
      assert.ok(startup.failureThreshold >= 30, `${profile}: ${c.name} gives up too soon`);
      assert.deepEqual(
        startup.httpGet,
        ready.httpGet,
        `${profile}: ${c.name} probes another endpoint at startup`,
      );
    }
    assert.deepEqual(
      containers.filter((c) => c.startupProbe).map((c) => c.name),
      profile === 'current'
        ? ['spire-server', 'spire-controller-manager', 'spire-agent']
        : ['spire-server', 'spire-agent'],
    );
  }
});
