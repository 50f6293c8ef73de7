import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BitcoinRpcClient, BitcoinRpcError } from '../chain/rpc.js';
import { freePorts } from '../evm/anvil.js';

// A Bitcoin Core node in regtest for the devnet and the tests: loopback only, free ports, its
// own data directory, a wallet that mines and funds. Bitcoin Core is not in the registries this
// project installs from, so it runs only when the operator has a binary.

export interface Regtest {
  readonly rpc: BitcoinRpcClient;
  readonly rpcUrl: string;
  readonly cookieFile: string;
  /** A wallet address: coinbase rewards and change go there. */
  readonly minerAddress: string;
  mine(blocks: number): Promise<string[]>;
  stop(): Promise<void>;
}

/** The bitcoind to use: env BITCOIND, else `bitcoind` on PATH, else undefined. */
export function findBitcoind(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.BITCOIND) return env.BITCOIND;
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, 'bitcoind');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export async function startRegtest(binary: string, datadir: string): Promise<Regtest> {
  await mkdir(datadir, { recursive: true });
  const [rpcPort, p2pPort] = await freePorts(2);
  const child = spawn(
    binary,
    // txindex: the devnet shows confirmed payments the wallet does not own
    [
      '-regtest',
      `-datadir=${datadir}`,
      `-rpcport=${rpcPort}`,
      `-port=${p2pPort}`,
      '-listen=0',
      '-server',
      '-rpcbind=127.0.0.1',
      '-rpcallowip=127.0.0.1',
      '-dnsseed=0',
      '-fixedseeds=0',
      '-fallbackfee=0.0002',
      '-txindex=1',
      '-printtoconsole=0',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const rpcUrl = `http://127.0.0.1:${rpcPort}`;
  const cookieFile = join(datadir, 'regtest', '.cookie');
  const rpc = new BitcoinRpcClient({ url: rpcUrl, auth: { cookieFile }, retries: 0, timeoutMs: 30_000 });
  const stop = async (): Promise<void> => {
    await rpc.call('stop').catch(() => undefined);
    rpc.close();
    const stopped = await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)]);
    if (!stopped) {
      child.kill('SIGKILL');
      await exited;
    }
  };

  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`bitcoind exited with code ${child.exitCode}: ${stderr.trim()}`);
      try {
        await rpc.getBlockchainInfo();
        break;
      } catch (err) {
        const starting =
          err instanceof BitcoinRpcError && ['transport', 'config', 'warming_up', 'unauthorized'].includes(err.code);
        if (!starting || Date.now() > deadline) throw err;
        await sleep(200);
      }
    }
    await rpc.call('createwallet', ['devnet']);
    const minerAddress = await rpc.call<string>('getnewaddress');
    // a fresh coinbase address each time: after invalidateblock, a block mined to the same address
    // in the same second would repeat the invalidated one, and Core refuses it
    const mine = async (blocks: number): Promise<string[]> =>
      rpc.call<string[]>('generatetoaddress', [blocks, await rpc.call<string>('getnewaddress')]);
    return { rpc, rpcUrl, cookieFile, minerAddress, mine, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
