import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { defaultFleet, loadFleetText } from '../../src/fleet/load.js';
import { fleetTemplate } from '../../src/fleet/template.js';

const HEAD = 'apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\n';
const TWO = `  clusters:
  - name: cluster-1
    trustDomain: foo.com
  - name: cluster-2
    trustDomain: bar.com
`;

/** [case name, file text, expected message fragment, expected line, expected col] */
const BAD: Array<[string, string, RegExp, number, number]> = [
  ['yaml syntax', `${HEAD}spec:\n  meshID: [unclosed\n`, /YAML/, 5, 1],
  ['duplicate yaml key', `${HEAD}spec:\n  meshID: a\n  meshID: b\n`, /YAML: Map keys must be unique/, 5, 3],
  ['wrong apiVersion', 'apiVersion: meshfed.dev/v1\nkind: Fleet\n', /invalid value for apiVersion/, 1, 13],
  ['wrong kind', 'apiVersion: meshfed.dev/v1alpha1\nkind: Mesh\n', /invalid value for kind/, 2, 7],
  [
    'missing kind',
    'apiVersion: meshfed.dev/v1alpha1\n',
    /missing required field "kind"|invalid value for kind/,
    1,
    1,
  ],
  ['top-level unknown key', `${HEAD}specs: {}\n`, /unknown key "specs"/, 3, 1],
  ['spec unknown key', `${HEAD}spec:\n  meshId: x\n`, /unknown key "meshId"/, 4, 3],
  [
    'cluster unknown key',
    `${HEAD}spec:\n  clusters:\n  - name: a\n    trustdomain: a.com\n  - name: b\n`,
    /unknown key "trustdomain"/,
    6,
    5,
  ],
  ['clusters not a list', `${HEAD}spec:\n  clusters: cluster-1\n`, /wrong type for clusters/, 4, 13],
  ['meshID a number', `${HEAD}spec:\n  meshID: 7\n`, /wrong type for meshID/, 4, 11],
  ['bad profile', `${HEAD}spec:\n  profile: latest\n`, /invalid value for profile/, 4, 12],
  [
    'bad exposure type',
    `${HEAD}spec:\n  clusters:\n  - name: a\n    bundleEndpoint: {type: Ingress}\n  - name: b\n`,
    /invalid value for type/,
    6,
    28,
  ],
  [
    'nodePort not an integer',
    `${HEAD}spec:\n  clusters:\n  - name: a\n    bundleEndpoint: {type: NodePort, nodePort: 3.5}\n  - name: b\n`,
    /nodePort|expected int/i,
    6,
    48,
  ],
  ['one cluster', `${HEAD}spec:\n  clusters:\n  - name: a\n`, /at least two clusters/, 5, 3],
  ['uppercase cluster name', `${HEAD}spec:\n${TWO.replace('cluster-1', 'Cluster-1')}`, /DNS-1123/, 5, 11],
  ['cluster name too long', `${HEAD}spec:\n${TWO.replace('cluster-1', 'c'.repeat(64))}`, /at most 63/, 5, 11],
  [
    'cluster name with underscore',
    `${HEAD}spec:\n${TWO.replace('cluster-1', 'cluster_1')}`,
    /DNS-1123/,
    5,
    11,
  ],
  [
    'network not DNS-1123',
    `${HEAD}spec:\n${TWO}    network: Bar.Net\n`,
    /network name must be a DNS-1123/,
    9,
    14,
  ],
  [
    'trust domain with scheme',
    `${HEAD}spec:\n${TWO.replace('foo.com', 'spiffe://foo.com')}`,
    /without the spiffe:\/\/ scheme/,
    6,
    18,
  ],
  ['trust domain uppercase', `${HEAD}spec:\n${TWO.replace('foo.com', 'Foo.com')}`, /lowercase/, 6, 18],
  ['trust domain with port', `${HEAD}spec:\n${TWO.replace('foo.com', 'foo.com:8443')}`, /port/, 6, 18],
  ['trust domain with path', `${HEAD}spec:\n${TWO.replace('foo.com', 'foo.com/ns')}`, /path/, 6, 18],
  [
    'trust domain bad char',
    `${HEAD}spec:\n${TWO.replace('foo.com', 'foo+bar.com')}`,
    /may contain only/,
    6,
    18,
  ],
  ['trust domain empty', `${HEAD}spec:\n${TWO.replace('foo.com', '""')}`, /must not be empty/, 6, 18],
  [
    'duplicate cluster name',
    `${HEAD}spec:\n${TWO.replace('cluster-2', 'cluster-1')}`,
    /duplicate name "cluster-1": clusters\[0\]/,
    7,
    11,
  ],
  [
    'duplicate trust domain',
    `${HEAD}spec:\n${TWO.replace('bar.com', 'foo.com')}`,
    /duplicate trustDomain "foo.com"/,
    8,
    18,
  ],
  [
    'duplicate context',
    `${HEAD}spec:\n${TWO}    context: cluster-1\n`,
    /duplicate context "cluster-1"/,
    9,
    14,
  ],
  [
    'duplicate network',
    `${HEAD}spec:\n  clusters:\n  - name: a\n    network: n1\n  - name: b\n    network: n1\n`,
    /duplicate network "n1"/,
    8,
    14,
  ],
  [
    'pairs with full-mesh',
    `${HEAD}spec:\n${TWO}  federation:\n    pairs: [[cluster-1, cluster-2]]\n`,
    /only read with mode: pairs/,
    10,
    12,
  ],
  [
    'pairs mode without pairs',
    `${HEAD}spec:\n${TWO}  federation:\n    mode: pairs\n`,
    /needs at least one pair/,
    10,
    11,
  ],
  [
    'pair with unknown cluster',
    `${HEAD}spec:\n${TWO}  federation:\n    mode: pairs\n    pairs: [[cluster-1, cluster-9]]\n`,
    /unknown cluster "cluster-9"/,
    11,
    25,
  ],
  [
    'pair with itself',
    `${HEAD}spec:\n${TWO}  federation:\n    mode: pairs\n    pairs: [[cluster-1, cluster-1]]\n`,
    /cannot federate with itself/,
    11,
    13,
  ],
  [
    'pair of three',
    `${HEAD}spec:\n${TWO}  federation:\n    mode: pairs\n    pairs: [[cluster-1, cluster-2, cluster-1]]\n`,
    /exactly two clusters/,
    11,
    13,
  ],
  [
    'duplicate pair',
    `${HEAD}spec:\n${TWO}  federation:\n    mode: pairs\n    pairs: [[cluster-1, cluster-2], [cluster-2, cluster-1]]\n`,
    /listed twice/,
    11,
    37,
  ],
  ['bad port', `${HEAD}spec:\n  federation:\n    bundleEndpointPort: 70000\n`, /not a TCP port/, 5, 25],
  [
    'bad refresh hint',
    `${HEAD}spec:\n  federation:\n    refreshHint: 5 minutes\n`,
    /not a Go duration/,
    5,
    18,
  ],
  [
    'renewBefore ≥ duration',
    `${HEAD}spec:\n  ca:\n    istio: {duration: 360h, renewBefore: 360h}\n`,
    /renewBefore must be shorter/,
    5,
    42,
  ],
  [
    'root renewBefore too long',
    `${HEAD}spec:\n  ca:\n    root:\n      duration: 100h\n      renewBefore: 200h\n`,
    /renewBefore must be shorter/,
    7,
    20,
  ],
  ['duration days unit', `${HEAD}spec:\n  ca:\n    root: {duration: 900d}\n`, /not a Go duration/, 5, 22],
  [
    'negative-looking duration',
    `${HEAD}spec:\n  ca:\n    spire: {caTTL: -24h}\n`,
    /not a Go duration/,
    5,
    20,
  ],
  [
    'svid ttl too close to ca ttl',
    `${HEAD}spec:\n  ca:\n    spire: {caTTL: 24h, svidTTL: 12h}\n`,
    /SVID TTL too close to the SPIRE CA TTL/,
    5,
    34,
  ],
  [
    'istio CA outlives root',
    `${HEAD}spec:\n  ca:\n    root: {duration: 100h, renewBefore: 10h}\n    istio: {duration: 200h, renewBefore: 10h}\n`,
    /outlive the root/,
    6,
    23,
  ],
  [
    'spire CA outlives root',
    `${HEAD}spec:\n  ca:\n    root: {duration: 10h, renewBefore: 1h}\n    istio: {duration: 5h, renewBefore: 1h}\n    spire: {caTTL: 24h}\n`,
    /outlive the root/,
    7,
    20,
  ],
  [
    'nodePort with LoadBalancer',
    `${HEAD}spec:\n  clusters:\n  - name: a\n    bundleEndpoint: {nodePort: 30843}\n  - name: b\n`,
    /only valid with type NodePort/,
    6,
    32,
  ],
  [
    'nodePort out of range',
    `${HEAD}spec:\n  clusters:\n  - name: a\n    eastWestGateway: {type: NodePort, nodePort: 80}\n  - name: b\n`,
    /outside the default NodePort range/,
    6,
    49,
  ],
  [
    'address with scheme',
    `${HEAD}spec:\n  clusters:\n  - name: a\n    bundleEndpoint: {address: "https://x:8443"}\n  - name: b\n`,
    /host or host:port/,
    6,
    31,
  ],
  [
    'bookinfo unknown cluster',
    `${HEAD}spec:\n  apps:\n    bookinfo: {clusters: [nowhere]}\n`,
    /bookinfo names unknown cluster "nowhere"/,
    5,
    27,
  ],
  ['apps unknown key', `${HEAD}spec:\n  apps:\n    hello: {enabled: true}\n`, /unknown key "hello"/, 5, 5],
  [
    'enabled not boolean',
    `${HEAD}spec:\n  apps:\n    sleep: {enabled: "yes"}\n`,
    /wrong type for enabled/,
    5,
    22,
  ],
  [
    'seed profile with new SPIRE',
    `${HEAD}spec:\n  profile: seed\n  versions: {spire: 1.15.3}\n`,
    /removed in 1\.6/,
    5,
    21,
  ],
  [
    'current profile with old SPIRE',
    `${HEAD}spec:\n  versions: {spire: 1.5.1}\n`,
    /needs SPIRE ≥ 1\.6/,
    4,
    21,
  ],
  ['version not a version', `${HEAD}spec:\n  versions: {istio: latest}\n`, /not a release version/, 4, 21],
];

