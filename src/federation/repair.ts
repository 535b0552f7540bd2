/**
 * Which federated directions cannot heal themselves, and their repair.
 *
 * SPIRE refreshes a peer's bundle by fetching it from the peer's bundle
 * endpoint, which it authenticates with the bundle it already holds. So a
 * holder that holds no bundle of the peer, or one that no longer
 * authenticates the endpoint (the peer's root was replaced while the holder
 * was not looking), never refreshes: only a new bootstrap (the peer's bundle
 * read from its server and checked against its endpoint, as `up` does) brings
 * it back. A stale bundle that still authenticates the endpoint heals at the
 * next refresh, SPIRE's own or `refreshAll`'s, and is left alone; so is a
 * current one. A direction whose holder or peer cannot be reached cannot be
 * judged, so it is not touched either.
 *
 * The decision is a pure function of the direction's status
 * (`federationStatus`); `repair` does only what the decisions say.
 */
import {
  bootstrapDirections,
  directions,
  type FederationMember,
  type Pair,
  type PairState,
  type PairStatus,
  type PairStep,
  type RefreshLog,
} from './engine.js';

export type RepairAction =
  /** Current: nothing to do. */
  | 'none'
  /** Cannot heal itself: bootstrap it again. */
  | 'bootstrap'
  /** Stale, but the held bundle still authenticates the peer's endpoint: the next refresh heals it. */
  | 'refresh-heals'
  /** Its holder or peer cannot be reached (or the endpoint could not be asked): nothing can be decided. */
  | 'unknown';

export interface RepairDecision {
  holder: string;
  peer: string;
  state: PairState;
  action: RepairAction;
  /** Why, in words, for the output. */
  why: string;
}

export function repairDecision(s: PairStatus): RepairDecision {
  const d = (action: RepairAction, why: string): RepairDecision => ({
    holder: s.holder,
    peer: s.peer,
    state: s.state,
    action,
    why,
  });
  switch (s.state) {
    case 'current':
      return d('none', 'current');
    case 'missing':
      return d(
        'bootstrap',
        `${s.holder} holds no bundle of ${s.peer}, so it has nothing to authenticate its endpoint with`,
      );
    case 'stale':
      if (s.selfHeals === false)
        return d('bootstrap', `the held bundle no longer authenticates ${s.peer}'s bundle endpoint`);
      if (s.selfHeals === true)
        return d(
          'refresh-heals',
          `stale, but the held bundle still authenticates ${s.peer}'s endpoint: the next refresh heals it (meshfed federation sync does it now)`,
        );
      return d(
        'unknown',
        `stale; ${s.peer}'s endpoint could not be asked whether the held bundle authenticates it`,
      );
    default:
      return d('unknown', `${s.state}${s.detail ? `: ${s.detail}` : ''}`);
  }
}

export interface RepairStep extends RepairDecision {
  /** Of a direction bootstrapped again: what the bootstrap did. */
  step?: PairStep;
}

/**
 * Bootstraps again exactly the directions whose decision is `bootstrap`
 * (with the peer's endpoint-owner check, `verifiedOwnBundle`) and records
 * each one that succeeded in `log`; every other direction is only reported.
 */
export async function repair(
  members: FederationMember[],
  pairs: Pair[],
  decisions: RepairDecision[],
  log?: RefreshLog,
): Promise<RepairStep[]> {
  const todo = new Set(decisions.filter((x) => x.action === 'bootstrap').map((x) => key(x.holder, x.peer)));
  const dirs = directions(members, pairs).filter(([h, p]) => todo.has(key(h.name, p.name)));
  const steps = new Map((await bootstrapDirections(dirs)).map((s) => [key(s.holder, s.peer), s]));
  return decisions.map((x) => {
    const step = steps.get(key(x.holder, x.peer));
    if (step && step.result !== 'failed') log?.record(step.holder, step.peer);
    return step ? { ...x, step } : x;
  });
}

const key = (holder: string, peer: string) => `${holder}\u0000${peer}`;
