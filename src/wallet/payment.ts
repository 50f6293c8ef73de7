import type { Federation } from '../bitcoin/federation.js';
import { dustThreshold } from '../bitcoin/script.js';
import type { Transaction, TxOutput } from '../bitcoin/tx.js';
import {
  federationInputWeight,
  federationSpendWeight,
  MAX_STANDARD_TX_WEIGHT,
  outputWeight,
  weightToVsize,
} from '../bitcoin/weight.js';
import { rankCoins, selectRanked, type Coin, type Selection } from './coinselect.js';
import { WalletError } from './errors.js';
import { commitmentScript } from './commitment.js';
import { checkFeeRate, feeFor, feeShare, type FeeRate } from './fee.js';

/** A final, valid request waiting for payment. */
export interface PaymentRequest {
  readonly id: string;
  readonly scriptPubKey: Uint8Array;
  readonly sats: bigint;
}

export interface SpendableUtxo extends Coin {
  readonly scriptPubKey: Uint8Array;
}

export interface PaymentLimits {
  /** Outputs per transaction, change included. */
  readonly maxOutputs: number;
  /** Weight per transaction; Bitcoin Core relays nothing above 400,000 WU. */
  readonly maxWeight?: number;
  /** A peg-out whose share of the fee would exceed this waits (fee policy's cap). */
  readonly maxSharePerRequest?: bigint;
}

export interface Payment {
  readonly tx: Transaction;
  /** The spent federation outputs, in input order. */
  readonly prevouts: readonly SpendableUtxo[];
  /** Request paid by each peg-out output (outputs 1..k), in output order; change (if any) is the last output. */
  readonly requestIds: readonly string[];
  readonly vsize: number;
  /** Inputs minus outputs: the shares taken from the peg-outs, plus any change too small to keep. */
  readonly fee: bigint;
  /** What each peg-out output gave up towards the fee. */
  readonly feeShare: bigint;
  readonly change: bigint;
  readonly selection: 'bnb' | 'largest-first' | 'replacement';
}

export type DeferReason = 'dust_after_fee' | 'fee_over_cap' | 'insufficient_funds' | 'over_weight_limit';

export interface Deferred {
  readonly id: string;
  readonly reason: DeferReason;
}

export interface PaymentPlan {
  readonly payments: Payment[];
  /** Requests left for a later batch, each with its reason: nothing is dropped silently. */
  readonly deferred: Deferred[];
}

export const PAYMENT_SEQUENCE = 0xfffffffd;

/**
 * Σ inputs − Σ sats: what the federation keeps of a payment's inputs, its change (SPEC §2). A
 * payment needs it at least 0: below, the peg-outs' shares pay for outputs, not only the fee, and the
 * transaction may spend more than its inputs hold. The proposer's coin selection funds Σ sats; a
 * validator refuses less (validate.ts), an audit reports it (audit.ts).
 */
export function federationRemainder(requests: readonly Pick<PaymentRequest, 'sats'>[], inputTotal: bigint): bigint {
  return inputTotal - requests.reduce((acc, r) => acc + r.sats, 0n);
}

/**
 * The outputs of a payment of `requests`, in this order, from inputs worth `inputTotal`, each
 * peg-out bearing `share` of the fee (SPEC §2): output 0 the commitment to the requests, then
 * each request's script paid exactly `sats − share`, then the change — exactly Σ inputs − Σ sats,
 * what the federation holds minus what was burned — unless that is under the change output's
 * dust limit, when the remainder (bounded by that limit) goes to the miners. The proposer builds
 * with this function and every validator rebuilds with it and compares: one rule, not two.
 */
export function paymentOutputs(
  requests: readonly PaymentRequest[],
  inputTotal: bigint,
  share: bigint,
  federation: Federation,
): TxOutput[] {
  const change = federationRemainder(requests, inputTotal);
  const outputs: TxOutput[] = [{ value: 0n, scriptPubKey: commitmentScript(requests.map((r) => r.id)) }];
  for (const r of requests) outputs.push({ value: r.sats - share, scriptPubKey: r.scriptPubKey });
  if (change >= dustThreshold(federation.scriptPubKey))
    outputs.push({ value: change, scriptPubKey: federation.scriptPubKey });
  return outputs;
}

