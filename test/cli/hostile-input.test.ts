/**
 * Issue 19: the hostile corpus. Several hundred generated bad inputs (test/helpers/hostile.ts,
 * deterministic from MESHFED_CORPUS_SEED) run in-process through the CLI;
 * each must give its exit code and message, its file:line:col where the
 * input has one, no secret and no raw control character in any output, in
 * bounded time and memory. A few inputs only a separate process can judge
 * (/dev/zero, a 50 MB file, V8's heap limit) run as subprocesses with a
 * heap cap and their peak RSS read back; silent API servers (IPv4 and IPv6)
 * check that --timeout bounds the first probe.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runMeshfed } from '../helpers/cli.js';
import { type CertMaterial, type HostileCase, hostileCorpus } from '../helpers/hostile.js';
import { DAY, digitalSignature, intermediate, issue, root, svid } from '../helpers/pki.js';

const SEED = Number(process.env.MESHFED_CORPUS_SEED ?? 20261126);
/** No case may take longer (a hang) … */
const CASE_MS = 10_000;
/** … or grow the heap by more (in-process) … */
const CASE_HEAP_MB = 300;
/** … and a subprocess runs with this heap cap and must stay under this peak RSS. */
const SUB_HEAP_MB = 256;
const SUB_RSS_MB = 400;

// C0 (but \t and \n), DEL, C1 and bidi controls: nothing of these may reach the terminal raw.
// biome-ignore lint/suspicious/noControlCharactersInRegex: they are what is looked for
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

const here = dirname(fileURLToPath(import.meta.url));
const MAIN = join(here, '../../src/cli/main.js');
const RUSAGE = join(here, '../helpers/rusage.js');

interface Stat {
  id: string;
  ms: number;
  heapMb: number;
}

const base = mkdtempSync(join(tmpdir(), 'meshfed-hostile-'));
after(() => rmSync(base, { recursive: true, force: true }));

async function material(): Promise<CertMaterial> {
  const r = await root();
  const int = await intermediate(r, 'foo.com');
  const leaf = await svid(int, 'spiffe://foo.com/ns/default/sa/sleep');
  const hostile = await issue({
    subject: 'CN=evil',
    ca: false,
    usages: digitalSignature,
    issuer: int,
    uris: ['spiffe://foo.com/ns/x/sa/y\u001b[2J'],
    notAfter: new Date(Date.now() + 30 * DAY),
  });
  return {
    chainPem: leaf.pem + int.pem,
    rootPem: r.pem,
    rootDer: r.cert.der.toString('base64'),
    hostileSubjectPem: hostile.pem + int.pem,
  };
}

function setUp(c: HostileCase): string {
  const dir = join(base, c.id);
  mkdirSync(dir);
  for (const d of c.dirs ?? []) mkdirSync(join(dir, d));
  for (const [name, content] of Object.entries(c.files ?? {})) writeFileSync(join(dir, name), content);
  return dir;
}

/** What every case must hold to, whatever it is. */
function assertCommon(c: HostileCase, r: { code: number; stdout: string; stderr: string }): void {
  const out = `${r.stderr}${r.stdout}`;
  const said = `\n${out.slice(0, 600)}`;
  assert.equal(r.code, c.code, `${c.id}: exit ${r.code}, expected ${c.code}${said}`);
  assert.match(out, c.message, `${c.id}: message, expected ${c.message}${said}`);
  if (c.location) assert.match(out, c.location, `${c.id}: location, expected ${c.location}${said}`);
  // Not a secret, nor any 6 characters of one: an error snippet may show only a part.
  for (const s of c.secrets ?? [])
    for (let i = 0; i + 6 <= s.length; i++)
      assert.ok(!out.includes(s.slice(i, i + 6)), `${c.id}: part of a secret reached the output${said}`);
  assert.doesNotMatch(r.stderr, RAW_CONTROL, `${c.id}: a raw control character on stderr`);
  if (!c.argv.includes('-o') || c.argv.includes('text'))
    assert.doesNotMatch(r.stdout, RAW_CONTROL, `${c.id}: a raw control character on stdout`);
}

