/**
 * meshfed's Workload API descriptor against the upstream workload.proto
 * (go-spiffe, fetched by lab/schemas.sh): every message and field meshfed
 * defines has the same number, type and label upstream, and every method the
 * same request, response and streaming. The wire contract cannot drift.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { fromJSON, loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { WORKLOAD_API_DESCRIPTOR } from '../../src/spiffe/workload.js';
import { LAB_DIR, requireLab } from '../helpers/lab.js';

const PROTO = 'schemas/go-spiffe/2.8.1/workload.proto';
const skip = requireLab([PROTO], 'npm run lab:schemas');

interface Field {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}

function fields(def: PackageDefinition, message: string): Field[] {
  const t = (def[message] as unknown as { type: unknown }).type as { field: Field[] };
  return t.field.map((f) => ({
    name: f.name,
    number: f.number,
    label: f.label,
    type: f.type,
    typeName: f.typeName,
  }));
}

test('the Workload API descriptor matches go-spiffe workload.proto', { skip }, () => {
  const opts = { keepCase: true };
  const upstream = loadSync(join(LAB_DIR, PROTO), opts);
  const ours = fromJSON(WORKLOAD_API_DESCRIPTOR as unknown as Parameters<typeof fromJSON>[0], opts);
  const messages = Object.keys(WORKLOAD_API_DESCRIPTOR.nested).filter((k) => k !== 'SpiffeWorkloadAPI');
  assert.equal(messages.length, 10);
  for (const m of messages) {
    assert.ok(upstream[m], `upstream has no message ${m}`);
    const up = new Map(fields(upstream, m).map((f) => [f.name, f]));
    const mine = fields(ours, m);
    for (const f of mine) {
      const u = up.get(f.name);
      assert.ok(u, `${m}.${f.name} is not upstream`);
      assert.deepEqual(
        { ...f, typeName: f.typeName.replace(/^\./, '') },
        { ...u, typeName: u.typeName.replace(/^\./, '') },
        `${m}.${f.name}`,
      );
    }
    // Upstream fields meshfed leaves out may only be ones it never reads.
    assert.deepEqual(
      [...up.keys()].filter((k) => !mine.some((f) => f.name === k)),
      [],
      `${m}: fields missing`,
    );
  }
  const svc = (def: PackageDefinition) =>
    def.SpiffeWorkloadAPI as unknown as Record<
      string,
      {
        path: string;
        requestStream: boolean;
        responseStream: boolean;
        requestType: { type: { name: string } };
        responseType: { type: { name: string } };
      }
    >;
  for (const name of Object.keys(WORKLOAD_API_DESCRIPTOR.nested.SpiffeWorkloadAPI.methods)) {
    const u = svc(upstream)[name];
    const o = svc(ours)[name];
    assert.ok(u && o, name);
    assert.equal(o.path, u.path);
    assert.equal(o.path, `/SpiffeWorkloadAPI/${name}`);
    assert.equal(o.requestStream, u.requestStream);
    assert.equal(o.responseStream, u.responseStream);
    assert.equal(o.requestType.type.name, u.requestType.type.name);
    assert.equal(o.responseType.type.name, u.responseType.type.name);
  }
});
