import { equal, toHex } from '../bitcoin/bytes.js';
import type { Federation } from '../bitcoin/federation.js';
import { dustThreshold } from '../bitcoin/script.js';
import type { Prevout, Transaction } from '../bitcoin/tx.js';
import { signedFederationVsize, txWeight, weightToVsize } from '../bitcoin/weight.js';
import { PegoutError } from '../errors.js';
import { matchCommitment, readCommitment, requestCommitment } from './commitment.js';
import { federationRemainder, PAYMENT_SEQUENCE, paymentOutputs } from './payment.js';

// The auditor's view of a federation payment (SPEC §2 "Payment commitment", docs/payment-format.md):
// from the transaction and the sidechain's logs alone, which requests it pays and whether it pays
// each one exactly. Pure; `pegout audit` (src/cli/audit.ts) fetches what it reads.

export type AuditCode =
  | 'no_commitment'
  | 'commitment_mismatch'
  | 'duplicate_request'
  | 'request_not_payable'
  | 'payout_inexact'
  | 'change_inexact'
  | 'input_not_federation'
  | 'bad_layout'
  // found by the command while gathering what it audits
  | 'no_match'
  | 'unknown_request'
  | 'prevouts_unsigned'
  // the reserve audit (wallet/reserves.ts, `pegout reserves`)
  | 'reserves_short'
  | 'reserves_mismatch';

/**
 * A payment that is not what the federation's rules make of its requests, a request that is not
 * there, or reserves that do not cover what the federation owes or are not what Bitcoin Core holds.
 */
export class AuditError extends PegoutError<AuditCode> {
  readonly domain = 'audit';
}

/** A request as the sidechain's logs show it. */
export interface AuditRequest {
  /** Canonical id (src/evm/request-id.ts); a non-canonical one throws. */
  readonly id: string;
  /** floor(wei / 10^10): what the federation owes before the request's share of the fee. */
  readonly sats: bigint;
  /** The script its address decodes to; absent when the request is not payable. */
  readonly scriptPubKey?: Uint8Array;
  /** Why the federation must not pay it (rejected by the rules, or a log that does not decode). */
  readonly notPayable?: string;
}

export interface PaymentMatch<R extends AuditRequest> {
  /** The requests outputs 1..k pay, in output order. */
  readonly requests: readonly R[];
  /** What each of them bears of the fee. */
  readonly share: bigint;
}

/** How many complete assignments matchPayment hashes before it gives up. */
export const DEFAULT_MAX_TRIES = 100_000;

/**
 * The payable `candidates` that `tx`'s commitment names, in output order: outputs 1..k each pay a
 * candidate's script exactly `sats − share` with one share for all, and the hash over their ids
 * equals output 0. Candidates alike in script and amount are tried in id order first (how the
 * proposer orders them), then at most `maxTries` assignments. Undefined when none matches.
 */
export function matchPayment<R extends AuditRequest>(
  tx: Transaction,
  candidates: readonly R[],
  maxTries = DEFAULT_MAX_TRIES,
): PaymentMatch<R> | undefined {
  const payable = candidates.filter(
    (c): c is R & { scriptPubKey: Uint8Array } => c.scriptPubKey !== undefined && c.notPayable === undefined,
  );
  const ids = matchCommitment(tx.outputs, payable, maxTries);
  if (ids === undefined || ids.length === 0) return undefined;
  const byId = new Map(payable.map((c) => [c.id, c]));
  const requests = ids.map((id) => byId.get(id)!);
  return { requests, share: requests[0]!.sats - tx.outputs[1]!.value };
}

export interface AuditFault {
  readonly code: AuditCode;
  /** One line naming the output or input, the value found and the value expected. */
  readonly message: string;
  readonly output?: number;
  readonly input?: number;
}

export interface PayoutAudit<R extends AuditRequest> {
  readonly output: number;
  readonly request: R;
  /** Undefined when the transaction has no such output. */
  readonly paid: bigint | undefined;
  /** sats − paid: what this output gave up towards the fee. */
  readonly share: bigint | undefined;
  readonly exact: boolean;
}

