import type { Federation } from '../bitcoin/federation.js';
import { parseTx, type Transaction } from '../bitcoin/tx.js';
import { signedFederationVsize } from '../bitcoin/weight.js';
import { storedConfirmations, storedTipHeight } from '../chain/observer.js';
import {
  AWAITING_FINAL,
  countsInOutflow,
  getRequest,
  getRequests,
  requestsOf,
  paymentsOfRequest,
  paymentsOfRequests,
  stagePaymentOf,
  stageStatus,
} from '../evm/request-store.js';
import { parseRequestId } from '../evm/request-id.js';
import * as stages from '../metrics/stages.js';
import * as keys from '../storage/keys.js';
import type { Store, StoreBatch, StoreReader } from '../storage/store.js';
import { stageOutflowNow } from './outflow.js';
import { finalizedAncestors } from './signer.js';
import { standingPayments } from './standing.js';
import type { OutflowLimits } from '../wallet/limits.js';
import { paysRequest } from '../wallet/payment.js';
import { proposalsSpending } from '../wallet/proposal.js';
import { excludes, type Creator } from '../wallet/validate.js';
import {
  getUtxos,
  outpointText,
  parseOutpoint,
  reclaimUtxos,
  releaseUtxos,
  reserveUtxos,
  type Outpoint,
} from '../wallet/utxos.js';
import type {
  FinalizedBody,
  FinalizedRecord,
  RequestRecord,
  SignatureRecord,
  Supersession,
  UtxoRecord,
} from '../storage/records.js';

// Recording a finalized payment: the one place where a payment with t signatures (finalized
// here, received from a peer, or found confirmed on the chain) enters this member's records.

const sum = (values: readonly bigint[]): bigint => values.reduce((a, v) => a + v, 0n);

/**
 * Payments this member signed that `txid` (finalized, paying the requests of `paymentsOf`, each
 * with the payments of it this member held before, from `inputs`; none of them spent by another
 * transaction) supersedes: each pays one of its requests and spends none of its inputs. Such a
 * payment cannot reach t signatures while `txid` stands: its quorum and this one's would share an
 * honest member, who signs a second payment of a request only when it conflicts with the first, or
 * when the first lost. So it is marked (signer.ts counts it dead once `txid` can no longer lose) and
 * its inputs go back to the wallet now: left reserved, they would block every later payment
 * (input_held), save those a finalized payment it replaced still spends: that one can still confirm,
 * and a payment of other requests from them would conflict with it (standingPayments). Its other
 * requests go back to the queue only once `txid` is `settled` (without a chain at once, with one at
 * the paid depth: stageSupersededAtDepth); if `txid` loses first, it is in flight again (stageRevived).
 */
async function stageSupersededBy(
  store: Store,
  batch: StoreBatch,
  txid: string,
  paymentsOf: ReadonlyMap<string, readonly string[]>,
  spends: { inputs: ReadonlySet<string>; ancestors: readonly Creator[] },
  at: string,
  settled: boolean,
  paidDepth: number,
): Promise<string[]> {
  const superseded: string[] = [];
  let standing: Awaited<ReturnType<typeof standingPayments>> | undefined;
  // each payment once: one of a thousand requests is on each of their lists
  const considered = new Set<string>([txid]);
  for (const payments of paymentsOf.values()) {
    for (const other of payments) {
      if (considered.has(other)) continue;
      considered.add(other);
      if (await batch.get(keys.supersededKey(other))) continue;
      const made = await batch.get<SignatureRecord>(keys.signatureMadeKey(other));
      // one it excludes (directly, or through a finalized ancestor) lost to it rather: it may still reach t, as a
      // member signs the two; a payment known finalized here is never treated as one that cannot finish
      if (!made || excludes(spends.inputs, spends.ancestors, { txid: other, inputs: made.inputs })) continue;
      if (await batch.get(keys.finalizedKey(other))) continue;
      superseded.push(other);
      batch.put(keys.supersededKey(other), { by: txid, at } satisfies Supersession);
      batch.del(keys.openPaymentKey(other));
      await releaseUtxos(batch, made.inputs.map(parseOutpoint), other);
      standing ??= await standingPayments(store, paidDepth, [txid]);
      await standing.held(other, made.inputs.map(parseOutpoint), made.requestIds);
      if (settled) await stageQueuedAgain(store, batch, other, made, paymentsOf, [other, ...superseded], txid, at);
    }
  }
  await standing?.reclaim(batch);
  return superseded;
}

/**
 * The requests of `other`, superseded by `txid` (paying `paymentsOf`'s), back to the queue once `txid`
 * can no longer lose: until then `other` may still reach t (signer.ts signedPayments counts it live),
 * and a payment of them must conflict with it, so they stay batched. Only those no other payment this
 * member signed still pays.
 */
