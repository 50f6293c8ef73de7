import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { checkHandoffStore } from '../../../src/node/handoff.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { cursorKey } from '../../../src/storage/keys.js';
import { makeRotationPlan, type HandoffPolicy } from '../../../src/wallet/handoff.js';
import { openTempStore } from '../../support/tempdir.js';

// The EVM boundary gives each request one payer only if no old member read past it before it
// loaded the plan, and no new member reads below it: a member refuses to start otherwise.

const fed = (t: number, ids: number[]) =>
  buildFederation({
    network: 'regtest',
    threshold: t,
    pubkeys: ids.map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i))),
  });
const plan = makeRotationPlan(fed(2, [1, 2, 3]), fed(3, [1, 2, 4, 5]), { activationHeight: 10, evmBoundary: 100 }, 'p');
const policy = (side: 'from' | 'to'): HandoffPolicy => ({ plan, side, testAmount: 100_000n, maxFee: 100_000n });

async function storeAt(height: number | undefined) {
  const store = await openTempStore({ after });
  if (height !== undefined) await store.batch().put(cursorKey('evm'), { height, hash: '0x00' }).write({ sync: true });
  return store;
}

describe('a rotation plan against what the member has read', () => {
  it('an old member that read the boundary block refuses the plan: those requests would have two payers', async () => {
    await assert.rejects(
      checkHandoffStore(await storeAt(100), policy('from')),
      /read EVM blocks up to 100, at or past the plan's evmBoundary 100/,
    );
    await checkHandoffStore(await storeAt(99), policy('from'));
    await checkHandoffStore(await storeAt(undefined), policy('from'));
  });

  it('a new member whose store read less than the blocks before the boundary refuses it; a fresh store is fine', async () => {
    await assert.rejects(
      checkHandoffStore(await storeAt(50), policy('to')),
      /only up to 50, before the plan's evmBoundary 100/,
    );
    await checkHandoffStore(await storeAt(99), policy('to'));
    await checkHandoffStore(await storeAt(undefined), policy('to'));
  });
});
