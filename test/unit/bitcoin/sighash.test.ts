import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteWriter, fromHex, fromHexLength, reverse, toHex } from '../../../src/bitcoin/bytes.js';
import {
  precomputeSighash,
  scriptPathTemplate,
  SIGHASH_DEFAULT,
  taprootSigMsg,
  taprootSighash,
  templateSighashes,
} from '../../../src/bitcoin/sighash.js';
import { parseTx, serializeTx } from '../../../src/bitcoin/tx.js';
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

    it(`vector ${n}: the script-path template hashes every input as the general SigMsg does`, () => {
      const leafHash = fromHex('11'.repeat(32));
      const template = scriptPathTemplate(pre, tx, leafHash);
      const all = templateSighashes(template, 0, tx.inputs.length);
      tx.inputs.forEach((_, i) => {
        const general = taprootSighash(pre, tx, prevouts, i, SIGHASH_DEFAULT, leafHash);
        assert.equal(toHex(all.subarray(i * 32, i * 32 + 32)), toHex(general), `input ${i}`);
      });
      // a range is the same bytes as its part of the whole
      assert.equal(toHex(templateSighashes(template, 1, 2)), toHex(all.subarray(32, 64)));
    });

    for (const input of vector.inputSpending) {
      it(`vector ${n}: input ${input.given.txinIndex}, hash type 0x${input.given.hashType.toString(16)}`, () => {
        const { txinIndex, hashType } = input.given;
        assert.equal(toHex(taprootSigMsg(pre, tx, prevouts, txinIndex, hashType, null)), input.intermediary.sigMsg);
        assert.equal(toHex(taprootSighash(pre, tx, prevouts, txinIndex, hashType, null)), input.intermediary.sigHash);
      });
    }
  }

  it("refuses a template's input range outside the transaction, and a leaf hash of another length", () => {
    const tx = parseTx(
      fromHex(readJsonVector<WalletVectors>('bip341_wallet_vectors.json').keyPathSpending[0]!.given.rawUnsignedTx),
    );
    const pre = {
      shaPrevouts: new Uint8Array(32),
      shaAmounts: new Uint8Array(32),
      shaScriptPubKeys: new Uint8Array(32),
      shaSequences: new Uint8Array(32),
      shaOutputs: new Uint8Array(32),
    };
    const template = scriptPathTemplate(pre, tx, new Uint8Array(32));
    for (const [from, to] of [
      [-1, 1],
      [2, 1],
      [0, tx.inputs.length + 1],
      [0.5, 1],
    ] as const)
      assert.throws(() => templateSighashes(template, from, to), /input range .* is not within/);
    assert.throws(() => scriptPathTemplate(pre, tx, new Uint8Array(31)), /tapleaf hash must be 32 bytes/);
  });

  it('writes a txid in wire order, refusing what fromHexLength refuses with its errors', () => {
    const txid = 'f0'.repeat(16) + '0123456789abcdef'.repeat(2);
    assert.equal(
      toHex(new ByteWriter().displayHash(txid, 'txid').finish()),
      toHex(reverse(fromHexLength(txid, 32, 'txid'))),
    );
    for (const bad of [
      'ab'.repeat(31),
      'zz'.repeat(32),
      'ab'.repeat(33),
      `${'ab'.repeat(31)}a`,
      42 as unknown as string,
    ]) {
      const expected = (() => {
        try {
          fromHexLength(bad, 32, 'input txid');
        } catch (err) {
          return (err as Error).message;
        }
        return 'no error';
      })();
      assert.throws(() => new ByteWriter().displayHash(bad, 'input txid'), { message: expected });
    }
    // a transaction serializes as before: the vector's bytes back
    const raw = readJsonVector<WalletVectors>('bip341_wallet_vectors.json').keyPathSpending[0]!.given.rawUnsignedTx;
    assert.equal(toHex(serializeTx(parseTx(fromHex(raw)), false)), raw);
  });

  it('refuses prevouts that do not match the inputs', () => {
    const tx = parseTx(
      fromHex(readJsonVector<WalletVectors>('bip341_wallet_vectors.json').keyPathSpending[0]!.given.rawUnsignedTx),
    );
    assert.throws(() => precomputeSighash(tx, []), /one prevout per input/);
  });
});
