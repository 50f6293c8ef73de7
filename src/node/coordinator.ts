import { toHex } from '../bitcoin/bytes.js';
import type { Federation } from '../bitcoin/federation.js';
import { serializeTx, txid as txidOf, type Transaction } from '../bitcoin/tx.js';
import { listRequests, getRequest, stageStatus } from '../evm/request-store.js';
import { isBytes } from '../p2p/frames.js';
import type { PeerNetwork } from '../p2p/network.js';
import { checkFinalizedWitnesses, SignatureCollector } from '../signing/collector.js';
import type { SigningPool } from '../signing/pool.js';
import { finalizedKey, signatureMadeKey, SPACES } from '../storage/keys.js';
import type { Store } from '../storage/store.js';
import { buildPayments, type PaymentRequest } from '../wallet/payment.js';
import { proposalFromPayment, proposalTx, proposalTxid, type Proposal } from '../wallet/proposal.js';
import { listUnspent, registerUtxo, spendUtxo } from '../wallet/utxos.js';
import type { Logger } from './log.js';
import { signProposal, type FeeBounds, type SignatureRecord } from './signer.js';

// The transaction coordinator: proposer rotation, proposals and signatures over the member
// links, collection, finalization. Every decision to sign goes through the signer.

export interface CoordinatorOptions {
  readonly store: Store;
  readonly federation: Federation;
  readonly pool: SigningPool;
  readonly network: PeerNetwork;
  readonly fees: FeeBounds & { readonly rate: () => Promise<number> };
  readonly maxOutputs: number;
  /** Length of a proposer's turn; the proposer of slot s is sorted key s mod n. */
  readonly slotMs: number;
  readonly log: Logger;
  /** After a transaction has t valid signature sets: broadcast it, or account for it locally. */
  readonly onFinalized: (txid: string, tx: Transaction) => Promise<void>;
  readonly now?: () => number;
}

export interface FinalizedRecord {
  readonly txid: string;
  readonly tx: Uint8Array;
  readonly requestIds: readonly string[];
  readonly at: string;
}

interface SignaturesBody {
  readonly txid: string;
  readonly signatures: Uint8Array;
}

const isProposal = (b: unknown): boolean => {
  const p = b as Partial<Proposal> | null;
  return (
    typeof p === 'object' && p !== null && p.version === 1 && Number.isSafeInteger(p.round) && typeof p.proposer === 'string' && isBytes(p.unsignedTx) &&
    Array.isArray(p.prevouts) && p.prevouts.every((o) => typeof o?.value === 'bigint' && isBytes(o.scriptPubKey)) &&
    Array.isArray(p.requestIds) && p.requestIds.every((id) => typeof id === 'string')
  );
};
const isSignatures = (b: unknown): boolean => {
  const s = b as Partial<SignaturesBody> | null;
  return typeof s === 'object' && s !== null && typeof s.txid === 'string' && /^[0-9a-f]{64}$/.test(s.txid) && isBytes(s.signatures) && s.signatures.length % 64 === 0;
};

export class Coordinator {
  private readonly collector: SignatureCollector;
  private readonly proposals = new Map<string, Proposal>();
  /** Signatures that arrived before their proposal, by txid (bounded by the member count). */
  private readonly early = new Map<string, Map<string, Uint8Array>>();
  private readonly finalized = new Set<string>();
  private timer?: NodeJS.Timeout;
  private lastSlot = -1;
  private busy: Promise<void> = Promise.resolve();
  private readonly myKey: string;

  constructor(private readonly o: CoordinatorOptions) {
    this.collector = new SignatureCollector(o.federation, o.pool.verifyTransaction);
    this.myKey = o.network.key;
  }

  /** Runs `fn` after everything queued before it: messages and ticks never interleave. */
  private serial(fn: () => Promise<void>): Promise<void> {
    this.busy = this.busy.then(fn).catch((err: Error) => this.o.log.error('coordinator_error', { error: err }));
    return this.busy;
  }

  async start(): Promise<void> {
    const net = this.o.network;
    net.registerType('proposal', isProposal);
    net.registerType('signatures', isSignatures);
    net.on('message', (peer: string, type: string, body: unknown) => {
      if (type === 'proposal') void this.serial(() => this.onProposal(peer, body as Proposal));
      if (type === 'signatures') void this.serial(() => this.onSignatures(peer, body as SignaturesBody));
    });
    net.on('peer', (peer: string) => void this.serial(() => this.announce(peer)));
    await this.serial(() => this.recover());
    this.timer = setInterval(() => void this.serial(() => this.tick()), Math.max(10, Math.floor(this.o.slotMs / 4)));
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.busy;
  }

  /** Proposals this member signed and has not seen finalized, from the store (after a restart). */
  private async recover(): Promise<void> {
    for await (const [, record] of this.o.store.entries<SignatureRecord>({ prefix: SPACES.signatureMade })) {
      if (await this.o.store.get(finalizedKey(record.txid))) continue;
      const proposal = await this.o.store.get<Proposal>(`${SPACES.proposal}${record.txid}`);
      if (proposal) await this.track(proposal, record.signatures);
    }
  }

  private proposerOf(slot: number): string {
    return toHex(this.o.federation.pubkeys[slot % this.o.federation.pubkeys.length]!);
  }

