/**
 * What meshfed's last apply of each object made of it, kept between runs so
 * that a no-op `up` need not send again what the API server has already
 * taken: per object (by uid), the resourceVersion the server answered an
 * apply with and a digest of what was applied. Server-side apply is
 * idempotent: applying the same configuration, as the same manager, onto
 * the very version that applying it produced (or left as it was) changes
 * nothing. So when the live object is still at that version and meshfed
 * would send the same, the apply is not sent; any write to the object since
 * (a controller's, a user's, meshfed's own) gives it another
 * resourceVersion, and then it is applied and the server says.
 *
 * This is for what the server changes in what it takes, which meshfed
 * cannot tell from the object alone (fields.ts applyChangesNothing): a
 * default inside an atomic field (a fieldRef's apiVersion, a webhook rule's
 * scope), a quantity written another way (2048Mi kept as 2Gi). One file per
 * server URL in the cache folder; a file that cannot be read or written is
 * as good as none.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { KubeObject } from './client.js';
import { serverCacheFile } from './discovery-cache.js';

/** At most this many objects a server are remembered (the oldest forgotten first). */
const MAX_OBJECTS = 20_000;

export interface AppliedMemo {
  /** Whether applying `sent` onto `live` is known to change nothing (the same was applied and gave this version). */
  unchanged(sent: KubeObject, live: KubeObject): boolean;
  /** The server answered an apply of `sent` with `stored`. */
  record(sent: KubeObject, stored: KubeObject): void;
}

/** What is applied, without the resourceVersion meshfed sends as a precondition. */
export function appliedDigest(sent: KubeObject): string {
  const { resourceVersion: _rv, ...metadata } = sent.metadata;
  return createHash('sha256')
    .update(JSON.stringify({ ...sent, metadata }))
    .digest('base64url');
}

export function appliedMemo(dir: string | undefined, server: string): AppliedMemo {
  const file = dir ? serverCacheFile(dir, server) : undefined;
  let objects: Map<string, { rv: string; digest: string }> | undefined;
  const load = () => {
    if (objects) return objects;
    objects = new Map();
    if (file)
      try {
        const kept = JSON.parse(readFileSync(file, 'utf8')) as {
          server?: string;
          objects?: Array<[string, string, string]>;
        };
        if (kept.server === server && Array.isArray(kept.objects))
          for (const e of kept.objects)
            if (Array.isArray(e) && e.every((x) => typeof x === 'string'))
              objects.set(e[0], { rv: e[1], digest: e[2] });
      } catch {
        // none, or not one of ours
      }
    return objects;
  };
  const save = () => {
    if (!dir || !file || !objects) return;
    while (objects.size > MAX_OBJECTS) objects.delete(objects.keys().next().value!);
    try {
      mkdirSync(dir, { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(
        tmp,
        JSON.stringify({ server, objects: [...objects].map(([uid, e]) => [uid, e.rv, e.digest]) }),
        { mode: 0o600 },
      );
      renameSync(tmp, file);
    } catch {
      // not kept: the next run applies what it cannot tell
    }
  };
  return {
    unchanged(sent, live) {
      const { uid, resourceVersion } = live.metadata;
      if (!uid || !resourceVersion) return false;
      const e = load().get(uid);
      return !!e && e.rv === resourceVersion && e.digest === appliedDigest(sent);
    },
    record(sent, stored) {
      const { uid, resourceVersion } = stored.metadata;
      if (!uid || !resourceVersion) return;
      const digest = appliedDigest(sent);
      const m = load();
      const e = m.get(uid);
      if (e && e.rv === resourceVersion && e.digest === digest) return;
      m.delete(uid);
      m.set(uid, { rv: resourceVersion, digest });
      save();
    },
  };
}
