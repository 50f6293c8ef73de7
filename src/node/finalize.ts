import type { Federation } from '../bitcoin/federation.js';
import type { Prevout, Transaction } from '../bitcoin/tx.js';
import { signedFederationVsize } from '../bitcoin/weight.js';
import { getRequest, stageStatus } from '../evm/request-store.js';
import { parseRequestId } from '../evm/requests.js';
import { finalizedKey, requestSignedKey } from '../storage/keys.js';
import type { Store } from '../storage/store.js';
import { proposalsSpending } from '../wallet/proposal.js';
import { getUtxo, reserveUtxos } from '../wallet/utxos.js';

// Recording a finalized payment: the one place where a payment with t signatures (finalized
// here, received from a peer, or found confirmed on the chain) enters this member's records.

/** final/<txid>: a payment with t valid signatures on every input. */
export interface FinalizedRecord {
  readonly txid: string;
  /** The signed transaction, serialized. */
  readonly tx: Uint8Array;
  readonly prevouts: readonly Prevout[];
  readonly requestIds: readonly string[];
  /** Requests the payment names that this member had not ingested when it was finalized (output index by id). */
  readonly unmatched: Readonly<Record<string, number>>;
  readonly fee: bigint;
  readonly vsize: number;
  /** Proposals that held this payment's inputs when it was finalized: they lose if it confirms. */
  readonly conflicts: readonly string[];
  readonly at: string;
}

export interface FinalizedBody {
  readonly tx: Uint8Array;
  readonly prevouts: readonly Prevout[];
  readonly requestIds: readonly string[];
}

const sum = (values: readonly bigint[]): bigint => values.reduce((a, v) => a + v, 0n);

/**
 * Records a finalized payment in one synced batch: the signed transaction, its requests moved
 * to 'signed' (only those whose output pays the request's own script: a peer's list is not
 * trusted beyond what the signatures and the commitment prove), the request→payment index the
 * no-double-pay check reads, and its inputs reserved by it; proposals that held any of its
 * inputs are its conflicts (they lose once it confirms). `body.requestIds` must be what output 0
 * commits to (both callers check it). Undefined when it was recorded before.
 */
export async function recordFinalized(store: Store, federation: Federation, txid: string, signed: Transaction, body: FinalizedBody, detail: string): Promise<FinalizedRecord | undefined> {
  return store.transaction(async (batch) => {
    if (await store.get(finalizedKey(txid))) return undefined;
    const at = new Date().toISOString();
    const requestIds: string[] = [];
    const unmatched: Record<string, number> = {};
    // output k + 1 pays the k-th committed request
    for (const [k, id] of body.requestIds.entries()) {
      const r = await getRequest(batch, id);
      const output = signed.outputs[k + 1];
      const { txHash, ordinal } = parseRequestId(id);
      if (!r && output) {
        // not ingested here yet: committed by a transaction t members signed, so it is indexed
        // now and no other payment of it is signed meanwhile; matched once it is ingested
        batch.put(requestSignedKey(txHash, ordinal, txid), 1);
        unmatched[id] = k + 1;
        continue;
      }
      if (!r?.scriptPubKey || !output || Buffer.compare(output.scriptPubKey, r.scriptPubKey) !== 0) continue;
      requestIds.push(id);
      batch.put(requestSignedKey(txHash, ordinal, txid), 1);
      if (r.status === 'accepted' || r.status === 'batched') stageStatus(batch, r, 'signed', at, detail);
    }
    const conflicts = new Set<string>();
    const held = [];
    for (const input of signed.inputs) {
      const u = await getUtxo(batch, input);
      if (u?.reservedBy && u.reservedBy !== txid) conflicts.add(u.reservedBy);
      // a proposal whose input another proposal took over (a replacement) loses too
      for (const other of await proposalsSpending(store, input, txid)) conflicts.add(other);
      // found on the chain, it may be spent already: then there is nothing left to reserve
      if (u && u.state !== 'spent') held.push(input);
    }
    await reserveUtxos(batch, held, txid, { replacing: [...conflicts] });
    const final: FinalizedRecord = {
      txid,
      tx: body.tx,
      prevouts: body.prevouts,
      requestIds,
      unmatched,
      fee: sum(body.prevouts.map((p) => p.value)) - sum(signed.outputs.map((o) => o.value)),
      vsize: signedFederationVsize(federation, signed),
      conflicts: [...conflicts],
      at,
    };
    batch.put(finalizedKey(txid), final);
    return final;
  });
}
