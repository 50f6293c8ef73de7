import type { Prevout } from '../bitcoin/tx.js';
import type { RequestRejectReason } from '../evm/decider.js';
import type { Outpoint } from '../wallet/utxos.js';

// Every record type a member stores, in one place: the value column of the table in keys.ts.
// Each is plain data (msgpack, see store.ts) and is read back as exactly what was written.

export interface StoreMeta {
  schemaVersion: number;
  /** The federation's output descriptor: a store belongs to exactly one federation. */
  descriptor: string;
  /**
   * Set while the migration from this version to schemaVersion runs (its chunks written, its end
   * not yet): the store already says the new version, so the program of the old one refuses it
   * (schema_newer), and the next open runs the step again from the start.
   */
  migratingFrom?: number;
}

/**
 * held: over the per-request limit, paid only once t operators released it; rate_limited: waits
 * for a rolling-cap window (wallet/limits.ts).
 * accepted → batched → signed → broadcast → paid is the happy path; rejected is final;
 * orphaned marks a request whose EVM block left the chain after the federation acted on it
 * (an alarm for operators, never a silent drop).
 */
export type RequestStatus =
  'accepted' | 'held' | 'rate_limited' | 'rejected' | 'batched' | 'signed' | 'broadcast' | 'paid' | 'orphaned';

export interface RequestRecord {
  readonly id: string;
  readonly txHash: string;
  readonly ordinal: number;
  readonly blockNumber: number;
  readonly blockHash: string;
  readonly evmAddress: string;
  readonly bitcoinAddress: string;
  readonly wei: string;
  readonly sats: bigint;
  readonly subSatoshiWei: string;
  readonly status: RequestStatus;
  readonly reason?: RequestRejectReason;
  readonly detail?: string;
  readonly scriptPubKey?: Uint8Array;
  /**
   * Every status the request had, oldest first; the last entry is the current status. Kept in the
   * record (schema 5) so that a status change is one put, not a second key per change.
   */
  readonly history: readonly StatusChange[];
}

export interface StatusChange {
  readonly status: RequestStatus;
  readonly at: string;
  readonly detail?: string;
}

export interface EvmCursor {
  readonly height: number;
  readonly hash: string;
}

/**
 * Stored per ingested block that matters: the end block of each range read and every block with
 * requests, while it is among the last keepBlocks blocks read (src/evm/observer.ts).
 */
export interface EvmBlockRecord {
  readonly hash: string;
  readonly requests: readonly string[];
}

/** The EVM blocks under `below` have no record any more: a rollback that reaches it cannot go on. */
export interface EvmPruned {
  readonly below: number;
}

export type UtxoState = 'unspent' | 'reserved' | 'spent';

export interface UtxoRecord extends Outpoint {
  value: bigint;
  scriptPubKey: Uint8Array;
  /**
   * Height of the block that created the output. null: that block left the best chain while
   * the output was reserved; the record is kept so the reservation survives until the output is
   * mined again (height set back) or the reservation is released (record removed).
   */
  height: number | null;
  /** 'unspent' means spendable and not reserved by any proposal. */
  state: UtxoState;
  /** The proposal txid that reserved it; kept once spent (audit trail) unless the proposal is released. */
  reservedBy?: string;
  /** The txid of the transaction (in the best chain) that spent it. */
  spentBy?: string;
  /**
   * On the new side of a rotation: created by a transaction spending the old federation's outputs
   * (wallet/handoff.ts isHandoffOf), so only t old members can have made it: the test spend's
   * output the new set proves it can spend.
   */
  handedOver?: true;
  /**
   * Created by a transaction that is no federation payment (it spent no federation output this
   * member knew, and this member holds no finalized record of it) when the output was registered:
   * money that came in. The reserve ledger sums these (schema 7; before, it judged every output
   * ever held at each audit).
   */
  pegIn?: true;
}

export interface BitcoinCursor {
  height: number;
  hash: string;
}

/** btcblk/<height>: what applying the block changed, enough to undo it. */
export interface ObservedBlock {
  hash: string;
  prevHash: string | undefined;
  /** Federation outputs the block created, in block order. */
  created: Outpoint[];
  /** UTXO records as they were before the block spent them, in block order. */
  spent: UtxoRecord[];
  /** Federation payments confirmed by this block (txconf/ written). */
  confirmed: string[];
  /** Of those, the ones this member holds no finalized record of (chainpay/ written). */
  foreign?: string[];
}

/** txconf/<txid>: the best-chain block that holds a federation payment. */
export interface TxConfirmation {
  height: number;
  blockHash: string;
}

/**
 * chainpay/<txid>: a confirmed transaction that spends federation outputs and that this member
 * did not record as finalized (it was down, or its peers never reached it). Settlement reads
 * which requests it pays from its commitment and records it (SPEC §3: a member catches up from
 * the chain).
 */
