import { PegoutError } from '../errors.js';

export type EvmErrorCode =
  | 'rpc_unreachable'
  | 'rpc_timeout'
  | 'rpc_error'
  | 'rpc_malformed'
  // the node has not reached a block this member already ingested: waited for, not a reorg
  | 'rpc_behind'
  | 'rpc_too_large'
  // every block this member kept a record of left the chain, and older records were dropped
  | 'reorg_too_deep'
  | 'not_dev_chain'
  // an option the code passed is out of range
  | 'invalid_option'
  | 'artifact_missing'
  | 'invalid_amount'
  // an address the request decider refuses (RequestRejectReason)
  | 'invalid_address'
  | 'wrong_network'
  | 'unsupported_destination'
  | 'not_utf8'
  | 'invalid_key'
  | 'invalid_request'
  | 'illegal_transition'
  // an operator's hold action on a request that is not held here
  | 'unknown_request'
  | 'not_held'
  | 'anvil_failed';

/** The EVM side: node RPC, the bridge contract, peg-out requests. */
export class EvmError extends PegoutError<EvmErrorCode> {
  readonly domain = 'evm';
}
