import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { serializeTx, txid as txidOf, type Transaction } from '../../../src/bitcoin/tx.js';
import { COORDINATOR_CAPS } from '../../../src/node/coordinator.js';
import { EARLY_CAPS } from '../../../src/node/early-signatures.js';
import { proposerOf } from '../../../src/node/rotation.js';
import type { SigningPool } from '../../../src/signing/pool.js';
import { cursorKey, finalizedKey, supersededKey } from '../../../src/storage/keys.js';
import type { FinalizedRecord } from '../../../src/storage/records.js';
import { buildReplacement } from '../../../src/wallet/payment.js';
import { getUtxo, registerUtxo, stageSpent } from '../../../src/wallet/utxos.js';
import { checkProposal, PROPOSAL_CAPS } from '../../../src/wallet/proposal.js';
import { LIVE_PAYMENTS_PER_SENDER } from '../../../src/wallet/validate.js';
import { counted, type ReadCount } from '../../support/counted-store.js';
import { TEST_POLICY } from '../../support/policy.js';
import {
  coordinatorOf,
  federation,
  finalizedBody,
  M,
  memberStore,
  proposal,
  REQ,
  UTXO,
  type Harness,
} from '../../support/coordinator.js';

// One malicious member (M[3]) against an honest member's coordinator: what it sends again, makes
// honest members send, or forges must not stall a payment, starve a proposer or buy unbounded work.
// Each attack was found by a review of the coordinator, written here first and seen to succeed.

const MAL = M[3]!.hex;
const SLOT = 1000;

/** Hands `from`'s signature sets broadcast since `mark` to `to`, as the links would. */
async function deliverSets(from: Harness, mark: number, to: Harness, sender: string): Promise<number> {
  const sets = from.sent.slice(mark).filter((s) => s.type === 'signatures');
  for (const s of sets) await to.c.onSignatures(sender, s.body as { txid: string; signatures: Uint8Array });
  return sets.length;
}

/**
 * Sends `frames` proposals (`send(k)`, each charged a few units) and checks the rows they made this member
 * read against the proposal budget's burst, which they should have spent long before.
 */
async function readWithinBudget(
  t: TestContext,
  reads: ReadCount,
  frames: number,
  what: string,
  send: (k: number) => Promise<unknown>,
): Promise<void> {
  const before = reads.rows;
  for (let k = 0; k < frames; k++) await send(k);
  const rows = reads.rows - before;
  t.diagnostic(`${frames} ${what} read ${rows} rows`);
  const { burst } = COORDINATOR_CAPS.proposalWork;
  assert.ok(rows <= 1.5 * burst, `${frames} ${what} read ${rows} rows (budget ${burst})`);
}

describe('a rival payment sent again', () => {
  it('keeps the time it first came: re-sending it every few slots does not keep it from being merged', async (t) => {
    const { c, clock } = await coordinatorOf(t, 0, await memberStore(t, 1, 4), { slotMs: SLOT });
    await c.onProposalFrame(M[1]!.hex, proposal([REQ(0)], [UTXO(0)], M[1]!.hex)); // signed here
    const B = proposal([REQ(0)], [UTXO(1)], MAL); // refused as a double payment: a rival
    for (let s = 0; s <= 30; s += 3) {
      clock.now = s * SLOT;
      await c.onProposalFrame(MAL, B);
    }
    clock.now = 32 * SLOT;
    const merges = await c.merges(2, TEST_POLICY, clock.now, 32);
    assert.equal(
      merges.length,
      1,
      `not merged after 32 slots: kept since ${c.rivals.get(checkProposal(B).txid)?.since}`,
    );
  });

  it("is not taken over by the member that sends it again, nor pushed out by that member's flood", async (t) => {
    const { c } = await coordinatorOf(t, 0, await memberStore(t, 1, 70), { slotMs: SLOT });
    await c.onProposalFrame(M[1]!.hex, proposal([REQ(0)], [UTXO(0)], M[1]!.hex));
    // member 2 shows this member a rival it signed, so that it can be merged
    const B = proposal([REQ(0)], [UTXO(1)], M[2]!.hex);
    const b = checkProposal(B).txid;
    await c.onProposalFrame(M[2]!.hex, B);
    await c.onProposalFrame(MAL, B);
    for (let k = 0; k < 64; k++) await c.onProposalFrame(MAL, proposal([REQ(0)], [UTXO(2 + k)], MAL));
    assert.ok(c.rivals.has(b), "member 2's rival is kept");
    assert.equal([...c.rivals.values()].filter((r) => r.from.has(MAL)).length, 64, "the flood's own, within its cap");
  });
});