describe('bad fleet files: message and location', () => {
  for (const [name, text, message, line, col] of BAD) {
    test(name, () => {
      const r = loadFleetText(text);
      assert.equal(r.fleet, undefined, 'an invalid fleet must not resolve');
      const hit = r.problems.find((p) => message.test(p.message));
      assert.ok(
        hit,
        `no problem matching ${message}; got:\n${r.problems.map((p) => `${p.line}:${p.col} ${p.message}`).join('\n')}`,
      );
      assert.deepEqual([hit.line, hit.col], [line, col], `location of "${hit.message}"`);
      assert.ok(hit.code.startsWith('MF'), 'every problem has a stable code');
    });
  }
  test('there are at least 35 cases', () => assert.ok(BAD.length >= 35));
});

test('every problem of a file is reported at once', () => {
  const text = `${HEAD}spec:\n  clusters:\n  - name: A\n    trustDomain: Foo.com\n  - name: b\n  ca:\n    istio: {duration: 1h, renewBefore: 2h}\n`;
  const r = loadFleetText(text);
  assert.equal(r.problems.filter((p) => p.severity === 'error').length, 3);
});

test('no file at all is the guide’s topology', () => {
  for (const profile of ['current', 'seed'] as const) {
    const f = defaultFleet({ profile });
    assert.equal(f.meshID, 'multi-mesh');
    assert.deepEqual(
      f.clusters.map((c) => [c.name, c.context, c.trustDomain, c.network]),
      [
        ['cluster-1', 'cluster-1', 'foo.com', 'foo-network'],
        ['cluster-2', 'cluster-2', 'bar.com', 'bar-network'],
      ],
    );
    assert.deepEqual(f.federation.pairs, [['cluster-1', 'cluster-2']]);
    assert.equal(f.ca.istio.duration, '1440h');
    assert.equal(f.ca.istio.renewBefore, '360h');
    assert.deepEqual(f.apps.bookinfo.clusters, ['cluster-2']);
  }
  const seed = defaultFleet({ profile: 'seed' }).versions;
  assert.deepEqual(
    [seed.kubernetes, seed.istio, seed.spire, seed.certManager, seed.registrar],
    ['1.29.4', '1.22.1', '1.5.1', '1.15.1', 'k8s-workload-registrar'],
  );
  assert.equal(defaultFleet().versions.registrar, 'spire-controller-manager');
});

