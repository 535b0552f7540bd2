/**
 * A generated corpus of hostile inputs to the commands that need no cluster
 * (issue 19): fleet files, flags, kubeconfigs, `certs` inputs and
 * `report --from` files. Deterministic from a seed: the same seed gives the
 * same cases, byte for byte. Each case says what the CLI must answer: the
 * exit code, a pattern of the message, where (file:line:col) when the input
 * has a place, and the secrets that must not appear in any output.
 */

import { SEED_CLUSTERS } from '../../src/fleet/resolve.js';
import { prng } from './random.js';

export type HostileClass =
  | 'crash-memory'
  | 'hang'
  | 'secret'
  | 'accepted-wrong'
  | 'exit-code'
  | 'injection'
  | 'reach-time';

export interface HostileCase {
  id: string;
  cls: HostileClass;
  argv: string[];
  /** Files to write in the case's folder (relative name → content). A Buffer or string. */
  files?: Record<string, string>;
  /** Folders to make in the case's folder. */
  dirs?: string[];
  stdin?: string;
  code: number;
  /** Must match stderr + stdout. */
  message: RegExp;
  /** Must match too: file:line:col of the problem. */
  location?: RegExp;
  /** Must not appear in stdout or stderr. */
  secrets?: string[];
  /** A file the command writes, that must match / must not match. */
  writes?: { file: string; mustMatch?: RegExp; mustNotMatch?: RegExp };
}

export class Gen {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = prng(seed);
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  word(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(this.next() * alphabet.length)];
    return s;
  }
  secret(): string {
    return `s3cr3t${this.word(24, 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789')}`;
  }
}

const HEAD = 'apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\n';
const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what yq escapes
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
/** A YAML double-quoted scalar of any string (control characters as \x escapes). */
export const yq = (s: string) =>
  `"${esc(s).replace(CONTROLS, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}"`;

/** 1-based line of the first line containing `marker`. */
export function lineOf(text: string, marker: string): number {
  const i = text.indexOf(marker);
  if (i < 0) throw new Error(`marker ${marker} not in the text`);
  return text.slice(0, i).split('\n').length;
}

const at = (file: string, line: number) => new RegExp(`${file.replace('.', '\\.')}:${line}:\\d+`);

/** A two-cluster fleet with lines to change. */
function fleetText(o: {
  name?: string;
  meshID?: string;
  c1?: string;
  c2?: string;
  ca?: string;
  extra?: string;
}): string {
  return `${HEAD}${o.name !== undefined ? `metadata:\n  name: ${o.name}\n` : ''}spec:\n${o.meshID !== undefined ? `  meshID: ${o.meshID}\n` : ''}  clusters:\n    - ${o.c1 ?? 'name: cluster-1'}\n    - ${o.c2 ?? 'name: cluster-2'}\n${o.ca ?? ''}${o.extra ?? ''}`;
}

const BAD_LABEL_VALUES = (g: Gen): string => {
  switch (g.int(0, 8)) {
    case 0:
      return `${g.word(g.int(1, 10))} ${g.word(g.int(1, 10))}`;
    case 1:
      return `${g.word(g.int(1, 10))}/${g.word(g.int(1, 10))}`;
    case 2:
      return g.word(g.int(64, 300));
    case 3:
      return `${g.word(g.int(1, 8))}\u00e9${g.word(3)}`;
    case 4:
      return `-${g.word(g.int(1, 20))}`;
    case 5:
      return `${g.word(g.int(1, 20))}.`;
    case 6:
      return `${g.word(4)}\u001b[31m${g.word(4)}`;
    case 7:
      return `${g.word(3)}:${g.word(3)}`;
    default:
      return '';
  }
};

export const BAD_HOSTS = (g: Gen): string =>
  g.pick([
    '...',
    '.',
    '..',
    `${g.word(3)}..${g.word(3)}`,
    `-${g.word(5)}.com`,
    `${g.word(5)}-.com`,
    `${g.word(64)}.com`,
    `${g.word(60)}.`.repeat(5).slice(0, 270),
    `${g.int(1, 255)}.${g.int(1, 255)}.${g.int(1, 255)}.${g.int(1, 255)}.${g.int(1, 255)}`,
    `${g.int(256, 999)}.1.1.1`,
    '[::zz]',
    '[1:2:3]',
    `${g.word(4)}_${g.word(4)}.com`,
    `${g.word(4)} ${g.word(4)}`,
    `${g.word(4)}/${g.word(4)}`,
    '',
  ]);

