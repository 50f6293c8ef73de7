import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { EvmError } from './errors.js';
import { EvmRpc } from './rpc.js';

// anvil comes from the npm package @foundry-rs/anvil (a real binary in node_modules).
const ANVIL = fileURLToPath(new URL('../../../node_modules/.bin/anvil', import.meta.url));

export interface Anvil {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * `count` distinct free TCP ports on the loopback interface. All of them are held open until every
 * one is known: ports asked for one after another may repeat (the kernel can hand a port out again
 * as soon as it is closed), and two members given the same port cannot both start.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.once('error', reject);
            server.listen(0, '127.0.0.1', () => {
              const address = server.address();
              if (typeof address === 'object' && address) resolve(address.port);
              else reject(new Error('no port'));
            });
          }),
      ),
    );
  } finally {
    await Promise.all(
      servers.map(
        (server) => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve())),
      ),
    );
  }
}

/** Starts anvil on 127.0.0.1 and waits until it answers; `args` are extra anvil flags. */
export async function startAnvil(args: string[] = []): Promise<Anvil> {
  const [port] = (await freePorts(1)) as [number];
  const child = spawn(ANVIL, ['--host', '127.0.0.1', '--port', String(port), '--silent', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const rpc = new EvmRpc(url, { retries: 0, timeoutMs: 1000 });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(3000).then(() => child.kill('SIGKILL'))]);
  };
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null)
      throw new EvmError('anvil_failed', `anvil exited with code ${child.exitCode}: ${stderr.trim()}`);
    try {
      await rpc.call('eth_chainId');
      return { url, port, process: child, stop };
    } catch {
      await sleep(100);
    }
  }
  await stop();
  throw new EvmError('anvil_failed', `anvil did not answer on ${url} within 10 s: ${stderr.trim()}`);
}
