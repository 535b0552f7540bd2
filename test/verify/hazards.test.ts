/**
 * The rotation hazards' decisions (MF213–MF215), on numbers alone: the
 * guide's SPIRE 1.5.1 (its 21600h root makes it serve a refresh hint of a
 * tenth of that, 2160h = 90 days) is flagged; the current profile's
 * defaults (hint 5m, SPIRE CA 24h, root 21600h renewed 7200h before) are not.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  heldBundleHazard,
  nextRefresh,
  refreshHintHazard,
  rootRenewalHazard,
  span,
} from '../../src/verify/hazards.js';
import { POST_CHECKS } from '../../src/verify/post.js';

const H = 3_600_000;
const now = new Date('2026-11-27T05:00:00Z');
const at = (ms: number) => new Date(now.getTime() + ms);
/** SPIRE 1.5.1's served hint for a 21600h root: a tenth of its lifetime. */
const GUIDE_HINT_S = (21600 * 3600) / 10;

test('the guide: SPIRE 1.5.1, root 21600h, hint 90 days: the hint outlives the SPIRE CA', () => {
  assert.equal(GUIDE_HINT_S, 7_776_000);
  // The intermediate's expiry read (20 h left), the root fresh (21000 h left).
  const known = refreshHintHazard({
    now,
    refreshHintSeconds: GUIDE_HINT_S,
    caTtlMs: 24 * H,
    signingCaNotAfter: at(20 * H),
    rootNotAfter: at(21000 * H),
  });
  assert.deepEqual(known, {
    hazard: true,
    hintMs: 7_776_000_000,
    limitMs: 20 * H,
    limitOf: 'SPIRE CA',
    caLifeKnown: true,
  });
  // SPIRE 1.5 has no `localauthority x509 show`: the bound (a sixth of ca_ttl) still flags it.
  const bound = refreshHintHazard({ now, refreshHintSeconds: GUIDE_HINT_S, caTtlMs: 24 * H });
  assert.equal(bound.hazard, true);
  assert.equal(bound.limitMs, 4 * H);
  assert.equal(bound.caLifeKnown, false);
  assert.equal(span(bound.hintMs), '90d');
});

test('healthy: hint 5m against a 24h SPIRE CA and a fresh root', () => {
  const h = refreshHintHazard({
    now,
    refreshHintSeconds: 300,
    caTtlMs: 24 * H,
    signingCaNotAfter: at(17 * H),
    rootNotAfter: at(21599 * H),
  });
  assert.equal(h.hazard, false);
  assert.equal(h.limitOf, 'SPIRE CA');
  assert.equal(h.limitMs, 17 * H);
  // Unknown CA life: a sixth of 24h is 4h, still longer than 5m.
  assert.equal(refreshHintHazard({ now, refreshHintSeconds: 300, caTtlMs: 24 * H }).hazard, false);
});

test('the root is the limit when it has less left than the SPIRE CA; equal is a hazard', () => {
  const h = refreshHintHazard({
    now,
    refreshHintSeconds: 3600,
    caTtlMs: 24 * H,
    signingCaNotAfter: at(10 * H),
    rootNotAfter: at(H),
  });
  assert.deepEqual([h.hazard, h.limitOf, h.limitMs], [true, 'root', H]);
  const justUnder = refreshHintHazard({
    now,
    refreshHintSeconds: 3599,
    caTtlMs: 24 * H,
    signingCaNotAfter: at(10 * H),
    rootNotAfter: at(H),
  });
  assert.equal(justUnder.hazard, false);
});

test('next refresh: last refresh + hint while ahead, else now + hint', () => {
  assert.equal(nextRefresh(now, 300).toISOString(), at(300_000).toISOString());
  assert.equal(
    nextRefresh(now, 300, new Date(now.getTime() - 60_000)).toISOString(),
    at(240_000).toISOString(),
  );
  // Overdue (last refresh + hint already past): the latest it may be is now + hint.
  assert.equal(nextRefresh(now, 300, new Date(now.getTime() - H)).toISOString(), at(300_000).toISOString());
});

test('held bundle: all authorities expire before the next refresh (error), the earliest only (warning), none', () => {
  // The guide: hint 90 days, a held root with 30 days left: nothing left to trust before the refresh.
  const guide = heldBundleHazard({
    now,
    refreshHintSeconds: GUIDE_HINT_S,
    earliestExpiresAt: at(30 * 24 * H),
    expiresAt: at(30 * 24 * H),
  });
  assert.equal(guide.hazard, 'all');
  assert.equal(guide.next.toISOString(), at(GUIDE_HINT_S * 1000).toISOString());
  // An old root retiring in 2 h beside a new one: the earliest only.
  assert.equal(
    heldBundleHazard({
      now,
      refreshHintSeconds: 4 * 3600,
      earliestExpiresAt: at(2 * H),
      expiresAt: at(900 * 24 * H),
    }).hazard,
    'earliest',
  );
  // Healthy: hint 5m, the held root valid for months.
  assert.equal(
    heldBundleHazard({
      now,
      refreshHintSeconds: 300,
      earliestExpiresAt: at(899 * 24 * H),
      expiresAt: at(900 * 24 * H),
    }).hazard,
    'none',
  );
  // The last refresh counts: refreshed 4 min ago with a 5m hint, an authority expiring in 2 min is before it.
  assert.equal(
    heldBundleHazard({
      now,
      refreshHintSeconds: 300,
      lastRefreshed: new Date(now.getTime() - 240_000),
      earliestExpiresAt: at(120_000),
      expiresAt: at(900 * 24 * H),
    }).hazard,
    'none',
  );
});

test('root renewal: near when sooner than the served hint plus 7 days', () => {
  // The guide: a hint of 90 days; a renewal in 60 days is near.
  const guide = rootRenewalHazard({ now, renewalTime: at(60 * 24 * H), refreshHintSeconds: GUIDE_HINT_S });
  assert.equal(guide.near, true);
  assert.equal(guide.thresholdMs, 97 * 24 * H);
  // Current defaults: root 21600h renewed 7200h before: the renewal is 600 days off; hint 5m.
  const fresh = rootRenewalHazard({ now, renewalTime: at(14400 * H), refreshHintSeconds: 300 });
  assert.equal(fresh.near, false);
  // Hint 5m, renewal in 6 days: inside the week's margin.
  assert.equal(rootRenewalHazard({ now, renewalTime: at(6 * 24 * H), refreshHintSeconds: 300 }).near, true);
  assert.equal(rootRenewalHazard({ now, renewalTime: at(8 * 24 * H), refreshHintSeconds: 300 }).near, false);
});

test('the rotation checks are in the post catalog, each with a hint naming its fix', () => {
  const byCode = new Map(POST_CHECKS.map((c) => [c.code, c]));
  assert.deepEqual(POST_CHECKS.map((c) => c.code).slice(-4), ['MF212', 'MF213', 'MF214', 'MF215']);
  for (const code of ['MF213', 'MF214', 'MF215']) {
    const c = byCode.get(code)!;
    assert.equal(c.category, 'rotation');
    assert.equal(c.stage, 'post');
  }
  assert.equal(byCode.get('MF213')!.severity, 'warning');
  assert.equal(byCode.get('MF214')!.severity, 'error');
  assert.equal(byCode.get('MF215')!.severity, 'warning');
  assert.match(byCode.get('MF213')!.hint, /spec\.federation\.refreshHint/);
  assert.match(byCode.get('MF213')!.hint, /meshfed federation watch/);
  assert.match(byCode.get('MF214')!.hint, /meshfed federation sync/);
  assert.match(byCode.get('MF215')!.hint, /meshfed federation watch/);
});
