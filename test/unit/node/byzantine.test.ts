import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { parseTx, serializeTx, txid as txidOf, type Transaction } from '../../../src/bitcoin/tx.js';
import { checkFinalizedCommitment, parseFinalizedBody } from '../../../src/node/messages.js';
import { recordFinalized } from '../../../src/node/finalize.js';
import { settleLocally } from '../../../src/node/settlement.js';
import { parseRequestId } from '../../../src/evm/request-id.js';
import { getRequest, stageNewRequest } from '../../../src/evm/request-store.js';
import { signProposal, type SignOutcome } from '../../../src/node/signer.js';
import { SigningPool } from '../../../src/signing/pool.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { cursorKey, openPaymentKey, txConfirmationKey } from '../../../src/storage/keys.js';
import { StoreBatch, type Store } from '../../../src/storage/store.js';
import {
  buildPayments,
  buildReplacement,
  paymentOutputs,
  requirePayments,
  unsignedSpend,
  type PaymentRequest,
  type SpendableUtxo,
} from '../../../src/wallet/payment.js';
import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import { checkProposal, proposalFromPayment, type CheckedProposal } from '../../../src/wallet/proposal.js';
import { getUtxo, registerUtxo, spendUtxo } from '../../../src/wallet/utxos.js';
import { LIVE_PAYMENTS_PER_SENDER } from '../../../src/wallet/validate.js';
import { counted } from '../../support/counted-store.js';
import { TEST_POLICY } from '../../support/policy.js';
import { openTempStore } from '../../support/tempdir.js';
import { testRequest } from '../../support/requests.js';
import type { FinalizedBody, FinalizedRecord, Proposal } from '../../../src/storage/records.js';

// One malicious member against an honest member's signer (real RocksDB store, real pool): each
// attack of issue 11 is refused with a typed reason, and the legitimate payment beside it is signed.

const secretKeys = [1, 2, 3, 4].map((i) => Buffer.alloc(32, i));
const federation = buildFederation({
  network: 'regtest',
  threshold: 3,
  pubkeys: secretKeys.map((k) => schnorrBackend().xonlyPublicKey(k)),
});
const honest = new SigningPool(federation, { secretKey: secretKeys[0]!, size: 1 });
after(() => honest.destroy());
const attacker = toHex(federation.pubkeys[3]!);
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

// two requests of the same amount to the same address: the labelling attack's raw material
const address = witnessScript(0, new Uint8Array(20).fill(7));
const R: PaymentRequest[] = [1, 2].map((i) => ({ id: `0x${hex32(i)}:0`, scriptPubKey: address, sats: 3_000_000n }));
const U: SpendableUtxo[] = [1, 2, 3, 4].map((i) => ({
  txid: hex32(100 + i),
  vout: 0,
  value: 10_000_000n,
  scriptPubKey: federation.scriptPubKey,
}));

/** A third request, of the same amount to the same address. */
const OTHER: PaymentRequest = { id: `0x${hex32(3)}:0`, scriptPubKey: address, sats: 3_000_000n };

async function member(t: Parameters<typeof openTempStore>[0], requests = R): Promise<Store> {
  const store = await openTempStore(t);
  const batch = store.batch();
  for (const r of requests) {
    stageNewRequest(
      batch,
      testRequest({ ...parseRequestId(r.id), blockNumber: 5, sats: r.sats, scriptPubKey: r.scriptPubKey }),
      'then',
    );
  }
  for (const u of U) await registerUtxo(batch, { ...u, height: 1, pegIn: true });
  await batch.write({ sync: true });
  return store;
}

/** What an honest proposer would build for `requests` from `inputs`. */
function built(requests: PaymentRequest[], inputs: SpendableUtxo[], rate = 2): Proposal {
  const [payment] = requirePayments(
    buildPayments(requests, inputs, rate, federation, { maxOutputs: 10 }),
    requests.length,
  );
  return proposalFromPayment(payment!, 1, attacker);
}

/** `proposal` with its transaction edited by the attacker. */
function edited(proposal: Proposal, edit: (tx: Transaction) => Transaction): Proposal {
  return { ...proposal, unsignedTx: serializeTx(edit(parseTx(proposal.unsignedTx))) };
}

/** The attacker's proposal as the edge hands it on; non-canonical ids are refused there too (see below). */
function raw(p: Proposal): CheckedProposal {
  const tx = parseTx(p.unsignedTx);
  return { proposal: p, tx, txid: txidOf(tx) };
}

