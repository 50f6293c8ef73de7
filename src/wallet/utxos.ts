import { utxoIndexFault, type Store, type StoreBatch, type StoreReader } from '../storage/store.js';
import {
  outpointOfKey,
  PEG_IN_SATS_KEY,
  SPACES,
  unspentByValueKey,
  utxoCountKey,
  utxoIndexKey,
  utxoIndexPrefix,
  utxoKey,
} from '../storage/keys.js';
import { WalletError } from './errors.js';
import type { UtxoRecord, UtxoState } from '../storage/records.js';

/**
 * The federation's UTXO set. Every write of a utxo/ record, of its utxoidx/ state index, of the
 * unspent ones' value index (utxoval/) and of the counts by state (utxocount/) goes through this
 * module, in the caller's batch, so the indexes always name exactly the records' states and values
 * and the counts add them up. Helpers only stage changes:
 * callers write the batch (with sync for reservations) and run the read-stage-write sequence inside
 * store.transaction(), so the block observer and the payment builder never act on a state the other
 * changed meanwhile.
 */

export interface Outpoint {
  /** As RPC prints it (display order), lowercase hex. */
  txid: string;
  vout: number;
}

/** Where the Bitcoin chain stands for this member; null without Bitcoin Core (declared funding, no reorgs). */
export interface ChainView {
  readonly tipHeight: number;
  /** Confirmations a federation output needs before it is spent. */
  readonly spendDepth: number;
}

/** Confirmations of `utxo` at `chain`'s tip (0 while its block is off the best chain). */
export function utxoConfirmations(utxo: UtxoRecord, chain: ChainView): number {
  return utxo.height === null ? 0 : chain.tipHeight - utxo.height + 1;
}

/** Deep enough to spend: a reorg is unlikely to take it away from under a payment. */
export function spendableAt(utxo: UtxoRecord, chain: ChainView | null): boolean {
  return chain === null || utxoConfirmations(utxo, chain) >= chain.spendDepth;
}

export function outpointText(outpoint: Outpoint): string {
  return `${outpoint.txid}:${outpoint.vout}`;
}

/** The inverse of outpointText. */
export function parseOutpoint(text: string): Outpoint {
  const at = text.lastIndexOf(':');
  return { txid: text.slice(0, at), vout: Number(text.slice(at + 1)) };
}

export async function getUtxo(reader: StoreReader, outpoint: Outpoint): Promise<UtxoRecord | undefined> {
  return reader.get<UtxoRecord>(utxoKey(outpoint.txid, outpoint.vout));
}

/**
 * The records of `outpoints` in one read, in order (undefined where an output is not ours): a
 * payment's inputs cost one store call, not one each.
 */
export function getUtxos(reader: StoreReader, outpoints: readonly Outpoint[]): Promise<(UtxoRecord | undefined)[]> {
  return reader.getMany<UtxoRecord>(outpoints.map((o) => utxoKey(o.txid, o.vout)));
}

function stage(batch: StoreBatch, next: UtxoRecord, previous: UtxoRecord | undefined): void {
  if (previous !== undefined && previous.state !== next.state)
    batch.del(utxoIndexKey(previous.state, previous.txid, previous.vout));
  batch.put(utxoKey(next.txid, next.vout), next);
  batch.put(utxoIndexKey(next.state, next.txid, next.vout), 1);
  if (previous === undefined || previous.state !== next.state || previous.value !== next.value) {
    if (previous !== undefined) count(batch, previous, -1);
    count(batch, next, 1);
    if (previous?.state === 'unspent') batch.del(unspentByValueKey(previous.value, previous.txid, previous.vout));
    if (next.state === 'unspent') batch.put(unspentByValueKey(next.value, next.txid, next.vout), 1);
  }
  const pegIn = pegInSats(next) - (previous === undefined ? 0 : pegInSats(previous));
  if (pegIn !== 0) batch.add(PEG_IN_SATS_KEY, pegIn);
}

