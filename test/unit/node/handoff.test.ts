import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { serializeTx, txid as txidOf, type Transaction } from '../../../src/bitcoin/tx.js';
import { checkHandoffStore, handoffProposals, watchHandoff } from '../../../src/node/handoff.js';
import { createLogger } from '../../../src/node/log.js';
import { chainView, handoffState } from '../../../src/node/signer.js';
import { commitmentScript } from '../../../src/wallet/commitment.js';
import type { FinalizedRecord, SignatureRecord } from '../../../src/storage/records.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import {
  cursorKey,
  finalizedKey,
  HANDOFF_PROVEN_KEY,
  handoffTxKey,
  signatureMadeKey,
  txConfirmationKey,
} from '../../../src/storage/keys.js';
import { makeRotationPlan, type HandoffPolicy } from '../../../src/wallet/handoff.js';
import { getUtxo, outpointText, registerUtxo, spendUtxo } from '../../../src/wallet/utxos.js';
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

describe("the old set's test spend, proposed", () => {
  const x = { txid: 'c1'.repeat(32), vout: 0 };
  const y = { txid: 'c2'.repeat(32), vout: 0 };
  const earlier = 'e0'.repeat(32);
  const coin = (o: typeof x) => ({ ...o, value: 5_000_000n, scriptPubKey: plan.from.scriptPubKey, height: 20 });
  const PAID_DEPTH = 6;

  /**
   * An old member past the activation height that signed test spend `earlier` of coin x, never at t;
   * with `killedBy`, a confirmed transaction (at `depth`) spent x: that test spend can never confirm.
   */
  async function oldMember(killedBy?: { txid: string; depth: number }) {
    const store = await openTempStore({ after });
    const b = store.batch();
    b.put(cursorKey('bitcoin'), { height: 120, hash: '00'.repeat(32) });
    await registerUtxo(b, { ...coin(x), pegIn: true });
    await registerUtxo(b, { ...coin(y), pegIn: true });
    b.put(signatureMadeKey(earlier), {
      txid: earlier,
      inputs: [outpointText(x)],
      requestIds: [],
      signatures: new Uint8Array(64),
      fee: 300n,
      vsize: 200,
      at: 'then',
      from: 'ab'.repeat(32),
    } satisfies SignatureRecord);
    b.put(handoffTxKey(earlier), 1);
    await b.write({ sync: true });
    if (killedBy) {
      const s = store.batch();
      await spendUtxo(s, x, killedBy.txid);
      s.put(txConfirmationKey(killedBy.txid), { height: 121 - killedBy.depth, blockHash: '11'.repeat(32) });
      await s.write({ sync: true });
    }
    return store;
  }
  const proposed = async (store: Awaited<ReturnType<typeof oldMember>>) => {
    const view = await handoffState(store, policy('from'), await chainView(store, 1), PAID_DEPTH);
    return handoffProposals(store, view, [(await getUtxo(store, y))!], 2);
  };

  it('waits while one it signed may still confirm: a second would move the test amount twice', async () => {
    assert.deepEqual(await proposed(await oldMember()), []);
    // its input spent by a payment not yet at the paid depth: it may still win a reorg
    assert.deepEqual(await proposed(await oldMember({ txid: 'f1'.repeat(32), depth: PAID_DEPTH - 1 })), []);
  });

  // a member that split its own test spends between the honest members (none reaches t), then had
  // a payment of its requests take their inputs, stopped the rotation for good: every member that
  // signed one took it as done, while its validator would sign a new one
  it('proposes a new one once the one it signed can never confirm (its input spent at the paid depth)', async () => {
    const tests = await proposed(await oldMember({ txid: 'f1'.repeat(32), depth: PAID_DEPTH }));
    assert.equal(tests.length, 1);
    assert.deepEqual(
      tests[0]!.tx.inputs.map((i) => outpointText(i)),
      [outpointText(y)],
    );
  });
});
