/**
 * What meshfed's last apply of each object made of it, kept between runs so
 * that a no-op `up` need not send again what the API server has already
 * taken: per object (by uid), a digest of what was applied and of what
 * meshfed owned in the object the server answered with (fields.ts
 * `ownedState`: its managedFields entries and the values of their fields),
 * and that answer's resourceVersion. Server-side apply is idempotent:
 * applying the same configuration, as the same manager, onto an object in
 * which that manager owns the same fields with the same values as the same
 * apply left them changes nothing (an apply does not touch what it does not
 * set: the status, other managers' fields). So when meshfed would send the
 * same and its part of the live object is as that apply left it (the same
 * version, or writes since by others to what is not meshfed's: a
 * Deployment's revision annotation, a status), the apply is not sent; a
 * write to meshfed's fields or to who owns them (a user's edit, a field
 * taken over, one removed) makes another digest, and the object is applied
 * onto, and the server says.
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
import { FIELD_MANAGER } from '../render/meta.js';
import type { KubeObject } from './client.js';
import { serverCacheFile } from './discovery-cache.js';
import { ownedState } from './fields.js';

/** At most this many objects a server are remembered (the oldest forgotten first). */
const MAX_OBJECTS = 20_000;

/**
 * A memo is written at most once per this many milliseconds, and when the
 * process exits: rewriting the whole file at every apply made a first `up`
 * of 8 clusters spend about a third of its CPU writing memo files.
 */
const SAVE_AFTER_MS = 2_000;

/** The saves not yet written, run at exit. */
const unsaved = new Set<() => void>();
let exitHooked = false;
function saveLater(save: () => void): void {
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => {
      for (const s of [...unsaved]) s();
    });
  }
  unsaved.add(save);
}

export interface AppliedMemo {
  /** Whether applying `sent` onto `live` is known to change nothing (the same was applied and gave this version). */
  unchanged(sent: KubeObject, live: KubeObject): boolean;
  /** The server answered an apply of `sent` with `stored`. */
  record(sent: KubeObject, stored: KubeObject): void;
  /** Writes what is not written yet (done by itself a little later, and when the process exits). */
  flush(): void;
}

/** JSON with every object's keys in order: the same object read by a list, a get or an apply's answer is the same text. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}
const digest = (v: unknown) => createHash('sha256').update(canonical(v)).digest('base64url');

/** What is applied, without the resourceVersion meshfed sends as a precondition. */
export function appliedDigest(sent: KubeObject): string {
  const { resourceVersion: _rv, ...metadata } = sent.metadata;
  return digest({ ...sent, metadata });
}

/** What meshfed's apply could change of a stored object: what meshfed owns in it (fields.ts `ownedState`). */
export const storedDigest = (o: KubeObject): string => digest(ownedState(o, FIELD_MANAGER));

/** The memos of this process, by file: every client of a server in one process shares what it knows. */
const memos = new Map<string, AppliedMemo>();

export function appliedMemo(dir: string | undefined, server: string): AppliedMemo {
  if (!dir) return loadAppliedMemo(undefined, server);
  const file = serverCacheFile(dir, server);
  let memo = memos.get(file);
  if (!memo) {
    memo = loadAppliedMemo(dir, server);
    memos.set(file, memo);
  }
  return memo;
}

/** A memo of its own, read from the file when first asked: what another process would see. */
export function loadAppliedMemo(dir: string | undefined, server: string): AppliedMemo {
  const file = dir ? serverCacheFile(dir, server) : undefined;
  let objects: Map<string, Entry> | undefined;
  const load = () => {
    if (objects) return objects;
    objects = new Map();
    if (file)
      try {
        const kept = JSON.parse(readFileSync(file, 'utf8')) as { server?: string; objects?: unknown[] };
        if (kept.server === server && Array.isArray(kept.objects))
          for (const e of kept.objects)
            if (Array.isArray(e) && e.length === 4 && e.every((x) => typeof x === 'string')) {
              const [uid, rv, sent, stored] = e as [string, string, string, string];
              objects.set(uid, { rv, sent, stored });
            }
      } catch {
        // none, or not one of ours
      }
    return objects;
  };
  let timer: NodeJS.Timeout | undefined;
  const save = () => {
    clearTimeout(timer);
    timer = undefined;
    unsaved.delete(save);
    if (!dir || !file || !objects) return;
    while (objects.size > MAX_OBJECTS) objects.delete(objects.keys().next().value!);
    try {
      mkdirSync(dir, { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(
        tmp,
        JSON.stringify({ server, objects: [...objects].map(([uid, e]) => [uid, e.rv, e.sent, e.stored]) }),
        { mode: 0o600 },
      );
      renameSync(tmp, file);
    } catch {
      // not kept: the next run applies what it cannot tell
    }
  };
  const set = (uid: string, e: Entry) => {
    const m = load();
    m.delete(uid);
    m.set(uid, e);
    if (timer) return;
    timer = setTimeout(save, SAVE_AFTER_MS);
    timer.unref();
    saveLater(save);
  };
  return {
    unchanged(sent, live) {
      const { uid, resourceVersion } = live.metadata;
      if (!uid || !resourceVersion) return false;
      const e = load().get(uid);
      if (!e || e.sent !== appliedDigest(sent)) return false;
      if (e.rv === resourceVersion) return true;
      // Written since: by others only, to what is not meshfed's (the version then kept, to be told at once next time)?
      if (e.stored !== storedDigest(live)) return false;
      set(uid, { ...e, rv: resourceVersion });
      return true;
    },
    record(sent, stored) {
      const { uid, resourceVersion } = stored.metadata;
      if (!uid || !resourceVersion) return;
      const e: Entry = { rv: resourceVersion, sent: appliedDigest(sent), stored: storedDigest(stored) };
      const had = load().get(uid);
      if (had && had.rv === e.rv && had.sent === e.sent && had.stored === e.stored) return;
      set(uid, e);
    },
    flush: () => {
      if (timer) save();
    },
  };
}

interface Entry {
  /** The resourceVersion the object was last known at, as applied. */
  rv: string;
  /** Digests of what was applied and of the object then (storedDigest). */
  sent: string;
  stored: string;
}
