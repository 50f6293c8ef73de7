import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { commitmentScript, matchCommitment } from '../../../src/wallet/commitment.js';
import { buildMerge, buildPayments, type PaymentRequest } from '../../../src/wallet/payment.js';
import { committedInReverse } from '../../support/spends.js';

// Reading a payment's requests from the transaction alone (a member that missed it, an auditor).

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i + 30))),
});
const id = (n: number): string => `0x${n.toString(16).padStart(64, '0')}:${n % 3}`;
const same = witnessScript(0, new Uint8Array(20).fill(5));
/** `count` requests to one address with one amount, ids from `from` on: only the commitment tells them apart. */
const lookAlikes = (count: number, from: number): PaymentRequest[] =>
  Array.from({ length: count }, (_, n) => ({ id: id(from + n), scriptPubKey: same, sats: 2_000_000n }));
const utxos = [1, 2, 3].map((i) => ({
  txid: i.toString(16).padStart(64, '0'),
  vout: 0,
  value: 50_000_000n,
  scriptPubKey: federation.scriptPubKey,
}));

describe('matching a payment to its requests through the commitment', () => {
  // three requests to one address with one amount: only the commitment tells them apart
  const twins: PaymentRequest[] = [4, 5, 6].map((n) => ({ id: id(n), scriptPubKey: same, sats: 2_000_000n }));
  const others: PaymentRequest[] = [7, 8].map((n) => ({
    id: id(n),
    scriptPubKey: witnessScript(0, new Uint8Array(20).fill(n)),
    sats: 3_000_000n + BigInt(n),
  }));

  it('finds the committed requests among look-alikes, with and without change', () => {
    for (const paying of [[twins[0]!, twins[2]!, others[1]!], [twins[1]!], [...twins, ...others]]) {
      const [payment] = buildPayments(paying, utxos, 3, federation, { maxOutputs: 20 }).payments;
      const found = matchCommitment(payment!.tx.outputs, [...twins, ...others]);
      assert.deepEqual(found, payment!.requestIds);
      // without the change output
      const changeless = payment!.tx.outputs.slice(0, payment!.requestIds.length + 1);
      assert.deepEqual(matchCommitment(changeless, [...twins, ...others]), payment!.requestIds);
    }
  });

  it('finds nothing when a request is unknown, an amount differs, or output 0 is no commitment', () => {
    const [payment] = buildPayments([twins[0]!, others[0]!], utxos, 3, federation, { maxOutputs: 20 }).payments;
    const outputs = payment!.tx.outputs;
    assert.equal(
      matchCommitment(outputs, [twins[1]!, twins[2]!, others[0]!]),
      undefined,
      'the twin it pays is not a candidate',
    );
    assert.equal(
      matchCommitment(
        outputs.map((o, i) => (i === 2 ? { ...o, value: o.value - 1n } : o)),
        [...twins, ...others],
      ),
      undefined,
    );
    assert.equal(matchCommitment(outputs.slice(1), [...twins, ...others]), undefined);
  });

  it('finds a payment past a look-alike request with a lower id that it does not pay', () => {
    // anyone can burn a ninth request like eight a payment pays, with an id that sorts first: tried
    // first in every place, it sent the search through 8! wrong assignments, past its cap, and a member
    // that missed the payment could not adopt it from the chain while the decoy stayed queued
    const many: PaymentRequest[] = lookAlikes(9, 100);
    const [payment] = buildPayments(many.slice(1), utxos, 3, federation, { maxOutputs: 20 }).payments;
    assert.deepEqual(matchCommitment(payment!.tx.outputs, many), payment!.requestIds);
    // an honest proposer commits in id order, so that order is tried first: a few tries, not thousands
    assert.deepEqual(matchCommitment(payment!.tx.outputs, many, 20), payment!.requestIds);
  });

  // a member that never saw such a payment kept its requests owed while their inputs left its books,
  // and its reserve audit paused it (settlement-races.test.ts): with one candidate a place, the search
  // took the id-order pass for the only assignment
  it('finds requests committed out of id order, one candidate an output: a merge commits them so', () => {
    const [payment] = buildPayments(others, utxos, 3, federation, { maxOutputs: 20 }).payments;
    const reversed = committedInReverse(payment!);
    assert.deepEqual(matchCommitment(reversed.tx.outputs, [...twins, ...others]), reversed.requestIds);
    const merge = buildMerge([others[1]!, others[0]!], [[utxos[0]!], [utxos[1]!]], 3, federation);
    assert.deepEqual(merge!.requestIds, [others[1]!.id, others[0]!.id], "in the rivals' order");
    assert.deepEqual(matchCommitment(merge!.tx.outputs, [...twins, ...others]), merge!.requestIds);
  });

  it('gives up after a bounded number of tries', () => {
    const many: PaymentRequest[] = lookAlikes(9, 100);
    const [payment] = buildPayments(many.slice(0, 8), utxos, 3, federation, { maxOutputs: 20 }).payments;
    // committed in reverse id order: the id-order guess fails and the search may need up to 9!/1! tries
    const reversedIds = [...payment!.requestIds].reverse();
    const reversed = [{ value: 0n, scriptPubKey: commitmentScript(reversedIds) }, ...payment!.tx.outputs.slice(1)];
    assert.deepEqual(matchCommitment(payment!.tx.outputs, many), payment!.requestIds);
    assert.equal(matchCommitment(reversed, many, 100), undefined);
    assert.deepEqual(
      matchCommitment(reversed, many.slice(0, 8), 50_000),
      reversedIds,
      'found when the search may go on',
    );
  });
});
