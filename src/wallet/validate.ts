import { equal } from '../bitcoin/bytes.js';
import type { Federation } from '../bitcoin/federation.js';
import { dustThreshold } from '../bitcoin/script.js';
import { signedFederationVsize } from '../bitcoin/weight.js';
import { parseRequestId } from '../evm/request-id.js';
import { QUEUED } from '../evm/request-store.js';
import { commitsTo } from './commitment.js';
import { checkFee, maxAcceptedRate, type FeePolicy } from './fee.js';
import { checkLimits, type OutflowLimits } from './limits.js';
import { checkHandoffTx, handoffSent, type HandoffPolicy } from './handoff.js';
import { federationRemainder, paymentOutputs, type PaymentRequest } from './payment.js';
import type { CheckedProposal } from './proposal.js';
import { outpointText, spendableAt, utxoConfirmations, type ChainView } from './utxos.js';
import type { RequestStatus, UtxoRecord } from '../storage/records.js';
import { checkSequence, checkSpendHeader, reject, type Verdict } from './verdict.js';

export type { RejectReason, Verdict } from './verdict.js';

/** A request as this member ingested it. QUEUED ones (final, valid, unpaid) can be paid; see REPLACEABLE. */
export interface KnownRequest {
  readonly status: string;
  readonly scriptPubKey: Uint8Array;
  readonly sats: bigint;
  /** Queued here (countsInOutflow, evm/request-store.ts): its sats enter the rolling cap with this payment. */
  readonly counts: boolean;
}

/** A transaction this member already signed, by the requests it pays. */
export interface SignedPayment {
  readonly txid: string;
  /** outpoints it spends, `txid:vout` */
  readonly inputs: readonly string[];
  readonly fee: bigint;
  readonly vsize: number;
  /**
   * One of its inputs was spent by another transaction confirmed at the paid depth: it can never confirm and blocks
   * nothing.
   */
  readonly dead: boolean;
  /** It has t signatures (this member holds it finalized): it may be in a mempool already. */
  readonly finalized: boolean;
  /** Whose link brought its proposal (SignatureRecord.from); absent for one this member only knows finalized. */
  readonly from?: string;
}

/**
 * Payments of one request (or handoffs) that this member signed on the proposals of one sender and
 * that are neither finalized nor dead: past it, that sender's next one is refused. Each replaces
 * every earlier one (it spends an input of each), so none is a double payment, but sent to fewer
 * than t members none finalizes, and each costs a signature record, a txid on the request's list and
 * a read by every later proposal of the request. Counted by sender, not in all: a malicious member
 * fills only its own share and cannot pin a request against the others' proposals. An honest
 * proposer has one or two live at once (its payment, a merge of stalled rivals); a finalized payment
 * is replaced only at a BIP125 fee step, which bounds those.
 */
export const LIVE_PAYMENTS_PER_SENDER = 8;

/** Bitcoin Core's default incremental relay fee, sat/vB: what BIP125 rule 4 charges a replacement per vbyte. */
export const INCREMENTAL_RELAY_FEE = 1;

/** The member's own state, as far as validation needs it (a snapshot, read by the caller). */
export interface ValidationState {
  readonly federation: Federation;
  /** x-only key (hex) of the member whose link brought the proposal; this member's own for its own. */
  readonly sender: string;
  request(id: string): KnownRequest | undefined;
  utxo(outpoint: string): UtxoRecord | undefined;
  /**
   * Transactions this member signed that pay request `id`; one payment is the same under each request it pays
   * (checkDoublePayment judges each payment once).
   */
  signedPayments(id: string): readonly SignedPayment[];
  /**
   * The requests paid by the live payment `txid` that holds (reserved) an input, when this member signed or finalized
   * it.
   */
  holder(txid: string): readonly string[] | undefined;
  /** The finalized transactions known here that the proposal confirms only with (node/signer.ts ANCESTRY). */
  readonly ancestors: readonly Creator[];
  readonly fee: FeePolicy;
  readonly chain: ChainView | null;
  readonly limits: OutflowLimits;
  /** This member's operator released held request `id`. */
  released(id: string): boolean;
  /** The rolling-cap window of this member's tip, and the sats it already let leave in it. */
  readonly outflow: { readonly window: number; readonly used: bigint };
  /** A rotation this member takes part in, and how far it has come here. */
  readonly handoff?: HandoffView;
}

