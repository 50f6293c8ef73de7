import { fromHex } from '../bitcoin/bytes.js';
import type { Federation } from '../bitcoin/federation.js';
import { parseTx } from '../bitcoin/tx.js';
import { isHandoffOf } from '../wallet/handoff.js';
import { PegoutError } from '../errors.js';
import type { Store, StoreBatch, StoreReader } from '../storage/store.js';
import {
  bitcoinBlockKey,
  bitcoinHash,
  chainSpendKey,
  cursorKey,
  finalizedKey,
  txConfirmationKey,
  utxoKey,
} from '../storage/keys.js';
import { WalletError } from '../wallet/errors.js';
import {
  getUtxo,
  outpointText,
  registerUtxo,
  spendUtxo,
  unregisterUtxo,
  unspendUtxo,
  type ChainOutput,
  type Outpoint,
} from '../wallet/utxos.js';
import {
  BitcoinRpcError,
  btcToSats,
  type ChainSource,
  type RpcBlock,
  type RpcBlockSummary,
  type RpcTransaction,
  type RpcTxOut,
} from './rpc.js';
import type { BitcoinCursor, ChainSpend, ObservedBlock, TxConfirmation, UtxoRecord } from '../storage/records.js';

/**
 * The Bitcoin block observer: follows the node's best chain from a configured height and keeps
 * the federation's view of it in the store — federation outputs (peg-ins and our change) as
 * UTXOs, spends of those UTXOs, and the block of every federation payment (confirmations).
 * Each block's effects, its undo data and the cursor move in one batch, so after a crash the
 * store is exactly "every block up to the cursor applied". A block that leaves the best chain is
 * rolled back from its undo data alone; the node need not serve the old block.
 */

export type ObserverErrorCode = 'config' | 'reorg_too_deep' | 'chain_inconsistent';

export class ObserverError extends PegoutError<ObserverErrorCode> {
  readonly domain = 'bitcoin-observer';
}

export interface ObserverOptions {
  store: Store;
  chain: ChainSource;
  /** The federation's scriptPubKey: every output paying it is ours. */
  federationScript: Uint8Array;
  /** First block to read when the store has no cursor yet (a later cursor always wins). */
  startHeight: number;
  /** Undo data kept for this many blocks below the cursor; a deeper reorg stops the observer loudly. */
  keepBlocks?: number;
  /**
   * On the new side of a rotation: outputs created by a spend of this (old) federation's outputs are
   * marked handedOver (a handoff's outputs; see isHandoffOf, which reads the spent outputs from the
   * block's prevouts).
   */
  handedOverFrom?: Federation;
}

export interface SyncResult {
  applied: number;
  rolledBack: number;
  cursor: BitcoinCursor | undefined;
}

const CURSOR_KEY = cursorKey('bitcoin');

/** Confirmations of a transaction that touched federation outputs, as this member's store has the chain. */
export async function storedConfirmations(reader: StoreReader, txid: string): Promise<number> {
  const [confirmation, cursor] = await reader.getMany<TxConfirmation | BitcoinCursor>([
    txConfirmationKey(txid),
    CURSOR_KEY,
  ]);
  return confirmationsAt((cursor as BitcoinCursor | undefined)?.height, confirmation as TxConfirmation | undefined);
}

/** Confirmations of a transaction in the block at `confirmation` when the best block is at `tipHeight`. */
export function confirmationsAt(tipHeight: number | undefined, confirmation: TxConfirmation | undefined): number {
  if (confirmation === undefined || tipHeight === undefined) return 0;
  return tipHeight - confirmation.height + 1;
}

/** Height of the best block this member applied, or undefined before its first sync (or without Bitcoin Core). */
export async function storedTipHeight(reader: StoreReader): Promise<number | undefined> {
  return (await reader.get<BitcoinCursor>(CURSOR_KEY))?.height;
}
const DEFAULT_KEEP_BLOCKS = 1000;

/** The script each input of `tx` spent, where the node showed it. */
function spentScripts(tx: RpcTransaction): (Uint8Array | undefined)[] {
  return tx.vin.map((input) => (input.prevout === undefined ? undefined : fromHex(input.prevout.scriptPubKey.hex)));
}

function scriptHex(script: Uint8Array): string {
  return Buffer.from(script.buffer, script.byteOffset, script.byteLength).toString('hex');
}

export class BitcoinObserver {
  readonly #store: Store;
  readonly #chain: ChainSource;
  readonly #script: Uint8Array;
  readonly #scriptHex: string;
  readonly #startHeight: number;
  readonly #keepBlocks: number;
  readonly #handedOverFrom: Federation | undefined;
  #running: Promise<SyncResult> | undefined;

