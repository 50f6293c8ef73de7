import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { serializeTx, txid as txidOf } from '../../../src/bitcoin/tx.js';
import { BitcoinObserver } from '../../../src/chain/observer.js';
import { recordFinalized } from '../../../src/node/finalize.js';
import { chainView, signedPayments, signProposal, type SigningPolicy } from '../../../src/node/signer.js';
import { SigningPool } from '../../../src/signing/pool.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { cursorKey, HANDOFF_PROVEN_KEY, openPaymentKey, supersededKey } from '../../../src/storage/keys.js';
import type { Store } from '../../../src/storage/store.js';
import {
  buildSweeps,
  buildTestSpend,
  makeRotationPlan,
  type HandoffPolicy,
  type HandoffTx,
} from '../../../src/wallet/handoff.js';
import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import { type PaymentRequest, type SpendableUtxo } from '../../../src/wallet/payment.js';
import { checkProposal, proposalFromPayment } from '../../../src/wallet/proposal.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { stageNewRequest } from '../../../src/evm/request-store.js';
import { testRequest } from '../../support/requests.js';
import { buildReplacement } from '../../../src/wallet/payment.js';
import { getUtxo, listUnspent } from '../../../src/wallet/utxos.js';
import { TEST_POLICY } from '../../support/policy.js';
import { rpcTransaction, ScriptedChain } from '../../support/scripted-chain.js';
import { testSettlement } from '../../support/settlement.js';
import { openTempStore } from '../../support/tempdir.js';

// Settlement of finalized handoffs (sweeps after the proof) that replace one another. A loser's
// inputs that it had taken over from a handoff that can still confirm went back to the wallet, where
// honest proposers built conflicting spends of them: standingPayments judged only payments of the
// loser's requests, and a handoff has none (found by review).

const keys = [1, 2, 3, 4].map((i) => Buffer.alloc(32, i));
const pub = (k: Buffer) => schnorrBackend().xonlyPublicKey(k);
// the old set: 3 of 4, f = 2t - n - 1 = 1 (member 4, the proposer here, is the malicious one)
const from = buildFederation({ network: 'regtest', threshold: 3, pubkeys: keys.map(pub) });
const to = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [5, 6, 7].map((i) => pub(Buffer.alloc(32, i))),
});
const plan = makeRotationPlan(from, to, { activationHeight: 50, evmBoundary: 100 }, 'sweeps');
const handoff: HandoffPolicy = { plan, side: 'from', testAmount: 100_000n, maxFee: 100_000n };
const pool = new SigningPool(from, { secretKey: keys[0]!, size: 1 });
after(() => pool.destroy());
const PROPOSER = toHex(from.pubkeys[3]!);
const PAID = 3;
const policy: SigningPolicy = { ...TEST_POLICY, paidDepth: PAID, handoff };
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

async function setup(t: TestContext) {
  const store = await openTempStore(t, from.descriptor);
  const chain = new ScriptedChain(100);
  const script = toHex(from.scriptPubKey);
  chain.mine([
    {
      txid: hex32(7),
      hash: hex32(7),
      vin: [{ coinbase: '00', sequence: 0 }],
      vout: Array.from({ length: 4 }, (_, n) => ({ n, value: 0.5, scriptPubKey: { hex: script } })),
    },
  ]);
  chain.mine([]);
  const observer = new BitcoinObserver({ store, chain, federationScript: from.scriptPubKey, startHeight: 100 });
  await observer.sync();
  // past the proof, every request below the boundary read and none owed: sweeps may go
  await store
    .batch()
    .put(HANDOFF_PROVEN_KEY, { txid: hex32(1), vout: 1, height: 101, at: 'then' })
    .put(cursorKey('evm'), { height: 99, hash: '0x00' })
    .write({ sync: true });
  const [a, b, c, d] = Array.from({ length: 4 }, (_, vout): SpendableUtxo => ({
    txid: hex32(7),
    vout,
    value: 50_000_000n,
    scriptPubKey: from.scriptPubKey,
  }));
  const settlement = testSettlement(store, from, observer, { paidConfirmations: PAID, handoff });
  return { store, chain, observer, settlement, coins: { a: a!, b: b!, c: c!, d: d! } };
}

