/**
 * The record of `up`'s progress: per cluster, per phase, started / done /
 * failed with the time and the writes; the discovered addresses. Written
 * atomically (temporary file, then rename) after every change, so a run
 * killed at any point leaves a readable record, and the next run says where
 * the last one stopped. The record informs; it never decides: every run
 * re-applies every phase (a no-op where nothing changed), which is what
 * makes a killed run converge.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Fleet } from '../fleet/model.js';
import type { Counts, EnginePhase } from './apply.js';

export interface PhaseRecord {
  state: 'started' | 'done' | 'failed';
  at: string;
  counts?: Counts;
  error?: string;
}

export interface ProgressRecord {
  version: 1;
  fleet: string;
  startedAt: string;
  finishedAt?: string;
  clusters: Record<string, Partial<Record<EnginePhase, PhaseRecord>>>;
  bundleEndpoints: Record<string, string>;
  eastWestGateways: Record<string, string>;
}

export class ProgressStore {
  private rec: ProgressRecord | undefined;
  /** The record the previous run left, read when this store was made. */
  readonly previous: ProgressRecord | undefined;

  constructor(readonly path: string) {
    this.previous = readProgress(path);
  }

  runStarted(fleet: Fleet, dryRun: boolean): void {
    if (dryRun) return;
    this.rec = {
      version: 1,
      fleet: fleet.name,
      startedAt: new Date().toISOString(),
      clusters: Object.fromEntries(fleet.clusters.map((c) => [c.name, {}])),
      bundleEndpoints: { ...(this.previous?.fleet === fleet.name ? this.previous.bundleEndpoints : {}) },
      eastWestGateways: { ...(this.previous?.fleet === fleet.name ? this.previous.eastWestGateways : {}) },
    };
    this.save();
  }

  private set(cluster: string, phase: EnginePhase, r: PhaseRecord) {
    if (!this.rec) return;
    this.rec.clusters[cluster] = { ...this.rec.clusters[cluster], [phase]: r };
    this.save();
  }

  phaseStarted(cluster: string, phase: EnginePhase) {
    this.set(cluster, phase, { state: 'started', at: new Date().toISOString() });
  }
  phaseDone(cluster: string, phase: EnginePhase, counts: Counts) {
    this.set(cluster, phase, { state: 'done', at: new Date().toISOString(), counts });
  }
  phaseFailed(cluster: string, phase: EnginePhase, error: string) {
    this.set(cluster, phase, { state: 'failed', at: new Date().toISOString(), error: error.slice(0, 2000) });
  }
  record(addresses: { bundleEndpoints?: Record<string, string>; eastWestGateways?: Record<string, string> }) {
    if (!this.rec) return;
    Object.assign(this.rec.bundleEndpoints, addresses.bundleEndpoints ?? {});
    Object.assign(this.rec.eastWestGateways, addresses.eastWestGateways ?? {});
    this.save();
  }
  runDone() {
    if (!this.rec) return;
    this.rec.finishedAt = new Date().toISOString();
    this.save();
  }
  remove() {
    rmSync(this.path, { force: true });
  }

  private save() {
    mkdirSync(dirname(this.path), { recursive: true });
    writeFileSync(`${this.path}.tmp`, `${JSON.stringify(this.rec, null, 2)}\n`);
    renameSync(`${this.path}.tmp`, this.path);
  }
}

export function readProgress(path: string): ProgressRecord | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as ProgressRecord;
  } catch {
    return undefined;
  }
}

/** Where an unfinished run stopped, in words ("cluster-2 in spire (started), cluster-1 in federation (failed: …)"). */
export function unfinished(r: ProgressRecord | undefined): string | undefined {
  if (!r || r.finishedAt) return undefined;
  const where = Object.entries(r.clusters).flatMap(([cluster, phases]) => {
    const last = Object.entries(phases).filter(([, p]) => p && p.state !== 'done');
    return last.map(
      ([phase, p]) => `${cluster} in ${phase} (${p!.state}${p!.error ? `: ${p!.error.split('\n')[0]}` : ''})`,
    );
  });
  return where.length ? where.join(', ') : 'between phases';
}