/** `p` signed by the honest member, as sent to it by `from` (the attacker unless told). */
const sign = (
  store: Store,
  p: Proposal | CheckedProposal,
  policy = TEST_POLICY,
  from = attacker,
): Promise<SignOutcome> => signProposal(store, honest, federation, 'tx' in p ? p : checkProposal(p), policy, from);
const reason = (o: SignOutcome): string => (o.ok ? 'signed' : o.reason);

/** The change output of `p`'s transaction. */
function changeOf(p: Proposal): SpendableUtxo {
  const tx = parseTx(p.unsignedTx);
  const vout = tx.outputs.length - 1;
  return { txid: txidOf(tx), vout, value: tx.outputs[vout]!.value, scriptPubKey: tx.outputs[vout]!.scriptPubKey };
}

/** `p`, at t elsewhere, recorded here as finalized. */
async function recordedHere(store: Store, p: Proposal): Promise<FinalizedRecord> {
  const tx = parseTx(p.unsignedTx);
  const body = { tx: p.unsignedTx, prevouts: p.prevouts, requestIds: p.requestIds };
  const rules = { limits: DEFAULT_LIMITS, paidDepth: TEST_POLICY.paidDepth };
  return (await recordFinalized(store, federation, txidOf(tx), tx, body, 'test', rules))!;
}

/** `p`, at t elsewhere, finalized here and applied without a chain (declared funding). */
async function finalizedHere(store: Store, p: Proposal): Promise<void> {
  await settleLocally(store, federation, await recordedHere(store, p));
}

