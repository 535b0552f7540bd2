/**
 * Machine-wide claims, shared by every lab of every process on this machine,
 * so that labs started side by side (test files, a user's lab beside CI's)
 * never meet:
 *
 * - `withMachineLock(name, fn)`: a mutex held by binding an abstract unix
 *   socket. Binding is atomic, and the kernel releases it when its holder
 *   exits or crashes, so no lock is ever left behind and none needs stealing.
 * - Address blocks 1–250: block b is 127.77.b.x (SPIRE servers, controllers)
 *   and 127.<100+n>.b.x (the load balancer pools). A claim file per block
 *   names its owner: the claiming process (pid and start time) and, for
 *   `meshfed lab`, whose processes outlive the command, the lab's state file,
 *   which keeps the block while it records it. A claim whose owner is gone is
 *   free again. Claims are read and written only under the lock.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { sameProcessRuns, startTime } from './procfs.js';

export const BLOCK_MIN = 1;
export const BLOCK_MAX = 250;

/** Where claims live; one folder for the whole machine (MESHFED_LAB_CLAIMS only for the allocator's own tests). */
export function claimsDir(): string {
  return process.env.MESHFED_LAB_CLAIMS ?? '/tmp/meshfed-lab-claims';
}

export class ClaimError extends Error {
  override name = 'ClaimError';
}

function bind(name: string): Promise<Server | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE') resolve(undefined);
      else reject(e);
    });
    server.listen(name, () => resolve(server));
  });
}

/**
 * Runs `fn` holding the machine-wide lock `name`; waits for it up to
 * `timeoutMs`, then fails naming the lock. `onWait` is called once, when the
 * lock is found held by another process (so that a caller can say why it waits).
 */
export async function withMachineLock<T>(
  name: string,
  fn: () => Promise<T>,
  timeoutMs = 600_000,
  onWait?: () => void,
): Promise<T> {
  // The abstract namespace (a leading NUL) has no file to clean up; the claims folder in the name keeps
  // the allocator's tests (a private folder) apart from real labs.
  const socket = `\0meshfed-lab:${claimsDir()}:${name}`;
  const deadline = Date.now() + timeoutMs;
  let held: Server | undefined;
  for (let attempt = 0; ; attempt++) {
    held = await bind(socket);
    if (held) break;
    if (attempt === 0) onWait?.();
    if (Date.now() > deadline)
      throw new ClaimError(
        `the machine-wide lab lock "${name}" is still held by another process after ${timeoutMs} ms`,
      );
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 80));
  }
  try {
    return await fn();
  } finally {
    await new Promise<void>((r) => held.close(() => r()));
  }
}

interface ClaimRecord {
  block: number;
  pid: number;
  start: string | undefined;
  /** For people: the lab folder or the test process that holds it. */
  owner: string;
  /** A JSON file whose `block` field keeps the claim alive after the process is gone (`meshfed lab`'s lab.json). */
  stateFile?: string;
}

const claimFile = (block: number) => join(claimsDir(), `block-${block}.json`);

function readClaim(block: number): ClaimRecord | undefined {
  try {
    return JSON.parse(readFileSync(claimFile(block), 'utf8')) as ClaimRecord;
  } catch {
    return undefined;
  }
}

function stateFileKeeps(c: ClaimRecord): boolean {
  if (!c.stateFile || !existsSync(c.stateFile)) return false;
  try {
    return (JSON.parse(readFileSync(c.stateFile, 'utf8')) as { block?: number }).block === c.block;
  } catch {
    return false;
  }
}

/** The claim's owner still holds it: its process runs, or its state file still records the block. */
export function claimHeld(c: ClaimRecord): boolean {
  return sameProcessRuns(c.pid, c.start) || stateFileKeeps(c);
}

export interface BlockClaim {
  /** For messages: the lab folder or what the process is. */
  owner: string;
  /** A JSON file (`{"block": N, …}`) that keeps the claim while it names the block. */
  stateFile?: string;
  /** Try this block first (a lab's usual block, from its folder). */
  preferred?: number;
  /** Only this block: fail, naming its holder, when it is taken. */
  exact?: number;
}

/** Claims a free address block for the caller; see the module comment. */
export async function claimBlock(c: BlockClaim): Promise<number> {
  return withMachineLock('blocks', async () => {
    mkdirSync(claimsDir(), { recursive: true });
    const free = (b: number) => {
      const held = readClaim(b);
      return !held || !claimHeld(held);
    };
    let block: number | undefined;
    if (c.exact !== undefined) {
      if (!(Number.isInteger(c.exact) && c.exact >= BLOCK_MIN && c.exact <= BLOCK_MAX))
        throw new ClaimError(
          `address block ${c.exact} is not a whole number from ${BLOCK_MIN} to ${BLOCK_MAX}`,
        );
      if (!free(c.exact))
        throw new ClaimError(
          `address block ${c.exact} is held by ${readClaim(c.exact)?.owner ?? 'another lab'}`,
        );
      block = c.exact;
    } else {
      const order = [
        ...(c.preferred !== undefined ? [c.preferred] : []),
        ...Array.from({ length: BLOCK_MAX - BLOCK_MIN + 1 }, (_, i) => BLOCK_MIN + i),
      ];
      block = order.find(free);
      if (block === undefined)
        throw new ClaimError(
          `all ${BLOCK_MAX} lab address blocks are held (see ${claimsDir()}): stop a lab with \`meshfed lab down\``,
        );
    }
    const record: ClaimRecord = {
      block,
      pid: process.pid,
      start: startTime(process.pid),
      owner: c.owner,
      ...(c.stateFile ? { stateFile: c.stateFile } : {}),
    };
    writeFileSync(claimFile(block), `${JSON.stringify(record)}\n`);
    return block;
  });
}

/** Gives a block back, if the claim is still the caller's (same owner). */
export async function releaseBlock(block: number, owner: string): Promise<void> {
  await withMachineLock('blocks', async () => {
    if (readClaim(block)?.owner === owner) rmSync(claimFile(block), { force: true });
  });
}

/** Every claim on record, held or not (for `lab status` and tests). */
export function listClaims(): Array<ClaimRecord & { held: boolean }> {
  if (!existsSync(claimsDir())) return [];
  return readdirSync(claimsDir())
    .map((f) => /^block-(\d+)\.json$/.exec(f)?.[1])
    .filter((b): b is string => b !== undefined)
    .map((b) => readClaim(Number(b)))
    .filter((c): c is ClaimRecord => c !== undefined)
    .map((c) => ({ ...c, held: claimHeld(c) }));
}
