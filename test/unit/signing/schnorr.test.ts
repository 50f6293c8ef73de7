import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../../../src/bitcoin/bytes.js';
import { taggedHash } from '../../../src/bitcoin/hash.js';
import { fallbackBackend } from '../../../src/signing/fallback.js';
import { loadNativeBackend } from '../../../src/signing/native.js';
import { selectBackend, selfChecking, type SchnorrBackend } from '../../../src/signing/schnorr.js';
import { repoRoot, vectorPath } from '../../support/paths.js';
import { federationVectors } from '../../support/vectors.js';

const native = loadNativeBackend();
const backends: SchnorrBackend[] = [fallbackBackend];
if (native.backend) backends.push(native.backend);

interface Row {
  index: string;
  secretKey: string;
  publicKey: string;
  aux: string;
  message: string;
  signature: string;
  valid: boolean;
}

const rows: Row[] = readFileSync(vectorPath('bip340_test_vectors.csv'), 'utf8')
  .trim()
  .split('\n')
  .slice(1)
  .map((line) => {
    const [index, secretKey, publicKey, aux, message, signature, result] = line.split(',');
    return {
      index: index!,
      secretKey: secretKey!,
      publicKey: publicKey!,
      aux: aux!,
      message: message!,
      signature: signature!,
      valid: result === 'TRUE',
    };
  });

for (const backend of backends) {
  describe(`${backend.name} backend against bip340_test_vectors.csv`, () => {
    for (const row of rows) {
      const message = fromHex(row.message);
      it(`row ${row.index}: ${row.valid ? 'valid' : 'invalid'}, ${message.length}-byte message`, () => {
        const pubkey = fromHex(row.publicKey);
        const signature = fromHex(row.signature);
        if (row.secretKey) {
          const sk = fromHex(row.secretKey);
          assert.equal(toHex(backend.xonlyPublicKey(sk)).toUpperCase(), row.publicKey, 'public key derivation');
          assert.equal(
            toHex(backend.sign(sk, message, fromHex(row.aux))).toUpperCase(),
            row.signature,
            'sign reproduces the row',
          );
          // the sighash fast path signs the same bytes when the message is 32 bytes long
          if (message.length === 32)
            assert.equal(
              toHex(backend.signBatch(sk, message, fromHex(row.aux))).toUpperCase(),
              row.signature,
              'signBatch reproduces the row',
            );
        }
        assert.equal(backend.verify(signature, message, pubkey), row.valid, 'verify');
        if (message.length === 32)
          assert.equal(backend.verifyBatch(signature, message, pubkey)[0] === 1, row.valid, 'verifyBatch');
      });
    }
  });
}

describe('backends agree', () => {
  it('on random keys, messages and aux, and on the federation vectors', (t) => {
    const nb = native.backend;
    if (!nb) return t.skip('native addon not built');
    for (let i = 0; i < 50; i++) {
      const sk = randomBytes(32);
      const msgs = randomBytes(32 * 8);
      const aux = randomBytes(32 * 8);
      const a: Uint8Array = nb.signBatch(sk, msgs, aux);
      const b = fallbackBackend.signBatch(sk, msgs, aux);
      assert.deepEqual(toHex(a), toHex(b));
      const pk = nb.xonlyPublicKey(sk);
      const keys = Buffer.concat(Array(8).fill(pk));
      const tampered = Buffer.from(a);
      tampered[64 * 3 + 5]! ^= 1;
      assert.deepEqual([...nb.verifyBatch(tampered, msgs, keys)], [1, 1, 1, 0, 1, 1, 1, 1]);
      assert.deepEqual([...fallbackBackend.verifyBatch(tampered, msgs, keys)], [1, 1, 1, 0, 1, 1, 1, 1]);
    }
    for (const v of federationVectors()) {
      const signed = v.spend.signedTx;
      const msgs = fromHex(v.spend.sighashes.join(''));
      for (const sk of v.secretKeys) {
        const pk = toHex(nb.xonlyPublicKey(fromHex(sk)));
        if (!v.spend.signers.includes(pk)) continue;
        for (const backend of backends) {
          const sigs = toHex(backend.signBatch(fromHex(sk), msgs, 'zero'));
          for (let i = 0; i < v.spend.sighashes.length; i++)
            assert.ok(
              signed.includes(sigs.slice(i * 128, i * 128 + 128)),
              `${backend.name} signature of input ${i} is in signedTx`,
            );
        }
      }
    }
  });

  it('on messages of any length', (t) => {
    const nb = native.backend;
    if (!nb) return t.skip('native addon not built');
    for (const length of [0, 1, 31, 33, 64, 1000]) {
      const sk = randomBytes(32);
      const msg = randomBytes(length);
      const aux = randomBytes(32);
      const sig = nb.sign(sk, msg, aux);
      assert.equal(toHex(fallbackBackend.sign(sk, msg, aux)), toHex(sig), `${length} bytes`);
      const pk = nb.xonlyPublicKey(sk);
      for (const backend of backends) {
        assert.equal(backend.verify(sig, msg, pk), true);
        if (length > 0) assert.equal(backend.verify(sig, msg.subarray(1), pk), false, 'a shorter message fails');
      }
    }
  });

  it('on tagged hashes', () => {
    for (const backend of backends) {
      assert.equal(
        toHex(backend.taggedHash('TapLeaf', fromHex('c0015a'))),
        toHex(taggedHash('TapLeaf', fromHex('c0015a'))),
      );
      assert.equal(backend.taggedHash('BIP0340/challenge', new Uint8Array(0)).length, 32);
    }
  });
});

