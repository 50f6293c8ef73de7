import { PegoutError } from '../errors.js';

export type WalletErrorCode =
  | 'utxo_unknown'
  | 'utxo_spent'
  | 'utxo_reserved'
  | 'utxo_duplicate'
  | 'utxo_conflict'
  | 'utxo_not_federation'
  | 'utxo_unconfirmed'
  | 'invalid_fee_rate'
  | 'no_requests'
  | 'insufficient_funds'
  | 'all_dust'
  | 'invalid_proposal'
  | 'invalid_plan';

/** The federation wallet: UTXO set, payment building, proposal checks. */
export class WalletError extends PegoutError<WalletErrorCode> {
  readonly domain = 'wallet';
}
