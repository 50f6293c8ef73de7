import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { serializeTx, txid as txidOf, type Transaction } from '../../../src/bitcoin/tx.js';
import { checkHandoffStore, watchHandoff } from '../../../src/node/handoff.js';
import { createLogger } from '../../../src/node/log.js';
import { commitmentScript } from '../../../src/wallet/commitment.js';
import type { FinalizedRecord } from '../../../src/storage/records.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import {
  cursorKey,
  finalizedKey,
  HANDOFF_PROVEN_KEY,
  handoffTxKey,
  txConfirmationKey,
} from '../../../src/storage/keys.js';
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

describe('the proof that the new set can spend what it was sent', () => {
  // the old set's test spend, confirmed at depth, with its output to the new address
  const testSpend: Transaction = {
    version: 2,
    locktime: 0,
    inputs: [{ txid: 'aa'.repeat(32), vout: 0, sequence: 0xfffffffd, scriptSig: new Uint8Array(0), witness: [] }],
    outputs: [
      { value: 0n, scriptPubKey: commitmentScript([]) },
      { value: 100_000n, scriptPubKey: plan.to.scriptPubKey },
    ],
  };
  const txid = txidOf(testSpend);
  async function oldMember() {
    const store = await openTempStore({ after });
    await store
      .batch()
      .put(cursorKey('bitcoin'), { height: 120, hash: '00'.repeat(32) })
      .put(handoffTxKey(txid), 1)
      .put(txConfirmationKey(txid), { height: 110, blockHash: '11'.repeat(32) })
      .put(finalizedKey(txid), {
        txid,
        tx: serializeTx(testSpend),
        prevouts: [],
        requestIds: [],
        unmatched: {},
        fee: 1000n,
        vsize: 150,
        conflicts: [],
        at: 'then',
      } satisfies FinalizedRecord)
      .write({ sync: true });
    return store;
  }
  const log = createLogger({ level: 'error', write: () => undefined });
  /** Bitcoin Core holding no such output, at `blocks`, in initial block download or not. */
  const core = (blocks: number, initialblockdownload = false) => ({
    getTxOut: async () => null,
    getBlockchainInfo: async () => ({
      chain: 'regtest',
      blocks,
      headers: blocks,
      bestblockhash: '',
      initialblockdownload,
    }),
  });

  it("is the test output gone from Core's UTXO set only while Core has the chain this member read", async () => {
    // null from gettxout is also what a node that is reindexing, still syncing, or behind a reorg
    // this member has seen answers: read as a spend, it let the old set sweep before the new set
    // had shown it can sign
    for (const [chain, why] of [
      [core(119), 'Core behind the block this member read'],
      [core(200, true), 'Core in initial block download'],
    ] as const) {
      const store = await oldMember();
      await watchHandoff(store, policy('from'), chain, 6, log);
      assert.equal(await store.get(HANDOFF_PROVEN_KEY), undefined, why);
    }
    const store = await oldMember();
    await watchHandoff(store, policy('from'), core(120), 6, log);
    assert.deepEqual(((await store.get(HANDOFF_PROVEN_KEY)) as { txid: string; vout: number }).txid, txid);
  });
});
