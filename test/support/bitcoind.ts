import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { rawDescriptor, type TxOutSetScan } from '../../src/chain/rpc.js';
import { startRegtest as startNode, type Regtest } from '../../src/devnet/bitcoind.js';

/**
 * A real Bitcoin Core in regtest for tests, when env BITCOIND names the binary; stopped and removed when the owner
 * ends.
 */

export const BITCOIND = process.env.BITCOIND;
export const NO_BITCOIND = 'BITCOIND not set: set BITCOIND=/path/to/bitcoind to run the regtest tests';
export type { Regtest };

export async function startRegtest(owner: { after(fn: () => Promise<void>): void }, binary: string): Promise<Regtest> {
  const datadir = await mkdtemp(path.join(tmpdir(), 'pegout-bitcoind-'));
  const node = await startNode(binary, datadir);
  owner.after(async () => {
    await node.stop();
    await rm(datadir, { recursive: true, force: true });
  });
  return node;
}

/**
 * Core's UTXO set at `scriptPubKey`. Core runs one scan at a time, and the members' reserve audits
 * scan the same node: a test's own scan waits its turn instead of failing on theirs.
 */
export async function scanScript(node: Regtest, scriptPubKey: Uint8Array): Promise<TxOutSetScan> {
  for (let tries = 0; ; tries++) {
    try {
      return await node.rpc.scanTxOutSet([rawDescriptor(scriptPubKey)]);
    } catch (err) {
      if (tries >= 100 || !(err as Error).message.includes('Scan already in progress')) throw err;
      await sleep(100);
    }
  }
}