/** A request of 0.3 BTC, ingested. */
async function addRequest(store: Store): Promise<PaymentRequest> {
  const batch = store.batch();
  const scriptPubKey = witnessScript(0, new Uint8Array(20).fill(3));
  const { id } = stageNewRequest(
    batch,
    testRequest({ txHash: `0x${hex32(9)}`, sats: 30_000_000n, scriptPubKey }),
    'then',
  );
  await batch.write({ sync: true });
  return { id, scriptPubKey, sats: 30_000_000n };
}

const sweep = (coins: SpendableUtxo[], rate: number): HandoffTx => {
  const { sweeps } = buildSweeps(coins, rate, plan, from, handoff.maxFee);
  assert.equal(sweeps.length, 1);
  return sweeps[0]!;
};
const sign = (store: Store, h: Pick<HandoffTx, 'tx' | 'prevouts'> & { readonly requestIds?: readonly string[] }) =>
  signProposal(store, pool, from, checkProposal(proposalFromPayment(h, 1, PROPOSER)), policy, PROPOSER);
const finalize = (store: Store, h: Pick<HandoffTx, 'tx' | 'prevouts'> & { readonly requestIds?: readonly string[] }) =>
  recordFinalized(
    store,
    from,
    txidOf(h.tx),
    h.tx,
    { tx: serializeTx(h.tx), prevouts: h.prevouts, requestIds: [...(h.requestIds ?? [])] },
    'test',
    { limits: DEFAULT_LIMITS, paidDepth: PAID },
  );

describe('finalized sweeps that replace one another', () => {
  it('an input a losing sweep took over from a sweep that can still confirm stays held by that one', async (t) => {
    const { store, chain, observer, settlement, coins } = await setup(t);
    const { a, b, c, d } = coins;
    // H1 sweeps a and b; H2 replaces it (b, c) at a BIP125 fee step; H3 replaces H2 (c, d) at the next.
    // Every honest member signs each (the malicious proposer finalizes each with t - 1 honest ones)
    const H1 = sweep([a, b], 2);
    const H2 = sweep([b, c], 4);
    const H3 = sweep([c, d], 6);
    for (const h of [H1, H2, H3]) {
      const signed = await sign(store, h);
      assert.equal(signed.ok, true, JSON.stringify(signed));
      await settlement.onFinalized((await finalize(store, h))!);
    }
    // H3 confirms at the paid depth: H2 lost (it spends c). H1 spends a and b, neither spent: once H2
    // is out of the mempools, H1 (still followed and rebroadcast here) can confirm
    chain.mine([rpcTransaction(H3.tx)]);
    for (let k = 1; k < PAID; k++) chain.mine([]);
    await settlement.tick();
    await settlement.tick();
    const h1 = txidOf(H1.tx);
    assert.equal(await observer.confirmations(h1), 0);
    // still followed (and rebroadcast) here: none of its inputs is spent
    assert.notEqual(await store.get(openPaymentKey(h1)), undefined);
    assert.equal((await getUtxo(store, a))?.state, 'reserved');
    assert.equal((await getUtxo(store, a))?.reservedBy, h1);
    const unspent = (await listUnspent(store)).map((u) => `${u.txid}:${u.vout}`);
    // b is back in the wallet while H1, finalized and able to confirm, spends it
    const bRecord = await getUtxo(store, b);
    assert.equal(
      bRecord?.reservedBy,
      h1,
      `b is ${bRecord?.state} (reservedBy ${bRecord?.reservedBy}), in the wallet: ${unspent.includes(`${b.txid}:${b.vout}`)}`,
    );
  });

  it('an input a losing payment took over from a finalized sweep that can still confirm stays held by the sweep', async (t) => {
    const { store, chain, observer, settlement, coins } = await setup(t);
    const { a, b, d } = coins;
    const r = await addRequest(store);
    // Q pays r from d (in flight, so nothing is owed and sweeps go); H1 sweeps a and b. The malicious
    // proposer then has P, a replacement of Q (it spends d), also take b from H1 (a handoff has no
    // request to strand: input_held lets it), and P2 replace P from d alone. All finalized.
    const Q = buildReplacement([r], [d], 2, from)!;
    const H1 = sweep([a, b], 2);
    const P = buildReplacement([r], [b, d], 3, from)!;
    const P2 = buildReplacement([r], [d], 6, from)!;
    for (const h of [Q, H1, P, P2]) {
      const signed = await sign(store, h);
      assert.equal(signed.ok, true, JSON.stringify(signed));
      await settlement.onFinalized((await finalize(store, h))!);
    }
    chain.mine([rpcTransaction(P2.tx)]);
    for (let k = 1; k < PAID; k++) chain.mine([]);
    await settlement.tick();
    await settlement.tick();
    const h1 = txidOf(H1.tx);
    assert.equal(await observer.confirmations(h1), 0);
    // still followed (and rebroadcast) here: none of its inputs is spent
    assert.notEqual(await store.get(openPaymentKey(h1)), undefined);
    assert.equal((await getUtxo(store, a))?.reservedBy, h1);
    const bRecord = await getUtxo(store, b);
    assert.equal(bRecord?.reservedBy, h1, `b is ${bRecord?.state} (reservedBy ${bRecord?.reservedBy})`);
  });
});

