import { PegoutError } from '../errors.js';

export type StorageErrorCode =
  | 'open_failed'
  | 'federation_mismatch'
  | 'schema_newer'
  | 'schema_older'
  | 'meta_corrupt'
  | 'not_a_store'
  | 'closed'
  | 'invalid_key'
  | 'invalid_value'
  | 'read_failed'
  | 'write_failed'
  | 'decode_failed';

export class StorageError extends PegoutError<StorageErrorCode> {
  readonly domain = 'storage';
}
