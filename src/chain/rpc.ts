import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { PegoutError } from '../errors.js';
import { readBody } from '../http-body.js';
import { shownRpcUrl } from '../rpc-url.js';

/**
 * Bitcoin Core JSON-RPC client. Transport failures (connection refused or reset, timeouts,
 * HTTP 503 from a full work queue) are retried with exponential backoff; answers from the node
 * (RPC errors) are never retried here, they are typed so callers can act on them. Credentials
 * never appear in errors: messages name the node by its URL without user info.
 */

export type BitcoinRpcErrorCode =
  | 'config'
  | 'invalid_argument'
  | 'transport'
  | 'timeout'
  | 'unauthorized'
  | 'http_status'
  | 'malformed_response'
  | 'answer_too_large'
  // Node answers (the JSON-RPC error code is in `rpcCode`):
  | 'rpc_error'
  | 'not_found'
  | 'warming_up'
  | 'already_in_mempool'
  | 'already_in_chain'
  | 'missing_inputs'
  | 'insufficient_fee'
  | 'mempool_conflict'
  | 'max_fee_exceeded'
  | 'tx_rejected';

export class BitcoinRpcError extends PegoutError<BitcoinRpcErrorCode> {
  readonly domain = 'bitcoin-rpc';
  /** Bitcoin Core's JSON-RPC error code (src/rpc/protocol.h) when the node answered with an error. */
  readonly rpcCode: number | undefined;

  constructor(
    code: BitcoinRpcErrorCode,
    message: string,
    details: Record<string, unknown> & { rpcCode?: number },
    options?: { cause?: unknown },
  ) {
    super(code, message, details, options);
    this.rpcCode = details.rpcCode;
  }
}

/** Bitcoin Core's RPCErrorCode values this client tells apart (src/rpc/protocol.h). */
export const RPC_CODES = {
  INVALID_ADDRESS_OR_KEY: -5,
  INVALID_PARAMETER: -8,
  VERIFY_ERROR: -25,
  VERIFY_REJECTED: -26,
  VERIFY_ALREADY_IN_CHAIN: -27,
  IN_WARMUP: -28,
} as const;

/**
 * Maps a node's error answer to a stable code. Transaction submission errors share -25/-26,
 * so the reject reason text decides (sendrawtransaction/testmempoolaccept reasons).
 */
export function classifyRpcError(rpcCode: number, message: string): BitcoinRpcErrorCode {
  const text = message.toLowerCase();
  switch (rpcCode) {
    case RPC_CODES.VERIFY_ALREADY_IN_CHAIN:
      return 'already_in_chain';
    case RPC_CODES.IN_WARMUP:
      return 'warming_up';
    case RPC_CODES.INVALID_ADDRESS_OR_KEY:
      // "No such mempool or blockchain transaction", "Transaction not in mempool", "Block not found"
      return /no such|not found|not in mempool/.test(text) ? 'not_found' : 'rpc_error';
    case RPC_CODES.INVALID_PARAMETER:
      return text.includes('out of range') ? 'not_found' : 'rpc_error';
    case RPC_CODES.VERIFY_ERROR:
    case RPC_CODES.VERIFY_REJECTED:
      if (/txn-already-in-mempool|txn-already-known|txn-same-nonwitness-data-in-mempool/.test(text))
        return 'already_in_mempool';
      if (/missing inputs|inputs missing|missingorspent|missing-inputs/.test(text)) return 'missing_inputs';
      if (/min relay fee not met|mempool min fee not met|insufficient fee/.test(text)) return 'insufficient_fee';
      if (text.includes('txn-mempool-conflict')) return 'mempool_conflict';
      if (/fee exceeds maximum|max-fee-exceeded/.test(text)) return 'max_fee_exceeded';
      return rpcCode === RPC_CODES.VERIFY_REJECTED ? 'tx_rejected' : 'rpc_error';
    default:
      return 'rpc_error';
  }
}

