/**
 * The API servers' aggregated discovery documents (GET /api and /apis), kept
 * between runs as kubectl keeps its own (~/.kube/cache/discovery): one file
 * per server URL in a cache folder of the user's (the CLI gives
 * $XDG_CACHE_HOME/meshfed/discovery, else ~/.cache/meshfed/discovery), each
 * document with the ETag the server sent with it. Nothing here is ever used
 * without asking the server: the client sends the ETag (If-None-Match) and
 * uses what is kept only when the server answers 304 Not Modified, so a
 * server whose kinds changed (a CRD installed or removed, another cluster on
 * the same address) answers with its new documents, which replace the kept
 * ones. A file that cannot be read or written is as good as none.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AggregatedGroup } from './client.js';

export interface DiscoveryEntry {
  etag: string;
  items: AggregatedGroup[];
}

export interface DiscoveryCache {
  get(path: string): DiscoveryEntry | undefined;
  set(path: string, entry: DiscoveryEntry): void;
}

interface CacheFile {
  server: string;
  documents: Record<string, DiscoveryEntry>;
}

/** The file of a server in `dir`: its host and port to read, and a digest of the whole URL to tell servers apart. */
export function serverCacheFile(dir: string, server: string): string {
  const u = new URL(server);
  const digest = createHash('sha256').update(server).digest('hex').slice(0, 16);
  return join(dir, `${`${u.hostname}_${u.port || '443'}`.replace(/[^A-Za-z0-9._-]/g, '_')}-${digest}.json`);
}

/** The documents of `server`: in memory, and in `dir` (read at the first use, written at each change) when given. */
export function discoveryCache(dir: string | undefined, server: string): DiscoveryCache {
  const file = dir ? serverCacheFile(dir, server) : undefined;
  let documents: Record<string, DiscoveryEntry> | undefined;
  const load = (): Record<string, DiscoveryEntry> => {
    if (documents) return documents;
    documents = {};
    if (file)
      try {
        const kept = JSON.parse(readFileSync(file, 'utf8')) as CacheFile;
        if (kept.server === server && kept.documents && typeof kept.documents === 'object')
          for (const [path, e] of Object.entries(kept.documents))
            if (typeof e?.etag === 'string' && Array.isArray(e.items)) documents[path] = e;
      } catch {
        // none, or not one of ours: asked for whole
      }
    return documents;
  };
  return {
    get: (path) => load()[path],
    set(path, entry) {
      const docs = load();
      docs[path] = entry;
      if (!dir || !file) return;
      try {
        mkdirSync(dir, { recursive: true });
        // Whole or not at all: another meshfed may read it meanwhile.
        const tmp = `${file}.${process.pid}.tmp`;
        writeFileSync(tmp, JSON.stringify({ server, documents: docs } satisfies CacheFile));
        renameSync(tmp, file);
      } catch {
        // A cache that cannot be written: the next run asks the server for the whole documents.
      }
    },
  };
}
