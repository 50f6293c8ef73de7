import { EvmError } from './errors.js';

// Request identity: how every member, and any auditor, names a peg-out request. Pure.

/**
 * A request is named by its EVM transaction and its ordinal: the position of its log among the
 * bridge's RequestPegOut logs of that transaction. Unlike the block-level log index, the ordinal
 * stays the same when the transaction is re-mined in another block after a reorg, so the same
 * burn is always the same request. It is what a payment commits to (wallet/commitment.ts).
 */
export interface RequestIdentity {
  /** 0x + 64 lowercase hex. */
  readonly txHash: string;
  /** A u32: the commitment encodes it in 4 bytes. */
  readonly ordinal: number;
}

export const MAX_ORDINAL = 0xffff_ffff;

/** The one text form of a request id: lowercase hash, decimal ordinal without leading zeros. */
const REQUEST_ID = /^(0x[0-9a-f]{64}):(0|[1-9][0-9]{0,9})$/;
const TX_HASH = /^0x[0-9a-f]{64}$/;

function checkOrdinal(ordinal: number, text: string): number {
  if (!Number.isSafeInteger(ordinal) || ordinal < 0 || ordinal > MAX_ORDINAL) {
    throw new EvmError('invalid_request', `request ordinal must be an integer from 0 to ${MAX_ORDINAL}, got ${text}`);
  }
  return ordinal;
}

export function requestId(txHash: string, ordinal: number): string {
  const hash = txHash.toLowerCase();
  if (!TX_HASH.test(hash))
    throw new EvmError(
      'invalid_request',
      `request transaction hash must be 0x and 64 hex digits, got ${JSON.stringify(txHash)}`,
    );
  return `${hash}:${checkOrdinal(ordinal, String(ordinal))}`;
}

/** The identity a canonical request id names; undefined for anything else. */
export function tryParseRequestId(id: unknown): RequestIdentity | undefined {
  const m = typeof id === 'string' ? REQUEST_ID.exec(id) : null;
  if (!m) return undefined;
  const ordinal = Number(m[2]);
  return ordinal <= MAX_ORDINAL ? { txHash: m[1]!, ordinal } : undefined;
}

/** Whether `id` is a request id in its canonical form (anything else is refused at the edge). */
export function isRequestId(id: unknown): id is string {
  return tryParseRequestId(id) !== undefined;
}

/** Parses a canonical request id; `0x…:01`, upper-case hashes and the like are refused, never normalised. */
export function parseRequestId(id: unknown): RequestIdentity {
  const identity = tryParseRequestId(id);
  if (identity) return identity;
  // refused: which part is wrong
  const m = typeof id === 'string' ? REQUEST_ID.exec(id) : null;
  if (!m)
    throw new EvmError(
      'invalid_request',
      `request id must be <0x + 64 lowercase hex tx hash>:<ordinal, decimal without leading zeros>, got ${JSON.stringify(id)}`,
    );
  return { txHash: m[1]!, ordinal: checkOrdinal(Number(m[2]), m[2]!) };
}
