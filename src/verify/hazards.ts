/**
 * Rotation hazards (MF213–MF215 of `meshfed check`): the pure decisions, on
 * numbers the checks read. Nothing here reads a cluster.
 *
 * A holder learns a peer's new authorities only when it refreshes the
 * peer's bundle, at the refresh hint the peer's bundle endpoint serves
 * (SPIRE ≥ 1.8: `refresh_hint`, default 5m; SPIRE 1.5: a tenth of the
 * root's lifetime, 90 days for the guide's 21600h root). So:
 *
 * - the hint must be shorter than the remaining life of the peer's current
 *   signing CA (the SPIRE intermediate) and of its root, or a rotation can
 *   land before the holder looks again (`refreshHintHazard`);
 * - the held bundle must outlive the holder's next refresh
 *   (`heldBundleHazard`): once every held authority has expired the holder
 *   trusts none of the peer and cannot even authenticate the peer's endpoint
 *   to refresh;
 * - a root renewal (cert-manager, rotationPolicy Always: a new key) must not
 *   come sooner than the peers' refresh hint plus a margin
 *   (`rootRenewalHazard`), or peers meet the new root's SVIDs before its bundle.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** The margin past the refresh hint inside which a root renewal is "near" (MF215): a week to plan it. */
export const ROOT_RENEWAL_MARGIN_MS = 7 * DAY;

export { span } from '../fleet/durations.js';

export interface HintVsLifeInput {
  now: Date;
  /** The refresh hint the peer's endpoint serves, in seconds. */
  refreshHintSeconds: number;
  /** When the peer's active SPIRE CA (intermediate) expires, when it could be read. */
  signingCaNotAfter?: Date;
  /** The fleet's SPIRE CA TTL (`spec.ca.spire.caTTL`): bounds the intermediate's life when it cannot be read. */
  caTtlMs: number;
  /** When the peer's root (cert-manager Certificate) expires, when it could be read. */
  rootNotAfter?: Date;
}

export interface HintVsLife {
  hazard: boolean;
  hintMs: number;
  /** The shortest remaining life compared with the hint, and whose it is. */
  limitMs: number;
  limitOf: 'SPIRE CA' | 'root';
  /**
   * Whether the SPIRE CA's remaining life was read (`localauthority x509
   * show`), or is the least an active CA has in steady state: a sixth of
   * the CA TTL (SPIRE activates the next CA at five sixths of the active one's life).
   */
  caLifeKnown: boolean;
}

/**
 * The hint against the remaining life of the peer's signing CA and root:
 * a hazard when the hint is not shorter than the shorter of them.
 */
export function refreshHintHazard(i: HintVsLifeInput): HintVsLife {
  const now = i.now.getTime();
  const hintMs = i.refreshHintSeconds * 1000;
  const caLifeKnown = i.signingCaNotAfter !== undefined;
  const caLeft = caLifeKnown ? i.signingCaNotAfter!.getTime() - now : i.caTtlMs / 6;
  const rootLeft = i.rootNotAfter === undefined ? Number.POSITIVE_INFINITY : i.rootNotAfter.getTime() - now;
  const [limitMs, limitOf] = rootLeft < caLeft ? [rootLeft, 'root' as const] : [caLeft, 'SPIRE CA' as const];
  return { hazard: hintMs >= limitMs, hintMs, limitMs, limitOf, caLifeKnown };
}

/**
 * When the holder refreshes the peer next: its last refresh plus the hint
 * while that is still ahead, else now plus the hint (the latest it may be
 * when the last refresh is unknown or overdue).
 */
export function nextRefresh(now: Date, refreshHintSeconds: number, lastRefreshed?: Date): Date {
  const hint = refreshHintSeconds * 1000;
  const fromLast = lastRefreshed ? lastRefreshed.getTime() + hint : undefined;
  return new Date(fromLast !== undefined && fromLast > now.getTime() ? fromLast : now.getTime() + hint);
}

export interface HeldBundleInput {
  now: Date;
  refreshHintSeconds: number;
  lastRefreshed?: Date;
  /** When the first of the held X.509 authorities expires. */
  earliestExpiresAt: Date;
  /** When the last of them expires. */
  expiresAt: Date;
}

/**
 * `all`: every held authority expires before the next refresh (the holder
 * will trust nothing of the peer, and cannot authenticate its endpoint to
 * refresh: certain breakage); `earliest`: the first one does (the holder
 * trusts less from then on, which breaks what the peer still signs with
 * it); `none`.
 */
export function heldBundleHazard(i: HeldBundleInput): {
  hazard: 'none' | 'earliest' | 'all';
  next: Date;
} {
  const next = nextRefresh(i.now, i.refreshHintSeconds, i.lastRefreshed);
  const hazard =
    i.expiresAt.getTime() <= next.getTime()
      ? 'all'
      : i.earliestExpiresAt.getTime() <= next.getTime()
        ? 'earliest'
        : 'none';
  return { hazard, next };
}

export interface RootRenewalInput {
  now: Date;
  /** The root Certificate's `status.renewalTime`. */
  renewalTime: Date;
  /** The longest refresh hint the cluster's bundle endpoint serves its holders, in seconds. */
  refreshHintSeconds: number;
  marginMs?: number;
}

/**
 * Near: the renewal comes in less than the hint plus the margin (a week):
 * with rotationPolicy Always it brings a new key, and every holder must have
 * the new bundle before workloads present SVIDs chained to it.
 */
export function rootRenewalHazard(i: RootRenewalInput): {
  near: boolean;
  leftMs: number;
  thresholdMs: number;
} {
  const leftMs = i.renewalTime.getTime() - i.now.getTime();
  const thresholdMs = i.refreshHintSeconds * 1000 + (i.marginMs ?? ROOT_RENEWAL_MARGIN_MS);
  return { near: leftMs < thresholdMs, leftMs, thresholdMs };
}
