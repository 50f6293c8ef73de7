import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { serializeTx, txid as txidOf } from '../../../src/bitcoin/tx.js';
import { BitcoinObserver, recoverUtxo } from '../../../src/chain/observer.js';
import { BitcoinRpcError, type TxOutSetScan } from '../../../src/chain/rpc.js';
import { stageNewRequest } from '../../../src/evm/request-store.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { recordFinalized } from '../../../src/node/finalize.js';
import { createLogger } from '../../../src/node/log.js';
import { ReserveAuditor } from '../../../src/node/reserves.js';
import { isPaused, Safety } from '../../../src/node/safety.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { bitcoinBlockKey, utxoKey } from '../../../src/storage/keys.js';
import type { ObservedBlock } from '../../../src/storage/records.js';
import type { Store } from '../../../src/storage/store.js';
import { buildPayments } from '../../../src/wallet/payment.js';
import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import type { WalletError } from '../../../src/wallet/errors.js';
import { getUtxo } from '../../../src/wallet/utxos.js';
import { rpcTransaction, scanOf as scanChain, ScriptedChain } from '../../support/scripted-chain.js';
import { openTempStore } from '../../support/tempdir.js';
import { testRequest } from '../../support/requests.js';
import type { RpcTransaction } from '../../../src/chain/rpc.js';

// The reserve auditor in a member, on a real store following a scripted chain, with a fake Bitcoin
// Core whose scantxoutset answers from that chain: audits through a payment and a reorg, a tick only
// per new block, Core at another block, an injected mismatch (alarm, pause, cleared later), a
// shortfall, a failed scan, and no Core at all.

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i + 70))),
});
const FED = toHex(federation.scriptPubKey);
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

/** What scantxoutset would find for the federation script on the chain's best branch. */
const scanOf = (chain: ScriptedChain): TxOutSetScan => scanChain(chain, federation.scriptPubKey);

async function addRequest(store: Store, n: number, sats: bigint) {
  const scriptPubKey = witnessScript(0, new Uint8Array(20).fill(n));
  const batch = store.batch();
  const { id } = stageNewRequest(batch, testRequest({ txHash: `0x${hex32(n)}`, sats, scriptPubKey }), 'then');
  await batch.write({ sync: true });
  return { id, scriptPubKey, sats };
}

/** A deposit to the federation address, from an outsider. */
const DEPOSIT: RpcTransaction = {
  txid: hex32(8),
  hash: hex32(8),
  vin: [{ txid: hex32(99), vout: 0, sequence: 0 }],
  vout: [{ n: 0, value: 0.2, scriptPubKey: { hex: FED } }],
};

/** DEPOSIT, whose block left the chain, is not in the books, and the audit finds nothing. */
async function assertNoTrace(store: Store, auditor: ReserveAuditor, safety: Safety): Promise<void> {
  await auditor.tick();
  const r = await auditor.report();
  assert.deepEqual(
    {
      kept: (await getUtxo(store, { txid: DEPOSIT.txid, vout: 0 }))?.state ?? null,
      faults: r.faults.map((f) => f.kind),
      paused: safety.paused?.reasons.map((x) => x.kind) ?? null,
    },
    { kept: null, faults: [], paused: null },
  );
}

async function setup(t: Parameters<typeof openTempStore>[0], recheckMs?: number) {
  const store = await openTempStore(t, federation.descriptor);
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
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'debug', write: (line) => void lines.push(JSON.parse(line)) });
  const metrics = createMetrics();
  const safety = new Safety(store, log, metrics);
  const core = { scans: 0, fail: undefined as Error | undefined };
  const scanTxOutSet = async (descriptors: readonly string[]): Promise<TxOutSetScan> => {
    assert.deepEqual(descriptors, [`raw(${FED})`]);
    core.scans++;
    if (core.fail) throw core.fail;
    return scanOf(chain);
  };
  const auditor = new ReserveAuditor({
    store,
    federation,
    core: { scanTxOutSet },
    safety,
    log,
    metrics,
    ...(recheckMs === undefined ? {} : { recheckMs }),
  });
  const inputs = [0, 1].map((vout) => ({
    txid: hex32(7),
    vout,
    value: 50_000_000n,
    scriptPubKey: federation.scriptPubKey,
  }));
  return { store, chain, observer, auditor, safety, metrics, lines, core, inputs };
}