function unstage(batch: StoreBatch, previous: UtxoRecord): void {
  batch.del(utxoKey(previous.txid, previous.vout));
  batch.del(utxoIndexKey(previous.state, previous.txid, previous.vout));
  if (previous.state === 'unspent') batch.del(unspentByValueKey(previous.value, previous.txid, previous.vout));
  count(batch, previous, -1);
  const pegIn = pegInSats(previous);
  if (pegIn !== 0) batch.add(PEG_IN_SATS_KEY, -pegIn);
}

/** What `record` adds to the peg-ins: its sats while it is a confirmed peg-in output, in any state. */
function pegInSats(record: UtxoRecord): number {
  return record.pegIn && record.height !== null ? Number(record.value) : 0;
}

/** Adds `record` to the counts of its state (1), or takes it away (-1); all the sats there are fit a safe integer. */
function count(batch: StoreBatch, record: UtxoRecord, sign: 1 | -1): void {
  batch.add(utxoCountKey(record.state, 'outputs'), sign);
  batch.add(utxoCountKey(record.state, 'sats'), sign * Number(record.value));
}

/** How many records are in `state` and their sats, from the counts: a dusted wallet costs a balance no more. */
export async function utxoTotals(reader: StoreReader, state: UtxoState): Promise<{ outputs: number; sats: bigint }> {
  const [outputs, sats] = await reader.getMany<number>([utxoCountKey(state, 'outputs'), utxoCountKey(state, 'sats')]);
  return { outputs: outputs ?? 0, sats: BigInt(sats ?? 0) };
}

/** The sats of every confirmed peg-in output, spent or not, from its counter: one key, however long the history. */
export async function pegInTotal(reader: StoreReader): Promise<bigint> {
  return BigInt((await reader.get<number>(PEG_IN_SATS_KEY)) ?? 0);
}

/** Records in one state, in outpoint order (txid, then vout): deterministic for coin selection. */
export async function listUtxos(store: Store, state: UtxoState): Promise<UtxoRecord[]> {
  const keys: string[] = [];
  for await (const [key] of store.entries<number>({ prefix: utxoIndexPrefix(state) })) keys.push(key);
  return indexedRecords(store, keys, state);
}

/**
 * The records that entries `indexKeys` of an index of `state` (utxoidx/, utxoval/) name, in order, in one
 * read: an entry naming a record that is missing or in another state is a conflict, never skipped.
 */
async function indexedRecords(reader: StoreReader, indexKeys: string[], state: UtxoState): Promise<UtxoRecord[]> {
  const records = await getUtxos(reader, indexKeys.map(outpointOfKey));
  return records.map((record, i) => {
    const fault = utxoIndexFault(indexKeys[i]!, record, state);
    if (fault) throw new WalletError('utxo_conflict', fault, { key: indexKeys[i], state });
    return record!;
  });
}

/** Spendable and not reserved by any proposal. */
export function listUnspent(store: Store): Promise<UtxoRecord[]> {
  return listUtxos(store, 'unspent');
}

/** Entries of the value index read at a time by largestUnspent. */
const VALUE_PAGE = 512;

/**
 * The `limit` largest unspent outputs that `accept` takes (deep enough to spend), largest first,
 * through the value index: a proposer's turn reads what a plan could spend, however many small
 * outputs anyone has sent the federation.
 */
export async function largestUnspent(
  store: Store,
  limit: number,
  accept: (utxo: UtxoRecord) => boolean,
): Promise<UtxoRecord[]> {
  const out: UtxoRecord[] = [];
  const prefix = SPACES.unspentByValue;
  let below: string | undefined;
  while (out.length < limit) {
    const keys = await store.keys({ prefix, reverse: true, limit: VALUE_PAGE, ...(below ? { lt: below } : {}) });
    for (const record of await indexedRecords(store, keys, 'unspent'))
      if (accept(record) && out.push(record) === limit) break;
    if (keys.length < VALUE_PAGE) break;
    below = keys[keys.length - 1];
  }
  return out;
}

/** ReserveOptions.current, checked to be the outpoints' own records. */
function given(
  records: readonly (UtxoRecord | undefined)[],
  outpoints: readonly Outpoint[],
  txid: string,
): readonly (UtxoRecord | undefined)[] {
  const wrong =
    records.length !== outpoints.length
      ? records.length
      : records.findIndex(
          (r, i) => r !== undefined && (r.txid !== outpoints[i]!.txid || r.vout !== outpoints[i]!.vout),
        );
  if (wrong >= 0) {
    const detail = `the records given for proposal ${txid}'s outpoints are not theirs (at ${wrong})`;
    throw new WalletError('utxo_conflict', detail, { txid });
  }
  return records;
}

