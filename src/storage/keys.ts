/**
 * Every key space of a member's store, in one place, so that nobody invents a second
 * spelling of the same record and an auditor can read the whole layout here.
 *
 * Keys are printable ASCII `<space>/<part>/<part>…`. Numbers are zero-padded to a fixed
 * width so that byte order (RocksDB's order) equals numeric order; hashes are lowercase hex
 * (Bitcoin txids and block hashes in the byte order RPC prints them, EVM hashes with `0x`).
 * Values are msgpack (see store.ts); the value column names the record type (all of them in
 * records.ts) and the writer column who writes it.
 *
 * | space      | key                                      | value                                      | written by                      |
 * |------------|------------------------------------------|--------------------------------------------|---------------------------------|
 * | meta/      | meta/store                               | StoreMeta: schema version + descriptor     | storage (once, at creation)     |
 * | cursor/    | cursor/bitcoin, cursor/evm               | Cursor { height, hash } of the last block  | observer / EVM ingestion, in    |
 * |            |                                          | whose effects are stored                   | the batch holding those effects |
 * |            | cursor/evmpruned                         | EvmPruned { below }: evmblk/ records under | EVM ingestion, in the batch     |
 * |            |                                          | that block were dropped                    | that drops them                 |
 * | evmblk/    | evmblk/<number>                          | EvmBlockRecord: hash and requests of an    | EVM ingestion (reorg checks);   |
 * |            |                                          | ingested EVM block, the last keepBlocks    | older ones dropped as it reads  |
 * | req/       | req/<evm tx hash>/<ordinal>              | the request, its current status and its    | EVM ingestion, node             |
 * |            |                                          | status history (schema 5; before, reqlog/) |                                 |
 * | reqidx/    | reqidx/<phase>/<evm tx hash>/<ordinal>   | 1 — index of req/ by status phase (queued, | same batch as the req/ change,  |
 * |            |                                          | inflight, paid, rejected, orphaned: schema | only in src/evm/request-store.ts|
 * |            |                                          | 5, by status before); exactly one entry per|                                 |
 * |            |                                          | req/ record (schema 2)                     |                                 |
 * | reqcount/  | reqcount/<status>                        | integer — how many req/ records have that  | same batch as the reqidx/ change|
 * |            |                                          | status (schema 4): the metrics read these  | (StoreBatch.add), only in       |
 * |            |                                          | instead of counting the index              | src/evm/request-store.ts        |
 * | reqsats/   | reqsats/paid                             | integer — the sats of the req/ records in  | same batch as the status change |
 * |            |                                          | status paid (schema 7): the reserve ledger | (StoreBatch.add), only in       |
 * |            |                                          | reads it instead of every paid request     | src/evm/request-store.ts        |
 * | reqaddr/   | reqaddr/<evm address>/<block>/<tx hash>/ | 1 — index of req/ by the EVM address that  | same batch as the req/ record   |
 * |            |   <ordinal>                              | burned (newest last)                       |                                 |
 * | reqbtc/    | reqbtc/<sha256 of the Bitcoin address    | 1 — index of req/ by the destination text  | same batch as the req/ record   |
 * |            |   text>/<block>/<tx hash>/<ordinal>      | the request carried (newest last; schema 4)| (stageNewRequest, stageForget)  |
 * | utxo/      | utxo/<txid>/<vout>                       | UtxoRecord (src/wallet/utxos.ts)           | observer, wallet (utxos.ts)     |
 * | utxoidx/   | utxoidx/<state>/<txid>/<vout>            | 1 — index of utxo/ by state; exactly one   | same batch as the utxo/ change  |
 * |            |                                          | entry per utxo/ record, never written      |                                 |
 * |            |                                          | outside src/wallet/utxos.ts                |                                 |
 * | utxocount/ | utxocount/<state>/outputs,               | integer — how many utxo/ records are in    | same batch as the utxo/ change  |
 * |            |   utxocount/<state>/sats                 | that state, and their sats (schema 6): the | (StoreBatch.add), only in       |
 * |            |                                          | balances are read, never listed            | src/wallet/utxos.ts             |
 * |            | utxocount/pegin/sats                     | integer — the sats of the confirmed utxo/  | same batch as the utxo/ change, |
 * |            |                                          | records marked pegIn, in every state       | only in src/wallet/utxos.ts     |
 * |            |                                          | (schema 7): the reserve ledger's peg-ins   |                                 |
 * | utxoval/   | utxoval/<sats, 16 digits>/<txid>/<vout>  | 1 — index of the unspent utxo/ records by  | same batch as the utxo/ change, |
 * |            |                                          | value (schema 7): a proposer reads the     | only in src/wallet/utxos.ts     |
 * |            |                                          | largest, never every output (dust)         |                                 |
 * | btcblk/    | btcblk/<height>                          | ObservedBlock: hash + undo data            | observer, with cursor/bitcoin   |
 * | txconf/    | txconf/<txid>                            | TxConfirmation { height, blockHash } of a  | observer                        |
 * |            |                                          | federation payment in the best chain       |                                 |
 * | chainpay/  | chainpay/<txid>                          | ChainSpend: a confirmed spend of federation| observer; removed by settlement |
 * |            |                                          | outputs this member holds no finalized     | once it is recorded (finalize)  |
 * |            |                                          | record of (raw tx, height)                 |                                 |
 * | prop/      | prop/<txid>                              | proposal (unsigned tx, prevouts, requests) | wallet (payments), node         |
 * | propin/    | propin/<txid>/<vout>/<proposal txid>     | 1 — "this stored proposal spends that      | same batch as prop/             |
 * |            |                                          | outpoint": who loses when another payment  |                                 |
 * |            |                                          | of it is finalized                         |                                 |
 * | sigmade/   | sigmade/<txid>                           | the signatures this member made; written   | node, before the signatures     |
 * |            |                                          | (sync) before they leave the process       | are sent (SPEC §3 invariant 2)  |
 * | reqpay/    | reqpay/<evm tx hash>/<ordinal>           | txids this member signed (or knows final)  | same batch as sigmade/ or final/|
 * |            |                                          | that pay this request, sorted (the no-     | (request-store.ts               |
 * |            |                                          | double-pay check); schema 5, one point     | stagePaymentOf)                 |
 * |            |                                          | read, where reqsig/<…>/<txid> needed a scan|                                 |
 * | supsd/     | supsd/<txid>                             | Supersession { by, at }: a payment this    | same batch as the final/ record |
 * |            |                                          | member signed that can never reach t, since|   that supersedes it            |
 * |            |                                          | another payment of one of its requests with|                                 |
 * |            |                                          | none of its inputs was finalized           |                                 |
 * | sigrecv/   | sigrecv/<txid>/<member x-only key>       | verified signatures received from a member | node                            |
 * | final/     | final/<txid>                             | finalized (fully signed) transaction       | node                            |
 * | finalat/   | finalat/<ISO time>/<txid>                | 1 — index of final/ by when this member    | same batch as the new final/    |
 * |            |                                          | recorded it (recent payments; schema 4)    | record (recordFinalized)        |
 * | open/      | open/<txid>                              | 1 — a payment a restart picks up again     | same batch as sigmade/ and      |
 * |            |                                          | (schema 8): signed and not finalized,      | final/; removed in the batch    |
 * |            |                                          | superseded or lost; or finalized and not   | that supersedes it, loses it,   |
 * |            |                                          | settled (a request not paid, a handoff not | or pays it at depth with every  |
 * |            |                                          | at the paid depth) or with requests not    | request it names matched        |
 * |            |                                          | ingested here. Restart reads these, not    |                                 |
 * |            |                                          | every payment ever made                    |                                 |
 * | bcast/     | bcast/<txid>/<seq>                       | one broadcast attempt and its answer       | node                            |
 * | hold/      | hold/<evm tx hash>/<ordinal>/<member key>| HoldRelease: a member's operator released  | node: own (admin interface,     |
 * |            |                                          | a held request (own, or heard on a link)   | sync), peers' (links)           |
 * | outflow/   | outflow/<window>                         | sats of requests whose first payment this  | signer, in the batch of the     |
 * |            |                                          | member recorded (signed, or learned final) | signature record; the final/    |
 * |            |                                          | in that block window (bigint)              | record's batch when unsigned    |
 * | ctl/       | ctl/pause                                | PauseRecord: this member signs nothing     | node (safety.ts), sync          |
 * | handoff/   | handoff/tx/<txid>                        | 1 — a finalized handoff (pays no request;  | same batch as the new final/    |
 * |            |                                          | a rotation's test spend or sweep)          | record (recordFinalized)        |
 * |            | handoff/proven                           | HandoffProof: the new set spent the test   | node (handoff.ts), sync         |
 * |            |                                          | spend's output                             |                                 |
 */

