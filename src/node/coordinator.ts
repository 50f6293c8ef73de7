import { setImmediate } from 'node:timers/promises';
import { equal, toHex } from '../bitcoin/bytes.js';
import type { Federation } from '../bitcoin/federation.js';
import { parseTx, serializeTx, txid as txidOf, type Transaction } from '../bitcoin/tx.js';
import { AWAITING_FINAL, countsInOutflow, getRequest, stageStatus } from '../evm/request-store.js';
import type { Metrics } from '../metrics/metrics.js';
import * as stages from '../metrics/stages.js';
import type { PeerNetwork } from '../p2p/network.js';
import { SigningError } from '../signing/errors.js';
import { SignatureCollector, verifyFinalizedWitnesses } from '../signing/collector.js';
import type { SigningPool } from '../signing/pool.js';
import {
  finalizedKey,
  openPaymentKey,
  proposalKey,
  signatureMadeKey,
  signatureReceivedKey,
  signatureReceivedPrefix,
} from '../storage/keys.js';
import type { Store } from '../storage/store.js';
import { targetRate } from '../wallet/fee.js';
import { buildTestMerge } from '../wallet/handoff.js';
import {
  buildMerge,
  buildPayments,
  maxPaymentInputs,
  paysRequest,
  type PaymentRequest,
  type SpendableUtxo,
} from '../wallet/payment.js';
import { checkProposal, PROPOSAL_CAPS, proposalFromPayment, type CheckedProposal } from '../wallet/proposal.js';
import { getUtxos, largestUnspent, listUnspent, outpointText, spendableAt } from '../wallet/utxos.js';
import { BEHIND } from '../wallet/verdict.js';
import { peerLog, type Logger, type PeerLog } from './log.js';
import { isUnsettled, openPayments, recordFinalized } from './finalize.js';
import { handoffProposals, handoffView } from './handoff.js';
import { EarlySignatures } from './early-signatures.js';
import {
  checkFinalizedCommitment,
  finalizedBodyOf,
  ownFinalizedBody,
  parseFinalizedBody,
  registerMessages,
  type SignaturesBody,
} from './messages.js';
import { conflictsWithAll, groupRivals, type Rival } from './rivals.js';
import { proposerOf, slotAt, TURN_GRACE_SLOTS, turnHeldBy } from './rotation.js';
import { bucketOf, TokenBucket } from '../p2p/ratelimit.js';
import { ANCESTRY, chainView, handoffState, signProposal, type SigningPolicy } from './signer.js';
import { stageOutflowNow, type Outflow } from './outflow.js';
import { overRequestLimit } from '../wallet/limits.js';
import type { FinalizedBody, FinalizedRecord, Proposal, SignatureRecord, UtxoRecord } from '../storage/records.js';

// The transaction coordinator: proposer rotation, proposals, signatures and finalized payments
// over the member links, collection, finalization. Every decision to sign goes through the
// signer; every finalized payment, whoever finalized it, goes through recordFinal.

export interface CoordinatorOptions {
  readonly store: Store;
  readonly federation: Federation;
  readonly pool: SigningPool;
  readonly network: PeerNetwork;
  /** This member's signing rules (fee policy from its own estimate, depths), read fresh for each decision. */
  readonly policy: () => Promise<SigningPolicy>;
  /** Confirmations at which a payment is paid (SigningPolicy.paidDepth, known without asking the node). */
  readonly paidDepth: number;
  readonly maxOutputs: number;
  /** Length of a proposer's turn; the proposer of slot s is sorted key s mod n (see proposerOf). */
  readonly slotMs: number;
  readonly log: Logger;
  /** A payment is finalized and recorded: broadcast it, or account for it locally. */
  readonly onFinalized: (record: FinalizedRecord) => Promise<void>;
  /** A finalized payment's record gained requests ingested after it was finalized. */
  readonly onLateMatched?: (record: FinalizedRecord) => Promise<void>;
  /** Replacements (BIP125) this member, as proposer, should put to the federation now. */
  readonly replacements?: (rate: number) => Promise<Proposal[]>;
  readonly metrics?: Metrics;
  readonly now?: () => number;
  /** Asks the EVM observer to read the chain now: a proposal named a request not ingested here yet. */
  readonly catchUp?: () => void;
  /**
   * Fetches a federation output this member does not know from Bitcoin Core (SPEC §2: accepted
   * only if it pays the federation script and is unspent); throws when it is not one.
   */
  readonly recoverInput?: (outpoint: { txid: string; vout: number }) => Promise<unknown>;
  /** Which queued requests the limits let this member pay now, and the operators' holds. */
  readonly outflow: Outflow;
  /** This member is paused (node/safety.ts): it proposes nothing, and its signer refuses everything. */
  readonly paused: () => boolean;
}

/** Slots an open payment may go without progress before the proposer treats it as stuck against its rivals. */
export const STALE_SLOTS = 4;
/**
 * Slots a stale group of rivals waits, at most, for a payment still moving that conflicts with all of
 * them (a merge another member proposed, say): a malicious member sending a fresh such payment every
 * STALE_SLOTS would otherwise hold the merge back, and the requests unpaid, for good.
 */
export const HELD_BACK_SLOTS = 2 * STALE_SLOTS;

/**
 * Bounds on what peers can make this member hold (SPEC §3: every cache a peer can fill is
 * bounded); beyond them frames are dropped and counted, and the honest path never needs more.
 */
export const COORDINATOR_CAPS = {
  /**
   * Unknown inputs of one proposal looked up in Bitcoin Core: an honest proposal has at most a few the observer
   * missed.
   */
  recoverPerProposal: 4,
  /**
   * The unknown inputs of a peer's proposals looked up, per second and saved up: each is a call or two to
   * Bitcoin Core. An honest proposal names an input this member does not know only while its observer is
   * a block behind, and is checked again when it catches up.
   */
  lookups: { perSecond: 1, burst: 16 },
  /** Proposals kept for retry or as rivals, or until the operator acts, all peers together. */
  retry: 1000,
  rivals: 1000,
  /**
   * Of those, charged to one peer in each map (each entry to every peer that sent it): past it the
   * peer's own oldest is dropped, so a peer that floods them pushes out only what it alone sent. An
   * honest proposer's turn makes about a dozen.
   */
  retryPerPeer: 64,
  /** Txids a peer announced finalized with signatures that did not verify, remembered a peer. */
  forgedPerPeer: 64,
  /**
   * A peer's questions for finalized payments ('unnamed'), per second and saved up: each is a read,
   * and an answer of up to a thousand outputs and request ids encoded and sent. An honest member asks
   * for the few payments it cannot name, once every askGapMs each.
   */
  answers: { perSecond: 2, burst: 32 },
  /** How often this member asks its peers again for one payment it cannot name. */
  askGapMs: 10_000,
  /** Payments this member remembers asking for (a payment found on the chain each; past it the oldest is forgotten). */
  asked: 128,
  /**
   * The checking a peer's proposals may cost this member, in requests and inputs named (each is read
   * and checked, whether the proposal is signed or refused), charged as a frame arrives, and in the
   * earlier payments of those requests the check read (their records and inputs, SignOutcome.work),
   * charged after, per second and saved up. An honest
   * proposer's turn names each queued request once: 10,000 final at once are 10,000, and the
   * federation's whole throughput (SPEC: 4,000 a second at 2-of-3) is shared by the proposers. A peer
   * past it has its proposals dropped until the budget refills, and it alone waits.
   */
  proposalWork: { perSecond: 10_000, burst: 100_000 },
  /**
   * Finalized payments kept to announce to a peer that (re)connects, the last kept (the newest while
   * the member runs; after a restart, recover() keeps the last in txid order): each holds its whole
   * body (up to a thousand outputs and request ids), and without Bitcoin Core to settle them (declared
   * funding) or while it is down they would accumulate for ever. A peer that was away for longer
   * learns the others from the chain (settlement's chainpay/), or from the members that finalized them.
   */
  unsettled: 128,
  /**
   * What a peer that links is sent (open proposals, unsettled payments, up to a few MB) goes at most
   * once in this long to each peer; a peer that links again sooner gets it when the time has passed.
   * A peer dropping and making its links as fast as the link layer admits them would otherwise have
   * this member encode and send all of it each time.
   */
  announceGapMs: 5_000,
} as const;

