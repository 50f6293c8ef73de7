import { secp256k1 } from '@noble/curves/secp256k1.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../../src/bitcoin/bytes.js';
import { descriptorChecksum } from '../../src/bitcoin/descriptor.js';
import { buildFederation, defaultThreshold } from '../../src/bitcoin/federation.js';
import type { Network } from '../../src/bitcoin/network.js';
import { allScriptPathSighashes } from '../../src/bitcoin/sighash.js';
import { parsePrevouts, parseTx, serializeTx, txid } from '../../src/bitcoin/tx.js';
import { signedFederationVsize } from '../../src/bitcoin/weight.js';
import { federationVectors } from '../support/vectors.js';

describe('federation from the vectors', () => {
  for (const v of federationVectors()) {
    describe(`${v.threshold}-of-${v.members}`, () => {
      const [network, address] = Object.entries(v.address)[0]! as [Network, string];
      const fed = buildFederation({ network, threshold: v.threshold, pubkeys: v.xonlyPubkeys.map((k) => fromHex(k)) });

      it('derives every field', () => {
        assert.deepEqual(fed.pubkeys.map(toHex), v.sortedXonlyPubkeys);
        assert.equal(toHex(fed.tapscript), v.tapscript);
        assert.equal(toHex(fed.leafHash), v.leafHash);
        assert.equal(toHex(fed.outputKey), v.outputKey);
        assert.equal(toHex(fed.scriptPubKey), v.scriptPubKey);
        assert.equal(toHex(fed.controlBlock), v.controlBlock);
        assert.equal(fed.address, address);
        assert.equal(fed.descriptor, v.descriptor);
      });

      it('computes the spend sighashes and the signed vsize', () => {
        const tx = parseTx(fromHex(v.spend.unsignedTx));
        assert.equal(txid(tx), v.spend.txid);
        assert.equal(toHex(serializeTx(tx)), v.spend.unsignedTx);
        const prevouts = parsePrevouts(v.spend.prevouts, tx.inputs.length);
        assert.deepEqual(allScriptPathSighashes(tx, prevouts, fed.leafHash).map(toHex), v.spend.sighashes);
        assert.equal(signedFederationVsize(fed, tx), v.spend.vsize);
        // and it is the size the signed transaction really has
        assert.equal(Math.ceil(weightOf(v.spend.signedTx) / 4), v.spend.vsize);
      });
    });
  }
});

/** Weight of a serialized segwit transaction: 3 × stripped size + total size. */
function weightOf(hex: string): number {
  const tx = parseTx(fromHex(hex));
  return serializeTx(tx, false).length * 3 + serializeTx(tx, true).length;
}

describe('federation parameters', () => {
  const keys = Array.from({ length: 100 }, (_, i) => fromHex(buildKey(i + 1)));

  it('builds a 67-of-100 federation whose descriptor checksums', () => {
    const fed = buildFederation({ network: 'regtest', threshold: 67, pubkeys: keys });
    assert.equal(fed.pubkeys.length, 100);
    assert.equal(fed.tapscript.length, 100 * 34 + 2 + 1);
    assert.equal(fed.controlBlock.length, 33);
    const [body, sum] = fed.descriptor.split('#');
    assert.equal(descriptorChecksum(body!), sum);
    assert.match(fed.address, /^bcrt1p/);
    assert.equal(defaultThreshold(100), 67);
  });

  it('has the default threshold floor(2n/3)+1', () => {
    assert.deepEqual([1, 2, 3, 4, 7, 15].map(defaultThreshold), [1, 2, 3, 3, 5, 11]);
  });

  const bad: [string, Parameters<typeof buildFederation>[0], RegExp][] = [
    ['no keys', { network: 'regtest', threshold: 1, pubkeys: [] }, /at least one member/],
    ['threshold 0', { network: 'regtest', threshold: 0, pubkeys: keys.slice(0, 3) }, /threshold must be an integer from 1 to the number of members \(3\), got 0/],
    ['threshold above n', { network: 'regtest', threshold: 4, pubkeys: keys.slice(0, 3) }, /got 4/],
    ['duplicate key', { network: 'regtest', threshold: 2, pubkeys: [keys[0]!, keys[1]!, keys[0]!] }, /appears twice/],
    ['key not on the curve', { network: 'regtest', threshold: 1, pubkeys: [fromHex('ff'.repeat(32))] }, /not the x coordinate/],
    ['short key', { network: 'regtest', threshold: 1, pubkeys: [fromHex('02'.repeat(31))] }, /must be a 32-byte x-only/],
  ];
  for (const [name, params, message] of bad) {
    it(`refuses ${name}`, () => {
      assert.throws(() => buildFederation(params), (err: Error & { code?: string }) => err.code === 'invalid_federation' && message.test(err.message));
    });
  }
});

/** x-only key of the point (7919·i)·G: valid, distinct, deterministic. */
function buildKey(i: number): string {
  return toHex(secp256k1.Point.BASE.multiply(BigInt(i) * 7919n).toBytes(true).slice(1));
}
