import { secp256k1 } from '@noble/curves/secp256k1.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../../../src/bitcoin/bytes.js';
import { descriptorChecksum } from '../../../src/bitcoin/descriptor.js';
import {
  buildFederation,
  defaultThreshold,
  faultTolerance,
  faultToleranceStatement,
  parseFederationFile,
} from '../../../src/bitcoin/federation.js';
import type { Network } from '../../../src/bitcoin/network.js';
import { allScriptPathSighashes } from '../../../src/bitcoin/sighash.js';
import { parsePrevouts, parseTx, serializeTx, txid } from '../../../src/bitcoin/tx.js';
import { signedFederationVsize } from '../../../src/bitcoin/weight.js';
import { federationVectors } from '../../support/vectors.js';

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

  it('states f = 2t − n − 1 for safety and n − t for liveness; the default threshold tolerates the classic floor((n − 1) / 3)', () => {
    const cases: [t: number, n: number, safety: number, liveness: number][] = [
      [2, 3, 0, 1],
      [3, 4, 1, 1],
      [5, 7, 2, 2],
      [11, 15, 6, 4],
      [67, 100, 33, 33],
      [1, 1, 0, 0],
      [2, 4, -1, 2],
      [1, 5, -4, 4],
      [5, 5, 4, 0],
    ];
    for (const [t, n, safety, liveness] of cases)
      assert.deepEqual(faultTolerance(t, n), { safety, liveness }, `${t}-of-${n}`);
    for (let n = 1; n <= 200; n++) {
      const { safety: f } = faultTolerance(defaultThreshold(n), n);
      // at least the classic BFT bound (n ≥ 3f + 1); more where t rounds up (2-of-2: f = 1)
      assert.ok(f >= Math.floor((n - 1) / 3), `default threshold of ${n} members: f = ${f}`);
    }
  });

  it('says in words when the configuration tolerates no malicious member', () => {
    assert.match(
      faultToleranceStatement(5, 7),
      /^5-of-7: up to 2 malicious member\(s\) cannot get a request paid twice \(f = 2t − n − 1 = 2\); payments go on with up to 2 member\(s\) down/,
    );
    assert.match(
      faultToleranceStatement(2, 3),
      /tolerates NO malicious member \(f = 2t − n − 1 = 0\): any two quorums share one member/,
    );
    assert.match(
      faultToleranceStatement(2, 4),
      /tolerates NO malicious member \(f = 2t − n − 1 = -1 < 0\).*a threshold of at least 3 is needed; payments go on with up to 2 member\(s\) down/,
    );
    assert.match(faultToleranceStatement(1, 5), /a threshold of at least 3 is needed/);
  });

  it('refuses fault tolerance of impossible parameters, naming the field and value', () => {
    const refuses = (t: number, n: number, message: RegExp) =>
      assert.throws(
        () => faultTolerance(t, n),
        (err: Error & { code?: string }) => err.code === 'invalid_federation' && message.test(err.message),
      );
    refuses(4, 3, /threshold must be an integer from 1 to the number of members \(3\), got 4/);
    refuses(0, 3, /threshold .* got 0/);
    refuses(1.5, 3, /threshold .* got 1.5/);
    refuses(1, 0, /members must be an integer from 1 to 999, got 0/);
    refuses(1, 1000, /members .* got 1000/);
  });

  const bad: [string, Parameters<typeof buildFederation>[0], RegExp][] = [
    ['no keys', { network: 'regtest', threshold: 1, pubkeys: [] }, /at least one member/],
    [
      'threshold 0',
      { network: 'regtest', threshold: 0, pubkeys: keys.slice(0, 3) },
      /threshold must be an integer from 1 to the number of members \(3\), got 0/,
    ],
    ['threshold above n', { network: 'regtest', threshold: 4, pubkeys: keys.slice(0, 3) }, /got 4/],
    ['duplicate key', { network: 'regtest', threshold: 2, pubkeys: [keys[0]!, keys[1]!, keys[0]!] }, /appears twice/],
    [
      'key not on the curve',
      { network: 'regtest', threshold: 1, pubkeys: [fromHex('ff'.repeat(32))] },
      /not the x coordinate/,
    ],
    [
      'short key',
      { network: 'regtest', threshold: 1, pubkeys: [fromHex('02'.repeat(31))] },
      /must be a 32-byte x-only/,
    ],
  ];
  for (const [name, params, message] of bad) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => buildFederation(params),
        (err: Error & { code?: string }) => err.code === 'invalid_federation' && message.test(err.message),
      );
    });
  }
});

describe('federation file', () => {
  const pubkeys = [1, 2, 3].map(buildKey);

  it('loads a threshold that is a JSON integer', () => {
    const fed = parseFederationFile({ network: 'regtest', threshold: 2, pubkeys }, 'fed.json');
    assert.equal(fed.threshold, 2);
  });

  // a threshold read as something else than the signer meant changes the federation's address
  for (const threshold of ['2', [2], ' 2 ', '0x2', true, null, 2.5, undefined]) {
    it(`refuses the threshold ${JSON.stringify(threshold)}, naming the file, the field and the value`, () => {
      assert.throws(
        () => parseFederationFile({ network: 'regtest', threshold, pubkeys }, 'fed.json'),
        (err: Error & { code?: string }) =>
          err.code === 'invalid_federation' &&
          err.message === `fed.json: threshold must be a JSON integer, got ${JSON.stringify(threshold)}`,
      );
    });
  }

  // two files go into a rotation plan: a fault must say which one
  const offCurve = 'ff'.repeat(32);
  const faulty: [string, Record<string, unknown>, string][] = [
    [
      'a threshold above n',
      { network: 'regtest', threshold: 4, pubkeys },
      'fed.json: threshold must be an integer from 1 to the number of members (3), got 4',
    ],
    [
      'a key off the curve',
      { network: 'regtest', threshold: 1, pubkeys: [offCurve] },
      `fed.json: pubkeys[0] ${offCurve} is not the x coordinate of a point on secp256k1`,
    ],
    [
      'a key twice',
      { network: 'regtest', threshold: 2, pubkeys: [...pubkeys, pubkeys[1]!] },
      `fed.json: member key ${pubkeys[1]} appears twice`,
    ],
    // String() would read ["regtest"] as "regtest"
    [
      'a network that is not a JSON string',
      { network: ['regtest'], threshold: 2, pubkeys },
      'fed.json: network must be a JSON string, got ["regtest"]',
    ],
  ];
  for (const [name, file, message] of faulty) {
    it(`refuses ${name}, naming the file`, () => {
      assert.throws(
        () => parseFederationFile(file, 'fed.json'),
        (err: Error & { code?: string }) => err.code === 'invalid_federation' && err.message === message,
      );
    });
  }
});

/** x-only key of the point (7919·i)·G: valid, distinct, deterministic. */
function buildKey(i: number): string {
  return toHex(
    secp256k1.Point.BASE.multiply(BigInt(i) * 7919n)
      .toBytes(true)
      .slice(1),
  );
}