/** A finalized transaction a payment depends on (it spends its output, or an output of one that does). */
export interface Creator {
  readonly txid: string;
  /** Outpoints it spends, `txid:vout`. */
  readonly inputs: readonly string[];
}

/**
 * Whether a transaction spending `spends`, which depends on `ancestors`, can never confirm together
 * with payment `other`: it spends an input of `other`, or it depends on a transaction that does (it
 * confirms only with that one, which `other` excludes), unless it depends on `other` itself.
 */
export function excludes(
  spends: ReadonlySet<string>,
  ancestors: readonly Creator[],
  other: { readonly txid: string; readonly inputs: readonly string[] },
): boolean {
  if (other.inputs.some((o) => spends.has(o))) return true;
  if (ancestors.some((c) => c.txid === other.txid)) return false;
  const inputs = new Set(other.inputs);
  return ancestors.some((c) => c.inputs.some((o) => inputs.has(o)));
}

/** How far a member has seen the rotation come (node/handoff.ts handoffView). */
export interface HandoffProgress {
  readonly policy: HandoffPolicy;
  /** This member saw the new set spend the test spend's output. */
  readonly proven: boolean;
  /** Requests this member has queued: the old set pays them before it sweeps what would fund them. */
  readonly owed: number;
  /** This member's EVM cursor reached the block before the boundary: it has read every request it owes. */
  readonly readAll: boolean;
}

export interface HandoffView extends HandoffProgress {
  /** The handoffs this member signed or knows finalized, as the no-double-pay rule reads payments. */
  readonly earlier: readonly SignedPayment[];
}

/**
 * The handoffs of `view.earlier` that may still confirm: while one may, a test spend or the new set's
 * spend to itself must replace it (validateHandoff), and a proposer waits for it rather than propose
 * one that every member refuses. One whose input a transaction confirmed at the paid depth spent is
 * not among them, so a test spend that can never confirm holds up nothing.
 */
export function liveHandoffs(view: Pick<HandoffView, 'earlier'>): readonly SignedPayment[] {
  return view.earlier.filter((e) => !e.dead);
}

/** Statuses of a request whose payment is signed but not yet confirmed: it may be replaced (RBF). */
const REPLACEABLE = new Set(['batched', 'signed', 'broadcast']);

/**
 * Whether this member may sign `proposal`: a pure function of the proposal (parsed once, at the
 * edge) and the member's own state. It enforces SPEC §3: output 0 commits to exactly the
 * requests paid, each a final, valid, unpaid request this member ingested, each paid to its own
 * script exactly `sats − share`; change exactly Σ inputs − Σ sats to the federation, or absent
 * (paymentOutputs, the function the proposer builds with), and never negative: the inputs fund
 * every request's sats, so the shares pay the fee and nothing else; every input a federation output
 * confirmed at the spend depth that no live payment holds unless this one pays all of that
 * payment's requests; header fields as specified; the implied fee rate within this member's fee
 * policy; the outflow limits (wallet/limits.ts); the weight within what Core relays; and no
 * request already signed into a transaction that this one does not conflict with (only a
 * replacement may pay a request again).
 */