  constructor(options: ObserverOptions) {
    if (!Number.isSafeInteger(options.startHeight) || options.startHeight < 0) {
      throw new ObserverError('config', `startHeight must be a non-negative integer, got ${options.startHeight}`, {
        startHeight: options.startHeight,
      });
    }
    const keep = options.keepBlocks ?? DEFAULT_KEEP_BLOCKS;
    if (!Number.isSafeInteger(keep) || keep < 1)
      throw new ObserverError('config', `keepBlocks must be a positive integer, got ${keep}`, { keepBlocks: keep });
    this.#store = options.store;
    this.#chain = options.chain;
    this.#script = options.federationScript;
    this.#scriptHex = scriptHex(options.federationScript);
    this.#startHeight = options.startHeight;
    this.#keepBlocks = keep;
    this.#handedOverFrom = options.handedOverFrom;
  }

  cursor(): Promise<BitcoinCursor | undefined> {
    return this.#store.get<BitcoinCursor>(CURSOR_KEY);
  }

  /** Confirmations of a federation payment as of the cursor; 0 when not in the observed best chain. */
  confirmations(txid: string): Promise<number> {
    return storedConfirmations(this.#store, txid);
  }

  /**
   * Brings the store level with the node's best chain: rolls back blocks that left it, then
   * applies new blocks one batch each. Concurrent calls share one pass.
   */
  sync(): Promise<SyncResult> {
    if (this.#running === undefined) {
      this.#running = this.#sync().finally(() => {
        this.#running = undefined;
      });
    }
    return this.#running;
  }

  async #sync(): Promise<SyncResult> {
    let applied = 0;
    let rolledBack = 0;
    let verified = false;
    let tip = await this.#chain.getBlockCount();
    for (;;) {
      const cursor = await this.cursor();
      if (cursor !== undefined && !verified) {
        if (cursor.height > tip || (await this.#chain.getBlockHash(cursor.height)) !== cursor.hash) {
          await this.#rollback(cursor);
          rolledBack++;
          continue;
        }
        verified = true;
      }
      const next = cursor === undefined ? this.#startHeight : cursor.height + 1;
      if (next > tip) {
        tip = await this.#chain.getBlockCount();
        if (next > tip) return { applied, rolledBack, cursor };
      }
      const hash = await this.#chain.getBlockHash(next);
      const block = await this.#chain.getBlock(hash);
      if (block.hash !== hash || block.height !== next) {
        throw new ObserverError(
          'chain_inconsistent',
          `node returned block ${block.hash} at height ${block.height} when asked for ${hash} at height ${next}`,
          { hash, height: next },
        );
      }
      if (cursor !== undefined && block.previousblockhash !== cursor.hash) {
        // the chain changed between our calls: check the cursor again before going on
        verified = false;
        tip = await this.#chain.getBlockCount();
        continue;
      }
      await this.#apply(block, cursor);
      applied++;
    }
  }

  async #apply(block: RpcBlock, expectedCursor: BitcoinCursor | undefined): Promise<void> {
    // not synced: a block lost to a power cut is applied again from the node, cursor and all
    await this.#store.transaction(
      async (batch) => {
        const cursor = await this.cursor();
        if (cursor?.hash !== expectedCursor?.hash) {
          throw new ObserverError('chain_inconsistent', `bitcoin cursor moved while block ${block.hash} was fetched`, {
            hash: block.hash,
          });
        }
        const record: ObservedBlock = {
          hash: block.hash,
          prevHash: block.previousblockhash,
          created: [],
          spent: [],
          confirmed: [],
          foreign: [],
        };

        // One lookup for the whole block instead of one per input: most inputs are not ours.
        const inputKeys: string[] = [];
        for (const tx of block.tx)
          for (const input of tx.vin)
            if (input.txid !== undefined && input.vout !== undefined) inputKeys.push(utxoKey(input.txid, input.vout));
        const known = new Set<string>();
        (await this.#store.getMany<UtxoRecord>(inputKeys)).forEach(
          (utxo, i) => utxo !== undefined && known.add(inputKeys[i] as string),
        );
        const finalized = await this.#store.getMany<unknown>(block.tx.map((tx) => finalizedKey(tx.txid)));

        for (const [index, tx] of block.tx.entries()) {
          let paysFromFederation = finalized[index] !== undefined;
          for (const input of tx.vin) {
            if (input.txid === undefined || input.vout === undefined) continue;
            const key = utxoKey(input.txid, input.vout);
            if (!known.has(key)) continue;
            const before = await spendUtxo(batch, { txid: input.txid, vout: input.vout }, tx.txid);
            if (before !== undefined) {
              record.spent.push(before);
              paysFromFederation = true;
            }
          }
          let handedOver: boolean | undefined;
          for (const output of tx.vout) {
            if (output.scriptPubKey.hex !== this.#scriptHex) continue;
            const outpoint = { txid: tx.txid, vout: output.n };
            handedOver ??= this.#handedOver(tx);
            await registerUtxo(batch, {
              ...outpoint,
              value: btcToSats(output.value),
              scriptPubKey: this.#script,
              height: block.height,
              ...(handedOver ? { handedOver } : {}),
              pegIn: !paysFromFederation,
            });
            record.created.push(outpoint);
            known.add(utxoKey(tx.txid, output.n));
          }
          if (paysFromFederation) {
            batch.put(txConfirmationKey(tx.txid), {
              height: block.height,
              blockHash: block.hash,
            } satisfies TxConfirmation);
            record.confirmed.push(tx.txid);
            if (finalized[index] === undefined && tx.hex !== undefined) {
              batch.put(chainSpendKey(tx.txid), {
                txid: tx.txid,
                height: block.height,
                tx: fromHex(tx.hex, 'transaction hex'),
                found: new Date().toISOString(),
              } satisfies ChainSpend);
              record.foreign!.push(tx.txid);
            }
          }
        }

        batch.put(bitcoinBlockKey(block.height), record);
        batch.put(CURSOR_KEY, { height: block.height, hash: block.hash } satisfies BitcoinCursor);
        const forget = block.height - this.#keepBlocks;
        if (forget >= this.#startHeight) batch.del(bitcoinBlockKey(forget));
      },
      { sync: false },
    );
  }

  /** Whether `tx`'s outputs to us are a handoff's (on a rotation's new side). */
  #handedOver(tx: RpcTransaction): boolean {
    const from = this.#handedOverFrom;
    if (from === undefined || tx.hex === undefined) return false;
    const spent = spentScripts(tx);
    if (spent.some((script, i) => script === undefined && tx.vin[i]?.coinbase === undefined)) {
      throw new ObserverError(
        'config',
        `Bitcoin Core did not show the outputs that ${tx.txid} spends, so whether it hands coins over from the old federation cannot be told: getblock at verbosity 3 needs Bitcoin Core 23.0 or later`,
        { txid: tx.txid },
      );
    }
    return isHandoffOf(parseTx(fromHex(tx.hex)), spent, from);
  }

  async #rollback(cursor: BitcoinCursor): Promise<void> {
    await this.#store.transaction(
      async (batch) => {
        const current = await this.cursor();
        if (current?.hash !== cursor.hash)
          throw new ObserverError('chain_inconsistent', `bitcoin cursor moved during rollback of ${cursor.hash}`, {
            hash: cursor.hash,
          });
        const record = await this.#store.get<ObservedBlock>(bitcoinBlockKey(cursor.height));
        if (record === undefined || record.hash !== cursor.hash) {
          throw new ObserverError(
            'reorg_too_deep',
            `block ${cursor.hash} at height ${cursor.height} left the best chain but its undo data is gone (kept for ${this.#keepBlocks} blocks); the store cannot follow this reorg`,
            { height: cursor.height, hash: cursor.hash, keepBlocks: this.#keepBlocks },
          );
        }
        for (const txid of record.confirmed) {
          const confirmation = await batch.get<TxConfirmation>(txConfirmationKey(txid));
          if (confirmation?.blockHash === record.hash) batch.del(txConfirmationKey(txid));
        }
        for (const txid of record.foreign ?? []) batch.del(chainSpendKey(txid));
        // spends first, newest first: an output created and spent in this block is unspent again
        // before its creation is undone
        for (const before of [...record.spent].reverse()) await unspendUtxo(batch, before);
        for (const outpoint of [...record.created].reverse()) await unregisterUtxo(batch, outpoint);
        batch.del(bitcoinBlockKey(cursor.height));
        if (cursor.height - 1 >= this.#startHeight && record.prevHash !== undefined) {
          batch.put(CURSOR_KEY, { height: cursor.height - 1, hash: record.prevHash } satisfies BitcoinCursor);
        } else {
          batch.del(CURSOR_KEY);
        }
      },
      { sync: false },
    );
  }
}

