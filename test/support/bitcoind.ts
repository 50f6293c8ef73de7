import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
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