export interface ChainSpend {
  readonly txid: string;
  readonly height: number;
  /** The raw transaction, as getblock gives it. */
  readonly tx: Uint8Array;
  /**
   * When this member applied its block (ISO 8601): a member that catches up finds old payments
   * late. Absent in records written before it was kept, which count as found long ago.
   */
  readonly found?: string;
}

/**
 * What a proposer sends and every member checks before signing. Plain data (bytes, strings,
 * numbers, bigint), so it travels as msgpack and is stored as is.
 */
export interface Proposal {
  readonly version: 1;
  readonly round: number;
  /** x-only key of the proposer, hex. */
  readonly proposer: string;
  /** The unsigned transaction, serialized. */
  readonly unsignedTx: Uint8Array;
  readonly prevouts: readonly Prevout[];
  /** Request paid by each peg-out output, in output order; a further last output is change. */
  readonly requestIds: readonly string[];
}

/**
 * sigmade/<txid>: what this member signed, kept forever: it is what the no-double-pay check reads.
 * Its fee and size (signed) are what a replacement is measured against (BIP125).
 */
export interface SignatureRecord extends Pick<FinalizedRecord, 'txid' | 'requestIds' | 'fee' | 'vsize' | 'at'> {
  /** The outpoints it spends, `txid:vout`, in input order. */
  readonly inputs: readonly string[];
  /** 64 bytes per input, in input order. */
  readonly signatures: Uint8Array;
  /**
   * x-only key (hex) of the member whose link brought the proposal, this member's own for its own:
   * what validation counts live payments by (LIVE_PAYMENTS_PER_SENDER). Absent in records written
   * before it was kept; those count for no sender.
   */
  readonly from?: string;
  /**
   * The payments whose inputs it took over when it was signed (their reservations moved to it): those
   * it gives them back to if it can no longer finalize (node/standing.ts). Absent when none.
   */
  readonly replaced?: readonly string[];
}

/** final/<txid>: a payment with t valid signatures on every input. */
export interface FinalizedRecord {
  readonly txid: string;
  /** The signed transaction, serialized. */
  readonly tx: Uint8Array;
  readonly prevouts: readonly Prevout[];
  readonly requestIds: readonly string[];
  /**
   * Every request output 0 commits to, in its order: what a peer checks an announcement of the
   * payment against. requestIds above holds only those this member matched to their outputs (a
   * late-ingested one appended when it is matched). Absent in records written before it was kept;
   * for those, requestIds stands in.
   */
  readonly committed?: readonly string[];
  /** Requests the payment names that this member had not ingested when it was finalized (output index by id). */
  readonly unmatched: Readonly<Record<string, number>>;
  readonly fee: bigint;
  readonly vsize: number;
  /** Proposals that held this payment's inputs when it was finalized: they lose if it confirms. */
  readonly conflicts: readonly string[];
  /** Payments this member signed that this one superseded (see stageSuperseded): released at once. */
  readonly superseded?: readonly string[];
  readonly at: string;
}

/** A finalized payment as it travels between members: which requests it pays is what output 0 commits to. */
export type FinalizedBody = Pick<FinalizedRecord, 'tx' | 'prevouts' | 'requestIds'>;

/** supsd/<txid>: why a payment this member signed can never reach t signatures. */
export interface Supersession {
  /** The finalized payment of one of its requests that spends none of its inputs. */
  readonly by: string;
  readonly at: string;
}

/** handoff/proven: the new federation spent the test spend's output to the planned address (issue 17). */
export interface HandoffProof {
  /** The test spend, and its output that the new set spent. */
  readonly txid: string;
  readonly vout: number;
  /** This member's Bitcoin tip when it saw the output gone from Core's UTXO set. */
  readonly height: number;
  readonly at: string;
}

/** bcast/<txid>/<seq>: one broadcast attempt. */
export interface BroadcastAttempt {
  readonly at: string;
  /** Bitcoin height when it was made: RBF counts blocks from the first accepted attempt. */
  readonly height: number;
  readonly outcome: string;
  /**
   * The node accepted this attempt or an earlier one, so that the last attempt alone tells (a payment
   * that waits unconfirmed has one a block). Absent in records written before it was kept: for those,
   * this attempt's own outcome stands in (everAccepted).
   */
  readonly accepted?: boolean;
}

/** Whether the node accepted `attempt` or, where it says, an attempt before it. */
export function everAccepted(attempt: BroadcastAttempt): boolean {
  return attempt.accepted ?? !attempt.outcome.startsWith('error');
}

/** hold/<request>/<member>: that member's operator released the held request. */
export interface HoldRelease {
  readonly at: string;
}

/** Why an operator or the member itself stopped signing. */
export interface PauseReason {
  /** 'operator', or the alarm kind that paused the member (node/safety.ts). */
  readonly kind: string;
  readonly detail: string;
  readonly at: string;
}

/** ctl/pause: this member signs nothing until an operator resumes it. */
export interface PauseRecord {
  readonly since: string;
  readonly reasons: readonly PauseReason[];
}
