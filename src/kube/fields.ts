/**
 * Server-side apply's field ownership (managedFields[].fieldsV1, the
 * structured-merge-diff "FieldsV1" form): `f:<name>` a field of a map,
 * `k:<json>` a list item by its key fields, `v:<json>` a set item by value,
 * `i:<n>` a list item by index, `.` the value itself. `appliedPart` reads
 * back, from a live object, what one manager's apply set: applying that
 * again under the same manager owns exactly the same fields, so an object
 * deleted and made again this way is, to that manager, as it was.
 */
import { isDeepStrictEqual } from 'node:util';
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
    const matchers = matchersOf(fields);
    for (const [i, item] of value.entries()) {
      const hit = matchers.find((m) => m.matches(item, i));
      if (hit) out.push(pick(item, (fields[hit.child] ?? {}) as Fields));
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

/**
 * Whether server-side applying `sent` as `manager` onto `live` is certain to
 * change nothing, told from `live` alone: `manager`'s one entry (an Apply,
 * in `sent`'s API version) owns exactly the fields `sent` sets, and each
 * holds the value `sent` gives it. Then the apply would own the same
 * fields with the same values: the server would answer with the object as
 * it is. Whatever this cannot tell (a field the server normalises, another
 * manager's change, an entry of another version, a field meshfed no longer
 * sets) is false: the caller applies, and the server says.
 */
export function applyChangesNothing(sent: KubeObject, live: KubeObject, manager: string): boolean {
  if (sent.apiVersion !== live.apiVersion || sent.kind !== live.kind) return false;
  const entries = (
    (live.metadata.managedFields ?? []) as Array<{
      manager?: string;
      operation?: string;
      apiVersion?: string;
      subresource?: string;
      fieldsV1?: Fields;
    }>
  ).filter((m) => m.manager === manager);
  const entry = entries[0];
  if (entries.length !== 1 || !entry || entry.operation !== 'Apply' || entry.subresource) return false;
  if (entry.apiVersion !== sent.apiVersion || !isMap(entry.fieldsV1)) return false;
  const { apiVersion: _v, kind: _k, metadata, ...rest } = sent;
  const { name: _n, namespace: _ns, resourceVersion: _rv, ...meta } = metadata;
  const want: Record<string, unknown> = { ...rest };
  if (Object.keys(meta).length) want.metadata = meta;
  if ('f:apiVersion' in entry.fieldsV1 || 'f:kind' in entry.fieldsV1) {
    const { apiVersion: _lv, kind: _lk, ...have } = pick(live, entry.fieldsV1) as Record<string, unknown>;
    return isDeepStrictEqual(have, want);
  }
  return holds(entry.fieldsV1, live, want);
}

/** Each child of a field set with what tells a list item it names, parsed once. */
const itemMatchers = new WeakMap<
  Fields,
  Array<{ child: string; matches: (item: unknown, i: number) => boolean }>
>();
function matchersOf(fields: Fields) {
  let m = itemMatchers.get(fields);
  if (!m) {
    m = Object.keys(fields)
      .filter((c) => c !== '.')
      .map((c) => {
        if (c.startsWith('k:')) {
          const key = JSON.parse(c.slice(2)) as Record<string, unknown>;
          return { child: c, matches: (item: unknown) => matchesKey(item, key) };
        }
        if (c.startsWith('v:')) {
          const v = JSON.stringify(JSON.parse(c.slice(2)));
          return { child: c, matches: (item: unknown) => JSON.stringify(item) === v };
        }
        return { child: c, matches: (_: unknown, i: number) => c === `i:${i}` };
      });
    itemMatchers.set(fields, m);
  }
  return m;
}

/** isDeepStrictEqual(pick(live, fields), want), told without making the pick and given up at the first difference. */
function holds(fields: Fields, live: unknown, want: unknown): boolean {
  const children = Object.keys(fields).filter((k) => k !== '.');
  if (!children.length) return isDeepStrictEqual(live, want);
  if (Array.isArray(live)) {
    if (!Array.isArray(want)) return false;
    const matchers = matchersOf(fields);
    let j = 0;
    for (const [i, item] of live.entries()) {
      const hit = matchers.find((m) => m.matches(item, i));
      if (!hit) continue;
      if (j >= want.length || !holds((fields[hit.child] ?? {}) as Fields, item, want[j])) return false;
      j++;
    }
    return j === want.length;
  }
  if (!isMap(live)) return isDeepStrictEqual(live, want);
  if (!isMap(want)) return false;
  let n = 0;
  for (const c of children) {
    if (!c.startsWith('f:')) continue;
    const name = c.slice(2);
    if (!(name in live)) continue;
    if (!Object.hasOwn(want, name)) return false;
    n++;
    if (!holds((fields[c] ?? {}) as Fields, live[name], want[name])) return false;
  }
  return n === Object.keys(want).length;
}

/**
 * What `manager` owns in `live`: its managedFields entries (their times
 * left out) and the values of the fields they name. Only another write of
 * these, or of who owns them, changes it; a controller's status, another
 * manager's fields do not.
 */
export function ownedState(live: KubeObject, manager: string): unknown {
  const entries = (
    (live.metadata.managedFields ?? []) as Array<{
      manager?: string;
      time?: string;
      operation?: string;
      subresource?: string;
      fieldsV1?: Fields;
    }>
  )
    .filter((m) => m.manager === manager)
    .map(({ time: _time, ...m }) => m);
  return {
    entries,
    values: entries.map((e) => (isMap(e.fieldsV1) ? pick(live, e.fieldsV1) : null)),
  };
}
