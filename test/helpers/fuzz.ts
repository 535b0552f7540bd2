/**
 * Mutation fuzzing of the two readers that take arbitrary text: the fleet
 * loader (`loadFleetText`, which must never throw: every problem is a
 * returned FleetProblem) and the certs reader (`parseCertInput` +
 * `inspectChain` and the --bundle parsers, which may throw only the
 * project's typed input errors). Inputs are valid documents mutated at the
 * byte level (flips, insertions of YAML/JSON/PEM tokens, deletions,
 * repetitions, splices between documents) and at the structure level (a
 * node of the parsed document replaced by another value). Deterministic
 * from a seed. Used by `npm run fuzz` (bench/fuzz.ts, 100,000+ cases) and,
 * with a few thousand cases, by test/fleet/fuzz.test.ts.
 */
import { stringify, parse as yamlParse } from 'yaml';
import { loadFleetText } from '../../src/fleet/load.js';
import { fleetTemplate } from '../../src/fleet/template.js';
import { BundleError, parseJwksBundle, parsePemBundle } from '../../src/spiffe/bundle.js';
import { SpiffeIdError } from '../../src/spiffe/id.js';
import { InputError, inspectChain, parseCertInput } from '../../src/spiffe/inspect.js';
import { CertParseError } from '../../src/spiffe/x509.js';
import { Gen } from './hostile.js';
import { intermediate, root, svid } from './pki.js';

export interface FuzzReport {
  target: string;
  seed: number;
  cases: number;
  ms: number;
  slowestMs: number;
  /** How cases ended: "ok", "problems", or a typed error's name. */
  outcomes: Record<string, number>;
  /** Untyped errors and throws where none may be: each with the case number and input. */
  crashes: Array<{ n: number; error: string; input: string }>;
}

const TOKENS = [
  '&a ',
  '*a',
  '*b',
  '&b [*a, *a, *a]',
  '<<: *a',
  '{',
  '}',
  '[',
  ']',
  ': ',
  '- ',
  '? ',
  '!!binary ',
  '!!str ',
  '!tag ',
  '!<tag:x> ',
  '"',
  "'",
  '\t',
  '\n',
  '\r\n',
  '#',
  '|',
  '>-',
  '%YAML 1.1\n',
  '---\n',
  '...\n',
  '\u001b[2J',
  '\u0000',
  '\u202e',
  '\ufeff',
  '9'.repeat(40),
  '-1',
  '1e400',
  '0x1F',
  '.nan',
  '.inf',
  'null',
  '~',
  'true',
  '__proto__',
  'constructor',
  '99999999h',
  '2562048h',
  '0s',
  '30001',
  '65536',
  '...:0',
  '[::1]:8443',
  'x'.repeat(300),
  '{"',
  '":',
  ',',
  '[]',
  '{}',
  '"keys":',
  '"configs":',
  '"@type":"type.googleapis.com/envoy.admin.v3.SecretsConfigDump"',
  '"dynamicActiveSecrets":',
  '"inlineBytes":"',
  '"use":"x509-svid","x5c":["',
  'MIIB',
  '-----BEGIN CERTIFICATE-----\n',
  '-----END CERTIFICATE-----\n',
  '\\u0000',
  '\\ud800',
];

const VALUES: unknown[] = [
  null,
  0,
  -1,
  1e308,
  2 ** 53,
  '',
  'x',
  '\u001b',
  [],
  {},
  [null],
  { a: 1 },
  true,
  '9'.repeat(30),
];

