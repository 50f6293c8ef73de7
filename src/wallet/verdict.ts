import type { Federation } from '../bitcoin/federation.js';
import type { Transaction, TxInput } from '../bitcoin/tx.js';
import { MAX_STANDARD_TX_WEIGHT, signedFederationVsize } from '../bitcoin/weight.js';
import { PAYMENT_SEQUENCE } from './payment.js';

// What a member answers when asked to sign a federation spend, and the rules every such spend
// shares (SPEC §2: version 2, locktime 0, RBF-signalling inputs, relayable once signed), whether
// it is a payment (validate.ts) or a rotation's handoff (handoff.ts).

/** Why a member refuses to sign a proposal; stable codes for logs, metrics and peers. */
export type RejectReason =
  | 'malformed_transaction'
  | 'malformed_request_id'
  | 'too_large'
  | 'bad_version'
  | 'bad_locktime'
  | 'bad_sequence'
  | 'prevouts_mismatch'
  | 'no_payments'
  | 'output_count_mismatch'
  | 'duplicate_request'
  | 'unknown_request'
  | 'request_not_payable'
  | 'bad_commitment'
  | 'wrong_script'
  | 'wrong_amount'
  | 'dust_output'
  | 'bad_change'
  | 'duplicate_input'
  | 'unknown_input'
  | 'input_not_federation'
  | 'input_spent'
  | 'input_unconfirmed'
  | 'input_held'
  | 'fee_rate_too_low'
  | 'fee_rate_too_high'
  | 'fee_share_too_high'
  | 'double_payment'
  | 'too_many_payments'
  | 'replacement_fee_too_low'
  | 'request_held'
  | 'rate_limited'
  | 'paused'
  | 'unplanned_destination'
  | 'handoff_fee_too_high'
  | 'handoff_not_active'
  | 'handoff_not_proven'
  | 'handoff_done'
  | 'not_handed_over'
  | 'requests_owed'
  | 'payment_closed';

/**
 * Refusals that say this member has not yet seen what the proposer saw: a request final a moment
 * earlier there, the activation block of a handoff, or the new set's spend of the test output that
 * proves it. Members follow both chains on their own, so such a proposal is kept and tried again.
 */
export const BEHIND: ReadonlySet<RejectReason> = new Set([
  'unknown_request',
  'handoff_not_active',
  'handoff_not_proven',
]);

/**
 * `earlier`: with double_payment, the payment this member signed that the proposal does not replace;
 * with input_held, the payment that holds the input.
 */
export type Verdict =
  { ok: true } | { ok: false; reason: RejectReason; detail: string; input?: number; output?: number; earlier?: string };

export function reject(
  reason: RejectReason,
  detail: string,
  at: { input?: number; output?: number; earlier?: string } = {},
): Verdict {
  return { ok: false, reason, detail, ...at };
}

/** The header of a federation spend, and its signed size within what Bitcoin Core relays; its vsize when so. */
export function checkSpendHeader(tx: Transaction, federation: Federation): Verdict | { vsize: number } {
  if (tx.version !== 2) return reject('bad_version', `version is ${tx.version}, expected 2`);
  if (tx.locktime !== 0) return reject('bad_locktime', `locktime is ${tx.locktime}, expected 0`);
  const vsize = signedFederationVsize(federation, tx);
  if (vsize * 4 > MAX_STANDARD_TX_WEIGHT)
    return reject(
      'too_large',
      `signed, it would weigh about ${vsize * 4} WU, over the ${MAX_STANDARD_TX_WEIGHT} WU that Bitcoin Core relays`,
    );
  return { vsize };
}

/** Input `i` signals RBF as every federation spend's inputs do; undefined when so. */
export function checkSequence(input: TxInput, i: number): Verdict | undefined {
  return input.sequence === PAYMENT_SEQUENCE
    ? undefined
    : reject('bad_sequence', `sequence is 0x${input.sequence.toString(16)}, expected 0xfffffffd`, { input: i });
}
