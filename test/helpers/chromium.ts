/**
 * Debian's Chromium, headless, as the tests open meshfed's HTML reports in
 * it: the DOM it parsed (--dump-dom) and screenshots. Skipped locally when
 * there is none; CI installs it (MESHFED_REQUIRE_LAB=1 makes its absence fail).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execFileBounded } from '../../src/federation/transport.js';

export const CHROMIUM = process.env.MESHFED_CHROMIUM ?? '/usr/bin/chromium';

export const chromiumSkip = existsSync(CHROMIUM)
  ? undefined
  : (() => {
      const why = `no Chromium at ${CHROMIUM}: apt-get install chromium (CI does)`;
      if (process.env.MESHFED_REQUIRE_LAB === '1') throw new Error(why);
      return why;
    })();

/** Chromium headless as the machine allows it: no sandbox as root, no network chatter, a fresh profile in `dir`. */
export async function chromium(dir: string, args: string[]): Promise<string> {
  const r = await execFileBounded(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--hide-scrollbars',
      `--user-data-dir=${join(dir, 'profile')}`,
      ...args,
    ],
    { timeoutMs: 120_000 },
  );
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}
