import { createHash } from 'node:crypto';
import { ScriptedChain, scriptedTx } from './scripted-chain.js';
import type { Outpoint } from '../../src/wallet/utxos.js';

/**
 * The chain of the crash-safety test, rebuilt identically by the child (which observes it)
 * and the parent (which checks the store against it). Each round forks: blocks from `height`
 * up come from branch `branch`; below the newest fork the chain equals the previous round's.
 */

export const CRASH_START_HEIGHT = 101;
/** Undo data kept by the worker's observer: small, so pruning happens too; forks stay shallower. */
export const CRASH_KEEP_BLOCKS = 50;
export const FED_HEX = `5120${'cd'.repeat(32)}`;
export const FED_SCRIPT = Uint8Array.from(Buffer.from(FED_HEX, 'hex'));
const USER_HEX = `0014${'22'.repeat(20)}`;

export interface Fork {
  height: number;
  branch: number;
}

function rng(...seed: (string | number)[]): () => number {
  let state = createHash('sha256').update(seed.join('|')).digest().readUInt32LE(0) || 1;
  return () => {
    // xorshift32: deterministic, good enough to pick test contents
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

export function buildCrashChain(forks: readonly Fork[], lastHeight: number): ScriptedChain {
  const chain = new ScriptedChain(CRASH_START_HEIGHT - 1, 'crash');
  const unspent: Outpoint[] = [];
  for (let h = CRASH_START_HEIGHT; h <= lastHeight; h++) {
    let branch = 0;
    for (const fork of forks) if (fork.height <= h) branch = fork.branch;
    const random = rng(branch, h);
    const txs = [];
    const pegIns = Math.floor(random() * 3);
    for (let k = 0; k < pegIns; k++) {
      const tx = scriptedTx(
        `b${branch}h${h}peg${k}`,
        [],
        [
          { script: USER_HEX, sats: 1000n },
          { script: FED_HEX, sats: BigInt(1_000_000 + Math.floor(random() * 1e8)) },
        ],
      );
      txs.push(tx);
      unspent.push({ txid: tx.txid, vout: 1 });
    }
    const spends = Math.floor(random() * 3);
    for (let k = 0; k < spends && unspent.length > 0; k++) {
      const inputs = [unspent.splice(Math.floor(random() * unspent.length), 1)[0] as Outpoint];
      if (unspent.length > 0 && random() < 0.5)
        inputs.push(unspent.splice(Math.floor(random() * unspent.length), 1)[0] as Outpoint);
      const withChange = random() < 0.7;
      const tx = scriptedTx(`b${branch}h${h}pay${k}`, inputs, [
        { script: USER_HEX, sats: 500_000n },
        ...(withChange ? [{ script: FED_HEX, sats: 400_000n }] : []),
      ]);
      txs.push(tx);
      if (withChange) unspent.push({ txid: tx.txid, vout: 1 });
    }
    chain.mine(txs, `b${branch}`);
  }
  return chain;
}

export interface ReplayedOutput {
  height: number;
  value: bigint;
  spentBy?: string;
}

/** What the store must hold after applying blocks CRASH_START_HEIGHT..height of `chain`. */
export function replay(
  chain: ScriptedChain,
  height: number,
): { outputs: Map<string, ReplayedOutput>; payments: Map<string, number> } {
  const outputs = new Map<string, ReplayedOutput>();
  const payments = new Map<string, number>();
  for (let h = CRASH_START_HEIGHT; h <= height; h++) {
    for (const tx of chain.best[h]?.tx ?? []) {
      for (const input of tx.vin) {
        const spent = outputs.get(`${input.txid}:${input.vout}`);
        if (spent !== undefined) {
          spent.spentBy = tx.txid;
          payments.set(tx.txid, h);
        }
      }
      for (const output of tx.vout) {
        if (output.scriptPubKey.hex === FED_HEX)
          outputs.set(`${tx.txid}:${output.n}`, { height: h, value: BigInt(Math.round(output.value * 1e8)) });
      }
    }
  }
  return { outputs, payments };
}
