import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { serializeTx, txid as txidOf } from '../../../src/bitcoin/tx.js';
import { BitcoinObserver } from '../../../src/chain/observer.js';
import { stageNewRequest } from '../../../src/evm/request-store.js';
import { recordFinalized } from '../../../src/node/finalize.js';
import { chainView, signedPayments, signProposal, type SigningPolicy } from '../../../src/node/signer.js';
import { SigningPool } from '../../../src/signing/pool.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { openPaymentKey, supersededKey } from '../../../src/storage/keys.js';
import type { Store } from '../../../src/storage/store.js';
import { buildTestSpend, makeRotationPlan, type HandoffPolicy } from '../../../src/wallet/handoff.js';
import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import { buildReplacement, type PaymentRequest, type SpendableUtxo } from '../../../src/wallet/payment.js';
import { checkProposal, proposalFromPayment } from '../../../src/wallet/proposal.js';
import { getUtxo } from '../../../src/wallet/utxos.js';
import { TEST_POLICY } from '../../support/policy.js';
import { testRequest } from '../../support/requests.js';
import { ScriptedChain } from '../../support/scripted-chain.js';
import { testSettlement } from '../../support/settlement.js';
import { openTempStore } from '../../support/tempdir.js';

// A handoff this member knows only as a finalized record (it did not sign it: the other members
// finalized the test spend T while this member was behind the activation block, and sent it the
// record) holds its input a. A payment of a request may take a over (a handoff has no request to
// strand, so input_held lets it): the malicious proposer has this member sign P, paying e from a, and
// keeps the set to itself. The others pay e with A from another output; A, finalized, supersedes P.
// standingPayments.held looks for what P took inputs from among P's finalized conflicts (P is not
// finalized here), the proposals stored here spending its inputs (T was never proposed here: only its
// finalized record is stored) and the payments of P's requests (a handoff pays none): T is not found,
// and a goes to the wallet while T, finalized and unspent-from, can still confirm. This member then
// may propose and sign a payment of another request from a: a conflict with the test spend.

const keys = [1, 2, 3, 4].map((i) => Buffer.alloc(32, i));
const pub = (k: Buffer) => schnorrBackend().xonlyPublicKey(k);
const from = buildFederation({ network: 'regtest', threshold: 3, pubkeys: keys.map(pub) });
const to = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [5, 6, 7].map((i) => pub(Buffer.alloc(32, i))),
});
const plan = makeRotationPlan(from, to, { activationHeight: 50, evmBoundary: 100 }, 'handoff-supersession');
const handoff: HandoffPolicy = { plan, side: 'from', testAmount: 100_000n, maxFee: 100_000n };
const pool = new SigningPool(from, { secretKey: keys[0]!, size: 1 });
after(() => pool.destroy());
const PROPOSER = toHex(from.pubkeys[3]!);
const PAID = 3;
const policy: SigningPolicy = { ...TEST_POLICY, paidDepth: PAID, handoff };
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

type Spend = { tx: Parameters<typeof txidOf>[0]; prevouts: readonly SpendableUtxo[]; requestIds?: readonly string[] };
const sign = (store: Store, p: Spend) =>
  signProposal(
    store,
    pool,
    from,
    checkProposal(proposalFromPayment({ ...p, requestIds: p.requestIds ?? [] }, 1, PROPOSER)),
    policy,
    PROPOSER,
  );
const finalize = async (store: Store, p: Spend) =>
  (await recordFinalized(
    store,
    from,
    txidOf(p.tx),
    p.tx,
    { tx: serializeTx(p.tx), prevouts: p.prevouts, requestIds: [...(p.requestIds ?? [])] },
    'test',
    { limits: DEFAULT_LIMITS, paidDepth: PAID },
  ))!;

describe('a test spend known here only by its finalized record, whose input a superseded payment took', () => {
  it('keeps its input: it is not given to the wallet while the test spend can still confirm', async (t) => {
    const store = await openTempStore(t, from.descriptor);
    const chain = new ScriptedChain(100);
    const script = toHex(from.scriptPubKey);
    chain.mine([
      {
        txid: hex32(7),
        hash: hex32(7),
        vin: [{ coinbase: '00', sequence: 0 }],
        vout: Array.from({ length: 2 }, (_, n) => ({ n, value: 0.5, scriptPubKey: { hex: script } })),
      },
    ]);
    chain.mine([]);
    const observer = new BitcoinObserver({ store, chain, federationScript: from.scriptPubKey, startHeight: 100 });
    await observer.sync();
    const settlement = testSettlement(store, from, observer, { paidConfirmations: PAID, handoff });
    const [a, b] = [0, 1].map((vout): SpendableUtxo => ({
      txid: hex32(7),
      vout,
      value: 50_000_000n,
      scriptPubKey: from.scriptPubKey,
    })) as [SpendableUtxo, SpendableUtxo];
    const batch = store.batch();
    const requests: PaymentRequest[] = [];
    for (let k = 0; k < 2; k++) {
      const scriptPubKey = witnessScript(0, new Uint8Array(20).fill(3 + k));
      const { id } = stageNewRequest(
        batch,
        testRequest({ txHash: `0x${hex32(9 + k)}`, sats: 30_000_000n, scriptPubKey }),
        'then',
      );
      requests.push({ id, scriptPubKey, sats: 30_000_000n });
    }
    await batch.write({ sync: true });
    const [e] = requests as [PaymentRequest, PaymentRequest];

    // T, the test spend of a, finalized by the others; this member gets the record only
    const T = buildTestSpend([a], handoff.testAmount, 2, plan)!;
    const tid = txidOf(T.tx);
    await settlement.onFinalized(await finalize(store, T));
    assert.equal((await getUtxo(store, a))?.reservedBy, tid, 'T holds a');

    // P, the malicious proposer's payment of e from a: signed here, never finalized here
    const P = buildReplacement([e], [a], 2, from)!;
    const signedP = await sign(store, P);
    assert.equal(signedP.ok, true, JSON.stringify(signedP));
    assert.equal((await getUtxo(store, a))?.reservedBy, txidOf(P.tx), 'P took a over from T');

    // A pays e from b, finalized by the others: it supersedes P
    const A = buildReplacement([e], [b], 2, from)!;
    await settlement.onFinalized(await finalize(store, A));
    assert.notEqual(await store.get(supersededKey(txidOf(P.tx))), undefined, 'A superseded P');
    await settlement.tick();

    // T is finalized, followed here, none of its inputs spent: it can still confirm
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