describe("an honest member's signature sets", () => {
  it("are not pushed out of another member's hands by sets a malicious member made it send", async (t) => {
    // the malicious member proposes X to everyone and withholds its own set and the finalization;
    // then it makes member 1 sign EARLY_CAPS.perPeer proposals nobody else sees, each of whose sets
    // member 1 broadcasts, to push its set of X out of member 0's early sets
    const n = EARLY_CAPS.perPeer + 1;
    const r = await coordinatorOf(t, 0, await memberStore(t, n, n), { slotMs: SLOT });
    const h = await coordinatorOf(t, 1, await memberStore(t, n, n), { slotMs: SLOT });
    const X = proposal([REQ(0)], [UTXO(0)], MAL);
    const x = checkProposal(X).txid;
    await r.c.onProposalFrame(MAL, X);
    assert.ok(r.c.deferred.has(x), 'member 0 signed X and leaves collecting it to its proposer');
    await h.c.onProposalFrame(MAL, X);
    assert.equal(await deliverSets(h, 0, r, M[1]!.hex), 1);
    const mark = h.sent.length;
    for (let k = 1; k <= EARLY_CAPS.perPeer; k++) await h.c.onProposalFrame(MAL, proposal([REQ(k)], [UTXO(k)], MAL));
    assert.equal(await deliverSets(h, mark, r, M[1]!.hex), EARLY_CAPS.perPeer);
    r.clock.now = SLOT / 4;
    await r.c.collectDeferred(r.clock.now);
    assert.deepEqual(r.c.collector.signers(x).sort(), [M[0]!.hex, M[1]!.hex].sort());
  });

  it('pushed out before the proposal came, are sent again once the payment stalls', async (t) => {
    // the same pump, this time before member 0 has X: its copy of member 1's set waits among the
    // early ones, and is gone when X comes
    const n = EARLY_CAPS.perPeer + 1;
    const r = await coordinatorOf(t, 0, await memberStore(t, n, n), { slotMs: SLOT });
    const h = await coordinatorOf(t, 1, await memberStore(t, n, n), { slotMs: SLOT });
    const X = proposal([REQ(0)], [UTXO(0)], MAL);
    const x = checkProposal(X).txid;
    await h.c.onProposalFrame(MAL, X);
    for (let k = 1; k <= EARLY_CAPS.perPeer; k++) await h.c.onProposalFrame(MAL, proposal([REQ(k)], [UTXO(k)], MAL));
    assert.equal(await deliverSets(h, 0, r, M[1]!.hex), n);
    await r.c.onProposalFrame(MAL, X);
    r.clock.now = SLOT / 4;
    await r.c.collectDeferred(r.clock.now);
    assert.deepEqual(r.c.collector.signers(x), [M[0]!.hex], "member 1's set was pushed out");
    // a slot without progress at member 1 (in a slot it does not propose): it sends its sets again
    const mark = h.sent.length;
    h.clock.now = 2 * SLOT;
    await h.c.tick();
    await deliverSets(h, mark, r, M[1]!.hex);
    assert.deepEqual(r.c.collector.signers(x).sort(), [M[0]!.hex, M[1]!.hex].sort());
    // then after 3, 7, 15 … slots without progress: a payment that never finishes costs less and less
    const again = h.sent.length;
    h.clock.now = 2.75 * SLOT;
    await h.c.tick();
    assert.equal(h.sent.length, again);
    h.clock.now = 3 * SLOT;
    await h.c.tick();
    const resent = (type: string): number => h.sent.slice(again).filter((s) => s.type === type).length;
    // the set to every member, the payment to each of the three whose set never came here
    assert.deepEqual([resent('signatures'), resent('proposal')], [n, 3 * n], 'every stalled payment and set, once');
  });
});