import { sha256Hex } from '../bitcoin/hash.js';
import { StorageError } from './errors.js';
import type { RequestStatus } from './records.js';

export const SPACES = {
  meta: 'meta/',
  cursor: 'cursor/',
  evmBlock: 'evmblk/',
  request: 'req/',
  requestIndex: 'reqidx/',
  requestCount: 'reqcount/',
  requestSats: 'reqsats/',
  requestByAddress: 'reqaddr/',
  requestByBitcoinAddress: 'reqbtc/',
  utxo: 'utxo/',
  utxoIndex: 'utxoidx/',
  utxoCount: 'utxocount/',
  unspentByValue: 'utxoval/',
  bitcoinBlock: 'btcblk/',
  txConfirmation: 'txconf/',
  chainSpend: 'chainpay/',
  proposal: 'prop/',
  proposalInput: 'propin/',
  signatureMade: 'sigmade/',
  requestPayments: 'reqpay/',
  signatureReceived: 'sigrecv/',
  superseded: 'supsd/',
  finalized: 'final/',
  openPayment: 'open/',
  finalizedAt: 'finalat/',
  broadcast: 'bcast/',
  hold: 'hold/',
  outflow: 'outflow/',
  control: 'ctl/',
  handoff: 'handoff/',
} as const;

/** Width of every numeric key part: 10 digits hold any uint32 (vout, request ordinal) and any block height. */
export const NUMBER_WIDTH = 10;
const MAX_KEY_NUMBER = 10 ** NUMBER_WIDTH - 1;