const BAD_PORTS = (g: Gen): string => g.pick(['0', '00000', String(g.int(65536, 99999)), '-1', 'http', '']);

function* fleetCases(g: Gen): Generator<Omit<HostileCase, 'id'>> {
  const F = 'fleet.yaml';
  const validate = ['validate', '-f', F];
  // Label values: meshID and metadata.name.
  for (let i = 0; i < 50; i++) {
    const v = BAD_LABEL_VALUES(g);
    const text = fleetText({ meshID: yq(v) });
    yield {
      cls: 'accepted-wrong',
      argv: g.next() < 0.8 ? validate : ['render', '-f', F, '-o', '-'],
      files: { [F]: text },
      code: 2,
      message: /meshID must (not be empty|be at most 63|be a Kubernetes label value)/,
      location: at(F, lineOf(text, '  meshID:')),
    };
  }
  for (let i = 0; i < 30; i++) {
    const v = BAD_LABEL_VALUES(g);
    const text = fleetText({ name: yq(v) });
    yield {
      cls: 'accepted-wrong',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: /metadata\.name must/,
      location: at(F, lineOf(text, '  name:')),
    };
  }
  // Cluster names: a valid name whose derived network label is too long; invalid names.
  for (let i = 0; i < 25; i++) {
    const name = `c${g.word(g.int(55, 62))}`;
    const text = fleetText({ c1: `name: ${name}` });
    yield {
      cls: 'accepted-wrong',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message:
        /the network derived from the cluster name, "c[a-z0-9]+-network", must be at most 63 characters/,
      location: at(F, lineOf(text, `name: ${name}`)),
    };
  }
  for (let i = 0; i < 25; i++) {
    const name = g.pick([
      g.word(64),
      `C${g.word(5)}`,
      `${g.word(3)}_${g.word(3)}`,
      `${g.word(3)}.${g.word(3)}`,
      '-x',
    ]);
    const text = fleetText({ c2: `name: ${yq(name)}` });
    yield {
      cls: 'accepted-wrong',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: /cluster name must/,
      location: at(F, lineOf(text, `    - name: ${yq(name)}`)),
    };
  }
  // Durations beyond Go's maximum, below cert-manager's minimums.
  for (let i = 0; i < 60; i++) {
    const which = g.pick(['root', 'istio']);
    const kind = g.int(0, 3);
    const dur =
      kind === 0
        ? `${g.int(2562048, 99_999_999)}h`
        : kind === 1
          ? `${'9'.repeat(g.int(20, 300))}${g.pick(['h', 'm', 's', 'ms'])}`
          : kind === 2
            ? `${g.int(1, 59)}m`
            : `${g.int(1, 3599)}s`;
    const renew = kind >= 2 ? `${g.int(1, 299)}s` : '1h';
    const text = fleetText({
      ca: `  ca:\n    ${which}:\n      duration: ${dur}\n      renewBefore: ${renew}\n`,
    });
    yield {
      cls: 'accepted-wrong',
      argv: g.next() < 0.8 ? validate : ['render', '-f', F, '-o', '-'],
      files: { [F]: text },
      code: 2,
      message:
        kind < 2 ? /longer than Go’s maximum duration, 2562047h/ : /below cert-manager’s minimum duration/,
      location: at(F, lineOf(text, '      duration:')),
    };
  }
  for (let i = 0; i < 15; i++) {
    const text = fleetText({
      ca: `  ca:\n    istio:\n      duration: 720h\n      renewBefore: ${g.int(1, 299)}s\n`,
    });
    yield {
      cls: 'accepted-wrong',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: /below cert-manager’s minimum renewBefore/,
      location: at(F, lineOf(text, '      renewBefore:')),
    };
  }
  // Two Services of one cluster on one nodePort.
  for (let i = 0; i < 20; i++) {
    const p = g.int(30000, 32767);
    const c1 = `name: cluster-1\n      bundleEndpoint: {type: NodePort, nodePort: ${p}}\n      eastWestGateway: {type: NodePort, nodePort: ${p}}`;
    const text = fleetText({ c1 });
    yield {
      cls: 'accepted-wrong',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: new RegExp(`nodePort ${p} is the bundle endpoint's too`),
      location: at(F, lineOf(text, 'eastWestGateway:')),
    };
  }
  // Addresses: bad hosts and ports.
  for (let i = 0; i < 50; i++) {
    const addr =
      g.next() < 0.5 ? BAD_HOSTS(g) : `${g.pick(['spire.foo.example', '10.0.0.1', '[::1]'])}:${BAD_PORTS(g)}`;
    const which = g.pick(['bundleEndpoint', 'eastWestGateway']);
    const text = fleetText({ c2: `name: cluster-2\n      ${which}:\n        address: ${yq(addr)}` });
    yield {
      cls: 'accepted-wrong',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: /address must be a host or host:port/,
      location: at(F, lineOf(text, '        address:')),
    };
  }
  // Too many clusters (a compact list of them), within the size limit.
  for (let i = 0; i < 6; i++) {
    const n = g.int(257, 3000);
    const text = `${HEAD}spec:\n  clusters:\n${Array.from({ length: n }, (_, k) => `    - {name: c${k}}\n`).join('')}`;
    yield {
      cls: 'crash-memory',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: /too many clusters: meshfed federates at most 256/,
      location: at(F, 5 + 256),
    };
  }
  // Many unknown keys: bounded work and a bounded list.
  for (let i = 0; i < 6; i++) {
    const n = g.int(1000, 20000);
    const text = `${HEAD}spec:\n${Array.from({ length: n }, (_, k) => `  k${k}_${g.word(3)}: 1\n`).join('')}`;
    yield {
      cls: 'crash-memory',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: new RegExp(`${n - 200} more problems not listed \\(meshfed lists at most 200\\)`),
      location: at(F, 4),
    };
  }
  // Files beyond the size limit, given as a file and on standard input.
  for (let i = 0; i < 6; i++) {
    const size = g.int(512 * 1024 + 1, 3 << 20);
    const text = `${HEAD}spec:\n${'#'.repeat(size)}\n`;
    const stdin = g.next() < 0.5;
    yield {
      cls: 'crash-memory',
      argv: stdin ? ['validate', '-f', '-'] : validate,
      ...(stdin ? { stdin: text } : { files: { [F]: text } }),
      code: 2,
      message: /is larger than the 524288 bytes meshfed reads as a fleet input/,
    };
  }
  // Aliases: unresolved, inside their own anchor, billion laughs; and honest reuse.
  for (let i = 0; i < 15; i++) {
    const a = g.word(g.int(1, 8));
    const text = fleetText({ c2: `name: cluster-2\n      bundleEndpoint: *${a}` });
    yield {
      cls: 'exit-code',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: new RegExp(`alias \\*${a} has no anchor &${a} before it`),
      location: at(F, lineOf(text, 'bundleEndpoint: *')),
    };
  }
  for (let i = 0; i < 5; i++) {
    const text = `${HEAD}spec:\n  apps: &a {bookinfo: {clusters: [*a]}}\n`;
    yield {
      cls: 'exit-code',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: /alias \*a is inside the node its anchor names/,
      location: at(F, 4),
    };
  }
  for (let i = 0; i < 10; i++) {
    const fan = g.int(8, 12);
    const levels = g.int(6, 9);
    let t = `${HEAD}x0: &l0 [${Array(fan).fill('"lol"').join(',')}]\n`;
    for (let l = 1; l <= levels; l++)
      t += `x${l}: &l${l} [${Array(fan)
        .fill(`*l${l - 1}`)
        .join(',')}]\n`;
    yield {
      cls: 'exit-code',
      argv: validate,
      files: { [F]: t },
      code: 2,
      message: /expands to more than 100000 nodes through its aliases/,
      location: new RegExp(`${F.replace('.', '\\.')}:\\d+:\\d+`),
    };
  }
  for (let i = 0; i < 15; i++) {
    const n = g.int(100, 256);
    const text = `${HEAD}spec:\n  clusters:\n    - name: c0\n      bundleEndpoint: &be {type: LoadBalancer}\n      eastWestGateway: &ew {type: LoadBalancer}\n${Array.from({ length: n - 1 }, (_, k) => `    - {name: c${k + 1}, bundleEndpoint: *be, eastWestGateway: *ew}\n`).join('')}`;
    yield {
      cls: 'exit-code',
      argv: validate,
      files: { [F]: text },
      code: 0,
      message: new RegExp(`ok: ${F.replace('.', '\\.')}: ${n} clusters`),
    };
  }
  // Terminal escapes in keys, values and YAML syntax.
  const CONTROL = [
    '\u001b[2J',
    '\u001b]0;owned\u0007',
    '\u009b31m',
    '\u202e',
    '\u0007',
    '\u001b[1A\u001b[K',
    '\r',
  ];
  for (let i = 0; i < 30; i++) {
    const c = g.pick(CONTROL);
    const key = `${g.word(3)}${c}${g.word(3)}`;
    const text = `${HEAD}spec:\n  ${yq(key)}: 1\n`;
    yield {
      cls: 'injection',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: /unknown key/,
      location: at(F, 4),
    };
  }
  for (let i = 0; i < 15; i++) {
    const text = `${HEAD}spec:\n  meshID: ${yq(`m${g.pick(CONTROL)}x`)}\n`;
    yield {
      cls: 'injection',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: /meshID must be a Kubernetes label value/,
      location: at(F, 4),
    };
  }
  for (let i = 0; i < 10; i++) {
    const text = `${HEAD}spec:\n  meshID: !${g.word(3)}${g.pick(CONTROL).replace(/[\r]/g, '\u001b')}x a\n   bad: [\n`;
    yield {
      cls: 'injection',
      argv: validate,
      files: { [F]: text },
      code: 2,
      message: /YAML/,
      location: new RegExp(`${F.replace('.', '\\.')}:\\d+:\\d+`),
    };
  }
  // Directories and paths through files: exit 2 naming the path.
  for (const cmd of ['validate', 'render', 'status', 'plan', 'check']) {
    yield {
      cls: 'exit-code',
      argv: [cmd, '-f', 'adir'],
      dirs: ['adir'],
      code: 2,
      message: /cannot read adir: it is a directory; give a fleet file/,
    };
    yield {
      cls: 'exit-code',
      argv: [cmd, '-f', 'afile/fleet.yaml'],
      files: { afile: 'x' },
      code: 2,
      message: /fleet file afile\/fleet\.yaml does not exist|a part of its path is not a directory/,
    };
  }
}