  private async tick(): Promise<void> {
    const slot = Math.floor((this.o.now?.() ?? Date.now()) / this.o.slotMs);
    if (slot === this.lastSlot || this.proposerOf(slot) !== this.myKey) return;
    this.lastSlot = slot;
    const pending: PaymentRequest[] = (await listRequests(this.o.store, (r) => r.status === 'accepted' && r.scriptPubKey !== undefined)).map((r) => ({ id: r.id, scriptPubKey: r.scriptPubKey!, sats: r.sats }));
    if (pending.length === 0) return;
    const utxos = await listUnspent(this.o.store);
    const plan = buildPayments(pending, utxos, await this.o.fees.rate(), this.o.federation, { maxOutputs: this.o.maxOutputs });
    for (const d of plan.deferred) this.o.log.info('request_deferred', { request: d.id, reason: d.reason });
    for (const payment of plan.payments) {
      const proposal = proposalFromPayment(payment, slot, this.myKey);
      const outcome = await signProposal(this.o.store, this.o.pool, this.o.federation, proposal, this.o.fees);
      if (!outcome.ok) {
        this.o.log.warn('own_proposal_refused', { reason: outcome.reason, detail: outcome.detail });
        continue;
      }
      this.o.log.info('proposed', { txid: outcome.txid, slot, requests: proposal.requestIds.length, inputs: proposal.prevouts.length });
      this.o.network.broadcast('proposal', proposal);
      this.o.network.broadcast('signatures', { txid: outcome.txid, signatures: outcome.signatures } satisfies SignaturesBody);
      await this.track(proposal, outcome.signatures);
    }
  }

  private async onProposal(peer: string, proposal: Proposal): Promise<void> {
    let txid: string;
    try {
      txid = proposalTxid(proposal);
    } catch {
      this.o.log.warn('proposal_refused', { peer, reason: 'malformed_transaction' });
      return;
    }
    if (this.finalized.has(txid)) return;
    const outcome = await signProposal(this.o.store, this.o.pool, this.o.federation, proposal, this.o.fees);
    if (!outcome.ok) {
      this.o.log.warn('proposal_refused', { peer, txid, reason: outcome.reason, detail: outcome.detail });
      return;
    }
    if (!outcome.already) this.o.log.info('signed', { txid, peer, inputs: proposal.prevouts.length });
    this.o.network.broadcast('signatures', { txid, signatures: outcome.signatures } satisfies SignaturesBody);
    await this.track(proposal, outcome.signatures);
  }

  /** Starts collecting for a proposal this member signed, with its own and any early signatures. */
  private async track(proposal: Proposal, own: Uint8Array): Promise<void> {
    const tx = proposalTx(proposal);
    const txid = this.collector.open(tx, proposal.prevouts);
    this.proposals.set(txid, proposal);
    await this.add(txid, this.myKey, own);
    for (const [peer, sigs] of this.early.get(txid) ?? []) await this.add(txid, peer, sigs);
    this.early.delete(txid);
  }

  private async onSignatures(peer: string, body: SignaturesBody): Promise<void> {
    if (this.finalized.has(body.txid)) return;
    if (!this.proposals.has(body.txid)) {
      // only proposals this member signed are collected; keep a few early arrivals
      if (this.early.size < 1000) this.early.set(body.txid, (this.early.get(body.txid) ?? new Map()).set(peer, body.signatures));
      return;
    }
    await this.add(body.txid, peer, body.signatures);
  }

  private async add(txid: string, member: string, signatures: Uint8Array): Promise<void> {
    const n = signatures.length / 64;
    try {
      await this.collector.add(txid, { pubkey: Buffer.from(member, 'hex'), signatures: Array.from({ length: n }, (_, i) => signatures.subarray(i * 64, i * 64 + 64)) });
    } catch (err) {
      this.o.log.warn('signatures_refused', { txid, member, error: err as Error });
      return;
    }
    if (this.collector.count(txid) >= this.o.federation.threshold) await this.finalize(txid);
  }

  private async finalize(txid: string): Promise<void> {
    const proposal = this.proposals.get(txid)!;
    const signed = this.collector.finalize(txid);
    checkFinalizedWitnesses(signed, proposal.prevouts, this.o.federation);
    await this.o.store.exclusive(async () => {
      const batch = this.o.store.batch();
      const at = new Date().toISOString();
      batch.put(finalizedKey(txid), { txid, tx: serializeTx(signed), requestIds: [...proposal.requestIds], at } satisfies FinalizedRecord);
      for (const id of proposal.requestIds) {
        const r = await getRequest(batch, id);
        if (r && r.status === 'batched') stageStatus(batch, r, 'signed', at, `finalized in ${txid}`);
      }
      await batch.write({ sync: true });
    });
    this.finalized.add(txid);
    this.collector.forget(txid);
    this.proposals.delete(txid);
    this.o.log.info('finalized', { txid, signers: this.o.federation.threshold });
    await this.o.onFinalized(txid, signed);
  }

  /** On (re)connect: the peer gets every open proposal this member signed, with its signatures. */
  private async announce(peer: string): Promise<void> {
    for (const [txid, proposal] of this.proposals) {
      const record = await this.o.store.get<SignatureRecord>(signatureMadeKey(txid));
      if (!record) continue;
      this.o.network.send(peer, 'proposal', proposal);
      this.o.network.send(peer, 'signatures', { txid, signatures: record.signatures } satisfies SignaturesBody);
    }
  }
}

/**
 * Without Bitcoin Core (the devnet) a finalized payment is accounted for locally: its inputs
 * are spent and its change becomes a federation output that exists on no chain.
 */
export async function accountLocally(store: Store, federation: Federation, tx: Transaction): Promise<void> {
  const txid = txidOf(tx);
  await store.exclusive(async () => {
    const batch = store.batch();
    for (const input of tx.inputs) await spendUtxo(batch, input, txid);
    for (const [vout, output] of tx.outputs.entries()) {
      if (Buffer.compare(output.scriptPubKey, federation.scriptPubKey) === 0) await registerUtxo(batch, { txid, vout, value: output.value, scriptPubKey: output.scriptPubKey, height: 0 });
    }
    await batch.write({ sync: true });
  });
}
