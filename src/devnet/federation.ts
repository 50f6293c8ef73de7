import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { toHex } from '../bitcoin/bytes.js';
import { buildFederation, defaultThreshold, type Federation } from '../bitcoin/federation.js';
import { freePorts, startAnvil, type Anvil } from '../evm/anvil.js';
import { installBridge } from '../evm/bridge.js';
import { EvmRpc } from '../evm/rpc.js';
import { generateSecretKey, writeKeyFile } from '../signing/keyfile.js';
import { startRegtest, type Regtest } from './bitcoind.js';
import { BACKEND_ENV, schnorrBackend } from '../signing/schnorr.js';

// A local federation on loopback: anvil with the bridge, n member processes (`pegout node`),
// each with its own key file, store, ports and log file under one directory, and with a
// bitcoind binary a regtest node that funds the federation by peg-ins and mines its payments.
// Used by `pegout devnet`, the multi-process tests and `npm run bench:e2e`.

const PEGOUT = fileURLToPath(new URL('../../../bin/pegout.js', import.meta.url));

/**
 * V8 flags for members that share the machine's cores, as every devnet member does (measured in
 * `git show 53ff4b7:bench/results/README.md`, "V8's collector and young generation"):
 * - a young generation allowed to grow to 64 MB semi-spaces (it starts at 1 MB and grows only under
 *   load), so that a round's records and batches die in it instead of being copied and promoted;
 * - garbage collected on the member's own thread: V8's parallel and concurrent collection starts
 *   helper threads in every process, which on cores already busy with the other members contend
 *   with them rather than run beside them.
 * Together: about 5 % less CPU per member and 5 % more throughput in a 5-of-7 throughput run.
 * A member on cores of its own needs only the first (the Dockerfile's entry point).
 */
export const SHARED_CORE_NODE_FLAGS = ['--max-semi-space-size=64', '--single-threaded-gc'] as const;

export interface DevnetOptions {
  readonly dir: string;
  readonly members: number;
  readonly threshold?: number;
  /** Federation outputs and their value: peg-ins on regtest with `bitcoind`, else declared (they exist on no chain). */
  readonly funding: { readonly count: number; readonly sats: number };
  /** A Bitcoin Core binary: members broadcast to a regtest node that the caller mines. */
  readonly bitcoind?: string;
  /** With `bitcoind`: confirmations after which a request is paid. */
  readonly paidConfirmations?: number;
  readonly slotMs?: number;
  readonly maxOutputs?: number;
  readonly workers?: number;
  readonly evmConfirmations?: number;
  /** Environment for every member process (e.g. PEGOUT_SECP256K1=js). */
  readonly memberEnv?: NodeJS.ProcessEnv;
  /** Node options for member `index`'s process, after SHARED_CORE_NODE_FLAGS (e.g. --cpu-prof for a benchmark). */
  readonly nodeArgs?: (index: number) => readonly string[];
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** The members' keys (else `members` fresh ones): a rotation's two federations share some. */
  readonly secretKeys?: readonly Uint8Array[];
  /**
   * Another devnet's chains, to run a second federation beside it (a rotation): no bridge install,
   * no peg-ins, and stop() leaves them running.
   */
  readonly chains?: { readonly anvil: Anvil; readonly regtest: Regtest | undefined };
  /** A rotation plan file every member loads (config `rotation.plan`). */
  readonly rotationPlan?: string;
}

export interface DevnetMember {
  readonly index: number;
  readonly key: string;
  readonly configFile: string;
  readonly storeDir: string;
  readonly logFile: string;
  readonly apiUrl: string;
  process: ChildProcess | undefined;
}

export interface Devnet {
  readonly anvil: Anvil;
  /** With `bitcoind` only. */
  readonly regtest: Regtest | undefined;
  readonly federation: Federation;
  readonly members: readonly DevnetMember[];
  /** Starts member i (again); resolves once its API answers. */
  start(i: number): Promise<void>;
  /** Kills member i's process with `signal` and waits for it to exit. */
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Stops every member (SIGTERM, then SIGKILL), bitcoind and anvil. */
  stop(): Promise<void>;
}