export function validateProposal(checked: CheckedProposal, state: ValidationState): Verdict {
  const { tx } = checked;
  if (checked.proposal.requestIds.length === 0 && state.handoff) return validateHandoff(checked, state, state.handoff);
  const header = checkSpendHeader(tx, state.federation);
  if ('ok' in header) return header;
  const { vsize } = header;
  // requests first: they are what the rest is checked against
  const requests = checkRequests(checked, state);
  if (!Array.isArray(requests)) return requests;
  const limited = requests.map((r) => ({
    ...r,
    released: state.released(r.id),
    counts: state.request(r.id)!.counts,
  }));
  const limitFault = checkLimits(limited, state.outflow.used, state.outflow.window, state.limits);
  if (limitFault) return reject(limitFault.reason, limitFault.detail);
  const inputs = checkInputs(checked, state);
  if ('ok' in inputs) return inputs;
  const payouts = checkOutputs(checked, state, requests, inputs.value);
  if ('ok' in payouts) return payouts;
  const fee = inputs.value - tx.outputs.reduce((acc, o) => acc + o.value, 0n);
  // the users' shares are held to the fee policy; a change remainder too small to keep also goes
  // to the miners, but it is bounded by the change output's dust limit (paymentOutputs)
  const feeFault = checkFee(BigInt(requests.length) * payouts.share, vsize, payouts.share, state.fee);
  if (feeFault) return reject(feeFault.reason, feeFault.detail);
  return checkDoublePayment(checked, state, inputs.spends, fee, vsize);
}

/**
 * A proposal that pays no request, under a rotation plan: a handoff (wallet/handoff.ts) whose
 * inputs pass the same checks as a payment's. The old set moves a test amount first and the rest
 * only once this member saw the new set spend it, and never while requests it owes are queued;
 * the new set may spend to itself at any time.
 */
function validateHandoff(checked: CheckedProposal, state: ValidationState, handoff: HandoffView): Verdict {
  const { plan, side } = handoff.policy;
  const bounds = { floor: state.fee.floor, maxRate: maxAcceptedRate(state.fee), maxFee: handoff.policy.maxFee };
  const shape = checkHandoffTx(checked.tx, checked.proposal.prevouts, plan, state.federation, bounds);
  if (!shape.ok) return shape;
  const inputs = checkInputs(checked, state);
  if ('ok' in inputs) return inputs;
  // checked last on each path: what may pass a slot later (not active, not proven yet) is refused
  // for that first, and kept to retry
  const replaces = (): Verdict => checkHandoffReplacement(checked, state, handoff, inputs) ?? { ok: true };
  // The test spend and the new set's spend to itself happen once: a later one must conflict with
  // (spend an input of) every live one this member signed or knows finalized, so at most one of
  // them confirms, as with a request's payments (checkDoublePayment). Repeating them would move
  // more than the test amount before the proof, or spend the federation's funds on fees.
  const once = (): Verdict => {
    const other = liveHandoffs(handoff).find(
      (e) => e.txid !== checked.txid && !e.inputs.some((o) => inputs.spends.has(o)),
    );
    return other
      ? reject(
          'handoff_done',
          `handoff ${other.txid} is signed or finalized here and this one does not replace it (it spends none of its inputs)`,
          { earlier: other.txid },
        )
      : replaces();
  };
  // the new set spends to itself only what the old set sent it: an output anyone else sent (a
  // coin to the new address) would take the place of the test output and stall the handoff
  if (side === 'to') {
    const foreign = checked.tx.inputs.findIndex((i) => !state.utxo(outpointText(i))?.handedOver);
    if (foreign >= 0)
      return reject(
        'not_handed_over',
        `input ${foreign} was not created by a spend of the old federation ${plan.from.address}`,
        { input: foreign },
      );
    return once();
  }
  const tip = state.chain?.tipHeight;
  if (tip === undefined || tip < plan.activationHeight)
    return reject(
      'handoff_not_active',
      `the handoff starts at block ${plan.activationHeight}; this member's tip is ${tip ?? 'unknown'}`,
    );
  const sent = handoffSent(checked.tx, plan);
  if (!handoff.proven) {
    if (sent > handoff.policy.testAmount)
      return reject(
        'handoff_not_proven',
        `it moves ${sent} sats to the new set, over the test amount ${handoff.policy.testAmount}, before this member saw the new set spend the test output`,
      );
    return once();
  }
  // after the proof only sweeps: everything to the new address, nothing back
  const back = checked.tx.outputs.findIndex((o) => equal(o.scriptPubKey, state.federation.scriptPubKey));
  if (back >= 0)
    return reject(
      'bad_change',
      `output ${back} pays the old federation back: after the proof a sweep sends everything to the new address`,
      { output: back },
    );
  if (!handoff.readAll)
    return reject(
      'requests_owed',
      `this member has not read the EVM chain up to the boundary ${plan.evmBoundary} yet: requests it owes may still come`,
    );
  if (handoff.owed > 0)
    return reject(
      'requests_owed',
      `${handoff.owed} request(s) this member owes are still queued; they are paid before the funds leave`,
    );
  return replaces();
}