/**
 * Whether `output` of a payment whose fee is `fee` pays `request`: its script, at most its amount,
 * and short of it by no more than the whole fee (paymentOutputs takes one share of it from each).
 * Matched by script alone, a payment of an earlier log under the same id (the transaction re-mined
 * after an EVM reorg, its log asking another amount) was taken for a payment of this one.
 */
export function paysRequest(
  output: TxOutput,
  request: Pick<PaymentRequest, 'scriptPubKey' | 'sats'>,
  fee: bigint,
): boolean {
  return (
    Buffer.compare(output.scriptPubKey, request.scriptPubKey) === 0 &&
    output.value <= request.sats &&
    request.sats - output.value <= fee
  );
}

/** A federation spend before signing: the header fields every payment and handoff has (SPEC §2). */
export function unsignedSpend(inputs: readonly Coin[], outputs: TxOutput[]): Transaction {
  return {
    version: 2,
    locktime: 0,
    inputs: inputs.map((c) => ({
      txid: c.txid,
      vout: c.vout,
      sequence: PAYMENT_SEQUENCE,
      scriptSig: new Uint8Array(0),
      witness: [],
    })),
    outputs,
  };
}

/**
 * The most inputs a federation payment can have within `maxWeight`, counting the inputs alone: a
 * largest-first selection that needs more is too heavy however the rest is made, so a proposer
 * needs no more of the wallet's largest outputs than a few payments' worth of this.
 */
export function maxPaymentInputs(federation: Federation, maxWeight = MAX_STANDARD_TX_WEIGHT): number {
  return Math.floor(maxWeight / federationInputWeight(federation));
}

/** Size of the commitment output's script: OP_RETURN, a 32-byte push. */
const COMMITMENT_PLACEHOLDER = new Uint8Array(34);

type Attempt = { payment: Payment } | { tooHeavy: true } | { none: true };
type Selector = (
  utxos: readonly SpendableUtxo[],
  target: bigint,
  costOfChange: bigint,
) => (Pick<Selection<SpendableUtxo>, 'coins' | 'total'> & { method: Payment['selection'] }) | null;

/**
 * Turns pending requests into unsigned federation payments at `rate`.
 *
 * The fee is priced on the SIGNED size (t signatures per input, known in advance) and taken
 * from the peg-outs in equal ceil-divided shares; the federation's change is exactly the inputs
 * minus the requested amounts. A request whose output would fall under its dust limit after its
 * share waits for a later batch; dropping it changes the size and the shares, so the build
 * repeats — it ends because each repeat removes at least one request. Requests beyond the
 * output or weight limits go into further transactions with disjoint inputs.
 */