describe('argument checks (same codes from both backends)', () => {
  const ORDER = 'fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141';
  const good = Buffer.alloc(32, 7);
  const shared = (n: number): Uint8Array => new Uint8Array(new SharedArrayBuffer(n)).fill(7);
  const detached = (): Uint8Array => {
    const b = new Uint8Array(32);
    structuredClone(b.buffer, { transfer: [b.buffer] });
    return b;
  };
  const cases: [string, (b: SchnorrBackend) => unknown, string][] = [
    ['zero secret key', (b) => b.xonlyPublicKey(Buffer.alloc(32)), 'invalid_secret_key'],
    ['secret key = curve order', (b) => b.signBatch(fromHex(ORDER), Buffer.alloc(32), 'zero'), 'invalid_secret_key'],
    ['secret key above the order', (b) => b.xonlyPublicKey(Buffer.alloc(32, 0xff)), 'invalid_secret_key'],
    ['31-byte secret key', (b) => b.xonlyPublicKey(Buffer.alloc(31, 1)), 'invalid_length'],
    ['message batch not a multiple of 32', (b) => b.signBatch(good, Buffer.alloc(33), 'zero'), 'invalid_length'],
    ['empty message batch', (b) => b.signBatch(good, Buffer.alloc(0), 'zero'), 'invalid_length'],
    ['aux for the wrong count', (b) => b.signBatch(good, Buffer.alloc(64), Buffer.alloc(32)), 'invalid_length'],
    [
      'mismatched verify batch',
      (b) => b.verifyBatch(Buffer.alloc(64), Buffer.alloc(64), Buffer.alloc(32)),
      'invalid_length',
    ],
    [
      'string instead of bytes',
      (b) => b.verifyBatch('00' as unknown as Uint8Array, Buffer.alloc(32), Buffer.alloc(32)),
      'invalid_argument',
    ],
    ['null secret key', (b) => b.xonlyPublicKey(null as unknown as Uint8Array), 'invalid_argument'],
    ['detached buffer', (b) => b.xonlyPublicKey(detached()), 'detached_buffer'],
    // memory another thread can write while it is read: a message rewritten between the nonce and
    // the challenge gives a valid signature whose nonce was another message's, and with a fixed aux
    // the two signatures give the key away
    ['shared secret key', (b) => b.xonlyPublicKey(shared(32)), 'shared_buffer'],
    ['shared messages to sign', (b) => b.signBatch(good, shared(32), 'zero'), 'shared_buffer'],
    ['shared aux', (b) => b.signBatch(good, Buffer.alloc(32), shared(32)), 'shared_buffer'],
    ['shared signatures', (b) => b.verifyBatch(shared(64), Buffer.alloc(32), Buffer.alloc(32, 1)), 'shared_buffer'],
    ['shared keys to verify', (b) => b.verifyBatch(Buffer.alloc(64), Buffer.alloc(32), shared(32)), 'shared_buffer'],
    [
      '63-byte signature to verify',
      (b) => b.verify(Buffer.alloc(63), Buffer.alloc(5), Buffer.alloc(32, 1)),
      'invalid_length',
    ],
    [
      '31-byte pubkey to verify',
      (b) => b.verify(Buffer.alloc(64), Buffer.alloc(0), Buffer.alloc(31)),
      'invalid_length',
    ],
    ['aux of 31 bytes to sign', (b) => b.sign(good, Buffer.alloc(3), Buffer.alloc(31)), 'invalid_length'],
    ['message that is not bytes', (b) => b.sign(good, 'hello' as unknown as Uint8Array, 'zero'), 'invalid_argument'],
    ['zero secret key to sign', (b) => b.sign(Buffer.alloc(32), Buffer.alloc(0), 'zero'), 'invalid_secret_key'],
  ];
  for (const backend of backends) {
    for (const [name, fn, code] of cases) {
      it(`${backend.name}: ${name} → ${code}`, () => {
        assert.throws(
          () => fn(backend),
          (err: Error & { code?: string; domain?: string }) => {
            assert.equal(err.domain, 'signing');
            // a detached buffer reads as length 0 where the runtime cannot tell detachment apart
            assert.ok(
              err.code === code || (code === 'detached_buffer' && err.code === 'invalid_length'),
              `${err.code}: ${err.message}`,
            );
            assert.ok(!err.message.includes(ORDER), 'secret key never echoed');
            return true;
          },
        );
      });
    }
  }

  it('a batch whose keys change from item to item gives each item its own verdict', () => {
    // the addon parses a key once for a run of items that carry the same bytes: every change of key,
    // an unparsable one between two runs of the same key included, must still be judged per item
    const [skA, skB] = [randomBytes(32), randomBytes(32)];
    const offCurve = Buffer.alloc(32, 0xff);
    const plan: ('A' | 'B' | 'bad')[] = ['A', 'A', 'bad', 'A', 'B', 'B', 'bad', 'bad', 'A', 'B'];
    const msgs = randomBytes(32 * plan.length);
    for (const backend of backends) {
      const sigA = backend.signBatch(skA, msgs, 'zero');
      const sigB = backend.signBatch(skB, msgs, 'zero');
      const pk = { A: backend.xonlyPublicKey(skA), B: backend.xonlyPublicKey(skB), bad: offCurve };
      const sigs = Buffer.concat(plan.map((k, i) => (k === 'B' ? sigB : sigA).subarray(64 * i, 64 * i + 64)));
      const keys = Buffer.concat(plan.map((k) => pk[k]));
      const expected = plan.map((k) => (k === 'bad' ? 0 : 1));
      assert.deepEqual([...backend.verifyBatch(sigs, msgs, keys)], expected, backend.name);
      // A's signature under B's key (and the reverse) fails, though the previous item's key verified it
      const swapped = Buffer.concat(plan.map((k, i) => (k === 'B' ? sigA : sigB).subarray(64 * i, 64 * i + 64)));
      assert.deepEqual(
        [...backend.verifyBatch(swapped, msgs, keys)],
        plan.map(() => 0),
        backend.name,
      );
    }
  });

  it('an invalid public key or signature is a failed verification, not an error', () => {
    for (const backend of backends) {
      assert.deepEqual([...backend.verifyBatch(Buffer.alloc(64, 0xff), Buffer.alloc(32), Buffer.alloc(32, 0xff))], [0]);
      assert.equal(backend.verify(Buffer.alloc(64, 0xff), Buffer.alloc(7), Buffer.alloc(32, 0xff)), false);
    }
  });
});

