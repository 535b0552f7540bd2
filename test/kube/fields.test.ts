/**
 * appliedPart: what one manager's server-side apply set, read back from a
 * live object through its managedFields (fieldsV1). The object is shaped as
 * a Kubernetes 1.35 API server returns meshfed's helloworld Service: fields
 * the server defaulted (clusterIP, sessionAffinity, a port's targetPort…)
 * and another manager's label are left out; list items are found by key.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KubeObject } from '../../src/kube/client.js';
import { appliedPart, applyChangesNothing } from '../../src/kube/fields.js';

const live: KubeObject = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: {
    name: 'helloworld',
    namespace: 'helloworld',
    uid: '0b6c…',
    resourceVersion: '4711',
    labels: { app: 'helloworld', 'app.kubernetes.io/managed-by': 'meshfed', team: 'web' },
    annotations: { 'meshfed.dev/fleet': 'lab' },
    managedFields: [
      {
        manager: 'meshfed',
        operation: 'Apply',
        apiVersion: 'v1',
        fieldsType: 'FieldsV1',
        fieldsV1: {
          'f:metadata': {
            'f:annotations': { 'f:meshfed.dev/fleet': {} },
            'f:labels': { 'f:app': {}, 'f:app.kubernetes.io/managed-by': {} },
          },
          'f:spec': {
            'f:ports': { 'k:{"port":5000,"protocol":"TCP"}': { '.': {}, 'f:name': {}, 'f:port': {} } },
            'f:selector': {},
          },
        },
      },
      {
        manager: 'kubectl-label',
        operation: 'Update',
        apiVersion: 'v1',
        fieldsType: 'FieldsV1',
        fieldsV1: { 'f:metadata': { 'f:labels': { 'f:team': {} } } },
      },
    ],
  },
  spec: {
    clusterIP: '10.0.0.233',
    clusterIPs: ['10.0.0.233'],
    internalTrafficPolicy: 'Cluster',
    ports: [
      { name: 'http', port: 5000, protocol: 'TCP', targetPort: 5000 },
      { name: 'extra', port: 6000, protocol: 'TCP', targetPort: 6000 },
    ],
    selector: { app: 'helloworld' },
    sessionAffinity: 'None',
    type: 'ClusterIP',
  },
  status: { loadBalancer: {} },
} as KubeObject;

test("appliedPart: exactly what meshfed's apply set; the server's defaults and other managers' fields left out", () => {
  assert.deepEqual(appliedPart(live, 'meshfed'), {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: 'helloworld',
      namespace: 'helloworld',
      annotations: { 'meshfed.dev/fleet': 'lab' },
      labels: { app: 'helloworld', 'app.kubernetes.io/managed-by': 'meshfed' },
    },
    spec: { ports: [{ name: 'http', port: 5000 }], selector: { app: 'helloworld' } },
  });
  // A manager that only updated (no Apply entry) applied nothing; nor did one that is absent.
  assert.equal(appliedPart(live, 'kubectl-label'), undefined);
  assert.equal(appliedPart(live, 'nobody'), undefined);
});

test('appliedPart: set items by value and list items by index', () => {
  const o = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'x',
      finalizers: ['a', 'b'],
      managedFields: [
        {
          manager: 'm',
          operation: 'Apply',
          fieldsV1: { 'f:metadata': { 'f:finalizers': { 'v:"b"': {} } }, 'f:data': { 'f:k': {} } },
        },
      ],
    },
    data: { k: 'v', other: 'w' },
  } as unknown as KubeObject;
  assert.deepEqual(appliedPart(o, 'm'), {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'x', finalizers: ['b'] },
    data: { k: 'v' },
  });
});

/** What meshfed sends for the Service above, as apply.ts prepares it (the inventory's resourceVersion with it). */
const sent = (): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: {
    name: 'helloworld',
    namespace: 'helloworld',
    resourceVersion: '4711',
    labels: { 'app.kubernetes.io/managed-by': 'meshfed', app: 'helloworld' },
    annotations: { 'meshfed.dev/fleet': 'lab' },
  },
  spec: { selector: { app: 'helloworld' }, ports: [{ port: 5000, name: 'http' }] },
});