export interface ChangeAudit {
  /** Index of the change output, undefined when there is none. */
  readonly output: number | undefined;
  readonly value: bigint | undefined;
  /** Whether the input values and the federation were known, so the change could be checked. */
  readonly checked: boolean;
  /** Σ inputs − Σ requested when that is at least the change output's dust limit; undefined for none, or unchecked. */
  readonly expected: bigint | undefined;
}

export interface CommitmentAudit {
  /** What output 0 commits to; undefined when it is no commitment. */
  readonly committed: Uint8Array | undefined;
  /** What the requests, in output order, hash to. */
  readonly expected: Uint8Array;
  readonly matches: boolean;
}

export interface PaymentAudit<R extends AuditRequest> {
  readonly commitment: CommitmentAudit;
  /** The share most payouts bear; every exact payout bears it. */
  readonly share: bigint | undefined;
  readonly payouts: readonly PayoutAudit<R>[];
  readonly change: ChangeAudit;
  readonly requested: bigint;
  readonly inputTotal: bigint | undefined;
  /** Σ inputs − Σ outputs, when the input values are known. */
  readonly fee: bigint | undefined;
  /** The transaction's virtual size, or for an unsigned one the size it will have with t signatures per input. */
  readonly vsize: number | undefined;
  /** Empty when the payment is exactly what the rules make of its requests. */
  readonly faults: readonly AuditFault[];
}

/** The fee share most outputs bear (ties: the earlier output's), over outputs that pay their request's script. */
function commonShare(tx: Transaction, requests: readonly AuditRequest[]): bigint | undefined {
  const counts = new Map<bigint, number>();
  requests.forEach((r, i) => {
    const out = tx.outputs[i + 1];
    if (out && r.scriptPubKey && r.notPayable === undefined && equal(out.scriptPubKey, r.scriptPubKey)) {
      counts.set(r.sats - out.value, (counts.get(r.sats - out.value) ?? 0) + 1);
    }
  });
  let best: bigint | undefined;
  for (const [share, count] of counts) if (best === undefined || count > counts.get(best)!) best = share;
  return best;
}

const NO_SCRIPT = new Uint8Array(0);

type Fault = (code: AuditCode, message: string, at?: { output?: number; input?: number }) => void;

function checkHeader(tx: Transaction, fault: Fault): void {
  if (tx.version !== 2) fault('bad_layout', `version is ${tx.version}, expected 2`);
  if (tx.locktime !== 0) fault('bad_layout', `locktime is ${tx.locktime}, expected 0`);
  tx.inputs.forEach((input, i) => {
    if (input.sequence === PAYMENT_SEQUENCE) return;
    fault('bad_layout', `input ${i} has sequence 0x${input.sequence.toString(16)}, expected 0xfffffffd`, { input: i });
  });
}

function checkCommitment(tx: Transaction, ids: readonly string[], fault: Fault): CommitmentAudit {
  const first = tx.outputs[0];
  const committed = first ? readCommitment(first.scriptPubKey) : undefined;
  const expected = requestCommitment(ids);
  const matches = committed !== undefined && equal(committed, expected);
  if (committed === undefined) {
    const script = first ? toHex(first.scriptPubKey) : 'absent';
    fault('no_commitment', `output 0 is not OP_RETURN <32 bytes> (script ${script})`, { output: 0 });
  } else if (!matches) {
    const paid = `the ${ids.length} request(s) in output order hash to ${toHex(expected)}`;
    fault('commitment_mismatch', `output 0 commits to ${toHex(committed)}, but ${paid}`, { output: 0 });
  }
  if (first && first.value !== 0n) {
    fault('bad_layout', `output 0 (the commitment) carries ${first.value} sats, expected 0: they are burned`, {
      output: 0,
    });
  }
  return { committed, expected, matches };
}

