/**
 * Server-side apply's field ownership (managedFields[].fieldsV1, the
 * structured-merge-diff "FieldsV1" form): `f:<name>` a field of a map,
 * `k:<json>` a list item by its key fields, `v:<json>` a set item by value,
 * `i:<n>` a list item by index, `.` the value itself. `appliedPart` reads
 * back, from a live object, what one manager's apply set: applying that
 * again under the same manager owns exactly the same fields, so an object
 * deleted and made again this way is, to that manager, as it was.
 */
import type { KubeObject } from './client.js';

type Fields = Record<string, unknown>;
const isMap = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** Whether a list item matches a `k:` key (every key field equal). */
function matchesKey(item: unknown, key: Record<string, unknown>): boolean {
  return isMap(item) && Object.entries(key).every(([k, v]) => JSON.stringify(item[k]) === JSON.stringify(v));
}

/** The part of `value` the field set `fields` names. */
function pick(value: unknown, fields: Fields): unknown {
  const children = Object.keys(fields).filter((k) => k !== '.');
  if (!children.length) return value;
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (const [i, item] of value.entries()) {
      const hit = children.find((c) => {
        if (c.startsWith('k:')) return matchesKey(item, JSON.parse(c.slice(2)) as Record<string, unknown>);
        if (c.startsWith('v:')) return JSON.stringify(item) === JSON.stringify(JSON.parse(c.slice(2)));
        return c === `i:${i}`;
      });
      if (hit) out.push(pick(item, (fields[hit] ?? {}) as Fields));
    }
    return out;
  }
  if (!isMap(value)) return value;
  const out: Record<string, unknown> = {};
  for (const c of children) {
    if (!c.startsWith('f:')) continue;
    const name = c.slice(2);
    if (name in value) out[name] = pick(value[name], (fields[c] ?? {}) as Fields);
  }
  return out;
}

/**
 * What `manager`'s server-side apply set in `live` (its `Apply` entry), with
 * apiVersion, kind, name and namespace; undefined when it applied nothing.
 */
export function appliedPart(live: KubeObject, manager: string): KubeObject | undefined {
  const entry = (
    (live.metadata.managedFields ?? []) as Array<{
      manager?: string;
      operation?: string;
      fieldsV1?: Fields;
    }>
  ).find(
    (m) => m.manager === manager && m.operation === 'Apply' && !(m as { subresource?: string }).subresource,
  );
  if (!entry?.fieldsV1) return undefined;
  const part = pick(live, entry.fieldsV1) as KubeObject;
  return {
    ...part,
    apiVersion: live.apiVersion,
    kind: live.kind,
    metadata: {
      ...(part.metadata ?? {}),
      name: live.metadata.name,
      ...(live.metadata.namespace ? { namespace: live.metadata.namespace } : {}),
    },
  };
}