/** One mutation of `text`, with `others` to splice from. */
function mutateOnce(g: Gen, text: string, others: string[]): string {
  const at = g.int(0, text.length);
  switch (g.int(0, 6)) {
    case 0: {
      const c = String.fromCharCode(
        g.pick([0, 7, 9, 10, 13, 27, 32, 34, 35, 38, 39, 42, 44, 45, 58, 91, 93, 123, 125, 0x9b, 0xe9]),
      );
      return text.slice(0, at) + c + text.slice(at + 1);
    }
    case 1:
      return text.slice(0, at) + g.pick(TOKENS) + text.slice(at);
    case 2:
      return text.slice(0, at) + text.slice(at + g.int(1, 64));
    case 3: {
      const end = Math.min(text.length, at + g.int(1, 80));
      return text.slice(0, end) + text.slice(at, end).repeat(g.int(1, 20)) + text.slice(end);
    }
    case 4: {
      const o = g.pick(others);
      const s = g.int(0, o.length);
      return text.slice(0, at) + o.slice(s, s + g.int(1, 200)) + text.slice(at);
    }
    case 5:
      return text.slice(0, at);
    default: {
      // A line moved to another indentation.
      const lines = text.split('\n');
      const i = g.int(0, lines.length - 1);
      lines[i] = ' '.repeat(g.int(0, 8)) + lines[i]!.trimStart();
      return lines.join('\n');
    }
  }
}

/** A random node of a plain value replaced by another value (structure-level mutation). */
function mutateValue(g: Gen, v: unknown, depth = 0): unknown {
  if (depth > 0 && g.next() < 0.25) return g.pick(VALUES);
  if (Array.isArray(v) && v.length) {
    const i = g.int(0, v.length - 1);
    const copy = [...v];
    if (g.next() < 0.15) copy.splice(i, 1);
    else copy[i] = mutateValue(g, v[i], depth + 1);
    return copy;
  }
  if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    if (!keys.length) return g.pick(VALUES);
    const k = g.pick(keys);
    const copy: Record<string, unknown> = { ...(v as Record<string, unknown>) };
    if (g.next() < 0.15) delete copy[k];
    else copy[k] = mutateValue(g, copy[k], depth + 1);
    return copy;
  }
  return g.pick(VALUES);
}

export function mutate(
  g: Gen,
  text: string,
  others: string[],
  structured: (v: unknown) => string,
  parse: (t: string) => unknown,
): string {
  if (g.next() < 0.3) {
    try {
      return structured(mutateValue(g, parse(text)));
    } catch {
      // The seed parses; a value that cannot be written out falls back to bytes.
    }
  }
  let t = text;
  for (let i = g.int(1, 4); i > 0; i--) t = mutateOnce(g, t, others);
  return t;
}

/** Valid fleet files: the template, and files using each part of the schema. */
export function fleetSeeds(): string[] {
  const head = 'apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\n';
  return [
    fleetTemplate(2),
    fleetTemplate(3),
    `${head}metadata: {name: lab}\nspec:\n  profile: seed\n  meshID: m1\n  clusters:\n    - {name: a, trustDomain: a.org, network: na}\n    - {name: b, bundleEndpoint: {type: NodePort, nodePort: 31001}, eastWestGateway: {type: NodePort, nodePort: 31002}}\n    - {name: c, bundleEndpoint: {address: "spire.c.example:8443"}}\n  federation: {mode: pairs, pairs: [[a, b], [b, c]], bundleEndpointPort: 9443, refreshHint: 2m}\n`,
    `${head}spec:\n  clusters:\n    - name: x1\n      bundleEndpoint: &be {type: LoadBalancer}\n    - {name: x2, bundleEndpoint: *be}\n    - {name: x3, bundleEndpoint: *be}\n  ca:\n    root: {duration: 8760h, renewBefore: 720h}\n    istio: {duration: 720h, renewBefore: 24h}\n    spire: {caTTL: 48h, svidTTL: 2h}\n  apps: {bookinfo: {enabled: true, clusters: [x2]}, sleep: {enabled: false}}\n  versions: {istio: 1.29.0}\n`,
  ];
}

const yamlOut = (v: unknown) => stringify(v, { aliasDuplicateObjects: false });

/**
 * Runs `cases` inputs from `next` through `judge` (which names the outcome);
 * a throw is an outcome when `typed` knows its class, else a crash.
 */
