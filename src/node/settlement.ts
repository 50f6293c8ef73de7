import { toHex } from '../bitcoin/bytes.js';
import type { Federation } from '../bitcoin/federation.js';
import { storedConfirmations, type BitcoinObserver } from '../chain/observer.js';
import type { BitcoinRpcClient } from '../chain/rpc.js';
import { MAX_MONEY, parseTx, txid as txidOf } from '../bitcoin/tx.js';
import { parseRequestId } from '../evm/request-id.js';
import { getRequest, listRequestsIn, OWED, paymentsOfRequest, stageStatus } from '../evm/request-store.js';
import type { Metrics } from '../metrics/metrics.js';
import * as stages from '../metrics/stages.js';
import {
  broadcastKey,
  broadcastPrefix,
  chainSpendKey,
  cursorKey,
  finalizedKey,
  openPaymentKey,
  proposalKey,
  signatureMadeKey,
  SPACES,
} from '../storage/keys.js';
import type { Store, StoreBatch } from '../storage/store.js';
import { matchCommitment, namesCommitted, readCommitment, type CandidateRequest } from '../wallet/commitment.js';
import { checkHandoffTx, type HandoffPolicy } from '../wallet/handoff.js';
import { buildReplacement } from '../wallet/payment.js';
import { proposalFromPayment, proposalOutpoints, proposalsSpending } from '../wallet/proposal.js';
import { getUtxo, getUtxos, registerUtxo, releaseUtxos, stageSpent } from '../wallet/utxos.js';
import type { OutflowLimits } from '../wallet/limits.js';
import { unnamedWithin } from '../wallet/reserves.js';
import { INCREMENTAL_RELAY_FEE } from '../wallet/validate.js';
import {
  isUnsettled,
  openPayments,
  recordFinalized,
  stageRevived,
  type RevivalJudgement,
  stageSupersededAtDepth,
} from './finalize.js';
import { chainView, signedPayments } from './signer.js';
import { standingPayments } from './standing.js';
import type { Logger } from './log.js';
import {
  everAccepted,
  type BroadcastAttempt,
  type ChainSpend,
  type FinalizedRecord,
  type Proposal,
  type RequestStatus,
  type SignatureRecord,
} from '../storage/records.js';

// Settlement: what happens to a finalized payment. With Bitcoin Core it is broadcast until the
// node has it, followed to the configured depth (requests 'broadcast' → 'paid') and replaced
// (BIP125) when it lingers while fees rise. Without Bitcoin Core (the devnet) it is accounted for
// locally: its inputs spent, its change a federation output that exists on no chain.

/** A payment's last broadcast attempt and its number (attempts are numbered from 0 without gaps). */
export interface LastAttempt {
  readonly seq: number;
  readonly attempt: BroadcastAttempt;
}

/** The last broadcast attempt of payment `txid`: one row, however many there were. */
export async function lastBroadcastAttempt(reader: Store, txid: string): Promise<LastAttempt | undefined> {
  const prefix = broadcastPrefix(txid);
  for await (const [key, attempt] of reader.entries<BroadcastAttempt>({ prefix, reverse: true, limit: 1 }))
    return { seq: Number(key.slice(prefix.length)), attempt };
  return undefined;
}

/** Moves the payment's requests from one of `from` to `to`. */
async function stageRequests(
  batch: StoreBatch,
  record: FinalizedRecord,
  from: readonly RequestStatus[],
  to: RequestStatus,
  at: string,
  detail: string,
): Promise<void> {
  for (const id of record.requestIds) {
    const r = await getRequest(batch, id);
    if (r && from.includes(r.status)) stageStatus(batch, r, to, at, detail);
  }
}

/**
 * The proposals that spend an input of `record` lose once it is settled: their other inputs are
 * freed (or go back to a payment that can still confirm, standingPayments) and their requests that
 * neither `record` nor such a payment pays go back to 'accepted' for a later round. The validator no
 * longer counts them as earlier payments (an input of theirs is spent elsewhere). They are the
 * conflicts it was recorded with and any stored since (a merge of it this member signed after it
 * was finalized).
 */