const show = (x: unknown): string => JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
const gauge = async (metrics: ReturnType<typeof createMetrics>, name: string): Promise<number> =>
  Number(new RegExp(`^${name} (-?[0-9.e+]+)$`, 'm').exec(await metrics.registry.metrics())?.[1]);

describe('reserve auditor', () => {
  it('matches Core through a payment and a reorg around it, and audits once per block', async (t) => {
    const { store, chain, observer, auditor, metrics, core, inputs } = await setup(t);
    assert.equal(await gauge(metrics, 'pegout_reserve_ok'), -1, 'no audit yet');
    const request = await addRequest(store, 9, 30_000_000n);
    await auditor.tick();
    let r = await auditor.report();
    assert.equal(r.verdict, 'ok', show(r.faults));
    assert.equal(r.assets.sats, 100_000_000n);
    assert.equal(r.liabilities.sats, 30_000_000n);
    assert.equal(r.ledger.pegIns, 100_000_000n);
    assert.equal(await gauge(metrics, 'pegout_reserve_ok'), 1);
    assert.equal(await gauge(metrics, 'pegout_reserve_core_sats'), 100_000_000);
    await auditor.tick();
    assert.equal(core.scans, 1, 'no new block, no new audit');

    // finalized: its inputs reserved (still assets), its request still owed
    const [payment] = buildPayments([request], inputs, 2, federation, { maxOutputs: 10 }).payments;
    const txid = txidOf(payment!.tx);
    const body = { tx: serializeTx(payment!.tx), prevouts: payment!.prevouts, requestIds: [request.id] };
    await recordFinalized(store, federation, txid, payment!.tx, body, 'test', { limits: DEFAULT_LIMITS, paidDepth: 3 });
    r = await auditor.audit();
    assert.equal(r.verdict, 'ok');
    assert.equal(r.liabilities.byStatus.signed?.sats, 30_000_000n);
    assert.equal(r.assets.sats, 100_000_000n);

    // confirmed: its inputs are gone, its request is settling (paid in the ledger, no liability)
    chain.mine([rpcTransaction(payment!.tx)]);
    await observer.sync();
    await auditor.tick();
    r = await auditor.report();
    assert.equal(r.verdict, 'ok', show(r));
    assert.equal(r.liabilities.sats, 0n);
    assert.deepEqual(r.settling, { sats: 30_000_000n, requests: 1 });
    assert.equal(r.assets.sats, 100_000_000n - 30_000_000n - (payment!.change === undefined ? payment!.fee : 0n));
    assert.equal(r.ledger.unexplained, 0n, 'peg-ins − paid is what the federation holds');

    // its block leaves the chain: the inputs come back, the request is owed again
    chain.disconnect(1);
    chain.mine([], 'b');
    chain.mine([], 'b');
    await observer.sync();
    await auditor.tick();
    r = await auditor.report();
    assert.equal(r.verdict, 'ok', show(r));
    assert.equal(r.assets.sats, 100_000_000n);
    assert.equal(r.liabilities.sats, 30_000_000n);
    assert.equal(r.settling.requests, 0);
    assert.deepEqual([r.ledger.pegIns, r.ledger.paid], [100_000_000n, 0n], 'the change went with its block');
    assert.equal(core.scans, 4);
  });

  it('between blocks the books are judged again against the scan of the same block, without scanning again', async (t) => {
    const { store, chain, observer, auditor, core, safety, lines } = await setup(t, 0);
    await auditor.tick();
    assert.equal((await auditor.report()).liabilities.sats, 0n);
    await addRequest(store, 9, 60_000_000n);
    await addRequest(store, 10, 40_000_001n);
    await auditor.tick();
    const r = await auditor.report();
    assert.equal(r.liabilities.sats, 100_000_001n, 'the requests that arrived since the block are owed');
    assert.deepEqual(
      r.faults.map((f) => f.kind),
      ['reserves_short'],
    );
    assert.equal(core.scans, 1);
    // a fault that stays is alarmed once, not at every audit
    await auditor.tick();
    assert.equal(lines.filter((l) => l.alarm === true).length, 1);
    await safety.resume();
    await auditor.tick();
    assert.equal(
      lines.filter((l) => l.alarm === true).length,
      2,
      'resumed while still short: alarmed and paused again',
    );
    assert.ok(safety.paused);
    // Core's next block: scanned once the member applied it, not before
    chain.mine([]);
    await auditor.tick();
    assert.equal(core.scans, 1, 'the member is still at the scanned block');
    await observer.sync();
    await auditor.tick();
    assert.equal((await auditor.report()).member?.height, 102);
    assert.equal(core.scans, 2);
    // a scan made while Core was ahead of the member is used once the member gets there
    chain.mine([]);
    chain.mine([]);
    chain.tipLimit = 103;
    await observer.sync();
    await auditor.tick();
    const ahead = (await auditor.report()).core;
    assert.ok(!ahead.compared && /^not compared: Core at 104 .* member at 103/.test(ahead.reason), show(ahead));
    chain.tipLimit = undefined;
    await observer.sync();
    await auditor.tick();
    assert.equal((await auditor.report()).verdict, 'faulty');
    assert.equal(core.scans, 3);
  });

  it('Core at another block is not compared; a value changed in the store raises reserves_mismatch and pauses', async (t) => {
    const { store, chain, observer, auditor, safety, metrics, lines } = await setup(t);
    chain.mine([]);
    let r = await auditor.audit();
    assert.equal(r.verdict, 'not_compared');
    assert.ok(!r.core.compared && /^not compared: Core at 102 .*member at 101/.test(r.core.reason));
    await observer.sync();
    await auditor.tick();
    assert.equal((await auditor.report()).verdict, 'ok');

    const outpoint = { txid: hex32(7), vout: 1 };
    const u = (await getUtxo(store, outpoint))!;
    await store
      .batch()
      .put(utxoKey(u.txid, u.vout), { ...u, value: u.value + 1_000n })
      .write({ sync: true });
    r = await auditor.audit();
    assert.equal(r.verdict, 'faulty');
    assert.deepEqual(
      r.faults.map((f) => f.kind),
      ['reserves_mismatch'],
    );
    const alarm = lines.find((l) => l.alarm === true);
    assert.equal(alarm?.kind, 'reserves_mismatch');
    assert.deepEqual((alarm?.differences as object[])[0], {
      txid: hex32(7),
      vout: 1,
      ours: '50001000',
      core: '50000000',
    });
    assert.ok(await isPaused(store), 'the pause is stored');
    assert.deepEqual(
      safety.report().alarms.map((a) => a.kind),
      ['reserves_mismatch'],
    );
    assert.equal(await gauge(metrics, 'pegout_reserve_ok'), 0);
    assert.match(await metrics.registry.metrics(), /pegout_alarms_total\{kind="reserves_mismatch"\} 1/);

    // repaired: the next audit passes and clears the alarm; the pause waits for an operator
    await store.batch().put(utxoKey(u.txid, u.vout), u).write({ sync: true });
    assert.equal((await auditor.audit()).verdict, 'ok');
    assert.deepEqual(safety.report().alarms, []);
    assert.ok(safety.paused);
  });

  it('owing more than it holds raises reserves_short; a failed scan judges nothing', async (t) => {
    const { store, auditor, safety, core } = await setup(t);
    await addRequest(store, 9, 60_000_000n);
    await addRequest(store, 10, 40_000_001n);
    const r = await auditor.audit();
    assert.deepEqual(
      r.faults.map((f) => f.kind),
      ['reserves_short'],
    );
    assert.ok(safety.paused);
    core.fail = new BitcoinRpcError('rpc_error', 'Scan already in progress', { rpcCode: -8 });
    const failed = await auditor.audit();
    assert.equal(failed.verdict, 'not_compared');
    // the public report names the code; the node's message (its address, the cookie file's path) is in the log
    assert.ok(!failed.core.compared && /scan failed \(rpc_error; see the member's log\)/.test(failed.core.reason));
    assert.deepEqual(
      safety.report().alarms.map((a) => a.kind),
      ['reserves_short'],
      'not cleared by an audit that judged nothing',
    );
  });

  // named by a peer's proposal while this member lagged Core, such an output was stored at Core's
  // height, in no applied block's undo data: a reorg taking its block away left it in the books for
  // good, and the audit's mismatch paused the member again after each resume
  it('an output in a block this member has not applied is not taken from Core, so a reorg leaves the books whole', async (t) => {
    const { store, chain, observer, auditor, safety } = await setup(t);
    await auditor.tick();
    chain.mine([DEPOSIT]); // block 102: Core has it, this member has not applied it
    await assert.rejects(
      recoverUtxo(store, chain, federation.scriptPubKey, { txid: hex32(8), vout: 0 }),
      (err: WalletError) =>
        err.code === 'utxo_unconfirmed' && /in block 102, which this member has not applied yet/.test(err.message),
    );
    chain.disconnect(1);
    chain.mine([], 'b');
    await observer.sync();
    await assertNoTrace(store, auditor, safety);
  });

  // the same from another branch at a height this member has applied: it is on branch a at 102, Core
  // switched to b, where 102b holds a deposit to the federation address (anyone can make one), and a
  // peer's proposal names it; Core then goes back to a branch without it. Stored from 102b, the output
  // was in no applied block's undo data and stayed in the books, paused by reserves_mismatch for good
  it('an output in a block of another branch at a height this member applied is not taken from Core', async (t) => {
    const { store, chain, observer, auditor, safety } = await setup(t);
    chain.mine([], 'a');
    await observer.sync();
    await auditor.tick();
    chain.disconnect(1);
    chain.mine([DEPOSIT], 'b'); // 102b; this member is still at 102a
    chain.mine([], 'b');
    await assert.rejects(
      recoverUtxo(store, chain, federation.scriptPubKey, { txid: hex32(8), vout: 0 }),
      (err: WalletError) =>
        err.code === 'utxo_unconfirmed' && /block 102 .* is not the one this member applied/.test(err.message),
    );
    chain.disconnect(2);
    for (let k = 0; k < 5; k++) chain.mine([], 'c');
    await observer.sync();
    await assertNoTrace(store, auditor, safety);
  });

  // recovered from a block this member applied, an output is in that block's undo data: a reorg
  // taking the block away takes it out of the books like any output the observer registered
  it('an output recovered from a block this member applied leaves the books when a reorg takes that block', async (t) => {
    const { store, chain, observer, auditor, safety } = await setup(t);
    chain.mine([DEPOSIT], 'a'); // 102a, applied here
    await observer.sync();
    // as if the observer had not registered it: neither in the books nor in the block's undo data
    const applied = (await store.get<ObservedBlock>(bitcoinBlockKey(102)))!;
    const created = applied.created.filter((o) => o.txid !== hex32(8));
    await store
      .batch()
      .del(utxoKey(hex32(8), 0))
      .put(bitcoinBlockKey(102), { ...applied, created })
      .write();
    const recovered = await recoverUtxo(store, chain, federation.scriptPubKey, { txid: hex32(8), vout: 0 });
    assert.equal(recovered.state, 'unspent');
    chain.disconnect(1);
    for (let k = 0; k < 3; k++) chain.mine([], 'b');
    await observer.sync();
    await assertNoTrace(store, auditor, safety);
  });

  it('without Bitcoin Core: the books, unaudited, and the loop does nothing', async (t) => {
    const { store, safety, lines } = await setup(t);
    await addRequest(store, 9, 900_000_000n);
    const log = createLogger({ level: 'error', write: () => undefined });
    const auditor = new ReserveAuditor({ store, federation, core: null, safety, log });
    await auditor.tick();
    const r = await auditor.report();
    assert.equal(r.verdict, 'unaudited');
    assert.equal(r.liabilities.sats, 900_000_000n);
    assert.equal(safety.paused, null);
    assert.ok(!lines.some((l) => l.alarm));
  });
});
