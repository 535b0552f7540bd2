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
import { appliedPart } from '../../src/kube/fields.js';

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
