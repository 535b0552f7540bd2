import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { defaultFleet, parseFleet } from '../../src/fleet/load.js';
import type { Fleet } from '../../src/fleet/model.js';
import { renderFleet } from '../../src/render/index.js';
import { requireLab } from '../helpers/lab.js';
import { schemaDirs, schemasFor } from '../helpers/schemas.js';

const FOUR = (profile: 'current' | 'seed') =>
  parseFleet(`apiVersion: meshfed.dev/v1alpha1
kind: Fleet
spec:
  profile: ${profile}
  clusters: [{name: a}, {name: b, bundleEndpoint: {type: NodePort, nodePort: 30843}, eastWestGateway: {type: NodePort}}, {name: c}, {name: d}]
  federation: {mode: pairs, pairs: [[a, b], [b, c], [c, d]]}
`);

const CASES: Array<[string, Fleet]> = [
  ['default current', defaultFleet()],
  ['default seed', defaultFleet({ profile: 'seed' })],
  ['four clusters current', FOUR('current')],
  ['four clusters seed', FOUR('seed')],
];

describe('every rendered object is valid against its real upstream schema', () => {
  for (const [name, fleet] of CASES) {
    const skip = requireLab(schemaDirs(fleet.versions), 'npm run lab:schemas');
    test(name, { skip }, () => {
      const schemas = schemasFor(fleet.versions);
      const endpoints = Object.fromEntries(fleet.clusters.map((c, i) => [c.name, `192.0.2.${i + 1}:8443`]));
      const r = renderFleet(fleet, { bundleEndpoints: endpoints });
      let checked = 0;
      const problems: string[] = [];
      // generatorInputs (the IstioOperator) are validated by istioctl itself, not applied
      for (const c of r.clusters)
        for (const p of c.phases)
          for (const o of p.objects) {
            checked++;
            for (const e of schemas.validate(o))
              problems.push(`${c.cluster} ${o.kind}/${o.metadata.name}: ${e}`);
          }
      assert.deepEqual(problems, []);
      assert.ok(checked > (40 * fleet.clusters.length) / 2, `checked ${checked} objects`);
    });
  }
});

test('the validator rejects an unknown field, a wrong type and a wrong enum', {
  skip: requireLab(schemaDirs(defaultFleet().versions), 'npm run lab:schemas'),
}, () => {
  const s = schemasFor(defaultFleet().versions);
  const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' }, spec: { ports: [{ port: 80 }] } };
  assert.deepEqual(s.validate(svc), []);
  assert.match(
    s.validate({ ...svc, spec: { ...svc.spec, selectr: {} } }).join(),
    /must NOT have additional properties "selectr"/,
  );
  assert.match(s.validate({ ...svc, spec: { ports: [{ port: 'eighty' }] } }).join(), /must be integer/);
  const cert = {
    apiVersion: 'cert-manager.io/v1',
    kind: 'Certificate',
    metadata: { name: 'c' },
    spec: { secretName: 's', issuerRef: { name: 'i' }, privateKey: { algorithm: 'DSA' } },
  };
  assert.match(s.validate(cert).join(), /must be equal to one of the allowed values/);
  assert.throws(
    () => s.validate({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }),
    /no schema for example\.com\/v1 Widget/,
  );
});
