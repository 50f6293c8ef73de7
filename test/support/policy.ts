import type { SigningPolicy } from '../../src/node/signer.js';
import { DEFAULT_LIMITS } from '../../src/wallet/limits.js';

/**
 * A member's signing rules in tests: a 2 sat/vB market, the default fee caps and outflow limits, no chain depth to
 * wait for; `self` names no member (holds are tested with a policy of their own).
 */
export const TEST_POLICY: SigningPolicy = {
  fee: { floor: 1, estimate: 2, maxMultiple: 3, maxRate: 500, maxSharePerRequest: 100_000n },
  spendDepth: 1,
  paidDepth: 1,
  limits: DEFAULT_LIMITS,
  self: '00'.repeat(32),
};