async function stageSuperseded(
  store: Store,
  batch: StoreBatch,
  record: FinalizedRecord,
  at: string,
  paidDepth: number | 'no_chain',
): Promise<void> {
  const losers = new Set(record.conflicts);
  for (const input of parseTx(record.tx).inputs)
    for (const other of await proposalsSpending(store, input, record.txid)) losers.add(other);
  const standing = await standingPayments(store, paidDepth === 'no_chain' ? 0 : paidDepth, losers);
  const pays = new Set([...record.requestIds, ...Object.keys(record.unmatched)]);
  for (const loser of losers) {
    const proposal = await store.get<Proposal>(proposalKey(loser));
    if (!proposal) continue;
    // without a chain nothing says which of two conflicting payments confirms: one that pays a
    // request `record` does not may still reach t and be finalized here after it (signer.ts
    // killedByConflict), so it keeps its requests and the inputs that hold them
    if (paidDepth === 'no_chain' && proposal.requestIds.some((id) => !pays.has(id))) continue;
    await standing.held(loser, proposalOutpoints(proposal), proposal.requestIds);
    await releaseUtxos(batch, proposalOutpoints(proposal), loser);
    // a restart need not take it up again; one finalized is followed until it is lost (stageLost)
    if (!(await batch.get(finalizedKey(loser)))) batch.del(openPaymentKey(loser));
    for (const id of proposal.requestIds) {
      if (record.requestIds.includes(id)) continue;
      const r = await getRequest(batch, id);
      if (!r || (await standing.pay(r))) continue;
      if (r.status === 'batched') stageStatus(batch, r, 'accepted', at, `payment ${loser} lost to ${record.txid}`);
    }
  }
  await standing.reclaim(batch);
}

/**
 * A payment lost to a conflicting transaction confirmed at the paid depth: its requests wait for a
 * later round unless a payment of them can still confirm (standingPayments, which gets back the
 * inputs it had given up to this one); its other inputs go back to the wallet (SPEC §3, invariant
 * 5: nothing is stranded).
 */
async function stageLost(
  store: Store,
  batch: StoreBatch,
  record: FinalizedRecord,
  winner: string,
  paidDepth: number,
): Promise<string[]> {
  const at = new Date().toISOString();
  await releaseUtxos(batch, parseTx(record.tx).inputs, record.txid);
  batch.del(openPaymentKey(record.txid));
  const standing = await standingPayments(store, paidDepth, [record.txid]);
  const chain = await chainView(store, paidDepth);
  // as stored: a payment it superseded may have been marked superseded by it since it was read (stageRevived)
  const stored = (await batch.get<FinalizedRecord>(finalizedKey(record.txid))) ?? record;
  const revived = await stageRevived(store, batch, stored, at, async (txid, made): Promise<RevivalJudgement> => {
    if ((await signedPayments(store, [txid], chain, paidDepth))[0]?.dead ?? true) return { dead: true };
    const inputs = new Set(made.inputs);
    for (const id of made.requestIds)
      for (const other of await paymentsOfRequest(store, parseRequestId(id))) {
        const p = other === txid ? undefined : await standing.stands(other);
        if (p && !p.inputs.some((o) => inputs.has(o)))
          return { supersededBy: other, settled: (await storedConfirmations(store, other)) >= paidDepth };
      }
    return { live: true };
  });
  await standing.held(record.txid, parseTx(record.tx).inputs, record.requestIds);
  for (const id of record.requestIds) {
    const r = await getRequest(batch, id);
    if (r?.status !== 'signed' && r?.status !== 'broadcast') continue;
    // queued again even beside a payment of it this member signed that is still in flight: a proposal
    // of it is then refused here, and kept as that payment's rival, which merges() needs (one kept
    // batched beside a payment a malicious member withholds was never proposed, nor merged, again)
    if (!(await standing.pay(r))) stageStatus(batch, r, 'accepted', at, `payment ${record.txid} lost to ${winner}`);
  }
  await standing.reclaim(batch);
  return revived;
}