export function buildPayments(
  requests: readonly PaymentRequest[],
  utxos: readonly SpendableUtxo[],
  rate: FeeRate,
  federation: Federation,
  limits: PaymentLimits,
): PaymentPlan {
  checkFeeRate(rate);
  if (!Number.isInteger(limits.maxOutputs) || limits.maxOutputs < 3) {
    throw new WalletError(
      'invalid_proposal',
      `maxOutputs must be an integer of at least 3 (commitment, one peg-out and change), got ${limits.maxOutputs}`,
    );
  }
  const maxWeight = limits.maxWeight ?? MAX_STANDARD_TX_WEIGHT;
  const ordered = [...requests].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const seen = new Set<string>();
  for (const r of ordered) {
    if (seen.has(r.id)) throw new WalletError('invalid_proposal', `request ${r.id} appears twice`, { request: r.id });
    seen.add(r.id);
  }

  const payments: Payment[] = [];
  const deferred: Deferred[] = [];
  // ranked once for the whole plan, and kept in that order as payments take coins
  const inputCost = feeFor(rate, weightToVsize(federationInputWeight(federation)));
  let available = rankCoins(utxos, inputCost);
  const ranked: Selector = (coins, target, costOfChange) => selectRanked(coins, target, inputCost, costOfChange);
  const queue: PaymentRequest[][] = [];
  const perTx = limits.maxOutputs - 2;
  for (let i = 0; i < ordered.length; i += perTx) queue.push(ordered.slice(i, i + perTx));
  const maxShare = limits.maxSharePerRequest;

  while (queue.length > 0) {
    const batch = queue.shift()!;
    const attempt = buildOne(batch, available, rate, federation, maxWeight, deferred, ranked, maxShare);
    if ('tooHeavy' in attempt) {
      if (batch.length === 1) {
        deferred.push({ id: batch[0]!.id, reason: 'over_weight_limit' });
      } else {
        const half = Math.ceil(batch.length / 2);
        queue.unshift(batch.slice(0, half), batch.slice(half));
      }
      continue;
    }
    if ('payment' in attempt) {
      payments.push(attempt.payment);
      const used = new Set(attempt.payment.prevouts.map((p) => `${p.txid}:${p.vout}`));
      available = available.filter((u) => !used.has(`${u.txid}:${u.vout}`));
    }
  }
  return { payments, deferred };
}

/**
 * The BIP125 replacement of a payment at a higher `rate`: the same inputs, all of them (so it
 * conflicts with the original and with nothing else) and the same requests, with the fee shares
 * recomputed. Undefined when at that rate a request would fall under dust or the inputs no longer
 * cover the requests: then the original stands.
 */
export function buildReplacement(
  requests: readonly PaymentRequest[],
  inputs: readonly SpendableUtxo[],
  rate: FeeRate,
  federation: Federation,
): Payment | undefined {
  checkFeeRate(rate);
  // every request or none: inputs that cannot cover them fail at once, not after buildOne dropped the
  // requests one by one (a merge tries this for each of its rivals' inputs in turn)
  if (inputs.reduce((acc, u) => acc + u.value, 0n) < requests.reduce((acc, r) => acc + r.sats, 0n)) return undefined;
  const deferred: Deferred[] = [];
  const all: Selector = (utxos, target) => {
    const total = utxos.reduce((acc, u) => acc + u.value, 0n);
    return total >= target ? { coins: [...utxos], total, method: 'replacement' } : null;
  };
  const attempt = buildOne([...requests], inputs, rate, federation, MAX_STANDARD_TX_WEIGHT, deferred, all);
  return 'payment' in attempt && deferred.length === 0 ? attempt.payment : undefined;
}

/**
 * One payment of `requests` that spends an input of every payment in `rivals`, so that it
 * conflicts with each of them: the way out when rival payments of the same requests each hold
 * some members' signatures and none can reach t (a member signs only one of two payments of a
 * request that do not conflict). Starts from the largest input of each rival and adds their
 * other inputs, largest first, until the requests are covered. Undefined when the rivals'
 * inputs cannot pay the requests within the weight limit.
 */
export function buildMerge(
  requests: readonly PaymentRequest[],
  rivals: readonly (readonly SpendableUtxo[])[],
  rate: FeeRate,
  federation: Federation,
): Payment | undefined {
  return spendingEachRival(rivals, (coins) => buildReplacement(requests, coins, rate, federation));
}

/**
 * `build` of the largest input of each of `rivals`, then of more of their inputs, largest first,
 * until it gives a transaction: one that spends an input of every rival, so it conflicts with
 * each of them. Undefined when even all their inputs do not do.
 */
