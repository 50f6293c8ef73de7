import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { txid as txidOf } from '../../../src/bitcoin/tx.js';
import type { BitcoinObserver } from '../../../src/chain/observer.js';
import { parseRequestId } from '../../../src/evm/request-id.js';
import { getRequest, stageNewRequest } from '../../../src/evm/request-store.js';
import { Coordinator } from '../../../src/node/coordinator.js';
import { createLogger } from '../../../src/node/log.js';
import { Outflow, windowOutflow } from '../../../src/node/outflow.js';
import { ChainSettlement } from '../../../src/node/settlement.js';
import { SigningPool } from '../../../src/signing/pool.js';
import { finalizedKey, signatureMadeKey } from '../../../src/storage/keys.js';
import type { FinalizedBody, FinalizedRecord } from '../../../src/storage/records.js';
import type { PeerNetwork } from '../../../src/p2p/network.js';
import type { Store } from '../../../src/storage/store.js';
import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import { buildReplacement } from '../../../src/wallet/payment.js';
import { checkProposal } from '../../../src/wallet/proposal.js';
import { getUtxo, registerUtxo, stageSpent } from '../../../src/wallet/utxos.js';
import {
  coordinatorOf,
  federation,
  finalizedBody,
  M,
  memberStore,
  proposal,
  REQ,
  UTXO,
} from '../../support/coordinator.js';
import { testRequest } from '../../support/requests.js';
import { openTempStore } from '../../support/tempdir.js';

// A request paid by a finalized payment before this member ingested it is matched once it is
// ingested (the coordinator's late requests). Here two payments of it were finalized (a payment and
// its BIP125 replacement, both signed by t members): it must count once in the rolling cap, and be
// paid whichever of them confirms.

const pool = new SigningPool(federation, { size: 1 });
after(() => pool.destroy());
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');
const R = { id: `0x${hex32(1)}:0`, scriptPubKey: witnessScript(0, new Uint8Array(20).fill(7)), sats: 3_000_000n };
const U = { txid: hex32(101), vout: 0, value: 10_000_000n, scriptPubKey: federation.scriptPubKey };
/** The member under test: it signs neither payment. */
const me = M[3]!.hex;

/** A payment of R from U at `rate` sat/vB, signed by the other three members, as the finalized frame announces it. */
function finalized(rate: number): { txid: string; body: FinalizedBody } {
  const payment = buildReplacement([R], [U], rate, federation)!;
  return { txid: txidOf(payment.tx), body: finalizedBody(payment, [R.id], [0, 1, 2]) };
}
const F1 = finalized(2);
const F2 = finalized(20);

/** What these tests reach inside the coordinator: a peer's finalized frame, and the late requests matched. */
interface Internals {
  onFinalizedFrame(peer: string, body: FinalizedBody): Promise<void>;
  matchLate(): Promise<void>;
}

/** The member that signed neither payment, with U among its outputs and R not ingested. */
async function member(t: TestContext): Promise<{ store: Store; c: Internals; ingest: () => Promise<void> }> {
  const store = await openTempStore(t, federation.descriptor);
  const batch = store.batch();
  await registerUtxo(batch, { ...U, height: 1, pegIn: true });
  await batch.write({ sync: true });
  const coordinator = new Coordinator({
    store,
    federation,
    pool,
    network: { key: me, broadcast() {}, send() {}, registerType() {}, stats: { queued: 0 } } as unknown as PeerNetwork,
    policy: async () => {
      throw new Error('no signing here');
    },
    paidDepth: 1,
    maxOutputs: 10,
    slotMs: 1000,
    log: createLogger({ level: 'error', write: () => {} }),
    outflow: new Outflow(store, me, federation.threshold, federation.pubkeys.map(toHex), DEFAULT_LIMITS),
    paused: () => false,
    onFinalized: async () => {},
  });
  t.after(() => coordinator.stop());
  const ingest = async (): Promise<void> => {
    const b = store.batch();
    const { txHash, ordinal } = parseRequestId(R.id);
    stageNewRequest(b, testRequest({ txHash, ordinal, sats: R.sats, scriptPubKey: R.scriptPubKey }), 'then');
    await b.write({ sync: true });
  };
  return { store, c: coordinator as unknown as Internals, ingest };
}

/** Payment `txid` of R from U confirms deep (the observer saw U spent by it), and settlement runs. */
async function confirmed(store: Store, txid: string): Promise<void> {
  const batch = store.batch();
  stageSpent(batch, (await getUtxo(store, U))!, txid);
  await batch.write({ sync: true });
  const settlement = new ChainSettlement({
    store,
    federation,
    log: createLogger({ level: 'error', write: () => {} }),
    paidConfirmations: 1,
    rbfAfterBlocks: 6,
    maxFeeRate: 1000,
    limits: DEFAULT_LIMITS,
    onSettled: () => {},
    rpc: { broadcast: async () => 'accepted' as const },
    observer: {
      sync: async () => {},
      confirmations: async (id: string) => (id === txid ? 6 : 0),
    } as unknown as BitcoinObserver,
  });
  await settlement.load();
  await settlement.tick();
}