describe('backend selection', () => {
  const probe = `import { schnorrBackend } from './dist/src/signing/schnorr.js'; process.stdout.write(schnorrBackend().name);`;
  const run = (env: Record<string, string>): string =>
    execFileSync(process.execPath, ['--input-type=module', '-e', probe], {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });

  it('PEGOUT_SECP256K1=js forces the fallback', () => {
    assert.equal(run({ PEGOUT_SECP256K1: 'js' }), 'js');
  });

  it('picks the native addon by default when it is built', (t) => {
    if (!native.backend) return t.skip('native addon not built');
    assert.equal(run({ PEGOUT_SECP256K1: '' }), 'native');
  });
});

describe('signatures verified before they leave (selfChecking)', () => {
  const secretKey = Uint8Array.from(randomBytes(32));
  const messages = Uint8Array.from(randomBytes(32 * 5));
  /** A backend that signs, then a fault flips one bit of signature `at`. */
  const faulty = (backend: SchnorrBackend, at: number): SchnorrBackend => ({
    ...backend,
    signBatch(key, msgs, aux) {
      const sigs = backend.signBatch(key, msgs, aux);
      sigs[at * 64 + 40]! ^= 1;
      return sigs;
    },
    sign(key, msg, aux) {
      const sig = backend.sign(key, msg, aux);
      sig[at]! ^= 0x80;
      return sig;
    },
  });

  for (const backend of backends) {
    it(`${backend.name}: a faulty signature in a batch or alone is refused, naming it and not the key`, () => {
      const checked = selfChecking(faulty(backend, 3));
      const refused = (err: unknown): boolean => {
        const e = err as { code?: string; message: string };
        assert.equal(e.code, 'sign_fault');
        assert.ok(!e.message.includes(toHex(secretKey)), 'the secret key is not in the error');
        return true;
      };
      assert.throws(
        () => checked.signBatch(secretKey, messages, 'random'),
        (err: Error) => {
          assert.match(err.message, /signature 3 of 5 does not verify under the signing key/);
          return refused(err);
        },
      );
      assert.throws(() => checked.sign(secretKey, Uint8Array.of(1, 2, 3), 'random'), refused);
    });

    it(`${backend.name}: sound signatures pass unchanged`, () => {
      const checked = selfChecking(backend);
      assert.deepEqual(checked.signBatch(secretKey, messages, 'zero'), backend.signBatch(secretKey, messages, 'zero'));
      const message = Uint8Array.of(9, 8, 7);
      assert.deepEqual(checked.sign(secretKey, message, 'zero'), backend.sign(secretKey, message, 'zero'));
    });
  }

  it('the backend every signer uses checks itself', () => {
    for (const name of ['js', ...(native.backend ? ['native'] : [])]) {
      const chosen = selectBackend(name);
      const raw = name === 'js' ? fallbackBackend : native.backend!;
      assert.notEqual(chosen.signBatch, raw.signBatch);
      assert.notEqual(chosen.sign, raw.sign);
    }
  });
});