test('full mesh of four clusters has six pairs in fleet order; listed pairs are normalised', () => {
  const four = `${HEAD}spec:\n  clusters:\n${['a', 'b', 'c', 'd'].map((n) => `  - name: ${n}\n`).join('')}`;
  const full = loadFleetText(four).fleet!;
  assert.deepEqual(full.federation.pairs, [
    ['a', 'b'],
    ['a', 'c'],
    ['a', 'd'],
    ['b', 'c'],
    ['b', 'd'],
    ['c', 'd'],
  ]);
  assert.equal(full.clusters[2]!.trustDomain, 'c.multi-mesh');
  const listed = loadFleetText(`${four}  federation:\n    mode: pairs\n    pairs: [[d, a], [b, c], [c, d]]\n`)
    .fleet!;
  assert.deepEqual(listed.federation.pairs, [
    ['a', 'd'],
    ['b', 'c'],
    ['c', 'd'],
  ]);
});

test('a cluster in no pair is a warning, not an error', () => {
  const r = loadFleetText(
    `${HEAD}spec:\n  clusters: [{name: a}, {name: b}, {name: c}]\n  federation: {mode: pairs, pairs: [[a, b]]}\n`,
  );
  assert.ok(r.fleet);
  assert.match(r.problems[0]!.message, /"c" federates with no other cluster/);
  assert.equal(r.problems[0]!.severity, 'warning');
});

test('the init template validates for 2 and 5 clusters and keeps the defaults', () => {
  for (const n of [2, 5]) {
    const r = loadFleetText(fleetTemplate(n));
    assert.deepEqual(r.problems, []);
    assert.equal(r.fleet!.clusters.length, n);
  }
  assert.deepEqual(loadFleetText(fleetTemplate(2)).fleet, defaultFleet());
});
