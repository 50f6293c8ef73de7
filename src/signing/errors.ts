import { PegoutError } from '../errors.js';

export type SigningErrorCode =
  | 'invalid_argument'
  | 'invalid_length'
  | 'invalid_secret_key'
  | 'sign_fault'
  | 'detached_buffer'
  | 'shared_buffer'
  | 'native_failure'
  | 'invalid_key_file'
  | 'wrong_signature_count'
  | 'not_a_member'
  | 'invalid_signature'
  | 'conflicting_signature'
  | 'not_enough_signatures'
  | 'unknown_transaction'
  | 'invalid_witness'
  | 'pool_closed';

/** Failures of key handling, signing, verification and witness assembly. */
export class SigningError extends PegoutError<SigningErrorCode> {
  readonly domain = 'signing';
}