/** What is wrong with output `output` as the payout of `request` (given the share most outputs bear), if anything. */
function payoutProblem(
  tx: Transaction,
  output: number,
  request: AuditRequest,
  share: bigint | undefined,
  paidEarlierBy: number | undefined,
): [AuditCode, string] | undefined {
  const { id, sats } = request;
  const out = tx.outputs[output];
  if (paidEarlierBy !== undefined) {
    return ['duplicate_request', `request ${id} is paid by output ${paidEarlierBy} and again by output ${output}`];
  }
  if (request.notPayable !== undefined) {
    return ['request_not_payable', `output ${output}: request ${id} must not be paid: ${request.notPayable}`];
  }
  if (out === undefined) {
    return [
      'payout_inexact',
      `output ${output} for request ${id} is missing: the transaction has ${tx.outputs.length} outputs`,
    ];
  }
  const wanted = request.scriptPubKey ?? NO_SCRIPT;
  if (!equal(out.scriptPubKey, wanted)) {
    return [
      'payout_inexact',
      `output ${output} pays script ${toHex(out.scriptPubKey)}, not request ${id}'s script ${toHex(wanted)}`,
    ];
  }
  if (sats - out.value !== share) {
    const bears = sats - out.value;
    const expected = `expected the ${share} the other outputs bear`;
    return [
      'payout_inexact',
      `output ${output} pays ${out.value} sats for request ${id} of ${sats}: a fee share of ${bears}, ${expected}`,
    ];
  }
  const dust = dustThreshold(out.scriptPubKey);
  if (out.value < dust) {
    return [
      'payout_inexact',
      `output ${output} pays ${out.value} sats, under its dust limit of ${dust}: request ${id} should have waited`,
    ];
  }
  return undefined;
}

function auditPayouts<R extends AuditRequest>(
  tx: Transaction,
  requests: readonly R[],
  share: bigint | undefined,
  fault: Fault,
): PayoutAudit<R>[] {
  if (share !== undefined && share < 0n) {
    fault(
      'payout_inexact',
      `the payouts bear a fee share of ${share} sats: they pay more than requested, from the federation's funds`,
    );
  }
  const firstOutput = new Map<string, number>();
  return requests.map((request, i) => {
    const output = i + 1;
    const paid = tx.outputs[output]?.value;
    const problem = payoutProblem(tx, output, request, share, firstOutput.get(request.id));
    if (!firstOutput.has(request.id)) firstOutput.set(request.id, output);
    if (problem) fault(problem[0], problem[1], { output });
    const exact = problem === undefined && share !== undefined && share >= 0n;
    return { output, request, paid, share: paid === undefined ? undefined : request.sats - paid, exact };
  });
}

/**
 * The change against the federation: whose it is when the federation is known, and the inputs and
 * its value when what they hold is known too.
 */
