import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { parseTx, txid as txidOf } from '../../../src/bitcoin/tx.js';
import { BitcoinObserver } from '../../../src/chain/observer.js';
import { getRequest, stageNewRequest } from '../../../src/evm/request-store.js';
import { createLogger } from '../../../src/node/log.js';
import { ReserveAuditor } from '../../../src/node/reserves.js';
import { Safety } from '../../../src/node/safety.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { chainSpendKey } from '../../../src/storage/keys.js';
import type { ChainSpend, FinalizedBody } from '../../../src/storage/records.js';
import type { Store } from '../../../src/storage/store.js';
import { matchCommitment } from '../../../src/wallet/commitment.js';
import { NAMING_MS } from '../../../src/wallet/reserves.js';
import { buildReplacement, type PaymentRequest, type SpendableUtxo } from '../../../src/wallet/payment.js';
import { proposalFromPayment } from '../../../src/wallet/proposal.js';
import { coordinatorOf, federation, finalizedBody, M, type Sent } from '../../support/coordinator.js';
import { testRequest } from '../../support/requests.js';
import { rpcTransaction, scanOf, ScriptedChain } from '../../support/scripted-chain.js';
import { testSettlement } from '../../support/settlement.js';
import { openTempStore } from '../../support/tempdir.js';

// A malicious proposer (M[0]) pays five of twenty look-alike requests (an outsider burned them to one
// address with one amount), shows the proposal to the two honest members it needs (M[1], M[2]), keeps
// the finalized payment to itself (or sends it to them alone) and broadcasts it. The other honest
// member (M[3]) never sees it, and its search through the look-alikes runs out of tries before the
// commitment's assignment. Its requests stayed owed while their input left its books, so its reserve
// audit paused it (reserves_short), and a member that signed the payment but never had it finalized
// too. Now a signer names them from its own signature record, and a member that cannot name them asks
// its peers, which send the payment as finalized: checked like any (the commitment names the
// requests, the witness holds t valid signatures). Until then the audit counts what the payment took.

const hex32 = (n: number): string => n.toString(16).padStart(64, '0');
const same = witnessScript(0, new Uint8Array(20).fill(9));
const requests: PaymentRequest[] = Array.from({ length: 20 }, (_, k) => ({
  id: `0x${hex32(700 + k)}:0`,
  scriptPubKey: same,
  sats: 2_400_000n,
}));
const paid = requests.slice(15);
const FUNDING = hex32(77);
const input: SpendableUtxo = { txid: FUNDING, vout: 0, value: 50_000_000n, scriptPubKey: federation.scriptPubKey };
const payment = buildReplacement(paid, [input], 2, federation)!;
const txid = txidOf(payment.tx);
/** The payment as the chain has it: signed by M[0], M[1] and M[2]. */
const onChain = parseTx(finalizedBody(payment, [...payment.requestIds], [0, 1, 2]).tx);

/** A chain whose block 100 pays `input` to the federation. */
function funded(): ScriptedChain {
  const chain = new ScriptedChain(99);
  chain.mine([
    {
      txid: FUNDING,
      hash: FUNDING,
      vin: [{ coinbase: '00', sequence: 0 }],
      vout: [{ n: 0, value: 0.5, scriptPubKey: { hex: toHex(federation.scriptPubKey) } }],
    },
  ]);
  return chain;
}

/** A member of the coordinators' 3-of-4 federation on a scripted chain holding `input` and the twenty requests. */
async function member(t: TestContext, index: number, chain: ScriptedChain) {
  const store = await openTempStore(t, federation.descriptor);
  const batch = store.batch();
  for (const r of requests) {
    const [txHash] = r.id.split(':');
    stageNewRequest(batch, testRequest({ txHash: txHash!, sats: r.sats, scriptPubKey: same }), 'then');
  }
  await batch.write({ sync: true });
  const observer = new BitcoinObserver({ store, chain, federationScript: federation.scriptPubKey, startHeight: 100 });
  await observer.sync();
  const h = await coordinatorOf(t, index, store);
  const alarms: string[] = [];
  /** The settlement's calls to ask the peers (the coordinator sends at most one in 10 s). */
  const asks: string[] = [];
  const settlement = testSettlement(store, federation, observer, {
    // wired as the member wires them (src/node/member.ts)
    onSettled: (settled) => h.coordinator.settled(settled),
    onUnnamed: (txid) => {
      asks.push(txid);
      h.coordinator.askFinalized(txid);
    },
    alarm: async (kind) => void alarms.push(kind),
  });
  const log = createLogger({ level: 'error', write: () => undefined });
  const safety = new Safety(store, log, createMetrics());
  const auditor = new ReserveAuditor({
    store,
    federation,
    core: { scanTxOutSet: async () => scanOf(chain, federation.scriptPubKey) },
    safety,
    log,
    paidConfirmations: 3,
  });
  return { ...h, observer, settlement, alarms, asks, auditor, safety };
}