export function keyNumber(value: number, field: string): string {
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_KEY_NUMBER) {
    throw new StorageError(
      'invalid_key',
      `${field} must be an integer in [0, ${MAX_KEY_NUMBER}] to be used in a store key, got ${String(value)}`,
      { field, value: String(value) },
    );
  }
  return value.toString().padStart(NUMBER_WIDTH, '0');
}

/** A number part as keyNumber writes it. */
export const KEY_NUMBER = /^[0-9]{10}$/;

/** Parses a number part written by keyNumber. */
export function parseKeyNumber(part: string, field: string): number {
  if (!KEY_NUMBER.test(part))
    throw new StorageError(
      'invalid_key',
      `${field} key part must be ${NUMBER_WIDTH} digits, got ${JSON.stringify(part)}`,
      { field, value: part },
    );
  return Number(part);
}

const BITCOIN_HASH = /^[0-9a-f]{64}$/;
const EVM_HASH = /^0x[0-9a-f]{64}$/;
const XONLY_KEY = /^[0-9a-f]{64}$/;

/** A Bitcoin txid or block hash as RPC prints it, lowercase. */
export function bitcoinHash(value: string, field: string): string {
  if (!BITCOIN_HASH.test(value))
    throw new StorageError(
      'invalid_key',
      `${field} must be 64 lowercase hex characters, got ${JSON.stringify(value)}`,
      { field, value },
    );
  return value;
}

const EVM_ADDRESS = /^0x[0-9a-f]{40}$/;

function evmAddress(value: string): string {
  if (!EVM_ADDRESS.test(value)) {
    const detail = `EVM address must be 0x followed by 40 lowercase hex characters, got ${JSON.stringify(value)}`;
    throw new StorageError('invalid_key', detail, { field: 'evm address', value });
  }
  return value;
}

/**
 * An index of requests by an address: `<space><address part>/<block>/<tx hash>/<ordinal>`, ordered by block, so
 * the newest requests of an address are the last keys under its prefix.
 */
function addressIndex(space: string, part: (address: string) => string) {
  const prefix = (address: string): string => `${space}${part(address)}/`;
  return {
    prefix,
    key: (address: string, blockNumber: number, txHash: string, ordinal: number): string =>
      `${prefix(address)}${keyNumber(blockNumber, 'request block')}/${requestPart(txHash, ordinal)}`,
  };
}

