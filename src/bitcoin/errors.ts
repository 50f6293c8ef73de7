import { PegoutError } from '../errors.js';

export type BitcoinErrorCode =
  | 'invalid_hex'
  | 'invalid_length'
  | 'invalid_transaction'
  | 'invalid_address'
  | 'wrong_network'
  | 'invalid_network'
  | 'invalid_federation'
  | 'invalid_prevouts'
  | 'invalid_script';

/** Consensus-level failures: malformed bytes, addresses, transactions, federations. */
export class BitcoinError extends PegoutError<BitcoinErrorCode> {
  readonly domain = 'bitcoin';
}
