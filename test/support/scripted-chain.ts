import { createHash } from 'node:crypto';
import {
  BitcoinRpcError,
  btcToSats,
  type ChainSource,
  type RpcBlock,
  type RpcBlockSummary,
  type RpcTransaction,
  type RpcTxOut,
  type ScannedOutput,
  type TxOutSetScan,
} from '../../src/chain/rpc.js';
import type { RecoverySource } from '../../src/chain/observer.js';
import type { Outpoint } from '../../src/wallet/utxos.js';
import { toHex } from '../../src/bitcoin/bytes.js';
import { serializeTx, txid as txidOf, type Transaction } from '../../src/bitcoin/tx.js';

/**
 * An in-memory chain that answers like Bitcoin Core's getblockcount / getblockhash / getblock
 * (verbosity 3: each input's spent output, where this chain made it) and the recovery calls, so
 * tests can script blocks, reorgs and mempool spends. It is a fake of the node only: stores in
 * tests are always real RocksDB.
 */

export function fakeHash(...parts: (string | number)[]): string {
  return createHash('sha256').update(parts.join('|')).digest('hex');
}

export interface ScriptedOutput {
  /** scriptPubKey hex */
  script: string;
  sats: bigint;
}

export function scriptedTx(id: string, inputs: Outpoint[], outputs: ScriptedOutput[]): RpcTransaction {
  const txid = fakeHash('tx', id);
  return {
    txid,
    hash: txid,
    vin: inputs.map((o) => ({ txid: o.txid, vout: o.vout, sequence: 0xfffffffd })),
    vout: outputs.map((o, n) => ({ n, value: Number(o.sats) / 1e8, scriptPubKey: { hex: o.script } })),
  };
}

/** A real transaction as getblock shows it, raw bytes included (the chain adds prevouts when mined). */
export function rpcTransaction(tx: Transaction): RpcTransaction {
  const txid = txidOf(tx);
  return {
    txid,
    hash: txid,
    hex: toHex(serializeTx(tx)),
    vin: tx.inputs.map((i) => ({ txid: i.txid, vout: i.vout, sequence: i.sequence })),
    vout: tx.outputs.map((o, n) => ({ n, value: Number(o.value) / 1e8, scriptPubKey: { hex: toHex(o.scriptPubKey) } })),
  };
}

function coinbase(tag: string, height: number): RpcTransaction {
  const txid = fakeHash('coinbase', tag, height);
  return {
    txid,
    hash: txid,
    vin: [{ coinbase: '00', sequence: 0xffffffff }],
    vout: [{ n: 0, value: 50, scriptPubKey: { hex: '51' } }],
  };
}

export class ScriptedChain implements ChainSource, RecoverySource {
  /** The best chain, index = height. */
  readonly best: RpcBlock[] = [];
  readonly #byHash = new Map<string, RpcBlock>();
  /** Outpoints spent by mempool transactions (for gettxout with include_mempool). */
  readonly mempoolSpends = new Set<string>();
  /** Transactions in the mempool (for gettxout of unconfirmed outputs). */
  readonly mempool: RpcTransaction[] = [];
  /** When set, the node reports at most this height (reveals a long chain step by step). */
  tipLimit: number | undefined;
  #salt = 0;

  constructor(
    genesisHeight = 0,
    readonly tag = 'chain',
  ) {
    for (let h = 0; h <= genesisHeight; h++) this.mine([]);
  }

  get tip(): number {
    return this.best.length - 1;
  }