const byEvmAddress = addressIndex(SPACES.requestByAddress, evmAddress);
export const requestByAddressPrefix = byEvmAddress.prefix;
export const requestByAddressKey = byEvmAddress.key;

// The destination is whatever bytes the user sent (any length, any characters, `/` included), so
// its key part is a hash of its text: fixed width, printable, and still one prefix per address.
const byBitcoinAddress = addressIndex(SPACES.requestByBitcoinAddress, sha256Hex);
export const requestByBitcoinAddressPrefix = byBitcoinAddress.prefix;
export const requestByBitcoinAddressKey = byBitcoinAddress.key;

/** What follows an address in its index key, `<block>/<tx hash>/<ordinal>`: a page cursor. */
export const ADDRESS_INDEX_TAIL = /^[0-9]{10}\/0x[0-9a-f]{64}\/[0-9]{10}$/;

/** The req/ key a reqaddr/ or reqbtc/ key points at. */
export function requestKeyOfAddressIndex(indexKey: string): string {
  const parts = indexKey.split('/');
  const space = `${parts[0]}/`;
  if (parts.length !== 5 || (space !== SPACES.requestByAddress && space !== SPACES.requestByBitcoinAddress)) {
    throw new StorageError('invalid_key', `not a request address index key: ${JSON.stringify(indexKey)}`, {
      key: indexKey,
    });
  }
  return `${SPACES.request}${parts[3]}/${parts[4]}`;
}

function evmHash(value: string, field: string): string {
  if (!EVM_HASH.test(value))
    throw new StorageError(
      'invalid_key',
      `${field} must be 0x followed by 64 lowercase hex characters, got ${JSON.stringify(value)}`,
      { field, value },
    );
  return value;
}

export const META_KEY = `${SPACES.meta}store`;

export type CursorName = 'bitcoin' | 'evm';
export function cursorKey(name: CursorName): string {
  return `${SPACES.cursor}${name}`;
}

/** Where the EVM ingestion says below which block it dropped the evmblk/ records (EvmPruned). */
export const EVM_PRUNED_KEY = `${SPACES.cursor}evmpruned`;

export function evmBlockKey(number: number): string {
  return `${SPACES.evmBlock}${keyNumber(number, 'EVM block number')}`;
}

/** The last part requestPart built: a request's keys are staged together (record, index, payments, address indexes). */
let lastPart = { txHash: '', ordinal: -1, part: '' };

/**
 * `<tx hash>/<ordinal>`: what every key of one request ends with. Staging a request or a status
 * change builds three to five keys of the same request in a row, so the part last checked and
 * built is kept: strings are immutable, and the same hash and ordinal make the same part.
 */
function requestPart(txHash: string, ordinal: number): string {
  if (txHash === lastPart.txHash && ordinal === lastPart.ordinal) return lastPart.part;
  const part = `${evmHash(txHash, 'request transaction hash')}/${keyNumber(ordinal, 'request ordinal')}`;
  lastPart = { txHash, ordinal, part };
  return part;
}

/**
 * A space of records with an index of them by state: `<space><part>` for the record and
 * `<index><state>/<part>` for its one index entry (requests by status, UTXOs by state).
 */
function indexedSpace<A extends unknown[]>(space: string, index: string, part: (...args: A) => string) {
  const indexPrefix = (state: string): string => `${index}${state}/`;
  return {
    key: (...args: A): string => `${space}${part(...args)}`,
    indexPrefix,
    indexKey: (state: string, ...args: A): string => `${indexPrefix(state)}${part(...args)}`,
  };
}

/**
 * The status index groups statuses into phases: queued, in a payment, and each final status. Most
 * status changes stay inside a phase (a signer's batched → signed, signed → broadcast, the outflow
 * schedule's moves among the queued statuses) and so move no index entry, which would otherwise be
 * two of the few store writes a request costs; a listing reads the records of a phase anyway, and
 * keeps the statuses it asked for.
 */
const REQUEST_PHASE: Readonly<Record<RequestStatus, string>> = {
  accepted: 'queued',
  held: 'queued',
  rate_limited: 'queued',
  batched: 'inflight',
  signed: 'inflight',
  broadcast: 'inflight',
  paid: 'paid',
  rejected: 'rejected',
  orphaned: 'orphaned',
};

