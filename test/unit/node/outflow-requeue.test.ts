import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { serializeTx, txid as txidOf } from '../../../src/bitcoin/tx.js';
import { BitcoinObserver, storedTipHeight } from '../../../src/chain/observer.js';
import { getRequest, stageNewRequest } from '../../../src/evm/request-store.js';
import { recordFinalized } from '../../../src/node/finalize.js';
import { signProposal } from '../../../src/node/signer.js';
import { SigningPool } from '../../../src/signing/pool.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { outflowKey } from '../../../src/storage/keys.js';
import type { Store } from '../../../src/storage/store.js';
import { outflowWindow, type OutflowLimits } from '../../../src/wallet/limits.js';
import {
  buildReplacement,
  type Payment,
  type PaymentRequest,
  type SpendableUtxo,
} from '../../../src/wallet/payment.js';
import { checkProposal, proposalFromPayment } from '../../../src/wallet/proposal.js';
import { TEST_POLICY } from '../../support/policy.js';
import { testRequest } from '../../support/requests.js';
import { rpcTransaction, ScriptedChain } from '../../support/scripted-chain.js';
import { testSettlement } from '../../support/settlement.js';
import { openTempStore } from '../../support/tempdir.js';

// The rolling cap counted a request once, the first time it went into a payment here, and never
// again: not when that payment lost and the request went back to the queue. A malicious member (with
// a compromised sidechain minting the requests) has this member sign, in each window k, a payment P_k
// of a request X_k worth the whole cap, then has a conflicting payment Q_k of a small request from the
// same input finalized by the others and confirmed: P_k lost, X_k is queued again, nothing left. After
// K windows, in one window, this member signed a payment of X_1 … X_K and a fresh X_{K+1}: (K + 1)
// caps. Done at t − f honest members at once (each signs P'_k from other inputs, killed the same way),
// they finalize the whole stockpile in one block, far past what docs/config.md allows.

const secretKeys = [1, 2, 3].map((i) => Buffer.alloc(32, i));
const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: secretKeys.map((k) => schnorrBackend().xonlyPublicKey(k)),
});
const pool = new SigningPool(federation, { secretKey: secretKeys[0]!, size: 1 });
after(() => pool.destroy());
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');
const PROPOSER = toHex(federation.pubkeys[1]!);
const PAID = 3;
const WINDOW = 10;
const CAP = 30_000_000n;
const limits: OutflowLimits = { maxRequestSats: CAP, windowSats: CAP, windowBlocks: WINDOW };
const policy = { ...TEST_POLICY, paidDepth: PAID, limits };
/** Windows in which a payment of a whole cap is signed here and then lost. */
const LOST = 5;

const pay = (requests: PaymentRequest[], inputs: SpendableUtxo[], rate = 2): Payment =>
  buildReplacement(requests, inputs, rate, federation)!;

describe('rolling cap: requests given back to the queue by a lost payment', () => {
  it('are counted again when paid again, so one window never sees more than windowSats signed here', async (t) => {
    const store: Store = await openTempStore(t, federation.descriptor);
    const chain = new ScriptedChain(100);
    const script = toHex(federation.scriptPubKey);
    const outputs = LOST + 4;
    chain.mine([
      {
        txid: hex32(7),
        hash: hex32(7),
        vin: [{ coinbase: '00', sequence: 0 }],
        vout: Array.from({ length: outputs }, (_, n) => ({ n, value: 0.5, scriptPubKey: { hex: script } })),
      },
    ]);
    const observer = new BitcoinObserver({ store, chain, federationScript: federation.scriptPubKey, startHeight: 100 });
    await observer.sync();
    const settlement = testSettlement(store, federation, observer, { paidConfirmations: PAID, limits });
    const inputs: SpendableUtxo[] = Array.from({ length: outputs }, (_, vout) => ({
      txid: hex32(7),
      vout,
      value: 50_000_000n,
      scriptPubKey: federation.scriptPubKey,
    }));
    // X_k: a whole cap each (the sidechain is compromised); Y_k: small, what the conflicting payments pay
    const batch = store.batch();
    const request = (k: number, sats: bigint): PaymentRequest => {
      const scriptPubKey = witnessScript(0, new Uint8Array(20).fill(10 + k));
      const { id } = stageNewRequest(
        batch,
        testRequest({ txHash: `0x${hex32(1000 + k)}`, sats, scriptPubKey }),
        'then',
      );
      return { id, scriptPubKey, sats };
    };
    const X = Array.from({ length: LOST + 1 }, (_, k) => request(k, CAP));
    const Y = Array.from({ length: LOST }, (_, k) => request(100 + k, 2_000_000n));
    await batch.write({ sync: true });

    const sign = async (p: Payment) => {
      const o = await signProposal(
        store,
        pool,
        federation,
        checkProposal(proposalFromPayment(p, 1, PROPOSER)),
        policy,
        PROPOSER,
      );
      return o.ok ? 'signed' : `${o.reason}: ${o.detail}`;
    };
    const window = async () => outflowWindow(await storedTipHeight(store), limits);
    const nextWindow = async () => {
      const target = ((await window()) + 1) * WINDOW;
      while (((await storedTipHeight(store)) ?? 0) < target) {
        chain.mine([]);
        await observer.sync();
      }
    };

    for (let k = 0; k < LOST; k++) {
      await nextWindow();
      // the malicious proposer's payment of X_k: this member signs it, X_k counts in this window
      const P = pay([X[k]!], [inputs[k]!]);
      assert.equal(await sign(P), 'signed');
      // Q_k, of Y_k from the same input, finalized by other members and confirmed: P_k lost
      const Q = pay([Y[k]!], [inputs[k]!]);
      const record = await recordFinalized(
        store,
        federation,
        txidOf(Q.tx),
        Q.tx,
        { tx: serializeTx(Q.tx), prevouts: Q.prevouts, requestIds: [...Q.requestIds] },
        'from a peer',
        { limits, paidDepth: PAID },
      );
      await settlement.onFinalized(record!);
      chain.mine([rpcTransaction(Q.tx)]);
      for (let d = 1; d < PAID; d++) chain.mine([]);
      await settlement.tick();
      assert.equal((await getRequest(store, X[k]!.id))?.status, 'accepted', `X_${k} back in the queue`);
    }

    // one fresh window: nothing was signed in it yet
    await nextWindow();
    const w = await window();
    assert.equal(await store.get(outflowKey(w)), undefined);
    // one payment of the stockpile X_0..X_{LOST-1} and a fresh X_LOST: (LOST + 1) × windowSats
    const F = pay(X, inputs.slice(LOST, LOST + 4));
    const total = X.reduce((a, r) => a + r.sats, 0n);
    const outcome = await sign(F);
    assert.ok(
      outcome !== 'signed',
      `signed ${total} sats of requests (${total / CAP}× windowSats ${CAP}) in window ${w}, counting only ${await store.get(outflowKey(w))}`,
    );
  });
});
