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
import { Outflow } from '../../../src/node/outflow.js';
import { ChainSettlement } from '../../../src/node/settlement.js';
import { SigningPool } from '../../../src/signing/pool.js';
import type { FinalizedBody } from '../../../src/storage/records.js';
import type { PeerNetwork } from '../../../src/p2p/network.js';
import type { Store } from '../../../src/storage/store.js';
import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import { buildReplacement } from '../../../src/wallet/payment.js';
import { getUtxo, registerUtxo, stageSpent } from '../../../src/wallet/utxos.js';
import { federation, finalizedBody, M } from '../../support/coordinator.js';
import { testRequest } from '../../support/requests.js';
import { openTempStore } from '../../support/tempdir.js';

// A request's id (EVM tx hash + log ordinal) does not say what its log asked: the same transaction
// re-mined on another branch after a reorg deeper than the confirmation depth can emit a
// RequestPegOut with another amount (a contract wallet that reads its own state). Members 0-2
// ingested the old log (3,000,000 sats to A) and finalized F, paying A 3,000,000 less its share; on
// their side the request is orphaned by the reorg. Member 3 lagged and ingests the final log of the
// new branch: 9,000,000 sats to the same address A. Matched to F by its output's script alone (in
// stageFinalized, and in matchLate when F came first), the 9,000,000-sat request went 'signed', then
// 'paid', although A got 3,000,000 less a share: the user underpaid by 6,000,000 sats, and no member
// would ever pay the rest.

const pool = new SigningPool(federation, { size: 1 });
after(() => pool.destroy());
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');
const ID = `0x${hex32(0xabc)}:0`;
const A = witnessScript(0, new Uint8Array(20).fill(0xaa));
const OLD = { id: ID, scriptPubKey: A, sats: 3_000_000n };
const NEW_SATS = 9_000_000n;
const U = { txid: hex32(202), vout: 0, value: 20_000_000n, scriptPubKey: federation.scriptPubKey };
const me = M[3]!.hex;

// the payment of the old log, signed by members 0, 1, 2
const payment = buildReplacement([OLD], [U], 2, federation)!;
const F: { txid: string; body: FinalizedBody } = {
  txid: txidOf(payment.tx),
  body: finalizedBody(payment, [ID], [0, 1, 2]),
};

interface Internals {
  onFinalizedFrame(peer: string, body: FinalizedBody): Promise<void>;
  matchLate(): Promise<void>;
}

async function member(t: TestContext): Promise<{ store: Store; c: Internals; ingestNew: () => Promise<void> }> {
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
  // the log of the new branch, as EvmObserver.ingest stages it: same tx hash and ordinal, same
  // address A, another amount
  const ingestNew = async (): Promise<void> => {
    const b = store.batch();
    stageNewRequest(
      b,
      testRequest({ ...parseRequestId(ID), blockNumber: 9, sats: NEW_SATS, scriptPubKey: A, bitcoinAddress: 'A' }),
      'now',
    );
    await b.write({ sync: true });
  };
  return { store, c: coordinator as unknown as Internals, ingestNew };
}

async function settleOnChain(store: Store): Promise<void> {
  const batch = store.batch();
  stageSpent(batch, (await getUtxo(store, U))!, F.txid);
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
      confirmations: async (txid: string) => (txid === F.txid ? 6 : 0),
    } as unknown as BitcoinObserver,
  });
  await settlement.load();
  await settlement.tick();
}

const paidToA = payment.tx.outputs[1]!.value;

describe('a request re-mined with a larger amount after a deep EVM reorg, to the same address', () => {
  for (const order of ['finalized payment first (late match)', 'ingested first (stageFinalized)'] as const) {
    it(`is not taken as paid by a payment of the old log's amount: ${order}`, async (t) => {
      const { store, c, ingestNew } = await member(t);
      if (order === 'ingested first (stageFinalized)') {
        await ingestNew();
        await c.onFinalizedFrame(M[0]!.hex, F.body);
      } else {
        await c.onFinalizedFrame(M[0]!.hex, F.body);
        await ingestNew();
        await c.matchLate();
      }
      await settleOnChain(store);
      const r = (await getRequest(store, ID))!;
      assert.ok(paidToA < NEW_SATS - 1_000_000n, 'F pays A far less than the final log asks');
      assert.notEqual(
        r.status,
        'paid',
        `request for ${NEW_SATS} sats to A marked paid by ${F.txid}, which paid A ${paidToA} sats (the old log's amount): history ${JSON.stringify(r.history.map((h) => h.status))}`,
      );
    });
  }
});
