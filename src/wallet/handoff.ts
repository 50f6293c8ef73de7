import { ByteWriter, equal, toHex } from '../bitcoin/bytes.js';
import {
  federationFaultTolerance,
  federationFile,
  parseFederationFile,
  type Federation,
  type FederationFile,
} from '../bitcoin/federation.js';
import { taggedHash } from '../bitcoin/hash.js';
import { dustThreshold } from '../bitcoin/script.js';
import type { Prevout, Transaction, TxOutput } from '../bitcoin/tx.js';
import {
  federationInputWeight,
  federationSpendWeight,
  MAX_STANDARD_TX_WEIGHT,
  signedFederationVsize,
  weightToVsize,
} from '../bitcoin/weight.js';
import { commitmentScript, commitsTo } from './commitment.js';
import { WalletError } from './errors.js';
import { checkFeeRate, feeFor, type FeeRate } from './fee.js';
import { spendingEachRival, unsignedSpend, type SpendableUtxo } from './payment.js';
import { checkSequence, checkSpendHeader, reject, type Verdict } from './verdict.js';

// Membership change (issue 17): the old federation hands its funds to a new one that operators
// agreed on out of band. A handoff transaction moves federation funds and pays no request, so
// nobody is owed an exact amount; what a member must hold it to is where the money goes (only
// the planned address, or back to the spending federation itself) and what the miners get
// (bounded). Output 0 still commits, to no request, so no handoff can be read as a payment.

/** A rotation plan as operators write and compare it. */
export interface RotationPlanFile {
  readonly version: 1;
  readonly from: FederationFile;
  readonly to: FederationFile;
  /** The Bitcoin height from which the old federation hands over. */
  readonly activationHeight: number;
  /**
   * The first EVM block whose requests the new federation pays: the old one pays every request
   * below it, the new one every request from it on, so each request has exactly one payer, read
   * from a fact of the EVM chain. It must be final when the plan is made, so no request can move
   * across it in a reorg.
   */
  readonly evmBoundary: number;
}

export interface RotationPlan {
  readonly from: Federation;
  readonly to: Federation;
  readonly activationHeight: number;
  readonly evmBoundary: number;
  /**
   * taggedHash over both output scripts, the height and the boundary, hex: two plans with the same fingerprint
   * move the same funds to the same keys and threshold at the same points, whatever order their
   * files list the keys in. Operators compare it out of band.
   */
  readonly fingerprint: string;
}

export const PLAN_TAG = 'alys-pegout/rotation-plan';

function planFault(source: string, field: string, message: string, value?: unknown): never {
  throw new WalletError('invalid_plan', `${source}: ${field} ${message}`, {
    field,
    ...(value === undefined ? {} : { value }),
  });
}

/** Fingerprint of a handoff from `from` to `to` at `activationHeight`, paying requests from `evmBoundary` on. */
export function planFingerprint(
  from: Federation,
  to: Federation,
  activationHeight: number,
  evmBoundary: number,
): string {
  const points = new ByteWriter(12).u32(activationHeight).u64(BigInt(evmBoundary)).finish();
  return toHex(taggedHash(PLAN_TAG, from.scriptPubKey, to.scriptPubKey, points));
}

/**
 * Checks a plan: both federations well formed, on one network, different, each with f ≥ 0
 * (SPEC §3: two quorums of either set share an honest member), and a height Bitcoin can reach.
 */