interface OpenProposal {
  /** Parsed once, when it arrived or was built. */
  readonly checked: CheckedProposal;
  /** When it last made progress here: arrived, or brought a member's signatures for the first time (ms). */
  since: number;
  /**
   * Members whose signatures counted as progress (at most n): the same set sent again is none, or a
   * member repeating it would keep a stuck payment from ever being merged.
   */
  readonly heard: Set<string>;
  /** How many times this member sent its set again since the proposal came (see resendStalled). */
  resent?: number;
}

/**
 * Where a signature set came from. `signed_here`: this member's, fresh from its pool, which verified
 * it as it signed; `stored`: read back from the store (a restart, or a proposal signed before),
 * verified again; `received`: a peer's, kept once verified.
 */
type SetOrigin = 'signed_here' | 'stored' | 'received';

/** This member's signatures on a payment. */
interface OwnSet {
  readonly signatures: Uint8Array;
  readonly origin: Exclude<SetOrigin, 'received'>;
}

/** A signing outcome's set: one signed before (a record read back) is verified again when collected. */
function ownSet(outcome: { signatures: Uint8Array; already: boolean }): OwnSet {
  return { signatures: outcome.signatures, origin: outcome.already ? 'stored' : 'signed_here' };
}

/** A proposal kept for later, charged to every peer that sent it. */
interface Charged {
  readonly from: Set<string>;
}

/**
 * Keeps `make()` under `key` in `map`, charged to `peer`. One kept already is charged to `peer` too
 * and stays as it first came: sent again, by anyone, it resets nothing (a rival's staleness counts
 * from its arrival). A peer's charges past COORDINATOR_CAPS.retryPerPeer push out its own oldest
 * entry that no other peer sent (one another peer sent too is no longer charged to it), so a flood
 * costs the flooder only, whatever it sends again; no entry is added past `total`. False when it
 * was not kept.
 */
function keepForPeer<V extends Charged>(
  map: Map<string, V>,
  key: string,
  peer: string,
  make: () => V,
  total: number,
): boolean {
  const kept = map.get(key);
  if (kept !== undefined) {
    kept.from.add(peer);
    return true;
  }
  let count = 0;
  let alone: string | undefined;
  let shared: V | undefined;
  for (const [k, v] of map) {
    if (!v.from.has(peer)) continue;
    count++;
    if (v.from.size === 1) alone ??= k;
    else shared ??= v;
  }
  if (count >= COORDINATOR_CAPS.retryPerPeer) {
    if (alone !== undefined) map.delete(alone);
    else shared!.from.delete(peer);
  }
  if (map.size >= total) return false;
  map.set(key, make());
  return true;
}

export class Coordinator {
  private readonly collector: SignatureCollector;
  /** Proposals this member signed, collecting signatures. */
  private readonly proposals = new Map<string, OpenProposal>();
  /** Blocking payments already shown to a peer (peer/txid), so each is sent once (bounded). */
  private readonly shown = new Set<string>();
  /** Proposals refused as a second payment of requests this member signed elsewhere, and who sent them (bounded). */
  private readonly rivals = new Map<string, OpenProposal & Charged>();
  /** Since when each stale rival or proposal has been held back from a merge by a payment still moving (heldBack()). */
  private readonly holds = new Map<string, number>();
  /**
   * Signatures that arrived before their proposal, or for another member's proposal while its
   * proposer collects (bounded: EARLY_CAPS).
   */
  private readonly early: EarlySignatures;
  /**
   * Another member's proposals this member signed and does not collect yet (see track()): this
   * member's own set, since when (ms), and the sets peers sent for it meanwhile (one a member). At
   * most one entry per proposal in `proposals`.
   */
  private readonly deferred = new Map<string, { own: OwnSet; since: number; sets: Map<string, Uint8Array> }>();
  /** Finalized payments not yet paid, announced to peers that (re)connect (bounded: keepUnsettled). */
  private readonly unsettled = new Map<string, FinalizedBody>();
  private timer?: NodeJS.Timeout;
  private lastSlot = -1;
  /**
   * Requests paid by finalized payments before this member ingested them: id → each payment and its
   * output (a payment and its replacement may both be finalized; whichever confirms pays it).
   */
  private readonly late = new Map<string, { txid: string; output: number }[]>();
  /** Proposals refused for naming requests this member had not ingested yet: tried again as its EVM view catches up. */
  private readonly retry = new Map<
    string,
    Charged & { peer: string; checked: CheckedProposal; tries: number; at: number }
  >();
  /**
   * When a proposer's last turn frame or proposal arrived, and the slot of the turn it held: at work until a slot
   * passes without one, but never past its grace, so that it can hold no turn but the one after its own.
   */
  private lastPeerTurn = { at: -Infinity, slot: -Infinity };
  /** Proposers that announced a turn (the slot) and have not yet said it is done. */
  private readonly building = new Map<string, number>();
  /**
   * Frames taken from the links and not yet handled: a turn waits for them (a peer's turn_done overtakes its queued
   * proposals).
   */
  private queued = 0;
  private busy: Promise<void> = Promise.resolve();
  private readonly myKey: string;
  /** Per peer, payments it announced finalized whose signatures did not verify (see noteForged). */
  private readonly forged = new Map<string, Set<string>>();
  /** Peers that said they are paused (at most n entries). */
  private readonly pausedPeers = new Set<string>();
  /**
   * Proposals refused for what this member's operator has not done yet (it is paused, or it has not released a held
   * request): put to the signer again when the operator resumes or releases (bounded).
   */
  private readonly awaitingOperator = new Map<string, Charged & { peer: string; checked: CheckedProposal }>();
  /** Refusals of peers' frames, a bounded number of lines for each peer. */
  private readonly peerLog: PeerLog;
  /** When each peer (a member: at most n) was last announced to, and the announcement waiting for the gap. */
  private readonly announced = new Map<string, { at: number; timer?: NodeJS.Timeout }>();
  /** What each peer's proposals may still cost this member's checks (COORDINATOR_CAPS.proposalWork; at most n). */
  private readonly work = new Map<string, TokenBucket>();
  /** The questions each peer may still ask for finalized payments (COORDINATOR_CAPS.answers; at most n). */
  private readonly answers = new Map<string, TokenBucket>();
  /** What each peer's proposals may still have looked up in Bitcoin Core (COORDINATOR_CAPS.lookups; n at most). */
  private readonly lookups = new Map<string, TokenBucket>();
  /** When each peer was last sent each payment it asked for (at most n peers, answers.burst payments each). */
  private readonly answered = new Map<string, Map<string, number>>();
  /** When this member last asked its peers for each payment it cannot name (COORDINATOR_CAPS.asked). */
  private readonly asked = new Map<string, number>();

  constructor(private readonly o: CoordinatorOptions) {
    this.peerLog = peerLog(o.log);
    this.collector = new SignatureCollector(o.federation, o.pool.verifyTransaction);
    this.early = new EarlySignatures(() => o.metrics?.framesDropped.inc({ reason: 'early_signatures_evicted' }));
    this.myKey = o.network.key;
  }

  /** Runs `fn` after everything queued before it: messages and ticks never interleave. */
  private serial(fn: () => Promise<void>): Promise<void> {
    this.busy = this.busy.then(fn).catch((err: Error) => this.o.log.error('coordinator_error', { error: err }));
    return this.busy;
  }

