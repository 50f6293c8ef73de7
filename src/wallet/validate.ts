import { equal } from '../bitcoin/bytes.js';
import type { Federation } from '../bitcoin/federation.js';
import { parseTx, txid as txidOf, type Transaction } from '../bitcoin/tx.js';
import { signedFederationVsize } from '../bitcoin/weight.js';
import { dustThreshold } from '../bitcoin/script.js';
import type { FeeRate } from './fee.js';
import { PAYMENT_SEQUENCE } from './payment.js';
import type { Proposal } from './proposal.js';
import { outpointText, type UtxoRecord } from './utxos.js';

/** Why a member refuses to sign a proposal; stable codes for logs, metrics and peers. */
export type RejectReason =
  | 'malformed_transaction'
  | 'bad_version'
  | 'bad_locktime'
  | 'bad_sequence'
  | 'prevouts_mismatch'
  | 'no_payments'
  | 'output_count_mismatch'
  | 'duplicate_request'
  | 'unknown_request'
  | 'request_not_payable'
  | 'wrong_script'
  | 'amount_too_high'
  | 'dust_output'
  | 'bad_change'
  | 'duplicate_input'
  | 'unknown_input'
  | 'input_not_federation'
  | 'input_spent'
  | 'fee_rate_too_low'
  | 'fee_rate_too_high'
  | 'double_payment'
  | 'replacement_fee_too_low';

export type Verdict = { ok: true } | { ok: false; reason: RejectReason; detail: string; input?: number; output?: number };

/** A request as this member ingested it. 'accepted' (final, valid, unpaid) can be paid; see REPLACEABLE. */
export interface KnownRequest {
  readonly status: string;
  readonly scriptPubKey: Uint8Array;
  readonly sats: bigint;
}

/** A transaction this member already signed, by the requests it pays. */
export interface SignedPayment {
  readonly txid: string;
  /** outpoints it spends, `txid:vout` */
  readonly inputs: readonly string[];
  readonly fee: bigint;
  readonly vsize: number;
  /** One of its inputs was spent by another transaction: it can never confirm and blocks nothing. */
  readonly dead: boolean;
  /** It has t signatures (this member holds it finalized): it may be in a mempool already. */
  readonly finalized: boolean;
}

/** Bitcoin Core's default incremental relay fee, sat/vB: what BIP125 rule 4 charges a replacement per vbyte. */
export const INCREMENTAL_RELAY_FEE = 1;

/** The member's own state, as far as validation needs it (a snapshot, read by the caller). */
export interface ValidationState {
  readonly federation: Federation;
  request(id: string): KnownRequest | undefined;
  utxo(outpoint: string): UtxoRecord | undefined;
  /** Transactions this member signed that pay request `id`. */
  signedPayments(id: string): readonly SignedPayment[];
  readonly minFeeRate: FeeRate;
  readonly maxFeeRate: FeeRate;
}

/** Statuses of a request whose payment is signed but not yet confirmed: it may be replaced (RBF). */
const REPLACEABLE = new Set(['batched', 'signed', 'broadcast']);

function reject(reason: RejectReason, detail: string, at: { input?: number; output?: number } = {}): Verdict {
  return { ok: false, reason, detail, ...at };
}

/**
 * Whether this member may sign `proposal`: a pure function of the proposal and the member's
 * state. It enforces SPEC §3 — every output pays exactly one final, valid, unpaid request
 * this member ingested, to its script, at most its amount; only the last output may be change,
 * to the federation; every input is an unspent federation output; header fields as specified;
 * fee rate within bounds; and no request already signed into a transaction that this one does
 * not conflict with (only a replacement may pay a request again).
 */