export interface ReserveOptions {
  /** Proposals this one replaces (it spends their inputs): their reservations move to it. */
  readonly replacing?: readonly string[];
  /**
   * The outpoints' records as the caller read them through the same batch, in order, with nothing
   * staged for them since (the signer's and the finalizer's reads inside the exclusive section): one
   * read and decode an input fewer. Each must be its outpoint's.
   */
  readonly current?: readonly (UtxoRecord | undefined)[];
}

/**
 * Stages the reservation of every outpoint for proposal `txid`, or throws without staging
 * anything. Reserving again for the same txid is a no-op; a UTXO reserved by a proposal in
 * `replacing` (one this txid replaces by spending its inputs) moves to this txid.
 * Returns the records as reserved (they are the proposal's prevouts).
 */
export async function reserveUtxos(
  batch: StoreBatch,
  outpoints: readonly Outpoint[],
  txid: string,
  options: ReserveOptions = {},
): Promise<UtxoRecord[]> {
  const replacing = new Set(options.replacing ?? []);
  const seen = new Set<string>();
  const records = options.current ? given(options.current, outpoints, txid) : await getUtxos(batch, outpoints);
  const current: UtxoRecord[] = [];
  for (const [i, outpoint] of outpoints.entries()) {
    const name = outpointText(outpoint);
    if (seen.has(name))
      throw new WalletError('utxo_duplicate', `outpoint ${name} appears twice in proposal ${txid}`, {
        outpoint: name,
        txid,
      });
    seen.add(name);
    const record = records[i];
    if (record === undefined)
      throw new WalletError('utxo_unknown', `outpoint ${name} is not a known federation UTXO`, {
        outpoint: name,
        txid,
      });
    if (record.state === 'spent') {
      throw new WalletError(
        'utxo_spent',
        `outpoint ${name} was already spent by ${record.spentBy ?? 'an unknown transaction'}`,
        { outpoint: name, txid, spentBy: record.spentBy },
      );
    }
    if (record.state === 'reserved' && record.reservedBy !== txid && !replacing.has(record.reservedBy ?? '')) {
      throw new WalletError(
        'utxo_reserved',
        `outpoint ${name} is reserved by proposal ${record.reservedBy ?? '?'}, not ${txid}`,
        { outpoint: name, txid, reservedBy: record.reservedBy },
      );
    }
    current.push(record);
  }
  return current.map((record) => {
    // already this proposal's (a signer's own payment, finalized): record and index stand as they are
    if (record.state === 'reserved' && record.reservedBy === txid) return record;
    const next: UtxoRecord = { ...record, state: 'reserved', reservedBy: txid };
    stage(batch, next, record);
    return next;
  });
}

/**
 * Stages the return of the outpoints reserved by `txid` to the spendable set (a proposal that
 * was abandoned). Outpoints not reserved by txid are left alone: a release never unspends
 * anything or frees another proposal's inputs. A spent output only forgets the reservation, so
 * that if a reorg undoes the spend it comes back spendable rather than held by a dead proposal.
 * A reserved output whose block left the best chain is dropped: it is not spendable until mined
 * again. Returns the outpoints that became spendable.
 */
export async function releaseUtxos(
  batch: StoreBatch,
  outpoints: readonly Outpoint[],
  txid: string,
): Promise<Outpoint[]> {
  const released: Outpoint[] = [];
  for (const outpoint of outpoints) {
    const record = await getUtxo(batch, outpoint);
    if (record === undefined || record.reservedBy !== txid) continue;
    const { reservedBy: _dropped, ...unreserved } = record;
    if (record.state === 'spent') {
      stage(batch, unreserved, record);
    } else if (record.height === null) {
      unstage(batch, record);
    } else {
      stage(batch, { ...unreserved, state: 'unspent' }, record);
      released.push({ txid: record.txid, vout: record.vout });
    }
  }
  return released;
}