  /** Appends a block; `label` tells apart blocks of competing branches at the same height. */
  mine(txs: RpcTransaction[], label = ''): RpcBlock {
    const height = this.best.length;
    const prev = this.best[height - 1];
    const hash = fakeHash('block', this.tag, height, prev?.hash ?? '', this.#salt++, label);
    const block: RpcBlock = {
      hash,
      height,
      confirmations: 1,
      tx: [coinbase(`${this.tag}${this.#salt}`, height)],
    };
    for (const tx of txs) block.tx.push(this.#withPrevouts(tx, block));
    if (prev !== undefined) block.previousblockhash = prev.hash;
    this.best.push(block);
    this.#byHash.set(hash, block);
    for (const tx of txs) for (const input of tx.vin) this.mempoolSpends.delete(`${input.txid}:${input.vout}`);
    return block;
  }

  /** Drops the top `depth` blocks from the best chain (like invalidateblock); the old blocks stay fetchable by hash. */
  disconnect(depth: number): void {
    this.best.splice(this.best.length - depth, depth);
  }

  async getBlockCount(): Promise<number> {
    return this.tipLimit === undefined ? this.tip : Math.min(this.tip, this.tipLimit);
  }

  async getBlockHash(height: number): Promise<string> {
    const block = this.best[height];
    if (block === undefined || height > (await this.getBlockCount()))
      throw new BitcoinRpcError('not_found', 'Block height out of range', { rpcCode: -8 });
    return block.hash;
  }

  async getBlock(hash: string): Promise<RpcBlock> {
    const block = this.#byHash.get(hash);
    if (block === undefined) throw new BitcoinRpcError('not_found', 'Block not found', { rpcCode: -5 });
    return structuredClone(block);
  }

  async getBlockSummary(hash: string): Promise<RpcBlockSummary> {
    const { tx: _tx, ...summary } = await this.getBlock(hash);
    return summary;
  }

  /** `tx` with each input's spent output, when the best chain below or `block` before it made it. */
  #withPrevouts(tx: RpcTransaction, block: RpcBlock): RpcTransaction {
    const made = (txid: string) => {
      const earlier = block.tx.find((t) => t.txid === txid);
      return earlier === undefined ? this.#findConfirmed(txid) : { tx: earlier, height: block.height };
    };
    const vin = tx.vin.map((input) => {
      const source = input.txid === undefined ? undefined : made(input.txid);
      const output = source?.tx.vout.find((o) => o.n === input.vout);
      return source === undefined || output === undefined
        ? input
        : { ...input, prevout: { value: output.value, height: source.height, scriptPubKey: output.scriptPubKey } };
    });
    return { ...tx, vin };
  }

  #findConfirmed(txid: string): { tx: RpcTransaction; height: number } | undefined {
    for (const block of this.best) {
      const tx = block.tx.find((t) => t.txid === txid);
      if (tx !== undefined) return { tx, height: block.height };
    }
    return undefined;
  }

  /** Like a node without -txindex: confirmed transactions only when their block is named. */
  async getRawTransaction(txid: string, blockhash?: string): Promise<RpcTransaction> {
    const found =
      blockhash === undefined
        ? this.mempool.find((t) => t.txid === txid)
        : this.#byHash.get(blockhash)?.tx.find((t) => t.txid === txid);
    if (found === undefined)
      throw new BitcoinRpcError('not_found', 'No such mempool or blockchain transaction', { rpcCode: -5 });
    return structuredClone(found);
  }

  async getTxOut(txid: string, vout: number, includeMempool = true): Promise<RpcTxOut | null> {
    const spentInChain = this.best.some((b) => b.tx.some((t) => t.vin.some((i) => i.txid === txid && i.vout === vout)));
    if (spentInChain || (includeMempool && this.mempoolSpends.has(`${txid}:${vout}`))) return null;
    const confirmed = this.#findConfirmed(txid);
    const tx = confirmed?.tx ?? (includeMempool ? this.mempool.find((t) => t.txid === txid) : undefined);
    const output = tx?.vout.find((o) => o.n === vout);
    if (output === undefined) return null;
    const tipBlock = this.best[this.tip] as RpcBlock;
    return {
      bestblock: tipBlock.hash,
      confirmations: confirmed === undefined ? 0 : this.tip - confirmed.height + 1,
      value: output.value,
      scriptPubKey: output.scriptPubKey,
      coinbase: false,
    };
  }
}

/** What scantxoutset would find for `scriptPubKey` on the chain's best branch (the reserve audit's Core). */
export function scanOf(chain: ScriptedChain, scriptPubKey: Uint8Array): TxOutSetScan {
  const script = toHex(scriptPubKey);
  const utxos = new Map<string, ScannedOutput>();
  for (const block of chain.best) {
    for (const tx of block.tx) {
      for (const i of tx.vin) if (i.txid !== undefined) utxos.delete(`${i.txid}:${i.vout}`);
      for (const o of tx.vout)
        if (o.scriptPubKey.hex === script)
          utxos.set(`${tx.txid}:${o.n}`, {
            txid: tx.txid,
            vout: o.n,
            value: btcToSats(o.value),
            scriptPubKey: script,
            height: block.height,
          });
    }
  }
  const tip = chain.best[chain.tip]!;
  const outputs = [...utxos.values()];
  return { height: tip.height, bestblock: tip.hash, outputs, total: outputs.reduce((a, o) => a + o.value, 0n) };
}
