/**
 * SpireServerCli's batch relationship calls (`federation create|update -data -`)
 * read per trust domain from SPIRE's output: created ones on stdout, refused
 * ones on stderr under SPIRE's "Failed to create…" banner (the text of SPIRE
 * 1.5.1 and 1.15.3's cli/federation), a call that fails as a whole fails each.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Relationship, SpireServerCli } from '../../src/federation/spire-cli.js';
import type { ExecResult, SpireServerTransport } from '../../src/federation/transport.js';

const rel = (td: string): Relationship => ({
  trustDomain: td,
  bundleEndpointUrl: `https://${td}:8443`,
  profile: 'https_spiffe',
  endpointSpiffeId: `spiffe://${td}/spire/server`,
});
const block = (td: string) =>
  `Trust domain              : ${td}\nBundle endpoint URL       : https://${td}:8443\nBundle endpoint profile   : https_spiffe\nEndpoint SPIFFE ID        : spiffe://${td}/spire/server\n`;

function cliAnswering(r: ExecResult) {
  const calls: Array<{ args: string[]; stdin?: string }> = [];
  const transport: SpireServerTransport = {
    target: 'test server',
    run: async (args, opts) => {
      calls.push({ args, ...(opts?.stdin === undefined ? {} : { stdin: opts.stdin }) });
      return r;
    },
  };
  return { cli: new SpireServerCli(transport), calls };
}

test('one call for every relationship; a refused one fails alone, named with its code', async () => {
  const { cli, calls } = cliAnswering({
    code: 1,
    stdout: `\n${block('bar.com')}\n${block('baz.com')}`,
    stderr: `\nFailed to create the following federation relationship (code: InvalidArgument, msg: "unable to create federation relationship for server trust domain"):\n${block('foo.com')}Error: failed to create one or more federation relationships\n`,
  });
  const done = await cli.createRelationships([rel('bar.com'), rel('foo.com'), rel('baz.com')]);
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0]!.args, ['federation', 'create', '-data', '-']);
  assert.deepEqual(JSON.parse(calls[0]!.stdin!).federationRelationships[1], {
    trustDomain: 'foo.com',
    bundleEndpointURL: 'https://foo.com:8443',
    bundleEndpointProfile: 'https_spiffe',
    endpointSPIFFEID: 'spiffe://foo.com/spire/server',
  });
  assert.equal(done.get('bar.com'), undefined);
  assert.equal(done.get('baz.com'), undefined);
  const e = done.get('foo.com');
  assert.ok(e);
  assert.equal(e.grpcCode, 'InvalidArgument');
  assert.match(
    e.message,
    /^test server: spire-server federation create: foo\.com: code = InvalidArgument desc = unable to create/,
  );
});

test('a call that fails as a whole fails every relationship of it; none asked, no call', async () => {
  const { cli } = cliAnswering({
    code: 1,
    stdout: '',
    stderr: 'Error: request failed: rpc error: code = Unavailable desc = connection refused\n',
  });
  const done = await cli.updateRelationships([rel('bar.com'), rel('baz.com')]);
  for (const td of ['bar.com', 'baz.com']) {
    assert.equal(done.get(td)?.grpcCode, 'Unavailable');
    assert.match(done.get(td)!.message, /federation update: .*connection refused/);
  }
  const none = cliAnswering({ code: 0, stdout: '', stderr: '' });
  assert.equal((await none.cli.createRelationships([])).size, 0);
  assert.equal(none.calls.length, 0);
});
