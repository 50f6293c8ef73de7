// A member's settlement as the unit tests drive it: on a scripted chain (its observer), a node that
// accepts every broadcast, the paid depth 3 and a silent log unless a test says otherwise.
import type { Federation } from '../../src/bitcoin/federation.js';
import type { BitcoinObserver } from '../../src/chain/observer.js';
import { createLogger } from '../../src/node/log.js';
import { ChainSettlement, type ChainSettlementOptions } from '../../src/node/settlement.js';
import type { Store } from '../../src/storage/store.js';
import { DEFAULT_LIMITS } from '../../src/wallet/limits.js';

export function testSettlement(
  store: Store,
  federation: Federation,
  observer: BitcoinObserver,
  options: Partial<ChainSettlementOptions> = {},
): ChainSettlement {
  return new ChainSettlement({
    store,
    federation,
    observer,
    rpc: { broadcast: async () => 'accepted' as const },
    limits: DEFAULT_LIMITS,
    paidConfirmations: 3,
    rbfAfterBlocks: 2,
    maxFeeRate: 500,
    log: createLogger({ level: 'error', write: () => undefined }),
    onSettled: () => undefined,
    ...options,
  });
}