function runTarget(
  target: string,
  seed: number,
  cases: number,
  o: { deadlineMs?: number },
  next: () => string,
  judge: (input: string) => string,
  typed: ReadonlyArray<new (...a: never[]) => Error> = [],
): FuzzReport {
  const r: FuzzReport = { target, seed, cases: 0, ms: 0, slowestMs: 0, outcomes: {}, crashes: [] };
  const t0 = performance.now();
  for (let n = 0; n < cases; n++) {
    if (o.deadlineMs && performance.now() - t0 > o.deadlineMs) break;
    const input = next();
    const c0 = performance.now();
    let outcome: string;
    try {
      outcome = judge(input);
    } catch (e) {
      const known = typed.find((T) => e instanceof T);
      if (!known)
        r.crashes.push({
          n,
          error: String((e as Error)?.stack ?? e).slice(0, 500),
          input: input.slice(0, 2000),
        });
      outcome = known?.name ?? 'crash';
    }
    r.outcomes[outcome] = (r.outcomes[outcome] ?? 0) + 1;
    r.slowestMs = Math.max(r.slowestMs, performance.now() - c0);
    r.cases++;
  }
  r.ms = performance.now() - t0;
  return r;
}

export function fuzzFleet(seed: number, cases: number, o: { deadlineMs?: number } = {}): FuzzReport {
  const g = new Gen(seed);
  const seeds = fleetSeeds();
  return runTarget(
    'fleet loader',
    seed,
    cases,
    o,
    () => mutate(g, g.pick(seeds), seeds, yamlOut, yamlParse),
    (input) => (loadFleetText(input).fleet ? 'ok' : 'problems'),
  );
}

/** Valid certs inputs: a PEM chain, config dumps in both forms, a JWKS bundle. */
export async function certSeeds(): Promise<{ inputs: string[]; bundles: string[] }> {
  const r = await root();
  const int = await intermediate(r, 'foo.com');
  const leaf = await svid(int, 'spiffe://foo.com/ns/default/sa/sleep');
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const secrets = [
    {
      name: 'default',
      secret: {
        name: 'default',
        tlsCertificate: { certificateChain: { inlineBytes: b64(leaf.pem + int.pem) } },
      },
    },
    {
      name: 'ROOTCA',
      secret: { name: 'ROOTCA', validationContext: { trustedCa: { inlineBytes: b64(r.pem) } } },
    },
  ];
  const jwks = JSON.stringify({
    keys: [
      { use: 'x509-svid', kty: 'EC', x5c: [r.cert.der.toString('base64')] },
      { use: 'jwt-svid', kty: 'EC', kid: 'k1', crv: 'P-256', x: 'AA', y: 'AA' },
    ],
    spiffe_sequence: 3,
    spiffe_refresh_hint: 300,
  });
  return {
    inputs: [
      leaf.pem + int.pem,
      JSON.stringify({ dynamicActiveSecrets: secrets }, null, 2),
      JSON.stringify({
        configs: [
          {
            '@type': 'type.googleapis.com/envoy.admin.v3.SecretsConfigDump',
            dynamic_active_secrets: secrets,
          },
        ],
      }),
      jwks,
    ],
    bundles: [jwks, r.pem],
  };
}

export function fuzzCerts(
  seed: number,
  cases: number,
  s: { inputs: string[]; bundles: string[] },
  o: { deadlineMs?: number } = {},
): FuzzReport {
  const g = new Gen(seed);
  const all = [...s.inputs, ...s.bundles];
  const now = new Date();
  let asBundle = false;
  return runTarget(
    'certs reader',
    seed,
    cases,
    o,
    () => {
      asBundle = g.next() < 0.2;
      return mutate(
        g,
        asBundle ? g.pick(s.bundles) : g.pick(s.inputs),
        all,
        (v) => JSON.stringify(v),
        JSON.parse,
      );
    },
    (input) => {
      if (asBundle) {
        if (input.trimStart().startsWith('{')) parseJwksBundle(input, 'foo.com');
        else parsePemBundle(input, 'foo.com');
      } else inspectChain(parseCertInput(input, { trustDomain: 'foo.com' }), { now });
      return 'ok';
    },
    [InputError, BundleError, CertParseError, SpiffeIdError],
  );
}

export function formatFuzz(r: FuzzReport): string {
  return `${r.target}: seed ${r.seed}, ${r.cases} cases in ${(r.ms / 1000).toFixed(1)} s (${Math.round(r.cases / (r.ms / 1000))}/s), slowest case ${r.slowestMs.toFixed(1)} ms, ${r.crashes.length} crashes; outcomes ${Object.entries(
    r.outcomes,
  )
    .sort()
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}`;
}
