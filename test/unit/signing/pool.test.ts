import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fromHex, toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { allScriptPathSighashes } from '../../../src/bitcoin/sighash.js';
import { parsePrevouts, parseTx } from '../../../src/bitcoin/tx.js';
import {
  checkFinalizedWitnesses,
  SignatureCollector,
  verifyFinalizedWitnesses,
} from '../../../src/signing/collector.js';
import type { SigningError } from '../../../src/signing/errors.js';
import { SigningPool } from '../../../src/signing/pool.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { faultySigningWorker, slowLoadingWorker } from '../../support/paths.js';
import { federationSpend } from '../../support/spends.js';
import { federationVectors } from '../../support/vectors.js';

const v = federationVectors()[2]!; // 5-of-7
const federation = buildFederation({
  network: 'regtest',
  threshold: v.threshold,
  pubkeys: v.xonlyPubkeys.map((k) => fromHex(k)),
});
const secretKey = fromHex(v.secretKeys[0]!);
const pubkey = schnorrBackend().xonlyPublicKey(secretKey);

describe('signing pool', () => {
  const pools: SigningPool[] = [];
  const pool = (minChunk = 32): SigningPool => {
    const p = new SigningPool(federation, { secretKey, size: 2, minChunk });
    pools.push(p);
    return p;
  };
  after(() => Promise.all(pools.map((p) => p.destroy())));

  it('signs the vector spend exactly as the single-threaded path does (zero aux)', async () => {
    const tx = parseTx(fromHex(v.spend.unsignedTx));
    const prevouts = parsePrevouts(v.spend.prevouts, tx.inputs.length);
    const sigs = await pool().signTransaction(tx, prevouts, 'zero');
    const direct = schnorrBackend().signBatch(secretKey, fromHex(v.spend.sighashes.join('')), 'zero');
    assert.equal(toHex(sigs), toHex(direct));
  });

  it('splits a 300-input spend across workers with identical results, and verifies it', async () => {
    const { tx, prevouts } = federationSpend(federation, 300);
    const split = await pool(16).signTransaction(tx, prevouts, 'zero');
    const whole = schnorrBackend().signBatch(
      secretKey,
      Buffer.concat(allScriptPathSighashes(tx, prevouts, federation.leafHash)),
      'zero',
    );
    assert.equal(toHex(split), toHex(whole));
    const p = pool(16);
    assert.ok((await p.verifyTransaction(tx, prevouts, pubkey, split)).every((b) => b === 1));
    const tampered = Uint8Array.from(split);
    tampered[64 * 250 + 3]! ^= 1;
    const result = await p.verifyTransaction(tx, prevouts, pubkey, tampered);
    assert.deepEqual(
      [...result.keys()].filter((i) => result[i] !== 1),
      [250],
    );
  });

  it('a signature that fails its own verification leaves the pool as sign_fault, reported once', async () => {
    const faults: SigningError[] = [];
    const p = new SigningPool(federation, {
      secretKey,
      size: 1,
      backend: 'js',
      worker: faultySigningWorker,
      onSignFault: (err) => faults.push(err),
    });
    pools.push(p);
    const { tx, prevouts } = federationSpend(federation, 3);
    await assert.rejects(p.signTransaction(tx, prevouts), {
      code: 'sign_fault',
      message: /signature 0 of 3 does not verify under the signing key/,
    });
    assert.deepEqual(
      faults.map((e) => e.code),
      ['sign_fault'],
    );
    // verifying is not signing: the same worker still checks signatures
    const good = await pool().signTransaction(tx, prevouts);
    assert.ok((await p.verifyTransaction(tx, prevouts, pubkey, good)).every((b) => b === 1));
  });

  // Node 20 aborts the whole process (a V8 fatal error) when a worker thread is terminated while it
  // is still loading its module: a member stopped soon after it started, or a test that never used
  // its pool, died instead of closing
  it('is destroyed only once each worker has loaded its module', async (t) => {
    const marks = path.join(await mkdtemp(path.join(tmpdir(), 'pool-loaded-')), 'loaded');
    t.after(() => rm(path.dirname(marks), { recursive: true, force: true }));
    process.env.SLOW_WORKER_LOADED = marks;
    const p = new SigningPool(federation, { size: 2, worker: slowLoadingWorker });
    await p.destroy();
    assert.equal((await readFile(marks, 'utf8').catch(() => '')).split('\n').filter(Boolean).length, 2);
  });

  it("a worker's refusal keeps its code across the thread boundary", async () => {
    const verifyOnly = new SigningPool(federation, { size: 1 });
    pools.push(verifyOnly);
    const { tx, prevouts } = federationSpend(federation, 2);
    await assert.rejects(verifyOnly.signTransaction(tx, prevouts), {
      code: 'invalid_argument',
      message: /started without a member key/,
    });
  });

  it('refuses a transaction without inputs at every entry point: nothing to sign is never "all valid"', async () => {
    const { tx } = federationSpend(federation, 1);
    const none = { ...tx, inputs: [] };
    const p = pool();
    await assert.rejects(p.signTransaction(none, []), { code: 'invalid_transaction' });
    await assert.rejects(p.verifyTransaction(none, [], pubkey, new Uint8Array(0)), { code: 'invalid_transaction' });
    // a finalized payment without inputs carries no signature at all
    assert.throws(() => checkFinalizedWitnesses(none, [], federation), { code: 'invalid_transaction' });
    await assert.rejects(verifyFinalizedWitnesses(none, [], federation, p.verifyTransaction), {
      code: 'invalid_transaction',
    });
    const collector = new SignatureCollector(federation, p.verifyTransaction);
    await assert.rejects(async () => collector.add(collector.open(none, []), { pubkey, signatures: [] }), {
      code: 'invalid_transaction',
    });
  });

  it('refuses a size or a chunk that is not a positive integer, naming it', () => {
    for (const options of [{ size: 0 }, { size: 1.5 }, { minChunk: 0 }, { minChunk: Number.NaN }, { minChunk: -4 }]) {
      const [[name, value]] = Object.entries(options) as [[string, number]];
      assert.throws(() => new SigningPool(federation, { secretKey, ...options }), {
        code: 'invalid_argument',
        message: new RegExp(`${name === 'size' ? 'pool size' : 'minChunk'} must be a positive integer, got ${value}`),
      });
    }
  });

  it('plugs into the collector as its verifier', async () => {
    const { tx, prevouts } = federationSpend(federation, 40);
    const p = pool(8);
    const collector = new SignatureCollector(federation, p.verifyTransaction);
    const id = collector.open(tx, prevouts);
    const sigs = await p.signTransaction(tx, prevouts);
    assert.equal(
      await collector.add(id, { pubkey, signatures: tx.inputs.map((_, i) => sigs.slice(i * 64, i * 64 + 64)) }),
      'added',
    );
    const forged = tx.inputs.map((_, i) => sigs.slice(i * 64, i * 64 + 64));
    await assert.rejects(collector.add(id, { pubkey: fromHex(v.xonlyPubkeys[1]!), signatures: forged }), {
      code: 'invalid_signature',
    });
  });

  it("keeps a transaction's sighashes for its own prevouts only: other amounts are hashed again", async () => {
    const { tx, prevouts } = federationSpend(federation, 40);
    const p = pool(8);
    const sigs = await p.signTransaction(tx, prevouts, 'zero');
    assert.ok((await p.verifyTransaction(tx, prevouts, pubkey, sigs)).every((b) => b === 1));
    // a peer claiming other input amounts for the same transaction object gets no reuse of the signed sighashes
    const inflated = prevouts.map((o) => ({ ...o, value: o.value + 1n }));
    assert.ok((await p.verifyTransaction(tx, inflated, pubkey, sigs)).every((b) => b === 0));
    const again = await p.signTransaction(tx, inflated, 'zero');
    assert.notEqual(toHex(again), toHex(sigs));
    const direct = schnorrBackend().signBatch(
      secretKey,
      Buffer.concat(allScriptPathSighashes(tx, inflated, federation.leafHash)),
      'zero',
    );
    assert.equal(toHex(again), toHex(direct));
  });

  it('refuses work after destroy', async () => {
    const p = pool();
    await p.destroy();
    const { tx, prevouts } = federationSpend(federation, 1);
    await assert.rejects(p.signTransaction(tx, prevouts), { code: 'pool_closed' });
  });
});