function* flagCases(g: Gen): Generator<Omit<HostileCase, 'id'>> {
  for (let i = 0; i < 40; i++) {
    const bad = g.next() < 0.5 ? `${BAD_HOSTS(g)}:8443` : `spire.${g.word(4)}.example:${BAD_PORTS(g)}`;
    const e = `cluster-${g.int(1, 2)}=${bad}`;
    yield {
      cls: 'accepted-wrong',
      argv: ['render', '-o', '-', '--endpoint', e],
      code: 2,
      message: /--endpoint ".*": .*; give CLUSTER=HOST:PORT|--endpoint ".*" is not CLUSTER=HOST:PORT/,
    };
  }
  for (let i = 0; i < 20; i++) {
    const flag = g.pick([`--${g.word(g.int(1, 12))}`, `-${g.word(1, 'abcdegijkmnpqrstuvwxyz')}`, g.word(5)]);
    yield {
      cls: 'exit-code',
      argv: ['schema', flag],
      code: 2,
      message: /meshfed schema: (Unknown option|Unexpected argument)/,
    };
  }
  const PATHS = ['/proc/x', '/proc/x/y/z', '/proc/self/x', '/sys/x', '/dev/null/x', 'afile/sub', 'afile'];
  for (let i = 0; i < 21; i++) {
    const p = PATHS[i % PATHS.length]!;
    yield {
      cls: 'hang',
      argv: ['render', '-o', p],
      files: { afile: 'x' },
      code: 2,
      message: /cannot write -o .*; choose another output path/,
    };
  }
  for (let i = 0; i < 8; i++) {
    yield {
      cls: 'exit-code',
      argv: [
        'report',
        '--from',
        'r.json',
        '--out',
        g.pick(['/proc/x/r.html', 'afile/r.html', '/dev/null/r.html', 'adir']),
      ],
      files: { afile: 'x', 'r.json': '{"results":[]}' },
      dirs: ['adir'],
      code: 2,
      message: /cannot write --out/,
    };
  }
  for (let i = 0; i < 10; i++) {
    const d = g.pick([`${g.int(2562048, 9e8)}h`, `${'9'.repeat(g.int(20, 80))}s`, 'forever', '-5m', '5']);
    yield {
      cls: 'accepted-wrong',
      argv: g.next() < 0.5 ? ['certs', 'x.pem', '--warn-within', d] : ['status', '--timeout', d],
      files: { 'x.pem': '' },
      code: 2,
      message: /is not a (Go )?duration|'--(warn-within|timeout)' argument is ambiguous/,
    };
  }
}

