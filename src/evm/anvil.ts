import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
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

/** Where freePorts takes ports from: here up to the kernel's ephemeral range. */
const FIXED_PORTS_FROM = 20_000;
/** Ports this process handed out: never handed out again, whether or not they are in use now. */
const handedOut = new Set<number>();

/** The first port of the kernel's ephemeral range (Linux), or undefined where it cannot be read. */
async function ephemeralLow(): Promise<number | undefined> {
  try {
    const low = Number((await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/)[0]);
    return Number.isSafeInteger(low) ? low : undefined;
  } catch {
    return undefined;
  }
}

/** Listens on `port` (0: any) on 127.0.0.1 and closes again: the port it got, or undefined when it is taken. */
function probe(port: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) =>
      err.code === 'EADDRINUSE' || err.code === 'EACCES' ? resolve(undefined) : reject(err),
    );
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/**
 * `count` distinct free TCP ports on the loopback interface, for processes to listen on later, and
 * again after a restart. Taken below the kernel's ephemeral range where there is room (Linux):
 * listen(0) anywhere on the machine takes its port from that range, so a port from it can go to
 * another process (another test run's, say) while the member it was chosen for is down, whose
 * restart then fails with EADDRINUSE. A port below it goes only to a process asking for it by
 * number. None is handed out twice by one process: ports asked for one after another could
 * otherwise repeat, and two members given one port cannot both start.
 */
export async function freePorts(count: number): Promise<number[]> {
  const low = await ephemeralLow();
  const room = low === undefined ? 0 : low - FIXED_PORTS_FROM;
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count && room >= 1000 && attempt < 50 * count; attempt++) {
    const candidate = FIXED_PORTS_FROM + Math.floor(Math.random() * room);
    if (handedOut.has(candidate)) continue;
    // marked before the probe: a concurrent call must not probe it too once this probe closed it
    handedOut.add(candidate);
    if ((await probe(candidate)) !== undefined) ports.push(candidate);
  }
  while (ports.length < count) {
    const port = await probe(0);
    if (port === undefined) throw new Error('no free port on 127.0.0.1');
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    ports.push(port);
  }
  return ports;
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