export function validateProposal(proposal: Proposal, state: ValidationState): Verdict {
  let tx: Transaction;
  try {
    tx = parseTx(proposal.unsignedTx);
  } catch (err) {
    return reject('malformed_transaction', (err as Error).message);
  }
  if (tx.version !== 2) return reject('bad_version', `version is ${tx.version}, expected 2`);
  if (tx.locktime !== 0) return reject('bad_locktime', `locktime is ${tx.locktime}, expected 0`);
  const fed = state.federation;

  if (proposal.prevouts.length !== tx.inputs.length) return reject('prevouts_mismatch', `${tx.inputs.length} inputs but ${proposal.prevouts.length} prevouts`);
  const spends = new Set<string>();
  for (const [i, input] of tx.inputs.entries()) {
    if (input.sequence !== PAYMENT_SEQUENCE) return reject('bad_sequence', `sequence is 0x${input.sequence.toString(16)}, expected 0xfffffffd`, { input: i });
    if (input.scriptSig.length > 0 || input.witness.length > 0) return reject('malformed_transaction', 'an unsigned proposal carries no scriptSig or witness', { input: i });
    const name = outpointText(input);
    if (spends.has(name)) return reject('duplicate_input', `${name} is spent twice`, { input: i });
    spends.add(name);
    const utxo = state.utxo(name);
    if (!utxo) return reject('unknown_input', `${name} is not a federation output this member knows`, { input: i });
    if (!equal(utxo.scriptPubKey, fed.scriptPubKey)) return reject('input_not_federation', `${name} does not pay the federation script`, { input: i });
    if (utxo.state === 'spent') return reject('input_spent', `${name} was spent by ${utxo.spentBy ?? 'a confirmed transaction'}`, { input: i });
    const prevout = proposal.prevouts[i]!;
    if (prevout.value !== utxo.value || !equal(prevout.scriptPubKey, utxo.scriptPubKey)) {
      return reject('prevouts_mismatch', `prevout ${i} says ${prevout.value} sats, this member knows ${name} as ${utxo.value} sats`, { input: i });
    }
  }

  const payments = proposal.requestIds.length;
  if (payments === 0) return reject('no_payments', 'the proposal pays no request');
  if (tx.outputs.length !== payments && tx.outputs.length !== payments + 1) {
    return reject('output_count_mismatch', `${tx.outputs.length} outputs for ${payments} requests (at most one extra output, the change)`);
  }
  const paying = new Set<string>();
  for (const [o, id] of proposal.requestIds.entries()) {
    const output = tx.outputs[o]!;
    if (paying.has(id)) return reject('duplicate_request', `request ${id} is paid twice`, { output: o });
    paying.add(id);
    const request = state.request(id);
    if (!request) return reject('unknown_request', `request ${id} is not one this member ingested as final`, { output: o });
    // a request already in a payment this member signed may be paid again only by a
    // replacement of it (checked below); paid, rejected or orphaned requests never
    const replaceable = REPLACEABLE.has(request.status) && state.signedPayments(id).length > 0;
    if (request.status !== 'accepted' && !replaceable) return reject('request_not_payable', `request ${id} is ${request.status}`, { output: o });
    if (!equal(output.scriptPubKey, request.scriptPubKey)) return reject('wrong_script', `output ${o} does not pay request ${id}'s address`, { output: o });
    if (output.value > request.sats) return reject('amount_too_high', `output ${o} pays ${output.value} sats, request ${id} is for ${request.sats}`, { output: o });
    if (output.value < dustThreshold(output.scriptPubKey)) return reject('dust_output', `output ${o} pays ${output.value} sats, under its dust limit`, { output: o });
  }
  if (tx.outputs.length === payments + 1 && !equal(tx.outputs[payments]!.scriptPubKey, fed.scriptPubKey)) {
    return reject('bad_change', 'the last output is neither a requested payment nor change to the federation', { output: payments });
  }

  const inValue = proposal.prevouts.reduce((acc, p) => acc + p.value, 0n);
  const outValue = tx.outputs.reduce((acc, o) => acc + o.value, 0n);
  if (outValue > inValue) return reject('prevouts_mismatch', `outputs (${outValue}) exceed inputs (${inValue})`);
  const fee = inValue - outValue;
  const vsize = signedFederationVsize(fed, tx);
  const rate = Number(fee) / vsize;
  if (rate < state.minFeeRate) return reject('fee_rate_too_low', `fee rate ${rate.toFixed(3)} sat/vB is under the minimum ${state.minFeeRate}`);
  if (rate > state.maxFeeRate) return reject('fee_rate_too_high', `fee rate ${rate.toFixed(3)} sat/vB is over the maximum ${state.maxFeeRate}`);

  // SPEC §3 invariant 1: pay a request again only in a transaction that conflicts with
  // (spends an input of) every live transaction this member already signed paying it; at most
  // one of such a set can ever confirm. Signing the later one is also what lets two proposals
  // that raced for the same requests both reach t. A finalized payment may already be in a
  // mempool, so it is replaced only as BIP125 allows: a higher rate, and a fee covering the
  // replaced one's plus the relay fee for its own size.
  const self = txidOf(tx);
  for (const id of paying) {
    for (const earlier of state.signedPayments(id)) {
      if (earlier.dead || earlier.txid === self) continue;
      if (!earlier.inputs.some((o) => spends.has(o))) {
        return reject('double_payment', `request ${id} is already paid by ${earlier.txid}, which this proposal does not replace (it spends none of its inputs)`);
      }
      const floor = earlier.fee + BigInt(INCREMENTAL_RELAY_FEE * vsize);
      if (earlier.finalized && (rate <= Number(earlier.fee) / earlier.vsize || fee < floor)) {
        return reject('replacement_fee_too_low', `replacing ${earlier.txid} (fee ${earlier.fee} sats, ${earlier.vsize} vB) needs a higher fee rate and a fee of at least ${floor} sats; this one pays ${fee}`);
      }
    }
  }
  return { ok: true };
}
