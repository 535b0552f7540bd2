/**
 * Validates rendered objects against the real upstream schemas fetched by
 * lab/schemas.sh: the API server's OpenAPI v3 for built-in kinds, and the
 * CRDs' openAPIV3Schema for cert-manager, SPIRE and Istio kinds. Strict like
 * kubeconform's strict mode: a field a schema does not list is an error
 * (unless the schema preserves unknown fields), as the API server's strict
 * field validation would reject it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { parseAllDocuments } from 'yaml';
import type { Versions } from '../../src/fleet/model.js';
import type { KubeObject } from '../../src/render/types.js';
import { LAB_DIR } from './lab.js';

type Schema = Record<string, unknown>;

/** Rewrites a Kubernetes OpenAPI schema into strict JSON Schema for ajv. */
function strict(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(strict);
  if (!s || typeof s !== 'object') return s;
  const o = s as Schema;
  if (o.format === 'int-or-string' || o['x-kubernetes-int-or-string'] === true)
    return { anyOf: [{ type: 'string' }, { type: 'integer' }] };
  const out: Schema = {};
  for (const [k, v] of Object.entries(o)) {
    if (k === '$ref' && typeof v === 'string')
      out.$ref = v.replace('#/components/schemas/', '#/definitions/');
    else if (k === 'properties' || k === 'definitions' || k === 'patternProperties')
      out[k] = Object.fromEntries(Object.entries(v as Schema).map(([pk, pv]) => [pk, strict(pv)]));
    else out[k] = strict(v);
  }
  if (
    out.properties &&
    out.additionalProperties === undefined &&
    o['x-kubernetes-preserve-unknown-fields'] !== true
  )
    out.additionalProperties = false;
  if (o['x-kubernetes-preserve-unknown-fields'] === true) delete out.additionalProperties;
  return out;
}

export class SchemaSet {
  private readonly ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  private readonly byGvk = new Map<string, ValidateFunction>();

  constructor(readonly label: string) {}

  addOpenApiDir(dir: string, id: string): void {
    const definitions: Schema = {};
    const gvks: Array<[string, string]> = [];
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.json'))) {
      const doc = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {
        components?: { schemas?: Record<string, Schema> };
      };
      for (const [name, schema] of Object.entries(doc.components?.schemas ?? {})) {
        definitions[name] = strict(schema);
        for (const g of (schema['x-kubernetes-group-version-kind'] as
          | Array<Record<string, string>>
          | undefined) ?? [])
          gvks.push([gvk(g.group ? `${g.group}/${g.version}` : g.version!, g.kind!), name]);
      }
    }
    this.ajv.addSchema({ $id: id, definitions });
    for (const [key, name] of gvks) {
      if (this.byGvk.has(key)) continue;
      const fn = this.ajv.getSchema(`${id}#/definitions/${name}`);
      if (fn) this.byGvk.set(key, fn);
    }
  }

  addCrdFiles(dir: string): void {
    for (const f of readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)))
      for (const doc of parseAllDocuments(readFileSync(join(dir, f), 'utf8'))) {
        const crd = doc.toJS() as {
          kind?: string;
          spec?: {
            group: string;
            names: { kind: string };
            versions: Array<{ name: string; schema?: { openAPIV3Schema: Schema } }>;
          };
        };
        if (crd?.kind !== 'CustomResourceDefinition' || !crd.spec) continue;
        for (const v of crd.spec.versions) {
          if (!v.schema) continue;
          const schema = strict(v.schema.openAPIV3Schema) as Schema;
          // Every object has these; the API server checks metadata against ObjectMeta itself,
          // and some CRDs (Istio's) list only spec and status.
          schema.properties = {
            ...(schema.properties as Schema),
            apiVersion: { type: 'string' },
            kind: { type: 'string' },
            metadata: { type: 'object' },
          };
          this.byGvk.set(gvk(`${crd.spec.group}/${v.name}`, crd.spec.names.kind), this.ajv.compile(schema));
        }
      }
  }

  /** Problems for one object; throws when no schema knows its kind. */
  validate(obj: KubeObject): string[] {
    const fn = this.byGvk.get(gvk(obj.apiVersion, obj.kind));
    if (!fn) throw new Error(`no schema for ${obj.apiVersion} ${obj.kind} in ${this.label}`);
    if (fn(obj)) return [];
    return (fn.errors ?? []).map(
      (e) =>
        `${e.instancePath || '/'} ${e.message}${e.params && 'additionalProperty' in e.params ? ` "${e.params.additionalProperty}"` : ''}`,
    );
  }

  knows(apiVersion: string, kind: string): boolean {
    return this.byGvk.has(gvk(apiVersion, kind));
  }
}

const gvk = (apiVersion: string, kind: string) => `${apiVersion}/${kind}`;

/** The schemas of one profile's versions, from .lab/schemas. */
export function schemasFor(v: Versions): SchemaSet {
  const s = new SchemaSet(`k8s ${v.kubernetes}, cert-manager ${v.certManager}, istio ${v.istio}`);
  const root = join(LAB_DIR, 'schemas');
  s.addOpenApiDir(join(root, 'kubernetes', v.kubernetes), `k8s-${v.kubernetes}`);
  s.addCrdFiles(join(root, 'cert-manager', v.certManager));
  s.addCrdFiles(join(root, 'istio', v.istio));
  if (v.registrar === 'spire-controller-manager')
    s.addCrdFiles(join(root, 'spire-controller-manager', v.registrarVersion));
  else s.addCrdFiles(join(root, 'k8s-workload-registrar', v.registrarVersion));
  return s;
}

/** Every directory schemasFor needs, relative to .lab/. */
export function schemaDirs(v: Versions): string[] {
  return [
    `schemas/kubernetes/${v.kubernetes}/.done`,
    `schemas/cert-manager/${v.certManager}/.done`,
    `schemas/istio/${v.istio}/.done`,
    v.registrar === 'spire-controller-manager'
      ? `schemas/spire-controller-manager/${v.registrarVersion}/.done`
      : `schemas/k8s-workload-registrar/${v.registrarVersion}/.done`,
  ];
}
