import type { Federation } from '../bitcoin/federation.js';
import { parseTx, spendFee } from '../bitcoin/tx.js';
import { signedFederationVsize } from '../bitcoin/weight.js';
import { storedConfirmations, storedTipHeight } from '../chain/observer.js';
import {
  AWAITING_FINAL,
  countsInOutflow,
  paymentsOfRequests,
  QUEUED,
  requestsOf,
  stagePaymentOf,
  stageStatus,
} from '../evm/request-store.js';
import { parseRequestId, tryParseRequestId, type RequestIdentity } from '../evm/request-id.js';
import * as stages from '../metrics/stages.js';
import {
  finalizedKey,
  handoffTxKey,
  holdKey,
  openPaymentKey,
  signatureMadeKey,
  supersededKey,
} from '../storage/keys.js';
import type { Store, StoreBatch, StoreReader } from '../storage/store.js';
import type { SigningPool } from '../signing/pool.js';
import type { FeePolicy } from '../wallet/fee.js';
import type { HandoffPolicy } from '../wallet/handoff.js';
import { overRequestLimit, type OutflowLimits } from '../wallet/limits.js';
import { stageProposal, type CheckedProposal } from '../wallet/proposal.js';
import { getUtxos, outpointText, parseOutpoint, type ChainView, type Outpoint } from '../wallet/utxos.js';
import {
  validateProposal,
  type Creator,
  type HandoffView,
  type KnownRequest,
  type RejectReason,
  type SignedPayment,
  type ValidationState,
} from '../wallet/validate.js';
import type { FinalizedRecord, RequestRecord, SignatureRecord, Supersession, UtxoRecord } from '../storage/records.js';
import { stageOutflow, windowOutflow } from './outflow.js';
import { isPaused } from './safety.js';
import { handoffTxids, handoffView } from './handoff.js';

// The transaction signer: validates a proposal against this member's own state, signs it, and
// records what it signed BEFORE the signatures can leave the process (SPEC §3, invariant 2).

/** The member's own rules for what it signs, read fresh for every proposal. */
export interface SigningPolicy {
  readonly fee: FeePolicy;
  /** Confirmations a federation output needs before it is spent. */
  readonly spendDepth: number;
  /** Confirmations at which a payment counts as paid, and a payment that lost to it as dead. */
  readonly paidDepth: number;
  readonly limits: OutflowLimits;
  /** This member's x-only key, hex: whose holds releases count as its operator's. */
  readonly self: string;
  /** The rotation this member takes part in (config `rotation`), if any. */
  readonly handoff?: HandoffPolicy;
}

/**
 * `work`: the rows the check read that the proposal's own size does not tell: the earlier payments of
 * its requests that its sender sent, the payments holding its inputs and their finalized ancestors
 * (each payment's record and each of its inputs; a holder's requests' records and payment lists):
 * what its sender is charged on top (Coordinator, COORDINATOR_CAPS.proposalWork).
 */
export type SignOutcome =
  | { ok: true; txid: string; signatures: Uint8Array; already: boolean; work?: number }
  | { ok: false; reason: RejectReason; detail: string; earlier?: string; work?: number };

/**
 * What this member signed or knows finalized as txid: its inputs, requests, fee and size. The
 * requests of a finalized one are all that its commitment names, those not ingested here yet
 * (FinalizedRecord.unmatched) included: a payment taking its input must pay them too (input_held).
 */
async function paymentRecord(
  reader: StoreReader,
  txid: string,
): Promise<{
  record?: Pick<SignatureRecord, 'inputs' | 'requestIds' | 'fee' | 'vsize' | 'from'>;
  finalized: boolean;
}> {
  const [made, final] = await reader.getMany<SignatureRecord | FinalizedRecord>([
    signatureMadeKey(txid),
    finalizedKey(txid),
  ]);
  const f = final as FinalizedRecord | undefined;
  const record =
    (made as SignatureRecord | undefined) ??
    (f && {
      inputs: parseTx(f.tx).inputs.map(outpointText),
      requestIds: f.committed ?? [...f.requestIds, ...Object.keys(f.unmatched)],
      fee: f.fee,
      vsize: f.vsize,
    });
  return { ...(record ? { record } : {}), finalized: f !== undefined };
}

