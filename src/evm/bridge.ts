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

export const bridgeInterface = new Interface([
  'event RequestPegOut(address indexed _evmAddress, bytes _bitcoinAddress, uint256 _value)',
  'function requestPegOut(bytes bitcoinAddress) payable',
]);

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
  /** Position among the bridge's RequestPegOut logs of its transaction: the request's identity. */
  readonly ordinal: number;
  /** Block-level log index: where the node put it, which changes if the transaction is re-mined. */
  readonly logIndex: number;
  readonly blockNumber: number;
  readonly blockHash: string;
  readonly evmAddress: string;
  readonly addressBytes: Uint8Array;
  readonly wei: bigint;
}

const WORD = 32;
const HEX_DATA = /^0x(?:[0-9a-fA-F]{2})*$/;
const TOPIC = /^0x[0-9a-fA-F]{64}$/;

/** The ABI word at byte `at` as a bigint. */
function word(data: Buffer, at: number): bigint {
  return BigInt(`0x${data.subarray(at, at + WORD).toString('hex')}`);
}

/** A word that must hold a byte offset or length: a safe integer within the data. */
function smallWord(data: Buffer, at: number, what: string): number {
  const value = word(data, at);
  if (value > BigInt(data.length)) throw new Error(`${what} ${value} exceeds the ${data.length}-byte log data`);
  return Number(value);
}

/**
 * Decodes a RequestPegOut(address indexed, bytes, uint256) log: topic0 the event's, topic1 the
 * sender as a left-padded address, data the ABI head (offset of the bytes, the value) and the
 * bytes at that offset. Written out for this one event because the ingestor decodes every
 * request (ethers' generic parseLog costs about 190 µs a log, mostly recomputing the topic
 * hash); test/evm/bridge.test.ts pins it to ethers' encoding. A log that does not decode is
 * reported, never thrown into the ingestor.
 */
export function decodeRequestLog(log: RawLog, ordinal: number): RequestLog | { error: string } {
  try {
    const [topic0, sender, ...extra] = log.topics;
    if (topic0?.toLowerCase() !== REQUEST_PEGOUT_TOPIC) return { error: 'not a RequestPegOut log' };
    if (sender === undefined || extra.length > 0 || !TOPIC.test(sender))
      throw new Error(`expected one indexed address topic, got ${log.topics.length - 1} topic(s)`);
    if (!/^0x0{24}/.test(sender)) throw new Error(`indexed address topic ${sender} has bits above 160`);
    if (typeof log.data !== 'string' || !HEX_DATA.test(log.data)) throw new Error('log data is not hex');
    const data = Buffer.from(log.data.slice(2), 'hex');
    if (data.length < 3 * WORD)
      throw new Error(`log data of ${data.length} bytes is shorter than the ${3 * WORD}-byte minimum`);
    const offset = smallWord(data, 0, 'bytes offset');
    if (offset % WORD !== 0 || offset < 2 * WORD || offset + WORD > data.length)
      throw new Error(`bytes offset ${offset} is not a word boundary after the head within the data`);
    const length = smallWord(data, offset, 'bytes length');
    if (offset + WORD + length > data.length)
      throw new Error(`bytes of length ${length} at offset ${offset} run past the ${data.length}-byte data`);
    return {
      txHash: log.transactionHash.toLowerCase(),
      ordinal,
      logIndex: quantity(log.logIndex, 'log.logIndex'),
      blockNumber: quantity(log.blockNumber, 'log.blockNumber'),
      blockHash: log.blockHash.toLowerCase(),
      evmAddress: `0x${sender.slice(26).toLowerCase()}`,
      addressBytes: new Uint8Array(data.subarray(offset + WORD, offset + WORD + length)),
      wei: word(data, WORD),
    };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/**
 * eth_getLogs and receipts list logs in chain order (block, then log index), each once. Ordinals
 * are counted in that order, so a list that is not (a node's bug, a proxy's) would name other
 * requests: a log twice is a phantom second request of one burn, two swapped trade destinations.
 * Such a list is refused whole, as a malformed answer, and read again later; so is one with a log
 * outside the blocks asked for (`blocks`), which may not be final.
 */
function checkChainOrder(logs: readonly RawLog[], blocks: { from: number; to: number } | undefined): void {
  let last: [number, number] = [-1, -1];
  for (const log of logs) {
    if (log.removed === true) continue;
    const at: [number, number] = [quantity(log.blockNumber, 'log blockNumber'), quantity(log.logIndex, 'log logIndex')];
    if (blocks && (at[0] < blocks.from || at[0] > blocks.to))
      throw new EvmError(
        'rpc_malformed',
        `a log of block ${at[0]}, outside the blocks ${blocks.from}-${blocks.to} asked for`,
        {
          block: at[0],
        },
      );
    if (at[0] < last[0] || (at[0] === last[0] && at[1] <= last[1]))
      throw new EvmError(
        'rpc_malformed',
        `logs out of chain order or repeated: block ${at[0]} log ${at[1]} after block ${last[0]} log ${last[1]}`,
        { block: at[0], logIndex: at[1] },
      );
    last = at;
  }
}

/**
 * The bridge's RequestPegOut logs among `logs`, in chain order, each with its ordinal within its
 * transaction. Selected by the emitting address (a peg-out made through a contract wallet still
 * counts) and topic0; a log that does not decode still takes its place, so the ordinals of the
 * others match what every member and auditor computes from the same transaction.
 */
export function bridgeRequestLogs<T extends RawLog>(
  logs: readonly T[],
  bridge: string,
  blocks?: { from: number; to: number },
): { raw: T; ordinal: number }[] {
  checkChainOrder(logs, blocks);
  const ours = logs.filter(
    (l) =>
      l.removed !== true &&
      l.address?.toLowerCase() === bridge.toLowerCase() &&
      l.topics?.[0]?.toLowerCase() === REQUEST_PEGOUT_TOPIC,
  );
  const next = new Map<string, number>();
  return ours.map((raw) => {
    const tx = String(raw.transactionHash).toLowerCase();
    const ordinal = next.get(tx) ?? 0;
    next.set(tx, ordinal + 1);
    return { raw, ordinal };
  });
}

/**
 * Places the bridge's runtime code at its fixed address on a development node. Refuses any
 * node that does not identify as anvil: on a real chain this must never be attempted.
 */
export async function installBridge(rpc: EvmRpc): Promise<{ address: string; chainId: number }> {
  const client = await rpc.call<string>('web3_clientVersion');
  if (typeof client !== 'string' || !client.toLowerCase().startsWith('anvil')) {
    throw new EvmError(
      'not_dev_chain',
      `refusing to install the bridge: ${rpc.where} is ${JSON.stringify(client)}, not an anvil development node`,
      { client },
    );
  }
  const chainId = quantity(await rpc.call('eth_chainId'), 'eth_chainId');
  await rpc.call('anvil_setCode', [BRIDGE_ADDRESS, loadArtifact('Bridge').deployedBytecode]);
  return { address: BRIDGE_ADDRESS, chainId };
}