export type RpcAuth = { cookieFile: string } | { user: string; password: string };

export interface BitcoinRpcOptions {
  /** http://host:port (a /wallet/<name> path is kept). User info in the URL is used as auth and never printed. */
  url: string;
  auth?: RpcAuth;
  /** Per-attempt deadline for one call, whole answer included. */
  timeoutMs?: number;
  /** Attempts after the first one, for transport failures only. */
  retries?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
  maxSockets?: number;
  /** The largest answer read (answer_too_large past it); default 256 MiB. */
  maxResponseBytes?: number;
}

// 256 MiB: a getblock of a full block at verbosity 3 is tens of MB; a scantxoutset of an address sent
// about 650,000 outputs is over it, and is refused instead of taking the member down (http-body.ts)
const DEFAULTS = {
  timeoutMs: 30_000,
  retries: 5,
  backoffMs: 250,
  maxBackoffMs: 8_000,
  maxSockets: 4,
  maxResponseBytes: 256 * 1024 * 1024,
};

// --- Answers (only the fields we use; Bitcoin Core returns more) ---

export interface BlockchainInfo {
  chain: string;
  blocks: number;
  headers: number;
  bestblockhash: string;
  initialblockdownload: boolean;
}

export interface RpcScriptPubKey {
  hex: string;
  address?: string;
  type?: string;
}

export interface RpcTxInput {
  txid?: string;
  vout?: number;
  coinbase?: string;
  sequence: number;
  /** The output this input spends (getblock verbosity 3; absent for a coinbase, or without undo data). */
  prevout?: RpcPrevout;
}

export interface RpcPrevout {
  /** BTC as a JSON number; convert with btcToSats. */
  value: number;
  height: number;
  scriptPubKey: RpcScriptPubKey;
}

export interface RpcTxOutput {
  /** BTC as a JSON number; convert with btcToSats. */
  value: number;
  n: number;
  scriptPubKey: RpcScriptPubKey;
}

export interface RpcTransaction {
  txid: string;
  hash: string;
  vin: RpcTxInput[];
  vout: RpcTxOutput[];
  hex?: string;
  blockhash?: string;
  confirmations?: number;
}

export interface RpcBlock {
  hash: string;
  height: number;
  previousblockhash?: string;
  confirmations: number;
  tx: RpcTransaction[];
}

export interface RpcBlockSummary {
  hash: string;
  height: number;
  previousblockhash?: string;
  confirmations: number;
}

export interface RpcTxOut {
  bestblock: string;
  confirmations: number;
  value: number;
  scriptPubKey: RpcScriptPubKey;
  coinbase: boolean;
}

export interface SmartFeeEstimate {
  /** BTC/kvB; absent when the node has no estimate (then `errors` says why). */
  feerate?: number;
  errors?: string[];
  blocks: number;
}

export interface NetworkInfo {
  version: number;
  subversion: string;
  /** Minimum relay fee rate, BTC/kvB. */
  relayfee: number;
  incrementalfee: number;
}

export interface MempoolEntry {
  vsize: number;
  weight: number;
  time: number;
  height: number;
  fees: { base: number; modified: number };
  'bip125-replaceable'?: boolean;
}

export interface MempoolAcceptResult {
  txid: string;
  wtxid: string;
  allowed?: boolean;
  vsize?: number;
  fees?: { base: number };
  'reject-reason'?: string;
}

export type BroadcastOutcome = 'accepted' | 'already_in_mempool' | 'already_in_chain';

/** One output `scantxoutset` found, value in sats. */
export interface ScannedOutput {
  readonly txid: string;
  readonly vout: number;
  readonly value: bigint;
  readonly scriptPubKey: string;
  readonly height: number;
}

/** What `scantxoutset start` found in Bitcoin Core's UTXO set (confirmed outputs only, no mempool), at one tip. */
export interface TxOutSetScan {
  readonly height: number;
  /** The tip the scan was made at (absent from nodes older than v22). */
  readonly bestblock: string | undefined;
  readonly outputs: readonly ScannedOutput[];
  /** Σ values, sats. */
  readonly total: bigint;
}

