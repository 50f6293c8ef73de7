import { readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { Contract, JsonRpcProvider, Wallet } from 'ethers';
import { parseNetwork, type Network } from '../bitcoin/network.js';
import {
  BRIDGE_ADDRESS,
  bridgeInterface,
  bridgeRequestLogs,
  decodeRequestLog,
  installBridge,
  REQUEST_PEGOUT_TOPIC,
  type RawLog,
  type RequestLog,
} from '../evm/bridge.js';
import { EvmError } from '../evm/errors.js';
import { decideRequest, parseBtcAmount, WEI_PER_SAT, type RequestDecision } from '../evm/decider.js';
import { requestId } from '../evm/request-id.js';
import { EvmRpc, hexQuantity } from '../evm/rpc.js';
import { CliError, integerOption, printResult } from './output.js';

/** An EVM private key from a 0600 file (hex, or JSON {"privateKey"}) or an environment variable. */
async function loadEvmKey(opts: { key?: string; privateKeyEnv?: string }): Promise<string> {
  let raw: string | undefined;
  let source: string;
  if (opts.key) {
    source = `key file ${opts.key}`;
    const mode =
      (
        await stat(opts.key).catch(() => {
          throw new EvmError('invalid_key', `cannot read ${source}`);
        })
      ).mode & 0o777;
    if (mode & 0o077)
      throw new EvmError(
        'invalid_key',
        `${source} has mode ${mode.toString(8).padStart(4, '0')}; it must not be readable by group or others (chmod 600)`,
      );
    const text = (await readFile(opts.key, 'utf8')).trim();
    raw = text.startsWith('{') ? (JSON.parse(text) as { privateKey?: string }).privateKey : text;
  } else if (opts.privateKeyEnv) {
    source = `environment variable ${opts.privateKeyEnv}`;
    raw = process.env[opts.privateKeyEnv];
  } else {
    throw new CliError('give the sender key with --key FILE or --private-key-env VAR');
  }
  const hex = raw?.startsWith('0x') ? raw : `0x${raw ?? ''}`;
  if (!/^0x[0-9a-fA-F]{64}$/.test(hex))
    throw new EvmError('invalid_key', `${source} must hold a 32-byte hex private key`);
  return hex;
}

/**
 * Everything a request can be refused for, checked before any money moves: the address must be
 * valid for the network (checksum included), the amount exact in satoshis and not under the
 * minimum.
 */
export function checkPegOut(address: string, amount: string, network: Network): { sats: bigint; wei: bigint } {
  const sats = parseBtcAmount(amount);
  const wei = sats * WEI_PER_SAT;
  // the request decider the members run: what it would reject is burned and never paid
  const decision = decideRequest(new TextEncoder().encode(address), wei, network);
  if (decision.status === 'rejected') {
    const code =
      decision.reason === 'below_minimum' || decision.reason === 'amount_overflow'
        ? 'invalid_amount'
        : decision.reason!;
    throw new EvmError(
      code,
      `${decision.detail}; the bridge would burn the coins and the federation would not pay them`,
      { reason: decision.reason },
    );
  }
  return { sats, wei };
}

/** A bridge log with the federation's decision on it, or, when it does not decode, why. */
export type DecidedLog =
  | { readonly id: string; readonly log: RequestLog; readonly decision: RequestDecision }
  | { readonly id: string; readonly raw: RawLog; readonly error: string };

/** The bridge's requests among `logs` (chain order), each with its ordinal-based id and its decision. */
export function decideLogs(logs: readonly RawLog[], bridge: string, network: Network): DecidedLog[] {
  return bridgeRequestLogs(logs, bridge).map(({ raw, ordinal }) => {
    const log = decodeRequestLog(raw, ordinal);
    // an undecodable log still holds its ordinal, so its id is still what the others agree on
    // (built without checks: a node's malformed hash must not abort the listing)
    if ('error' in log) return { id: `${String(raw.transactionHash).toLowerCase()}:${ordinal}`, raw, error: log.error };
    return { id: requestId(log.txHash, log.ordinal), log, decision: decideRequest(log.addressBytes, log.wei, network) };
  });
}

/** Every request the bridge logged in blocks `from`..`to`: the auditor's view of the sidechain. */
export async function requestsInBlocks(
  rpc: EvmRpc,
  bridge: string,
  network: Network,
  from: number,
  to: number,
): Promise<DecidedLog[]> {
  const filter = {
    address: bridge,
    topics: [REQUEST_PEGOUT_TOPIC],
    fromBlock: hexQuantity(from),
    toBlock: hexQuantity(to),
  };
  return decideLogs(await rpc.call<RawLog[]>('eth_getLogs', [filter]), bridge, network);
}

export function registerEvm(program: Command): void {
  const bridge = program.command('bridge').description('the bridge contract on a development node');
  bridge
    .command('install')
    .description(`place the bridge's runtime code at ${BRIDGE_ADDRESS} on an anvil node (refuses any other node)`)
    .requiredOption('--rpc <url>', 'EVM JSON-RPC URL of the anvil node')
    .option('--json', 'print JSON')
    .action(async (opts: { rpc: string; json?: boolean }) => {
      printResult(await installBridge(new EvmRpc(opts.rpc)), Boolean(opts.json));
    });
  registerRequest(program);
  registerRequests(program);
}

/** `pegout request`: one peg-out, checked by the request decider before anything is sent. */
function registerRequest(program: Command): void {
  program
    .command('request')
    .description(
      'request a peg-out: burn wrapped BTC on the sidechain for a payment to a Bitcoin address (checked before sending)',
    )
    .requiredOption('--rpc <url>', 'EVM JSON-RPC URL')
    .requiredOption('--to <address>', 'Bitcoin address to pay')
    .requiredOption('--amount <btc>', 'amount in BTC, at most 8 decimals, at least 0.01')
    .requiredOption('--network <network>', 'Bitcoin network of the address: mainnet, testnet, signet or regtest')
    .option('--key <file>', 'file holding the sender private key (hex, mode 0600)')
    .option('--private-key-env <var>', 'environment variable holding the sender private key')
    .option('--bridge <address>', 'bridge contract address', BRIDGE_ADDRESS)
    .option('--json', 'print JSON')
    .action(
      async (opts: {
        rpc: string;
        to: string;
        amount: string;
        network: string;
        key?: string;
        privateKeyEnv?: string;
        bridge: string;
        json?: boolean;
      }) => {
        const network = parseNetwork(opts.network, '--network');
        const { sats, wei } = checkPegOut(opts.to, opts.amount, network);
        const key = await loadEvmKey(opts);
        const provider = new JsonRpcProvider(opts.rpc, undefined, {
          staticNetwork: true,
          polling: true,
          pollingInterval: 100,
          cacheTimeout: -1,
        });
        try {
          const wallet = new Wallet(key, provider);
          const contract = new Contract(opts.bridge, bridgeInterface, wallet);
          const tx = await contract.getFunction('requestPegOut')(new TextEncoder().encode(opts.to), { value: wei });
          const receipt = await tx.wait();
          const emitted = receipt?.logs.some(
            (l: { address: string; topics: readonly string[] }) =>
              l.address.toLowerCase() === opts.bridge.toLowerCase() && l.topics[0] === REQUEST_PEGOUT_TOPIC,
          );
          if (!receipt || !emitted)
            throw new EvmError(
              'invalid_request',
              `transaction ${tx.hash} emitted no RequestPegOut log from ${opts.bridge}`,
            );
          // one call to requestPegOut emits one log: the first (ordinal 0) of its transaction
          printResult(
            {
              txHash: tx.hash,
              requestId: requestId(tx.hash, 0),
              block: receipt.blockNumber,
              sats: sats.toString(),
              to: opts.to,
            },
            Boolean(opts.json),
          );
        } finally {
          provider.destroy();
        }
      },
    );
}

/** `pegout requests`: the auditor's view of a block range. */
function registerRequests(program: Command): void {
  program
    .command('requests')
    .description(
      "list every peg-out request in a block range with its decoded fields and the federation's accept/reject decision (the auditor's view)",
    )
    .requiredOption('--rpc <url>', 'EVM JSON-RPC URL')
    .requiredOption('--from <block>', 'first block')
    .requiredOption('--to <block>', 'last block')
    .requiredOption('--network <network>', 'Bitcoin network the federation pays on')
    .option('--bridge <address>', 'bridge contract address', BRIDGE_ADDRESS)
    .option('--json', 'print JSON')
    .action(
      async (opts: { rpc: string; from: string; to: string; network: string; bridge: string; json?: boolean }) => {
        const network = parseNetwork(opts.network, '--network');
        const from = integerOption(opts.from, '--from', 0);
        const to = integerOption(opts.to, '--to', from);
        const rows = (await requestsInBlocks(new EvmRpc(opts.rpc), opts.bridge, network, from, to)).map((r) => {
          if ('error' in r)
            return { tx: r.raw.transactionHash, logIndex: r.raw.logIndex, status: 'undecodable', detail: r.error };
          const { log, decision: d } = r;
          return {
            id: r.id,
            block: log.blockNumber,
            evmAddress: log.evmAddress,
            bitcoinAddress: d.bitcoinAddress,
            wei: log.wei.toString(),
            sats: d.sats.toString(),
            subSatoshiWei: d.subSatoshiWei.toString(),
            status: d.status,
            ...(d.reason ? { reason: d.reason, detail: d.detail } : {}),
          };
        });
        if (opts.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        else for (const r of rows) process.stdout.write(`${Object.values(r).join('  ')}\n`);
      },
    );
}
