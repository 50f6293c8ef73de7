import type { FeeRate } from './fee.js';
import { feeFor } from './fee.js';

export interface Coin {
  readonly txid: string;
  readonly vout: number;
  readonly value: bigint;
}

export interface Selection<C extends Coin> {
  readonly coins: C[];
  readonly total: bigint;
  /** 'bnb': a changeless match within the cost of change; 'largest-first': the fallback. */
  readonly method: 'bnb' | 'largest-first';
}

/** Bitcoin Core's bound on branch-and-bound work. */
const BNB_MAX_TRIES = 100_000;

function coinOrder(a: Coin, b: Coin): number {
  return a.txid < b.txid ? -1 : a.txid > b.txid ? 1 : a.vout - b.vout;
}

/**
 * Chooses coins worth at least `target`. Each coin is ranked by its effective value at `rate`
 * (value minus the fee its signed script-path input adds); coins that cost more to spend than
 * they hold are never used.
 *
 * 1. Branch-and-bound (as Bitcoin Core's SelectCoinsBnB) searches for a set whose value falls in
 *    [target, target + costOfChange]: no change output, and the excess given to fees is less
 *    than what the change output would have cost.
 * 2. Otherwise, largest effective value first until the target is met; the remainder becomes
 *    change. Deterministic: ties break by outpoint.
 *
 * Returns null when all usable coins together fall short.
 */
export function selectCoins<C extends Coin>(
  coins: readonly C[],
  target: bigint,
  rate: FeeRate,
  inputVsize: number,
  costOfChange: bigint,
): Selection<C> | null {
  const inputCost = feeFor(rate, inputVsize);
  const usable = coins
    .filter((c) => c.value > inputCost)
    .sort((a, b) =>
      b.value - inputCost > a.value - inputCost ? 1 : b.value - inputCost < a.value - inputCost ? -1 : coinOrder(a, b),
    );
  let available = 0n;
  for (const c of usable) available += c.value;
  if (available < target) return null;

  const bnb = branchAndBound(usable, target, costOfChange, available);
  if (bnb) return { coins: bnb.sort(coinOrder), total: sum(bnb), method: 'bnb' };

  const chosen: C[] = [];
  let total = 0n;
  for (const c of usable) {
    if (total >= target) break;
    chosen.push(c);
    total += c.value;
  }
  return { coins: chosen.sort(coinOrder), total, method: 'largest-first' };
}

function sum(coins: readonly Coin[]): bigint {
  return coins.reduce((acc, c) => acc + c.value, 0n);
}

/** Depth-first over coins sorted by descending value, including before omitting each. */
function branchAndBound<C extends Coin>(
  sorted: readonly C[],
  target: bigint,
  costOfChange: bigint,
  available: bigint,
): C[] | null {
  const upper = target + costOfChange;
  const include: boolean[] = [];
  let best: boolean[] | null = null;
  let bestWaste: bigint | null = null;
  let value = 0n;
  let remaining = available;
  let depth = 0;

  for (let tries = 0; tries < BNB_MAX_TRIES; tries++) {
    let backtrack = value + remaining < target || value > upper;
    if (!backtrack && value >= target) {
      const waste = value - target;
      if (bestWaste === null || waste < bestWaste) {
        best = include.slice(0, depth);
        bestWaste = waste;
        if (waste === 0n) break;
      }
      backtrack = true;
    } else if (depth === sorted.length) {
      backtrack = true;
    }
    if (backtrack) {
      // undo trailing omissions, then turn the last inclusion into an omission
      while (depth > 0 && !include[depth - 1]) {
        depth--;
        remaining += sorted[depth]!.value;
      }
      if (depth === 0) break;
      include[depth - 1] = false;
      value -= sorted[depth - 1]!.value;
      continue;
    }
    const coin = sorted[depth]!;
    remaining -= coin.value;
    include[depth] = true;
    value += coin.value;
    depth++;
  }
  if (!best) return null;
  return sorted.filter((_, i) => best![i] === true);
}
