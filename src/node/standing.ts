import { parseRequestId, type RequestIdentity } from '../evm/request-id.js';
import { paymentsOfRequest } from '../evm/request-store.js';
import { finalizedKey, signatureMadeKey } from '../storage/keys.js';
import type { FinalizedRecord, SignatureRecord } from '../storage/records.js';
import type { Store, StoreBatch } from '../storage/store.js';
import { proposalsSpending } from '../wallet/proposal.js';
import { parseOutpoint, reclaimUtxos, type Outpoint } from '../wallet/utxos.js';
import type { SignedPayment } from '../wallet/validate.js';
import { chainView, signedPayments } from './signer.js';

/**
 * The finalized payments that can still confirm when `losers` lost (superseded, or lost to a
 * conflict): confirmed already, or one whose inputs no confirmed transaction spent (signedPayments,
 * the validator's own judgement of earlier payments), each judged once (one of a thousand requests
 * is on each of their lists). A loser may have taken over inputs of such a payment (a merge or
 * replacement of it), so those go back to it, not to the wallet, where a proposal of other requests
 * could take them. Without a chain none stands: applyLocally decides which of two conflicting
 * payments wins, at once, and gives the loser's inputs to the wallet for good.
 */
export async function standingPayments(store: Store, paidDepth: number, losers: Iterable<string>) {
  const chain = await chainView(store, paidDepth);
  const judged = new Map<string, SignedPayment | undefined>();
  for (const txid of losers) judged.set(txid, undefined);
  const judge = async (txid: string): Promise<SignedPayment | undefined> => {
    if (!judged.has(txid)) {
      const [p] = await signedPayments(store, [txid], chain, paidDepth);
      judged.set(txid, p?.finalized && !p.dead ? p : undefined);
    }
    return judged.get(txid);
  };
  return {
    /** The finalized payment `txid` if it can still confirm. */
    stands: judge,
    /** Whether a standing payment pays `request`. */
    async pay(request: RequestIdentity): Promise<boolean> {
      if (!chain) return false;
      let paid = false;
      for (const txid of await paymentsOfRequest(store, request)) if (await judge(txid)) paid = true;
      return paid;
    },
    /**
     * Judges what `loser` may have taken inputs from, whatever it pays (a handoff pays no request): the
     * payments it conflicted with when it was finalized here, those whose inputs it took over when it
     * was signed here (a handoff known here only by its finalized record is found nowhere else), the
     * proposals stored here that spend its inputs, and the payments of its requests (a payment it
     * replaced, finalized elsewhere, is only there: the replacement rule lets it take their inputs only
     * by paying all their requests). Those standing get them back on reclaim.
     */
    async held(loser: string, inputs: readonly Outpoint[], requestIds: readonly string[]): Promise<void> {
      if (!chain) return;
      const [finalized, made] = await store.getMany<unknown>([finalizedKey(loser), signatureMadeKey(loser)]);
      const from = new Set([
        ...((finalized as FinalizedRecord | undefined)?.conflicts ?? []),
        ...((made as SignatureRecord | undefined)?.replaced ?? []),
      ]);
      for (const input of inputs) for (const other of await proposalsSpending(store, input, loser)) from.add(other);
      for (const id of requestIds)
        for (const other of await paymentsOfRequest(store, parseRequestId(id))) from.add(other);
      from.delete(loser);
      for (const txid of from) await judge(txid);
    },
    /** Stages every standing payment found so far holding its inputs again (reclaimUtxos). */
    async reclaim(batch: StoreBatch): Promise<void> {
      for (const p of judged.values()) if (p) await reclaimUtxos(batch, p.inputs.map(parseOutpoint), p.txid);
    },
  };
}