/**
 * The requests payment `txid` holds its inputs for (wallet/validate.ts input_held): every one a
 * finalized payment commits to (it can still confirm), and for one only signed, all but those a
 * finalized payment sharing none of its inputs pays. Taking its input strands none of those (should
 * that payment lose, they are queued again), and the coordinator, merging only payments of requests
 * still awaiting one, would never merge the holder with a payment that needs the input. A finalized
 * payment it shares an input with is one it replaced: taking the input takes that one's too.
 * `rows`: what the answer read, in SignOutcome.work's units (a payment's record and each of its
 * inputs, a request's record, a request's payment list).
 */
async function heldFor(store: Store, txid: string): Promise<{ held?: readonly string[]; rows: number }> {
  const { record, finalized } = await paymentRecord(store, txid);
  if (!record) return { rows: 1 };
  let rows = 1 + record.inputs.length;
  if (finalized) return { held: record.requestIds, rows };
  const identities = record.requestIds.map(parseRequestId);
  const records = await requestsOf(store, identities);
  const settled = record.requestIds.flatMap((_, i) =>
    records[i] && !AWAITING_FINAL.has(records[i].status) ? [i] : [],
  );
  const lists = await paymentsOfRequests(
    store,
    settled.map((i) => identities[i]!),
  );
  rows += identities.length + settled.length;
  const inputs = new Set(record.inputs);
  const paidApart = new Set<number>();
  for (const [k, i] of settled.entries())
    for (const other of lists[k]!.filter((x) => x !== txid)) {
      const f = await store.get<FinalizedRecord>(finalizedKey(other));
      const spends = f && parseTx(f.tx).inputs;
      rows += 1 + (spends?.length ?? 0);
      if (spends && !spends.some((o) => inputs.has(outpointText(o)))) {
        paidApart.add(i);
        break;
      }
    }
  return { held: record.requestIds.filter((_, i) => !paidApart.has(i)), rows };
}

/**
 * Whether a transaction conflicting with payment `txid` (spending one of `inputs`) killed it: only a
 * conflict confirmed at the paid depth does (at one confirmation a reorg could still bring the
 * payment back, and paying its requests again would pay them twice). Without a chain (declared
 * funding) none does: a payment that a conflicting finalized one spent here may still reach t (the
 * members that signed the other may have signed it too, as its replacement) and be finalized after.
 */
async function killedByConflict(
  store: Store,
  txid: string,
  inputs: readonly string[],
  chain: ChainView | null,
  paidDepth: number,
): Promise<boolean> {
  if (!chain) return false;
  for (const u of await getUtxos(store, inputs.map(parseOutpoint))) {
    if (u?.state !== 'spent' || u.spentBy === txid || !u.spentBy) continue;
    if ((await storedConfirmations(store, u.spentBy)) >= paidDepth) return true;
  }
  return false;
}

/**
 * What signedPayments found, kept until the store's next write (Store.writes) for the same chain view
 * and paid depth: a proposal's check reads every earlier payment of the requests it names (with a chain
 * each of their inputs' records), and those another member sent are charged to no one (an honest
 * proposer must not pay for a malicious member's), so a peer naming such a request again and again
 * made this member read them again each time. A refused proposal writes nothing.
 */
interface PaymentMemo {
  readonly writes: number;
  readonly tipHeight: number | undefined;
  readonly paidDepth: number;
  readonly payments: Map<string, SignedPayment | null>;
  /** The inputs of the payments kept, what their memory grows with. */
  inputs: number;
}

/** The inputs of the payments a memo keeps (about 100 bytes each); past it, it starts again. */
const MEMO_INPUTS = 100_000;

const memos = new WeakMap<Store, PaymentMemo>();

