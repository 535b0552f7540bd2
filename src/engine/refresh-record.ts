/**
 * meshfed's own record of the federation refreshes it made (`meshfed
 * federation sync`, `repair` and `watch`): per direction holder ← peer, when
 * and by which command. SPIRE does not tell when a server last fetched a
 * peer's bundle, so `federation status` shows this record, and "unknown"
 * where it has nothing.
 *
 * It lives beside `up`'s progress record (progress.ts), in the fleet's state
 * folder: `.meshfed/<fleet>.refreshes.json`. Each refresh is written at once,
 * atomically (temporary file, then rename), merged with what another process
 * wrote meanwhile (a watch running while a sync is run), so neither loses
 * the other's entries. A file that cannot be read is taken as no record: the
 * record informs; it never decides, and a record that cannot be written
 * (`writeError`) never fails a refresh.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { RefreshLog } from '../federation/engine.js';

export type RefreshSource = 'sync' | 'repair' | 'watch' | 'rotate';

export interface RefreshEntry {
  holder: string;
  peer: string;
  at: string;
  by: RefreshSource;
}

interface RecordFile {
  version: 1;
  fleet: string;
  refreshes: RefreshEntry[];
}

const SOURCES: ReadonlySet<string> = new Set<RefreshSource>(['sync', 'repair', 'watch', 'rotate']);

function isEntry(e: unknown): e is RefreshEntry {
  if (!e || typeof e !== 'object') return false;
  const o = e as Record<string, unknown>;
  return (
    typeof o.holder === 'string' &&
    typeof o.peer === 'string' &&
    typeof o.at === 'string' &&
    !Number.isNaN(Date.parse(o.at)) &&
    typeof o.by === 'string' &&
    SOURCES.has(o.by)
  );
}

/** The entries of the record at `path` for `fleet`; none when there is no file, or one this cannot read. */
export function readRefreshEntries(path: string, fleet: string): RefreshEntry[] {
  if (!existsSync(path)) return [];
  try {
    const doc = JSON.parse(readFileSync(path, 'utf8')) as Partial<RecordFile>;
    if (doc.version !== 1 || doc.fleet !== fleet || !Array.isArray(doc.refreshes)) return [];
    return doc.refreshes.filter(isEntry);
  } catch {
    return [];
  }
}

/**
 * The record as a RefreshLog: `get` answers from the file as it was read;
 * `record` (with a `by`) adds to it and writes it.
 */
export class RefreshRecord extends RefreshLog {
  private readonly sources = new Map<string, RefreshSource>();

  constructor(
    readonly path: string,
    readonly fleet: string,
    /** Which command records; without it, the record is only read. */
    readonly by?: RefreshSource,
  ) {
    super();
    for (const e of readRefreshEntries(path, fleet)) this.remember(e);
  }

  private remember(e: RefreshEntry): void {
    super.record(e.holder, e.peer, new Date(e.at));
    this.sources.set(`${e.holder}\u0000${e.peer}`, e.by);
  }

  /** Which command made the last refresh of holder ← peer, if meshfed made one. */
  source(holder: string, peer: string): RefreshSource | undefined {
    return this.sources.get(`${holder}\u0000${peer}`);
  }

  override record(holder: string, peer: string, when = new Date()): void {
    if (!this.by) throw new Error('a RefreshRecord opened without a command cannot record');
    const entry: RefreshEntry = { holder, peer, at: when.toISOString(), by: this.by };
    this.remember(entry);
    // Whatever another process recorded since, newer entries winning.
    const merged = new Map<string, RefreshEntry>();
    for (const e of [...readRefreshEntries(this.path, this.fleet), entry]) {
      const k = `${e.holder}\u0000${e.peer}`;
      const had = merged.get(k);
      if (!had || Date.parse(had.at) <= Date.parse(e.at)) merged.set(k, e);
    }
    const doc: RecordFile = { version: 1, fleet: this.fleet, refreshes: [...merged.values()] };
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      const tmp = `${this.path}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(doc, null, 2)}\n`);
      renameSync(tmp, this.path);
    } catch (e) {
      // The refresh happened; only its record is lost. Told by the command, never a failed refresh.
      this.writeError = `cannot write ${this.path}: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  /** Why the last write of the record failed, if it did. */
  writeError: string | undefined;
}
