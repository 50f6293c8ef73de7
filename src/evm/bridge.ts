import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Interface, id as keccakId } from 'ethers';
import { EvmError } from './errors.js';
import { EvmRpc, quantity } from './rpc.js';

export const BRIDGE_ADDRESS = '0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB';
export const BURN_ADDRESS = '0x000000000000000000000000000000000000dEaD';
export const REQUEST_PEGOUT_SIGNATURE = 'RequestPegOut(address,bytes,uint256)';
/** keccak256 of the signature. (The seed's constant, 0x8c5be1e5…, is ERC-20 Approval's.) */
export const REQUEST_PEGOUT_TOPIC = keccakId(REQUEST_PEGOUT_SIGNATURE);

export interface Artifact {
  readonly contractName: string;
  readonly abi: unknown[];
  readonly bytecode: string;
  readonly deployedBytecode: string;
}

/** A contract compiled by `npm run build` (scripts/compile-contracts.mjs). */
export function loadArtifact(name: string): Artifact {
  // dist/src/evm/bridge.js → dist/contracts/<name>.json
  const file = fileURLToPath(new URL(`../../contracts/${name}.json`, import.meta.url));
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Artifact;
  } catch {
    throw new EvmError('artifact_missing', `contract artifact ${file} is missing; run npm run build`, { file });
  }
}

export const bridgeInterface = new Interface(['event RequestPegOut(address indexed _evmAddress, bytes _bitcoinAddress, uint256 _value)', 'function requestPegOut(bytes bitcoinAddress) payable']);

export interface RawLog {
  address: string;
  topics: string[];
  data: string;
  blockNumber: string;
  blockHash: string;
  transactionHash: string;
  logIndex: string;
  removed?: boolean;
}

export interface RequestLog {
  readonly txHash: string;
  readonly logIndex: number;
  readonly blockNumber: number;
  readonly blockHash: string;
  readonly evmAddress: string;
  readonly addressBytes: Uint8Array;
  readonly wei: bigint;
}

/** Decodes a RequestPegOut log; a log that does not decode is reported, never thrown into the ingestor. */
export function decodeRequestLog(log: RawLog): RequestLog | { error: string } {
  try {
    const parsed = bridgeInterface.parseLog({ topics: log.topics, data: log.data });
    if (!parsed || parsed.name !== 'RequestPegOut') return { error: 'not a RequestPegOut log' };
    return {
      txHash: log.transactionHash.toLowerCase(),
      logIndex: quantity(log.logIndex, 'log.logIndex'),
      blockNumber: quantity(log.blockNumber, 'log.blockNumber'),
      blockHash: log.blockHash.toLowerCase(),
      evmAddress: (parsed.args[0] as string).toLowerCase(),
      addressBytes: new Uint8Array(Buffer.from((parsed.args[1] as string).slice(2), 'hex')),
      wei: parsed.args[2] as bigint,
    };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/**
 * Places the bridge's runtime code at its fixed address on a development node. Refuses any
 * node that does not identify as anvil: on a real chain this must never be attempted.
 */
export async function installBridge(rpc: EvmRpc): Promise<{ address: string; chainId: number }> {
  const client = await rpc.call<string>('web3_clientVersion');
  if (typeof client !== 'string' || !client.toLowerCase().startsWith('anvil')) {
    throw new EvmError('not_dev_chain', `refusing to install the bridge: ${rpc.url} is ${JSON.stringify(client)}, not an anvil development node`, { client });
  }
  const chainId = quantity(await rpc.call('eth_chainId'), 'eth_chainId');
  await rpc.call('anvil_setCode', [BRIDGE_ADDRESS, loadArtifact('Bridge').deployedBytecode]);
  return { address: BRIDGE_ADDRESS, chainId };
}