// A test spend this member knows only by its finalized record (the others finalized it; this member
// did not sign it) holds its input a. A payment of a request may take a over (a handoff has no request
// to strand): the malicious proposer has this member sign P, paying e from a, and keeps the set to
// itself. The others pay e with A from b, which supersedes P. What P took a from was found neither in
// its conflicts (P is not finalized here), nor among the proposals stored here (T was never proposed
// here), nor among the payments of its requests (a handoff pays none): a went to the wallet while T,
// finalized and unspent-from, could still confirm. P records what it took over (SignatureRecord.replaced).
describe('a test spend known here only by its finalized record, whose input a superseded payment took', () => {
  it('keeps its input: it is not given to the wallet while the test spend can still confirm', async (t) => {
    const { store, settlement, coins } = await setup(t);
    const { a, b } = coins;
    const e = await addRequest(store);
    const T = buildTestSpend([a], handoff.testAmount, 2, plan)!;
    const tid = txidOf(T.tx);
    await settlement.onFinalized((await finalize(store, T))!);
    assert.equal((await getUtxo(store, a))?.reservedBy, tid, 'T holds a');
    const P = buildReplacement([e], [a], 2, from)!;
    assert.equal((await sign(store, P)).ok, true);
    assert.equal((await getUtxo(store, a))?.reservedBy, txidOf(P.tx), 'P took a over from T');
    await settlement.onFinalized((await finalize(store, buildReplacement([e], [b], 2, from)!))!);
    assert.notEqual(await store.get(supersededKey(txidOf(P.tx))), undefined, 'A superseded P');
    await settlement.tick();
    const [tp] = await signedPayments(store, [tid], await chainView(store, PAID), PAID);
    assert.deepEqual(
      [tp?.finalized, tp?.dead, (await store.get(openPaymentKey(tid))) !== undefined],
      [true, false, true],
      'T is live and followed',
    );
    const u = await getUtxo(store, a);
    assert.deepEqual(
      { state: u?.state, reservedBy: u?.reservedBy },
      { state: 'reserved', reservedBy: tid },
      'a is T’s while T can confirm, not the wallet’s (where any proposal of other requests takes it)',
    );
  });
});