describe('a request finalized before it was ingested here', () => {
  it('one payment of it: matched once ingested, and counted in the rolling cap', async (t) => {
    const { store, c, ingest } = await member(t);
    await c.onFinalizedFrame('peer', F1.body);
    await ingest();
    await c.matchLate();
    assert.equal((await getRequest(store, R.id))?.status, 'signed');
    assert.equal((await windowOutflow(store, DEFAULT_LIMITS)).used, R.sats);
    assert.deepEqual((await store.get<FinalizedRecord>(finalizedKey(F1.txid)))?.requestIds, [R.id]);
  });

  it('and its replacement, finalized after it was ingested: counted once in the rolling cap', async (t) => {
    const { store, c, ingest } = await member(t);
    await c.onFinalizedFrame('peer', F1.body);
    await ingest();
    await c.onFinalizedFrame('peer', F2.body);
    await c.matchLate();
    assert.equal((await getRequest(store, R.id))?.status, 'signed');
    assert.equal((await windowOutflow(store, DEFAULT_LIMITS)).used, R.sats);
    // both records pay it: whichever confirms settles it
    for (const { txid } of [F1, F2]) {
      const record = await store.get<FinalizedRecord>(finalizedKey(txid));
      assert.deepEqual([record?.requestIds, record?.unmatched], [[R.id], {}], txid);
    }
  });

  it('and its replacement, both finalized before it was ingested: paid when the first one confirms', async (t) => {
    const { store, c, ingest } = await member(t);
    await c.onFinalizedFrame('peer', F1.body);
    await c.onFinalizedFrame('peer', F2.body);
    await ingest();
    await c.matchLate();
    assert.equal((await windowOutflow(store, DEFAULT_LIMITS)).used, R.sats);
    await confirmed(store, F1.txid);
    assert.equal((await getRequest(store, R.id))?.status, 'paid');
  });
});

// Found by review: a finalized payment's requests not ingested here yet were left out of what holds
// its input, so a lagging member signed a payment of another request from that input at no fee step
// (a malicious proposer's), and refused every other payment of that request until the first confirmed
describe('a finalized payment of a request not ingested here yet', () => {
  const F = buildReplacement([REQ(1)], [UTXO(0)], 2, federation)!;
  const body = finalizedBody(F, [REQ(1).id], [0, 1, 2]);

  for (const [ingested, what] of [
    [2, 'ingested'],
    [1, 'not ingested yet'],
  ] as const) {
    it(`holds its input against a payment that does not pay it, the request ${what}`, async (t) => {
      const store = await memberStore(t, ingested, 1);
      const { c } = await coordinatorOf(t, 3, store);
      await c.onFinalizedFrame(M[0]!.hex, body);
      const q = proposal([REQ(0)], [UTXO(0)], M[0]!.hex);
      await c.onProposalFrame(M[0]!.hex, q);
      assert.equal(await store.get(signatureMadeKey(checkProposal(q).txid)), undefined, 'refused (input_held)');
      assert.equal((await getUtxo(store, UTXO(0)))?.reservedBy, txidOf(F.tx));
    });
  }
});

// A request's id (EVM tx hash + log ordinal) does not say what its log asked: the same transaction
// re-mined on another branch after a reorg deeper than the confirmation depth can emit a
// RequestPegOut with another amount (a contract wallet that reads its own state). The other members
// ingested the old log (R: 3,000,000 sats) and finalized F1, paying R's address 3,000,000 less its
// share; this member lagged and ingests the final log of the new branch: 9,000,000 sats to the same
// address. Matched to F1 by its output's script alone (in stageFinalized, and in matchLate when F1
// came first), the request went 'signed', then 'paid': the user underpaid by 6,000,000 sats, and no
// member would ever pay the rest.
describe('a request re-mined with a larger amount after a deep EVM reorg, to the same address', () => {
  const NEW_SATS = 9_000_000n;
  const ingestNew = async (store: Store): Promise<void> => {
    const b = store.batch();
    const { txHash, ordinal } = parseRequestId(R.id);
    stageNewRequest(b, testRequest({ txHash, ordinal, sats: NEW_SATS, scriptPubKey: R.scriptPubKey }), 'now');
    await b.write({ sync: true });
  };
  for (const order of ['finalized payment first (late match)', 'ingested first (stageFinalized)'] as const) {
    it(`is not taken as paid by a payment of the old log's amount: ${order}`, async (t) => {
      const { store, c } = await member(t);
      if (order === 'ingested first (stageFinalized)') {
        await ingestNew(store);
        await c.onFinalizedFrame(M[0]!.hex, F1.body);
      } else {
        await c.onFinalizedFrame(M[0]!.hex, F1.body);
        await ingestNew(store);
        await c.matchLate();
      }
      await confirmed(store, F1.txid);
      const r = (await getRequest(store, R.id))!;
      assert.notEqual(
        r.status,
        'paid',
        `a request for ${NEW_SATS} sats marked paid by ${F1.txid}, which paid the old log's amount less its share: ` +
          JSON.stringify(r.history.map((h) => h.status)),
      );
    });
  }
});
