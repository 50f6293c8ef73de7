import { WalletError } from './errors.js';

/** A fee rate in sat/vB; fractional rates (Core's estimates are) round the fee up. */
export type FeeRate = number;

export function checkFeeRate(rate: FeeRate, field = 'fee rate'): FeeRate {
  if (!Number.isFinite(rate) || rate <= 0 || rate > 1_000_000) {
    throw new WalletError('invalid_fee_rate', `${field} must be a positive number of sat/vB (at most 1,000,000), got ${rate}`, { field, value: rate });
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