describe('a forged finalized payment', () => {
  it('sent again and again is verified on the pool once', async (t) => {
    // members 1 and 2 signed it; the malicious member adds its own set and spoils the signature the
    // pool checks last, so the spot check of one random input passes almost always
    const inputs = 40;
    let verifications = 0;
    const { c, sent } = await coordinatorOf(t, 0, await memberStore(t, 0, 0), {
      verifyWrap: (pool) =>
        ({
          signTransaction: pool.signTransaction.bind(pool),
          verifyTransaction: async (...args: Parameters<SigningPool['verifyTransaction']>) => {
            verifications++;
            return pool.verifyTransaction(...args);
          },
        }) as unknown as SigningPool,
    });
    const payment = buildReplacement(
      [REQ(0)],
      Array.from({ length: inputs }, (_, i) => UTXO(i)),
      2,
      federation,
    )!;
    const body = finalizedBody(payment, [REQ(0).id], [1, 2, 3], (k, sigs) => {
      if (k === 1) sigs[inputs - 1] = sigs[inputs - 1]!.map((b, i) => (i === 0 ? b ^ 1 : b));
    });
    for (let i = 0; i < 10; i++) await c.onFinalizedFrame(MAL, body);
    assert.ok(
      verifications <= federation.threshold,
      `ten copies of ${txidOf(payment.tx).slice(0, 12)}… cost ${verifications} verifications of ${inputs} signatures`,
    );
    assert.deepEqual(
      sent.filter((m) => m.type === 'misbehaved'),
      [{ to: MAL, type: 'misbehaved', body: 'forged' }],
      'its sender is charged a fault',
    );
  });
});

describe('a finalized payment a peer announces', () => {
  it('is kept, announced again and stored as its own fields, copied: nothing a peer added to it', async (t) => {
    const { c, store } = await coordinatorOf(t, 0, await memberStore(t, 1, 1));
    const payment = buildReplacement([REQ(0)], [UTXO(0)], 2, federation)!;
    const body = finalizedBody(payment, [REQ(0).id], [1, 2, 3]);
    // a graph a peer hangs on each prevout: re-encoded, one with shared parts grows with each level
    const padded = { ...body, extra: 1, prevouts: body.prevouts.map((p) => ({ ...p, note: { deep: [1, 2, 3] } })) };
    await c.onFinalizedFrame(MAL, padded);
    const txid = txidOf(payment.tx);
    const kept = c.unsettled.get(txid)!;
    assert.deepEqual(Object.keys(kept).sort(), ['prevouts', 'requestIds', 'tx']);
    assert.deepEqual(Object.keys(kept.prevouts[0]!).sort(), ['scriptPubKey', 'value']);
    assert.notEqual(kept.tx.buffer, body.tx.buffer, "a copy, not a view into the peer's frame");
    const stored = await store.get<FinalizedRecord>(finalizedKey(txid));
    assert.deepEqual(Object.keys(stored!.prevouts[0]!).sort(), ['scriptPubKey', 'value']);
  });
});

describe('the proposer before an honest member', () => {
  const n = federation.pubkeys.length;
  const s = 4 * n + 3;
  const before = proposerOf(s, federation.pubkeys);
  const next = M.findIndex((m) => m.hex === proposerOf(s + 1, federation.pubkeys));

  /** The next proposer's turns over its slot, ticking every quarter slot; `during` runs before each tick. */
  async function turnsInNextSlot(t: Parameters<typeof memberStore>[0], during: (c: Harness['c'], at: number) => void) {
    const { c, clock, sent } = await coordinatorOf(t, next, await memberStore(t, 0, 0), { slotMs: SLOT });
    clock.now = s * SLOT + 10;
    c.onTurnFrame(before, 'turn', s); // announced, never said done
    for (let at = (s + 1) * SLOT; at < (s + 2) * SLOT; at += SLOT / 4) {
      clock.now = at;
      during(c, at);
      await c.tick();
    }
    return sent.filter((m) => m.type === 'turn').map((m) => m.body);
  }

  it('gone quiet, delays the next turn by a slot of quiet at most', async (t) => {
    assert.deepEqual(await turnsInNextSlot(t, () => {}), [s + 1]);
  });

  // Open: starting the next turn after half a slot whatever the previous proposer sent closed this,
  // and made an honest slow proposer's successor pay its requests again (bench:e2e, 500-input
  // payments with the JS backend); a malicious proposer costs the one after it a slot of n
  it(
    'sending turn frames through its grace does not take the next proposer its slot',
    { todo: 'open: see above' },
    async (t) => {
      const turns = await turnsInNextSlot(t, (c, at) => at % (SLOT / 2) === 0 && c.onTurnFrame(before, 'turn', s));
      assert.deepEqual(turns, [s + 1]);
    },
  );

  it('still busy, with a frame of its waiting here, keeps the turn from the next proposer while it sends', async (t) => {
    // its proposals may be among the frames this member has not handled yet: paying their requests
    // again would split the signers
    const turns = await turnsInNextSlot(t, (c, at) => {
      c.queued = 1;
      if (at % (SLOT / 2) === 0) c.onTurnFrame(before, 'turn', s);
    });
    assert.deepEqual(turns, []);
  });
});