  /**
   * A peer's proposal, signatures or finalized payment, handed over by the links one frame at a
   * time per peer: the links hold what waits behind it within LINK_CAPS (src/p2p/limits.ts).
   */
  private async handle(peer: string, type: string, body: unknown): Promise<void> {
    const fn =
      type === 'proposal'
        ? () => this.onProposalFrame(peer, body)
        : type === 'signatures'
          ? () => this.onSignatures(peer, body as SignaturesBody)
          : type === 'finalized'
            ? () => this.onFinalizedFrame(peer, body as FinalizedBody)
            : type === 'release'
              ? async () => void (await this.o.outflow.peerReleased(peer, body as string))
              : type === 'unnamed'
                ? () => this.onUnnamedFrame(peer, body as string)
                : undefined;
    if (!fn || (type === 'proposal' && !this.withinProposalWork(peer, body))) return;
    this.queued++;
    await this.serial(() => fn().finally(() => this.queued--));
  }

  /** Turn bookkeeping from a peer's frame: only the member whose turn it is can hold one. */
  private onTurnFrame(peer: string, type: string, body: unknown): void {
    const now = this.o.now?.() ?? Date.now();
    const slot = turnHeldBy(peer, now, this.o.slotMs, this.o.federation.pubkeys);
    if (slot === undefined) {
      if (type !== 'proposal') this.o.metrics?.framesDropped.inc({ reason: 'turn_out_of_slot' });
      return;
    }
    this.lastPeerTurn = { at: now, slot };
    if (type === 'turn' && body === slot) this.building.set(peer, slot);
    if (type === 'turn_done') this.building.delete(peer);
  }

  async start(): Promise<void> {
    const net = this.o.network;
    registerMessages(net);
    // turns are bookkeeping, done as frames arrive; the rest waits in the links' bounded queues
    net.on('message', (peer: string, type: string, body: unknown) => {
      if (type === 'proposal' || type === 'turn' || type === 'turn_done') this.onTurnFrame(peer, type, body);
      if (type === 'paused') void (body === true ? this.pausedPeers.add(peer) : this.pausedPeers.delete(peer));
    });
    net.on('peer_down', (peer: string) => this.pausedPeers.delete(peer));
    net.handle((peer, type, body) => this.handle(peer, type, body));
    net.on('peer', (peer: string) => this.announceSoon(peer));
    await this.serial(() => this.recover());
    this.timer = setInterval(() => void this.serial(() => this.tick()), Math.max(10, Math.floor(this.o.slotMs / 4)));
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    for (const { timer } of this.announced.values()) clearTimeout(timer);
    await this.busy;
  }

  /** Announces to `peer` now, or once COORDINATOR_CAPS.announceGapMs have passed since the last time (one pending). */
  private announceSoon(peer: string): void {
    const last = this.announced.get(peer);
    if (last?.timer) return;
    const send = (): void => {
      this.announced.set(peer, { at: Date.now() });
      void this.serial(() => this.announce(peer));
    };
    const wait = last ? last.at + COORDINATOR_CAPS.announceGapMs - Date.now() : 0;
    if (wait <= 0) send();
    else this.announced.set(peer, { at: last!.at, timer: setTimeout(send, wait) });
  }

  /**
   * After a restart: proposals this member signed and has not seen finalized, with the signatures it had received;
   * finalized payments not yet paid.
   */
  private async recover(): Promise<void> {
    for await (const { txid, made, finalized: f } of openPayments(this.o.store)) {
      if (f) {
        if (await isUnsettled(this.o.store, f, this.o.paidDepth)) this.keepUnsettled(f.txid, finalizedBodyOf(f));
        for (const [id, output] of Object.entries(f.unmatched ?? {})) this.addLate(id, f.txid, output);
        continue;
      }
      if (made) await this.resume(txid, made);
    }
  }

  /** Collects again a payment this member signed, with the sets it had received: after a restart, or revived. */
  private async resume(txid: string, made: SignatureRecord): Promise<void> {
    const proposal = await this.o.store.get<Proposal>(proposalKey(txid));
    if (!proposal) return;
    await this.track(checkProposal(proposal), { signatures: made.signatures, origin: 'stored' }, true);
    for await (const [key, sigs] of this.o.store.entries<Uint8Array>({ prefix: signatureReceivedPrefix(txid) })) {
      await this.add(txid, key.slice(key.lastIndexOf('/') + 1), sigs, 'stored');
    }
  }

  /**
   * Payments this member signed that a finalized one had superseded, in flight again since that one
   * lost (settlement.ts): collected again, and so announced to peers that link and merged when they stall.
   */
  revived(txids: readonly string[]): Promise<void> {
    return this.serial(async () => {
      for (const txid of txids) {
        // in flight still when its turn in the queue came: not finalized or closed since
        const [made, open, final] = await this.o.store.getMany<unknown>([
          signatureMadeKey(txid),
          openPaymentKey(txid),
          finalizedKey(txid),
        ]);
        if (made && open && !final && !this.proposals.has(txid)) await this.resume(txid, made as SignatureRecord);
      }
    });
  }

  private addLate(id: string, txid: string, output: number): void {
    const payments = this.late.get(id) ?? [];
    if (!payments.some((p) => p.txid === txid)) this.late.set(id, [...payments, { txid, output }]);
  }

  /**
   * Requests that were paid before this member ingested them, now ingested: counted in the record of
   * each payment whose output pays them, so settlement carries them on to 'broadcast' and 'paid'
   * with the others whichever of them confirms, and moved to 'signed' unless another payment moved
   * them on already.
   */
  private async matchLate(): Promise<void> {
    if (this.late.size === 0) return;
    // requests moved to 'signed', by payment: logged as each 'finalized' line counts its own
    const matched = new Map<string, number>();
    const changed = await this.o.store.transaction(async (batch) => {
      const at = new Date().toISOString();
      const records = new Map<string, FinalizedRecord>();
      // not ingested when the payment was recorded, so not counted in the rolling cap then
      let firstPaid = 0n;
      for (const [id, payments] of this.late) {
        let r = await getRequest(batch, id);
        if (!r) continue;
        this.late.delete(id);
        for (const { txid, output } of payments) {
          const f = records.get(txid) ?? (await this.o.store.get<FinalizedRecord>(finalizedKey(txid)));
          const out = f && parseTx(f.tx).outputs[output];
          if (!f || !r.scriptPubKey || !out || !paysRequest(out, { scriptPubKey: r.scriptPubKey, sats: r.sats }, f.fee))
            continue;
          if (AWAITING_FINAL.has(r.status)) {
            if (countsInOutflow(r)) firstPaid += r.sats;
            r = stageStatus(batch, r, 'signed', at, `finalized in ${txid}`);
          }
          matched.set(txid, (matched.get(txid) ?? 0) + 1);
          const { [id]: _matched, ...unmatched } = f.unmatched;
          records.set(txid, { ...f, requestIds: [...f.requestIds, id], unmatched });
        }
      }
      // followed again, after a restart too: its late requests are 'signed' now, not paid
      for (const [txid, f] of records) batch.put(finalizedKey(txid), f).put(openPaymentKey(txid), 1);
      await stageOutflowNow(batch, this.o.outflow.limits, firstPaid);
      return [...records.values()];
    });
    for (const [txid, requests] of matched) this.o.log.info('late_matched', { txid, requests });
    for (const record of changed) await this.o.onLateMatched?.(record);
  }

  /** What peers currently make this member hold: each bounded by COORDINATOR_CAPS. */
  held(): {
    earlySets: number;
    earlyBytes: number;
    queued: number;
    retry: number;
    rivals: number;
    awaitingOperator: number;
    unsettled: number;
  } {
    const early = this.early.size();
    return {
      earlySets: early.sets,
      earlyBytes: early.bytes,
      queued: this.queued,
      retry: this.retry.size,
      rivals: this.rivals.size,
      awaitingOperator: this.awaitingOperator.size,
      unsettled: this.unsettled.size,
    };
  }

  /** This member's operator released held request `id`: recorded, then told to every peer. */
  async release(id: string): Promise<void> {
    await this.o.outflow.release(id);
    this.o.network.broadcast('release', id);
    this.retryAwaitingOperator();
  }

  /** This member paused or resumed: its peers count paused members for their health reports. */
  pauseChanged(paused: boolean): void {
    this.o.network.broadcast('paused', paused);
    if (!paused) this.retryAwaitingOperator();
  }

