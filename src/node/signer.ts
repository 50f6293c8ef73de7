import type { Federation } from '../bitcoin/federation.js';
import { parseTx } from '../bitcoin/tx.js';
import { getRequests, stageStatus } from '../evm/request-store.js';
import { isRequestId, parseRequestId } from '../evm/requests.js';
import type { FinalizedRecord } from './coordinator.js';
import { finalizedKey, requestSignedKey, requestSignedPrefix, signatureMadeKey } from '../storage/keys.js';
import type { Store, StoreReader } from '../storage/store.js';
import type { SigningPool } from '../signing/pool.js';
import type { FeeRate } from '../wallet/fee.js';
import { proposalOutpoints, stageProposal, type Proposal } from '../wallet/proposal.js';
import { getUtxo, outpointText, parseOutpoint, type UtxoRecord } from '../wallet/utxos.js';
import { signedFederationVsize } from '../bitcoin/weight.js';
import { validateProposal, type KnownRequest, type RejectReason, type SignedPayment, type ValidationState } from '../wallet/validate.js';

// The transaction signer: validates a proposal against this member's own state, signs it, and
// records what it signed BEFORE the signatures can leave the process (SPEC §3, invariant 2).

/** What this member signed: kept forever, it is what the no-double-pay check reads. */
export interface SignatureRecord {
  readonly txid: string;
  readonly inputs: readonly string[];
  readonly requestIds: readonly string[];
  /** 64 bytes per input, in input order. */
  readonly signatures: Uint8Array;
  readonly fee: bigint;
  /** Signed size: what a replacement's fee is measured against (BIP125). */
  readonly vsize: number;
  readonly at: string;
}

export interface FeeBounds {
  readonly minFeeRate: FeeRate;
  readonly maxFeeRate: FeeRate;
}

export type SignOutcome = { ok: true; txid: string; signatures: Uint8Array; already: boolean } | { ok: false; reason: RejectReason; detail: string };

/** Transactions this member signed, or knows finalized, that pay request `id`. */
async function signedPayments(store: Store, reader: StoreReader, id: string): Promise<SignedPayment[]> {
  const { txHash, logIndex } = parseRequestId(id);
  const out: SignedPayment[] = [];
  for await (const [key] of store.entries<number>({ prefix: requestSignedPrefix(txHash, logIndex) })) {
    const txid = key.slice(key.lastIndexOf('/') + 1);
    const final = await finalizedPayment(reader, txid);
    const record = (await reader.get<SignatureRecord>(signatureMadeKey(txid))) ?? final;
    if (!record) continue;
    let dead = false;
    for (const name of record.inputs) {
      const u = await getUtxo(reader, parseOutpoint(name));
      if (u?.state === 'spent' && u.spentBy !== txid) dead = true;
    }
    out.push({ txid, inputs: record.inputs, fee: record.fee, vsize: record.vsize, dead, finalized: final !== undefined });
  }
  return out;
}

async function finalizedPayment(reader: StoreReader, txid: string): Promise<Pick<SignatureRecord, 'inputs' | 'fee' | 'vsize'> | undefined> {
  const f = await reader.get<FinalizedRecord>(finalizedKey(txid));
  return f && { inputs: parseTx(f.tx).inputs.map(outpointText), fee: f.fee, vsize: f.vsize };
}

/** A snapshot of exactly the state validation needs for `proposal`, read from the store. */
export async function validationState(store: Store, federation: Federation, proposal: Proposal, fees: FeeBounds): Promise<ValidationState> {
  const requests = new Map<string, KnownRequest>();
  const signed = new Map<string, SignedPayment[]>();
  const records = await getRequests(store, proposal.requestIds);
  for (const [i, id] of proposal.requestIds.entries()) {
    const record = records[i];
    if (record?.scriptPubKey) requests.set(id, { status: record.status, scriptPubKey: record.scriptPubKey, sats: record.sats });
    // a malformed id is an unknown request to the validator
    if (isRequestId(id)) signed.set(id, await signedPayments(store, store, id));
  }
  const utxos = new Map<string, UtxoRecord>();
  let outpoints: { txid: string; vout: number }[] = [];
  try {
    outpoints = proposalOutpoints(proposal);
  } catch {
    // a malformed transaction is reported by the validator itself
  }
  for (const o of outpoints) {
    const u = await getUtxo(store, o);
    if (u) utxos.set(outpointText(o), u);
  }
  return {
    federation,
    request: (id) => requests.get(id),
    utxo: (name) => utxos.get(name),
    signedPayments: (id) => signed.get(id) ?? [],
    ...fees,
  };
}

/**
 * Validates and signs `proposal`. Runs inside the store's exclusive section, so no other
 * signing or reservation interleaves between the check and the record. The record (what was
 * signed, which requests it pays, the proposal and its input reservations, the requests moved
 * to 'batched') is written with sync before the signatures are returned. Signing the same
 * transaction again returns the recorded signatures.
 */
export async function signProposal(store: Store, pool: SigningPool, federation: Federation, proposal: Proposal, fees: FeeBounds, now: () => string = () => new Date().toISOString()): Promise<SignOutcome> {
  return store.exclusive(async () => {
    const verdict = validateProposal(proposal, await validationState(store, federation, proposal, fees));
    const tx = verdict.ok ? parseTx(proposal.unsignedTx) : undefined;
    if (!verdict.ok || !tx) return verdict as { ok: false; reason: RejectReason; detail: string };
    const batch = store.batch();
    // inputs reserved by earlier proposals this one replaces (it spends them) move to it
    const replacing = new Set<string>();
    for (const o of proposalOutpoints(proposal)) {
      const u = await getUtxo(store, o);
      if (u?.state === 'reserved' && u.reservedBy) replacing.add(u.reservedBy);
    }
    const txid = await stageProposal(batch, proposal, { replacing: [...replacing] });
    const existing = await store.get<SignatureRecord>(signatureMadeKey(txid));
    if (existing) return { ok: true, txid, signatures: existing.signatures, already: true };
    const signatures = await pool.signTransaction(tx, proposal.prevouts);
    const at = now();
    batch.put(signatureMadeKey(txid), {
      txid,
      inputs: tx.inputs.map(outpointText),
      requestIds: [...proposal.requestIds],
      signatures,
      fee: proposal.prevouts.reduce((a, p) => a + p.value, 0n) - tx.outputs.reduce((a, o) => a + o.value, 0n),
      vsize: signedFederationVsize(federation, tx),
      at,
    } satisfies SignatureRecord);
    // validation refused duplicate and unknown ids, so each record is read once, before any change
    const records = await getRequests(batch, proposal.requestIds);
    for (const [i, id] of proposal.requestIds.entries()) {
      const { txHash, logIndex } = parseRequestId(id);
      batch.put(requestSignedKey(txHash, logIndex, txid), 1);
      const request = records[i];
      if (request?.status === 'accepted') stageStatus(batch, request, 'batched', at, `in payment ${txid}`);
    }
    await batch.write({ sync: true });
    return { ok: true, txid, signatures, already: false };
  });
}