/** The phase of the status index that holds requests in `status`. */
export function requestPhase(status: RequestStatus): string {
  return REQUEST_PHASE[status];
}

const requests = indexedSpace(SPACES.request, SPACES.requestIndex, requestPart);
export const requestKey = requests.key;
/** Every request indexed under `phase` (requestPhase). */
export const requestIndexPrefix = requests.indexPrefix;
/** The index entry of a request in `status`: under its phase. */
export function requestIndexKey(status: RequestStatus, txHash: string, ordinal: number): string {
  return requests.indexKey(requestPhase(status), txHash, ordinal);
}

/** Every request one EVM transaction made, `req/<tx hash>/<ordinal>`: the index of requests by transaction. */
export function requestsOfTxPrefix(txHash: string): string {
  return `${SPACES.request}${evmHash(txHash, 'request transaction hash')}/`;
}

/** The counter of requests in `status`. */
export function requestCountKey(status: string): string {
  return `${SPACES.requestCount}${status}`;
}

/**
 * The sats of the requests paid (the reserve ledger's), moved in the batch of every status change
 * into or out of `paid` (schema 7). Paid requests only: their sats left in Bitcoin payments, so
 * their sum is bounded by the coins there are and fits a counter; a burn's declared amount is not.
 */
export const PAID_SATS_KEY = `${SPACES.requestSats}paid`;

/** The req/ key a reqidx/ key points at. */
export function requestKeyOfIndex(indexKey: string): string {
  const parts = indexKey.split('/');
  if (parts.length !== 4 || `${parts[0]}/` !== SPACES.requestIndex)
    throw new StorageError('invalid_key', `not a request index key: ${JSON.stringify(indexKey)}`, { key: indexKey });
  return `${SPACES.request}${parts[2]}/${parts[3]}`;
}

function outpointPart(txid: string, vout: number): string {
  return `${bitcoinHash(txid, 'outpoint txid')}/${keyNumber(vout, 'outpoint vout')}`;
}

const utxos = indexedSpace(SPACES.utxo, SPACES.utxoIndex, outpointPart);
export const utxoKey = utxos.key;
export const utxoIndexPrefix = utxos.indexPrefix;
export const utxoIndexKey = utxos.indexKey;

/** The counter of utxo/ records in `state` (`outputs`), or of their sats (`sats`). */
export function utxoCountKey(state: string, what: 'outputs' | 'sats'): string {
  return `${SPACES.utxoCount}${state}/${what}`;
}

/** Width of a sats key part: 16 digits hold every amount there can be (at most 21 × 10^14 sats). */
const SATS_WIDTH = 16;

/**
 * The entry of an unspent output in the value index, `utxoval/<sats>/<txid>/<vout>`: read backwards,
 * the largest first (schema 7).
 */
export function unspentByValueKey(value: bigint, txid: string, vout: number): string {
  if (value < 0n || value >= 10n ** BigInt(SATS_WIDTH)) {
    throw new StorageError(
      'invalid_key',
      `output value must be in [0, 10^${SATS_WIDTH}) sats to be used in a store key, got ${value}`,
      {
        field: 'output value',
        value: String(value),
      },
    );
  }
  return `${SPACES.unspentByValue}${value.toString().padStart(SATS_WIDTH, '0')}/${outpointPart(txid, vout)}`;
}

/** The counter of the sats of confirmed peg-in outputs (UtxoRecord.pegIn), spent or not (schema 7). */
export const PEG_IN_SATS_KEY = `${SPACES.utxoCount}pegin/sats`;

/** The outpoint named by a utxo/ or utxoidx/ key (its last two parts). */
export function outpointOfKey(key: string): { txid: string; vout: number } {
  const parts = key.split('/');
  const txid = parts[parts.length - 2] ?? '';
  return {
    txid: bitcoinHash(txid, 'outpoint txid in key'),
    vout: parseKeyNumber(parts[parts.length - 1] ?? '', 'outpoint vout'),
  };
}

export function bitcoinBlockKey(height: number): string {
  return `${SPACES.bitcoinBlock}${keyNumber(height, 'Bitcoin block height')}`;
}