function memoOf(store: Store, chain: ChainView | null, paidDepth: number): PaymentMemo {
  const memo = memos.get(store);
  if (
    memo &&
    memo.writes === store.writes &&
    memo.tipHeight === chain?.tipHeight &&
    memo.paidDepth === paidDepth &&
    memo.inputs < MEMO_INPUTS
  )
    return memo;
  const fresh = { writes: store.writes, tipHeight: chain?.tipHeight, paidDepth, payments: new Map(), inputs: 0 };
  memos.set(store, fresh);
  return fresh;
}

/**
 * Transactions this member signed, or knows finalized, that pay request `id`. One counts as dead
 * once a conflicting transaction killed it (killedByConflict), or once another payment of one of
 * its requests with none of its inputs, finalized, can no longer lose (finalize.ts supersession):
 * without a chain at once (a finalized payment is never killed there), with one at the paid depth.
 * Before that the other may still lose, honest members then sign this one, and this member's
 * signatures on it are out: a payment of its other requests must still conflict with it.
 */
export async function signedPayments(
  store: Store,
  txids: readonly string[],
  chain: ChainView | null,
  paidDepth: number,
): Promise<SignedPayment[]> {
  const memo = memoOf(store, chain, paidDepth);
  const out: SignedPayment[] = [];
  for (const txid of txids) {
    let payment = memo.payments.get(txid);
    if (payment === undefined) {
      payment = await signedPayment(store, txid, chain, paidDepth);
      memo.payments.set(txid, payment);
      memo.inputs += 1 + (payment?.inputs.length ?? 0);
    }
    if (payment) out.push(payment);
  }
  return out;
}

async function signedPayment(
  store: Store,
  txid: string,
  chain: ChainView | null,
  paidDepth: number,
): Promise<SignedPayment | null> {
  const { record, finalized } = await paymentRecord(store, txid);
  if (!record) return null;
  let dead = await killedByConflict(store, txid, record.inputs, chain, paidDepth);
  const supersession = dead ? undefined : await store.get<Supersession>(supersededKey(txid));
  if (supersession) dead = chain ? (await storedConfirmations(store, supersession.by)) >= paidDepth : true;
  return {
    txid,
    inputs: record.inputs,
    fee: record.fee,
    vsize: record.vsize,
    dead,
    finalized,
    ...(record.from === undefined ? {} : { from: record.from }),
  };
}

/**
 * How far this member has seen a rotation come, with the handoffs it signed or knows finalized as
 * the no-double-pay rule reads payments: what it validates a handoff against, and what its proposer
 * reads before proposing one (handoff.ts handoffProposals).
 */
export async function handoffState(
  store: Store,
  handoff: HandoffPolicy,
  chain: ChainView | null,
  paidDepth: number,
): Promise<HandoffView> {
  return {
    ...(await handoffView(store, handoff)),
    earlier: await signedPayments(store, await handoffTxids(store), chain, paidDepth),
  };
}

/** This member's view of the chain from its store: null before any block (or without Bitcoin Core). */
export async function chainView(reader: StoreReader, spendDepth: number): Promise<ChainView | null> {
  const tipHeight = await storedTipHeight(reader);
  return tipHeight === undefined ? null : { tipHeight, spendDepth };
}

/**
 * What the signer read for a proposal: exactly the state validation needs, and the records and
 * payment lists of its requests (well-formed ids only) it came from, which the record of what was
 * signed reuses: inside the exclusive section nothing changes them in between.
 */
interface SignerReads {
  readonly state: ValidationState;
  /** What each request id names, undefined where it is not well-formed. */
  readonly identities: readonly (RequestIdentity | undefined)[];
  readonly records: readonly (RequestRecord | undefined)[];
  readonly payments: ReadonlyMap<string, readonly string[]>;
  /** See SignOutcome. */
  readonly work: number;
  /** The payments whose inputs it takes over (SignatureRecord.replaced); set once it is staged. */
  readonly replaced?: readonly string[];
}

/** Request records read at a time by requestsUntilUnknown. */
const REQUEST_CHUNK = 128;