/** `raw(<hex>)`: the output descriptor of exactly one scriptPubKey, as scantxoutset takes it. */
export function rawDescriptor(scriptPubKey: Uint8Array): string {
  if (!(scriptPubKey instanceof Uint8Array) || scriptPubKey.length === 0)
    throw new BitcoinRpcError('invalid_argument', 'raw() descriptor needs a non-empty scriptPubKey', {});
  return `raw(${Buffer.from(scriptPubKey).toString('hex')})`;
}

/** The part of the client the block observer needs; tests drive the observer with a scripted chain. */
export interface ChainSource {
  getBlockCount(): Promise<number>;
  getBlockHash(height: number): Promise<string>;
  getBlock(hash: string): Promise<RpcBlock>;
}

interface TransportFailure {
  transport: true;
  timedOut: boolean;
  error: Error;
}

/** What one attempt came to: a transport failure, an answer too large to read, or the answer. */
type Attempt = TransportFailure | { tooLarge: true } | { status: number; body: string; id: number };

export class BitcoinRpcClient implements ChainSource {
  readonly #endpoint: URL;
  readonly #where: string;
  readonly #auth: RpcAuth | undefined;
  readonly #agent: http.Agent;
  readonly #options: typeof DEFAULTS;
  #cookieHeader: string | undefined;
  #nextId = 1;