async function stageQueuedAgain(
  store: Store,
  batch: StoreBatch,
  other: string,
  made: SignatureRecord,
  paymentsOf: ReadonlyMap<string, readonly string[]>,
  except: readonly string[],
  txid: string,
  at: string,
): Promise<void> {
  for (const rid of made.requestIds) {
    const r = paymentsOf.has(rid) ? undefined : await getRequest(batch, rid);
    if (r?.status === 'batched' && !(await signedElsewhere(store, batch, rid, except)))
      stageStatus(batch, r, 'accepted', at, `payment ${other} superseded by ${txid}`);
  }
}

/** What `tx` spends, as `excludes` reads it: its inputs and the finalized transactions it depends on. */
async function spendsOf(
  reader: StoreReader,
  tx: Transaction,
): Promise<{ inputs: ReadonlySet<string>; ancestors: readonly Creator[] }> {
  return { inputs: new Set(tx.inputs.map(outpointText)), ancestors: await finalizedAncestors(reader, tx.inputs) };
}

/**
 * What `record` supersedes once it is paid at depth (stageSupersededBy): one that had lost an input
 * to a shallower spend when it was recorded superseded nothing then, and a reorganisation may have
 * let it confirm after all. The payments of its requests this member signed can then never reach t.
 */
export async function stageSupersededAtDepth(
  store: Store,
  batch: StoreBatch,
  record: FinalizedRecord,
  at: string,
  paidDepth: number,
): Promise<void> {
  const ids = record.committed ?? record.requestIds;
  const lists = await paymentsOfRequests(batch, ids.map(parseRequestId));
  const paymentsOf = new Map(ids.map((id, k) => [id, lists[k]!]));
  const tx = parseTx(record.tx);
  const spends = await spendsOf(batch, tx);
  const superseded = await stageSupersededBy(store, batch, record.txid, paymentsOf, spends, at, true, paidDepth);
  // those it superseded before (as stored: re-pointed ones too) are dead for good now: their other
  // requests are queued again
  const stored = (await batch.get<FinalizedRecord>(keys.finalizedKey(record.txid))) ?? record;
  for (const other of stored.superseded ?? []) {
    const [supersession, made] = await batch.getMany<unknown>([
      keys.supersededKey(other),
      keys.signatureMadeKey(other),
    ]);
    if ((supersession as Supersession | undefined)?.by !== record.txid || made === undefined) continue;
    await stageQueuedAgain(
      store,
      batch,
      other,
      made as SignatureRecord,
      paymentsOf,
      [other, ...superseded],
      record.txid,
      at,
    );
  }
}

/**
 * Whether a payment this member signed, other than `except`, still pays request `id`: in flight
 * (open/: not superseded, lost or paid) and none of its inputs spent by another transaction, so
 * its request is not queued again beside it.
 */
export async function signedElsewhere(
  store: Store,
  batch: StoreBatch,
  id: string,
  except: readonly string[],
): Promise<boolean> {
  for (const txid of await paymentsOfRequest(store, parseRequestId(id))) {
    if (except.includes(txid)) continue;
    const [made, open] = await batch.getMany<unknown>([keys.signatureMadeKey(txid), keys.openPaymentKey(txid)]);
    if (made === undefined || open === undefined) continue;
    const inputs = (made as SignatureRecord).inputs.map(parseOutpoint);
    if ((await getUtxos(batch, inputs)).every((u) => u?.state !== 'spent' || u.spentBy === txid)) return true;
  }
  return false;
}

/** What settlement judges of a payment `record` superseded, now that `record` lost (stageRevived). */
export type RevivalJudgement =
  | { readonly dead: true }
  /**
   * A finalized payment that can still confirm pays one of its requests and spends none of its inputs;
   * `settled`: it can no longer lose (at the paid depth).
   */
  | { readonly supersededBy: string; readonly settled: boolean }
  | { readonly live: true };

/**
 * Undoes what `record` superseded when it was recorded (stageSupersededBy), now that it lost:
 * honest members may sign those payments once it is dead, so they can reach t again. Each is judged
 * first (`judge`): one a conflict killed stays as it is; one that another finalized payment, still
 * standing, supersedes now is marked superseded by that one (and revived when that one loses);
 * the others are in flight here again, with those of their inputs nothing else took and their
 * requests queued since. Returns those.
 */