/**
 * The records of `identities`, in order, read a chunk at a time and only up to the chunk holding the
 * first well-formed id this member has no record of: a proposal naming thousands of requests nobody
 * ingested (each a new transaction, so nothing kept about an earlier one helps) costs a chunk.
 */
async function requestsUntilUnknown(
  store: Store,
  identities: readonly (RequestIdentity | undefined)[],
): Promise<(RequestRecord | undefined)[]> {
  const records: (RequestRecord | undefined)[] = [];
  for (let from = 0; from < identities.length; from += REQUEST_CHUNK) {
    const chunk = identities.slice(from, from + REQUEST_CHUNK);
    const read = await requestsOf(store, chunk);
    records.push(...read);
    if (read.some((r, i) => r === undefined && chunk[i] !== undefined)) break;
  }
  return records;
}

/** A request as validation sees it: a valid one (it has the script it is paid to), from its record. */
function knownRequest(record: RequestRecord, scriptPubKey: Uint8Array): KnownRequest {
  return { status: record.status, scriptPubKey, sats: record.sats, counts: countsInOutflow(record) };
}

/**
 * The proposal's inputs as this member knows them, the payments holding them and the finalized ones
 * that made them; `rows`: what reading the holders and the ancestors cost (SignOutcome.work's units),
 * which the proposal's size does not tell: one input of a large payment reads all of it.
 */
async function readInputs(
  store: Store,
  tx: CheckedProposal['tx'],
): Promise<{
  utxos: Map<string, UtxoRecord>;
  holders: Map<string, readonly string[]>;
  ancestors: Creator[];
  rows: number;
}> {
  const utxos = new Map<string, UtxoRecord>();
  const holders = new Map<string, readonly string[]>();
  const read = new Set<string>();
  let rows = 0;
  const inputs = await getUtxos(store, tx.inputs);
  for (const [i, input] of tx.inputs.entries()) {
    const u = inputs[i];
    if (!u) continue;
    utxos.set(outpointText(input), u);
    if (u.state === 'reserved' && u.reservedBy && !read.has(u.reservedBy)) {
      read.add(u.reservedBy);
      const { held, rows: cost } = await heldFor(store, u.reservedBy);
      rows += cost;
      if (held) holders.set(u.reservedBy, held);
    }
  }
  const ancestors = await finalizedAncestors(store, tx.inputs);
  for (const a of ancestors) rows += 1 + a.inputs.length;
  return { utxos, holders, ancestors, rows };
}

/**
 * How far back a payment's finalized ancestors are read (the transactions it confirms only with):
 * `depth` generations, at most `records` of them. Fewer make excludes() refuse more, never less.
 */
export const ANCESTRY = { depth: 4, records: 64 };

/** The finalized transactions known here that spending `outpoints` depends on, each once (ANCESTRY). */
export async function finalizedAncestors(reader: StoreReader, outpoints: readonly Outpoint[]): Promise<Creator[]> {
  const found = new Map<string, Creator>();
  let next = [...new Set(outpoints.map((o) => o.txid))];
  for (let depth = 0; depth < ANCESTRY.depth && next.length > 0; depth++) {
    next = next.filter((txid) => !found.has(txid)).slice(0, ANCESTRY.records - found.size);
    const records = await reader.getMany<FinalizedRecord>(next.map(finalizedKey));
    const parents: string[] = [];
    for (const [i, txid] of next.entries()) {
      const f = records[i];
      if (!f) continue;
      const inputs = parseTx(f.tx).inputs;
      found.set(txid, { txid, inputs: inputs.map(outpointText) });
      parents.push(...inputs.map((o) => o.txid));
    }
    next = [...new Set(parents)];
  }
  return [...found.values()];
}