/** What missing-UTXO recovery asks the node. */
export interface RecoverySource {
  getTxOut(txid: string, vout: number, includeMempool?: boolean): Promise<RpcTxOut | null>;
  getBlockSummary(hash: string): Promise<RpcBlockSummary>;
  getBlockHash(height: number): Promise<string>;
  getRawTransaction(txid: string, blockhash?: string): Promise<RpcTransaction>;
}

/**
 * An outpoint we do not know (named in a peer's proposal, or created below our start height):
 * accepted from the node, and stored as unspent, only if it pays the federation script, is
 * confirmed and is unspent — an output already spent in the mempool is refused too, since only
 * the federation can have spent it. gettxout answers for the UTXO set; getrawtransaction, asked
 * in the block gettxout's confirmations point to (so the node needs no -txindex), confirms the
 * output and its height. A known outpoint is returned as stored, without asking the node.
 */
export async function recoverUtxo(
  store: Store,
  node: RecoverySource,
  federationScript: Uint8Array,
  outpoint: Outpoint,
): Promise<UtxoRecord> {
  bitcoinHash(outpoint.txid, 'outpoint txid');
  const name = outpointText(outpoint);
  const stored = await getUtxo(store, outpoint);
  if (stored !== undefined) return stored;

  const expected = scriptHex(federationScript);
  const unspent = await node.getTxOut(outpoint.txid, outpoint.vout, true);
  if (unspent === null) {
    // spent, or never existed: the node can tell only if it still has the transaction
    // (mempool or -txindex)
    const known = await node.getRawTransaction(outpoint.txid).then(
      () => true,
      (err: unknown) => {
        if (err instanceof BitcoinRpcError && err.code === 'not_found') return false;
        throw err;
      },
    );
    if (known)
      throw new WalletError('utxo_spent', `outpoint ${name} is spent (in the chain or the mempool)`, {
        outpoint: name,
      });
    throw new WalletError('utxo_unknown', `outpoint ${name} is not in the node's UTXO set (spent, or never existed)`, {
      outpoint: name,
    });
  }
  if (unspent.scriptPubKey.hex !== expected) {
    throw new WalletError(
      'utxo_not_federation',
      `outpoint ${name} pays script ${unspent.scriptPubKey.hex}, not the federation script ${expected}`,
      { outpoint: name, script: unspent.scriptPubKey.hex },
    );
  }
  if (unspent.confirmations < 1)
    throw new WalletError('utxo_unconfirmed', `outpoint ${name} is not confirmed yet`, { outpoint: name });
  const best = await node.getBlockSummary(unspent.bestblock);
  const height = best.height - unspent.confirmations + 1;
  // stored from a block this member has not applied, the record would be in no block's undo data: a
  // reorg taking that block away would leave it in the books for good (the reserve audit's mismatch);
  // and as an input it has no confirmations here, so no proposal naming it is signed meanwhile
  const tip = await storedTipHeight(store);
  if (tip === undefined || height > tip)
    throw new WalletError(
      'utxo_unconfirmed',
      `outpoint ${name} is in block ${height}, which this member has not applied yet (its tip: ${tip ?? 'none'})`,
      { outpoint: name, height },
    );
  const blockHash = await node.getBlockHash(height);
  const tx = await node.getRawTransaction(outpoint.txid, blockHash);
  const output = tx.vout.find((o) => o.n === outpoint.vout);
  const value = btcToSats(unspent.value);
  if (output === undefined || output.scriptPubKey.hex !== expected || btcToSats(output.value) !== value) {
    throw new WalletError(
      'utxo_not_federation',
      `outpoint ${name}: the transaction in block ${height} does not have the output gettxout reports`,
      { outpoint: name, height },
    );
  }

  return store.transaction(
    (batch) => stageRecovered(batch, { ...outpoint, value, scriptPubKey: federationScript, height }, blockHash),
    {
      sync: false,
    },
  );
}

