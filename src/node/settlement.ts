import { toHex } from '../bitcoin/bytes.js';
import type { Federation } from '../bitcoin/federation.js';
import type { BitcoinObserver } from '../bitcoin/observer.js';
import type { BitcoinRpcClient } from '../bitcoin/rpc.js';
import { parseTx, txid as txidOf } from '../bitcoin/tx.js';
import { getRequest, stageStatus, type RequestStatus } from '../evm/request-store.js';
import type { Metrics } from '../metrics/metrics.js';
import { broadcastKey, broadcastPrefix, cursorKey, finalizedKey, proposalKey, requestSignedPrefix, SPACES } from '../storage/keys.js';
import { parseRequestId } from '../evm/requests.js';
import type { Store, StoreBatch } from '../storage/store.js';
import { buildReplacement } from '../wallet/payment.js';
import { proposalFromPayment, proposalOutpoints, type Proposal } from '../wallet/proposal.js';
import { getUtxo, registerUtxo, releaseUtxos, spendUtxo } from '../wallet/utxos.js';
import { INCREMENTAL_RELAY_FEE } from '../wallet/validate.js';
import type { FinalizedRecord } from './coordinator.js';
import type { Logger } from './log.js';

// Settlement: what happens to a finalized payment. With Bitcoin Core it is broadcast until the
// node has it, followed to the configured depth (requests 'broadcast' → 'paid') and replaced
// (BIP125) when it lingers while fees rise. Without Bitcoin Core (the devnet) it is accounted for
// locally: its inputs spent, its change a federation output that exists on no chain.

/** bcast/<txid>/<seq>: one broadcast attempt. */
export interface BroadcastAttempt {
  readonly at: string;
  /** Bitcoin height when it was made: RBF counts blocks from the first accepted attempt. */
  readonly height: number;
  readonly outcome: string;
}

/** Moves the payment's requests from one of `from` to `to`. */
async function stageRequests(batch: StoreBatch, record: FinalizedRecord, from: readonly RequestStatus[], to: RequestStatus, at: string, detail: string): Promise<void> {
  for (const id of record.requestIds) {
    const r = await getRequest(batch, id);
    if (r && from.includes(r.status)) stageStatus(batch, r, to, at, detail);
  }
}

/**
 * The proposals `record` took inputs from lose once it is settled: their other inputs are freed
 * and their requests that `record` does not pay go back to 'accepted' for a later round. The
 * validator no longer counts them as earlier payments (an input of theirs is spent elsewhere).
 */
async function stageSuperseded(store: Store, batch: StoreBatch, record: FinalizedRecord, at: string): Promise<void> {
  for (const loser of record.conflicts) {
    const proposal = await store.get<Proposal>(proposalKey(loser));
    if (!proposal) continue;
    await releaseUtxos(batch, proposalOutpoints(proposal), loser);
    for (const id of proposal.requestIds) {
      if (record.requestIds.includes(id)) continue;
      const r = await getRequest(batch, id);
      if (r?.status === 'batched') stageStatus(batch, r, 'accepted', at, `payment ${loser} lost to ${record.txid}`);
    }
  }
}

/** A payment lost to a conflicting one: its requests that no applied payment pays wait for a later round. */
async function stageLost(store: Store, batch: StoreBatch, record: FinalizedRecord, winner: string): Promise<void> {
  const at = new Date().toISOString();
  for (const id of record.requestIds) {
    const r = await getRequest(batch, id);
    if (r?.status !== 'signed') continue;
    const { txHash, ordinal } = parseRequestId(id);
    let paid = false;
    for await (const [key] of store.entries({ prefix: requestSignedPrefix(txHash, ordinal) })) {
      const txid = key.slice(key.lastIndexOf('/') + 1);
      const other = txid === record.txid ? undefined : await store.get<FinalizedRecord>(finalizedKey(txid));
      const first = other && parseTx(other.tx).inputs[0];
      if (first && (await getUtxo(store, first))?.spentBy === txid) paid = true;
    }
    if (!paid) stageStatus(batch, r, 'accepted', at, `payment ${record.txid} lost to ${winner}`);
  }
}