/** The signer's reads for `checked`, from the store. */
async function readForSigning(
  store: Store,
  federation: Federation,
  checked: CheckedProposal,
  policy: SigningPolicy,
  sender: string,
): Promise<SignerReads> {
  const { proposal, tx } = checked;
  const chain = await chainView(store, policy.spendDepth);
  const requests = new Map<string, KnownRequest>();
  const signed = new Map<string, SignedPayment[]>();
  const identities = proposal.requestIds.map(tryParseRequestId);
  const records = await requestsUntilUnknown(store, identities);
  for (const [i, id] of proposal.requestIds.entries()) {
    const record = records[i];
    if (record?.scriptPubKey) requests.set(id, knownRequest(record, record.scriptPubKey));
  }
  // a malformed id is refused by the validator itself, and so is the first one this member lacks:
  // the ids after it were not read, and validation never gets to them
  const wellFormed = proposal.requestIds.slice(0, records.length).flatMap((id, i) => {
    const identity = identities[i];
    return identity ? [{ id, identity }] : [];
  });
  const lists = await paymentsOfRequests(
    store,
    wellFormed.map((r) => r.identity),
  );
  const payments = new Map(wellFormed.map(({ id }, i) => [id, lists[i]!]));
  // each payment once: a payment of a thousand requests is on each of their lists, and its records
  // (its transaction, its request list) read for each would cost a proposal naming them a million ids
  const distinct = [...new Set([...payments.values()].flat())];
  const known = new Map(
    (await signedPayments(store, distinct, chain, policy.paidDepth)).map((p) => [p.txid, p] as const),
  );
  for (const [id, txids] of payments)
    signed.set(
      id,
      txids.flatMap((txid) => known.get(txid) ?? []),
    );
  const released = new Set<string>();
  for (const [i, id] of proposal.requestIds.entries()) {
    const record = records[i];
    if (!record || !overRequestLimit(record.sats, policy.limits)) continue;
    const { txHash, ordinal } = identities[i]!;
    if ((await store.get(holdKey(txHash, ordinal, policy.self))) !== undefined) released.add(id);
  }
  const outflow = await windowOutflow(store, policy.limits);
  const { utxos, holders, ancestors, rows } = await readInputs(store, tx);
  const handoff =
    policy.handoff && proposal.requestIds.length === 0
      ? await handoffState(store, policy.handoff, chain, policy.paidDepth)
      : undefined;
  // of the earlier payments of its requests, only what the sender's own cost: an honest proposal naming
  // a request a malicious member pinned with payments of its own must not pay for them. The holders
  // and ancestors of its inputs it pays for whoever made them: each is read once a proposal and is at
  // most a payment's size, and an honest proposal spends a held input only to replace or merge its holder
  const work = [...known.values(), ...(handoff?.earlier ?? [])]
    .filter((p) => p.from === sender)
    .reduce((a, p) => a + 1 + p.inputs.length, rows);
  const state: ValidationState = {
    ...(handoff ? { handoff } : {}),
    federation,
    sender,
    request: (id) => requests.get(id),
    utxo: (name) => utxos.get(name),
    signedPayments: (id) => signed.get(id) ?? [],
    holder: (txid) => holders.get(txid),
    ancestors,
    fee: policy.fee,
    chain,
    limits: policy.limits,
    released: (id) => released.has(id),
    outflow,
  };
  return { state, identities, records, payments, work };
}

/**
 * Validates and signs a checked proposal. Runs inside the store's exclusive section, so no other
 * signing or reservation interleaves between the check and the record. The record (what was
 * signed, which requests it pays, the proposal and its input reservations, the requests moved
 * to 'batched') is written with sync before the signatures are returned. Signing the same
 * transaction again returns the recorded signatures. `from` is the x-only key of the member whose
 * link brought the proposal (this member's own for its own), what LIVE_PAYMENTS_PER_SENDER counts
 * by: never the proposal's own proposer field, a label its sender wrote.
 */