/**
 * Without Bitcoin Core: the finalized payment is applied to the local UTXO set at once. Its
 * requests stay 'signed' (nothing was broadcast, nothing is paid).
 */
export async function settleLocally(store: Store, federation: Federation, record: FinalizedRecord): Promise<void> {
  await store.transaction((batch) =>
    stages.timeAsync('finalize_record', () => applyLocally(store, federation, batch, record)),
  );
}

/**
 * Without Bitcoin Core, at start: a finalized payment recorded and not applied (the member stopped
 * between the write that recorded it and settleLocally's) is applied now; the others are left as
 * they are. Without Core every finalized payment stays open (nothing is ever paid), so this reads
 * them all, as the coordinator's recovery does.
 */
export async function settleLocallyAtStart(store: Store, federation: Federation): Promise<void> {
  for await (const { finalized } of openPayments(store))
    if (finalized) await settleLocally(store, federation, finalized);
}

async function applyLocally(
  store: Store,
  federation: Federation,
  batch: StoreBatch,
  record: FinalizedRecord,
): Promise<void> {
  const tx = parseTx(record.tx);
  const utxos = await getUtxos(batch, tx.inputs);
  // A conflicting payment was finalized first. On a chain only one of them would confirm, and
  // which one is not known here, so its requests stay in this payment (paying them again while
  // it stands could pay them twice: signer.ts counts a finalized payment as live); only the
  // inputs the other one did not spend go back to the wallet.
  if (utxos.some((u) => u?.state === 'spent' && u.spentBy !== record.txid)) {
    await releaseUtxos(batch, tx.inputs, record.txid);
    return;
  }
  for (const u of utxos) if (u) stageSpent(batch, u, record.txid);
  for (const [vout, output] of tx.outputs.entries()) {
    if (Buffer.compare(output.scriptPubKey, federation.scriptPubKey) === 0)
      await registerUtxo(batch, {
        txid: record.txid,
        vout,
        value: output.value,
        scriptPubKey: output.scriptPubKey,
        height: 0,
        pegIn: false,
      });
  }
  await stageSuperseded(store, batch, record, new Date().toISOString(), 'no_chain');
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
  /**
   * A confirmed spend commits to requests that this member cannot name (look-alike requests outrun
   * the search, or some are not ingested yet): asked of the peers at each step while it waits to be
   * named (wallet/reserves.ts unnamedWithin), since a member that holds the payment finalized can
   * send it (its commitment and witness are checked).
   */
  readonly onUnnamed?: (txid: string) => void;
  /**
   * Payments this member signed that a finalized one had superseded and that are in flight again,
   * since that one lost (finalize.ts stageRevived): collected again, as after a restart.
   */
  readonly onRevived?: (txids: readonly string[]) => Promise<void>;
  /** Raises an alarm (node/safety.ts): a spend of federation outputs no payment explains. */
  readonly alarm?: (kind: 'foreign_spend' | 'chain_spend_unmatched', detail: string, fields: object) => Promise<void>;
  /** A rotation this member takes part in: a confirmed handoff under its plan explains a spend too. */
  readonly handoff?: HandoffPolicy;
  /** A payment found on the chain that this member recorded no payment of counts in the rolling cap. */
  readonly limits: OutflowLimits;
}

/** A confirmed handoff's fee was its signers' to judge: adopting it checks its destinations alone. */
const ANY_FEE = { floor: 0, maxRate: Infinity, maxFee: MAX_MONEY };

/** With Bitcoin Core: broadcast with retries, confirmations, 'paid' at depth, RBF. */
export class ChainSettlement {
  /** Finalized payments not yet settled, by txid. */
  private readonly open = new Map<string, FinalizedRecord>();
  /** Chain spends whose commitment matched no known requests, already reported. */
  private readonly unmatched = new Set<string>();