  private retryAwaitingOperator(): void {
    const waiting = [...this.awaitingOperator.values()];
    this.awaitingOperator.clear();
    void this.serial(async () => {
      for (const { peer, checked } of waiting) await this.onProposal(peer, checked);
    });
  }

  /** Members (this one included) that are paused, as far as this member knows. */
  pausedMembers(): number {
    return this.pausedPeers.size + (this.o.paused() ? 1 : 0);
  }

  /** Keeps `body` to announce; past COORDINATOR_CAPS.unsettled the oldest kept is dropped. */
  private keepUnsettled(txid: string, body: FinalizedBody): void {
    this.unsettled.set(txid, body);
    if (this.unsettled.size > COORDINATOR_CAPS.unsettled) this.unsettled.delete(this.unsettled.keys().next().value!);
  }

  /**
   * A payment confirmed on the chain whose requests this member cannot name (node/settlement.ts):
   * its peers are asked for it, at most once every COORDINATOR_CAPS.askGapMs.
   */
  askFinalized(txid: string): void {
    const now = Date.now();
    const last = this.asked.get(txid);
    if (last !== undefined && now - last < COORDINATOR_CAPS.askGapMs) return;
    this.asked.delete(txid);
    if (this.asked.size >= COORDINATOR_CAPS.asked) this.asked.delete(this.asked.keys().next().value!);
    this.asked.set(txid, now);
    this.o.network.broadcast('unnamed', txid);
  }

  /**
   * `peer` cannot name the requests of a payment it found on the chain: sent this member's record of it
   * as a finalized frame, which it checks like any (the commitment names them, t signatures verify).
   * Each question, answered or not, is taken from the peer's budget (COORDINATOR_CAPS.answers), and
   * one payment goes to one peer at most once every askGapMs, as often as an honest member asks.
   */
  private async onUnnamedFrame(peer: string, txid: string): Promise<void> {
    if (!this.budgetOf(this.answers, peer, COORDINATOR_CAPS.answers).take()) {
      this.o.metrics?.framesDropped.inc({ reason: 'answer_budget' });
      return;
    }
    const now = this.o.now?.() ?? Date.now();
    const sent = bucketOf(this.answered, peer, this.o.federation.pubkeys.length, () => new Map<string, number>());
    const last = sent.get(txid);
    if (last !== undefined && now - last < COORDINATOR_CAPS.askGapMs) return;
    const f = await this.o.store.get<FinalizedRecord>(finalizedKey(txid));
    if (!f) return;
    sent.delete(txid);
    if (sent.size >= COORDINATOR_CAPS.answers.burst) sent.delete(sent.keys().next().value!);
    sent.set(txid, now);
    this.o.network.send(peer, 'finalized', finalizedBodyOf(f));
  }

  /** A finalized payment whose requests are all paid (or that lost to a conflicting one) is no longer announced. */
  settled(txid: string): void {
    this.unsettled.delete(txid);
  }

  /** `ingested`: the EVM observer just ingested requests; the slot's proposer pays them at once. */
  private async tick(ingested = false): Promise<void> {
    // store reads are synchronous, so a long run of work never reads the sockets: let frames
    // that arrived meanwhile be counted before deciding whether a turn may start
    await setImmediate();
    const now = this.o.now?.() ?? Date.now();
    // first: nothing a retried proposal throws may keep a deferred payment from being collected
    await this.collectDeferred(now);
    await this.resendStalled(now);
    await this.retryWaiting((r) => now - r.at >= this.o.slotMs);
    const slot = slotAt(now, this.o.slotMs);
    if (proposerOf(slot, this.o.federation.pubkeys) !== this.myKey) return;
    if (slot === this.lastSlot) {
      // this member's turn is under way and no other proposer is at work: requests that became
      // final during it need not wait for the next turn
      if (ingested) await this.turn(slot, async () => []);
      return;
    }
    // Two proposers paying the same requests from different inputs split the signers (each
    // refuses the second as a double payment) until merges() unblocks them, STALE_SLOTS later
    // and at the cost of another signing round. So a turn starts once the previous proposer said
    // it is done and every payment this member signed is finalized, or, should it never say so
    // (it crashed, or payments are stuck), once it has been quiet for a whole slot. A proposer that
    // keeps sending frames through its grace can so take the next one its slot (docs/config.md):
    // starting anyway after part of the slot made an honest slow proposer's successor pay the same
    // requests again (a 500-input payment with the JS backend outlasts half a slot).
    for (const [peer, turn] of this.building) if (turn < slot - TURN_GRACE_SLOTS) this.building.delete(peer);
    const waiting = this.queued + this.o.network.stats.queued;
    const settled = this.building.size === 0 && waiting === 0 && this.proposals.size === 0 && this.retry.size === 0;
    const { at, slot: held } = this.lastPeerTurn;
    if (!settled && held >= slot - TURN_GRACE_SLOTS && now - at < this.o.slotMs) return;
    this.lastSlot = slot;
    await this.turn(slot, async (rate, policy) => {
      await this.matchLate();
      const merges = await stages.timeAsync('proposal_build', () => this.merges(rate, policy, now, slot));
      return [...((await this.o.replacements?.(rate)) ?? []), ...merges];
    });
  }

  /**
   * A proposer's turn, announced before it builds (that takes a while for a large batch) and closed when its
   * proposals are out.
   */
  private async turn(slot: number, first: (rate: number, policy: SigningPolicy) => Promise<Proposal[]>): Promise<void> {
    this.o.network.broadcast('turn', slot);
    try {
      const policy = await this.o.policy();
      const rate = targetRate(policy.fee);
      this.o.metrics?.feeRate.set(rate);
      await this.propose(slot, rate, policy, await first(rate, policy));
    } finally {
      this.o.network.broadcast('turn_done', slot);
    }
  }

  /** Signs and sends `proposals`, then payments of every pending request they leave out. */
  private async propose(slot: number, rate: number, policy: SigningPolicy, proposals: Proposal[]): Promise<void> {
    if (this.o.paused()) return;
    await stages.timeAsync('proposal_build', () => this.addPayments(slot, rate, policy, proposals));
    for (const built of proposals) {
      const started = performance.now();
      const checked = stages.time('proposal_build', () =>
        checkProposal({ ...built, round: slot, proposer: this.myKey }),
      );
      const { proposal } = checked;
      const outcome = await signProposal(this.o.store, this.o.pool, this.o.federation, checked, policy, this.myKey);
      if (!outcome.ok) {
        this.o.metrics?.rounds.inc({ outcome: 'own_proposal_refused' });
        this.o.log.warn('own_proposal_refused', { reason: outcome.reason, detail: outcome.detail });
        continue;
      }
      this.o.metrics?.rounds.inc({ outcome: 'proposed' });
      this.o.metrics?.signingLatency.observe((performance.now() - started) / 1000);
      this.o.metrics?.signaturesMade.inc(proposal.prevouts.length);
      this.o.log.info('proposed', {
        txid: outcome.txid,
        slot,
        requests: proposal.requestIds.length,
        inputs: proposal.prevouts.length,
      });
      this.o.network.broadcast('proposal', proposal);
      this.o.network.broadcast('signatures', {
        txid: outcome.txid,
        signatures: outcome.signatures,
      } satisfies SignaturesBody);
      await this.track(checked, ownSet(outcome));
    }
  }

