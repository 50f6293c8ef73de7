import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { BitcoinObserver } from '../../../src/chain/observer.js';
import type { RpcTransaction } from '../../../src/chain/rpc.js';
import { requestId } from '../../../src/evm/request-id.js';
import { getRequest, stageNewRequest } from '../../../src/evm/request-store.js';
import { createLogger } from '../../../src/node/log.js';
import { ReserveAuditor } from '../../../src/node/reserves.js';
import { Safety } from '../../../src/node/safety.js';
import { ChainSettlement } from '../../../src/node/settlement.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { matchCommitment } from '../../../src/wallet/commitment.js';
import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import {
  buildMerge,
  buildPayments,
  paymentOutputs,
  requirePayments,
  unsignedSpend,
  type PaymentRequest,
} from '../../../src/wallet/payment.js';
import { proposalFromPayment, checkProposal } from '../../../src/wallet/proposal.js';
import { validateProposal, type ValidationState } from '../../../src/wallet/validate.js';
import { rpcTransaction, scanOf, ScriptedChain } from '../../support/scripted-chain.js';
import { openTempStore } from '../../support/tempdir.js';
import { testRequest } from '../../support/requests.js';
import type { Store } from '../../../src/storage/store.js';
import type { UtxoRecord } from '../../../src/storage/records.js';

// A payment whose requests are committed in an order other than ascending ids is signed by honest
// validators (nothing requires the order: an honest merge commits its rivals' requests in their
// order), and a member that holds no finalized record of it (a malicious proposer kept the record
// and its own signature sets to itself and broadcast the transaction; or the member was down past
// the paid depth) reads its requests back from the chain (matchCommitment). It could not when each
// output had one candidate: it kept the paid requests as owed while their inputs left its books, the
// reserve audit found a shortfall and the member paused itself, again after each resume.

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i + 90))),
});
const FED = toHex(federation.scriptPubKey);
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

/** The two requests paid in DESCENDING id order: same inputs, same share, outputs swapped. */
function reversedPayment(
  requests: PaymentRequest[],
  coins: { txid: string; vout: number; value: bigint; scriptPubKey: Uint8Array }[],
) {
  const [sorted] = requirePayments(buildPayments(requests, coins, 2, federation, { maxOutputs: 10 }), requests.length);
  const share = requests.find((r) => r.id === sorted!.requestIds[0])!.sats - sorted!.tx.outputs[1]!.value;
  const reversed = [...requests].sort((a, b) => (a.id < b.id ? 1 : -1));
  const inputTotal = sorted!.prevouts.reduce((a, p) => a + p.value, 0n);
  const coinsUsed = sorted!.tx.inputs.map((i, k) => ({ ...sorted!.prevouts[k]!, txid: i.txid, vout: i.vout }));
  const tx = unsignedSpend(coinsUsed, paymentOutputs(reversed, inputTotal, share, federation));
  return { ...sorted!, tx, requestIds: reversed.map((r) => r.id) };
}