export async function signProposal(
  store: Store,
  pool: SigningPool,
  federation: Federation,
  checked: CheckedProposal,
  policy: SigningPolicy,
  from: string,
  now: () => string = () => new Date().toISOString(),
): Promise<SignOutcome> {
  return store.transaction(async (batch): Promise<SignOutcome> => {
    const staged = await stages.timeAsync('validation', () =>
      validateAndStage(store, batch, federation, checked, policy, from),
    );
    if ('refused' in staged) return staged.refused;
    const signatures = await pool.signTransaction(checked.tx, checked.proposal.prevouts);
    stages.time('validation', () => stageSigned(batch, federation, checked, signatures, now(), staged));
    return { ok: true, txid: checked.txid, signatures, already: false, work: staged.work };
  });
}

/**
 * The signer's checks before it signs, and the proposal staged with its reservations; the outcome
 * instead when it must not sign (refused, or signed before).
 */
async function validateAndStage(
  store: Store,
  batch: StoreBatch,
  federation: Federation,
  checked: CheckedProposal,
  policy: SigningPolicy,
  from: string,
): Promise<{ refused: SignOutcome } | SignerReads> {
  const { tx, txid } = checked;
  const existing = await store.get<SignatureRecord>(signatureMadeKey(txid));
  if (existing) {
    // its set again, for a proposer collecting it; one that can no longer finalize (superseded, or
    // lost to a conflicting payment) is no reason for anyone to have this member send it again
    if (await store.get(openPaymentKey(txid)))
      return { refused: { ok: true, txid, signatures: existing.signatures, already: true } };
    const detail = `this member signed ${txid} before, and it can no longer be finalized`;
    return { refused: { ok: false, reason: 'payment_closed', detail } };
  }
  const paused = await isPaused(store);
  if (paused) {
    const why = paused.reasons.map((r) => `${r.kind}: ${r.detail}`).join('; ');
    return { refused: { ok: false, reason: 'paused', detail: `this member is paused since ${paused.since} (${why})` } };
  }
  const reads = await readForSigning(store, federation, checked, policy, from);
  const verdict = validateProposal(checked, reads.state);
  if (!verdict.ok) return { refused: { ...verdict, work: reads.work } };
  // inputs reserved by earlier proposals this one replaces (it spends them) move to it; the records
  // are the ones validation read, which nothing changed since inside the exclusive section and which
  // the batch, with nothing staged yet, would read too
  const current = tx.inputs.map((input) => reads.state.utxo(outpointText(input)));
  const replacing = new Set<string>();
  for (const u of current) if (u?.state === 'reserved' && u.reservedBy) replacing.add(u.reservedBy);
  await stageProposal(batch, checked, { replacing: [...replacing], current });
  return { ...reads, replaced: [...replacing] };
}

/**
 * The record of what was signed (written with the proposal, synced, before the signatures leave),
 * from the records validation read: it refused duplicate and unknown ids, so each request is staged
 * once, from its current record.
 */
function stageSigned(
  batch: StoreBatch,
  federation: Federation,
  { proposal, tx, txid }: CheckedProposal,
  signatures: Uint8Array,
  at: string,
  { state, identities, records, payments, replaced }: SignerReads,
): void {
  batch.put(signatureMadeKey(txid), {
    txid,
    inputs: tx.inputs.map(outpointText),
    requestIds: [...proposal.requestIds],
    signatures,
    fee: spendFee(tx, proposal.prevouts),
    vsize: signedFederationVsize(federation, tx),
    at,
    from: state.sender,
    ...(replaced && replaced.length > 0 ? { replaced } : {}),
  } satisfies SignatureRecord);
  const added = proposal.requestIds.reduce((a, id, i) => (state.request(id)!.counts ? a + records[i]!.sats : a), 0n);
  stageOutflow(batch, state.outflow, added);
  batch.put(openPaymentKey(txid), 1);
  // a handoff (it pays no request) counts from the moment it is signed: a second one must replace it
  if (proposal.requestIds.length === 0) batch.put(handoffTxKey(txid), 1);
  for (const [i, id] of proposal.requestIds.entries()) {
    // validation refused every id not well-formed
    stagePaymentOf(batch, identities[i]!, payments.get(id)!, txid);
    const request = records[i];
    if (request && QUEUED.has(request.status)) stageStatus(batch, request, 'batched', at, `in payment ${txid}`);
  }
}