const KUBE_CA = Buffer.from('not a certificate').toString('base64');

function kubeconfig(o: { token: string; userBlock?: string; servers?: [string, string] }): string {
  const [s1, s2] = o.servers ?? ['https://127.0.0.1:1', 'https://127.0.0.1:2'];
  return `apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster:
    server: ${s1}
    certificate-authority-data: ${KUBE_CA}
- name: c2
  cluster:
    server: ${s2}
    certificate-authority-data: ${KUBE_CA}
contexts:
- name: ${SEED_CLUSTERS[0]!.name}
  context: {cluster: c1, user: u}
- name: ${SEED_CLUSTERS[1]!.name}
  context: {cluster: c2, user: u}
users:
- name: u
  user:
${o.userBlock ?? `    token: ${o.token}\n`}`;
}

function* kubeconfigCases(g: Gen): Generator<Omit<HostileCase, 'id'>> {
  const K = 'k.yaml';
  const cmds = ['status', 'plan', 'up', 'down', 'check'];
  const breakers: Array<(t: string) => string> = [
    (t) => `    token: "${t}\n    extra: 1\n`,
    (t) => `    token: ${t}\n   bad: indent\n`,
    (t) => `    token: ${t}: more\n`,
    (t) => `    token: [${t}\n`,
    (t) => `    token: ${t}\n\ttab: 1\n`,
    (t) => `    token: {a: ${t}\n`,
    (t) => `    token: '${t}\n`,
    (t) => `    client-key-data: ${t}\n    token: ${t}\n  - broken: [\n`,
  ];
  for (let i = 0; i < 64; i++) {
    const token = g.secret();
    const text = kubeconfig({ token, userBlock: g.pick(breakers)(token) });
    yield {
      cls: 'secret',
      argv: [cmds[i % cmds.length]!, '--kubeconfig', K],
      files: { [K]: text },
      code: 2,
      message: /not valid YAML \([A-Z_]+\); fix the file, or give another with --kubeconfig/,
      location: /kubeconfig .*k\.yaml:\d+:\d+/,
      secrets: [token],
    };
  }
  // Wrong shapes, located.
  const shapes: Array<[string, RegExp]> = [
    ['clusters: 5\n', /"clusters" must be a list/],
    ['clusters: [null]\n', /each of "clusters" must be a mapping/],
    ['users: "x"\n', /"users" must be a list/],
    ['contexts: [1, 2]\n', /each of "contexts" must be a mapping/],
    ['- just a list\n', /a kubeconfig is a YAML mapping/],
  ];
  for (let i = 0; i < 25; i++) {
    const [body, msg] = shapes[i % shapes.length]!;
    const token = g.secret();
    const users = body.startsWith('users') ? '' : `users:\n- name: u\n  user: {token: ${token}}\n`;
    const text = body.startsWith('-') ? body : `apiVersion: v1\nkind: Config\n${body}${users}`;
    yield {
      cls: 'exit-code',
      argv: [g.pick(cmds), '--kubeconfig', K],
      files: { [K]: text },
      code: 2,
      message: msg,
      location: /kubeconfig .*k\.yaml:\d+:\d+/,
      secrets: [token],
    };
  }
  for (let i = 0; i < 10; i++) {
    const token = g.secret();
    const text = kubeconfig({ token }).replace(
      `- name: ${SEED_CLUSTERS[1]!.name}`,
      `- name: other-${g.word(4)}`,
    );
    yield {
      cls: 'exit-code',
      argv: [g.pick(cmds), '--kubeconfig', K],
      files: { [K]: text },
      code: 2,
      message: /has no context "cluster-2"/,
      secrets: [token],
    };
  }
  for (let i = 0; i < 6; i++) {
    const token = g.secret();
    yield {
      cls: 'exit-code',
      argv: [g.pick(cmds), '--kubeconfig', g.pick(['kdir', 'missing.yaml'])],
      dirs: ['kdir'],
      code: 2,
      message: /cannot read kubeconfig .*: (it is a directory|it does not exist)/,
      secrets: [token],
    };
  }
}