describe('a confirmed payment in non-ascending request order, at a member that never saw it', () => {
  const requests: PaymentRequest[] = [1, 2].map((i) => ({
    id: requestId(`0x${hex32(i)}`, 0),
    scriptPubKey: witnessScript(0, new Uint8Array(20).fill(i)),
    sats: 30_000_000n,
  }));
  const coins = [0, 1].map((vout) => ({
    txid: hex32(7),
    vout,
    value: 50_000_000n,
    scriptPubKey: federation.scriptPubKey,
  }));

  it('is signed by an honest validator and read back from the chain', () => {
    const payment = reversedPayment(requests, coins);
    const proposal = proposalFromPayment(payment, 1, toHex(federation.pubkeys[0]!));
    const utxos = new Map<string, UtxoRecord>(
      coins.map((c) => [`${c.txid}:${c.vout}`, { ...c, height: 100, state: 'unspent' as const }]),
    );
    const state: ValidationState = {
      federation,
      sender: toHex(federation.pubkeys[0]!),
      request: (id) => {
        const r = requests.find((q) => q.id === id);
        return r && { status: 'accepted', scriptPubKey: r.scriptPubKey, sats: r.sats, first: true };
      },
      utxo: (name) => utxos.get(name),
      signedPayments: () => [],
      holder: () => undefined,
      fee: { floor: 1, estimate: 2, maxMultiple: 3, maxRate: 500, maxSharePerRequest: 100_000n },
      chain: null,
      limits: DEFAULT_LIMITS,
      released: () => false,
      outflow: { window: 7, used: 0n },
    };
    assert.deepEqual(validateProposal(checkProposal(proposal), state), { ok: true }, 'an honest member signs it');
    assert.deepEqual(
      matchCommitment(payment.tx.outputs, requests),
      payment.requestIds,
      'a member that missed the finalized record reads the requests back from the confirmed transaction',
    );
  });

  it('leaves a member that missed the finalized record with its requests signed, its reserves whole, not paused', async (t) => {
    const store: Store = await openTempStore(t, federation.descriptor);
    const chain = new ScriptedChain(100);
    const funding: RpcTransaction = {
      txid: hex32(7),
      hash: hex32(7),
      vin: [{ coinbase: '00', sequence: 0 }],
      vout: [0, 1].map((n) => ({ n, value: 0.5, scriptPubKey: { hex: FED } })),
    };
    chain.mine([funding]);
    const observer = new BitcoinObserver({ store, chain, federationScript: federation.scriptPubKey, startHeight: 100 });
    await observer.sync();
    // the victim ingested both requests; it never saw the proposal (nor the finalized record)
    for (const [i, r] of requests.entries()) {
      const batch = store.batch();
      stageNewRequest(
        batch,
        testRequest({ txHash: `0x${hex32(i + 1)}`, sats: r.sats, scriptPubKey: r.scriptPubKey }),
        'then',
      );
      await batch.write({ sync: true });
    }
    for (const r of requests) assert.ok(await getRequest(store, r.id), `request ${r.id} ingested`);

    const lines: Record<string, unknown>[] = [];
    const log = createLogger({ level: 'debug', write: (line) => void lines.push(JSON.parse(line)) });
    const safety = new Safety(store, log);
    const auditor = new ReserveAuditor({
      store,
      federation,
      core: { scanTxOutSet: async () => scanOf(chain, federation.scriptPubKey) },
      safety,
      log,
    });
    const settlement = new ChainSettlement({
      store,
      federation,
      rpc: { broadcast: async () => 'accepted' as const },
      observer,
      limits: DEFAULT_LIMITS,
      paidConfirmations: 3,
      rbfAfterBlocks: 2,
      maxFeeRate: 500,
      log,
      onSettled: () => undefined,
      alarm: (kind, detail, fields) => safety.alarm(kind, detail, { ...fields }),
    });
    await auditor.tick();
    assert.equal((await auditor.report()).verdict, 'ok');

    // t members signed it (the proposer's quorum); it confirms
    const payment = reversedPayment(requests, coins);
    chain.mine([rpcTransaction(payment.tx)]);
    await settlement.tick(); // observer.sync + adoption of confirmed spends
    await auditor.tick();
    const r = await auditor.report();
    const statuses = await Promise.all(requests.map(async (q) => (await getRequest(store, q.id))?.status));
    assert.deepEqual(
      { paused: safety.paused?.reasons.map((x) => x.kind) ?? null, faults: r.faults.map((f) => f.kind), statuses },
      { paused: null, faults: [], statuses: ['signed', 'signed'] },
      `assets ${r.assets.sats}, liabilities ${r.liabilities.sats}; alarms: ${lines
        .filter((l) => l.alarm)
        .map((l) => l.kind)
        .join(', ')}`,
    );
  });

  it("is what an honest merge makes: it commits the rivals' requests in their order", () => {
    // rival A paid request 2, rival B request 1 (coordinator.ts: ids = group.flatMap(r => r.requestIds))
    const merge = buildMerge([requests[1]!, requests[0]!], [[coins[0]!], [coins[1]!]], 2, federation);
    assert.ok(merge);
    assert.deepEqual(
      matchCommitment(merge.tx.outputs, requests),
      merge.requestIds,
      `a member that missed the merge's finalized record reads it back (committed order ${merge.requestIds.map((i) => i.slice(-4)).join(', ')})`,
    );
  });

  // Open: matching tries at most maxTries assignments, and twenty requests an outsider burned to one
  // address with one amount make more than that; the reserve audit then still finds a shortfall
  it(
    'even in ascending order, when the payment takes the last of many look-alike requests',
    { todo: 'open: see above' },
    () => {
      // an outsider burns 20 identical requests (one address, one amount); a malicious proposer pays the 5 highest
      const same = witnessScript(0, new Uint8Array(20).fill(9));
      const twins: PaymentRequest[] = Array.from({ length: 20 }, (_, i) => ({
        id: requestId(`0x${hex32(100 + i)}`, 0),
        scriptPubKey: same,
        sats: 2_000_000n,
      }));
      const [payment] = requirePayments(buildPayments(twins.slice(15), coins, 2, federation, { maxOutputs: 10 }), 5);
      assert.deepEqual(matchCommitment(payment!.tx.outputs, twins), payment!.requestIds, 'read back from the chain');
    },
  );
});
