import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { BitcoinObserver } from '../../../src/chain/observer.js';
import {
  BitcoinRpcError,
  type BitcoinRpcClient,
  type BroadcastOutcome,
  type RpcTransaction,
} from '../../../src/chain/rpc.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { parseTx, serializeTx, txid as txidOf } from '../../../src/bitcoin/tx.js';
import { getRequest, stageNewRequest, stageStatus } from '../../../src/evm/request-store.js';
import { recordFinalized } from '../../../src/node/finalize.js';
import { ChainSettlement } from '../../../src/node/settlement.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { broadcastPrefix, finalizedKey, openPaymentKey } from '../../../src/storage/keys.js';
import {
  buildPayments,
  buildReplacement,
  type Payment,
  type PaymentRequest,
  type SpendableUtxo,
} from '../../../src/wallet/payment.js';
import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import { checkProposal, proposalFromPayment, stageProposal } from '../../../src/wallet/proposal.js';
import { getUtxo } from '../../../src/wallet/utxos.js';
import { rpcTransaction, ScriptedChain } from '../../support/scripted-chain.js';
import { counted } from '../../support/counted-store.js';
import { testSettlement } from '../../support/settlement.js';
import { openTempStore } from '../../support/tempdir.js';
import { testRequest } from '../../support/requests.js';
import type { FinalizedRecord } from '../../../src/storage/records.js';
import type { Store } from '../../../src/storage/store.js';

// Settlement against Bitcoin Core's answers, scripted (no bitcoind here): broadcast retried
// until the node has the payment, "already in the mempool" as success, 'paid' at depth,
// and a BIP125 replacement proposed once the payment lingers while the fee rate rose.

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i + 60))),
});
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

/**
 * A member with federation outputs of `outputs` sats (one funding transaction) on a scripted chain
 * it has observed, one accepted request of `sats`, and a settlement that accepts every broadcast.
 */
async function setup(
  t: Parameters<typeof openTempStore>[0],
  outputs: bigint[] = [50_000_000n, 50_000_000n],
  sats = 30_000_000n,
) {
  const store = await openTempStore(t, federation.descriptor);
  const chain = new ScriptedChain(100);
  const fedScript = toHex(federation.scriptPubKey);
  const funding: RpcTransaction = {
    txid: hex32(7),
    hash: hex32(7),
    vin: [{ coinbase: '00', sequence: 0 }],
    vout: outputs.map((value, n) => ({ n, value: Number(value) / 1e8, scriptPubKey: { hex: fedScript } })),
  };
  chain.mine([funding]);
  const observer = new BitcoinObserver({ store, chain, federationScript: federation.scriptPubKey, startHeight: 100 });
  await observer.sync();
  const scriptPubKey = witnessScript(0, new Uint8Array(20).fill(3));
  const batch = store.batch();
  const { id } = stageNewRequest(batch, testRequest({ txHash: `0x${hex32(9)}`, sats, scriptPubKey }), 'then');
  const request = { id, scriptPubKey, sats };
  await batch.write({ sync: true });
  const inputs = outputs.map((value, vout) => ({ txid: hex32(7), vout, value, scriptPubKey: federation.scriptPubKey }));
  const settlement = chainSettlement(store, observer, { broadcast: async () => 'accepted' });
  return { store, chain, observer, id, request, inputs, settlement };
}

/** A settlement of `store` on `observer`'s chain at the tests' depths, broadcasting through `rpc`. */
function chainSettlement(
  store: Store,
  observer: BitcoinObserver,
  rpc: Pick<BitcoinRpcClient, 'broadcast'>,
  onSettled: (txid: string) => void = () => undefined,
): ChainSettlement {
  return testSettlement(store, federation, observer, { rpc, onSettled });
}

/**
 * A payment of `request` from `inputs` at 2 sat/vB, recorded finalized naming `requestIds` (moved
 * to 'signed'); none, for a handoff's record.
 */
async function finalizedPayment(
  store: Store,
  request: PaymentRequest,
  inputs: SpendableUtxo[],
  requestIds: string[],
): Promise<{ payment: Payment; txid: string; record: FinalizedRecord }> {
  const [payment] = buildPayments([request], inputs, 2, federation, { maxOutputs: 10 }).payments;
  const txid = txidOf(payment!.tx);
  const record: FinalizedRecord = {
    txid,
    tx: serializeTx(payment!.tx),
    prevouts: payment!.prevouts.map((p) => ({ value: p.value, scriptPubKey: p.scriptPubKey })),
    requestIds,
    unmatched: {},
    fee: payment!.fee,
    vsize: payment!.vsize,
    conflicts: [],
    at: 'then',
  };
  await store.transaction(async (batch) => {
    for (const id of requestIds)
      stageStatus(batch, (await getRequest(batch, id))!, 'signed', 'then', `finalized in ${txid}`);
    // as recordFinalized leaves it: a payment a restart takes up again
    batch.put(finalizedKey(txid), record).put(openPaymentKey(txid), 1);
  });
  return { payment: payment!, txid, record };
}