  /** Adds to `proposals` payments of every pending request they leave out. */
  private async addPayments(slot: number, rate: number, policy: SigningPolicy, proposals: Proposal[]): Promise<void> {
    const merged = new Set(proposals.flatMap((p) => p.requestIds));
    const pending: PaymentRequest[] = (await this.o.outflow.plan()).flatMap((r) =>
      r.scriptPubKey && !merged.has(r.id) ? [{ id: r.id, scriptPubKey: r.scriptPubKey, sats: r.sats }] : [],
    );
    // a request over the per-request limit goes in a payment of its own: a member that has not
    // released it refuses that payment alone (a peer lying about its release stalls nothing else)
    const batches = [
      pending.filter((r) => !overRequestLimit(r.sats, policy.limits)),
      ...pending.filter((r) => overRequestLimit(r.sats, policy.limits)).map((r) => [r]),
    ];
    // the largest outputs, two full payments' worth: each turn pays what they fund, and the outputs
    // it reserves leave the index for the next turn's; dust anyone sent is never read
    let spendable = pending.length > 0 ? await this.spendable(policy, 2 * maxPaymentInputs(this.o.federation)) : [];
    for (const batch of batches.filter((b) => b.length > 0)) {
      const plan = buildPayments(batch, spendable, rate, this.o.federation, {
        maxOutputs: this.o.maxOutputs,
        maxSharePerRequest: policy.fee.maxSharePerRequest,
      });
      for (const d of plan.deferred) this.o.log.debug('request_deferred', { request: d.id, reason: d.reason });
      proposals.push(...plan.payments.map((p) => proposalFromPayment(p, slot, this.myKey)));
      const used = new Set(plan.payments.flatMap((p) => p.prevouts.map(outpointText)));
      spendable = spendable.filter((u) => !used.has(outpointText(u)));
    }
    // a rotation's handoff goes in a turn that pays nothing (the new set's first funds are too few
    // to pay a request), one round of it at a time
    const open = [...this.proposals.values()].some((p) => p.checked.proposal.requestIds.length === 0);
    if (policy.handoff && proposals.length === 0 && !open) {
      const chain = await chainView(this.o.store, policy.spendDepth);
      const view = await handoffState(this.o.store, policy.handoff, chain, policy.paidDepth);
      const handoffs = await handoffProposals(this.o.store, view, await this.spendable(policy), rate);
      proposals.push(...handoffs.map((h) => proposalFromPayment(h, slot, this.myKey)));
    }
  }

  /** Unreserved federation outputs deep enough to spend: all of them (a handoff sweeps them), or the `largest`. */
  private async spendable(policy: SigningPolicy, largest?: number): Promise<UtxoRecord[]> {
    const chain = await chainView(this.o.store, policy.spendDepth);
    const deep = (u: UtxoRecord): boolean => spendableAt(u, chain);
    if (largest !== undefined) return largestUnspent(this.o.store, largest, deep);
    return (await listUnspent(this.o.store)).filter(deep);
  }

  /**
   * The EVM observer ingested requests: proposals that named them are tried again at once, and the slot's proposer
   * pays them.
   */
  ingested(): void {
    void this.serial(async () => {
      await this.matchLate();
      await this.retryWaiting(() => true);
      await this.tick(true);
    });
  }

  private async retryWaiting(due: (r: { at: number }) => boolean): Promise<void> {
    // a snapshot: a proposal refused again is put back in the map and must wait its turn
    for (const [txid, r] of [...this.retry]) {
      if (!due(r)) continue;
      this.retry.delete(txid);
      // checked again at full cost, so charged again: one its sender cannot pay for is dropped
      if (!this.affords(r.peer, r.checked.proposal.requestIds.length, r.checked.proposal.prevouts.length)) continue;
      await this.onProposal(r.peer, r.checked, r.tries + 1);
    }
  }

  /**
   * Takes what checking a peer's proposal will cost from its budget (COORDINATOR_CAPS.proposalWork) as the frame
   * arrives: one over it is dropped before it waits in the queue. The lengths are read before the proposal is
   * parsed.
   */
  private withinProposalWork(peer: string, body: unknown): boolean {
    const lists = body as { requestIds?: unknown; prevouts?: unknown };
    // a list over its cap is refused at the edge before any store read: it costs nothing here
    const length = (list: unknown, cap: number): number =>
      Array.isArray(list) && list.length <= cap ? list.length : 0;
    return this.affords(
      peer,
      length(lists.requestIds, PROPOSAL_CAPS.outputs),
      length(lists.prevouts, PROPOSAL_CAPS.inputs),
    );
  }

  /** Takes checking a proposal of `requests` and `inputs` from `peer`'s budget, or says it is spent. */
  private affords(peer: string, requests: number, inputs: number): boolean {
    if (this.budgetOf(this.work, peer, COORDINATOR_CAPS.proposalWork).take(requests + inputs + 1)) return true;
    this.o.metrics?.framesDropped.inc({ reason: 'proposal_budget' });
    this.peerLog.warn(peer, 'proposal_over_budget', { peer, requests, inputs });
    return false;
  }

  /** `peer`'s budget in `budgets` (one a member: at most n), made full at `rate` when it has none. */
  private budgetOf(
    budgets: Map<string, TokenBucket>,
    peer: string,
    rate: { perSecond: number; burst: number },
  ): TokenBucket {
    const now = this.o.now ?? (() => performance.now());
    return bucketOf(
      budgets,
      peer,
      this.o.federation.pubkeys.length,
      () => new TokenBucket(rate.perSecond, rate.burst, now),
    );
  }

  /** A peer's proposal frame: parsed and checked once, here; everything after works on the checked value. */
  private async onProposalFrame(peer: string, body: unknown): Promise<void> {
    let checked: CheckedProposal;
    try {
      checked = stages.time('validation', () => checkProposal(body));
    } catch (err) {
      this.refused(peer, 'malformed_proposal', (err as Error).message);
      return;
    }
    // kept to be tried again when this member catches up or its operator acts: sent again, it is
    // neither checked again now nor given its tries back
    if (this.retry.has(checked.txid) || this.awaitingOperator.has(checked.txid)) return;
    await this.onProposal(peer, checked);
  }

  private async onProposal(peer: string, checked: CheckedProposal, tries = 0): Promise<void> {
    const started = performance.now();
    const { txid, proposal } = checked;
    if (this.unsettled.has(txid) || (await this.o.store.get(finalizedKey(txid)))) return;
    const outcome = await signProposal(
      this.o.store,
      this.o.pool,
      this.o.federation,
      checked,
      await this.o.policy(),
      peer,
    );
    if (outcome.work) this.budgetOf(this.work, peer, COORDINATOR_CAPS.proposalWork).charge(outcome.work);
    if (!outcome.ok && outcome.reason === 'unknown_input' && tries === 0 && (await this.recoverInputs(peer, checked))) {
      // checked again, whole: charged again
      this.budgetOf(this.work, peer, COORDINATOR_CAPS.proposalWork).charge(
        proposal.requestIds.length + proposal.prevouts.length + 1,
      );
      await this.onProposal(peer, checked, tries + 1);
      return;
    }
    if (!outcome.ok) {
      const at = this.o.now?.() ?? Date.now();
      if (BEHIND.has(outcome.reason) && tries < 5) {
        const kept = keepForPeer(
          this.retry,
          txid,
          peer,
          () => ({ peer, from: new Set([peer]), checked, tries, at }),
          COORDINATOR_CAPS.retry,
        );
        if (kept && tries === 0 && outcome.reason === 'unknown_request') {
          this.o.catchUp?.();
          return;
        }
      }
      if (outcome.reason === 'paused' || outcome.reason === 'request_held')
        keepForPeer(
          this.awaitingOperator,
          txid,
          peer,
          () => ({ peer, from: new Set([peer]), checked }),
          COORDINATOR_CAPS.retry,
        );
      // input_held too, for a payment of requests: one taking an input another payment holds is that
      // payment's rival, and a member that signed it refuses a merge that spends none of its inputs
      const held = outcome.reason === 'input_held' && proposal.requestIds.length > 0;
      const rival = held || outcome.reason === 'double_payment' || outcome.reason === 'handoff_done';
      if (rival)
        keepForPeer(
          this.rivals,
          txid,
          peer,
          () => ({ from: new Set([peer]), checked, since: at, heard: new Set() }),
          COORDINATOR_CAPS.rivals,
        );
      if (outcome.earlier) await this.showRival(peer, outcome.earlier);
      this.refused(peer, outcome.reason, outcome.detail, txid);
      return;
    }
    if (!outcome.already) {
      this.o.metrics?.signaturesMade.inc(proposal.prevouts.length);
      this.o.metrics?.signingLatency.observe((performance.now() - started) / 1000);
      this.o.log.info('signed', { txid, peer, inputs: proposal.prevouts.length });
    }
    const set = { txid, signatures: outcome.signatures } satisfies SignaturesBody;
    if (outcome.already && this.proposals.has(txid)) {
      // sent again while open here: its sender wants this member's set, which the others have had
      // since it was signed (or since they reconnected); a broadcast would let anyone re-sending it
      // make this member send its set n − 1 times over
      this.o.network.send(peer, 'signatures', set);
      return;
    }
    this.o.network.broadcast('signatures', set);
    await this.track(checked, ownSet(outcome));
  }