/**
 * Without Bitcoin Core: the finalized payment is applied to the local UTXO set at once. Its
 * requests stay 'signed' (nothing was broadcast, nothing is paid).
 */
export async function settleLocally(store: Store, federation: Federation, record: FinalizedRecord): Promise<void> {
  const tx = parseTx(record.tx);
  await store.exclusive(async () => {
    const batch = store.batch();
    for (const input of tx.inputs) {
      const u = await getUtxo(store, input);
      // a conflicting payment was finalized first: on a chain only one of them would confirm
      if (u?.state === 'spent' && u.spentBy !== record.txid) {
        await stageLost(store, batch, record, u.spentBy ?? 'another payment');
        await batch.write({ sync: true });
        return;
      }
    }
    for (const input of tx.inputs) await spendUtxo(batch, input, record.txid);
    for (const [vout, output] of tx.outputs.entries()) {
      if (Buffer.compare(output.scriptPubKey, federation.scriptPubKey) === 0) await registerUtxo(batch, { txid: record.txid, vout, value: output.value, scriptPubKey: output.scriptPubKey, height: 0 });
    }
    await stageSuperseded(store, batch, record, new Date().toISOString());
    await batch.write({ sync: true });
  });
}

export interface ChainSettlementOptions {
  readonly store: Store;
  readonly federation: Federation;
  readonly rpc: Pick<BitcoinRpcClient, 'broadcast'>;
  readonly observer: BitcoinObserver;
  readonly paidConfirmations: number;
  /** Blocks a broadcast payment may stay unconfirmed before a higher fee rate replaces it. */
  readonly rbfAfterBlocks: number;
  /** Highest rate a payment may pay, sat/vB (passed to sendrawtransaction as its cap). */
  readonly maxFeeRate: number;
  readonly log: Logger;
  readonly metrics?: Metrics;
  /** The payment is paid at depth, or lost to a conflicting one: no longer announced. */
  readonly onSettled: (txid: string) => void;
}

/** With Bitcoin Core: broadcast with retries, confirmations, 'paid' at depth, RBF. */
export class ChainSettlement {
  /** Finalized payments not yet settled, by txid. */
  private readonly open = new Map<string, FinalizedRecord>();

  constructor(private readonly o: ChainSettlementOptions) {}

  async load(): Promise<void> {
    for await (const [, record] of this.o.store.entries<FinalizedRecord>({ prefix: SPACES.finalized })) {
      const requests = await Promise.all(record.requestIds.map((id) => getRequest(this.o.store, id)));
      if (requests.some((r) => r && r.status !== 'paid')) this.open.set(record.txid, record);
    }
  }

  readonly onFinalized = async (record: FinalizedRecord): Promise<void> => {
    this.open.set(record.txid, record);
    await this.broadcast(record);
  };

  /** The payment's record gained late-ingested requests: followed again, even if it was already paid, so they reach 'paid' too. */
  readonly onLateMatched = async (record: FinalizedRecord): Promise<void> => {
    this.open.set(record.txid, record);
  };

  private async height(): Promise<number> {
    return (await this.o.store.get<{ height: number }>(cursorKey('bitcoin')))?.height ?? 0;
  }

  private async attempts(txid: string): Promise<BroadcastAttempt[]> {
    const out: BroadcastAttempt[] = [];
    for await (const [, a] of this.o.store.entries<BroadcastAttempt>({ prefix: broadcastPrefix(txid) })) out.push(a);
    return out;
  }

