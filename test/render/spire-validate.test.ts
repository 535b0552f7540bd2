/**
 * The SPIRE server and agent configuration meshfed renders, for both
 * profiles, checked by the real `spire-server validate` / `spire-agent
 * validate` of the profile's SPIRE release. (The agent's validate reads its
 * trust bundle file, which in a pod is mounted from a ConfigMap; here it is
 * pointed at a real PEM file.) A config is accepted when validate exits 0
 * saying it is valid; the refused one must exit 1 with SPIRE's "invalid"
 * message and name the unknown key, so a crash or a refusal for another reason
 * does not pass.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { execFileBounded } from '../../src/federation/transport.js';
import { defaultFleet } from '../../src/fleet/load.js';
import { type Profile, peersOf } from '../../src/fleet/model.js';
import { agentConf, serverConf } from '../../src/render/spire/server-conf.js';
import { LAB_DIR, requireLab } from '../helpers/lab.js';
import { root } from '../helpers/pki.js';

const dir = mkdtempSync(join(tmpdir(), 'mf-validate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

for (const profile of ['seed', 'current'] as Profile[]) {
  const fleet = defaultFleet({ profile });
  const v = fleet.versions.spire;
  const bin = (p: string) => join(LAB_DIR, 'bin', 'spire', v, p);
  const skip = requireLab([`bin/spire/${v}/spire-server`, `bin/spire/${v}/spire-agent`], 'npm run lab:build');
  const validate = (program: string, conf: string, name: string, flags: string[] = []) => {
    const file = join(dir, `${profile}-${name}`);
    writeFileSync(file, conf);
    return execFileBounded(bin(program), ['validate', '-config', file, ...flags]);
  };
  const accepted = async (program: string, conf: string, name: string) => {
    const r = await validate(program, conf, name);
    const out = `${r.stdout}${r.stderr}`;
    assert.equal(r.code, 0, `${program} validate ${name}: exit ${r.code}: ${out}`);
    assert.match(out, /configuration file is valid/);
  };

  describe(`${profile} profile: rendered SPIRE config accepted by SPIRE ${v}`, { skip }, () => {
    test('server.conf of every cluster, with its static peers', async () => {
      for (const c of fleet.clusters) {
        const peers = peersOf(fleet, c.name).map((p) => ({
          trustDomain: p.trustDomain,
          address: `${p.name}.example:8443`,
        }));
        const conf = serverConf(fleet, c, peers);
        assert.match(conf, /federates_with "/);
        await accepted('spire-server', conf, `${c.name}-server.conf`);
      }
    });

    test('agent.conf of every cluster', async () => {
      const bundle = join(dir, `${profile}-bundle.crt`);
      writeFileSync(bundle, (await root()).pem);
      for (const c of fleet.clusters) {
        const conf = agentConf(c).replace('"/run/spire/bundle/bundle.crt"', JSON.stringify(bundle));
        assert.notEqual(conf, agentConf(c));
        await accepted('spire-agent', conf, `${c.name}-agent.conf`);
      }
    });

    test('and it would refuse a key its release does not know, naming it', async () => {
      const c = fleet.clusters[0] as (typeof fleet.clusters)[number];
      const bad = serverConf(fleet, c).replace(
        '  ca_key_type = "ec-p256"',
        '  ca_key_type = "ec-p256"\n  not_a_spire_key = true',
      );
      assert.match(bad, /\n {2}not_a_spire_key = true\n/);
      // The error validate prints does not name the key; only its log entry
      // does. SPIRE 1.15's validate discards its log unless -logFile is given
      // (1.5 writes it to stdout), so the log goes to a file, as JSON, in both.
      const log = join(dir, `${profile}-bad-server.log`);
      const r = await validate('spire-server', bad, 'bad-server.conf', [
        '-logFile',
        log,
        '-logFormat',
        'json',
      ]);
      assert.equal(r.code, 1, `exit ${r.code}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stderr, 'SPIRE server configuration file is invalid: unknown configuration detected\n');
      assert.equal(r.stdout, '');
      const unknown = readFileSync(log, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, string>)
        .filter((e) => e.msg === 'Unknown configuration detected')
        .map((e) => ({ level: e.level, section: e.section, keys: e.keys }));
      assert.deepEqual(unknown, [{ level: 'error', section: 'server', keys: 'not_a_spire_key' }]);
    });
  });
}
