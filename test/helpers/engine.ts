/** The lab around an engine test: a lab of N clusters of a profile, the CLI pointed at it with --lab. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { retrying } from '../../src/engine/apply.js';
import type { Profile } from '../../src/fleet/model.js';
import { PROFILE_VERSIONS } from '../../src/fleet/versions.js';
import { type ClusterClient, clientsFor } from '../../src/kube/client.js';
import { LAB_ISTIO_BUILDS } from '../../src/lab/binaries.js';
import { readLabState } from '../../src/lab/lab.js';
import { runMeshfed } from './cli.js';
import { requireLabAsRoot } from './lab.js';

/** Every object of the cluster, as kind/namespace/name (Events and Leases, which controllers churn, left out). */
export async function objectSet(client: ClusterClient): Promise<Set<string>> {
  const out = new Set<string>();
  for (const k of await client.kinds()) {
    if (k.kind === 'Event' || k.kind === 'Lease') continue;
    for (const o of await retrying(() => client.list(k.apiVersion, k.kind)))
      out.add(`${k.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
  }
  return out;
}

export function labSkip(profile: Profile): string | undefined {
  const v = PROFILE_VERSIONS[profile];
  return requireLabAsRoot(
    [
      `bin/kubernetes/${v.kubernetes}/kubectl`,
      `bin/spire/${v.spire}/spire-server`,
      `bin/istio/${LAB_ISTIO_BUILDS[v.istio]}/istioctl`,
      'bin/kwok/0.8.0/stages/.done',
      'bin/cert-manager/1.11.5/crds/.done',
      'bin/cert-manager/1.11.5/webhook',
      'bin/cert-manager/1.11.5/cainjector',
    ],
    'npm run lab:build',
  );
}

/** A lab of the CLI's (`meshfed lab up`), with `extra` flags (`--pods real`), and the CLI against it. */
export async function startLab(profile: Profile, clusters: number, extra: string[] = []) {
  const parent = mkdtempSync(join(tmpdir(), `mf-up-${profile[0]}${clusters}-`));
  const dir = join(parent, 'lab');
  const env = { MESHFED_LAB_DIR: dir, HOME: parent, XDG_CACHE_HOME: join(parent, 'cache') };
  const r = await runMeshfed(
    [
      'lab',
      'up',
      '--clusters',
      String(clusters),
      '--profile',
      profile,
      '--pod-ready-delay',
      '0.3s..0.8s',
      '--pod-stop-delay',
      '0.5s..2s',
      ...extra,
    ],
    { cwd: parent, env },
  );
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const state = readLabState(dir)!;
  const clients = clientsFor(
    state.kubeconfig,
    state.clusters.map((c) => c.context),
  );
  const meshfed = (args: string[]) => runMeshfed([...args, '--lab'], { cwd: parent, env });
  // The folder is removed only after a clean `lab down`: a failed one leaves it (and its logs) to look at.
  const stop = async () => {
    const down = await runMeshfed(['lab', 'down'], { cwd: parent, env });
    assert.equal(
      down.code,
      0,
      `lab down in ${dir} failed; its logs stay there:\n${down.stderr}${down.stdout}`,
    );
    rmSync(parent, { recursive: true, force: true });
  };
  return { parent, dir, env, state, clients, meshfed, stop };
}