/**
 * A handoff that spends an input of live earlier ones replaces them, as a request's payment does
 * (checkDoublePayment): of those, a sender has at most LIVE_PAYMENTS_PER_SENDER unfinalized here,
 * and a finalized one is replaced only at a BIP125 fee step. Sweeps after the proof may be many (of
 * other coins), so only the ones it replaces count: the fee caps then end any chain of replacements
 * of the same coins that a proposer has honest members sign.
 */
function checkHandoffReplacement(
  checked: CheckedProposal,
  state: ValidationState,
  handoff: HandoffView,
  inputs: { value: bigint; spends: ReadonlySet<string> },
): Verdict | undefined {
  const replaced = liveHandoffs(handoff).filter(
    (e) => e.txid !== checked.txid && e.inputs.some((o) => inputs.spends.has(o)),
  );
  const crowded = overLiveShare(replaced, checked.txid, state.sender, 'the handoff');
  if (crowded) return crowded;
  const vsize = signedFederationVsize(state.federation, checked.tx);
  const fee = inputs.value - checked.tx.outputs.reduce((acc, o) => acc + o.value, 0n);
  for (const earlier of replaced) {
    const fault = replacementFeeFault(earlier, fee, vsize);
    if (fault) return fault;
  }
  return undefined;
}

/** The requests paid, as this member knows them: canonical, once each, ingested, payable; output 0 commits to them. */
function checkRequests({ proposal, tx }: CheckedProposal, state: ValidationState): PaymentRequest[] | Verdict {
  const ids = proposal.requestIds;
  if (ids.length === 0) return reject('no_payments', 'the proposal pays no request');
  const identities = new Set<string>();
  const requests: PaymentRequest[] = [];
  for (const [k, id] of ids.entries()) {
    const at = { output: k + 1 };
    let identity: string;
    try {
      const { txHash, ordinal } = parseRequestId(id);
      identity = `${txHash}/${ordinal}`;
    } catch (err) {
      return reject('malformed_request_id', (err as Error).message, at);
    }
    if (identities.has(identity)) return reject('duplicate_request', `request ${id} is paid twice`, at);
    identities.add(identity);
    const request = state.request(id);
    if (!request) return reject('unknown_request', `request ${id} is not one this member ingested as final`, at);
    // a request already in a payment this member signed may be paid again only by a
    // replacement of it (checkDoublePayment); paid, rejected or orphaned requests never
    const replaceable = REPLACEABLE.has(request.status) && state.signedPayments(id).length > 0;
    if (!QUEUED.has(request.status as RequestStatus) && !replaceable)
      return reject('request_not_payable', `request ${id} is ${request.status}`, at);
    requests.push({ id, scriptPubKey: request.scriptPubKey, sats: request.sats });
  }
  if (tx.outputs.length !== ids.length + 1 && tx.outputs.length !== ids.length + 2) {
    const detail = `${tx.outputs.length} outputs for ${ids.length} requests (commitment, one per request, at most one change)`;
    return reject('output_count_mismatch', detail);
  }
  if (tx.outputs[0]!.value !== 0n || !commitsTo(tx.outputs[0]!.scriptPubKey, ids)) {
    const detail = 'output 0 is not OP_RETURN <commitment> to exactly the requests paid, in output order';
    return reject('bad_commitment', detail, { output: 0 });
  }
  return requests;
}

/**
 * Every input a deep enough, unspent federation output, once, as the proposal says, held by no payment it would
 * strand.
 */