describe('a payment this member signed, proposed again', () => {
  it('while open here: its set goes to the sender alone, and it is not collected a second time', async (t) => {
    const { c, sent } = await coordinatorOf(t, 0, await memberStore(t, 1, 1));
    const A = proposal([REQ(0)], [UTXO(0)], M[1]!.hex);
    await c.onProposalFrame(M[1]!.hex, A);
    const mark = sent.length;
    await c.onProposalFrame(MAL, A);
    assert.deepEqual(
      sent.slice(mark).map((m) => [m.type, m.to]),
      [['signatures', MAL]],
    );
  });

  it('once it can no longer finalize: its set is sent to nobody, and it is not opened again', async (t) => {
    const { c, store, sent } = await coordinatorOf(t, 0, await memberStore(t, 1, 2));
    const A = proposal([REQ(0)], [UTXO(0)], M[1]!.hex);
    const a = checkProposal(A).txid;
    await c.onProposalFrame(M[1]!.hex, A);
    assert.ok(c.proposals.has(a));
    // W pays the same request from another input, finalized by members 1 to 3: A can never finish
    const w = buildReplacement([REQ(0)], [UTXO(1)], 2, federation)!;
    await c.onFinalizedFrame(M[1]!.hex, finalizedBody(w, [REQ(0).id], [1, 2, 3]));
    assert.ok(await store.get(supersededKey(a)));
    assert.ok(!c.proposals.has(a));
    const mark = sent.length;
    await c.onProposalFrame(MAL, A);
    assert.deepEqual(
      { broadcast: sent.slice(mark).filter((m) => m.type === 'signatures').length, open: c.proposals.has(a) },
      { broadcast: 0, open: false },
    );
  });
});

// Found by review: merges() dropped every stale rival alone in its group, though the payment it is a
// rival of was only still moving. A malicious member refreshing that payment once (any set, even one
// that does not verify, counts as progress) just before this member's turn had the rival forgotten,
// and when the payment stalled there was nothing to merge it with
describe('a stale rival whose partner is still moving', () => {
  it('is kept until the two can be merged', async (t) => {
    const { c, clock } = await coordinatorOf(t, 0, await memberStore(t, 1, 4), { slotMs: SLOT });
    // P: member 1's payment of request 0, signed here
    const P = proposal([REQ(0)], [UTXO(0)], M[1]!.hex);
    await c.onProposalFrame(M[1]!.hex, P);
    const p = checkProposal(P).txid;
    // C, of the same request, that member 2 signed and showed here: refused (double payment), kept as a rival
    const C = proposal([REQ(0)], [UTXO(1)], MAL);
    await c.onProposalFrame(M[2]!.hex, C);
    assert.ok(c.rivals.has(checkProposal(C).txid));
    // just before this member's turn, the malicious member sends a set for P that does not verify
    clock.now = 6 * SLOT;
    await c.onSignatures(MAL, { txid: p, signatures: new Uint8Array(64) });
    assert.equal((await c.merges(2, TEST_POLICY, clock.now, 6)).length, 0, 'P is moving: no merge yet');
    clock.now = 12 * SLOT;
    assert.equal((await c.merges(2, TEST_POLICY, clock.now, 12)).length, 1, 'P stalled: P and C merged');
  });
});

describe('a payment this member signed that a finalized one superseded, which then lost', () => {
  it('is collected again once settlement revives it', async (t) => {
    const { c, coordinator } = await coordinatorOf(t, 0, await memberStore(t, 1, 1), { slotMs: SLOT });
    const P = proposal([REQ(0)], [UTXO(0)], M[1]!.hex);
    await c.onProposalFrame(M[1]!.hex, P);
    const p = checkProposal(P).txid;
    // forgotten as superseded (recordFinal), then revived (settlement.ts stageLost)
    c.proposals.delete(p);
    await coordinator.revived([p]);
    assert.ok(c.proposals.has(p));
  });
});