export async function stageRevived(
  store: Store,
  batch: StoreBatch,
  record: FinalizedRecord,
  at: string,
  judge: (txid: string, made: SignatureRecord) => Promise<RevivalJudgement>,
): Promise<string[]> {
  const revived: string[] = [];
  for (const txid of record.superseded ?? []) {
    const [supersession, signed] = await batch.getMany<unknown>([
      keys.supersededKey(txid),
      keys.signatureMadeKey(txid),
    ]);
    if ((supersession as Supersession | undefined)?.by !== record.txid || signed === undefined) continue;
    const made = signed as SignatureRecord;
    const judged = await judge(txid, made);
    if ('dead' in judged) continue;
    if ('supersededBy' in judged) {
      const by = await batch.get<FinalizedRecord>(keys.finalizedKey(judged.supersededBy));
      if (!by) continue;
      batch.put(keys.supersededKey(txid), { by: by.txid, at } satisfies Supersession);
      batch.put(keys.finalizedKey(by.txid), { ...by, superseded: [...(by.superseded ?? []), txid] });
      if (judged.settled) await stageQueuedAgain(store, batch, txid, made, new Map(), [txid], by.txid, at);
      continue;
    }
    revived.push(txid);
    batch.del(keys.supersededKey(txid));
    batch.put(keys.openPaymentKey(txid), 1);
    await reclaimUtxos(batch, made.inputs.map(parseOutpoint), txid);
    for (const id of made.requestIds) {
      const r = await getRequest(batch, id);
      if (r?.status === 'accepted') stageStatus(batch, r, 'batched', at, `payment ${txid} again: ${record.txid} lost`);
    }
  }
  return revived;
}

/** A payment of open/ and its records: it finalized if it is, else what this member signed of it. */
export interface OpenPayment {
  readonly txid: string;
  /** Read only for a payment not finalized. */
  readonly made: SignatureRecord | undefined;
  readonly finalized: FinalizedRecord | undefined;
}

/** Payments whose records openPayments reads at a time. */
const OPEN_CHUNK = 100;

/**
 * The payments a restart picks up again (open/: signed and not finalized, superseded or lost, or
 * finalized and not settled), with their records, a chunk at a time. The coordinator's recovery and
 * settlement read these instead of every signature and finalized record ever written: a restart
 * costs what is in flight, not the member's history.
 */
export async function* openPayments(store: Store): AsyncIterable<OpenPayment> {
  const txids = (await store.keys({ prefix: keys.SPACES.openPayment })).map((k) =>
    k.slice(keys.SPACES.openPayment.length),
  );
  for (let from = 0; from < txids.length; from += OPEN_CHUNK) {
    const chunk = txids.slice(from, from + OPEN_CHUNK);
    const finalized = await store.getMany<FinalizedRecord>(chunk.map(keys.finalizedKey));
    // what this member signed matters only while the payment is not finalized
    const unfinalized = chunk.filter((_, i) => finalized[i] === undefined);
    const made = new Map(
      (await store.getMany<SignatureRecord>(unfinalized.map(keys.signatureMadeKey))).map((r, i) => [
        unfinalized[i]!,
        r,
      ]),
    );
    for (const [i, txid] of chunk.entries()) yield { txid, made: made.get(txid), finalized: finalized[i] };
  }
}

/**
 * Whether a finalized payment is still to follow (settlement) and to announce to peers that link
 * (coordinator): a request of it not yet paid; or, for a handoff, which pays none so that only its
 * depth tells, fewer than `paidDepth` confirmations.
 */
export async function isUnsettled(reader: StoreReader, record: FinalizedRecord, paidDepth: number): Promise<boolean> {
  if (record.requestIds.length === 0) return (await storedConfirmations(reader, record.txid)) < paidDepth;
  return (await getRequests(reader, record.requestIds)).some((r) => r && r.status !== 'paid');
}

/** What recording a finalized payment reads of the member's policy. */
export interface FinalizeRules {
  /** The rolling cap its requests' first payment counts against. */
  readonly limits: OutflowLimits;
  /** Confirmations at which a payment is paid: what judges whether a payment can still confirm. */
  readonly paidDepth: number;
}

/**
 * Records a finalized payment in one synced batch: the signed transaction, its requests moved
 * to 'signed' (only those whose output pays the request's own script: a peer's list is not
 * trusted beyond what the signatures and the commitment prove), the request→payment index the
 * no-double-pay check reads, and its inputs reserved by it; proposals that held any of its
 * inputs are its conflicts (they lose once it confirms). `body.requestIds` must be what output 0
 * commits to (both callers check it). Undefined when it was recorded before.
 */
export async function recordFinalized(
  store: Store,
  federation: Federation,
  txid: string,
  signed: Transaction,
  body: FinalizedBody,
  detail: string,
  rules: FinalizeRules,
): Promise<FinalizedRecord | undefined> {
  return store.transaction((batch) =>
    stages.timeAsync('finalize_record', () =>
      stageFinalized(store, federation, batch, txid, signed, body, detail, rules),
    ),
  );
}

