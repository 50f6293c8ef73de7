import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import * as stages from '../metrics/stages.js';
import { EvmError } from './errors.js';
import { readBody } from '../http-body.js';
import { shownRpcUrl } from '../rpc-url.js';

export interface EvmRpcOptions {
  /** Per call. */
  readonly timeoutMs?: number;
  /** Further tries after a transport failure or a malformed answer. */
  readonly retries?: number;
  readonly backoffMs?: number;
  /** The largest answer read (default MAX_RESPONSE_BYTES). */
  readonly maxResponseBytes?: number;
}

/**
 * Answers over this are refused (rpc_too_large) as they arrive (readBody): a log range is read again
 * in halves. Without it a range of many requests outgrew what one string holds and took the member
 * down at every restart. 64 MiB is about 80,000 requests' logs.
 */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** What post() rejects with when an answer passes the cap. */
class TooLarge extends Error {}

/** An answer that is not JSON-RPC: the node (or a proxy) is broken, so try again later. */
function malformed(method: string, detail: string): EvmError {
  return new EvmError('rpc_malformed', `${method}: malformed JSON-RPC answer (${detail})`, { method });
}

/**
 * JSON-RPC over HTTP for the EVM node. Transport failures and malformed answers are retried
 * with exponential backoff; a JSON-RPC error object is the node's answer and is returned at
 * once as `rpc_error` with its code (the caller decides, e.g. to halve a log range).
 *
 * Calls go through node:http on one kept-alive connection, not fetch: a member polls its node
 * several times a second for as long as it runs, and fetch's WHATWG request, response and stream
 * objects cost about 0.3 ms of CPU a call against about 0.05 ms this way
 * (bench/results/README.md, "The EVM node over node:http, not fetch").
 */
export class EvmRpc {
  private id = 0;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxResponseBytes: number;
  private readonly endpoint: URL;
  /** The node's address as errors show it (shownRpcUrl: no credentials, no API key). */
  readonly where: string;
  // keep-alive sockets are unreferenced while idle, so a short-lived CLI still exits
  private readonly agent: HttpAgent;
  private readonly request: typeof httpRequest;

  constructor(url: string, options: EvmRpcOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.retries = options.retries ?? 4;
    this.backoffMs = options.backoffMs ?? 200;
    this.maxResponseBytes = options.maxResponseBytes ?? MAX_RESPONSE_BYTES;
    try {
      // user info stays in the URL: node:http sends it as basic auth
      this.endpoint = new URL(url);
    } catch {
      throw new EvmError(
        'rpc_unreachable',
        'EVM node URL must be an http:// or https:// URL, got an unparsable value',
        {},
      );
    }
    if (this.endpoint.protocol !== 'http:' && this.endpoint.protocol !== 'https:')
      throw new EvmError(
        'rpc_unreachable',
        `EVM node URL must be an http:// or https:// URL, got ${this.endpoint.protocol}`,
        { protocol: this.endpoint.protocol },
      );
    this.where = shownRpcUrl(this.endpoint);
    const https = this.endpoint.protocol === 'https:';
    this.agent = https ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.request = https ? httpsRequest : httpRequest;
  }

  async call<T>(method: string, params: unknown[] = []): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once<T>(method, params);
      } catch (err) {
        // the node's own answer, or one too large: the same again at once
        const retriable = err instanceof EvmError && err.code !== 'rpc_error' && err.code !== 'rpc_too_large';
        if (!retriable || attempt >= this.retries) throw err;
        await sleep(this.backoffMs * 2 ** attempt);
      }
    }
  }

  private async once<T>(method: string, params: unknown[]): Promise<T> {
    const payload = stages.time('evm_fetch_decode', () =>
      JSON.stringify({ jsonrpc: '2.0', id: ++this.id, method, params }),
    );
    const signal = AbortSignal.timeout(this.timeoutMs);
    let answer: { status: number; text: string };
    try {
      answer = await this.post(payload, signal);
    } catch (err) {
      if (err instanceof TooLarge)
        throw new EvmError(
          'rpc_too_large',
          `${method}: the answer from ${this.where} is over ${this.maxResponseBytes} bytes`,
          { method },
        );
      if (signal.aborted)
        throw new EvmError('rpc_timeout', `${method}: no answer from ${this.where} within ${this.timeoutMs} ms`, {
          method,
        });
      throw new EvmError('rpc_unreachable', `${method}: cannot reach ${this.where}: ${(err as Error).message}`, {
        method,
      });
    }
    let body: unknown;
    try {
      // read whole, then parsed in one timed section (a range's logs can be megabytes)
      body = stages.time('evm_fetch_decode', () => JSON.parse(answer.text) as unknown);
    } catch {
      throw malformed(method, `HTTP ${answer.status}, body is not JSON`);
    }
    if (typeof body !== 'object' || body === null) throw malformed(method, 'not an object');
    const b = body as { result?: unknown; error?: { code?: unknown; message?: unknown } };
    if (b.error !== undefined) {
      const code = typeof b.error?.code === 'number' ? b.error.code : undefined;
      throw new EvmError(
        'rpc_error',
        `${method}: node answered ${code ?? ''} ${String(b.error?.message ?? 'an error')}`.replace('  ', ' '),
        { method, rpcCode: code },
      );
    }
    if (!('result' in b)) throw malformed(method, 'no result and no error');
    return b.result as T;
  }

  /** One POST of `payload`; the whole answer's status and text, or a transport error. */
  private post(payload: string, signal: AbortSignal): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = this.request(
        this.endpoint,
        {
          method: 'POST',
          agent: this.agent,
          signal,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        },
        (res: IncomingMessage) => {
          readBody(
            res,
            this.maxResponseBytes,
            (body) => resolve({ status: res.statusCode ?? 0, text: body.toString('utf8') }),
            () => req.destroy(new TooLarge()),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }
}

/** Parses a JSON-RPC quantity ("0x1a"); anything else is a malformed answer. */
export function quantity(value: unknown, what: string): number {
  if (typeof value !== 'string' || !/^0x[0-9a-fA-F]+$/.test(value))
    throw malformed(what, `expected a hex quantity, got ${JSON.stringify(value)}`);
  const n = Number.parseInt(value, 16);
  if (!Number.isSafeInteger(n)) throw malformed(what, `quantity ${value} is too large`);
  return n;
}

export function hexQuantity(n: number): string {
  return `0x${n.toString(16)}`;
}

export interface RpcBlock {
  number: string;
  hash: string;
}

/** A block header by number or tag; null when the node has no such block. */
export async function getBlock(
  rpc: EvmRpc,
  block: number | 'latest' | 'finalized',
): Promise<{ number: number; hash: string } | null> {
  const raw = await rpc.call<RpcBlock | null>('eth_getBlockByNumber', [
    typeof block === 'number' ? hexQuantity(block) : block,
    false,
  ]);
  if (raw === null) return null;
  if (typeof raw !== 'object' || typeof raw.hash !== 'string' || !/^0x[0-9a-f]{64}$/.test(raw.hash))
    throw malformed('eth_getBlockByNumber', 'block without a hash');
  return { number: quantity(raw.number, 'eth_getBlockByNumber'), hash: raw.hash };
}