export function makeRotationPlan(
  from: Federation,
  to: Federation,
  points: { readonly activationHeight: number; readonly evmBoundary: number },
  source: string,
): RotationPlan {
  const { activationHeight, evmBoundary } = points;
  if (from.network !== to.network)
    planFault(
      source,
      'to.network',
      `is ${to.network}, expected the old federation's network ${from.network}`,
      to.network,
    );
  if (equal(from.scriptPubKey, to.scriptPubKey))
    planFault(
      source,
      'to',
      `is the old federation itself (${from.address}): a rotation needs a new member set or threshold`,
    );
  for (const [field, federation] of [
    ['from', from],
    ['to', to],
  ] as const) {
    const { safety, statement } = federationFaultTolerance(federation);
    if (safety < 0) planFault(source, `${field}.threshold`, `leaves f < 0: ${statement}`, federation.threshold);
  }
  if (!Number.isSafeInteger(activationHeight) || activationHeight < 1 || activationHeight > 0xffffffff)
    planFault(source, 'activationHeight', 'must be a block height from 1 to 4294967295', activationHeight);
  if (!Number.isSafeInteger(evmBoundary) || evmBoundary < 1)
    planFault(source, 'evmBoundary', 'must be an EVM block number of at least 1', evmBoundary);
  return {
    from,
    to,
    activationHeight,
    evmBoundary,
    fingerprint: planFingerprint(from, to, activationHeight, evmBoundary),
  };
}

export function parseRotationPlan(json: unknown, source: string): RotationPlan {
  const p = json as Partial<Record<keyof RotationPlanFile, unknown>> | null;
  if (!p || typeof p !== 'object')
    planFault(source, 'plan', 'must be a JSON object {version, from, to, activationHeight, evmBoundary}');
  if (p.version !== 1) planFault(source, 'version', `must be 1, got ${JSON.stringify(p.version)}`, p.version);
  const from = parseFederationFile(p.from, `${source}: from`);
  const to = parseFederationFile(p.to, `${source}: to`);
  const points = { activationHeight: p.activationHeight as number, evmBoundary: p.evmBoundary as number };
  return makeRotationPlan(from, to, points, source);
}

export function rotationPlanFile(plan: RotationPlan): RotationPlanFile {
  return {
    version: 1,
    from: federationFile(plan.from),
    to: federationFile(plan.to),
    activationHeight: plan.activationHeight,
    evmBoundary: plan.evmBoundary,
  };
}

/** Which side of `plan` a member of `federation` is on; a federation that is neither is refused, named. */
export function planSide(plan: RotationPlan, federation: Federation, field: string): 'from' | 'to' {
  if (equal(federation.scriptPubKey, plan.from.scriptPubKey)) return 'from';
  if (equal(federation.scriptPubKey, plan.to.scriptPubKey)) return 'to';
  throw new WalletError(
    'invalid_plan',
    `${field}: federation ${federation.address} is neither the plan's old federation (${plan.from.address}) nor its new one (${plan.to.address})`,
    { field, value: federation.address },
  );
}

/** A member's part in a rotation: the plan, its side, and its own caps on what a handoff moves. */
export interface HandoffPolicy {
  readonly plan: RotationPlan;
  readonly side: 'from' | 'to';
  /** The most the old set moves to the new address before the new set proved it signs. */
  readonly testAmount: bigint;
  /** The most fee one handoff transaction pays, in sats. */
  readonly maxFee: bigint;
}

/**
 * Whether `tx` is a handoff of `federation`: output 0 commits to no request, and every input spends
 * an output of `federation` (`spentScripts[i]`, the script input i spent, as the node showed it) by
 * its script path (its witness ends with that federation's tapscript and control block). Consensus
 * checks that pair against the spent output's key, so only t of its members can have signed it.
 * The witness alone proves nothing: an output of an unknown witness version is spent with any
 * witness, so a stranger can show the old tapscript. Its payment of a request is none, even to the
 * new address: anyone can ask for one there, and the new set must spend the test output, not that.
 */
export function isHandoffOf(
  tx: Transaction,
  spentScripts: readonly (Uint8Array | undefined)[],
  federation: Federation,
): boolean {
  const commitment = tx.outputs[0];
  return (
    commitment !== undefined &&
    commitsTo(commitment.scriptPubKey, []) &&
    tx.inputs.length > 0 &&
    spentScripts.length === tx.inputs.length &&
    tx.inputs.every((input, i) => {
      const spent = spentScripts[i];
      const n = input.witness.length;
      return (
        spent !== undefined &&
        equal(spent, federation.scriptPubKey) &&
        n >= 2 &&
        equal(input.witness[n - 1]!, federation.controlBlock) &&
        equal(input.witness[n - 2]!, federation.tapscript)
      );
    })
  );
}