  /**
   * Rival payments of the same requests that made no progress for STALE_SLOTS: when their
   * signers split (each member signs only one of two payments of a request that do not
   * conflict), none reaches t. One payment of all their requests that spends an input of each
   * conflicts with all of them, so every member may sign it. Proposals that can no longer
   * finalize are forgotten.
   */
  private async merges(rate: number, policy: SigningPolicy, now: number, slot: number): Promise<Proposal[]> {
    const stale: (Rival & { spendable: SpendableUtxo[]; lost: boolean })[] = [];
    for (const txid of this.holds.keys())
      if (!this.proposals.has(txid) && !this.rivals.has(txid)) this.holds.delete(txid);
    const noChain = (await chainView(this.o.store, policy.spendDepth)) === null;
    // inputs of open payments still making progress: a merge another member proposed is one
    const moving: Set<string>[] = [];
    for (const [txid, open] of [...this.proposals, ...this.rivals]) {
      if (now - open.since < STALE_SLOTS * this.o.slotMs) {
        moving.push(new Set(open.checked.tx.inputs.map(outpointText)));
        continue;
      }
      // a peer's rival is read again each turn, and with its requests merged: its senders pay each time
      const { requestIds, prevouts } = open.checked.proposal;
      for (const peer of this.rivals.get(txid)?.from ?? [])
        this.budgetOf(this.work, peer, COORDINATOR_CAPS.proposalWork).charge(requestIds.length + prevouts.length + 1);
      const live = await this.liveInputs(txid, open.checked, noChain);
      if (live)
        stale.push({
          txid,
          requestIds: open.checked.proposal.requestIds,
          inputs: live.spendable.map(outpointText),
          ...live,
        });
      else this.forget(txid);
    }
    const merges = await this.mergeHandoffs(
      stale.filter((r) => r.requestIds.length === 0),
      moving,
      { rate, policy, now, slot },
    );
    // requests of the payments this member collects: a rival of one still moving waits for it to stall
    const collecting = new Set([...this.proposals.values()].flatMap((o) => o.checked.proposal.requestIds));
    for (const group of groupRivals(stale.filter((r) => r.requestIds.length > 0))) {
      // one that lost an input to a finalized payment needs a payment of its other requests even alone
      if (group.length < 2 && !group[0]!.lost) {
        for (const { txid, requestIds } of group)
          if (this.rivals.has(txid) && !requestIds.some((id) => collecting.has(id))) this.rivals.delete(txid);
        continue;
      }
      if (this.heldBack(group, moving, now)) continue;
      const ids = [...new Set(group.flatMap((r) => r.requestIds))];
      const requests: PaymentRequest[] = [];
      for (const id of ids) {
        const r = await getRequest(this.o.store, id);
        if (r?.scriptPubKey && AWAITING_FINAL.has(r.status))
          requests.push({ id, scriptPubKey: r.scriptPubKey, sats: r.sats });
      }
      const payment =
        requests.length > 0
          ? buildMerge(
              requests,
              group.map((r) => r.spendable),
              rate,
              this.o.federation,
            )
          : undefined;
      const txids = group.map((r) => r.txid);
      if (!payment) {
        this.o.log.warn('merge_impossible', { rivals: txids, requests: requests.length });
        continue;
      }
      for (const txid of txids) {
        this.rivals.delete(txid);
        const own = this.proposals.get(txid);
        if (own) own.since = now;
      }
      this.o.metrics?.rounds.inc({ outcome: 'merged' });
      this.o.log.info('merging', { rivals: txids, requests: requests.length, inputs: payment.prevouts.length });
      merges.push(proposalFromPayment(payment, slot, this.myKey));
    }
    return merges;
  }

  /**
   * The proposal's inputs as this member knows them, or undefined when it can no longer finalize or pays nothing
   * still payable. Without a chain, one another finalized payment spent is never dead (signer.ts
   * killedByConflict): in its place comes an output of that payment or of one that depends on it
   * (unspentOutputOf), since spending it conflicts with this one too (validate.ts excludes), and the
   * payment is `lost`.
   */
  private async liveInputs(
    txid: string,
    { proposal, tx }: CheckedProposal,
    noChain: boolean,
  ): Promise<{ spendable: SpendableUtxo[]; lost: boolean } | undefined> {
    if (await this.o.store.get(finalizedKey(txid))) return undefined;
    const inputs: SpendableUtxo[] = [];
    let lost = false;
    // one stand-in a spender: a payment that spent many of its inputs is read once, not once an input
    const spenders = new Set<string>();
    const utxos = await getUtxos(this.o.store, tx.inputs);
    for (const [i, o] of tx.inputs.entries()) {
      const u = utxos[i];
      const spender = u?.state === 'spent' && u.spentBy !== txid ? u.spentBy : undefined;
      if (noChain && spender && proposal.requestIds.length > 0) {
        if (spenders.has(spender)) continue;
        spenders.add(spender);
        const output = await this.unspentOutputOf(spender);
        if (!output) return undefined;
        inputs.push(output);
        lost = true;
        continue;
      }
      if (!u || u.state === 'spent') return undefined;
      if (u.reservedBy && u.reservedBy !== txid && (await this.o.store.get(finalizedKey(u.reservedBy))))
        return undefined;
      inputs.push({ txid: o.txid, vout: o.vout, value: u.value, scriptPubKey: u.scriptPubKey });
    }
    // a handoff pays no request: it is live while its inputs are
    if (proposal.requestIds.length === 0) return { spendable: inputs, lost };
    for (const id of proposal.requestIds) {
      const r = await getRequest(this.o.store, id).catch(() => undefined);
      if (r && AWAITING_FINAL.has(r.status)) return { spendable: inputs, lost };
    }
    return undefined;
  }

  /**
   * A federation output that nothing holds, of finalized payment `txid` or of a finalized payment that
   * depends on it within the signers' ANCESTRY (its change is soon spent by later payments): its outputs
   * that pay the federation only, of at most ANCESTRY.records payments.
   */
  private async unspentOutputOf(txid: string): Promise<SpendableUtxo | undefined> {
    const seen = new Set<string>();
    let generation = [txid];
    for (let depth = 0; depth < ANCESTRY.depth && generation.length > 0; depth++) {
      generation = generation.filter((t) => !seen.has(t)).slice(0, ANCESTRY.records - seen.size);
      for (const t of generation) seen.add(t);
      const next: string[] = [];
      for (const [i, f] of (await this.o.store.getMany<FinalizedRecord>(generation.map(finalizedKey))).entries()) {
        if (!f) continue;
        const outputs = parseTx(f.tx).outputs.flatMap((o, vout) =>
          equal(o.scriptPubKey, this.o.federation.scriptPubKey) ? [{ txid: generation[i]!, vout }] : [],
        );
        for (const u of await getUtxos(this.o.store, outputs)) {
          if (u?.state === 'unspent')
            return { txid: u.txid, vout: u.vout, value: u.value, scriptPubKey: u.scriptPubKey };
          if (u?.state === 'spent' && u.spentBy) next.push(u.spentBy);
        }
      }
      generation = [...new Set(next)];
    }
    return undefined;
  }