/** Certificates the certs cases use, made once by the test (PEM text). */
export interface CertMaterial {
  chainPem: string;
  rootPem: string;
  /** The root's DER in base64. */
  rootDer: string;
  /** A certificate whose subject carries terminal control characters. */
  hostileSubjectPem: string;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

function* certsCases(g: Gen, m: CertMaterial): Generator<Omit<HostileCase, 'id'>> {
  const C = 'in.json';
  // JWKS with a private "d", broken at random places after it.
  for (let i = 0; i < 40; i++) {
    const d = g.secret();
    const good = `{"keys":[{"use":"jwt-svid","kty":"EC","kid":"k1","crv":"P-256","x":"${g.word(20)}","y":"${g.word(20)}","d":"${d}"}]}`;
    const cut = good.indexOf(d) + g.int(0, d.length + 3);
    const broken = g.pick([
      good.slice(0, cut),
      `${good.slice(0, cut)}\u0001${good.slice(cut)}`,
      `${good.slice(0, cut)}"${good.slice(cut)}`,
      good.replace(`"d":"${d}"`, `"d":${d}`),
      good.replace('}]}', '},]}'),
    ]);
    const asBundle = g.next() < 0.3;
    yield {
      cls: 'secret',
      argv: asBundle
        ? ['certs', 'chain.pem', '--bundle', C, '--trust-domain', 'foo.com']
        : ['certs', C, '--trust-domain', 'foo.com'],
      files: { [C]: broken, 'chain.pem': m.chainPem },
      code: 2,
      message: /not valid JSON at line \d+, column \d+/,
      location: /line \d+, column \d+/,
      secrets: [d],
    };
  }
  // A JWKS with only a jwt-svid key (and its d): no certificate to show.
  for (let i = 0; i < 5; i++) {
    const d = g.secret();
    yield {
      cls: 'secret',
      argv: ['certs', C, '--trust-domain', 'foo.com'],
      files: { [C]: `{"keys":[{"use":"jwt-svid","kty":"EC","kid":"k","d":"${d}"}]}` },
      code: 2,
      message: /the bundle holds no X\.509 authority/,
      secrets: [d],
    };
  }
  // Config dump shapes.
  const SECRET_TYPE = 'type.googleapis.com/envoy.admin.v3.SecretsConfigDump';
  const shapes: Array<[unknown, RegExp]> = [
    [{ configs: [null] }, /\$\.configs\[0\] must be an object, found null/],
    [{ configs: 5 }, /\$\.configs must be a list, found a number/],
    [
      { configs: [{ '@type': SECRET_TYPE, dynamic_active_secrets: [null] }] },
      /\$\.configs\[0\]\.dynamicActiveSecrets\[0\] must be an object/,
    ],
    [
      { configs: [{ '@type': SECRET_TYPE, dynamic_active_secrets: 'x' }] },
      /dynamic_active_secrets must be a list, found a string/,
    ],
    [{ dynamicActiveSecrets: 'x' }, /\$\.dynamicActiveSecrets must be a list/],
    [{ dynamicActiveSecrets: [1] }, /\$\.dynamicActiveSecrets\[0\] must be an object, found a number/],
    [{ dynamicActiveSecrets: [{ secret: [] }] }, /\.secret must be an object, found a list/],
    [{ dynamicActiveSecrets: [{ secret: { tlsCertificate: 5 } }] }, /\.tlsCertificate must be an object/],
    [
      { dynamicActiveSecrets: [{ secret: { tlsCertificate: { certificateChain: { inlineBytes: 5 } } } }] },
      /inlineBytes must be a base64 string, found a number/,
    ],
    [
      { dynamicActiveSecrets: [{ secret: { validationContext: { trustedCa: [] } } }] },
      /trustedCa must be an object, found a list/,
    ],
    [{ dynamicActiveSecrets: [{}] }, /the config dump holds no certificate/],
    [
      { dynamicActiveSecrets: [{ name: 'default', secret: { name: 'default' } }] },
      /the config dump holds no certificate/,
    ],
    [{ staticSecrets: [{ secret: {} }] }, /the config dump holds no certificate/],
    [{ configs: [] }, /no Envoy secrets/],
    [{}, /no Envoy secrets/],
    [{ keys: [] }, /the bundle holds no X\.509 authority/],
    [{ keys: 5 }, /bundle has no "keys" array/],
    [{ keys: [null] }, /keys\[0\] is not an object/],
    [{ keys: [[]] }, /keys\[0\] is not an object/],
    [{ keys: [{ kty: 'EC', use: 'x509-svid', x5c: ['AAAA'] }] }, /keys\[0\]: not a DER X\.509 certificate/],
    [
      {
        dynamicActiveSecrets: [
          { secret: { tlsCertificate: { certificateChain: { inlineBytes: b64('garbage') } } } },
        ],
      },
      /no PEM CERTIFICATE block/,
    ],
  ];
  for (let i = 0; i < 63; i++) {
    const [doc, msg] = shapes[i % shapes.length]!;
    const stdin = g.next() < 0.3;
    const text = JSON.stringify(doc, null, g.int(0, 2));
    yield {
      cls: 'exit-code',
      argv: ['certs', stdin ? '-' : C, ...(g.next() < 0.5 ? ['-o', 'json'] : [])],
      ...(stdin ? { stdin: text } : { files: { [C]: text } }),
      code: 2,
      message: msg,
    };
  }
  // Not JSON nor PEM, truncated PEM, too many certificates.
  for (let i = 0; i < 10; i++) {
    const text = g.pick([
      g.word(g.int(0, 100), '\u0000\u0001xyz<>[]'),
      `[${g.word(5)}]`,
      m.chainPem.slice(0, g.int(30, m.chainPem.indexOf('-----END') - 1)),
      '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
    ]);
    yield {
      cls: 'exit-code',
      argv: ['certs', 'x.pem'],
      files: { 'x.pem': text },
      code: 2,
      message: /neither PEM nor JSON|not a DER X\.509 certificate|no PEM CERTIFICATE block|does not parse/,
    };
  }
  // A certificate whose validity time is malformed (found by the fuzzer: a RangeError, exit 1).
  for (let i = 0; i < 10; i++) {
    const der = Buffer.from(m.rootDer, 'base64');
    const t = der.indexOf(Buffer.from([0x17, 0x0d])) + 2 + g.pick([0, 2, 4, 6, 8, 10, 12, 26]);
    der[t] = g.pick(['-', ':', 'x', '9']).charCodeAt(0);
    const b = der.toString('base64');
    const asPem = g.next() < 0.5;
    yield {
      cls: 'exit-code',
      argv: ['certs', asPem ? 'x.pem' : C, '--trust-domain', 'foo.com'],
      files: asPem
        ? { 'x.pem': `-----BEGIN CERTIFICATE-----\n${b}\n-----END CERTIFICATE-----\n` }
        : { [C]: JSON.stringify({ keys: [{ use: 'x509-svid', kty: 'EC', x5c: [b] }] }) },
      code: 2,
      message: /its validity \(notBefore\/notAfter\) is not a time|not a DER X\.509 certificate/,
    };
  }
  for (let i = 0; i < 4; i++) {
    const n = g.int(257, 600);
    yield {
      cls: 'crash-memory',
      argv: ['certs', 'x.pem'],
      files: { 'x.pem': m.rootPem.repeat(n) },
      code: 2,
      message: /more than 256 certificates \(meshfed's limit for one input\)/,
    };
  }
  for (let i = 0; i < 4; i++) {
    const dump = {
      dynamicActiveSecrets: [
        {
          name: 'ROOTCA',
          secret: { validationContext: { trustedCa: { inlineBytes: b64(m.rootPem.repeat(200)) } } },
        },
        {
          name: 'ROOTCA2',
          secret: {
            validationContext: { trustedCa: { inlineBytes: b64(m.rootPem.repeat(g.int(57, 200))) } },
          },
        },
      ],
    };
    yield {
      cls: 'crash-memory',
      argv: ['certs', C],
      files: { [C]: JSON.stringify(dump) },
      code: 2,
      message: /holds more than the 256 certificates meshfed reads/,
    };
  }
  // A certificate subject with control characters reaches the terminal escaped.
  for (let i = 0; i < 5; i++)
    yield {
      cls: 'injection',
      argv: ['certs', 'x.pem'],
      files: { 'x.pem': m.hostileSubjectPem },
      code: 1,
      message: /spiffe: +spiffe:\/\/foo\.com\/ns\/x\/sa\/y\\x1b\[2J/,
    };
  for (const p of ['cdir', 'missing.pem'])
    yield {
      cls: 'exit-code',
      argv: ['certs', p],
      dirs: ['cdir'],
      code: 2,
      message: /cannot read (cdir: it is a directory|missing\.pem: it does not exist)/,
    };
}

function result(o: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    code: 'MF201',
    title: 'phases healthy',
    category: 'phases',
    severity: 'error',
    status: 'passed',
    summary: 'ok',
    findings: [{ status: 'passed', cluster: 'cluster-1', message: 'ok' }],
    durationMs: 3,
    ...o,
  };
}

const HTML_ATTACKS = [
  '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  "'><svg onload=alert(1)>",
  '</td></tr></table><iframe src=//evil.example>',
];

function* reportCases(g: Gen): Generator<Omit<HostileCase, 'id'>> {
  const R = 'r.json';
  for (let i = 0; i < 20; i++) {
    const attack = g.pick(HTML_ATTACKS);
    const field = g.pick(['code', 'status', 'category', 'severity']);
    yield {
      cls: 'injection',
      argv: ['report', '--from', R, '--out', 'o.html'],
      files: { [R]: JSON.stringify({ results: [result(), result({ [field]: attack })] }) },
      code: 2,
      message: new RegExp(`--from r\\.json: \\$\\.results\\[1\\]\\.${field}: `),
    };
  }
  for (let i = 0; i < 20; i++) {
    const attack = g.pick(HTML_ATTACKS);
    const field = g.pick(['title', 'summary', 'hint', 'findings']);
    const r =
      field === 'findings'
        ? result({
            findings: [
              { status: 'failed', cluster: attack, message: attack },
              { status: 'passed', message: 'x' },
            ],
          })
        : result({ [field]: attack });
    yield {
      cls: 'injection',
      argv: ['report', '--from', R, '--out', 'o.html'],
      files: { [R]: JSON.stringify({ results: [r] }) },
      code: 0,
      message: /report: /,
      writes: { file: 'o.html', mustNotMatch: /<(script|img|iframe)|<svg onload|http-equiv="refresh"/ },
    };
  }
  const shapes: Array<[string, RegExp]> = [
    ['{"results": 5}', /\$\.results: /],
    ['{"results": [null]}', /\$\.results\[0\]: /],
    ['{"results": [{}]}', /\$\.results\[0\]\.code: missing/],
    ['[]', /no "results" list|\$: /],
    ['null', /\$: /],
    ['{}', /no "results" list/],
    [JSON.stringify({ results: [result({ findings: 'x' })] }), /\$\.results\[0\]\.findings: /],
    [JSON.stringify({ results: [result({ durationMs: 'x' })] }), /\$\.results\[0\]\.durationMs: /],
    [
      JSON.stringify({ results: [result({ findings: [{ status: 'odd', message: 'm' }] })] }),
      /findings\[0\]\.status: /,
    ],
    ['{"results": [', /not valid JSON at line 1, column \d+/],
    ['{"results": [}', /not valid JSON at line 1, column \d+/],
    ['\n\n  {"results": x}', /not valid JSON at line 3, column \d+/],
  ];
  for (let i = 0; i < 36; i++) {
    const [text, msg] = shapes[i % shapes.length]!;
    yield {
      cls: 'exit-code',
      argv: ['report', '--from', R, '--out', 'o.html'],
      files: { [R]: text },
      code: 2,
      message: msg,
    };
  }
  yield {
    cls: 'exit-code',
    argv: ['report', '--from', 'rdir', '--out', 'o.html'],
    dirs: ['rdir'],
    code: 2,
    message: /cannot read --from rdir: it is a directory/,
  };
}

/** Every case of the corpus for `seed`, with stable ids (class-number). */
export function hostileCorpus(seed: number, m: CertMaterial): HostileCase[] {
  const g = new Gen(seed);
  const all = [
    ...fleetCases(g),
    ...flagCases(g),
    ...kubeconfigCases(g),
    ...certsCases(g, m),
    ...reportCases(g),
  ];
  return all.map((c, i) => ({ ...c, id: `${c.cls}-${String(i).padStart(3, '0')}` }));
}