function checkInputs(
  { proposal, tx, txid }: CheckedProposal,
  state: ValidationState,
): { spends: Set<string>; value: bigint } | Verdict {
  const spends = new Set<string>();
  let value = 0n;
  // each holder checked once: a replacement of a payment of many requests spends many of its inputs
  const paid = new Set(proposal.requestIds);
  const cleared = new Set<string>();
  for (const [i, input] of tx.inputs.entries()) {
    const at = { input: i };
    const sequence = checkSequence(input, i);
    if (sequence) return sequence;
    const name = outpointText(input);
    if (spends.has(name)) return reject('duplicate_input', `${name} is spent twice`, at);
    spends.add(name);
    const utxo = state.utxo(name);
    if (!utxo) return reject('unknown_input', `${name} is not a federation output this member knows`, at);
    if (!equal(utxo.scriptPubKey, state.federation.scriptPubKey)) {
      return reject('input_not_federation', `${name} does not pay the federation script`, at);
    }
    if (utxo.state === 'spent')
      return reject('input_spent', `${name} was spent by ${utxo.spentBy ?? 'a confirmed transaction'}`, at);
    if (!spendableAt(utxo, state.chain)) {
      const detail = `${name} has ${utxoConfirmations(utxo, state.chain!)} confirmations, under the ${state.chain!.spendDepth} a federation output needs before it is spent`;
      return reject('input_unconfirmed', detail, at);
    }
    const prevout = proposal.prevouts[i]!;
    if (prevout.value !== utxo.value || !equal(prevout.scriptPubKey, utxo.scriptPubKey)) {
      return reject(
        'prevouts_mismatch',
        `prevout ${i} says ${prevout.value} sats, this member knows ${name} as ${utxo.value} sats`,
        at,
      );
    }
    // SPEC §3, invariant 5: an input a live payment holds is taken only by a payment of all that
    // payment's requests (a replacement or a merge), so no request is stranded with it
    const holder = utxo.reservedBy && utxo.reservedBy !== txid ? utxo.reservedBy : undefined;
    if (holder && !cleared.has(holder)) {
      const stranded = state.holder(holder)?.filter((id) => !paid.has(id)) ?? [];
      if (stranded.length > 0) {
        const detail = `${name} is held by payment ${holder}, whose requests ${stranded.join(', ')} this proposal does not pay`;
        // the holder is named, so that the proposer can be shown it and merge it (as with double_payment)
        return reject('input_held', detail, { ...at, earlier: holder });
      }
      cleared.add(holder);
    }
    value += utxo.value;
  }
  return { spends, value };
}

/** The outputs, byte for byte what paymentOutputs makes of these requests and inputs at the share output 1 implies. */
function checkOutputs(
  { proposal, tx }: CheckedProposal,
  state: ValidationState,
  requests: readonly PaymentRequest[],
  inValue: bigint,
): { share: bigint } | Verdict {
  const ids = proposal.requestIds;
  const share = requests[0]!.sats - tx.outputs[1]!.value;
  if (share < 0n) {
    return reject('wrong_amount', `output 1 pays ${tx.outputs[1]!.value} sats, more than request ${ids[0]} is for`, {
      output: 1,
    });
  }
  const remainder = federationRemainder(requests, inValue);
  if (remainder < 0n) {
    const burned = inValue - remainder;
    return reject(
      'bad_change',
      `the inputs hold ${inValue} sats, less than the ${burned} its requests burned: the change Σ inputs − Σ requested would be ${remainder}`,
    );
  }
  const expected = paymentOutputs(requests, inValue, share, state.federation);
  for (const [o, want] of expected.entries()) {
    const got = tx.outputs[o];
    const payout = o <= ids.length;
    if (!got)
      return reject(
        'bad_change',
        `the change of ${want.value} sats (Σ inputs − Σ requested) to the federation is missing`,
        { output: o },
      );
    if (!equal(got.scriptPubKey, want.scriptPubKey)) {
      const detail = payout
        ? `output ${o} does not pay request ${ids[o - 1]}'s address`
        : `output ${o} is not change to the federation`;
      return reject(payout ? 'wrong_script' : 'bad_change', detail, { output: o });
    }
    if (got.value !== want.value) {
      const why = payout
        ? ` (request ${ids[o - 1]} for ${requests[o - 1]!.sats} less the same fee share ${share} as every output)`
        : ' (Σ inputs − Σ requested)';
      return reject(
        payout ? 'wrong_amount' : 'bad_change',
        `output ${o} pays ${got.value} sats, expected exactly ${want.value}${why}`,
        { output: o },
      );
    }
    if (o > 0 && payout && want.value < dustThreshold(want.scriptPubKey)) {
      return reject('dust_output', `output ${o} pays ${want.value} sats, under its dust limit`, { output: o });
    }
  }
  if (tx.outputs.length !== expected.length) {
    const detail = `${tx.outputs.length - expected.length} output(s) beyond the commitment, the peg-outs and the change`;
    return reject('bad_change', detail, { output: expected.length });
  }
  return { share };
}