/** `<space><txid>`: one record per Bitcoin transaction. */
const byTxid =
  (space: string, field: string) =>
  (txid: string): string =>
    `${space}${bitcoinHash(txid, field)}`;

export const txConfirmationKey = byTxid(SPACES.txConfirmation, 'txid');

export const supersededKey = byTxid(SPACES.superseded, 'superseded txid');

export const chainSpendKey = byTxid(SPACES.chainSpend, 'chain spend txid');

export const proposalKey = byTxid(SPACES.proposal, 'proposal txid');

export function proposalInputPrefix(txid: string, vout: number): string {
  return `${SPACES.proposalInput}${outpointPart(txid, vout)}/`;
}

export function proposalInputKey(txid: string, vout: number, proposal: string): string {
  return `${proposalInputPrefix(txid, vout)}${bitcoinHash(proposal, 'proposal txid')}`;
}

export const signatureMadeKey = byTxid(SPACES.signatureMade, 'signed txid');

/** The payments this member signed or knows finalized that pay a request. */
export function requestPaymentsKey(txHash: string, ordinal: number): string {
  return `${SPACES.requestPayments}${requestPart(txHash, ordinal)}`;
}

export function signatureReceivedPrefix(txid: string): string {
  return `${SPACES.signatureReceived}${bitcoinHash(txid, 'txid')}/`;
}

function xonlyKey(memberXonlyKey: string): string {
  if (!XONLY_KEY.test(memberXonlyKey))
    throw new StorageError(
      'invalid_key',
      `member key must be 64 lowercase hex characters (x-only), got ${JSON.stringify(memberXonlyKey)}`,
      { field: 'member key', value: memberXonlyKey },
    );
  return memberXonlyKey;
}

export function signatureReceivedKey(txid: string, memberXonlyKey: string): string {
  return `${signatureReceivedPrefix(txid)}${xonlyKey(memberXonlyKey)}`;
}

export const finalizedKey = byTxid(SPACES.finalized, 'finalized txid');

export const openPaymentKey = byTxid(SPACES.openPayment, 'open payment txid');

/** Finalized handoff transactions (a rotation's test spend and sweeps: they pay no request), by txid. */
export const HANDOFF_TX_PREFIX = `${SPACES.handoff}tx/`;
export const handoffTxKey = byTxid(HANDOFF_TX_PREFIX, 'handoff txid');
/** Proof that the planned new set signs: the new set spent the test spend's output (a HandoffProof). */
export const HANDOFF_PROVEN_KEY = `${SPACES.handoff}proven`;

const ISO_TIME = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$/;

/** `at` as Date.toISOString() writes it: fixed width, so key order is time order. */
export function finalizedAtKey(at: string, txid: string): string {
  if (!ISO_TIME.test(at))
    throw new StorageError(
      'invalid_key',
      `finalized time must be an ISO time like 2026-01-31T12:00:00.000Z, got ${JSON.stringify(at)}`,
      {
        field: 'finalized time',
        value: at,
      },
    );
  return `${SPACES.finalizedAt}${at}/${bitcoinHash(txid, 'finalized txid')}`;
}

/** The txid a finalat/ key names. */
export function txidOfFinalizedAt(key: string): string {
  return bitcoinHash(key.slice(key.lastIndexOf('/') + 1), 'finalized txid in key');
}

export function broadcastPrefix(txid: string): string {
  return `${SPACES.broadcast}${bitcoinHash(txid, 'broadcast txid')}/`;
}

export function broadcastKey(txid: string, seq: number): string {
  return `${broadcastPrefix(txid)}${keyNumber(seq, 'broadcast attempt sequence')}`;
}

export function holdPrefix(txHash: string, ordinal: number): string {
  return `${SPACES.hold}${requestPart(txHash, ordinal)}/`;
}

/** One member's release of a held request. */
export function holdKey(txHash: string, ordinal: number, memberXonlyKey: string): string {
  return `${holdPrefix(txHash, ordinal)}${xonlyKey(memberXonlyKey)}`;
}

/** The running total of sats this member let leave in rolling-cap window `window` (wallet/limits.ts). */
export function outflowKey(window: number): string {
  return `${SPACES.outflow}${keyNumber(window, 'outflow window')}`;
}

/** Present while this member is paused (node/safety.ts). */
export const PAUSE_KEY = `${SPACES.control}pause`;
