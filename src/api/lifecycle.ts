import type { RequestRejectReason } from '../evm/decider.js';

// What a request's state means to the user who burned the coins, in plain words, and its
// lifecycle as a timeline. Pure: the status pages only render what these return.

/**
 * Why a request was rejected. A Record over RequestRejectReason, so a reason added to the decider
 * does not compile until it has words here.
 */
export const REJECTION_WORDS: Readonly<Record<RequestRejectReason, string>> = {
  below_minimum: 'the amount is under the minimum of 0.01 BTC: these coins were burned and will not be paid',
  not_utf8: 'the address is not text (its bytes are not UTF-8): these coins were burned and cannot be paid',
  invalid_address:
    'the address has a bad checksum or is not a Bitcoin address: these coins were burned and cannot be paid',
  wrong_network: 'the address is for another Bitcoin network: these coins were burned and cannot be paid',
  unsupported_destination:
    'the address is of a type nobody can safely be paid to yet (anyone could spend it): these coins were burned and will not be paid',
  amount_overflow: 'the amount is more than 21 million BTC: these coins were burned and cannot be paid',
};

/** What each status means; a status not listed here (a newer member's) is shown as its name. */
const STATUS_WORDS: Readonly<Record<string, string>> = {
  accepted: 'valid and final on the sidechain: waiting for the next batched payment',
  batched: 'in a payment the members are signing',
  signed: 'in a payment signed by enough members: waiting to be broadcast and confirmed',
  broadcast: 'sent to the Bitcoin network: waiting for confirmations',
  paid: 'paid on Bitcoin',
  rejected: 'rejected',
  orphaned:
    'the sidechain block that held the request left the chain after the federation acted on it: the operators were alerted',
  held: 'over the per-request limit: it waits until the federation operators release it',
  rate_limited: "the federation's rolling outflow limit is reached: it will be paid when the window has room again",
};

/** The plain words for a request in `status` (rejected: for its reason). */
export function statusWords(status: string, reason?: string): string {
  if (status === 'rejected' && reason !== undefined)
    return REJECTION_WORDS[reason as RequestRejectReason] ?? `rejected (${reason})`;
  return STATUS_WORDS[status] ?? status;
}

export type StepName = 'requested' | 'final' | 'batched' | 'signatures' | 'broadcast' | 'confirmations' | 'paid';
export type StepState = 'done' | 'now' | 'todo' | 'failed';

export interface TimelineStep {
  readonly step: StepName;
  readonly state: StepState;
  readonly text: string;
  readonly at?: string;
}

/** What the timeline needs of a request. */
export interface TimelineInput {
  readonly status: string;
  readonly reason?: string;
  readonly block: number;
  readonly txHash: string;
  readonly history: readonly { readonly status: string; readonly at: string }[];
  /** The payment that carries the request now, if any (see currentPayment in status.ts). */
  readonly payment?: {
    readonly txid: string;
    readonly signatures: string;
    readonly finalized: boolean;
    readonly broadcast: boolean;
    readonly confirmations: number;
  };
  /** Whether this member has Bitcoin Core to broadcast with. */
  readonly broadcasting: boolean;
}

const FLOW = ['accepted', 'batched', 'signed', 'broadcast', 'paid'];

/** The first time the request reached `status` or a later one of the happy path. */
function reached(input: TimelineInput, status: string): string | undefined {
  const from = FLOW.indexOf(status);
  return input.history.find((h) => FLOW.indexOf(h.status) >= from)?.at;
}

function step(name: StepName, state: StepState, text: string, at?: string): TimelineStep {
  return at === undefined ? { step: name, state, text } : { step: name, state, text, at };
}

function paymentSteps(input: TimelineInput): TimelineStep[] {
  const p = input.payment;
  const paid = input.status === 'paid';
  if (!p) {
    const waiting = input.status === 'accepted' ? 'waiting for the next payment' : statusWords(input.status);
    return [
      step('batched', 'now', waiting),
      step('signatures', 'todo', 'signatures'),
      step('broadcast', 'todo', 'broadcast'),
      step('confirmations', 'todo', 'confirmations'),
      step('paid', 'todo', 'paid'),
    ];
  }
  const sent = p.broadcast || p.confirmations > 0 || paid;
  const notSent = input.broadcasting ? 'not broadcast yet' : 'not broadcast: this member has no Bitcoin Core';
  return [
    step('batched', 'done', `in payment ${p.txid}`, reached(input, 'batched')),
    step('signatures', p.finalized ? 'done' : 'now', `signatures ${p.signatures}`, reached(input, 'signed')),
    step(
      'broadcast',
      sent ? 'done' : p.finalized && input.broadcasting ? 'now' : 'todo',
      sent ? 'broadcast' : notSent,
      reached(input, 'broadcast'),
    ),
    step(
      'confirmations',
      paid ? 'done' : p.confirmations > 0 ? 'now' : 'todo',
      `${p.confirmations} confirmation${p.confirmations === 1 ? '' : 's'}`,
    ),
    step('paid', paid ? 'done' : 'todo', paid ? 'paid' : 'not paid yet', reached(input, 'paid')),
  ];
}

/** requested → final on the sidechain → batched → signatures k/t → broadcast → confirmations → paid. */
export function timeline(input: TimelineInput): TimelineStep[] {
  const requested = step('requested', 'done', `EVM block ${input.block}, transaction ${input.txHash}`);
  const ingested = input.history[0]?.at;
  if (input.status === 'rejected')
    return [requested, step('final', 'failed', statusWords(input.status, input.reason), ingested)];
  return [requested, step('final', 'done', 'final on the sidechain', ingested), ...paymentSteps(input)];
}