/**
 * Stages that payment `txid`, which can still confirm, holds again those of its inputs another
 * payment had taken over and lost: one that is unspent now is reserved by it; one that it spent
 * itself (its block may still be reorganised away) keeps it as holder, so that a reorg undoing the
 * spend gives the output back to it (unspendUtxo), not to the wallet. Anything else is left alone.
 */
export async function reclaimUtxos(batch: StoreBatch, outpoints: readonly Outpoint[], txid: string): Promise<void> {
  for (const record of await getUtxos(batch, outpoints)) {
    if (record === undefined || record.reservedBy === txid) continue;
    if (record.state === 'unspent') stage(batch, { ...record, state: 'reserved', reservedBy: txid }, record);
    else if (record.state === 'spent' && record.spentBy === txid) stage(batch, { ...record, reservedBy: txid }, record);
  }
}

// --- Block observer side: the chain's view of the set ---

export interface ChainOutput extends Outpoint {
  value: bigint;
  scriptPubKey: Uint8Array;
  height: number;
  /** See UtxoRecord.handedOver. */
  handedOver?: true;
  /** See UtxoRecord.pegIn: said by every caller, since only the caller knows where the output came from. */
  pegIn: boolean;
}

/**
 * An output paying the federation appeared in a block at `height`. A record that already
 * exists (recovered from the node earlier, or reserved while its block was reorganised away)
 * keeps its state and takes the new height and origin (pegIn).
 */
export async function registerUtxo(batch: StoreBatch, output: ChainOutput): Promise<void> {
  const previous = await getUtxo(batch, output);
  if (previous === undefined) {
    stage(
      batch,
      {
        txid: output.txid,
        vout: output.vout,
        value: output.value,
        scriptPubKey: output.scriptPubKey,
        height: output.height,
        state: 'unspent',
        ...(output.handedOver ? { handedOver: true as const } : {}),
        ...(output.pegIn ? { pegIn: true as const } : {}),
      },
      undefined,
    );
  } else {
    // the block's applier knows better than a recovery from Core where the output came from
    const { pegIn: _was, ...rest } = previous;
    stage(batch, { ...rest, height: output.height, ...(output.pegIn ? { pegIn: true as const } : {}) }, previous);
  }
}

/** Undoes registerUtxo when its block leaves the best chain. */
export async function unregisterUtxo(batch: StoreBatch, outpoint: Outpoint): Promise<void> {
  const record = await getUtxo(batch, outpoint);
  if (record === undefined) return;
  if (record.state === 'reserved') stage(batch, { ...record, height: null }, record);
  else unstage(batch, record);
}

/**
 * A transaction in a block spent this outpoint. Returns the record as it was, which the
 * observer keeps as undo data, or undefined when the outpoint is not ours.
 */
export async function spendUtxo(
  batch: StoreBatch,
  outpoint: Outpoint,
  spentBy: string,
): Promise<UtxoRecord | undefined> {
  const record = await getUtxo(batch, outpoint);
  if (record !== undefined) stageSpent(batch, record, spentBy);
  return record;
}

/** Stages that `spentBy` spent the output `record` (its current record, read through `batch`) holds. */
export function stageSpent(batch: StoreBatch, record: UtxoRecord, spentBy: string): void {
  stage(batch, { ...record, state: 'spent', spentBy }, record);
}

/**
 * Undoes spendUtxo: puts back the record as it was before the spend, except a reservation
 * released while the output was spent, which stays released, or handed to another payment
 * (reclaimUtxos), which holds it.
 */
export async function unspendUtxo(batch: StoreBatch, before: UtxoRecord): Promise<void> {
  const current = await getUtxo(batch, before);
  const holder = current?.reservedBy;
  if (holder !== undefined && holder !== before.reservedBy) {
    stage(batch, { ...before, state: 'reserved', reservedBy: holder }, current);
  } else if (before.state === 'reserved' && holder === undefined) {
    const { reservedBy: _released, ...unreserved } = before;
    stage(batch, { ...unreserved, state: 'unspent' }, current);
  } else {
    stage(batch, before, current);
  }
}
