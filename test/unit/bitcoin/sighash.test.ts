import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../../../src/bitcoin/bytes.js';
import { precomputeSighash, taprootSigMsg, taprootSighash } from '../../../src/bitcoin/sighash.js';
import { parseTx } from '../../../src/bitcoin/tx.js';
import { readJsonVector } from '../../support/vectors.js';

interface WalletVectors {
  keyPathSpending: {
    given: { rawUnsignedTx: string; utxosSpent: { scriptPubKey: string; amountSats: number }[] };
    intermediary: {
      hashAmounts: string;
      hashOutputs: string;
      hashPrevouts: string;
      hashScriptPubkeys: string;
      hashSequences: string;
    };
    inputSpending: {
      given: { txinIndex: number; hashType: number };
      intermediary: { sigMsg: string; sigHash: string };
    }[];
  }[];
}

describe('BIP341 sighash against bip341_wallet_vectors.json', () => {
  for (const [n, vector] of readJsonVector<WalletVectors>('bip341_wallet_vectors.json').keyPathSpending.entries()) {
    const tx = parseTx(fromHex(vector.given.rawUnsignedTx));
    const prevouts = vector.given.utxosSpent.map((u) => ({
      value: BigInt(u.amountSats),
      scriptPubKey: fromHex(u.scriptPubKey),
    }));
    const pre = precomputeSighash(tx, prevouts);

    it(`vector ${n}: per-transaction hashes`, () => {
      assert.equal(toHex(pre.shaPrevouts), vector.intermediary.hashPrevouts);
      assert.equal(toHex(pre.shaAmounts), vector.intermediary.hashAmounts);
      assert.equal(toHex(pre.shaScriptPubKeys), vector.intermediary.hashScriptPubkeys);
      assert.equal(toHex(pre.shaSequences), vector.intermediary.hashSequences);
      assert.equal(toHex(pre.shaOutputs), vector.intermediary.hashOutputs);
    });

    for (const input of vector.inputSpending) {
      it(`vector ${n}: input ${input.given.txinIndex}, hash type 0x${input.given.hashType.toString(16)}`, () => {
        const { txinIndex, hashType } = input.given;
        assert.equal(toHex(taprootSigMsg(pre, tx, prevouts, txinIndex, hashType, null)), input.intermediary.sigMsg);
        assert.equal(toHex(taprootSighash(pre, tx, prevouts, txinIndex, hashType, null)), input.intermediary.sigHash);
      });
    }
  }

  it('refuses prevouts that do not match the inputs', () => {
    const tx = parseTx(
      fromHex(readJsonVector<WalletVectors>('bip341_wallet_vectors.json').keyPathSpending[0]!.given.rawUnsignedTx),
    );
    assert.throws(() => precomputeSighash(tx, []), /one prevout per input/);
  });
});