/**
 * The refusal when `sender` already has LIVE_PAYMENTS_PER_SENDER of `earlier` (the payments of one
 * request, or the handoffs) live and not finalized here, this transaction not among them.
 */
function overLiveShare(
  earlier: readonly SignedPayment[],
  txid: string,
  sender: string,
  what: string,
): Verdict | undefined {
  const live = earlier.filter((e) => e.from === sender && !e.dead && !e.finalized && e.txid !== txid).length;
  if (live < LIVE_PAYMENTS_PER_SENDER) return undefined;
  return reject(
    'too_many_payments',
    `${sender} already had this member sign ${live} payments of ${what} that are neither finalized nor dead (at most ${LIVE_PAYMENTS_PER_SENDER} a sender)`,
  );
}

/**
 * SPEC §3 invariant 1: pay a request again only in a transaction that conflicts with (spends an
 * input of) every live transaction this member already signed paying it; at most one of such a
 * set can ever confirm. Signing the later one is also what lets two proposals that raced for the
 * same requests both reach t. A finalized one is replaced only at a BIP125 fee step (replacementFeeFault).
 */
function checkDoublePayment(
  { proposal, txid }: CheckedProposal,
  state: ValidationState,
  spends: ReadonlySet<string>,
  fee: bigint,
  vsize: number,
): Verdict {
  // each earlier payment judged once: a replacement of a payment of many requests finds it on each one's list
  const judged = new Set<string>();
  for (const id of proposal.requestIds) {
    const crowded = overLiveShare(state.signedPayments(id), txid, state.sender, `request ${id}`);
    if (crowded) return crowded;
    for (const earlier of state.signedPayments(id)) {
      if (earlier.dead || earlier.txid === txid || judged.has(earlier.txid)) continue;
      judged.add(earlier.txid);
      // only a direct conflict can meet the earlier one in a mempool: BIP125 applies to it
      if (earlier.inputs.some((o) => spends.has(o))) {
        const fault = replacementFeeFault(earlier, fee, vsize);
        if (fault) return fault;
        continue;
      }
      if (excludes(spends, state.ancestors, earlier)) continue;
      const detail = `request ${id} is already paid by ${earlier.txid}, which this proposal does not replace (it spends none of its inputs, nor depends on a finalized transaction that does)`;
      return reject('double_payment', detail, { earlier: earlier.txid });
    }
  }
  return { ok: true };
}

/**
 * A finalized transaction may already be in a mempool, so it is replaced only as BIP125 allows: a
 * higher rate, and a fee covering the replaced one's plus the relay fee for the replacement's own size.
 */
function replacementFeeFault(earlier: SignedPayment, fee: bigint, vsize: number): Verdict | undefined {
  if (!earlier.finalized) return undefined;
  const floor = earlier.fee + BigInt(INCREMENTAL_RELAY_FEE * vsize);
  if (Number(fee) / vsize > Number(earlier.fee) / earlier.vsize && fee >= floor) return undefined;
  const detail = `replacing ${earlier.txid} (fee ${earlier.fee} sats, ${earlier.vsize} vB) needs a higher fee rate and a fee of at least ${floor} sats; this one pays ${fee}`;
  return reject('replacement_fee_too_low', detail);
}