  constructor(private readonly o: ChainSettlementOptions) {}

  /**
   * After a restart: the finalized payments still to follow, and those whose requests another payment
   * paid that still hold inputs (recorded late, just before the stop): followed until they lose and
   * give them back.
   */
  async load(): Promise<void> {
    for await (const { finalized } of openPayments(this.o.store)) {
      if (!finalized) continue;
      const follow =
        (await isUnsettled(this.o.store, finalized, this.o.paidConfirmations)) ||
        (await getUtxos(this.o.store, parseTx(finalized.tx).inputs)).some((u) => u?.reservedBy === finalized.txid);
      if (follow) this.open.set(finalized.txid, finalized);
    }
  }

  readonly onFinalized = async (record: FinalizedRecord): Promise<void> => {
    this.open.set(record.txid, record);
    await this.broadcast(record, await this.lastAttempt(record.txid));
  };

  /**
   * The payment's record gained late-ingested requests: followed again, even if it was already paid, so they reach
   * 'paid' too.
   */
  readonly onLateMatched = async (record: FinalizedRecord): Promise<void> => {
    this.open.set(record.txid, record);
  };

  private async height(): Promise<number> {
    return (await this.o.store.get<{ height: number }>(cursorKey('bitcoin')))?.height ?? 0;
  }

  /** The payment's last broadcast attempt and its number: one key read, however many there were. */
  private lastAttempt(txid: string): Promise<LastAttempt | undefined> {
    return lastBroadcastAttempt(this.o.store, txid);
  }

  /** The payment's first attempt, whatever the node answered. */
  private async firstAttempt(txid: string): Promise<BroadcastAttempt | undefined> {
    for await (const [, a] of this.o.store.entries<BroadcastAttempt>({ prefix: broadcastPrefix(txid), limit: 1 }))
      return a;
    return undefined;
  }

  /**
   * One attempt after `last` (lastAttempt); "already in the mempool / in the chain" is success. Recorded
   * (and logged) only when its outcome or the height differs from the last one's: a payment the node
   * refuses is tried at every tick, and a record a tick would grow without bound while it does.
   */
  private async broadcast(record: FinalizedRecord, last: LastAttempt | undefined): Promise<void> {
    const seq = (last?.seq ?? -1) + 1;
    let outcome: string;
    let failure: Error | undefined;
    try {
      outcome = await this.o.rpc.broadcast(toHex(record.tx), this.o.maxFeeRate / 100_000);
    } catch (err) {
      outcome = `error: ${(err as { code?: string }).code ?? (err as Error).message}`;
      failure = err as Error;
    }
    const height = await this.height();
    if (last && last.attempt.outcome === outcome && last.attempt.height === height) return;
    if (failure) this.o.log.warn('broadcast_failed', { txid: record.txid, attempt: seq, error: failure });
    else this.o.log.info('broadcast', { txid: record.txid, outcome, attempt: seq });
    const at = new Date().toISOString();
    await this.o.store.transaction(async (batch) => {
      const accepted = !outcome.startsWith('error') || (last !== undefined && everAccepted(last.attempt));
      batch.put(broadcastKey(record.txid, seq), { at, height, outcome, accepted } satisfies BroadcastAttempt);
      if (!outcome.startsWith('error'))
        await stageRequests(batch, record, ['signed'], 'broadcast', at, `broadcast ${record.txid}`);
    });
  }