test('applyChangesNothing: true only when meshfed owns exactly the fields it sends, each with the value it sends', () => {
  // Key order is no matter; the server's defaults, another manager's label and an item meshfed does not own are not meshfed's.
  assert.equal(applyChangesNothing(sent(), live, 'meshfed'), true);
  const changed = (f: (o: KubeObject) => void, on: 'sent' | 'live' = 'sent') => {
    const s = structuredClone(sent());
    const l = structuredClone(live);
    f(on === 'sent' ? s : l);
    return applyChangesNothing(s, l, 'meshfed');
  };
  // Drift: a value meshfed set, changed in the live object (by a manager that kept meshfed's ownership, or none).
  assert.equal(
    changed((o) => {
      (o.spec as { selector: Record<string, string> }).selector.app = 'other';
    }, 'live'),
    false,
  );
  // A new value, a field meshfed now sets (the apply would own it), one it no longer sets (the apply would drop it).
  assert.equal(
    changed((o) => {
      o.metadata.labels!.app = 'v2';
    }),
    false,
  );
  assert.equal(
    changed((o) => {
      (o.spec as Record<string, unknown>).type = 'ClusterIP'; // the live value, but not meshfed's field
    }),
    false,
  );
  assert.equal(
    changed((o) => {
      delete o.metadata.annotations;
    }),
    false,
  );
  assert.equal(
    changed((o) => {
      (o.spec as { ports: unknown[] }).ports.push({ name: 'extra', port: 6000 });
    }),
    false,
  );
  // Ownership told otherwise: an entry of another API version, one by Update, two of meshfed's, none.
  const entry = (o: KubeObject) => (o.metadata.managedFields as Array<Record<string, unknown>>)[0]!;
  assert.equal(
    changed((o) => {
      entry(o).apiVersion = 'v1beta1';
    }, 'live'),
    false,
  );
  assert.equal(
    changed((o) => {
      entry(o).operation = 'Update';
    }, 'live'),
    false,
  );
  assert.equal(
    changed((o) => {
      o.metadata.managedFields!.push({ ...entry(o), operation: 'Update' });
    }, 'live'),
    false,
  );
  assert.equal(
    changed((o) => {
      o.metadata.managedFields = [];
    }, 'live'),
    false,
  );
});

test('applyChangesNothing: a list keeps its order, an atomic field is compared whole (server defaults in it too)', () => {
  const deployment = (args: string[], fieldRef: Record<string, string>): KubeObject => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'd', namespace: 'n' },
    spec: {
      template: {
        spec: { containers: [{ name: 'c', args, env: [{ name: 'NS', valueFrom: { fieldRef } }] }] },
      },
    },
  });
  const live = deployment(['--a', '--b'], { apiVersion: 'v1', fieldPath: 'metadata.namespace' });
  live.metadata.managedFields = [
    {
      manager: 'meshfed',
      operation: 'Apply',
      apiVersion: 'apps/v1',
      fieldsV1: {
        'f:spec': {
          'f:template': {
            'f:spec': {
              'f:containers': {
                'k:{"name":"c"}': {
                  '.': {},
                  'f:args': {},
                  'f:env': {
                    'k:{"name":"NS"}': { '.': {}, 'f:name': {}, 'f:valueFrom': { 'f:fieldRef': {} } },
                  },
                  'f:name': {},
                },
              },
            },
          },
        },
      },
    },
  ];
  const full = { apiVersion: 'v1', fieldPath: 'metadata.namespace' };
  assert.equal(applyChangesNothing(deployment(['--a', '--b'], full), live, 'meshfed'), true);
  assert.equal(applyChangesNothing(deployment(['--b', '--a'], full), live, 'meshfed'), false);
  // The server defaulted fieldRef's apiVersion inside an atomic field: not told apart from drift, so applied.
  assert.equal(
    applyChangesNothing(deployment(['--a', '--b'], { fieldPath: 'metadata.namespace' }), live, 'meshfed'),
    false,
  );
});