/** Sats that `tx` pays to the plan's new address. */
export function handoffSent(tx: Transaction, plan: RotationPlan): bigint {
  return tx.outputs.reduce((a, o) => (equal(o.scriptPubKey, plan.to.scriptPubKey) ? a + o.value : a), 0n);
}

/** What a member accepts as the fee of a handoff transaction: the federation pays it, so it is capped in sats too. */
export interface HandoffFeeBounds {
  readonly floor: FeeRate;
  readonly maxRate: FeeRate;
  /** At most this many sats per transaction. */
  readonly maxFee: bigint;
}

/** 0.001 BTC per handoff transaction: a full sweep of 2,000 inputs at 5 sat/vB stays under it per relayable batch. */
export const DEFAULT_MAX_HANDOFF_FEE = 100_000n;

export type HandoffKind = 'sweep' | 'test';

export interface HandoffTx {
  readonly kind: HandoffKind;
  readonly tx: Transaction;
  readonly prevouts: readonly SpendableUtxo[];
  readonly vsize: number;
  readonly fee: bigint;
  /** Sats to the planned (new) address. */
  readonly sent: bigint;
  /** Sats back to the spending federation (a test spend's change). */
  readonly kept: bigint;
}

const NO_REQUESTS = (): Uint8Array => commitmentScript([]);

/**
 * Outputs of a handoff spend by `spender` of inputs worth `total` at `fee`: the commitment to no
 * request, `sent` sats to the planned address and, when `sent` is given, the rest back to the
 * spender; without it, everything less the fee goes to the planned address (a sweep).
 */
function handoffOutputs(
  plan: RotationPlan,
  spender: Federation,
  total: bigint,
  fee: bigint,
  sent?: bigint,
): TxOutput[] {
  const outputs: TxOutput[] = [{ value: 0n, scriptPubKey: NO_REQUESTS() }];
  if (sent === undefined) return [...outputs, { value: total - fee, scriptPubKey: plan.to.scriptPubKey }];
  return [
    ...outputs,
    { value: sent, scriptPubKey: plan.to.scriptPubKey },
    { value: total - fee - sent, scriptPubKey: spender.scriptPubKey },
  ];
}

function handoffWeight(spender: Federation, plan: RotationPlan, inputs: number, withChange: boolean): number {
  const scripts = [NO_REQUESTS(), plan.to.scriptPubKey, ...(withChange ? [spender.scriptPubKey] : [])];
  return federationSpendWeight(spender, inputs, scripts);
}

function order(a: SpendableUtxo, b: SpendableUtxo): number {
  return a.txid === b.txid ? a.vout - b.vout : a.txid < b.txid ? -1 : 1;
}

export interface SweepPlan {
  readonly sweeps: HandoffTx[];
  /** Outputs left where they are, with why: nothing is dropped silently. */
  readonly left: { readonly outpoint: string; readonly reason: 'uneconomic' | 'fee_over_cap' }[];
}

/**
 * Sweeps of every output of `spender` in `utxos` to the planned address at `rate`, in outpoint
 * order, as few relayable transactions as the weight limit and the fee cap allow. An output
 * worth less than the fee its input adds stays (uneconomic), and is named.
 */
