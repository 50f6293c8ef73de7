import type { SigningPolicy } from '../../src/node/signer.js';

/** A member's signing rules in tests: a 2 sat/vB market, the default fee caps, no chain depth to wait for. */
export const TEST_POLICY: SigningPolicy = {
  fee: { floor: 1, estimate: 2, maxMultiple: 3, maxRate: 500, maxSharePerRequest: 100_000n },
  spendDepth: 1,
  paidDepth: 1,
};
