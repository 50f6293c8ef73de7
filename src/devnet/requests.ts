import { encodeAddress } from '../bitcoin/address.js';
import { hash160 } from '../bitcoin/hash.js';
import type { Network } from '../bitcoin/network.js';
import { witnessScript } from '../bitcoin/script.js';
import {
  BRIDGE_ADDRESS,
  bridgeInterface,
  bridgeRequestLogs,
  REQUEST_PEGOUT_TOPIC,
  type RawLog,
} from '../evm/bridge.js';
import { WEI_PER_SAT } from '../evm/decider.js';
import { requestId } from '../evm/request-id.js';
import { hexQuantity, quantity, type EvmRpc } from '../evm/rpc.js';

// Peg-out requests for the devnet and the end-to-end benchmark: sent through anvil's unlocked
// development accounts (one sequential lane per account, so anvil numbers the nonces), as the
// bridge's users would, and read back from the bridge's logs.

/** A regtest P2WPKH destination per index, distinct and valid. */
export function devnetDestination(index: number, network: Network = 'regtest'): string {
  const seed = new Uint8Array(4);
  new DataView(seed.buffer).setUint32(0, index);
  return encodeAddress(witnessScript(0, hash160(seed)), network);
}

export interface SentRequests {
  /** Block of the first request and of the last. */
  readonly fromBlock: number;
  readonly toBlock: number;
  readonly ids: string[];
  /** With `inOneBlock`: when the block that made every request final was mined (ms since the epoch). */
  readonly finalAt?: number;
}

export interface SendOptions {
  readonly network?: Network;
  readonly onSent?: (sent: number) => void;
  /**
   * Pauses anvil's interval mining while sending, mines every request in one block and then
   * `confirmations` blocks on top, and resumes mining a block every `blockSeconds`: all
   * requests become final at one instant, as a burst of peg-outs would.
   */
  readonly inOneBlock?: { readonly confirmations: number; readonly blockSeconds: number };
}

/**
 * One request to `destination`, any bytes (the bridge takes whatever it is given; the federation
 * decides), from `from` or anvil's first development account; resolves with its transaction hash.
 */
export async function sendPegoutTo(rpc: EvmRpc, destination: Uint8Array, sats: bigint, from?: string): Promise<string> {
  const sender = from ?? (await rpc.call<string[]>('eth_accounts'))[0]!;
  return rpc.call<string>('eth_sendTransaction', [
    {
      from: sender,
      to: BRIDGE_ADDRESS,
      data: bridgeInterface.encodeFunctionData('requestPegOut', [destination]),
      value: `0x${(sats * WEI_PER_SAT).toString(16)}`,
      gas: hexQuantity(200_000),
    },
  ]);
}

/**
 * Sends `count` requests of `sats` each; resolves once all are mined, with their request ids.
 * `onSent` reports progress.
 */
export async function sendPegouts(
  rpc: EvmRpc,
  count: number,
  sats: bigint,
  options: SendOptions = {},
): Promise<SentRequests> {
  const accounts = await rpc.call<string[]>('eth_accounts');
  const oneBlock = options.inOneBlock;
  if (oneBlock) await rpc.call('evm_setIntervalMining', [0]);
  const fromBlock = quantity(await rpc.call('eth_blockNumber'), 'eth_blockNumber') + 1;
  const hashes: string[] = new Array<string>(count);
  let next = 0;
  let sent = 0;
  let finalAt: number | undefined;
  try {
    await Promise.all(
      accounts.map(async (from) => {
        for (let i = next++; i < count; i = next++) {
          const destination = new TextEncoder().encode(devnetDestination(i, options.network));
          hashes[i] = await sendPegoutTo(rpc, destination, sats, from);
          options.onSent?.(++sent);
        }
      }),
    );
    if (oneBlock) {
      for (let i = 0; i <= oneBlock.confirmations; i++) await rpc.call('evm_mine');
      finalAt = Date.now();
    }
  } finally {
    if (oneBlock) await rpc.call('evm_setIntervalMining', [oneBlock.blockSeconds]);
  }
  const wanted = new Set(hashes.map((h) => h.toLowerCase()));
  const ids = new Map<string, string>();
  let toBlock = fromBlock;
  while (ids.size < count) {
    const head = quantity(await rpc.call('eth_blockNumber'), 'eth_blockNumber');
    if (head < fromBlock) {
      await new Promise((r) => setTimeout(r, 250));
      continue;
    }
    const logs = await rpc.call<RawLog[]>('eth_getLogs', [
      {
        address: BRIDGE_ADDRESS,
        topics: [REQUEST_PEGOUT_TOPIC],
        fromBlock: hexQuantity(fromBlock),
        toBlock: hexQuantity(head),
      },
    ]);
    for (const { raw: log, ordinal } of bridgeRequestLogs(logs, BRIDGE_ADDRESS)) {
      if (wanted.has(log.transactionHash.toLowerCase())) {
        ids.set(log.transactionHash.toLowerCase(), requestId(log.transactionHash, ordinal));
        toBlock = Math.max(toBlock, quantity(log.blockNumber, 'blockNumber'));
      }
    }
    if (ids.size < count) await new Promise((r) => setTimeout(r, 250));
  }
  return {
    fromBlock,
    toBlock,
    ids: hashes.map((h) => ids.get(h.toLowerCase())!),
    ...(finalAt === undefined ? {} : { finalAt }),
  };
}
