import { PegoutError } from '../errors.js';

export type P2pErrorCode = 'invalid_config' | 'not_started' | 'listen_failed';

/** The member-to-member network. (Misbehaving peers are counted, not thrown.) */
export class P2pError extends PegoutError<P2pErrorCode> {
  readonly domain = 'p2p';
}
