import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { getRequest } from '../../../src/evm/request-store.js';
import { STALE_SLOTS } from '../../../src/node/coordinator.js';
import { checkProposal } from '../../../src/wallet/proposal.js';
import { TEST_POLICY } from '../../support/policy.js';
import {
  coordinatorOf,
  honestMembers,
  splitOverRivals,
  M,
  memberStore,
  proposal,
  REQ,
  UTXO,
} from '../../support/coordinator.js';

// A malicious member (M[3]) keeps two rival payments of one request from ever being merged by sending,
// once a slot, a fresh proposal that spends an input of each and pays another request: refused here
// (input held), it is kept as a rival, counts as "moving" for STALE_SLOTS, and a group any moving payment
// conflicts with wholly was not merged. A moving payment now holds a group back HELD_BACK_SLOTS at most.

const MAL = M[3]!.hex;
const SLOT = 1000;

const honest = (t: TestContext) => honestMembers(t, 2, SLOT);

describe('two stuck rivals of a request', () => {
  it('control: merged once stale', async (t) => {
    const { c, clock } = await coordinatorOf(t, 0, await memberStore(t, 2, 8), { slotMs: SLOT });
    await c.onProposalFrame(M[1]!.hex, proposal([REQ(0)], [UTXO(0)], M[1]!.hex)); // signed here
    await c.onProposalFrame(M[2]!.hex, proposal([REQ(0)], [UTXO(1)], M[2]!.hex)); // a rival
    clock.now = (STALE_SLOTS + 1) * SLOT;
    assert.equal((await c.merges(2, TEST_POLICY, clock.now, STALE_SLOTS + 1)).length, 1);
  });

  it('are merged despite a malicious member sending a fresh blocker each slot', async (t) => {
    const { c, clock } = await coordinatorOf(t, 0, await memberStore(t, 2, 8), { slotMs: SLOT });
    await c.onProposalFrame(M[1]!.hex, proposal([REQ(0)], [UTXO(0)], M[1]!.hex)); // signed here
    const C = proposal([REQ(0)], [UTXO(1)], M[2]!.hex);
    await c.onProposalFrame(M[2]!.hex, C);
    assert.ok(c.rivals.has(checkProposal(C).txid), 'C kept as a rival');
    let merged = 0;
    let blockers = 0;
    const slots = 40;
    for (let s = 1; s <= slots; s++) {
      clock.now = s * SLOT;
      // one blocker every STALE_SLOTS slots is enough: each a new txid (its fee rate), spending an input of
      // both rivals and paying request 1
      if (s % STALE_SLOTS === 1) {
        const B = proposal([REQ(1)], [UTXO(0), UTXO(1)], MAL, 2 + s);
        await c.onProposalFrame(MAL, B);
        if (c.rivals.has(checkProposal(B).txid)) blockers++;
      }
      // this member's turn every slot (the worst case for the attacker)
      if (s > STALE_SLOTS) merged += (await c.merges(2, TEST_POLICY, clock.now, s)).length;
    }
    t.diagnostic(`${blockers} blocker frames, all kept as rivals; merges in ${slots - STALE_SLOTS} turns: ${merged}`);
    // the blockers stop: the same rivals (and the stale blockers with them) are merged at the next turn
    clock.now = (slots + STALE_SLOTS + 1) * SLOT;
    const after = (await c.merges(2, TEST_POLICY, clock.now, slots + STALE_SLOTS + 1)).length;
    t.diagnostic(`merges once the blockers stop: ${after}`);
    assert.ok(merged >= 1, `no merge in ${slots} slots against ${blockers} blocker frames`);
  });

  for (const blockers of [false, true])
    it(`end to end: split by the malicious member${blockers ? ', with a blocker every STALE_SLOTS slots' : ' (control)'}, the request is paid within 40 slots`, async (t) => {
      const members = await honest(t);
      const { hs, run } = members;
      await splitOverRivals(members);
      let frames = 0;
      for (let slot = 10; slot < 50; slot++) {
        if (blockers && slot % STALE_SLOTS === 0) {
          const B = proposal([REQ(1)], [UTXO(0), UTXO(1)], MAL, 2 + slot);
          for (const h of hs) {
            h.c.onTurnFrame(MAL, 'proposal', B);
            await h.c.handle(MAL, 'proposal', B);
          }
          frames++;
        }
        await run(slot, 1);
      }
      const statuses: string[] = [];
      for (const h of hs) statuses.push((await getRequest(h.store, REQ(0).id))?.status ?? 'unknown');
      t.diagnostic(`after 40 slots and ${frames} blocker broadcasts: request 0 is ${statuses}`);
      assert.deepEqual(statuses, ['signed', 'signed', 'signed']);
    });
});