  /**
   * One pass over the open payments: confirmations, 'paid' at depth, rebroadcast of what the node lacks, payments
   * that lost.
   */
  async tick(): Promise<void> {
    await this.o.observer.sync();
    await this.adoptChainSpends();
    for (const record of [...this.open.values()]) {
      const confirmations = await this.o.observer.confirmations(record.txid);
      if (confirmations === 0) {
        if (await this.lost(record)) continue;
        // taken by the node: again once a block has passed without it (a node that restarted may have
        // lost its mempool), not at every tick, which recorded an attempt a second for as long as it waited
        const last = await this.lastAttempt(record.txid);
        const taken = last !== undefined && !last.attempt.outcome.startsWith('error');
        if (taken && last.attempt.height >= (await this.height())) continue;
        await this.broadcast(record, last);
        continue;
      }
      if (confirmations < this.o.paidConfirmations) continue;
      await this.o.store.transaction(async (batch) => {
        const at = new Date().toISOString();
        await stageRequests(
          batch,
          record,
          ['signed', 'broadcast'],
          'paid',
          at,
          `${confirmations} confirmations of ${record.txid}`,
        );
        await stageSuperseded(this.o.store, batch, record, at, this.o.paidConfirmations);
        await stageSupersededAtDepth(this.o.store, batch, record, at, this.o.paidConfirmations);
        // requests it names that are not ingested here yet are matched (and paid) after a restart too
        if (Object.keys(record.unmatched).length === 0) batch.del(openPaymentKey(record.txid));
      });
      this.o.log.info('paid', { txid: record.txid, confirmations, requests: record.requestIds.length });
      this.settle(record.txid);
    }
  }

  /**
   * Confirmed spends of federation outputs that this member holds no finalized record of (it was
   * down while they were finalized, and its peers have settled them since): which requests they
   * pay is read from their commitment, and they are recorded like any finalized payment, so those
   * requests are paid here too and this member's own proposals that lost to them give their
   * inputs back (SPEC §3: a member catches up from the chain alone).
   */
  private async adoptChainSpends(): Promise<void> {
    const spends: ChainSpend[] = [];
    for await (const [, spend] of this.o.store.entries<ChainSpend>({ prefix: SPACES.chainSpend })) spends.push(spend);
    if (spends.length === 0) return;
    const candidates: CandidateRequest[] = [];
    for (const r of await listRequestsIn(this.o.store, OWED))
      if (r.scriptPubKey) candidates.push({ id: r.id, scriptPubKey: r.scriptPubKey, sats: r.sats });
    for (const spend of spends) {
      if (await this.o.store.get(finalizedKey(spend.txid))) {
        await this.o.store.batch().del(chainSpendKey(spend.txid)).write({ sync: true });
        continue;
      }
      const tx = parseTx(spend.tx);
      const prevouts = await getUtxos(this.o.store, tx.inputs);
      // a handoff pays no request; t members signed it, so only where it sends the funds is judged here
      const handoff =
        this.o.handoff &&
        prevouts.every((p) => p !== undefined) &&
        checkHandoffTx(tx, prevouts, this.o.handoff.plan, this.o.federation, ANY_FEE).ok;
      // what this member signed names them: a search through look-alike requests (one address, one
      // amount) can run out of tries before it finds the commitment's assignment
      const signed = handoff ? undefined : await this.o.store.get<SignatureRecord>(signatureMadeKey(spend.txid));
      const requestIds = handoff
        ? []
        : signed && namesCommitted(tx.outputs, signed.requestIds)
          ? [...signed.requestIds]
          : matchCommitment(tx.outputs, candidates);
      if (!requestIds || prevouts.some((p) => p === undefined)) {
        const known = readCommitment(tx.outputs[0]?.scriptPubKey ?? new Uint8Array(0)) !== undefined;
        if (known && !requestIds && unnamedWithin(spend, await this.height(), this.o.paidConfirmations, Date.now()))
          this.o.onUnnamed?.(spend.txid);
        // a request not ingested yet may still complete the match; reported once per run
        if (!this.unmatched.has(spend.txid)) {
          this.unmatched.add(spend.txid);
          // no commitment: no federation member built it, so t keys signed outside the rules
          await this.o.alarm?.(
            known ? 'chain_spend_unmatched' : 'foreign_spend',
            known
              ? `confirmed transaction ${spend.txid} pays requests this member does not know (yet), or pays them wrongly`
              : `confirmed transaction ${spend.txid} spent federation outputs and is no federation payment`,
            { txid: spend.txid, height: spend.height },
          );
        }
        continue;
      }
      const body = {
        tx: spend.tx,
        prevouts: prevouts.map((p) => ({ value: p!.value, scriptPubKey: p!.scriptPubKey })),
        requestIds,
      };
      const record = await recordFinalized(
        this.o.store,
        this.o.federation,
        spend.txid,
        tx,
        body,
        `confirmed on chain in ${spend.txid}`,
        { limits: this.o.limits, paidDepth: this.o.paidConfirmations },
      );
      await this.o.store.batch().del(chainSpendKey(spend.txid)).write({ sync: true });
      this.unmatched.delete(spend.txid);
      if (!record) continue;
      this.open.set(record.txid, record);
      this.o.log.info('payment_found_on_chain', {
        txid: record.txid,
        requests: record.requestIds.length,
        height: spend.height,
      });
    }
  }

