import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseTx, txid as txidOf } from '../../../src/bitcoin/tx.js';
import { recordFinalized } from '../../../src/node/finalize.js';
import { settleLocally, settleLocallyAtStart } from '../../../src/node/settlement.js';
import { finalizedKey, utxoCountKey } from '../../../src/storage/keys.js';
import type { FinalizedRecord } from '../../../src/storage/records.js';
import { buildReplacement } from '../../../src/wallet/payment.js';
import { getUtxo } from '../../../src/wallet/utxos.js';
import { TEST_POLICY } from '../../support/policy.js';
import { federation, finalizedBody, memberStore, REQ, UTXO } from '../../support/coordinator.js';

// Without Bitcoin Core (declared funding) a finalized payment is applied to the local outputs by a
// second write after the one that records it. A member killed between the two kept the record and
// nothing that would ever apply it: its input stayed reserved and its change unknown, so every
// later payment spending that change was refused here as unknown_input.

describe('declared funding: a finalized payment recorded and not applied when the member stopped', () => {
  it('is applied at the next start, once however often the member starts', async (t) => {
    const store = await memberStore(t, 1, 1);
    const payment = buildReplacement([REQ(0)], [UTXO(0)], 2, federation)!;
    const body = finalizedBody(payment, [REQ(0).id], [0, 1, 2]);
    const signed = parseTx(body.tx);
    const txid = txidOf(signed);
    // the kill came after recordFinalized's batch
    assert.ok(await recordFinalized(store, federation, txid, signed, body, 'test', TEST_POLICY));
    const change = { txid, vout: signed.outputs.length - 1 };
    assert.equal(await getUtxo(store, change), undefined);

    await settleLocallyAtStart(store, federation);
    const counts = async () =>
      store.getMany((['unspent', 'reserved', 'spent'] as const).map((state) => utxoCountKey(state, 'sats')));
    const after = await counts();
    assert.deepEqual(
      [(await getUtxo(store, UTXO(0)))?.spentBy, (await getUtxo(store, change))?.state],
      [txid, 'unspent'],
    );
    await settleLocallyAtStart(store, federation);
    await settleLocally(store, federation, (await store.get<FinalizedRecord>(finalizedKey(txid)))!);
    assert.deepEqual(await counts(), after, 'applied once: the counts by state did not move again');
  });
});