  constructor(options: BitcoinRpcOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new BitcoinRpcError('config', `Bitcoin RPC url must be an http:// URL, got an unparsable value`, {});
    }
    if (url.protocol !== 'http:')
      throw new BitcoinRpcError('config', `Bitcoin RPC url must use http:, got ${url.protocol}`, {
        protocol: url.protocol,
      });
    let auth = options.auth;
    if (url.username !== '' || url.password !== '') {
      if (auth === undefined)
        auth = { user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
      url.username = '';
      url.password = '';
    }
    this.#endpoint = url;
    this.#where = shownRpcUrl(url, { withPath: true });
    this.#auth = auth;
    this.#options = {
      timeoutMs: options.timeoutMs ?? DEFAULTS.timeoutMs,
      retries: options.retries ?? DEFAULTS.retries,
      backoffMs: options.backoffMs ?? DEFAULTS.backoffMs,
      maxBackoffMs: options.maxBackoffMs ?? DEFAULTS.maxBackoffMs,
      maxSockets: options.maxSockets ?? DEFAULTS.maxSockets,
      maxResponseBytes: options.maxResponseBytes ?? DEFAULTS.maxResponseBytes,
    };
    this.#agent = new http.Agent({ keepAlive: true, maxSockets: this.#options.maxSockets });
  }

  /** The node's address as shown in errors and logs (no credentials). */
  get where(): string {
    return this.#where;
  }

  close(): void {
    this.#agent.destroy();
  }

  /** One JSON-RPC call; transport failures retried, node errors thrown as BitcoinRpcError. */
  async call<T>(method: string, params: unknown[] = []): Promise<T> {
    let refreshedCookie = false;
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.#attempt(method, params);
      // not tried again: the node would send the same answer
      if ('tooLarge' in outcome)
        throw new BitcoinRpcError(
          'answer_too_large',
          `${method} to ${this.#where}: the answer is over ${this.#options.maxResponseBytes} bytes`,
          { method, node: this.#where },
        );
      if ('transport' in outcome) {
        if (attempt >= this.#options.retries) {
          const code = outcome.timedOut ? 'timeout' : 'transport';
          throw new BitcoinRpcError(
            code,
            `${method} to ${this.#where} failed after ${attempt + 1} attempt(s): ${outcome.error.message}`,
            { method, node: this.#where, attempts: attempt + 1 },
            { cause: outcome.error },
          );
        }
        const delay = Math.min(this.#options.maxBackoffMs, this.#options.backoffMs * 2 ** attempt);
        await sleep(delay / 2 + Math.random() * (delay / 2));
        continue;
      }
      if (outcome.status === 401 || outcome.status === 403) {
        // bitcoind writes a new cookie each start: reread it once before giving up
        if (!refreshedCookie && this.#auth !== undefined && 'cookieFile' in this.#auth) {
          refreshedCookie = true;
          this.#cookieHeader = undefined;
          attempt--;
          continue;
        }
        throw new BitcoinRpcError(
          'unauthorized',
          `${this.#where} refused the RPC credentials (HTTP ${outcome.status}) for ${method}`,
          { method, node: this.#where, status: outcome.status },
        );
      }
      return this.#parse<T>(method, outcome.id, outcome.status, outcome.body);
    }
  }

  async #authorization(): Promise<string | undefined> {
    const auth = this.#auth;
    if (auth === undefined) return undefined;
    if ('user' in auth) return `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString('base64')}`;
    if (this.#cookieHeader === undefined) {
      let cookie: string;
      try {
        cookie = (await readFile(auth.cookieFile, 'utf8')).trim();
      } catch (err) {
        throw new BitcoinRpcError(
          'config',
          `cannot read the Bitcoin RPC cookie file ${auth.cookieFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
          { cookieFile: auth.cookieFile },
          { cause: err },
        );
      }
      if (!cookie.includes(':'))
        throw new BitcoinRpcError('config', `Bitcoin RPC cookie file ${auth.cookieFile} does not hold user:password`, {
          cookieFile: auth.cookieFile,
        });
      this.#cookieHeader = `Basic ${Buffer.from(cookie).toString('base64')}`;
    }
    return this.#cookieHeader;
  }

  async #attempt(method: string, params: unknown[]): Promise<Attempt> {
    const id = this.#nextId++;
    const body = JSON.stringify({ jsonrpc: '1.0', id, method, params });
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    };
    const authorization = await this.#authorization();
    if (authorization !== undefined) headers.authorization = authorization;
    return new Promise((resolve) => {
      let settled = false;
      const finish = (value: Attempt) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      };
      const req = http.request(this.#endpoint, { method: 'POST', agent: this.#agent, headers }, (res) => {
        readBody(
          res,
          this.#options.maxResponseBytes,
          (body) => {
            const status = res.statusCode ?? 0;
            // 503: Bitcoin Core's work queue is full, the request never ran
            if (status === 503) finish({ transport: true, timedOut: false, error: new Error('HTTP 503 (node busy)') });
            else finish({ status, body: body.toString('utf8'), id });
          },
          () => {
            finish({ tooLarge: true });
            req.destroy();
          },
        );
        res.on('error', (error) => finish({ transport: true, timedOut: false, error }));
        res.on('close', () => {
          if (!res.complete)
            finish({
              transport: true,
              timedOut: false,
              error: new Error('connection closed before the answer was complete'),
            });
        });
      });
      const timer = setTimeout(() => {
        finish({
          transport: true,
          timedOut: true,
          error: new Error(`no complete answer within ${this.#options.timeoutMs} ms`),
        });
        req.destroy();
      }, this.#options.timeoutMs);
      req.on('error', (error) => finish({ transport: true, timedOut: false, error }));
      req.end(body);
    });
  }

  #parse<T>(method: string, id: number, status: number, text: string): T {
    const malformed = (why: string) =>
      new BitcoinRpcError(
        'malformed_response',
        `${method} to ${this.#where}: ${why} (HTTP ${status}, ${text.length} bytes)`,
        { method, node: this.#where, status },
      );
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      if (status !== 200)
        throw new BitcoinRpcError(
          'http_status',
          `${method} to ${this.#where} answered HTTP ${status} without a JSON-RPC body`,
          { method, node: this.#where, status },
        );
      throw malformed('the answer is not JSON');
    }
    if (typeof answer !== 'object' || answer === null || !('result' in answer || 'error' in answer))
      throw malformed('the answer has neither result nor error');
    const { result, error, id: answerId } = answer as { result?: unknown; error?: unknown; id?: unknown };
    if (answerId !== id) throw malformed(`the answer id ${JSON.stringify(answerId)} is not the request id ${id}`);
    if (error !== null && error !== undefined) {
      const { code, message } = error as { code?: unknown; message?: unknown };
      if (typeof code !== 'number' || typeof message !== 'string')
        throw malformed('the error has no numeric code and string message');
      throw new BitcoinRpcError(
        classifyRpcError(code, message),
        `${method} failed on ${this.#where}: ${message} (RPC error ${code})`,
        { method, node: this.#where, rpcCode: code, rpcMessage: message },
      );
    }
    if (status !== 200) throw malformed('a non-200 status came with a result');
    return result as T;
  }

  getBlockchainInfo(): Promise<BlockchainInfo> {
    return this.call('getblockchaininfo');
  }

  getBlockCount(): Promise<number> {
    return this.call('getblockcount');
  }

  getBlockHash(height: number): Promise<string> {
    return this.call('getblockhash', [height]);
  }

  /**
   * Verbosity 3: transactions decoded, output values and scripts included, and each input's spent
   * output (which output an input spent is not in the transaction's bytes, and the rotation's new
   * side must know it: wallet/handoff.ts isHandoffOf).
   */
  getBlock(hash: string): Promise<RpcBlock> {
    return this.call('getblock', [hash, 3]);
  }

  /** Verbosity 1: header fields and txids only. */
  getBlockSummary(hash: string): Promise<RpcBlockSummary> {
    return this.call('getblock', [hash, 1]);
  }

  getRawTransaction(txid: string, blockhash?: string): Promise<RpcTransaction> {
    return this.call('getrawtransaction', blockhash === undefined ? [txid, true] : [txid, true, blockhash]);
  }

  /** null when the output is spent or never existed. */
  getTxOut(txid: string, vout: number, includeMempool = true): Promise<RpcTxOut | null> {
    return this.call('gettxout', [txid, vout, includeMempool]);
  }

  estimateSmartFee(confTarget: number, mode?: 'economical' | 'conservative'): Promise<SmartFeeEstimate> {
    return this.call('estimatesmartfee', mode === undefined ? [confTarget] : [confTarget, mode]);
  }

  getMempoolEntry(txid: string): Promise<MempoolEntry> {
    return this.call('getmempoolentry', [txid]);
  }

  testMempoolAccept(rawTxs: string[], maxFeeRate?: number): Promise<MempoolAcceptResult[]> {
    return this.call('testmempoolaccept', maxFeeRate === undefined ? [rawTxs] : [rawTxs, maxFeeRate]);
  }

  /** maxFeeRate in BTC/kvB (0 disables Bitcoin Core's check). Returns the txid. */
  sendRawTransaction(rawTx: string, maxFeeRate?: number): Promise<string> {
    return this.call('sendrawtransaction', maxFeeRate === undefined ? [rawTx] : [rawTx, maxFeeRate]);
  }

  /**
   * Bitcoin Core's UTXO set scanned for `descriptors` (e.g. rawDescriptor(federation script)). The scan reads the
   * whole chainstate: seconds on regtest, minutes on mainnet, so give this client a long timeoutMs; Core runs one
   * scan at a time and refuses a second ('rpc_error', "Scan already in progress"). An aborted scan is an error too.
   */
  async scanTxOutSet(descriptors: readonly string[]): Promise<TxOutSetScan> {
    if (!Array.isArray(descriptors) || descriptors.length === 0 || descriptors.length > 100)
      throw new BitcoinRpcError(
        'invalid_argument',
        `scantxoutset needs 1 to 100 descriptors, got ${descriptors?.length}`,
        {
          count: descriptors?.length,
        },
      );
    for (const d of descriptors)
      if (typeof d !== 'string' || !/^[a-z]+\(\S+\)(#[a-z0-9]{8})?$/.test(d))
        throw new BitcoinRpcError(
          'invalid_argument',
          `scantxoutset: ${JSON.stringify(d)} is not an output descriptor`,
          {
            descriptor: String(d),
          },
        );
    const answer = await this.call<RawScan>('scantxoutset', ['start', [...descriptors]]);
    return parseScan(answer, this.#where);
  }

  getNetworkInfo(): Promise<NetworkInfo> {
    return this.call('getnetworkinfo');
  }

  getMempoolInfo(): Promise<{ mempoolminfee: number }> {
    return this.call('getmempoolinfo');
  }

  /**
   * Broadcasts, counting "already in the mempool" and "already confirmed" as success (SPEC §3:
   * several members broadcast the same transaction). Every other refusal is thrown.
   */
  async broadcast(rawTx: string, maxFeeRate?: number): Promise<BroadcastOutcome> {
    try {
      await this.sendRawTransaction(rawTx, maxFeeRate);
      return 'accepted';
    } catch (err) {
      if (err instanceof BitcoinRpcError && (err.code === 'already_in_mempool' || err.code === 'already_in_chain'))
        return err.code;
      throw err;
    }
  }

  /** The fee rate to pay now; see feeRateFromNode. */
  async feeRate(policy: FeeRatePolicy): Promise<NodeFeeRate> {
    const [estimate, network, mempool] = await Promise.all([
      this.estimateSmartFee(policy.confTarget, policy.mode),
      this.getNetworkInfo(),
      this.getMempoolInfo(),
    ]);
    // a full mempool raises what it accepts above the static relay fee
    return feeRateFromNode(estimate, Math.max(network.relayfee, mempool.mempoolminfee), policy);
  }
}

interface RawScan {
  success?: unknown;
  height?: unknown;
  bestblock?: unknown;
  unspents?: unknown;
}

/** The answer of `scantxoutset start`, checked field by field. */
function parseScan(answer: RawScan, node: string): TxOutSetScan {
  const malformed = (why: string) =>
    new BitcoinRpcError('malformed_response', `scantxoutset on ${node}: ${why}`, { method: 'scantxoutset', node });
  if (typeof answer !== 'object' || answer === null) throw malformed('the answer is not an object');
  if (answer.success !== true) throw malformed('the scan did not complete (success is not true: aborted?)');
  if (!Number.isSafeInteger(answer.height) || (answer.height as number) < 0) throw malformed('no height');
  if (
    answer.bestblock !== undefined &&
    (typeof answer.bestblock !== 'string' || !/^[0-9a-f]{64}$/.test(answer.bestblock))
  )
    throw malformed('bestblock is not a block hash');
  if (!Array.isArray(answer.unspents)) throw malformed('no unspents array');
  const outputs = answer.unspents.map((u: Record<string, unknown>, i): ScannedOutput => {
    const { txid, vout, amount, scriptPubKey, height } = u ?? {};
    if (typeof txid !== 'string' || !/^[0-9a-f]{64}$/.test(txid)) throw malformed(`unspents[${i}].txid is not a txid`);
    if (!Number.isSafeInteger(vout) || (vout as number) < 0) throw malformed(`unspents[${i}].vout is not an index`);
    if (typeof amount !== 'number') throw malformed(`unspents[${i}].amount is not a number`);
    if (!Number.isSafeInteger(height)) throw malformed(`unspents[${i}].height is not a height`);
    const value = btcToSats(amount);
    return { txid, vout: vout as number, value, scriptPubKey: String(scriptPubKey ?? ''), height: height as number };
  });
  return {
    height: answer.height as number,
    bestblock: answer.bestblock as string | undefined,
    outputs,
    total: outputs.reduce((a, o) => a + o.value, 0n),
  };
}

/** BTC amount as Bitcoin Core prints it (a JSON number with at most 8 decimals) to satoshis. */
export function btcToSats(value: number): bigint {
  if (!Number.isFinite(value) || value < 0 || value > 21_000_000)
    throw new BitcoinRpcError('malformed_response', `amount must be a BTC value in [0, 21000000], got ${value}`, {
      value,
    });
  // 21e14 sats < 2^53 and printed amounts have 8 decimals, so rounding the product is exact
  return BigInt(Math.round(value * 1e8));
}

// --- Fee rate ---

export interface FeeRatePolicy {
  confTarget: number;
  mode?: 'economical' | 'conservative';
  /** Used when the node has no estimate yet (fresh regtest, too little data). */
  fallbackSatPerVb?: number;
  /** Configured ceiling: no payment pays more than this rate. */
  maxSatPerVb: number;
}

/** What the node says the fee market is, in sat/vB and sat/kvB (the rate itself is wallet/fee.ts FeeRate). */
export interface NodeFeeRate {
  /** sat per 1000 vbytes, an integer: fee = ceil(satPerKvb × vsize / 1000) with exact arithmetic. */
  satPerKvb: number;
  satPerVb: number;
  source: 'estimate' | 'fallback';
  /** Raised to the node's minimum relay fee rate. */
  flooredAtRelay: boolean;
  /** The node's minimum: what no payment may pay less than (sat/vB). */
  floorSatPerVb: number;
  /** Lowered to the configured maximum. */
  capped: boolean;
}

export const DEFAULT_FALLBACK_SAT_PER_VB = 2;

/** BTC/kvB (what Bitcoin Core prints) to sat/kvB, rounded up so a rate is never understated. */
function btcPerKvbToSatPerKvb(value: number, field: string): number {
  if (!Number.isFinite(value) || value < 0)
    throw new BitcoinRpcError('malformed_response', `${field} must be a non-negative BTC/kvB rate, got ${value}`, {
      field,
      value,
    });
  return Math.ceil(Math.round(value * 1e8 * 1000) / 1000);
}

/**
 * Pure: the node's estimate (BTC/kvB) → sat/kvB, the fallback when the node has none,
 * floored at the node's minimum relay fee, capped at the configured maximum.
 */
export function feeRateFromNode(
  estimate: SmartFeeEstimate,
  relayFeeBtcPerKvb: number,
  policy: FeeRatePolicy,
): NodeFeeRate {
  const maxSatPerKvb = Math.floor(policy.maxSatPerVb * 1000);
  const relay = btcPerKvbToSatPerKvb(relayFeeBtcPerKvb, 'relayfee');
  if (!(maxSatPerKvb > 0))
    throw new BitcoinRpcError('config', `maximum fee rate must be positive sat/vB, got ${policy.maxSatPerVb}`, {
      maxSatPerVb: policy.maxSatPerVb,
    });
  if (maxSatPerKvb < relay) {
    throw new BitcoinRpcError(
      'config',
      `maximum fee rate ${policy.maxSatPerVb} sat/vB is below the node's minimum relay fee ${relay / 1000} sat/vB: nothing could be relayed`,
      {
        maxSatPerVb: policy.maxSatPerVb,
        relaySatPerVb: relay / 1000,
      },
    );
  }
  const hasEstimate = typeof estimate.feerate === 'number' && estimate.feerate > 0;
  const source = hasEstimate ? 'estimate' : 'fallback';
  let rate = hasEstimate
    ? btcPerKvbToSatPerKvb(estimate.feerate as number, 'feerate')
    : Math.ceil((policy.fallbackSatPerVb ?? DEFAULT_FALLBACK_SAT_PER_VB) * 1000);
  const flooredAtRelay = rate < relay;
  if (flooredAtRelay) rate = relay;
  const capped = rate > maxSatPerKvb;
  if (capped) rate = maxSatPerKvb;
  return { satPerKvb: rate, satPerVb: rate / 1000, source, flooredAtRelay, capped, floorSatPerVb: relay / 1000 };
}
