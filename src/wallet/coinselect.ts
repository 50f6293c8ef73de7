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
 * 2. Largest effective value first until the target is met; the remainder becomes change.
 *    Deterministic: ties break by outpoint.
 * Of the two, the one that wastes less is taken (Core's selection waste): each input costs its fee
 * (the users pay it, in their shares), a changeless set its excess, a set with change the change
 * output and the input that spends it later. Counting inputs is what keeps the search from filling
 * the gap to a changeless match with hundreds of small outputs, which anyone can send the federation.
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
  return selectRanked(rankCoins(coins, inputCost), target, inputCost, costOfChange);
}

/**
 * The coins worth spending when an input costs `inputCost` (worth more than that), by effective
 * value, largest first, ties by outpoint: what selectRanked takes. A plan of several payments ranks
 * its coins once, not once a payment and once again for each request it has to leave out.
 */
export function rankCoins<C extends Coin>(coins: readonly C[], inputCost: bigint): C[] {
  return coins
    .filter((c) => c.value > inputCost)
    .sort((a, b) => (b.value > a.value ? 1 : b.value < a.value ? -1 : coinOrder(a, b)));
}

/** selectCoins over coins rankCoins ranked at the same `inputCost`. */
export function selectRanked<C extends Coin>(
  usable: readonly C[],
  target: bigint,
  inputCost: bigint,
  costOfChange: bigint,
): Selection<C> | null {
  let available = 0n;
  for (const c of usable) available += c.value;
  if (available < target) return null;

  const chosen: C[] = [];
  let total = 0n;
  for (const c of usable) {
    if (total >= target) break;
    chosen.push(c);
    total += c.value;
  }
  const changeWaste = BigInt(chosen.length + 1) * inputCost + costOfChange;
  const bnb = branchAndBound(usable, target, costOfChange, available, inputCost, changeWaste);
  if (bnb) return { coins: bnb.sort(coinOrder), total: sum(bnb), method: 'bnb' };
  return { coins: chosen.sort(coinOrder), total, method: 'largest-first' };
}

function sum(coins: readonly Coin[]): bigint {
  return coins.reduce((acc, c) => acc + c.value, 0n);
}

/**
 * Depth-first over coins sorted by descending value, including before omitting each, for the
 * changeless set of least waste (its excess plus `inputCost` an input) below `ceiling`, the waste
 * of the alternative with change; a branch whose inputs alone waste that much is cut. The search
 * adds and subtracts values up to BNB_MAX_TRIES times, so it runs on safe-integer numbers: each
 * bigint operation allocates, and a payment's search made megabytes of garbage. Every sum it forms
 * is at most `available` (and `upper`); a wallet whose coins add up past 2^53 sats (more bitcoin
 * than exists) is not searched.
 */
function branchAndBound<C extends Coin>(
  sorted: readonly C[],
  target: bigint,
  costOfChange: bigint,
  available: bigint,
  inputCost: bigint,
  ceiling: bigint,
): C[] | null {
  const bound = BigInt(Number.MAX_SAFE_INTEGER);
  if (available > bound || target + costOfChange > bound || ceiling > bound) return null;
  const values = sorted.map((c) => Number(c.value));
  const goal = Number(target);
  const upper = Number(target + costOfChange);
  const perInput = Number(inputCost);
  const include: boolean[] = [];
  let best: boolean[] | null = null;
  // ties go to the changeless set, as before inputs were counted
  let bestWaste = Number(ceiling) + 1;
  let value = 0;
  let inputs = 0;
  let remaining = Number(available);
  let depth = 0;

  for (let tries = 0; tries < BNB_MAX_TRIES; tries++) {
    let backtrack = value + remaining < goal || value > upper || inputs * perInput >= bestWaste;
    if (!backtrack && value >= goal) {
      const waste = value - goal + inputs * perInput;
      if (waste < bestWaste) {
        best = include.slice(0, depth);
        bestWaste = waste;
      }
      backtrack = true;
    } else if (depth === values.length) {
      backtrack = true;
    }
    if (backtrack) {
      // undo trailing omissions, then turn the last inclusion into an omission
      while (depth > 0 && !include[depth - 1]) {
        depth--;
        remaining += values[depth]!;
      }
      if (depth === 0) break;
      include[depth - 1] = false;
      value -= values[depth - 1]!;
      inputs--;
      continue;
    }
    remaining -= values[depth]!;
    include[depth] = true;
    value += values[depth]!;
    inputs++;
    depth++;
  }
  if (!best) return null;
  return sorted.filter((_, i) => best![i] === true);
}
