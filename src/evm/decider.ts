import { decodeAddress } from '../bitcoin/address.js';
import { BitcoinError } from '../bitcoin/errors.js';
import { classifyScript, type ScriptType } from '../bitcoin/script.js';
import type { Network } from '../bitcoin/network.js';
import { MAX_MONEY } from '../bitcoin/tx.js';
import { EvmError } from './errors.js';

// The request decider: what a RequestPegOut log asks for, and whether it can be paid. Pure.

/** The sidechain's coin has 18 decimals, bitcoin 8. */
export const WEI_PER_SAT = 10n ** 10n;
/** The longest a Bitcoin address is: 90 characters (BIP173's bound for bech32; base58 ones are shorter). */
export const MAX_ADDRESS_BYTES = 90;
/** Requests under this are not paid (recorded as rejected). */
export const MIN_PEGOUT_SATS = 1_000_000n;

export type RequestRejectReason =
  'below_minimum' | 'not_utf8' | 'invalid_address' | 'wrong_network' | 'unsupported_destination' | 'amount_overflow';

/**
 * Output types the federation pays. Witness versions 2–16 and v1 programs of other lengths are
 * valid addresses but unspendable-by-rule today: anyone can spend them, so paying one gives the
 * user's coins away.
 */
const PAYABLE = new Set<ScriptType>(['p2pkh', 'p2sh', 'p2wpkh', 'p2wsh', 'p2tr']);

export interface RequestDecision {
  readonly sats: bigint;
  /** Wei below one satoshi: lost to the burn, recorded so it is never silently dropped. */
  readonly subSatoshiWei: bigint;
  /**
   * The address text, or the raw bytes as 0x-hex when they are not UTF-8; over MAX_ADDRESS_BYTES,
   * the first 32 bytes as 0x-hex and the length.
   */
  readonly bitcoinAddress: string;
  readonly status: 'accepted' | 'rejected';
  readonly reason?: RequestRejectReason;
  readonly detail?: string;
  readonly scriptPubKey?: Uint8Array;
}

// ignoreBOM: a leading byte order mark stays in the text, which is then no address (as for Bitcoin Core)
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function decideRequest(addressBytes: Uint8Array, wei: bigint, network: Network): RequestDecision {
  const sats = wei / WEI_PER_SAT;
  const subSatoshiWei = wei % WEI_PER_SAT;
  // the bridge takes bytes of any length; a record, its index and every answer that shows it keep a bounded copy
  if (addressBytes.length > MAX_ADDRESS_BYTES)
    return {
      sats,
      subSatoshiWei,
      bitcoinAddress: `0x${Buffer.from(addressBytes.subarray(0, 32)).toString('hex')}… (${addressBytes.length} bytes)`,
      status: 'rejected',
      reason: 'invalid_address',
      detail: `the address is ${addressBytes.length} bytes long; no Bitcoin address is over ${MAX_ADDRESS_BYTES} characters`,
    };
  let text: string;
  try {
    text = utf8.decode(addressBytes);
  } catch {
    const hex = `0x${Buffer.from(addressBytes).toString('hex')}`;
    return {
      sats,
      subSatoshiWei,
      bitcoinAddress: hex,
      status: 'rejected',
      reason: 'not_utf8',
      detail: 'the address bytes are not valid UTF-8',
    };
  }
  const rejected = (reason: RequestRejectReason, detail: string): RequestDecision => ({
    sats,
    subSatoshiWei,
    bitcoinAddress: text,
    status: 'rejected',
    reason,
    detail,
  });
  if (sats > MAX_MONEY) return rejected('amount_overflow', `${sats} sats is more than 21,000,000 BTC`);
  let scriptPubKey: Uint8Array;
  try {
    scriptPubKey = decodeAddress(text, network).scriptPubKey;
  } catch (err) {
    const e = err as BitcoinError;
    return rejected(e.code === 'wrong_network' ? 'wrong_network' : 'invalid_address', e.message);
  }
  const type = classifyScript(scriptPubKey);
  if (!PAYABLE.has(type))
    return rejected(
      'unsupported_destination',
      `${text} is a ${type === 'witness_unknown' ? 'witness program of a version or length no rule defines yet (anyone could spend it)' : type} output; the federation pays P2PKH, P2SH, P2WPKH, P2WSH and P2TR`,
    );
  if (sats < MIN_PEGOUT_SATS)
    return rejected('below_minimum', `${sats} sats is under the minimum of ${MIN_PEGOUT_SATS}`);
  return { sats, subSatoshiWei, bitcoinAddress: text, status: 'accepted', scriptPubKey };
}

/**
 * A BTC amount typed by a user ("0.015") as exact satoshis: decimal text only, at most 8
 * decimals — a 9th would be wei the bridge burns and nobody pays.
 */
export function parseBtcAmount(text: string): bigint {
  const m = /^(\d{1,8})(?:\.(\d{1,}))?$/.exec(text.trim());
  if (!m)
    throw new EvmError(
      'invalid_amount',
      `amount must be a decimal number of BTC like 0.015, got ${JSON.stringify(text)}`,
    );
  const decimals = m[2] ?? '';
  if (decimals.length > 8)
    throw new EvmError(
      'invalid_amount',
      `amount ${text} has more than 8 decimals: bitcoin has no unit below one satoshi, the rest would be burned unpaid`,
    );
  const sats = BigInt(m[1]!) * 100_000_000n + BigInt(decimals.padEnd(8, '0') || '0');
  if (sats > MAX_MONEY) throw new EvmError('invalid_amount', `amount ${text} is more than 21,000,000 BTC`);
  return sats;
}