describe("checking a peer's proposals", () => {
  // Checking a proposal reads every earlier payment of its requests, each input of each: the sender's
  // own live payments of a request (LIVE_PAYMENTS_PER_SENDER, of as many inputs as the fee share
  // allows) made every later one-input proposal naming it cost a thousand store rows, while its
  // budget was charged three units. Refusing such a proposal (a double payment) must cost its sender
  // what it cost this member.
  it('charges the sender for the earlier payments the check read', async (t) => {
    const HEAVY = 100;
    const CHEAP = 600;
    const { store, reads } = counted(await memberStore(t, 1, HEAVY + CHEAP));
    const { c } = await coordinatorOf(t, 0, store);
    const heavy = Array.from({ length: HEAVY }, (_, i) => UTXO(i));
    // the same inputs each time at a higher rate: each replaces the one before, and all are live
    for (let k = 0; k < LIVE_PAYMENTS_PER_SENDER; k++)
      await c.handle(MAL, 'proposal', proposal([REQ(0)], heavy, MAL, 2 + k / 4));
    await readWithinBudget(t, reads, CHEAP, 'one-input proposals of the request', (k) =>
      c.handle(MAL, 'proposal', proposal([REQ(0)], [UTXO(HEAVY + k)], MAL)),
    );
  });

  // the same payments read for an honest peer's proposals are not its to pay for: charged to whoever
  // sent the proposal being checked, they drained an honest proposer's budget here
  it('charges no peer for the earlier payments another sent', async (t) => {
    const HEAVY = 100;
    const HONEST = 130; // past a budget's burst, were each charged what the malicious payments cost
    const { store, reads } = counted(await memberStore(t, 1, HEAVY + HONEST + 1));
    const { c } = await coordinatorOf(t, 0, store);
    const heavy = Array.from({ length: HEAVY }, (_, i) => UTXO(i));
    for (let k = 0; k < LIVE_PAYMENTS_PER_SENDER; k++)
      await c.handle(MAL, 'proposal', proposal([REQ(0)], heavy, MAL, 2 + k / 4));
    const honest = M[1]!.hex;
    for (let k = 0; k < HONEST; k++) await c.handle(honest, 'proposal', proposal([REQ(0)], [UTXO(HEAVY + k)], honest));
    const before = reads.rows;
    await c.handle(honest, 'proposal', proposal([REQ(0)], [UTXO(HEAVY + HONEST)], honest));
    assert.ok(
      reads.rows > before,
      "the honest peer's next proposal was dropped: its budget paid for another's payments",
    );
  });

  // a proposal kept to retry (it names a request not ingested here yet) is checked again, whole, each
  // time this member catches up: each time charged again, or a peer's 64 kept proposals cost five
  // checks each for one charge
  it('charges the sender again for each check of a proposal kept to retry', async (t) => {
    const R = 200;
    const I = 110;
    const FRAMES = 64;
    const { store, reads } = counted(await memberStore(t, R, I));
    const { c, clock } = await coordinatorOf(t, 0, store, { slotMs: SLOT });
    clock.now = SLOT + 10; // another's slot; the clock stands still: the budget does not refill
    const known = Array.from({ length: R }, (_, i) => REQ(i));
    const inputs = Array.from({ length: I }, (_, i) => UTXO(i));
    const frame = (k: number) => proposal([...known, REQ(100_000 + k)], inputs, MAL);
    const units = R + 1 + I + 1;
    let before = reads.rows;
    await c.handle(MAL, 'proposal', frame(0));
    const perCheck = reads.rows - before;
    before = reads.rows;
    for (let k = 1; k < FRAMES; k++) await c.handle(MAL, 'proposal', frame(k));
    for (let round = 0; round < 6; round++) await c.retryWaiting(() => true);
    const checks = 1 + (reads.rows - before) / perCheck;
    t.diagnostic(`${checks} checks of ${units} units each (${perCheck} rows a check)`);
    assert.ok(
      checks <= Math.floor(COORDINATOR_CAPS.proposalWork.burst / units),
      `${checks} checks of ${units} units from a budget of ${COORDINATOR_CAPS.proposalWork.burst}`,
    );
  });

  // Found by review: checking whether an input is held reads the holder (a payment signed here, not
  // finalized: each of its requests' records, wallet/validate.ts input_held), and a payment's finalized
  // ancestors (excludes(): up to ANCESTRY records, each transaction parsed), neither charged: a peer's
  // one-input proposals spending an output of a large payment cost three units each and made this member
  // read hundreds of rows or parse hundreds of inputs a check
  it("charges the sender for reading the payment that holds a proposal's input", async (t) => {
    const R = 400;
    const I = 210;
    const CHEAP = 600;
    const { store, reads } = counted(await memberStore(t, R + 1, I + CHEAP));
    const { c } = await coordinatorOf(t, 0, store);
    const held = Array.from({ length: I }, (_, i) => UTXO(i));
    const honest = M[1]!.hex;
    const P = proposal(
      Array.from({ length: R }, (_, i) => REQ(i)),
      held,
      honest,
    );
    await c.handle(honest, 'proposal', P);
    assert.ok(c.proposals.has(checkProposal(P).txid), 'P signed here: it holds its inputs');
    await readWithinBudget(t, reads, CHEAP, 'proposals spending an input P holds', (k) =>
      c.handle(MAL, 'proposal', proposal([REQ(R)], [UTXO(0), UTXO(I + k)], MAL)),
    );
  });

  it("charges the sender for the finalized ancestors of a proposal's inputs", async (t) => {
    const WIDE = 500;
    const CHEAP = 600;
    const { store, reads } = counted(await memberStore(t, 1, 0));
    // F: finalized here, spending WIDE outputs and paying the federation CHEAP change-sized outputs
    const F: Transaction = {
      version: 2,
      locktime: 0,
      inputs: Array.from({ length: WIDE }, (_, i) => ({
        txid: (9_000_000 + i).toString(16).padStart(64, '0'),
        vout: 0,
        sequence: 0xfffffffd,
        scriptSig: new Uint8Array(0),
        witness: [],
      })),
      outputs: Array.from({ length: CHEAP }, () => ({ value: 2_000_000n, scriptPubKey: federation.scriptPubKey })),
    };
    const f = txidOf(F);
    const batch = store.batch();
    batch.put(finalizedKey(f), { txid: f, tx: serializeTx(F) } as unknown as FinalizedRecord);
    for (let vout = 0; vout < CHEAP; vout++)
      await registerUtxo(batch, {
        txid: f,
        vout,
        value: 2_000_000n,
        scriptPubKey: federation.scriptPubKey,
        height: 1,
        pegIn: false,
      });
    await batch.write({ sync: true });
    const { c } = await coordinatorOf(t, 0, store);
    const spend = (vout: number) =>
      proposal([REQ(0)], [{ txid: f, vout, value: 2_000_000n, scriptPubKey: federation.scriptPubKey }], MAL);
    let before = reads.rows;
    await c.handle(MAL, 'proposal', spend(0));
    const perCheck = reads.rows - before;
    before = reads.rows;
    for (let k = 1; k < CHEAP; k++) await c.handle(MAL, 'proposal', spend(k));
    const checks = 1 + (reads.rows - before) / perCheck;
    t.diagnostic(`${checks} checks, each parsing F's ${WIDE} inputs (${perCheck} rows a check)`);
    assert.ok(
      checks <= (1.5 * COORDINATOR_CAPS.proposalWork.burst) / WIDE,
      `${checks} checks charged 3 units each parsed ${WIDE} inputs each (budget ${COORDINATOR_CAPS.proposalWork.burst})`,
    );
  });

  // Found by review: the earlier payments of a request that other members sent are read for every
  // proposal naming it (signer.ts signedPayments: each record and, with a chain, each of its inputs'
  // records), refused proposals included, and charged to nobody (an honest proposer must not pay for a
  // malicious member's pins, above): an honest member's wide payment of a request made each one-input
  // proposal of it that a malicious peer sent cost hundreds of rows for three units
  it("reads another member's earlier payment of a request once, however many proposals name it", async (t) => {
    const WIDE = 400;
    const CHEAP = 600;
    const { store, reads } = counted(await memberStore(t, 4, WIDE));
    // a chain: killedByConflict reads each input of each earlier payment
    const batch = store.batch();
    batch.put(cursorKey('bitcoin'), { height: 10, hash: '00'.repeat(32) });
    await batch.write({ sync: true });
    const { c } = await coordinatorOf(t, 0, store);
    const honest = M[1]!.hex;
    const P = proposal(
      [REQ(0), REQ(1), REQ(2), REQ(3)],
      Array.from({ length: WIDE }, (_, i) => UTXO(i)),
      honest,
    );
    await c.handle(honest, 'proposal', P);
    assert.ok(c.proposals.has(checkProposal(P).txid), "P, the honest member's payment, signed here");
    // inputs this member never heard of: refused (unknown_input), after the earlier payments were read
    await readWithinBudget(t, reads, CHEAP, 'one-input proposals naming a request of P', (k) =>
      c.handle(MAL, 'proposal', proposal([REQ(0)], [UTXO(100_000 + k)], MAL)),
    );
  });

  // rivals (proposals refused because a payment signed here holds their inputs) are read again at each
  // of this member's turns, with every request of their group; a peer's 64 of them, paying requests
  // their shared inputs cannot fund, were charged once and cost a merge attempt at every turn
  it("charges a peer's rivals to it again at each turn that reads them", async (t) => {
    const RIVALS = 64;
    const K = 30;
    const U = 30;
    const { store } = await memberStore(t, 1 + RIVALS * K + 1, U + 1).then((s) => ({ store: s }));
    const { c, clock } = await coordinatorOf(t, 0, store, { slotMs: SLOT });
    clock.now = SLOT + 10; // the clock stands still: the budget does not refill
    const inputs = Array.from({ length: U }, (_, i) => UTXO(i));
    await c.handle(MAL, 'proposal', proposal([REQ(0)], inputs, MAL));
    assert.equal(c.proposals.size, 1, 'P signed here');
    let charged = 0;
    for (let r = 0; r < RIVALS; r++) {
      const p = proposal(
        Array.from({ length: K }, (_, i) => REQ(1 + r * K + i)),
        inputs,
        MAL,
      );
      charged += K + U + 1;
      await c.handle(MAL, 'proposal', p);
    }
    assert.equal(c.rivals.size, RIVALS);
    // the turns that a budget of a burst pays for, once more than the arrivals left of it
    const turns = Math.ceil((COORDINATOR_CAPS.proposalWork.burst - charged) / charged) + 1;
    let slowest = 0;
    for (let turn = 0; turn < turns; turn++) {
      const slot = 8 + 4 * turn;
      const started = performance.now();
      assert.deepEqual(await c.merges(2, TEST_POLICY, slot * SLOT, slot), []);
      slowest = Math.max(slowest, performance.now() - started);
    }
    t.diagnostic(`${turns} turns; the slowest merges() took ${slowest.toFixed(0)} ms`);
    // its next proposal, valid, from an input of its own: dropped, the sender pays for what it made this member read
    const fresh = proposal([REQ(1 + RIVALS * K)], [UTXO(U)], MAL);
    await c.handle(MAL, 'proposal', fresh);
    assert.equal(c.proposals.has(checkProposal(fresh).txid), false, 'signed: the rivals cost their sender nothing');
  });
});

