/**
 * The SPIRE server and agent configuration meshfed renders, for both
 * profiles, checked by the real `spire-server validate` / `spire-agent
 * validate` of the profile's SPIRE release. (The agent's validate reads its
 * trust bundle file, which in a pod is mounted from a ConfigMap; here it is
 * pointed at a real PEM file.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
  const validate = async (program: string, conf: string, name: string) => {
    const file = join(dir, `${profile}-${name}`);
    writeFileSync(file, conf);
    const r = await execFileBounded(bin(program), ['validate', '-config', file]);
    return `${r.stdout}${r.stderr}`.trim();
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
        assert.match(
          await validate('spire-server', conf, `${c.name}-server.conf`),
          /configuration file is valid/,
        );
      }
    });

    test('agent.conf of every cluster', async () => {
      const bundle = join(dir, `${profile}-bundle.crt`);
      writeFileSync(bundle, (await root()).pem);
      for (const c of fleet.clusters) {
        const conf = agentConf(c).replace('"/run/spire/bundle/bundle.crt"', JSON.stringify(bundle));
        assert.notEqual(conf, agentConf(c));
        assert.match(
          await validate('spire-agent', conf, `${c.name}-agent.conf`),
          /configuration file is valid/,
        );
      }
    });

    test('and it would refuse a key its release does not know', async () => {
      const c = fleet.clusters[0] as (typeof fleet.clusters)[number];
      const bad = serverConf(fleet, c).replace(
        '  ca_key_type = "ec-p256"',
        '  ca_key_type = "ec-p256"\n  not_a_spire_key = true',
      );
      assert.doesNotMatch(
        await validate('spire-server', bad, 'bad-server.conf'),
        /configuration file is valid/,
      );
    });
  });
}