function auditChange(
  tx: Transaction,
  requests: readonly AuditRequest[],
  share: bigint | undefined,
  federation: Federation | undefined,
  prevouts: readonly Prevout[] | undefined,
  fault: Fault,
): ChangeAudit {
  const changeAt = requests.length + 1;
  const change = tx.outputs[changeAt];
  const output = change === undefined ? undefined : changeAt;
  if (tx.outputs.length > changeAt + 1) {
    const extra = tx.outputs.length - changeAt - 1;
    const layout = 'a payment has the commitment, one output per request and at most one change';
    fault('bad_layout', `${extra} output(s) after the change: ${layout}`, { output: changeAt + 1 });
  }
  const fedScript = federation && toHex(federation.scriptPubKey);
  const at = { output: changeAt };
  if (federation !== undefined && change !== undefined && !equal(change.scriptPubKey, federation.scriptPubKey))
    fault(
      'change_inexact',
      `output ${changeAt} (change) pays script ${toHex(change.scriptPubKey)}, not the federation's ${fedScript}`,
      at,
    );
  if (federation === undefined || prevouts === undefined)
    return { output, value: change?.value, checked: false, expected: undefined };
  prevouts.forEach((p, i) => {
    if (equal(p.scriptPubKey, federation.scriptPubKey)) return;
    const message = `input ${i} spends ${p.value} sats from script ${toHex(p.scriptPubKey)}, not the federation's ${fedScript}`;
    fault('input_not_federation', message, { input: i });
  });
  const inputTotal = prevouts.reduce((acc, p) => acc + p.value, 0n);
  const remainder = federationRemainder(requests, inputTotal);
  const requested = inputTotal - remainder;
  const asPaid = requests.map((r) => ({ id: r.id, sats: r.sats, scriptPubKey: r.scriptPubKey ?? NO_SCRIPT }));
  // the proposer's own rule decides whether there is change and how much, dust limit included
  const expected = paymentOutputs(asPaid, inputTotal, share ?? 0n, federation)[changeAt]?.value;
  const rule = `Σ inputs ${inputTotal} − Σ requested ${requested}`;
  if (remainder < 0n) {
    const subsidy = `the peg-outs' shares pay ${-remainder} sats that are no fee`;
    fault('change_inexact', `the inputs hold ${inputTotal} sats, less than the ${requested} requested: ${subsidy}`);
  } else if (expected !== undefined && change === undefined) {
    fault('change_inexact', `the change of ${expected} sats (${rule}) to the federation is missing`, at);
  } else if (expected === undefined && change !== undefined) {
    const dust = dustThreshold(federation.scriptPubKey);
    const none = `${rule} = ${remainder} is under the change dust limit of ${dust}: there is no change`;
    fault('change_inexact', `output ${changeAt} pays ${change.value} sats as change, but ${none}`, at);
  } else if (expected !== undefined && change !== undefined && change.value !== expected) {
    fault(
      'change_inexact',
      `output ${changeAt} (change) pays ${change.value} sats, expected exactly ${expected} (${rule})`,
      at,
    );
  }
  return { output, value: change?.value, checked: true, expected };
}

/**
 * Checks `tx` as the payment of `requests` in this output order (SPEC §2): version 2, locktime 0,
 * every sequence 0xfffffffd; output 0 `OP_RETURN <commitment>` to exactly these requests, worth
 * nothing; output i pays request i's script exactly `sats − share`, one share for all, not under
 * its dust limit; no output after the change. With the input values and the federation it also
 * checks the inputs spend the federation and the change is exactly Σ inputs − Σ requested (or
 * absent under its dust limit), with the function the proposer builds with (paymentOutputs).
 */
export function auditPayment<R extends AuditRequest>(
  tx: Transaction,
  requests: readonly R[],
  context: { readonly federation?: Federation; readonly prevouts?: readonly Prevout[] } = {},
): PaymentAudit<R> {
  const { federation, prevouts } = context;
  const faults: AuditFault[] = [];
  const fault: Fault = (code, message, at = {}) => void faults.push({ code, message, ...at });

  checkHeader(tx, fault);
  const commitment = checkCommitment(
    tx,
    requests.map((r) => r.id),
    fault,
  );
  const share = commonShare(tx, requests);
  const payouts = auditPayouts(tx, requests, share, fault);
  const change = auditChange(tx, requests, share, federation, prevouts, fault);

  const inputTotal = prevouts?.reduce((acc, p) => acc + p.value, 0n);
  const outputTotal = tx.outputs.reduce((acc, o) => acc + o.value, 0n);
  const signed = tx.inputs.some((i) => i.witness.length > 0);
  return {
    commitment,
    share,
    payouts,
    change,
    requested: requests.reduce((acc, r) => acc + r.sats, 0n),
    inputTotal,
    fee: inputTotal === undefined ? undefined : inputTotal - outputTotal,
    vsize: signed ? weightToVsize(txWeight(tx)) : federation ? signedFederationVsize(federation, tx) : undefined,
    faults,
  };
}