// Found by review: a set for a proposal this member signed and leaves its proposer to collect for a
// quarter slot was kept whatever its size (any multiple of 64 bytes up to PROPOSAL_CAPS.inputs
// signatures), outside the early sets' byte cap, and refused only when collected
describe('signature sets for a proposal this member leaves its proposer to collect', () => {
  it("are kept no larger than the proposal's own set: a peer cannot park the largest frame on each", async (t) => {
    const k = 16;
    const { c } = await coordinatorOf(t, 0, await memberStore(t, k, k), { slotMs: SLOT });
    const txids: string[] = [];
    for (let i = 0; i < k; i++) {
      const P = proposal([REQ(i)], [UTXO(i)], M[1]!.hex);
      await c.onProposalFrame(M[1]!.hex, P);
      txids.push(checkProposal(P).txid);
    }
    assert.ok(
      txids.every((x) => c.deferred.has(x)),
      'this member defers each: member 1 proposed them',
    );
    const largest = new Uint8Array(64 * PROPOSAL_CAPS.inputs).fill(7);
    for (const txid of txids) await c.onSignatures(MAL, { txid, signatures: largest });
    const deferred = c.deferred as unknown as Map<string, { sets: Map<string, Uint8Array> }>;
    const held = txids.reduce((a, x) => a + (deferred.get(x)?.sets.get(MAL)?.length ?? 0), 0);
    assert.ok(held <= k * 64, `${k} one-input proposals hold ${held} bytes of the malicious member's sets`);
  });
});

