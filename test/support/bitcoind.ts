import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BitcoinRpcClient, BitcoinRpcError } from '../../src/bitcoin/rpc.js';

/**
 * A real Bitcoin Core in regtest for tests, when env BITCOIND names the binary. Loopback only,
 * free ports, its own temp datadir; stopped and removed when the owner ends.
 */

export const BITCOIND = process.env.BITCOIND;
export const NO_BITCOIND = 'BITCOIND not set: set BITCOIND=/path/to/bitcoind to run the regtest tests';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface Regtest {
  rpc: BitcoinRpcClient;
  /** A wallet address (for mining and change). */
  minerAddress: string;
}

export async function startRegtest(owner: { after(fn: () => Promise<void>): void }, binary: string): Promise<Regtest> {
  const datadir = await mkdtemp(path.join(tmpdir(), 'pegout-bitcoind-'));
  const [rpcPort, p2pPort] = [await freePort(), await freePort()];
  const child = spawn(
    binary,
    ['-regtest', `-datadir=${datadir}`, `-rpcport=${rpcPort}`, `-port=${p2pPort}`, '-listen=0', '-server', '-rpcbind=127.0.0.1', '-rpcallowip=127.0.0.1', '-dnsseed=0', '-fixedseeds=0', '-fallbackfee=0.0002', '-printtoconsole=0'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const rpc = new BitcoinRpcClient({ url: `http://127.0.0.1:${rpcPort}`, auth: { cookieFile: path.join(datadir, 'regtest', '.cookie') }, retries: 0, timeoutMs: 30_000 });
  owner.after(async () => {
    await rpc.call('stop').catch(() => undefined);
    rpc.close();
    const stopped = await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)]);
    if (!stopped) {
      child.kill('SIGKILL');
      await exited;
    }
    await rm(datadir, { recursive: true, force: true });
  });

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`bitcoind exited with code ${child.exitCode}: ${stderr}`);
    try {
      await rpc.getBlockchainInfo();
      break;
    } catch (err) {
      const starting = err instanceof BitcoinRpcError && ['transport', 'config', 'warming_up', 'unauthorized'].includes(err.code);
      if (!starting || Date.now() > deadline) throw err;
      await sleep(200);
    }
  }
  await rpc.call('createwallet', ['test']);
  const minerAddress = await rpc.call<string>('getnewaddress');
  return { rpc, minerAddress };
}