/** Moves the time this member found the payment on the chain `ms` into the past. */
async function foundAgo(store: Store, ms: number): Promise<void> {
  const spend = (await store.get<ChainSpend>(chainSpendKey(txid)))!;
  await store
    .batch()
    .put(chainSpendKey(txid), { ...spend, found: new Date(Date.now() - ms).toISOString() })
    .write();
}

const statuses = (store: Store): Promise<(string | undefined)[]> =>
  Promise.all(requests.map(async (r) => (await getRequest(store, r.id))?.status));
const expected = [...Array(15).fill('accepted'), ...Array(5).fill('signed')];
const framesOf = (h: { sent: Sent[] }, type: string): Sent[] => h.sent.filter((s) => s.type === type);

/** The payment mined, and each of `members` following the chain to it. */
async function mined(chain: ScriptedChain, members: Awaited<ReturnType<typeof member>>[]): Promise<void> {
  chain.mine([rpcTransaction(onChain)]);
  for (const m of members) {
    await m.observer.sync();
    await m.settlement.tick();
  }
}

describe('a payment of look-alike requests that its proposer kept to itself', () => {
  it('is named by a member that signed it from its own record, and by one that never saw it on asking', async (t) => {
    const chain = funded();
    const signer = await member(t, 1, chain);
    const missed = await member(t, 3, chain);
    assert.equal(
      matchCommitment(payment.tx.outputs, requests),
      undefined,
      'the search alone cannot name them: C(20, 5) assignments in id order, over its 10,000 tries',
    );
    await signer.c.onProposalFrame(M[0]!.hex, proposalFromPayment(payment, 1, M[0]!.hex));
    assert.equal(framesOf(signer, 'signatures').length, 1, 'the honest member signed it');
    await mined(chain, [signer, missed]);

    assert.deepEqual(await statuses(signer.store), expected, 'the signer named them from what it signed');
    assert.deepEqual(signer.alarms, []);
    assert.deepEqual(missed.alarms, ['chain_spend_unmatched'], 'the member that never saw it cannot name them');
    assert.deepEqual(await statuses(missed.store), Array(20).fill('accepted'));
    const before = await missed.auditor.audit();
    assert.deepEqual(
      [before.verdict, before.unnamed.payments, before.unnamed.sats],
      ['ok', 1, 12_000_000n],
      'until a peer names them, what the payment took stands for them: not short, not paused',
    );

    const asks = framesOf(missed, 'unnamed');
    assert.deepEqual(asks, [{ to: '*', type: 'unnamed', body: txid }], 'it asks every peer');
    await missed.settlement.tick();
    assert.equal(framesOf(missed, 'unnamed').length, 1, 'and asks again only after a while');
    await signer.c.handle(M[3]!.hex, 'unnamed', txid);
    const [answer] = framesOf(signer, 'finalized');
    assert.equal(answer?.to, M[3]!.hex, 'the signer sends it the payment it recorded from the chain');
    await missed.c.handle(M[1]!.hex, 'finalized', answer!.body as FinalizedBody);
    await missed.settlement.tick();

    assert.deepEqual(await statuses(missed.store), expected, 'named from the answer, checked against the chain');
    assert.equal(await missed.store.get(chainSpendKey(txid)), undefined, 'the spend it could not name is settled');
    const after = await missed.auditor.audit();
    assert.deepEqual([after.verdict, after.unnamed.payments, after.settling.requests], ['ok', 0, 5]);
    assert.equal(missed.safety.paused, null);
  });

  it('sent finalized to its signers alone, is sent on asking by one of them', async (t) => {
    const chain = funded();
    const signer = await member(t, 2, chain);
    const missed = await member(t, 3, chain);
    await signer.c.handle(M[0]!.hex, 'finalized', finalizedBody(payment, [...payment.requestIds], [0, 1, 2]));
    await mined(chain, [signer, missed]);
    assert.deepEqual(await statuses(signer.store), expected);
    await signer.c.handle(M[3]!.hex, 'unnamed', txid);
    const [answer] = framesOf(signer, 'finalized').filter((s) => s.to === M[3]!.hex);
    await missed.c.handle(M[2]!.hex, 'finalized', answer!.body as FinalizedBody);
    await missed.settlement.tick();
    assert.deepEqual(await statuses(missed.store), expected);
  });

  // found by review: each question was answered with the whole payment again, a few hundred kB for a
  // question of 70 bytes, for as long as a peer kept asking
  it('is sent to one peer at most once every 10 s, however often it asks; nothing comes from a member without it', async (t) => {
    const chain = funded();
    const signer = await member(t, 2, chain);
    const missed = await member(t, 3, chain);
    await missed.c.handle(M[0]!.hex, 'unnamed', txid);
    assert.deepEqual(framesOf(missed, 'finalized'), [], 'nothing to send');
    await signer.c.handle(M[0]!.hex, 'finalized', finalizedBody(payment, [...payment.requestIds], [0, 1, 2]));
    const answers = (): number => framesOf(signer, 'finalized').filter((s) => s.to === M[3]!.hex).length;
    for (let ms = 0; ms < 60_000; ms += 500) {
      signer.clock.now = ms;
      await signer.c.handle(M[3]!.hex, 'unnamed', txid);
    }
    assert.equal(answers(), 6, '120 questions in a minute');
  });

  it("a peer's questions beyond its budget are dropped, answered or not", async (t) => {
    const chain = funded();
    const signer = await member(t, 2, chain);
    await signer.c.handle(M[0]!.hex, 'finalized', finalizedBody(payment, [...payment.requestIds], [0, 1, 2]));
    for (let k = 0; k < 32; k++) await signer.c.handle(M[3]!.hex, 'unnamed', hex32(900 + k));
    await signer.c.handle(M[3]!.hex, 'unnamed', txid);
    assert.equal(framesOf(signer, 'finalized').length, 0, 'its burst spent on payments this member does not have');
    signer.clock.now += 500;
    await signer.c.handle(M[3]!.hex, 'unnamed', txid);
    assert.equal(framesOf(signer, 'finalized').length, 1, 'two a second');
  });

  // found by review: a signer's requests list the payment from the signing on, so once its block is
  // applied they count as settling; until the settlement adopted the spend, the audit counted it as
  // unnamed too, and a shortfall of up to what it took read as ok
  it('a payment this member signed is not counted as unnamed: its requests count as settling already', async (t) => {
    const chain = funded();
    const signer = await member(t, 1, chain);
    const b = signer.store.batch();
    stageNewRequest(b, testRequest({ txHash: `0x${hex32(999)}`, sats: 5_000_000n, scriptPubKey: same }), 'then');
    await b.write({ sync: true });
    await signer.c.onProposalFrame(M[0]!.hex, proposalFromPayment(payment, 1, M[0]!.hex));
    chain.mine([rpcTransaction(onChain)]);
    await signer.observer.sync();
    const during = await signer.auditor.audit();
    assert.deepEqual(
      [during.unnamed.payments, during.settling.requests, during.faults.map((f) => f.kind)],
      [0, 5, ['reserves_short']],
      'applied, not yet adopted: short by the extra request',
    );
  });

  it('counts as paying them while it waits, and a spend that only looks like a payment is short then', async (t) => {
    const chain = funded();
    const missed = await member(t, 3, chain);
    await mined(chain, [missed]);
    chain.mine([]);
    await missed.observer.sync();
    assert.equal((await missed.auditor.audit()).verdict, 'ok', 'two confirmations of three');
    chain.mine([]);
    await missed.observer.sync();
    assert.equal((await missed.auditor.audit()).verdict, 'ok', 'at the paid depth, but found a moment ago');
    await foundAgo(missed.store, NAMING_MS);
    const r = await missed.auditor.audit();
    assert.deepEqual([r.unnamed.payments, r.faults.map((f) => f.kind)], [0, ['reserves_short']]);
    assert.ok(missed.safety.paused);
  });

  // a member down past the paid depth finds its peers' payments deep already: it asks all the same
  it('is asked for from when this member found it, for NAMING_MS or until the paid depth, whichever is later', async (t) => {
    const chain = funded();
    const missed = await member(t, 3, chain);
    chain.mine([rpcTransaction(onChain)]);
    chain.mine([]);
    chain.mine([]);
    await missed.observer.sync();
    await missed.settlement.tick();
    assert.deepEqual([missed.alarms, missed.asks], [['chain_spend_unmatched'], [txid]], 'three confirmations');
    assert.equal((await missed.auditor.audit()).verdict, 'ok');
    await foundAgo(missed.store, NAMING_MS);
    await missed.settlement.tick();
    assert.deepEqual(missed.asks, [txid], 'no peer sent it in time');
  });
});