/**
 * Stores a recovered output of block `blockHash` at its height, unless the observer did meanwhile.
 * Refused from a block of another branch at a height this member applied (Core reorganised and this
 * member has not followed yet); from the block it applied, it goes into that block's undo data, so
 * that a reorg taking the block away takes the output with it. Older blocks keep no undo data, and a
 * reorg that deep cannot be followed anyway.
 */
async function stageRecovered(
  batch: StoreBatch,
  output: Omit<ChainOutput, 'pegIn'>,
  blockHash: string,
): Promise<UtxoRecord> {
  const meanwhile = await getUtxo(batch, output);
  if (meanwhile !== undefined) return meanwhile;
  const name = outpointText(output);
  const applied = await batch.get<ObservedBlock>(bitcoinBlockKey(output.height));
  if (applied !== undefined && applied.hash !== blockHash)
    throw new WalletError(
      'utxo_unconfirmed',
      `outpoint ${name} is in block ${output.height} (${blockHash}) of Bitcoin Core's chain, which is not the one this member applied at that height (${applied.hash}): it has not followed Core's reorganisation yet`,
      { outpoint: name, height: output.height },
    );
  const outpoint = { txid: output.txid, vout: output.vout };
  if (applied !== undefined)
    batch.put(bitcoinBlockKey(output.height), {
      ...applied,
      created: [...applied.created, outpoint],
    } satisfies ObservedBlock);
  // a peg-in unless its transaction is a federation payment this member knows; the observer
  // says again when it applies the block
  const known = await batch.getMany([finalizedKey(output.txid), txConfirmationKey(output.txid)]);
  await registerUtxo(batch, { ...output, pegIn: known.every((k) => k === undefined) });
  return (await getUtxo(batch, outpoint)) as UtxoRecord;
}