// Found by review: the inputs of a peer's proposal this member does not know (up to
// COORDINATOR_CAPS.recoverPerProposal of them) were looked up in Bitcoin Core (gettxout, then
// getrawtransaction) for each proposal, with a warning logged each time, for the units of its size: a
// peer's stream of one-input proposals naming made-up outputs was a stream of RPCs to the member's node
describe("inputs of a peer's proposal this member does not know", () => {
  it('are looked up in Bitcoin Core within a budget of the sender', async (t) => {
    const looked: string[] = [];
    const recoverInput = async (o: { txid: string; vout: number }): Promise<never> => {
      looked.push(`${o.txid}:${o.vout}`);
      throw new Error("not in the node's UTXO set");
    };
    const { c } = await coordinatorOf(t, 0, await memberStore(t, 1, 0), { recoverInput });
    const FRAMES = 200;
    for (let k = 0; k < FRAMES; k++) await c.handle(MAL, 'proposal', proposal([REQ(0)], [UTXO(1000 + k)], MAL));
    assert.ok(
      looked.length <= COORDINATOR_CAPS.lookups.burst,
      `${FRAMES} proposals had ${looked.length} made-up inputs looked up`,
    );
  });
});

// Found by review: without a chain, a payment signed here whose inputs a finalized payment F spent is
// `lost`, and at each of this member's turns each of its inputs had F walked again (unspentOutputOf:
// F parsed, the record of each of its outputs read, then its descendants', with no bound on how many):
// a peer's payment of twenty inputs that a finalized one of 900 outputs spent cost 18,044 rows a turn,
// for the 22 units it was charged once
describe('a payment signed here whose inputs a finalized payment spent, without a chain', () => {
  it('has the payment that spent them read once a turn, not once an input', async (t) => {
    const I = 20;
    const W = 900;
    const { store, reads } = counted(await memberStore(t, 2, I));
    const { c } = await coordinatorOf(t, 0, store, { slotMs: SLOT });
    const P = proposal(
      [REQ(0)],
      Array.from({ length: I }, (_, i) => UTXO(i)),
      MAL,
    );
    await c.handle(MAL, 'proposal', P);
    assert.ok(c.proposals.has(checkProposal(P).txid), 'P signed here');
    // F, finalized, spends P's inputs and pays the federation W outputs; only the last is unspent, too
    // small to fund a merge of P's request
    const F: Transaction = {
      version: 2,
      locktime: 0,
      inputs: Array.from({ length: I }, (_, i) => ({
        txid: UTXO(i).txid,
        vout: 0,
        sequence: 0xfffffffd,
        scriptSig: new Uint8Array(0),
        witness: [],
      })),
      outputs: Array.from({ length: W }, (_, k) => ({
        value: k === W - 1 ? 5_000n : 1_000_000n,
        scriptPubKey: federation.scriptPubKey,
      })),
    };
    const f = txidOf(F);
    const batch = store.batch();
    batch.put(finalizedKey(f), { txid: f, tx: serializeTx(F) } as unknown as FinalizedRecord);
    for (let i = 0; i < I; i++) stageSpent(batch, (await getUtxo(store, UTXO(i)))!, f);
    const change = { txid: f, vout: W - 1, value: 5_000n, scriptPubKey: federation.scriptPubKey };
    await registerUtxo(batch, { ...change, height: 1, pegIn: false });
    await batch.write({ sync: true });
    const perTurn: number[] = [];
    for (let turn = 0; turn < 3; turn++) {
      const slot = 8 + 4 * turn;
      const before = reads.rows;
      assert.deepEqual(await c.merges(2, TEST_POLICY, slot * SLOT, slot), [], 'no merge: F leaves too little');
      perTurn.push(reads.rows - before);
    }
    t.diagnostic(`rows read a turn: ${perTurn.join(', ')}`);
    assert.ok(c.proposals.has(checkProposal(P).txid), 'P still open: read again at the next turn');
    assert.ok(
      perTurn.every((rows) => rows <= 2 * W),
      `each turn read ${perTurn.join(', ')} rows for P, F's ${W} outputs once for each of P's ${I} inputs`,
    );
  });
});
