import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { getRequest } from '../../../src/evm/request-store.js';
import { finalizedKey } from '../../../src/storage/keys.js';
import { checkProposal } from '../../../src/wallet/proposal.js';
import { getUtxo } from '../../../src/wallet/utxos.js';
import type { Proposal } from '../../../src/storage/records.js';
import { honestMembers, M, proposal, REQ, splitOverRivals, UTXO, type Harness } from '../../support/coordinator.js';

// A malicious member (M[3]) splits the honest members over two payments of one request that do not
// conflict, and withholds its own sets. Nobody proposes the request again (it is 'batched' at every
// honest member), so no proposer learned of both rivals and nothing merged them: the request stalled
// for good (found by review). Each member now sends a stalled payment's proposal again with its set.

const MAL = M[3]!.hex;
const SLOT = 1000;

const honest = (t: TestContext) => honestMembers(t, 1, SLOT);

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
    const members = await honest(t);
    const { hs, run } = members;
    const { C, C2 } = await splitOverRivals(members);
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