  /** One attempt, recorded; "already in the mempool / in the chain" is success. */
  private async broadcast(record: FinalizedRecord): Promise<void> {
    const seq = (await this.attempts(record.txid)).length;
    let outcome: string;
    try {
      outcome = await this.o.rpc.broadcast(toHex(record.tx), this.o.maxFeeRate / 100_000);
      this.o.log.info('broadcast', { txid: record.txid, outcome, attempt: seq });
    } catch (err) {
      outcome = `error: ${(err as { code?: string }).code ?? (err as Error).message}`;
      this.o.log.warn('broadcast_failed', { txid: record.txid, attempt: seq, error: err as Error });
    }
    const at = new Date().toISOString();
    const batch = this.o.store.batch();
    batch.put(broadcastKey(record.txid, seq), { at, height: await this.height(), outcome } satisfies BroadcastAttempt);
    if (!outcome.startsWith('error')) await stageRequests(batch, record, ['signed'], 'broadcast', at, `broadcast ${record.txid}`);
    await batch.write({ sync: true });
  }

  /** One pass over the open payments: confirmations, 'paid' at depth, rebroadcast of what the node lacks, payments that lost. */
  async tick(): Promise<void> {
    await this.o.observer.sync();
    for (const record of [...this.open.values()]) {
      const confirmations = await this.o.observer.confirmations(record.txid);
      if (confirmations === 0) {
        if (await this.lost(record)) continue;
        await this.broadcast(record);
        continue;
      }
      if (confirmations < this.o.paidConfirmations) continue;
      await this.o.store.exclusive(async () => {
        const batch = this.o.store.batch();
        const at = new Date().toISOString();
        await stageRequests(batch, record, ['signed', 'broadcast'], 'paid', at, `${confirmations} confirmations of ${record.txid}`);
        await stageSuperseded(this.o.store, batch, record, at);
        await batch.write({ sync: true });
      });
      this.o.log.info('paid', { txid: record.txid, confirmations, requests: record.requestIds.length });
      this.settle(record.txid);
    }
  }

  /** An input spent by another confirmed transaction: this payment can never confirm. */
  private async lost(record: FinalizedRecord): Promise<boolean> {
    for (const input of parseTx(record.tx).inputs) {
      const u = await getUtxo(this.o.store, input);
      if (u?.state === 'spent' && u.spentBy !== record.txid) {
        this.o.log.info('payment_lost', { txid: record.txid, to: u.spentBy });
        this.settle(record.txid);
        return true;
      }
    }
    return false;
  }

  private settle(txid: string): void {
    this.open.delete(txid);
    this.o.onSettled(txid);
  }

  /**
   * Proposals replacing payments broadcast at least rbfAfterBlocks ago, still unconfirmed, paying
   * under `rate`: same inputs, same requests, the new rate. A payment already replaced by a
   * finalized one (open, with a higher fee) is left alone.
   */
  readonly replacements = async (rate: number): Promise<Proposal[]> => {
    const height = await this.height();
    const out: Proposal[] = [];
    for (const record of this.open.values()) {
      if (Number(record.fee) / record.vsize + INCREMENTAL_RELAY_FEE > rate) continue;
      const first = (await this.attempts(record.txid)).find((a) => !a.outcome.startsWith('error'));
      if (!first || height - first.height < this.o.rbfAfterBlocks) continue;
      if ((await this.o.observer.confirmations(record.txid)) > 0) continue;
      const inputs = parseTx(record.tx).inputs;
      if ([...this.open.values()].some((other) => other.txid !== record.txid && other.fee > record.fee && parseTx(other.tx).inputs.some((i) => inputs.some((j) => j.txid === i.txid && j.vout === i.vout)))) continue;
      const requests = [];
      for (const id of record.requestIds) {
        const r = await getRequest(this.o.store, id);
        if (r?.scriptPubKey) requests.push({ id, scriptPubKey: r.scriptPubKey, sats: r.sats });
      }
      const payment = buildReplacement(requests, inputs.map((i, k) => ({ txid: i.txid, vout: i.vout, ...record.prevouts[k]! })), rate, this.o.federation);
      if (!payment) {
        this.o.log.warn('replacement_impossible', { txid: record.txid, rate });
        continue;
      }
      this.o.log.info('replacing', { txid: record.txid, by: txidOf(payment.tx), rate });
      out.push(proposalFromPayment(payment, 0, ''));
    }
    return out;
  };

}
