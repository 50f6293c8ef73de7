import { WalletError } from './errors.js';

/** A fee rate in sat/vB; fractional rates (Core's estimates are) round the fee up. */
export type FeeRate = number;

export function checkFeeRate(rate: FeeRate, field = 'fee rate'): FeeRate {
  if (!Number.isFinite(rate) || rate <= 0 || rate > 1_000_000) {
    throw new WalletError(
      'invalid_fee_rate',
      `${field} must be a positive number of sat/vB (at most 1,000,000), got ${rate}`,
      { field, value: rate },
    );
  }
  return rate;
}

/** ceil(rate × vsize) in satoshis: never under the target rate. */
export function feeFor(rate: FeeRate, vsize: number): bigint {
  // Rates are given with at most 3 decimals (sat/kvB precision); scaling keeps the product exact.
  const milli = BigInt(Math.round(rate * 1000));
  return (milli * BigInt(vsize) + 999n) / 1000n;
}

/**
 * Splits `fee` over `outputs` peg-outs: each pays ceil(fee / outputs), so the total covers the
 * fee; the surplus (under one satoshi per output) also goes to the miners.
 */
export function feeShare(fee: bigint, outputs: number): bigint {
  if (outputs <= 0) throw new WalletError('no_requests', 'a fee cannot be shared over zero outputs');
  const k = BigInt(outputs);
  return (fee + k - 1n) / k;
}

/**
 * What a member accepts as a payment's fee, from its own view of the fee market (SPEC §2, §3):
 * never under `floor` (the node's minimum relay fee), never over `maxMultiple` × its own
 * estimate nor `maxRate`, and no peg-out bearing more than `maxSharePerRequest`. The proposer
 * builds at targetRate() and defers what the caps exclude; validators check with checkFee().
 */
export interface FeePolicy {
  readonly floor: FeeRate;
  readonly estimate: FeeRate;
  readonly maxMultiple: number;
  readonly maxRate: FeeRate;
  readonly maxSharePerRequest: bigint;
}

/** Validators accept up to this multiple of their own estimate (members' estimates differ). */
export const DEFAULT_MAX_FEE_MULTIPLE = 3;
/** A peg-out's share of the fee above this is deferred, not paid (sats): 0.001 BTC. */
export const DEFAULT_MAX_SHARE_PER_REQUEST = 100_000n;

/** The rate a proposer builds at: its estimate, raised to the floor, lowered to the cap. */
export function targetRate(policy: FeePolicy): FeeRate {
  return Math.min(Math.max(policy.estimate, policy.floor), policy.maxRate);
}

/** The highest rate a validator accepts. */
export function maxAcceptedRate(policy: FeePolicy): FeeRate {
  return Math.min(policy.maxRate, policy.maxMultiple * Math.max(policy.estimate, policy.floor));
}

export type FeeFault = { reason: 'fee_rate_too_low' | 'fee_rate_too_high' | 'fee_share_too_high'; detail: string };

/** Whether a payment of `fee` sats at `vsize` vB, each peg-out bearing `share`, is within `policy`. */
export function checkFee(fee: bigint, vsize: number, share: bigint, policy: FeePolicy): FeeFault | undefined {
  const rate = Number(fee) / vsize;
  if (rate < policy.floor)
    return {
      reason: 'fee_rate_too_low',
      detail: `fee rate ${rate.toFixed(3)} sat/vB is under this member's floor ${policy.floor}`,
    };
  const max = maxAcceptedRate(policy);
  if (rate > max)
    return {
      reason: 'fee_rate_too_high',
      detail: `fee rate ${rate.toFixed(3)} sat/vB is over ${max} (${policy.maxMultiple}× this member's estimate ${policy.estimate}, at most ${policy.maxRate})`,
    };
  if (share > policy.maxSharePerRequest)
    return {
      reason: 'fee_share_too_high',
      detail: `each peg-out bears ${share} sats of fee, over the cap of ${policy.maxSharePerRequest}`,
    };
  return undefined;
}