  /**
   * Rival test spends of a rotation (each signed by some members, none at t: a member signs a second
   * one only if it replaces the first) that made no progress for STALE_SLOTS: one test spend that
   * spends an input of each replaces all of them, so every member may sign it.
   */
  private async mergeHandoffs(
    stale: readonly (Rival & { spendable: SpendableUtxo[] })[],
    moving: readonly Set<string>[],
    at: { rate: number; policy: SigningPolicy; now: number; slot: number },
  ): Promise<Proposal[]> {
    if (stale.length < 2) return [];
    const { handoff } = at.policy;
    if (!handoff || handoff.side !== 'from') return [];
    // after the proof these are sweeps, each of its own inputs: nothing to merge
    if ((await handoffView(this.o.store, handoff)).proven) return [];
    if (this.heldBack(stale, moving, at.now)) return [];
    const test = buildTestMerge(
      stale.map((r) => r.spendable),
      handoff.testAmount,
      at.rate,
      handoff.plan,
    );
    const txids = stale.map((r) => r.txid);
    if (!test) {
      this.o.log.warn('merge_impossible', { rivals: txids, requests: 0 });
      return [];
    }
    for (const txid of txids) {
      this.rivals.delete(txid);
      const own = this.proposals.get(txid);
      if (own) own.since = at.now;
    }
    this.o.metrics?.rounds.inc({ outcome: 'merged' });
    this.o.log.info('merging_handoff', { rivals: txids, inputs: test.prevouts.length });
    return [proposalFromPayment(test, at.slot, this.myKey)];
  }

  /**
   * Whether a merge of `group` waits: a payment still moving conflicts with all of it, and has not held
   * it back for HELD_BACK_SLOTS in a row (a group not held back at a turn starts again from nothing).
   */
  private heldBack(group: readonly Rival[], moving: readonly Set<string>[], now: number): boolean {
    if (!moving.some((spends) => conflictsWithAll(spends, group))) {
      for (const { txid } of group) this.holds.delete(txid);
      return false;
    }
    let since = now;
    for (const { txid } of group) {
      const at = this.holds.get(txid) ?? now;
      this.holds.set(txid, at);
      since = Math.min(since, at);
    }
    if (now - since < HELD_BACK_SLOTS * this.o.slotMs) return true;
    this.o.log.warn('merge_held_back', { rivals: group.map((r) => r.txid), slots: HELD_BACK_SLOTS });
    return false;
  }

  private forget(txid: string): void {
    this.rivals.delete(txid);
    this.closed(txid);
  }

  /** Stops collecting for `txid` (finalized, or lost): its collection and the sets kept for it are dropped. */
  private closed(txid: string): void {
    if (this.proposals.delete(txid)) this.collector.forget(txid);
    this.deferred.delete(txid);
    this.early.take(txid);
  }

  private refused(peer: string, reason: string, detail: string, txid?: string): void {
    this.o.metrics?.rounds.inc({ outcome: 'refused' });
    this.o.metrics?.signaturesRejected.inc({ reason: `proposal_${reason}` });
    this.peerLog.warn(peer, 'proposal_refused', { peer, txid, reason, detail });
  }

  /**
   * Opens a proposal this member signed. Its own proposals it collects at once, with its own and
   * any early signatures, and so another member's when it holds t sets as it signs, counting its own
   * and the proposer's (it can finalize at once: 2-of-3, or the last signers). Any other it collects
   * only once a quarter slot has passed without that payment finalized (collectDeferred): its
   * proposer collects the sets, finalizes and announces the payment, and every member verifying
   * every set at once would share the cores n ways while the proposer waits for its turn on them.
   * Nothing is trusted for the wait: the announced payment is verified whole (onFinalizedFrame), and
   * a proposer that never announces it costs its own payment a quarter slot. `atOnce` collects at once
   * whoever proposed it (a restart's recovery).
   */
  private async track(checked: CheckedProposal, own: OwnSet, atOnce = false): Promise<void> {
    const txid = this.collector.open(checked.tx, checked.proposal.prevouts);
    const at = this.o.now?.() ?? Date.now();
    if (!this.proposals.has(txid)) this.proposals.set(txid, { checked, since: at, heard: new Set() });
    if (this.deferred.has(txid)) return;
    // its own set, the proposer's (sent with the proposal, perhaps still queued behind it) and the rest in hand
    const { proposer } = checked.proposal;
    const enough = 2 + this.early.count(txid, proposer) >= this.o.federation.threshold;
    if (!atOnce && !enough && proposer !== this.myKey && this.collector.count(txid) === 0) {
      // its sets leave the early ones, where sets a malicious member makes their senders send for
      // proposals nobody else sees would push them out; a member's sets for it are at most n
      this.deferred.set(txid, { own, since: at, sets: new Map(this.early.take(txid)) });
      return;
    }
    await this.collect(txid, own, this.early.take(txid));
  }

  private async collect(txid: string, own: OwnSet, sets: Iterable<[string, Uint8Array]>): Promise<void> {
    await this.add(txid, this.myKey, own.signatures, own.origin);
    for (const [peer, sigs] of sets) {
      // finalized by the sets before: the rest need no verifying
      if (!this.proposals.has(txid)) break;
      await this.add(txid, peer, sigs, 'received');
    }
  }

  /**
   * Sends this member's set of each payment it collects that made no progress for a slot to every
   * peer again, and the payment to those whose set never came, then after two slots more, four, and
   * so on. Nothing else sends a set again, and a
   * peer can have lost it: a set that came before its proposal waits among the early ones, which a
   * malicious member can push out by having their sender sign proposals nobody else sees (each set
   * of those is broadcast too). Sets a peer already has are dropped there by a byte compare.
   */
  private async resendStalled(now: number): Promise<void> {
    for (const [txid, open] of this.proposals) {
      const resent = open.resent ?? 0;
      if (now - open.since < this.o.slotMs * (2 ** (resent + 1) - 1)) continue;
      const made = await this.o.store.get<SignatureRecord>(signatureMadeKey(txid));
      if (!made) continue;
      open.resent = resent + 1;
      // the proposal too, to the members whose set never came: one that signed a rival of it may
      // never have seen it, and a proposer merges only rivals it knows of (a malicious proposer that
      // split the members in silence stalled the request for good)
      for (const member of this.o.federation.pubkeys.map(toHex))
        if (member !== this.myKey && !open.heard.has(member))
          this.o.network.send(member, 'proposal', open.checked.proposal);
      this.o.network.broadcast('signatures', { txid, signatures: made.signatures } satisfies SignaturesBody);
    }
  }

  /** Collects the deferred proposals whose proposer has had a quarter slot to finalize them. */
  private async collectDeferred(now: number): Promise<void> {
    for (const [txid, { own, since, sets }] of [...this.deferred]) {
      if (now - since < this.o.slotMs / 4) continue;
      this.deferred.delete(txid);
      if (this.proposals.has(txid)) await this.collect(txid, own, sets);
    }
  }

  /**
   * Sends `peer` the payment this member signed that blocks its proposal, once: a proposer can
   * only merge rivals it knows of, and one that a malicious member sent to some members alone
   * would otherwise block every merge it proposes (each refused as a double payment).
   */
  private async showRival(peer: string, earlier: string): Promise<void> {
    const key = `${peer}/${earlier}`;
    if (this.shown.has(key)) return;
    if (this.shown.size >= COORDINATOR_CAPS.rivals) this.shown.clear();
    this.shown.add(key);
    const [proposal, made] = await this.o.store.getMany<Proposal | SignatureRecord>([
      proposalKey(earlier),
      signatureMadeKey(earlier),
    ]);
    if (!proposal || !made) return;
    this.o.network.send(peer, 'proposal', proposal);
    this.o.network.send(peer, 'signatures', {
      txid: earlier,
      signatures: (made as SignatureRecord).signatures,
    } satisfies SignaturesBody);
  }