export function buildSweeps(
  utxos: readonly SpendableUtxo[],
  rate: FeeRate,
  plan: RotationPlan,
  spender: Federation,
  maxFee: bigint,
): SweepPlan {
  checkFeeRate(rate);
  const inputFee = feeFor(rate, weightToVsize(federationInputWeight(spender)));
  const left: SweepPlan['left'][number][] = [];
  const ordered = [...utxos].sort(order).filter((u) => {
    if (u.value > inputFee) return true;
    left.push({ outpoint: `${u.txid}:${u.vout}`, reason: 'uneconomic' });
    return false;
  });
  const sweeps: HandoffTx[] = [];
  const dust = dustThreshold(plan.to.scriptPubKey);
  for (let at = 0; at < ordered.length;) {
    // the most inputs that fit the weight limit and the fee cap: both grow with the count
    const feeOf = (k: number): bigint => feeFor(rate, weightToVsize(handoffWeight(spender, plan, k, false)));
    const fits = (k: number): boolean =>
      handoffWeight(spender, plan, k, false) <= MAX_STANDARD_TX_WEIGHT && feeOf(k) <= maxFee;
    let [low, high] = [1, ordered.length - at];
    while (low < high) {
      const mid = Math.ceil((low + high) / 2);
      if (fits(mid)) low = mid;
      else high = mid - 1;
    }
    const count = low;
    const inputs = ordered.slice(at, at + count);
    at += count;
    const fee = feeOf(inputs.length);
    const total = inputs.reduce((acc, u) => acc + u.value, 0n);
    if (fee > maxFee || total - fee < dust) {
      for (const u of inputs)
        left.push({ outpoint: `${u.txid}:${u.vout}`, reason: fee > maxFee ? 'fee_over_cap' : 'uneconomic' });
      continue;
    }
    const tx = unsignedSpend(inputs, handoffOutputs(plan, spender, total, fee));
    sweeps.push({
      kind: 'sweep',
      tx,
      prevouts: inputs,
      vsize: signedFederationVsize(spender, tx),
      fee,
      sent: total - fee,
      kept: 0n,
    });
  }
  return { sweeps, left };
}

/**
 * The test spend (issue 17, step 1): `amount` sats from the old federation to the new address,
 * the rest back to the old one, from the smallest output that covers it; the new set then
 * sweeps that output back to itself, which proves t new members can sign before anything large
 * moves. Undefined when no single output covers the amount, the fee and a change above dust.
 */
export function buildTestSpend(
  utxos: readonly SpendableUtxo[],
  amount: bigint,
  rate: FeeRate,
  plan: RotationPlan,
): HandoffTx | undefined {
  checkFeeRate(rate);
  checkTestAmount(amount, plan);
  const smallestFirst = [...utxos].sort((a, b) => (a.value === b.value ? order(a, b) : a.value < b.value ? -1 : 1));
  for (const coin of smallestFirst) {
    const test = testSpendOf([coin], amount, rate, plan);
    if (test) return test;
  }
  return undefined;
}

/**
 * One test spend that spends an input of each of `rivals` (test spends signed by different members,
 * none able to reach t: each member signs a second one only if it replaces the first), so that it
 * replaces all of them and every member may sign it (as buildMerge does for payments). Undefined
 * when all their inputs together cannot cover the amount, the fee and a change above dust.
 */
export function buildTestMerge(
  rivals: readonly (readonly SpendableUtxo[])[],
  amount: bigint,
  rate: FeeRate,
  plan: RotationPlan,
): HandoffTx | undefined {
  checkFeeRate(rate);
  checkTestAmount(amount, plan);
  return spendingEachRival(rivals, (coins) => testSpendOf(coins.sort(order), amount, rate, plan));
}

function checkTestAmount(amount: bigint, plan: RotationPlan): void {
  if (amount < dustThreshold(plan.to.scriptPubKey))
    throw new WalletError('invalid_plan', `test amount ${amount} sats is under the new address's dust limit`, {
      field: 'amount',
      value: amount.toString(),
    });
}

/** The test spend of exactly `coins`: `amount` to the new address, the rest back; undefined if they fall short. */
function testSpendOf(
  coins: readonly SpendableUtxo[],
  amount: bigint,
  rate: FeeRate,
  plan: RotationPlan,
): HandoffTx | undefined {
  const spender = plan.from;
  const fee = feeFor(rate, weightToVsize(handoffWeight(spender, plan, coins.length, true)));
  const total = coins.reduce((a, c) => a + c.value, 0n);
  if (total < amount + fee + dustThreshold(spender.scriptPubKey)) return undefined;
  const tx = unsignedSpend(coins, handoffOutputs(plan, spender, total, fee, amount));
  return {
    kind: 'test',
    tx,
    prevouts: [...coins],
    vsize: signedFederationVsize(spender, tx),
    fee,
    sent: amount,
    kept: total - fee - amount,
  };
}

