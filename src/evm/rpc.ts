import { setTimeout as sleep } from 'node:timers/promises';
import * as stages from '../metrics/stages.js';
import { EvmError } from './errors.js';

export interface EvmRpcOptions {
  /** Per call. */
  readonly timeoutMs?: number;
  /** Further tries after a transport failure or a malformed answer. */
  readonly retries?: number;
  readonly backoffMs?: number;
}

/** An answer that is not JSON-RPC: the node (or a proxy) is broken, so try again later. */
function malformed(method: string, detail: string): EvmError {
  return new EvmError('rpc_malformed', `${method}: malformed JSON-RPC answer (${detail})`, { method });
}

/**
 * JSON-RPC over HTTP for the EVM node. Transport failures and malformed answers are retried
 * with exponential backoff; a JSON-RPC error object is the node's answer and is returned at
 * once as `rpc_error` with its code (the caller decides, e.g. to halve a log range).
 */
export class EvmRpc {
  private id = 0;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;

  constructor(
    readonly url: string,
    options: EvmRpcOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.retries = options.retries ?? 4;
    this.backoffMs = options.backoffMs ?? 200;
  }

  async call<T>(method: string, params: unknown[] = []): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once<T>(method, params);
      } catch (err) {
        const retriable = err instanceof EvmError && err.code !== 'rpc_error';
        if (!retriable || attempt >= this.retries) throw err;
        await sleep(this.backoffMs * 2 ** attempt);
      }
    }
  }

  private async once<T>(method: string, params: unknown[]): Promise<T> {
    let response: Response;
    try {
      response = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: stages.time('evm_fetch_decode', () => JSON.stringify({ jsonrpc: '2.0', id: ++this.id, method, params })),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const e = err as Error;
      if (e.name === 'TimeoutError')
        throw new EvmError('rpc_timeout', `${method}: no answer from ${this.url} within ${this.timeoutMs} ms`, {
          method,
        });
      throw new EvmError(
        'rpc_unreachable',
        `${method}: cannot reach ${this.url}: ${(e.cause as Error | undefined)?.message ?? e.message}`,
        { method },
      );
    }
    let body: unknown;
    try {
      // read whole, then parsed in one timed section (a range's logs can be megabytes)
      const text = await response.text();
      body = stages.time('evm_fetch_decode', () => JSON.parse(text) as unknown);
    } catch {
      throw malformed(method, `HTTP ${response.status}, body is not JSON`);
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
