/**
 * A lab federation: N SPIRE trust domains started as real processes, named
 * like the default fleet's clusters (cluster-1 foo.com, cluster-2 bar.com,
 * cluster-<n> cluster-<n>.<mesh ID>), described as federation members the
 * engine can drive.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FederationMember } from '../federation/engine.js';
import { DEFAULT_MESH_ID, SEED_CLUSTERS } from '../fleet/resolve.js';
import { labBinDir } from './binaries.js';
import { claimBlock, releaseBlock } from './claims.js';
import { LAB_PORTS, LabTrustDomain, labAddress, type TrustDomainOptions } from './spire.js';

export interface LabFederationOptions {
  count: number;
  spireVersion: string;
  /** Options applied to every domain (or per index, 1-based). */
  domain?: Partial<TrustDomainOptions> | ((index: number) => Partial<TrustDomainOptions>);
  /** Parent folder; a fresh temporary one under /tmp by default (short, for socket paths). */
  baseDir?: string;
  /** Keep the data folder after stop (default: removed). */
  keep?: boolean;
  /** Write every other domain into each server.conf as a static `federates_with` peer (the seed's way). */
  staticFullMesh?: boolean;
  /** Address block 127.77.<block>.0/24: exactly this one (default: a free one, claimed machine-wide; claims.ts). */
  block?: number;
}

export interface LabFederation {
  domains: LabTrustDomain[];
  members: FederationMember[];
  dir: string;
  stop(): Promise<void>;
  logs(): string;
}

export function labClusterName(index: number): { name: string; trustDomain: string } {
  const seed = SEED_CLUSTERS[index - 1];
  const name = seed?.name ?? `cluster-${index}`;
  return { name, trustDomain: seed?.trustDomain ?? `${name}.${DEFAULT_MESH_ID}` };
}

export function memberOf(d: LabTrustDomain): FederationMember {
  return {
    name: d.opts.name,
    trustDomain: d.trustDomain,
    server: d.server,
    bundleEndpoint: { url: d.bundleEndpointUrl, spiffeId: d.bundleEndpointSpiffeId },
  };
}

export async function startLabFederation(o: LabFederationOptions): Promise<LabFederation> {
  const dir = o.baseDir ?? mkdtempSync(join(tmpdir(), 'mf-'));
  const binDir = labBinDir('spire', o.spireVersion);
  const owner = `SPIRE lab ${dir} (pid ${process.pid})`;
  const block = await claimBlock({ owner, ...(o.block !== undefined ? { exact: o.block } : {}) });
  const staticPeers = (index: number) =>
    Array.from({ length: o.count }, (_, i) => i + 1)
      .filter((j) => j !== index)
      .map((j) => {
        const { trustDomain } = labClusterName(j);
        return {
          trustDomain,
          bundleEndpointUrl: `https://${labAddress(block, j)}:${LAB_PORTS.bundleEndpoint}`,
          endpointSpiffeId: `spiffe://${trustDomain}/spire/server`,
        };
      });
  const domains = Array.from({ length: o.count }, (_, i) => {
    const index = i + 1;
    const extra = typeof o.domain === 'function' ? o.domain(index) : (o.domain ?? {});
    const sub = join(dir, String(index));
    mkdirSync(sub, { recursive: true });
    return new LabTrustDomain({
      ...labClusterName(index),
      index,
      block,
      spireVersion: o.spireVersion,
      ...(o.staticFullMesh ? { staticPeers: staticPeers(index) } : {}),
      binDir,
      dir: sub,
      ...extra,
    });
  });
  const fed: LabFederation = {
    domains,
    members: domains.map(memberOf),
    dir,
    async stop() {
      await Promise.all(domains.map((d) => d.stop()));
      await releaseBlock(block, owner);
      if (!o.keep) rmSync(dir, { recursive: true, force: true });
    },
    logs: () => domains.map((d) => d.logs()).join('\n'),
  };
  try {
    await Promise.all(domains.map((d) => d.start()));
  } catch (e) {
    const logs = fed.logs();
    await fed.stop();
    throw new Error(`${(e as Error).message}\n${logs}`);
  }
  return fed;
}
