import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { getRequest } from '../../../src/evm/request-store.js';
import { finalizedKey } from '../../../src/storage/keys.js';
import { checkProposal } from '../../../src/wallet/proposal.js';
import { getUtxo } from '../../../src/wallet/utxos.js';
import type { Proposal } from '../../../src/storage/records.js';
import { coordinatorOf, M, memberStore, proposal, REQ, UTXO, type Harness } from '../../support/coordinator.js';

// A malicious member (M[3]) splits the honest members over two payments of one request that do not
// conflict, and withholds its own sets. Nobody proposes the request again (it is 'batched' at every
// honest member), so no proposer learned of both rivals and nothing merged them: the request stalled
// for good (found by review). Each member now sends a stalled payment's proposal again with its set.

const MAL = M[3]!.hex;
const SLOT = 1000;

/** The three honest members on a network that delivers everything among them; the malicious one is silent. */
async function honest(t: TestContext) {
  const hs: Harness[] = [];
  for (const i of [0, 1, 2]) hs.push(await coordinatorOf(t, i, await memberStore(t, 1, 8), { slotMs: SLOT }));
  const marks = hs.map(() => 0);
  for (const h of hs) h.clock.now = 10 * SLOT;
  const deliver = async (): Promise<void> => {
    for (let round = 0; round < 20; round++) {
      let moved = 0;
      for (const [i, h] of hs.entries()) {
        const frames = h.sent.slice(marks[i]);
        marks[i] = h.sent.length;
        for (const f of frames) {
          if (!['proposal', 'signatures', 'finalized', 'turn', 'turn_done'].includes(f.type)) continue;
          for (const [j, g] of hs.entries()) {
            if (j === i || (f.to !== '*' && f.to !== M[j]!.hex)) continue;
            moved++;
            if (f.type === 'proposal' || f.type === 'turn' || f.type === 'turn_done')
              g.c.onTurnFrame(M[i]!.hex, f.type, f.body);
            await g.c.handle(M[i]!.hex, f.type, f.body);
          }
        }
      }
      if (moved === 0) return;
    }
  };
  const run = async (fromSlot: number, slots: number): Promise<void> => {
    for (let at = fromSlot * SLOT; at < (fromSlot + slots) * SLOT; at += SLOT / 4) {
      for (const h of hs) h.clock.now = at;
      for (const h of hs) {
        await h.c.tick();
        await deliver();
      }
    }
  };
  return { hs, deliver, run };
}

async function finalizedAnywhere(hs: Harness[], id: string): Promise<string[]> {
  const out: string[] = [];
  for (const h of hs) {
    const r = await getRequest(h.store, id);
    out.push(r?.status ?? 'unknown');
  }
  return out;
}

describe('rival payments split by a malicious proposer', () => {
  it('control: shown to two members only, the third pays the request and merges', async (t) => {
    const { hs, deliver, run } = await honest(t);
    const C: Proposal = proposal([REQ(0)], [UTXO(0)], MAL);
    await hs[0]!.c.onProposalFrame(MAL, C);
    await hs[1]!.c.onProposalFrame(MAL, C);
    await deliver();
    await run(10, 40);
    const statuses = await finalizedAnywhere(hs, REQ(0).id);
    assert.deepEqual(statuses, ['signed', 'signed', 'signed']);
  });

  it('C to members 0 and 1, C2 to member 2, own sets withheld: the request is paid within 40 slots', async (t) => {
    const { hs, deliver, run } = await honest(t);
    const C = proposal([REQ(0)], [UTXO(0)], MAL);
    const C2 = proposal([REQ(0)], [UTXO(1)], MAL);
    for (const [h, p] of [
      [hs[0]!, C],
      [hs[1]!, C],
      [hs[2]!, C2],
    ] as const)
      await h.c.onProposalFrame(MAL, p);
    await deliver();
    await run(10, 40);
    const statuses = await finalizedAnywhere(hs, REQ(0).id);
    const held = [
      (await getUtxo(hs[0]!.store, UTXO(0)))?.reservedBy === checkProposal(C).txid,
      (await getUtxo(hs[2]!.store, UTXO(1)))?.reservedBy === checkProposal(C2).txid,
    ];
    const finals = await Promise.all(
      hs.map(async (h) => (await h.store.get(finalizedKey(checkProposal(C).txid))) !== undefined),
    );
    assert.deepEqual(
      statuses,
      ['signed', 'signed', 'signed'],
      `after 40 slots: statuses ${statuses}, inputs still held ${held}, C finalized ${finals}`,
    );
  });
});