  /**
   * Looks up the inputs of `peer`'s proposal this member does not know, within its budget; true when each of them
   * was found to be a federation output.
   */
  private async recoverInputs(peer: string, { txid, tx }: CheckedProposal): Promise<boolean> {
    if (!this.o.recoverInput) return false;
    const utxos = await getUtxos(this.o.store, tx.inputs);
    const unknown = tx.inputs.filter((_, i) => !utxos[i]);
    if (unknown.length === 0 || unknown.length > COORDINATOR_CAPS.recoverPerProposal) return false;
    if (!this.budgetOf(this.lookups, peer, COORDINATOR_CAPS.lookups).take(unknown.length)) return false;
    try {
      for (const input of unknown) await this.o.recoverInput({ txid: input.txid, vout: input.vout });
      return true;
    } catch (err) {
      this.peerLog.warn(peer, 'input_recovery_failed', { peer, txid, error: err as Error });
      return false;
    }
  }

  private async onSignatures(peer: string, body: SignaturesBody): Promise<void> {
    if (this.unsettled.has(body.txid)) return;
    const open = this.proposals.get(body.txid) ?? this.rivals.get(body.txid);
    if (open && !open.heard.has(peer)) {
      open.heard.add(peer);
      open.since = this.o.now?.() ?? Date.now();
    }
    const deferred = this.deferred.get(body.txid);
    if (deferred) {
      // one of another size than this member's own (one signature an input) would be refused when
      // collected; kept, it let a peer park the largest frame the links admit on each deferred proposal
      if (body.signatures.length !== deferred.own.signatures.length) {
        this.o.metrics?.signaturesRejected.inc({ reason: 'wrong_signature_count' });
        this.peerLog.warn(peer, 'signatures_refused', {
          txid: body.txid,
          member: peer,
          reason: 'wrong_signature_count',
        });
        return;
      }
      // a copy: the frame's buffer may be a view into a much larger receive buffer
      if (!deferred.sets.has(peer)) deferred.sets.set(peer, Uint8Array.from(body.signatures));
      return;
    }
    if (!this.proposals.has(body.txid)) {
      // only proposals this member signed and collects are; the rest are kept within bounds
      this.early.keep(body.txid, peer, body.signatures);
      return;
    }
    await this.add(body.txid, peer, body.signatures, 'received');
  }

  private async add(txid: string, member: string, signatures: Uint8Array, origin: SetOrigin): Promise<void> {
    const n = signatures.length / 64;
    let outcome;
    try {
      const set = {
        pubkey: Buffer.from(member, 'hex'),
        signatures: Array.from({ length: n }, (_, i) => signatures.subarray(i * 64, i * 64 + 64)),
      };
      outcome = await this.collector.add(txid, set, origin === 'signed_here');
    } catch (err) {
      this.o.metrics?.signaturesRejected.inc({ reason: (err as { code?: string }).code ?? 'error' });
      this.peerLog.warn(member, 'signatures_refused', { txid, member, error: err as Error });
      return;
    }
    if (outcome === 'added' && member !== this.myKey) {
      this.o.metrics?.signaturesReceived.inc();
      // verified above; kept so a restart does not need the peer to send them again
      if (origin === 'received') await this.o.store.batch().put(signatureReceivedKey(txid, member), signatures).write();
    }
    if (this.collector.count(txid) >= this.o.federation.threshold) {
      const { proposal } = this.proposals.get(txid)!.checked;
      const signed = stages.time('finalize_record', () => this.collector.finalize(txid));
      this.closed(txid);
      const body: FinalizedBody = {
        tx: stages.time('finalize_record', () => serializeTx(signed)),
        prevouts: proposal.prevouts,
        requestIds: proposal.requestIds,
      };
      await this.recordFinal(txid, signed, body, 'self');
      this.o.network.broadcast('finalized', body);
    }
  }

  /**
   * A payment another member finalized: checked (t valid signatures on every input, on the pool) before it is
   * recorded.
   */
  private async onFinalizedFrame(peer: string, body: FinalizedBody): Promise<void> {
    let signed: Transaction;
    let txid: string;
    const refuse = (err: unknown): void => {
      this.o.metrics?.signaturesRejected.inc({ reason: 'finalized_malformed' });
      this.peerLog.warn(peer, 'finalized_refused', { peer, error: err as Error });
    };
    try {
      [signed, txid] = stages.time('verify', () => {
        const tx = parseFinalizedBody(body);
        return [tx, txidOf(tx)] as const;
      });
    } catch (err) {
      return refuse(err);
    }
    // the same payment comes from every member that finalized it: a known one is dropped here,
    // before its commitment over up to a thousand requests is computed again
    if (this.unsettled.has(txid) || (await this.o.store.get(finalizedKey(txid)))) return;
    // one that failed its signatures from this peer before: an honest member announces only what it verified
    if (this.forged.get(peer)?.has(txid)) return;
    body = ownFinalizedBody(body);
    try {
      stages.time('verify', () => checkFinalizedCommitment(signed, body));
    } catch (err) {
      return refuse(err);
    }
    try {
      await verifyFinalizedWitnesses(signed, body.prevouts, this.o.federation, this.o.pool.verifyTransaction);
    } catch (err) {
      this.o.metrics?.signaturesRejected.inc({ reason: 'finalized_invalid' });
      this.peerLog.warn(peer, 'finalized_refused', { peer, txid, error: err as Error });
      // a witness that does not verify is the sender's; a pool that failed is not
      if (err instanceof SigningError && err.code === 'invalid_witness') this.noteForged(peer, txid);
      return;
    }
    this.closed(txid);
    await this.recordFinal(txid, signed, body, peer);
  }

  /**
   * `peer` announced a finalized payment of `txid` whose signatures do not verify. With the honest
   * members' sets, which every member is sent, a malicious one can forge a witness that only a full
   * check tells from a real one (t × inputs verifications): it costs the peer a fault, and the same
   * txid from it is not checked again (COORDINATOR_CAPS.forgedPerPeer a peer, forgotten together).
   */
  private noteForged(peer: string, txid: string): void {
    this.o.network.misbehaved(peer, 'forged');
    const txids = bucketOf(this.forged, peer, this.o.federation.pubkeys.length, () => new Set<string>());
    if (txids.size >= COORDINATOR_CAPS.forgedPerPeer) txids.clear();
    txids.add(txid);
  }

  /** Records a finalized payment (finalize.ts), then announces it to reconnecting peers and hands it on. */
  private async recordFinal(txid: string, signed: Transaction, body: FinalizedBody, from: string): Promise<void> {
    const record = await recordFinalized(this.o.store, this.o.federation, txid, signed, body, `finalized in ${txid}`, {
      limits: this.o.outflow.limits,
      paidDepth: this.o.paidDepth,
    });
    if (!record) return;
    for (const loser of record.superseded ?? []) this.forget(loser);
    for (const [id, output] of Object.entries(record.unmatched)) this.addLate(id, txid, output);
    this.keepUnsettled(txid, body);
    this.o.metrics?.rounds.inc({ outcome: 'finalized' });
    const made = await this.o.store.get<SignatureRecord>(signatureMadeKey(txid));
    if (made) this.o.metrics?.paymentLatency.observe(Math.max(0, Date.now() - Date.parse(made.at)) / 1000);
    this.o.log.info('finalized', { txid, from, requests: record.requestIds.length, inputs: signed.inputs.length });
    await this.o.onFinalized(record);
  }

  /**
   * On (re)connect: the peer gets every open proposal this member signed, with its signatures, and every finalized
   * payment not yet paid.
   */
  private async announce(peer: string): Promise<void> {
    if (this.o.paused()) this.o.network.send(peer, 'paused', true);
    for (const id of await this.o.outflow.ownReleases()) this.o.network.send(peer, 'release', id);
    for (const [txid, { checked }] of this.proposals) {
      const record = await this.o.store.get<SignatureRecord>(signatureMadeKey(txid));
      if (!record) continue;
      this.o.network.send(peer, 'proposal', checked.proposal);
      this.o.network.send(peer, 'signatures', { txid, signatures: record.signatures } satisfies SignaturesBody);
    }
    for (const body of this.unsettled.values()) this.o.network.send(peer, 'finalized', body);
  }
}