export function spendingEachRival<T>(
  rivals: readonly (readonly SpendableUtxo[])[],
  build: (coins: SpendableUtxo[]) => T | undefined,
): T | undefined {
  const name = (u: SpendableUtxo): string => `${u.txid}:${u.vout}`;
  const largestFirst = (a: SpendableUtxo, b: SpendableUtxo): number =>
    a.value === b.value ? (name(a) < name(b) ? -1 : 1) : a.value > b.value ? -1 : 1;
  const chosen = new Map<string, SpendableUtxo>();
  for (const inputs of rivals) {
    const largest = [...inputs].sort(largestFirst)[0];
    if (!largest) return undefined;
    chosen.set(name(largest), largest);
  }
  const rest = [...new Map(rivals.flat().map((u) => [name(u), u])).values()]
    .filter((u) => !chosen.has(name(u)))
    .sort(largestFirst);
  for (let next = 0; ; next++) {
    const built = build([...chosen.values()]);
    if (built) return built;
    const more = rest[next];
    if (!more) return undefined;
    chosen.set(name(more), more);
  }
}

function buildOne(
  batch: PaymentRequest[],
  utxos: readonly SpendableUtxo[],
  rate: FeeRate,
  federation: Federation,
  maxWeight: number,
  deferred: Deferred[],
  select: Selector,
  maxShare?: bigint,
): Attempt {
  const changeDust = dustThreshold(federation.scriptPubKey);
  const costOfChange = feeFor(rate, weightToVsize(outputWeight(federation.scriptPubKey)));
  let requests = batch;
  for (;;) {
    if (requests.length === 0) return { none: true };
    const target = requests.reduce((acc, r) => acc + r.sats, 0n);
    const selection = select(utxos, target, costOfChange);
    if (!selection) {
      // fund what can be funded: the last request (in id order) waits
      deferred.push({ id: requests[requests.length - 1]!.id, reason: 'insufficient_funds' });
      requests = requests.slice(0, -1);
      continue;
    }
    const change = selection.total - target;
    const keepChange = change >= changeDust;
    const scripts = [COMMITMENT_PLACEHOLDER, ...requests.map((r) => r.scriptPubKey)];
    const weight = federationSpendWeight(
      federation,
      selection.coins.length,
      keepChange ? [...scripts, federation.scriptPubKey] : scripts,
    );
    if (weight > maxWeight) return { tooHeavy: true };
    const vsize = weightToVsize(weight);
    const share = feeShare(feeFor(rate, vsize), requests.length);
    if (maxShare !== undefined && share > maxShare) {
      // more peg-outs would share the fee, but there are none in this batch: all of them wait
      for (const r of requests) deferred.push({ id: r.id, reason: 'fee_over_cap' });
      return { none: true };
    }
    const dusty = requests.filter((r) => r.sats - share < dustThreshold(r.scriptPubKey));
    if (dusty.length > 0) {
      for (const r of dusty) deferred.push({ id: r.id, reason: 'dust_after_fee' });
      requests = requests.filter((r) => !dusty.includes(r));
      continue;
    }
    const outputs = paymentOutputs(requests, selection.total, share, federation);
    const tx = unsignedSpend(selection.coins, outputs);
    const paid = outputs.reduce((acc, o) => acc + o.value, 0n);
    return {
      payment: {
        tx,
        prevouts: selection.coins,
        requestIds: requests.map((r) => r.id),
        vsize,
        fee: selection.total - paid,
        feeShare: share,
        change: keepChange ? change : 0n,
        selection: selection.method,
      },
    };
  }
}

/** The plan's payments, or a WalletError saying why there are none. */
export function requirePayments(plan: PaymentPlan, requestCount: number): Payment[] {
  if (plan.payments.length > 0) return plan.payments;
  if (requestCount === 0) throw new WalletError('no_requests', 'there are no pending requests to pay');
  const reasons = new Set(plan.deferred.map((d) => d.reason));
  if (reasons.size === 1 && reasons.has('dust_after_fee')) {
    throw new WalletError(
      'all_dust',
      `every request (${requestCount}) would be under its dust limit after its share of the fee`,
      { deferred: plan.deferred.length },
    );
  }
  throw new WalletError(
    'insufficient_funds',
    `the federation's spendable outputs cannot fund any of the ${requestCount} pending requests`,
    { deferred: plan.deferred.length },
  );
}