describe('hostile input (issue 19)', () => {
  let cases: HostileCase[] = [];
  const stats: Stat[] = [];
  before(async () => {
    cases = hostileCorpus(SEED, await material());
  });

  test(`the corpus (seed ${SEED}): every case exits as it must, says what and where, leaks nothing, in bounds`, async (t) => {
    assert.ok(cases.length >= 500, `only ${cases.length} cases`);
    const classes = new Set(cases.map((c) => c.cls));
    for (const cls of ['crash-memory', 'hang', 'secret', 'accepted-wrong', 'exit-code', 'injection'])
      assert.ok(classes.has(cls as HostileCase['cls']), `no case of class ${cls}`);
    const failures: string[] = [];
    for (const c of cases) {
      const dir = setUp(c);
      global.gc?.();
      const heap0 = process.memoryUsage().heapUsed;
      const t0 = performance.now();
      const r = await runMeshfed(c.argv, {
        cwd: dir,
        env: { HOME: dir },
        ...(c.stdin !== undefined ? { stdin: c.stdin } : {}),
      });
      const ms = performance.now() - t0;
      const heapMb = (process.memoryUsage().heapUsed - heap0) / 1e6;
      stats.push({ id: c.id, ms, heapMb });
      try {
        assertCommon(c, r);
        assert.ok(ms < CASE_MS, `${c.id}: took ${ms.toFixed(0)} ms`);
        assert.ok(heapMb < CASE_HEAP_MB, `${c.id}: heap grew ${heapMb.toFixed(0)} MB`);
        if (c.writes) {
          const w = readFileSync(join(dir, c.writes.file), 'utf8');
          if (c.writes.mustMatch) assert.match(w, c.writes.mustMatch);
          if (c.writes.mustNotMatch)
            assert.doesNotMatch(w, c.writes.mustNotMatch, `${c.id}: ${c.writes.file}`);
        }
      } catch (e) {
        failures.push((e as Error).message.split('\n').slice(0, 6).join('\n'));
      }
      rmSync(dir, { recursive: true, force: true });
    }
    const located = cases.filter((c) => c.code === 2 && c.location).length;
    const slowest = stats.reduce((a, b) => (b.ms > a.ms ? b : a));
    const largest = stats.reduce((a, b) => (b.heapMb > a.heapMb ? b : a));
    t.diagnostic(
      `seed ${SEED}: ${cases.length} cases, ${cases.filter((c) => c.code === 2).length} exit 2 (${located} with a location), ${failures.length} failed; slowest ${slowest.id} ${slowest.ms.toFixed(0)} ms; largest heap growth ${largest.id} ${largest.heapMb.toFixed(1)} MB`,
    );
    const byClass = new Map<string, number>();
    for (const c of cases) byClass.set(c.cls, (byClass.get(c.cls) ?? 0) + 1);
    t.diagnostic(`by class: ${[...byClass].map(([k, v]) => `${k} ${v}`).join(', ')}`);
    assert.deepEqual(
      failures,
      [],
      `${failures.length} of ${cases.length} cases failed:\n${failures.slice(0, 30).join('\n---\n')}`,
    );
  });

  test('report HTML: every field of a result is escaped, the code and statuses too', async () => {
    const { defaultFleet } = await import('../../src/fleet/load.js');
    const { reportHtml } = await import('../../src/verify/report.js');
    const attack = '<meta http-equiv="refresh" content="0;url=https://evil.example/">';
    const html = reportHtml(
      defaultFleet(),
      [
        {
          code: attack,
          title: attack,
          category: attack as 'fleet',
          severity: 'error',
          status: attack as 'passed',
          summary: attack,
          hint: attack,
          findings: [
            { status: attack as 'passed', cluster: attack, message: attack },
            { status: 'passed', message: attack },
          ],
          durationMs: 1,
        },
      ],
      { at: new Date(0) },
    );
    assert.doesNotMatch(html, /<meta http-equiv="refresh"/);
    assert.equal(html.match(/<meta /g)?.length, 2, 'only the page’s own charset and CSP');
  });

  /** Runs the real executable with a heap cap; resolves with its exit, output, time and peak RSS. */
  function sub(
    argv: string[],
    cwd: string,
    stdinFrom?: string,
  ): Promise<{ code: number | null; out: string; ms: number; rssMb: number }> {
    return new Promise((resolve) => {
      const t0 = performance.now();
      const stdin = stdinFrom ? openSync(stdinFrom, 'r') : 'ignore';
      const p = spawn(
        process.execPath,
        [`--max-old-space-size=${SUB_HEAP_MB}`, '--import', RUSAGE, MAIN, ...argv],
        {
          cwd,
          env: { PATH: process.env.PATH ?? '', HOME: cwd },
          stdio: [stdin, 'pipe', 'pipe'],
        },
      );
      let out = '';
      p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      const killer = setTimeout(() => p.kill('SIGKILL'), 3 * CASE_MS);
      p.on('close', (code) => {
        clearTimeout(killer);
        if (typeof stdin === 'number') closeSync(stdin);
        const rss = /meshfed-test-rusage maxRSS=(\d+)/.exec(out);
        resolve({ code, out, ms: performance.now() - t0, rssMb: rss ? Number(rss[1]) / 1024 : Number.NaN });
      });
    });
  }

  const SUB_CASES: Array<{
    name: string;
    argv: string[];
    stdinFrom?: string;
    prepare?: (dir: string) => void;
    message: RegExp;
  }> = [
    {
      name: 'validate -f - < /dev/zero',
      argv: ['validate', '-f', '-'],
      stdinFrom: '/dev/zero',
      message: /standard input is larger than the 524288 bytes meshfed reads as a fleet input/,
    },
    {
      name: 'validate -f /dev/zero',
      argv: ['validate', '-f', '/dev/zero'],
      message: /\/dev\/zero is larger than the 524288 bytes meshfed reads as a fleet input/,
    },
    {
      name: 'certs /dev/zero',
      argv: ['certs', '/dev/zero'],
      message: /\/dev\/zero is larger than the 16777216 bytes meshfed reads as a certs input/,
    },
    {
      name: 'a 20,000-cluster fleet file (329 KB)',
      argv: ['validate', '-f', 'big.yaml'],
      prepare: (d) =>
        writeFileSync(
          join(d, 'big.yaml'),
          `apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\nspec:\n  clusters:\n${Array.from({ length: 20_000 }, (_, i) => `  - name: c${i}\n`).join('')}`,
        ),
      message: /big\.yaml:261:\d+: error: too many clusters: meshfed federates at most 256/,
    },
    {
      name: 'a 50 MB fleet file of unknown keys',
      argv: ['validate', '-f', 'keys.yaml'],
      prepare: (d) => {
        const line = 'spec_unknown_key_with_a_long_name_0000000: 1\n';
        writeFileSync(
          join(d, 'keys.yaml'),
          `apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\n${line.repeat((50 << 20) / line.length)}`,
        );
      },
      message: /keys\.yaml is larger than the 524288 bytes meshfed reads as a fleet input/,
    },
    {
      name: 'render -o /proc/x',
      argv: ['render', '-o', '/proc/x'],
      message: /cannot write -o \/proc\/x: cannot make \/proc\/x: it does not exist \(ENOENT\)/,
    },
    {
      name: 'a 20,000-cluster fleet in flow style',
      argv: ['validate', '-f', 'big.yaml'],
      prepare: (d) =>
        writeFileSync(
          join(d, 'big.yaml'),
          `apiVersion: meshfed.dev/v1alpha1\nkind: Fleet\nspec:\n  clusters: [${Array.from({ length: 20_000 }, (_, i) => `{name: c${i}}`).join(', ')}]\n`,
        ),
      message: /too many clusters/,
    },
  ];

  for (const s of SUB_CASES)
    test(`subprocess: ${s.name} exits 2 at once within ${SUB_HEAP_MB} MB of heap`, async (t) => {
      const dir = mkdtempSync(join(base, 'sub-'));
      s.prepare?.(dir);
      const r = await sub(s.argv, dir, s.stdinFrom);
      t.diagnostic(`${s.name}: exit ${r.code}, ${r.ms.toFixed(0)} ms, peak RSS ${r.rssMb.toFixed(0)} MB`);
      assert.equal(r.code, 2, r.out.slice(0, 1000));
      assert.match(r.out, s.message);
      assert.ok(r.ms < CASE_MS, `took ${r.ms.toFixed(0)} ms`);
      assert.ok(r.rssMb < SUB_RSS_MB, `peak RSS ${r.rssMb.toFixed(0)} MB`);
      rmSync(dir, { recursive: true, force: true });
    });

  describe('silent API servers: --timeout bounds the first probe, IPv6 is dialled', () => {
    const sockets: Socket[] = [];
    const servers: Server[] = [];
    const listen = (host: string) =>
      new Promise<number>((resolve) => {
        // Accepts and never answers: the TLS handshake waits forever.
        const s = createServer((sock) => sockets.push(sock));
        servers.push(s);
        s.listen(0, host, () => resolve((s.address() as { port: number }).port));
      });
    after(() => {
      for (const s of sockets) s.destroy();
      for (const s of servers) s.close();
    });
    for (const [family, host, url] of [
      ['IPv4', '127.0.0.1', (p: number) => `https://127.0.0.1:${p}`],
      ['IPv6', '::1', (p: number) => `https://[::1]:${p}`],
    ] as const)
      for (const timeout of ['1s', '2s'])
        test(`${family}, --timeout ${timeout}: status gives up on two clusters within the bound, naming it`, async () => {
          const p1 = await listen(host);
          const p2 = await listen(host);
          const dir = mkdtempSync(join(base, 'reach-'));
          const token = `s3cr3t-${p1}-${p2}`;
          writeFileSync(
            join(dir, 'k.yaml'),
            `apiVersion: v1\nkind: Config\nclusters:\n- {name: a, cluster: {server: "${url(p1)}"}}\n- {name: b, cluster: {server: "${url(p2)}"}}\ncontexts:\n- {name: cluster-1, context: {cluster: a, user: u}}\n- {name: cluster-2, context: {cluster: b, user: u}}\nusers:\n- {name: u, user: {token: ${token}}}\n`,
          );
          const t0 = performance.now();
          const r = await runMeshfed(['status', '--kubeconfig', 'k.yaml', '--timeout', timeout], {
            cwd: dir,
            env: { HOME: dir },
          });
          const ms = performance.now() - t0;
          const bound = Number.parseInt(timeout, 10) * 1000;
          assert.equal(r.code, 2, r.stderr);
          assert.match(r.stderr, /cannot reach 2 clusters; nothing was written/);
          assert.match(r.stderr, new RegExp(`no answer from https://\\S+ within ${bound / 1000} s`));
          assert.doesNotMatch(r.stderr, /ENOTFOUND|30000 ms/);
          assert.ok(!r.stderr.includes(token));
          assert.ok(
            ms >= bound - 50 && ms < bound + 1500,
            `took ${ms.toFixed(0)} ms for a ${bound} ms bound`,
          );
        });
  });
});