  /**
   * An input spent by another confirmed transaction: this payment cannot confirm while that one
   * stands. Only once that one is at the paid depth does the payment count as lost and its
   * requests return to the queue: a shallower winner may still be reorganised away, and paying
   * the requests again meanwhile could pay them twice (issue 11, attack 6).
   */
  private async lost(record: FinalizedRecord): Promise<boolean> {
    for (const input of parseTx(record.tx).inputs) {
      const u = await getUtxo(this.o.store, input);
      if (u?.state !== 'spent' || u.spentBy === record.txid) continue;
      const winner = u.spentBy ?? 'another transaction';
      if (u.spentBy === undefined || (await this.o.observer.confirmations(u.spentBy)) < this.o.paidConfirmations)
        return true;
      const revived = await this.o.store.transaction((batch) =>
        stageLost(this.o.store, batch, record, winner, this.o.paidConfirmations),
      );
      this.o.log.info('payment_lost', { txid: record.txid, to: winner, ...(revived.length ? { revived } : {}) });
      if (revived.length > 0) await this.o.onRevived?.(revived);
      this.settle(record.txid);
      return true;
    }
    return false;
  }

  private settle(txid: string): void {
    this.open.delete(txid);
    this.o.onSettled(txid);
  }

  /**
   * Proposals replacing payments first broadcast at least rbfAfterBlocks ago, still unconfirmed,
   * paying under `rate`: same inputs, same requests, the new rate. Whether the node took the payment
   * does not matter: one it refuses (its rate under a risen mempool minimum) needs the replacement
   * most, since no other payment of its requests may be signed while it stands. A payment already
   * replaced by a finalized one (open, with a higher fee) is left alone.
   */
  readonly replacements = async (rate: number): Promise<Proposal[]> => {
    const height = await this.height();
    const out: Proposal[] = [];
    for (const record of this.open.values()) {
      if (Number(record.fee) / record.vsize + INCREMENTAL_RELAY_FEE > rate) continue;
      const first = await this.firstAttempt(record.txid);
      if (!first || height - first.height < this.o.rbfAfterBlocks) continue;
      if ((await this.o.observer.confirmations(record.txid)) > 0) continue;
      const inputs = parseTx(record.tx).inputs;
      if (
        [...this.open.values()].some(
          (other) =>
            other.txid !== record.txid &&
            other.fee > record.fee &&
            parseTx(other.tx).inputs.some((i) => inputs.some((j) => j.txid === i.txid && j.vout === i.vout)),
        )
      )
        continue;
      const requests = [];
      for (const id of record.requestIds) {
        const r = await getRequest(this.o.store, id);
        if (r?.scriptPubKey) requests.push({ id, scriptPubKey: r.scriptPubKey, sats: r.sats });
      }
      const payment = buildReplacement(
        requests,
        inputs.map((i, k) => ({ txid: i.txid, vout: i.vout, ...record.prevouts[k]! })),
        rate,
        this.o.federation,
      );
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