describe('a malicious member against an honest signer (issue 11)', () => {
  it('1: one request paid several times in one transaction under ids that name it differently', async (t) => {
    const store = await member(t);
    const [id] = [R[0]!.id];
    const aliases = [id, id.replace(/:0$/, ':00'), id.replace(/:0$/, ':0000000000')];
    const tripled = built(
      [R[0]!, { ...R[0]!, id: `0x${hex32(9)}:0` }, { ...R[0]!, id: `0x${hex32(10)}:0` }],
      U.slice(0, 2),
    );
    const attack = { ...tripled, requestIds: aliases };
    assert.throws(() => checkProposal(attack), { code: 'invalid_proposal' }, 'the edge refuses non-canonical ids');
    assert.equal(reason(await sign(store, raw(attack))), 'malformed_request_id');
    assert.equal(reason(await sign(store, raw({ ...tripled, requestIds: [id, id, id] }))), 'duplicate_request');
    assert.equal(reason(await sign(store, built([R[0]!], U.slice(0, 1)))), 'signed', 'the legitimate payment');
  });

  it('2: a labelling the transaction does not commit to, and a second payment of a request from other inputs', async (t) => {
    const store = await member(t);
    const a = built([R[0]!], [U[0]!]);
    assert.equal(
      reason(await sign(store, { ...a, requestIds: [R[1]!.id] })),
      'bad_commitment',
      'the tx paying R1 labelled as paying R2',
    );
    assert.equal(reason(await sign(store, a)), 'signed');
    assert.equal(
      reason(await sign(store, built([R[0]!], [U[1]!]))),
      'double_payment',
      'R1 again, from disjoint inputs',
    );
    assert.equal(reason(await sign(store, built([R[1]!], [U[2]!]))), 'signed', 'R2, once');
    assert.equal(reason(await sign(store, built([R[1]!], [U[3]!]))), 'double_payment');
  });

  it('3: an underpaid user (the rest to change)', async (t) => {
    const store = await member(t);
    const fair = built([R[0]!], [U[0]!]);
    const attack = edited(fair, (tx) => ({
      ...tx,
      outputs: tx.outputs.map((o, i) =>
        i === 1 ? { ...o, value: 1_000n } : i === 2 ? { ...o, value: o.value + tx.outputs[1]!.value - 1_000n } : o,
      ),
    }));
    // every output is checked against the one rule: the sats kept back show up as change above Σ inputs − Σ sats
    assert.equal(reason(await sign(store, attack)), 'bad_change');
    const toMiners = edited(fair, (tx) => ({
      ...tx,
      outputs: tx.outputs.map((o, i) => (i === 1 ? { ...o, value: 1_000n } : o)),
    }));
    assert.equal(reason(await sign(store, toMiners)), 'fee_rate_too_high', 'or as a fee far above the market');
    assert.equal(reason(await sign(store, fair)), 'signed');
  });

  it("4: fees drained from the federation's change, or charged to users far above the market", async (t) => {
    const store = await member(t);
    const fair = built([R[0]!], [U[0]!]);
    const drain = edited(fair, (tx) => ({
      ...tx,
      outputs: tx.outputs.map((o, i) => (i === 2 ? { ...o, value: o.value - 205_089n } : o)),
    }));
    assert.equal(reason(await sign(store, drain)), 'bad_change');
    assert.equal(
      reason(await sign(store, built([R[0]!], [U[0]!], 400))),
      'fee_rate_too_high',
      '200x the market, under the absolute cap',
    );
    assert.equal(reason(await sign(store, fair)), 'signed');
  });

  it('5: an input held by a live payment taken by a payment of other requests (it would strand them)', async (t) => {
    const store = await member(t);
    const a = built([R[0]!], [U[0]!]);
    assert.equal(reason(await sign(store, a)), 'signed');
    assert.equal(reason(await sign(store, built([R[1]!], [U[0]!]))), 'input_held');
    assert.equal(
      reason(await sign(store, built([R[0]!, R[1]!], [U[0]!]))),
      'signed',
      'a merge that pays every request of the holder may take it',
    );
  });

  it('5b: an input held for requests a finalized payment pays is held for nothing: a payment of other requests may take it', async (t) => {
    const store = await member(t, [...R, OTHER]);
    // D, signed here, pays R1 from U1; elsewhere F (R2 from U2) and C (R1 and R2 from U2) both
    // reached t. They conflict, so C supersedes nothing here (on a chain F may be the one to confirm)
    const d = built([R[0]!], [U[0]!]);
    assert.equal(reason(await sign(store, d)), 'signed');
    for (const p of [built([R[1]!], [U[1]!]), built([R[0]!, R[1]!], [U[1]!])]) await finalizedHere(store, p);
    assert.equal((await getRequest(store, R[0]!.id))?.status, 'signed');
    assert.equal((await getUtxo(store, U[0]!))?.reservedBy, txidOf(parseTx(d.unsignedTx)), 'D still holds U1');
    // the coordinator forgets D (it pays nothing still payable) and never merges it: refusing a
    // payment of other requests from U1 for D's sake stalled them for good (a hostile member had
    // the other members sign such a payment, a rival none of their merges could leave U1 out of)
    assert.equal(reason(await sign(store, built([OTHER], [U[0]!]))), 'signed');
  });

  it('5d: an input a finalized payment spends stays held for its requests after a replacement of it signed here took it over', async (t) => {
    const store = await member(t, [...R, OTHER]);
    await store
      .batch()
      .put(cursorKey('bitcoin'), { height: 5, hash: hex32(5) })
      .write({ sync: true });
    // C (R1 from U1) is finalized, in the mempool; a malicious member has this member sign D, C's
    // fee bump, and withholds it: D now holds U1, and R1 is signed (C pays it)
    const c = built([R[0]!], [U[0]!]);
    assert.equal(reason(await sign(store, c)), 'signed');
    await recordedHere(store, c);
    assert.equal(reason(await sign(store, built([OTHER], [U[0]!]))), 'input_held', 'C holds U1 for R1');
    assert.equal(reason(await sign(store, built([R[0]!], [U[0]!], 4))), 'signed');
    // a payment of another request from U1, at a rate that evicts C from the mempool, left R1 unpaid
    // until it was at the paid depth, round after round
    assert.equal(reason(await sign(store, built([OTHER], [U[0]!], 6))), 'input_held');
  });

  it('5c: without a chain, a payment signed here and spent by a conflicting finalized one may still reach t: its other requests are not paid again', async (t) => {
    const store = await member(t);
    // a hostile member had A (R1 and R2 from U1) signed by members that had signed E (R1 from U1),
    // which A replaces, and withheld its own set on A until E was finalized and applied here
    const a = built([R[0]!, R[1]!], [U[0]!]);
    assert.equal(reason(await sign(store, a)), 'signed');
    await finalizedHere(store, built([R[0]!], [U[0]!]));
    assert.equal((await getRequest(store, R[1]!.id))?.status, 'batched', 'A can still be finalized');
    assert.equal(
      reason(await sign(store, built([R[1]!], [U[1]!]))),
      'double_payment',
      'R2 from other inputs: with A finalized after it, R2 was paid twice',
    );
  });

  it('5e: a payment that depends on the finalized one that spent its input conflicts with that payment: its other requests are paid from there', async (t) => {
    const store = await member(t, [...R, OTHER]);
    const a = built([R[0]!, R[1]!], [U[0]!]);
    assert.equal(reason(await sign(store, a)), 'signed');
    const e = built([R[0]!], [U[0]!]);
    await finalizedHere(store, e);
    // F pays nothing of A's and spends none of its inputs: its change does not conflict with A
    const f = built([OTHER], [U[2]!]);
    await finalizedHere(store, f);
    assert.equal(reason(await sign(store, built([R[1]!], [changeOf(f)]))), 'double_payment');
    // G spends E's change (and replaces F); B, from G's change, needs G, so E, which A excludes:
    // they never both confirm (E's own change went to G, as later payments soon spend change)
    const g = proposalFromPayment(buildReplacement([OTHER], [changeOf(e), changeOf(f)], 2, federation)!, 1, attacker);
    await finalizedHere(store, g);
    assert.equal(reason(await sign(store, built([R[1]!], [changeOf(g)]))), 'signed');
  });

  it('5f: a payment that conflicts with a signed one only through a finalized one does not supersede it', async (t) => {
    const store = await member(t, [...R, OTHER]);
    // F (OTHER from U1) reached t; A (R1, R2 and OTHER from U1) replaces it, signed by members that
    // had signed F, and may still reach t (a hostile member holds its set)
    assert.equal(reason(await sign(store, built([R[0]!, R[1]!, OTHER], [U[0]!]))), 'signed');
    const f = built([OTHER], [U[0]!]);
    await finalizedHere(store, f);
    // B (R2 from F's change) conflicts with A through F, and is finalized: it pays R2 and spends
    // none of A's inputs, yet A is not dead, and R1 must not be queued again
    const b = built([R[1]!], [changeOf(f)]);
    assert.equal(reason(await sign(store, b)), 'signed');
    await finalizedHere(store, b);
    assert.equal((await getRequest(store, R[0]!.id))?.status, 'batched');
    assert.equal(reason(await sign(store, built([R[0]!], [U[2]!]))), 'double_payment', 'should A confirm, A and this');
  });

  it('6: requests paid again when their payment lost to a conflicting one at only one confirmation', async (t) => {
    const store = await member(t);
    const a = built([R[0]!], [U[0]!]);
    assert.equal(reason(await sign(store, a)), 'signed');
    // another transaction Z spends A's input and is mined at height 10
    const z = hex32(555);
    const batch = store.batch();
    await spendUtxo(batch, U[0]!, z);
    batch.put(txConfirmationKey(z), { height: 10, blockHash: hex32(10) });
    batch.put(cursorKey('bitcoin'), { height: 10, hash: hex32(10) });
    await batch.write({ sync: true });
    const deep = { ...TEST_POLICY, paidDepth: 3 };
    assert.equal(
      reason(await sign(store, built([R[0]!], [U[1]!]), deep)),
      'double_payment',
      'one confirmation: a reorg could still confirm A',
    );
    await store
      .batch()
      .put(cursorKey('bitcoin'), { height: 12, hash: hex32(12) })
      .write({ sync: true });
    assert.equal(reason(await sign(store, built([R[0]!], [U[1]!]), deep)), 'signed', 'Z at the paid depth: A is dead');
  });

  it('a payment that can never reach t (another payment of one of its requests, with none of its inputs, was finalized) frees its inputs and other requests at once', async (t) => {
    const store = await member(t);
    const x = built([R[0]!, R[1]!], [U[0]!]);
    assert.equal(reason(await sign(store, x)), 'signed');
    const xid = txidOf(parseTx(x.unsignedTx));
    assert.equal(await store.get(openPaymentKey(xid)), 1, 'signed: a restart takes it up');
    // the federation finalized F, paying R1 alone from another input
    const f = built([R[0]!], [U[1]!]);
    const record = await recordFinalized(
      store,
      federation,
      txidOf(parseTx(f.unsignedTx)),
      parseTx(f.unsignedTx),
      { tx: f.unsignedTx, prevouts: f.prevouts, requestIds: f.requestIds },
      'test',
      { limits: DEFAULT_LIMITS, paidDepth: TEST_POLICY.paidDepth },
    );
    assert.deepEqual(record?.superseded, [xid]);
    assert.equal(await store.get(openPaymentKey(xid)), undefined, 'superseded: nothing for a restart to take up');
    assert.equal(await store.get(openPaymentKey(record!.txid)), 1, 'F is followed until it is settled');
    assert.equal((await getUtxo(store, U[0]!))?.state, 'unspent', "X's input is back in the wallet");
    assert.equal((await getRequest(store, R[1]!.id))?.status, 'accepted', "X's other request waits for a new payment");
    assert.equal(
      reason(await sign(store, built([R[1]!], [U[2]!]))),
      'signed',
      'R2 is paid from other inputs: X can never finalize',
    );
    assert.equal(reason(await sign(store, built([R[0]!], [U[3]!]))), 'double_payment', 'R1 is still paid by F');
  });

  it('7: a finalized payment relabelled to name requests it does not pay', () => {
    const a = built([R[0]!], [U[0]!]);
    const body: FinalizedBody = { tx: a.unsignedTx, prevouts: a.prevouts, requestIds: a.requestIds };
    const signed = parseFinalizedBody(body);
    assert.equal(txidOf(signed), txidOf(parseTx(a.unsignedTx)));
    checkFinalizedCommitment(signed, body);
    for (const requestIds of [
      [R[1]!.id],
      [`0x${hex32(77)}:0`],
      [R[0]!.id, R[1]!.id],
      [R[0]!.id.replace(/:0$/, ':00')],
    ]) {
      assert.throws(
        () => checkFinalizedCommitment(signed, { ...body, requestIds }),
        /commit/,
        `refused: ${requestIds.join(',')}`,
      );
    }
  });

  it('7b: a finalized payment heavier than Core relays is refused as it is parsed, before any signature is checked', () => {
    // no honest proposer builds one (payment.ts caps the signed weight), and Core would never relay
    // it: checking its signatures would cost every member up to t verifications an input for nothing
    const a = built([R[0]!], [U[0]!]);
    const tx = parseTx(a.unsignedTx);
    const body = (edit: (tx: Transaction) => Transaction): FinalizedBody => ({
      tx: serializeTx(edit(tx)),
      prevouts: a.prevouts,
      requestIds: a.requestIds,
    });
    const padding = { value: 1_000n, scriptPubKey: address };
    const wide = body((t) => ({ ...t, outputs: [...t.outputs, ...Array.from({ length: 4_000 }, () => padding)] }));
    assert.throws(() => parseFinalizedBody(wide), /weighs \d+ WU, over the 400000 WU that Core relays/);
    const witness = [new Uint8Array(400_001)];
    const heavy = body((t) => ({ ...t, inputs: t.inputs.map((i) => ({ ...i, witness })) }));
    assert.throws(() => parseFinalizedBody(heavy), /over the 400000 WU/);
    parseFinalizedBody(body((t) => t));
  });

  it('8: outputs that are not deep enough, and extra fields a peer adds to a proposal', async (t) => {
    const store = await member(t);
    await store
      .batch()
      .put(cursorKey('bitcoin'), { height: 3, hash: hex32(3) })
      .write({ sync: true });
    const shallow = { ...TEST_POLICY, spendDepth: 6 };
    assert.equal(
      reason(await sign(store, built([R[0]!], [U[0]!]), shallow)),
      'input_unconfirmed',
      'the outputs have 3 confirmations of 6',
    );
    const padded = { ...built([R[0]!], [U[0]!]), note: 'x'.repeat(10_000) };
    assert.equal(Object.hasOwn(checkProposal(padded).proposal, 'note'), false);
    assert.equal(reason(await sign(store, padded)), 'signed');
  });

  it('10: a proposal of many requests that one payment pays already reads that payment once, not once a request', async (t) => {
    // a peer's replacement (or any proposal) naming the 600 requests of a payment this member signed:
    // the payment's records, its whole transaction and request list, were read and decoded again for
    // each of them, 600 times 600 ids for one proposal
    const store = await member(t);
    const many: PaymentRequest[] = Array.from({ length: 600 }, (_, i) => ({
      id: `0x${hex32(90_000 + i)}:0`,
      scriptPubKey: address,
      sats: 6_000n,
    }));
    const batch = store.batch();
    for (const r of many)
      stageNewRequest(
        batch,
        testRequest({ ...parseRequestId(r.id), blockNumber: 5, sats: r.sats, scriptPubKey: r.scriptPubKey }),
        'then',
      );
    await batch.write({ sync: true });
    const payment = (rate: number): Proposal => {
      const [p] = requirePayments(buildPayments(many, [U[1]!], rate, federation, { maxOutputs: 1000 }), many.length);
      return proposalFromPayment(p!, 1, attacker);
    };
    assert.equal(reason(await sign(store, payment(2))), 'signed');
    const { store: view, reads } = counted(store);
    const replacement = payment(3);
    assert.equal(reason(await sign(view, replacement)), 'signed', 'a valid replacement');
    t.diagnostic(`signing: ${reads.calls} store calls, ${reads.rows} rows`);
    assert.ok(reads.calls <= 100, `${reads.calls} store calls to check it`);
    // and once finalized, which payments it supersedes is asked of each payment once too (its reads go
    // through the batch of its transaction, so they are counted there)
    const tx = parseTx(replacement.unsignedTx);
    const body = { tx: replacement.unsignedTx, prevouts: replacement.prevouts, requestIds: replacement.requestIds };
    const getMany = StoreBatch.prototype.getMany;
    let batchReads = 0;
    StoreBatch.prototype.getMany = function <T>(this: StoreBatch, keys: string[]): Promise<(T | undefined)[]> {
      batchReads++;
      return getMany.call(this, keys) as Promise<(T | undefined)[]>;
    };
    try {
      assert.ok(
        await recordFinalized(store, federation, txidOf(tx), tx, body, 'test', {
          limits: DEFAULT_LIMITS,
          paidDepth: TEST_POLICY.paidDepth,
        }),
      );
    } finally {
      StoreBatch.prototype.getMany = getMany;
    }
    t.diagnostic(`recording: ${batchReads} batch reads`);
    assert.ok(batchReads <= 100, `${batchReads} batch reads to record it`);
  });

  it('11: replacements of its own payment without end, each signed: the signer holds a few live ones a request from each sender', async (t) => {
    // each variant spends the same input, so each replaces (conflicts with) every earlier one and none
    // is a double payment; sent to fewer than t honest members, none finalizes. Every one was signed:
    // a signature record each, the request's payment list a txid longer, and every later proposal of
    // the request read all of them
    const store = await member(t);
    const variant = (i: number): Proposal => built([R[0]!], [U[0]!], 2 + i / 100);
    const outcomes = [];
    for (let i = 0; i < 20; i++) outcomes.push(reason(await sign(store, variant(i))));
    const signed = outcomes.filter((o) => o === 'signed').length;
    assert.equal(signed, LIVE_PAYMENTS_PER_SENDER, outcomes.join(' '));
    assert.ok(
      outcomes.slice(signed).every((o) => o === 'too_many_payments'),
      outcomes.join(' '),
    );
    // another member's payment of the request (it spends an input of each) is still signed: the sender
    // filled only its own share
    const other = toHex(federation.pubkeys[1]!);
    assert.equal(reason(await sign(store, built([R[0]!], [U[0]!, U[1]!]), TEST_POLICY, other)), 'signed');
  });

  it('9: a proposal of thousands of requests nobody ingested is refused after reading a few of them', async (t) => {
    // each such proposal is a new transaction, so nothing kept about an earlier one helps: what it costs
    // to refuse must not grow with the requests it names. A payment of one known request first, then
    // 2,000 made-up ones, each paid its exact amount.
    const store = await member(t);
    const made = Array.from({ length: 2000 }, (_, i) => ({
      id: `0x${hex32(70_000 + i)}:0`,
      scriptPubKey: address,
      sats: 4_000n,
    }));
    const requests = [R[0]!, ...made];
    const tx = unsignedSpend([U[0]!], paymentOutputs(requests, U[0]!.value, 0n, federation));
    const proposal = proposalFromPayment({ tx, prevouts: [U[0]!], requestIds: requests.map((r) => r.id) }, 1, attacker);
    const { store: view, reads } = counted(store);
    assert.equal(reason(await sign(view, proposal)), 'unknown_request');
    t.diagnostic(`${reads.calls} store calls, ${reads.rows} rows`);
    assert.ok(reads.rows <= 300, `${reads.rows} rows read to refuse it`);
  });
});