/** `payment` as Bitcoin Core shows it in a block, spending the funding output. */
function confirmedTx(payment: Payment): RpcTransaction {
  const txid = txidOf(payment.tx);
  return {
    txid,
    hash: txid,
    vin: [{ txid: hex32(7), vout: 0, sequence: 0xfffffffd }],
    vout: payment.tx.outputs.map((o, n) => ({
      n,
      value: Number(o.value) / 1e8,
      scriptPubKey: { hex: toHex(o.scriptPubKey) },
    })),
  };
}

describe('settlement with Bitcoin Core', () => {
  it('rebroadcasts until the node has the payment, marks its requests paid at depth, and proposes a replacement when fees rise', async (t) => {
    const { store, chain, observer, id, request, inputs } = await setup(t, [100_000_000n], 40_000_000n);
    const { payment, txid, record } = await finalizedPayment(store, request, inputs, [id]);

    const answers: (BroadcastOutcome | Error)[] = [
      new BitcoinRpcError('transport', 'connection refused', {}),
      'already_in_mempool',
      'already_in_mempool',
    ];
    const rpc = {
      broadcast: async (raw: string): Promise<BroadcastOutcome> => {
        assert.equal(raw, toHex(record.tx));
        const next = answers.shift() ?? 'already_in_mempool';
        if (next instanceof Error) throw next;
        return next;
      },
    };
    const settled: string[] = [];
    const settlement = chainSettlement(store, observer, rpc, (x) => settled.push(x));
    await settlement.load();

    await settlement.onFinalized(record);
    assert.equal((await getRequest(store, id))?.status, 'signed', 'a failed broadcast changes nothing');
    await settlement.tick();
    assert.equal((await getRequest(store, id))?.status, 'broadcast', '"already in the mempool" counts as success');
    // while it waits in the mempool, a tick a second does not record an attempt a second (a day would be
    // 86,400 records, each read at every tick): again only once a block or a minute has passed
    const attemptsOf = async (): Promise<number> => {
      let n = 0;
      for await (const _ of store.entries({ prefix: broadcastPrefix(txid) })) n++;
      return n;
    };
    for (let i = 0; i < 50; i++) await settlement.tick();
    assert.equal(await attemptsOf(), 2, 'the failed attempt and the one that succeeded');

    // two blocks without it, the estimate rose from 2 to 10 sat/vB: a replacement spending the same input
    assert.deepEqual(await settlement.replacements(10), []);
    chain.mine([]);
    chain.mine([]);
    await observer.sync();
    assert.deepEqual(await settlement.replacements(2.5), [], 'not for a rise under the relay increment');
    const [replacement] = await settlement.replacements(10);
    assert.ok(replacement);
    const replaced = parseTx(replacement.unsignedTx);
    assert.deepEqual(
      replaced.inputs.map((i) => `${i.txid}:${i.vout}`),
      payment.tx.inputs.map((i) => `${i.txid}:${i.vout}`),
    );
    assert.deepEqual(replacement.requestIds, [id]);
    assert.ok(replaced.outputs[1]!.value < payment.tx.outputs[1]!.value, 'the peg-out bears the higher fee');

    // confirmed, then buried to the configured depth
    chain.mine([confirmedTx(payment)]);
    await settlement.tick();
    assert.equal((await getRequest(store, id))?.status, 'broadcast');
    assert.deepEqual(await settlement.replacements(10), [], 'a confirmed payment is not replaced');
    chain.mine([]);
    chain.mine([]);
    await settlement.tick();
    assert.equal((await getRequest(store, id))?.status, 'paid');
    assert.deepEqual(settled, [txid]);
    assert.equal(await store.get(openPaymentKey(txid)), undefined, 'paid at depth: a restart does not take it up');
    let attempts = 0;
    for await (const _ of store.entries({ prefix: broadcastPrefix(txid) })) attempts++;
    assert.ok(attempts >= 2, 'every attempt is recorded');
  });

  it('a payment the node refuses is tried again without a record a tick, and replaced once it was first tried rbfAfterBlocks ago', async (t) => {
    // a proposer (a malicious one, or an honest one before the mempool's minimum rose) got a payment
    // finalized at a rate the node no longer takes: every tick recorded a failed attempt (86,400 a
    // day, read again at each proposer turn), and since no attempt was ever taken no member proposed
    // the replacement that would pay the requests, which no other payment may pay meanwhile
    const { store, chain, observer, id, request, inputs } = await setup(t, [100_000_000n], 40_000_000n);
    const { payment, txid, record } = await finalizedPayment(store, request, inputs, [id]);
    let tries = 0;
    const refusal = (): never => {
      tries++;
      throw new BitcoinRpcError('insufficient_fee', 'mempool min fee not met', { rpcCode: -26 });
    };
    let answer: () => Promise<BroadcastOutcome> = async () => refusal();
    const settlement = chainSettlement(store, observer, { broadcast: () => answer() });
    await settlement.onFinalized(record);
    const attempts = async (): Promise<string[]> => {
      const out: string[] = [];
      for await (const [, a] of store.entries<{ outcome: string; height: number }>({ prefix: broadcastPrefix(txid) }))
        out.push(`${a.height} ${a.outcome}`);
      return out;
    };
    for (let i = 0; i < 30; i++) await settlement.tick();
    assert.equal(tries, 31, 'tried at every tick: a node that was down may take it the next second');
    assert.deepEqual(await attempts(), ['101 error: insufficient_fee'], 'one record while nothing changes');
    assert.deepEqual(await settlement.replacements(10), [], 'not before rbfAfterBlocks');
    chain.mine([]);
    chain.mine([]);
    for (let i = 0; i < 5; i++) await settlement.tick();
    assert.deepEqual(await attempts(), ['101 error: insufficient_fee', '103 error: insufficient_fee']);
    const [replacement] = await settlement.replacements(10);
    assert.ok(replacement, 'replaced at the risen rate although the node never took it');
    assert.deepEqual(replacement.requestIds, [id]);
    assert.deepEqual(
      parseTx(replacement.unsignedTx).inputs.map((i) => `${i.txid}:${i.vout}`),
      payment.tx.inputs.map((i) => `${i.txid}:${i.vout}`),
    );
    answer = async () => 'accepted';
    await settlement.tick();
    assert.deepEqual((await attempts()).at(-1), '103 accepted', 'a change of outcome is recorded at once');
    assert.equal((await getRequest(store, id))?.status, 'broadcast');
  });

  it('follows a finalized handoff again after a restart until it is at the paid depth', async (t) => {
    // a handoff pays no request, so "a request not yet paid" never reopened it: a member restarted
    // (or killed) before its test spend or sweep confirmed neither broadcast it again nor followed it
    const { store, chain, observer, request, inputs } = await setup(t, [100_000_000n], 40_000_000n);
    const { payment, txid } = await finalizedPayment(store, request, inputs, []);
    const restarted = async (): Promise<{ broadcasts: string[]; settled: string[] }> => {
      const broadcasts: string[] = [];
      const settled: string[] = [];
      const settlement = chainSettlement(
        store,
        observer,
        {
          broadcast: async (raw) => {
            broadcasts.push(txidOf(parseTx(Buffer.from(raw, 'hex'))));
            return 'accepted';
          },
        },
        (x) => settled.push(x),
      );
      await settlement.load();
      await settlement.tick();
      return { broadcasts, settled };
    };
    assert.deepEqual(await restarted(), { broadcasts: [txid], settled: [] }, 'broadcast again after a restart');
    chain.mine([confirmedTx(payment)]);
    assert.deepEqual(await restarted(), { broadcasts: [], settled: [] }, 'confirmed, followed to depth');
    chain.mine([]);
    chain.mine([]);
    assert.deepEqual(await restarted(), { broadcasts: [], settled: [txid] }, 'at the paid depth: settled');
    assert.deepEqual(await restarted(), { broadcasts: [], settled: [] }, 'and not opened again');
  });

  it('a restart reads the payments in flight, not every payment the member ever settled', async (t) => {
    // each start read every finalized record ever written (each with its whole transaction) and the
    // record of every request each one paid: a member paying 1,000 requests a second read 86 million
    // records at a restart after a day
    const { store, observer, request, inputs, id } = await setup(t, [100_000_000n], 40_000_000n);
    const history = store.batch();
    for (let n = 0; n < 300; n++) {
      const paid = stageNewRequest(history, testRequest({ txHash: `0x${hex32(5000 + n)}`, sats: 1_000n }), 'then');
      let r = paid;
      for (const status of ['batched', 'signed', 'broadcast', 'paid'] as const)
        r = stageStatus(history, r, status, 'then');
      history.put(finalizedKey(hex32(9000 + n)), {
        txid: hex32(9000 + n),
        tx: new Uint8Array(2_000),
        prevouts: [],
        requestIds: [paid.id],
        unmatched: {},
        fee: 1_000n,
        vsize: 100,
        conflicts: [],
        at: 'then',
      } satisfies FinalizedRecord);
    }
    await history.write({ sync: true });
    const { txid } = await finalizedPayment(store, request, inputs, [id]);
    const { store: view, reads } = counted(store);
    const broadcasts: string[] = [];
    const settlement = chainSettlement(view, observer, {
      broadcast: async (raw) => {
        broadcasts.push(txidOf(parseTx(Buffer.from(raw, 'hex'))));
        return 'accepted';
      },
    });
    await settlement.load();
    t.diagnostic(`load: ${reads.calls} store calls, ${reads.rows} rows`);
    assert.ok(reads.rows <= 10, `${reads.rows} rows read to load`);
    await settlement.tick();
    assert.deepEqual(broadcasts, [txid], 'the payment in flight is followed');
  });

  /** A member with two federation outputs on the scripted chain, a request, and the settlement to test. */

  it('returns the requests of a payment that lost only once the winner is at the paid depth, and frees its other inputs', async (t) => {
    const { store, chain, id, request, inputs, settlement } = await setup(t);
    const payment = buildReplacement([request], inputs, 2, federation);
    assert.equal(payment!.prevouts.length, 2);
    const txid = txidOf(payment!.tx);
    const record = await recordFinalized(
      store,
      federation,
      txid,
      payment!.tx,
      { tx: serializeTx(payment!.tx), prevouts: payment!.prevouts, requestIds: [id] },
      'test',
      { limits: DEFAULT_LIMITS, paidDepth: 3 },
    );
    await settlement.onFinalized(record!);
    assert.equal((await getRequest(store, id))?.status, 'broadcast');
    // a transaction that is no federation payment spends the first input (a rogue quorum, say)
    chain.mine([
      rpcTransaction({
        version: 2,
        locktime: 0,
        inputs: [{ txid: hex32(7), vout: 0, sequence: 0xffffffff, scriptSig: new Uint8Array(0), witness: [] }],
        outputs: [{ value: 49_000_000n, scriptPubKey: witnessScript(0, new Uint8Array(20).fill(9)) }],
      }),
    ]);
    await settlement.tick();
    assert.equal(
      (await getRequest(store, id))?.status,
      'broadcast',
      'one confirmation: a reorg could still bring the payment back',
    );
    assert.equal((await getUtxo(store, inputs[1]!))?.reservedBy, txid);
    chain.mine([]);
    chain.mine([]);
    await settlement.tick();
    assert.equal(
      (await getRequest(store, id))?.status,
      'accepted',
      'at the paid depth the payment is lost: the request waits for a new one',
    );
    assert.equal(await store.get(openPaymentKey(txid)), undefined, 'lost: a restart does not take it up');
    assert.equal((await getUtxo(store, inputs[1]!))?.state, 'unspent', 'its other input is back in the wallet');
  });

  it('finds a confirmed payment it missed through its commitment: the requests are paid, its own losing proposal gives back its inputs', async (t) => {
    const { store, chain, id, request, inputs, settlement } = await setup(t);
    // this member's own proposal holds both inputs; the federation paid the request from the first alone
    const own = buildReplacement([request], inputs, 2, federation)!;
    const ownTxid = txidOf(own.tx);
    const batch = store.batch();
    await stageProposal(batch, checkProposal(proposalFromPayment(own, 1, toHex(federation.pubkeys[0]!))));
    stageStatus(batch, (await getRequest(store, id))!, 'batched', 'now', `in payment ${ownTxid}`);
    await batch.write({ sync: true });
    const winner = buildReplacement([request], [inputs[0]!], 2, federation)!.tx;
    chain.mine([rpcTransaction(winner)]);
    await settlement.tick();
    const final = await store.get<FinalizedRecord>(finalizedKey(txidOf(winner)));
    assert.deepEqual(final?.requestIds, [id], 'recorded from the chain, matched through the commitment');
    assert.deepEqual(final?.conflicts, [ownTxid]);
    chain.mine([]);
    chain.mine([]);
    await settlement.tick();
    assert.equal((await getRequest(store, id))?.status, 'paid');
    assert.equal((await getUtxo(store, inputs[1]!))?.state, 'unspent', 'the losing proposal released its other input');
    assert.equal((await getUtxo(store, inputs[0]!))?.spentBy, txidOf(winner));
  });
});