/**
 * Whether a member of `spender` may sign `tx` as a handoff under `plan`, from the transaction's
 * own bytes and prevouts alone: every input a `spender` output, header fields as for payments,
 * output 0 committing to no request, every other output paying the planned address or back to
 * `spender` (and at least one the planned address), none under dust, and the fee within
 * `bounds`. A transaction to any other address is refused, whoever proposes it.
 */
export function checkHandoffTx(
  tx: Transaction,
  prevouts: readonly Prevout[],
  plan: RotationPlan,
  spender: Federation,
  bounds: HandoffFeeBounds,
): Verdict {
  planSide(plan, spender, 'spender');
  const header = checkSpendHeader(tx, spender);
  if ('ok' in header) return header;
  const { vsize } = header;
  if (prevouts.length !== tx.inputs.length)
    return reject('prevouts_mismatch', `${tx.inputs.length} inputs but ${prevouts.length} prevouts`);
  let total = 0n;
  for (const [i, input] of tx.inputs.entries()) {
    const sequence = checkSequence(input, i);
    if (sequence) return sequence;
    if (!equal(prevouts[i]!.scriptPubKey, spender.scriptPubKey))
      return reject('input_not_federation', `input ${i} does not spend ${spender.address}`, { input: i });
    total += prevouts[i]!.value;
  }
  const [commitment, ...rest] = tx.outputs;
  if (!commitment || commitment.value !== 0n || !commitsTo(commitment.scriptPubKey, []))
    return reject('bad_commitment', 'output 0 is not OP_RETURN <commitment to no request>: a handoff pays no request', {
      output: 0,
    });
  // handoffOutputs' layout: one output to the planned address, at most one back; more outputs would
  // only raise the fee a handoff may take, each handoff within the cap
  if (rest.length > 2)
    return reject(
      'unplanned_destination',
      `${rest.length} outputs after the commitment: a handoff pays the planned address ${plan.to.address} once and ${spender.address} back at most once`,
      { output: 3 },
    );
  let paid = 0n;
  for (const [k, output] of rest.entries()) {
    const o = k + 1;
    const want = k === 0 ? plan.to : spender;
    if (!equal(output.scriptPubKey, want.scriptPubKey))
      return reject(
        'unplanned_destination',
        `output ${o} pays a script that is not ${k === 0 ? 'the planned address' : 'the change back to'} ${want.address}`,
        { output: o },
      );
    if (output.value < dustThreshold(output.scriptPubKey))
      return reject('dust_output', `output ${o} pays ${output.value} sats, under its dust limit`, { output: o });
    paid += output.value;
  }
  if (handoffSent(tx, plan) === 0n)
    return reject('unplanned_destination', `no output pays the planned address ${plan.to.address}`);
  const fee = total - paid;
  if (fee < 0n) return reject('bad_change', `outputs pay ${paid} sats, more than the ${total} the inputs hold`);
  const rate = Number(fee) / vsize;
  if (rate < bounds.floor)
    return reject(
      'fee_rate_too_low',
      `fee rate ${rate.toFixed(3)} sat/vB is under this member's floor ${bounds.floor}`,
    );
  if (rate > bounds.maxRate)
    return reject(
      'fee_rate_too_high',
      `fee rate ${rate.toFixed(3)} sat/vB is over this member's cap ${bounds.maxRate}`,
    );
  if (fee > bounds.maxFee)
    return reject(
      'handoff_fee_too_high',
      `the federation would pay ${fee} sats of fee, over the cap of ${bounds.maxFee} per handoff transaction`,
    );
  return { ok: true };
}