/** recordFinalized's batch: undefined when the payment was recorded before. */
async function stageFinalized(
  store: Store,
  federation: Federation,
  batch: StoreBatch,
  txid: string,
  signed: Transaction,
  body: FinalizedBody,
  detail: string,
  rules: FinalizeRules,
): Promise<FinalizedRecord | undefined> {
  if (await store.get(keys.finalizedKey(txid))) return undefined;
  const at = new Date().toISOString();
  const requestIds: string[] = [];
  const fee = sum(body.prevouts.map((p) => p.value)) - sum(signed.outputs.map((o) => o.value));
  const unmatched: Record<string, number> = {};
  // every record and list in two reads; `current` holds what this batch staged since, as a read
  // through the batch would see it (a request named twice sees its first change)
  const identities = body.requestIds.map(parseRequestId);
  const records = await requestsOf(batch, identities);
  const lists = await paymentsOfRequests(batch, identities);
  // the payments of each request this member signed or knows final, before this one: the list is
  // written only where this one is not in it yet (a signer has it from signing), and the
  // supersession check below reads the same lists
  const paymentsOf = new Map(body.requestIds.map((id, k) => [id, lists[k]!]));
  const current = new Map<string, { r: RequestRecord | undefined; payments: readonly string[] }>();
  // requests in no payment here before enter the rolling cap
  let firstPaid = 0n;
  // output k + 1 pays the k-th committed request
  for (const [k, id] of body.requestIds.entries()) {
    let { r, payments } = current.get(id) ?? { r: records[k], payments: lists[k]! };
    const output = signed.outputs[k + 1];
    if (!r && output) {
      // not ingested here yet: committed by a transaction t members signed, so it is indexed
      // now and no other payment of it is signed meanwhile; matched once it is ingested
      current.set(id, { r, payments: stagePaymentOf(batch, identities[k]!, payments, txid) });
      unmatched[id] = k + 1;
      continue;
    }
    if (r?.scriptPubKey && output && paysRequest(output, { scriptPubKey: r.scriptPubKey, sats: r.sats }, fee)) {
      requestIds.push(id);
      if (countsInOutflow(r)) firstPaid += r.sats;
      payments = stagePaymentOf(batch, identities[k]!, payments, txid);
      if (AWAITING_FINAL.has(r.status)) r = stageStatus(batch, r, 'signed', at, detail);
    }
    current.set(id, { r, payments });
  }
  const utxos = await getUtxos(batch, signed.inputs);
  const conflicts = new Set<string>();
  const held: { input: Outpoint; u: UtxoRecord }[] = [];
  for (const [i, input] of signed.inputs.entries()) {
    const u = utxos[i];
    if (u?.reservedBy && u.reservedBy !== txid) conflicts.add(u.reservedBy);
    // a proposal whose input another proposal took over (a replacement) loses too
    for (const other of await proposalsSpending(store, input, txid)) conflicts.add(other);
    // found on the chain, it may be spent already: then there is nothing left to reserve
    if (u && u.state !== 'spent') held.push({ input, u });
  }
  // the records just read through this batch, nothing staged for them since
  await reserveUtxos(
    batch,
    held.map((h) => h.input),
    txid,
    { replacing: [...conflicts], current: held.map((h) => h.u) },
  );
  // one whose input another transaction spent has lost already (settlement.ts lost): honest members
  // may have signed another payment of its requests since, which can reach t, so it supersedes nothing
  const lost = utxos.some((u) => u?.state === 'spent' && u.spentBy !== txid);
  // without a chain a finalized payment never loses: what it supersedes is dead for good at once
  const settled = (await storedTipHeight(store)) === undefined;
  const spends = await spendsOf(batch, signed);
  // after its own inputs are reserved: what a payment it supersedes gives back leaves those alone
  const superseded = lost
    ? []
    : await stageSupersededBy(store, batch, txid, paymentsOf, spends, at, settled, rules.paidDepth);
  const final: FinalizedRecord = {
    txid,
    tx: body.tx,
    prevouts: body.prevouts,
    requestIds,
    committed: body.requestIds,
    unmatched,
    fee,
    vsize: signedFederationVsize(federation, signed),
    conflicts: [...conflicts],
    ...(superseded.length > 0 ? { superseded } : {}),
    at,
  };
  batch.put(keys.finalizedKey(txid), final);
  batch.put(keys.finalizedAtKey(at, txid), 1);
  batch.put(keys.openPaymentKey(txid), 1);
  await stageOutflowNow(batch, rules.limits, firstPaid);
  // only a handoff pays no request (wallet/validate.ts); the signer indexed it too if it signed it
  if (body.requestIds.length === 0) batch.put(keys.handoffTxKey(txid), 1);
  return final;
}