/** What a member process needs from the devnet's environment; its config file says the rest. */
const INHERITED = ['PATH', 'HOME', 'NODE_OPTIONS', BACKEND_ENV] as const;

/**
 * A member process's environment: INHERITED from `parent` where set, then `extra`. Nothing
 * else passes, so a secret in the devnet's environment (an EVM key for sending requests, say)
 * never reaches the members, and a stray PEGOUT_* override cannot reconfigure them.
 */
export function memberProcessEnv(parent: NodeJS.ProcessEnv, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of INHERITED) if (parent[name] !== undefined) env[name] = parent[name];
  return { ...env, ...extra };
}

async function waitForApi(url: string, child: ChildProcess, logFile: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      // the log's last lines in the error itself: a test's temp dir, log included, goes when the test ends
      const tail = await logTail(logFile);
      throw new Error(
        `member exited (${child.exitCode ?? child.signalCode}) before its API answered; ${logFile} ends:\n${tail}`,
      );
    }
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      // 503: started, degraded (paused, an alarm): a member that pauses itself at start has started too
      if (res.ok || res.status === 503) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`member API ${url} did not answer within ${timeoutMs / 1000} s; see ${logFile}`);
}

/** The last `lines` lines of a member's log (its stderr too), or why they cannot be read. */
async function logTail(logFile: string, lines = 20): Promise<string> {
  try {
    return (await readFile(logFile, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch (err) {
    return `(unreadable: ${(err as Error).message})`;
  }
}

async function killChild(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await Promise.race([exited, sleep(10_000).then(() => child.kill('SIGKILL'))]);
  await exited;
}

/** Each member's home: key file (0600), config with the others as wss:// peers, where its store and log go. */
async function writeMemberConfigs(
  o: DevnetOptions,
  secretKeys: readonly Uint8Array[],
  federation: Federation,
  anvilUrl: string,
  regtest: Regtest | undefined,
  depth: number,
): Promise<DevnetMember[]> {
  // in key-file order, as the members were made (federation.pubkeys are sorted)
  const pubkeys = secretKeys.map((k) => schnorrBackend().xonlyPublicKey(k));
  const ports = await freePorts(2 * pubkeys.length);
  const p2pPorts = ports.slice(0, pubkeys.length);
  const apiPorts = ports.slice(pubkeys.length);
  const members: DevnetMember[] = [];
  for (const [i, secretKey] of secretKeys.entries()) {
    // absolute: a config's relative paths are read from its own directory
    const home = join(resolve(o.dir), `member-${i + 1}`);
    await mkdir(home, { recursive: true });
    const keyFile = join(home, 'member.key');
    await writeKeyFile(keyFile, secretKey);
    const peers = pubkeys.flatMap((k, j) => (j === i ? [] : [[toHex(k), `wss://127.0.0.1:${p2pPorts[j]}`]]));
    const bitcoin = regtest
      ? {
          rpcUrl: regtest.rpcUrl,
          cookieFile: resolve(regtest.cookieFile),
          paidConfirmations: depth,
          spendConfirmations: depth,
          pollMs: 500,
        }
      : null;
    const config = {
      network: 'regtest',
      federation: { threshold: federation.threshold, pubkeys: pubkeys.map(toHex) },
      memberKeyFile: keyFile,
      storeDir: join(home, 'store'),
      p2p: { host: '127.0.0.1', port: p2pPorts[i], peers: Object.fromEntries(peers) },
      // tests and benchmarks poll every member's API from this one address
      api: { host: '127.0.0.1', port: apiPorts[i], lookupsPerSecond: 100_000, lookupsPerSecondTotal: 100_000 },
      evm: { rpcUrl: anvilUrl, confirmations: o.evmConfirmations ?? 1, pollMs: 200 },
      bitcoin,
      declaredFunding: regtest ? null : { count: o.funding.count, sats: o.funding.sats, feeRate: 2 },
      rotation: o.rotationPlan ? { plan: resolve(o.rotationPlan) } : null,
      rounds: { slotMs: o.slotMs ?? 1000, maxOutputs: o.maxOutputs ?? 100 },
      workers: o.workers ?? 1,
      logLevel: o.logLevel ?? 'info',
    };
    const configFile = join(home, 'config.json');
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
    const member = {
      index: i,
      key: toHex(pubkeys[i]!),
      configFile,
      storeDir: config.storeDir,
      logFile: join(home, 'member.log'),
    };
    members.push({ ...member, apiUrl: `http://127.0.0.1:${apiPorts[i]}`, process: undefined });
  }
  return members;
}

export async function startDevnet(o: DevnetOptions): Promise<Devnet> {
  await mkdir(o.dir, { recursive: true });
  // anvil mines a block every second whatever happens, so requests reach their confirmation depth
  const anvil =
    o.chains?.anvil ?? (await startAnvil(['--block-time', '1', '--gas-limit', '3000000000', '--accounts', '20']));
  let regtest: Regtest | undefined = o.chains?.regtest;
  const stopChains = async (): Promise<void> => {
    if (o.chains) return;
    await regtest?.stop();
    await anvil.stop();
  };
  try {
    if (!o.chains) await installBridge(new EvmRpc(anvil.url));
    const secretKeys = o.secretKeys ?? Array.from({ length: o.members }, generateSecretKey);
    const pubkeys = secretKeys.map((k) => schnorrBackend().xonlyPublicKey(k));
    const threshold = o.threshold ?? defaultThreshold(secretKeys.length);
    const federation = buildFederation({ network: 'regtest', threshold, pubkeys });
    // on the devnet, outputs are spent at the depth where payments count as paid
    const depth = o.paidConfirmations ?? 2;
    if (o.bitcoind && !o.chains) {
      regtest = await startRegtest(o.bitcoind, join(o.dir, 'bitcoind'));
      await pegIn(regtest, federation.address, o.funding, depth);
    }
    const members = await writeMemberConfigs(o, secretKeys, federation, anvil.url, regtest, depth);

    const start = async (i: number): Promise<void> => {
      const m = members[i]!;
      const log = createWriteStream(m.logFile, { flags: 'a' });
      await new Promise((resolve) => log.once('open', resolve));
      const child = spawn(
        process.execPath,
        [...SHARED_CORE_NODE_FLAGS, ...(o.nodeArgs?.(i) ?? []), PEGOUT, 'node', '--config', m.configFile],
        {
          stdio: ['ignore', log, log],
          env: memberProcessEnv(process.env, o.memberEnv),
        },
      );
      child.once('exit', () => log.end());
      m.process = child;
      await waitForApi(m.apiUrl, child, m.logFile);
    };
    const kill = async (i: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
      await killChild(members[i]!.process, signal);
    };
    const stop = async (): Promise<void> => {
      await Promise.all(members.map((m) => killChild(m.process, 'SIGTERM')));
      await stopChains();
    };
    try {
      await Promise.all(members.map((_, i) => start(i)));
    } catch (err) {
      await stop();
      throw err;
    }
    return { anvil, regtest, federation, members, start, kill, stop };
  } catch (err) {
    await stopChains();
    throw err;
  }
}

/**
 * Funds the federation with `count` peg-ins of `sats`, confirmed. One transaction each: Bitcoin
 * Core refuses a transaction paying the same address twice; a block every few keeps the wallet's
 * unconfirmed chains under the mempool's limits.
 */
async function pegIn(
  regtest: Regtest,
  address: string,
  funding: { readonly count: number; readonly sats: number },
  depth: number,
): Promise<void> {
  // 100 mature coinbases of 50 BTC: enough for any devnet funding
  await regtest.mine(200);
  for (let i = 0; i < funding.count; i++) {
    await regtest.rpc.call<string>('sendtoaddress', [address, (funding.sats / 1e8).toFixed(8)]);
    if (i % 20 === 19) await regtest.mine(1);
  }
  // deep enough for the members to spend (bitcoin.spendConfirmations)
  await regtest.mine(depth);
}

/** A member's request counts by status, read from its /metrics. */
export async function requestCounts(member: DevnetMember): Promise<Record<string, number>> {
  const text = await (await fetch(`${member.apiUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^pegout_requests\{status="([a-z_]+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}
