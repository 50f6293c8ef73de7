// Outflow limits (SPEC operator safety): what may leave per request and per window of Bitcoin
// blocks. Pure: the proposer schedules with scheduleOutflow and every signer checks with
// checkLimits, both against the same OutflowLimits and the same notion of a window, so a proposal
// an honest proposer builds is one an honest validator with the same view signs.

export interface OutflowLimits {
  /** A request for more is held: paid only once t operators released it. */
  readonly maxRequestSats: bigint;
  /** At most this many sats of requests are paid out of the queue per window (node/outflow.ts says when one counts). */
  readonly windowSats: bigint;
  /** A window is `windowBlocks` consecutive Bitcoin heights, starting at a multiple of it. */
  readonly windowBlocks: number;
}

/**
 * Defaults that never bind on a devnet: 100 BTC per request, 1,000,000 BTC per day of blocks.
 * docs/config.md gives mainnet values.
 */
export const DEFAULT_LIMITS: OutflowLimits = {
  maxRequestSats: 10_000_000_000n,
  windowSats: 100_000_000_000_000n,
  windowBlocks: 144,
};

/**
 * The window a Bitcoin tip height falls in. Without a chain (the devnet's declared funding)
 * there are no blocks, so there is one window: the cap bounds the member's whole outflow.
 */
export function outflowWindow(tipHeight: number | undefined, limits: OutflowLimits): number {
  return tipHeight === undefined ? 0 : Math.floor(tipHeight / limits.windowBlocks);
}

/** The heights window `window` covers, for messages. */
export function windowHeights(window: number, limits: OutflowLimits): string {
  const first = window * limits.windowBlocks;
  return `Bitcoin blocks ${first}–${first + limits.windowBlocks - 1}`;
}

export function overRequestLimit(sats: bigint, limits: OutflowLimits): boolean {
  return sats > limits.maxRequestSats;
}

export interface LimitedRequest {
  readonly id: string;
  readonly sats: bigint;
  /** Released by this member's operator (only matters over the per-request limit). */
  readonly released: boolean;
  /** Queued here: paying it adds to the window's outflow. */
  readonly counts: boolean;
}

export type LimitFault = { reason: 'request_held' | 'rate_limited'; detail: string };

/**
 * Why this member may not sign a payment of `requests` under its limits, or undefined. A request
 * over the per-request limit needs this member's own release (so a held request reaches t
 * signatures only once t operators released it). New outflow must fit the window's room;
 * released requests are exempt (t operators approved each by hand) but still count as used.
 */
export function checkLimits(
  requests: readonly LimitedRequest[],
  used: bigint,
  window: number,
  limits: OutflowLimits,
): LimitFault | undefined {
  let added = 0n;
  for (const r of requests) {
    const over = overRequestLimit(r.sats, limits);
    if (over && !r.released) {
      return {
        reason: 'request_held',
        detail: `request ${r.id} for ${r.sats} sats is over the per-request limit of ${limits.maxRequestSats} and this member's operator has not released it`,
      };
    }
    if (r.counts && !over) added += r.sats;
  }
  if (added > 0n && used + added > limits.windowSats) {
    return {
      reason: 'rate_limited',
      detail: `${added} sats of new requests on top of ${used} already signed in window ${window} (${windowHeights(window, limits)}) exceed the cap of ${limits.windowSats}`,
    };
  }
  return undefined;
}

export interface QueuedRequest {
  readonly id: string;
  readonly sats: bigint;
  /** This member's operator released it. */
  readonly released: boolean;
  /** Members known to have released it (this one included). */
  readonly releases: number;
}

export interface OutflowPlan {
  /** Payable now, in queue order. */
  readonly pay: readonly string[];
  /** Over the per-request limit and not yet released by t operators (this one included). */
  readonly held: readonly string[];
  /** Waiting for the rolling cap: the window each falls into, first-come first-served. */
  readonly limited: ReadonlyMap<string, number>;
}

/**
 * First-come first-served: `queued` in arrival order; the window's room goes to the oldest
 * requests, and once one does not fit every later one waits too (a large request is never
 * starved by smaller ones overtaking it). Each waiting request is told the window it falls into
 * if every window fills to the cap in order. Held requests stand aside until t releases are known;
 * a released one is payable at once (checkLimits exempts it from the cap).
 */
export function scheduleOutflow(
  queued: readonly QueuedRequest[],
  used: bigint,
  window: number,
  limits: OutflowLimits,
  threshold: number,
): OutflowPlan {
  const pay: string[] = [];
  const held: string[] = [];
  const limited = new Map<string, number>();
  let current = window;
  let room = limits.windowSats - used;
  for (const r of queued) {
    if (overRequestLimit(r.sats, limits)) {
      if (r.released && r.releases >= threshold) pay.push(r.id);
      else held.push(r.id);
      continue;
    }
    if (limited.size === 0 && r.sats <= room) {
      pay.push(r.id);
      room -= r.sats;
      continue;
    }
    // a request never exceeds a whole window: config refuses maxRequestSats > windowSats
    while (r.sats > room) {
      current++;
      room = limits.windowSats;
    }
    limited.set(r.id, current);
    room -= r.sats;
  }
  return { pay, held, limited };
}
