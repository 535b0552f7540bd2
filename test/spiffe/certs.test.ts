import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { bundleToJwks, isNewer, parseJwksBundle, parsePemBundle, sameKeys } from '../../src/spiffe/bundle.js';
import { parseSpiffeId, parseTrustDomain, SpiffeIdError } from '../../src/spiffe/id.js';
import { InputError, parseCertInput } from '../../src/spiffe/inspect.js';
import { runMeshfed } from '../helpers/cli.js';
import { DAY, type Issued, intermediate, root, svid } from '../helpers/pki.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** The shape `istioctl proxy-config secret -o json` prints. */
function configDump(chain: Issued[], roots: Issued[]) {
  return JSON.stringify({
    dynamicActiveSecrets: [
      {
        name: 'default',
        secret: {
          '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
          name: 'default',
          tlsCertificate: {
            certificateChain: { inlineBytes: b64(chain.map((c) => c.pem).join('')) },
            privateKey: { inlineBytes: 'W3JlZGFjdGVkXQ==' },
          },
        },
      },
      {
        name: 'ROOTCA',
        secret: {
          name: 'ROOTCA',
          validationContext: { trustedCa: { inlineBytes: b64(roots.map((c) => c.pem).join('')) } },
        },
      },
    ],
  });
}

describe('meshfed certs', () => {
  let fooRoot: Issued;
  let barRoot: Issued;
  let fooInt: Issued;
  let leaf: Issued;
  let dir: string;
  before(async () => {
    fooRoot = await root();
    barRoot = await root();
    fooInt = await intermediate(fooRoot, 'foo.com');
    leaf = await svid(fooInt, 'spiffe://foo.com/ns/bookinfo/sa/bookinfo-productpage', {
      notAfter: new Date(Date.now() + 3600_000),
    });
    dir = mkdtempSync(join(tmpdir(), 'meshfed-certs-'));
  });

  test('an Envoy config dump becomes the tree root → SPIRE intermediate → workload SVID, valid, with an expiry warning', async () => {
    writeFileSync(join(dir, 'dump.json'), configDump([leaf, fooInt], [fooRoot, barRoot]));
    const t0 = Date.now();
    const r = await runMeshfed(['certs', 'dump.json'], { cwd: dir });
    const t1 = Date.now();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^envoy-config-dump \(secret default\): 4 certificates/);
    assert.match(
      r.stdout,
      /\[leaf\] workload SVID[\s\S]*spiffe: +spiffe:\/\/foo\.com\/ns\/bookinfo\/sa\/bookinfo-productpage/,
    );
    assert.match(r.stdout, /\[intermediate\] SPIRE intermediate[\s\S]*spiffe: +spiffe:\/\/foo\.com\n/);
    assert.match(r.stdout, /\[root\] cert-manager root \(trusted, not presented\)/);
    assert.match(r.stdout, /key: +ECDSA prime256v1 256-bit/);
    assert.match(
      r.stdout,
      /verdict: VALID X\.509-SVID spiffe:\/\/foo\.com\/ns\/bookinfo\/sa\/bookinfo-productpage against the foo\.com bundle/,
    );
    // The leaf has under an hour left; how much exactly depends on when the command read the
    // clock (somewhere in t0..t1), not on how long key generation in before() took.
    const left = (at: number) => Math.floor((leaf.cert.notAfter.getTime() - at) / 1000);
    const expected = new Set<string>();
    for (let s = left(t1); s <= left(t0); s++) expected.add(`${Math.floor(s / 60)}m${s % 60}s`);
    const said = /warning: certificate 0 .* expires in (\S+)/.exec(r.stdout)?.[1];
    assert.ok(said && expected.has(said), `expires in ${said}, not one of ${[...expected].join(', ')}`);
    assert.doesNotMatch(r.stdout, /W3JlZGFjdGVkXQ|PRIVATE KEY/, 'no key material is printed');
    const json = JSON.parse((await runMeshfed(['certs', 'dump.json', '-o', 'json'], { cwd: dir })).stdout);
    assert.deepEqual(
      json.certificates.map((c: { role: string; origin: string }) => [c.role, c.origin]),
      [
        ['leaf', 'workload SVID'],
        ['intermediate', 'SPIRE intermediate'],
        ['root', 'cert-manager root'],
        ['root', 'cert-manager root'],
      ],
    );
    assert.equal(json.verdict.valid, true);
  });

  test('a PEM chain judged against a bundle of another root is invalid (exit 1); stdin works', async () => {
    writeFileSync(join(dir, 'bar.pem'), barRoot.pem);
    const pem = leaf.pem + fooInt.pem;
    const r = await runMeshfed(['certs', '-', '--bundle', 'bar.pem', '--trust-domain', 'foo.com'], {
      cwd: dir,
      stdin: pem,
    });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /verdict: INVALID[\s\S]*\[untrusted-chain\]/);
    const ok = await runMeshfed(['certs', '-', '--bundle', 'root.pem', '--trust-domain', 'foo.com'], {
      cwd: dir,
      stdin: pem,
    });
    assert.equal(ok.code, 2, 'a missing bundle file is bad input');
  });

  test('the full config_dump shape (pilot-agent) and the warning threshold', async () => {
    const inner = JSON.parse(configDump([leaf, fooInt], [fooRoot]));
    const full = {
      configs: [
        { '@type': 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump' },
        { '@type': 'type.googleapis.com/envoy.admin.v3.SecretsConfigDump', ...inner },
      ],
    };
    writeFileSync(join(dir, 'full.json'), JSON.stringify(full));
    const near = await runMeshfed(['certs', 'full.json', '--warn-within', '2h'], { cwd: dir });
    assert.equal(near.code, 0);
    assert.match(near.stdout, /verdict: VALID/);
    assert.match(near.stdout, /warning: certificate 0/);
    const quiet = await runMeshfed(['certs', 'full.json', '--warn-within', '30m'], { cwd: dir });
    assert.doesNotMatch(quiet.stdout, /warning: certificate 0/);
    assert.equal((await runMeshfed(['certs', 'full.json', '--warn-within', 'soon'], { cwd: dir })).code, 2);
  });

  test('bad input exits 2 with a clear message', async () => {
    writeFileSync(join(dir, 'junk.txt'), 'hello');
    assert.match((await runMeshfed(['certs', 'junk.txt'], { cwd: dir })).stderr, /neither PEM nor JSON/);
    writeFileSync(join(dir, 'empty.json'), '{"configs": []}');
    const r = await runMeshfed(['certs', 'empty.json'], { cwd: dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no Envoy secrets/);
    assert.equal((await runMeshfed(['certs'], { cwd: dir })).code, 2);
  });

  test('bundles: JWKS round trip, sequence comparison, PEM form, trust domain checked', async () => {
    const b = {
      trustDomain: 'foo.com',
      x509Authorities: [fooRoot.cert],
      jwtAuthorities: new Map(),
      sequence: 3,
      refreshHintSeconds: 300,
    };
    const jwks = bundleToJwks(b);
    const back = parseJwksBundle(jwks, 'foo.com');
    assert.ok(sameKeys(b, back));
    assert.equal(back.refreshHintSeconds, 300);
    assert.equal(isNewer({ ...back, sequence: 4 }, back), true);
    assert.equal(sameKeys(back, parsePemBundle(barRoot.pem, 'foo.com')), false);
    assert.throws(
      () => parseJwksBundle('{"keys": [{"use": "x509-svid", "kty": "EC", "x5c": []}]}', 'foo.com'),
      /exactly one certificate/,
    );
    assert.throws(() => parseJwksBundle(jwks, 'Foo.com'), SpiffeIdError);
    const fromInput = parseCertInput(jwks, { trustDomain: 'foo.com' });
    assert.equal(fromInput.kind, 'spiffe-bundle');
  });

  test('expired certificates are reported as such', async () => {
    const old = await svid(fooInt, 'spiffe://foo.com/w', {
      notBefore: new Date(Date.now() - 3 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const r = await runMeshfed(['certs', '-'], { stdin: old.pem + fooInt.pem });
    assert.match(r.stdout, /EXPIRED/);
  });
});

describe('SPIFFE IDs', () => {
  const good = ['spiffe://foo.com/ns/a/sa/b', 'spiffe://foo.com', 'spiffe://a_b-c.d/x.y-z_0'];
  const bad: Array<[string, string]> = [
    ['', 'empty'],
    ['SPIFFE://foo.com/a', 'scheme'],
    ['https://foo.com/a', 'scheme'],
    ['spiffe:///a', 'trust-domain-empty'],
    ['spiffe://Foo.com/a', 'trust-domain-chars'],
    ['spiffe://foo.com:443/a', 'port'],
    ['spiffe://user@foo.com/a', 'userinfo'],
    ['spiffe://foo.com/a?b', 'query-fragment'],
    ['spiffe://foo.com/a#b', 'query-fragment'],
    ['spiffe://foo.com//a', 'path-empty-segment'],
    ['spiffe://foo.com/a/../b', 'path-dot-segment'],
    ['spiffe://foo.com/a/./b', 'path-dot-segment'],
    ['spiffe://foo.com/a%20b', 'path-chars'],
    ['spiffe://foo.com/', 'path-trailing-slash'],
    [`spiffe://foo.com/${'a'.repeat(2100)}`, 'too-long'],
  ];
  for (const id of good) test(`accepts ${id}`, () => assert.equal(parseSpiffeId(id).uri, id));
  for (const [id, rule] of bad)
    test(`rejects ${id.slice(0, 40) || '(empty)'} by rule ${rule}`, () => {
      assert.throws(
        () => parseSpiffeId(id),
        (e: unknown) => e instanceof SpiffeIdError && e.rule === rule,
      );
    });
  test('trust domain names', () => {
    assert.equal(parseTrustDomain('bar.com'), 'bar.com');
    assert.throws(
      () => parseTrustDomain('spiffe://bar.com'),
      (e: unknown) => e instanceof SpiffeIdError && e.rule === 'scheme',
    );
  });
});

describe('parsers on random and mutated input: only typed errors, no crash, no hang', () => {
  let seed = 42;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const typed = (e: unknown) =>
    e instanceof SpiffeIdError ||
    e instanceof InputError ||
    (e as Error).name === 'BundleError' ||
    (e as Error).name === 'CertParseError';
  function mutate(s: string): string {
    const a = [...s];
    const n = 1 + Math.floor(rand() * 4);
    for (let i = 0; i < n; i++) {
      const at = Math.floor(rand() * (a.length + 1));
      const op = rand();
      if (op < 0.33) a.splice(at, 1);
      else if (op < 0.66) a.splice(at, 0, String.fromCharCode(Math.floor(rand() * 128)));
      else a[at] = String.fromCharCode(Math.floor(rand() * 256));
    }
    return a.join('');
  }
  test('SPIFFE IDs, bundles, config dumps and PEM', async () => {
    const r = await root();
    const seeds = [
      'spiffe://foo.com/ns/default/sa/sleep',
      bundleToJwks({
        trustDomain: 'foo.com',
        x509Authorities: [r.cert],
        jwtAuthorities: new Map(),
        sequence: 1,
      }),
      configDump([r], [r]),
      r.pem,
    ];
    let runs = 0;
    for (const s of seeds)
      for (let i = 0; i < 1500; i++) {
        const input =
          i % 10 === 0
            ? Array.from({ length: Math.floor(rand() * 64) }, () =>
                String.fromCharCode(Math.floor(rand() * 256)),
              ).join('')
            : mutate(s);
        for (const parse of [
          () => parseSpiffeId(input),
          () => parseCertInput(input, { trustDomain: 'foo.com' }),
          () => parseJwksBundle(input, 'foo.com'),
        ]) {
          runs++;
          try {
            parse();
          } catch (e) {
            assert.ok(
              typed(e),
              `untyped ${(e as Error).name}: ${(e as Error).message} for ${JSON.stringify(input.slice(0, 80))}`,
            );
          }
        }
      }
    assert.equal(runs, 18000);
  });
});
