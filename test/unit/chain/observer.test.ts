import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BitcoinObserver, ObserverError, recoverUtxo } from '../../../src/chain/observer.js';
import { bitcoinBlockKey, cursorKey, SPACES } from '../../../src/storage/keys.js';
import type { Store } from '../../../src/storage/store.js';
import { WalletError } from '../../../src/wallet/errors.js';
import {
  getUtxo,
  listUnspent,
  listUtxos,
  pegInTotal,
  releaseUtxos,
  reserveUtxos,
  type Outpoint,
} from '../../../src/wallet/utxos.js';
import { ScriptedChain, rpcTransaction, scriptedTx } from '../../support/scripted-chain.js';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { commitmentScript } from '../../../src/wallet/commitment.js';
import { openTempStore } from '../../support/tempdir.js';
import type { ObservedBlock, UtxoRecord } from '../../../src/storage/records.js';

const FED = `5120${'ab'.repeat(32)}`;
const FED_SCRIPT = Uint8Array.from(Buffer.from(FED, 'hex'));
const USER = `0014${'11'.repeat(20)}`;
const out = (txid: string, vout: number): Outpoint => ({ txid, vout });

async function setup(t: { after(fn: () => Promise<void>): void }, startHeight = 101, keepBlocks?: number) {
  const store = await openTempStore(t);
  const chain = new ScriptedChain(100);
  const observer = new BitcoinObserver({
    store,
    chain,
    federationScript: FED_SCRIPT,
    startHeight,
    ...(keepBlocks === undefined ? {} : { keepBlocks }),
  });
  return { store, chain, observer };
}

async function utxo(store: Store, outpoint: Outpoint): Promise<UtxoRecord | undefined> {
  return getUtxo(store, outpoint);
}

/** Every utxo/ record has exactly one utxoidx/ entry, under its state, and nothing else is indexed. */
async function assertIndexConsistent(store: Store): Promise<void> {
  const records = new Map<string, UtxoRecord>();
  for await (const [key, record] of store.entries<UtxoRecord>({ prefix: SPACES.utxo }))
    records.set(key.slice(SPACES.utxo.length), record);
  const indexed = new Map<string, string>();
  for await (const [key] of store.entries({ prefix: SPACES.utxoIndex })) {
    const [state, txid, vout] = key.slice(SPACES.utxoIndex.length).split('/');
    const name = `${txid}/${vout}`;
    assert.ok(!indexed.has(name), `${name} indexed twice`);
    indexed.set(name, state as string);
  }
  assert.equal(indexed.size, records.size);
  for (const [name, record] of records) assert.equal(indexed.get(name), record.state, `index state of ${name}`);
  let pegIns = 0n;
  for (const record of records.values()) if (record.pegIn && record.height !== null) pegIns += record.value;
  assert.equal(await pegInTotal(store), pegIns, "the peg-ins' sum is the marked records'");
}

test('registers federation outputs from the start height and their spends, one batch per block', async (t) => {
  const { store, chain, observer } = await setup(t);
  const early = scriptedTx('early', [], [{ script: FED, sats: 5_000_000n }]);
  chain.best[100]?.tx.push(early); // below the start height: not ours to see
  const pegIn = scriptedTx(
    'pegin',
    [out('cc'.repeat(32), 0)],
    [
      { script: USER, sats: 1n },
      { script: FED, sats: 250_000_000n },
    ],
  );
  const foreign = scriptedTx('foreign', [], [{ script: USER, sats: 7n }]);
  chain.mine([pegIn, foreign]); // 101
  chain.mine([]); // 102

  assert.deepEqual(await observer.sync(), {
    applied: 2,
    rolledBack: 0,
    cursor: { height: 102, hash: chain.best[102]?.hash },
  });
  assert.equal(await utxo(store, out(early.txid, 0)), undefined);
  const pegUtxo = await utxo(store, out(pegIn.txid, 1));
  assert.deepEqual(pegUtxo, {
    txid: pegIn.txid,
    vout: 1,
    value: 250_000_000n,
    scriptPubKey: Buffer.from(FED_SCRIPT),
    height: 101,
    state: 'unspent',
    pegIn: true,
  });
  assert.equal(await utxo(store, out(pegIn.txid, 0)), undefined, 'outputs to other scripts are ignored');

  // a federation payment: spends the peg-in, pays a user, returns change
  const payment = scriptedTx(
    'payment',
    [out(pegIn.txid, 1)],
    [
      { script: USER, sats: 100_000_000n },
      { script: FED, sats: 149_990_000n },
    ],
  );
  chain.mine([payment]); // 103
  assert.equal((await observer.sync()).applied, 1);
  assert.equal((await utxo(store, out(pegIn.txid, 1)))?.state, 'spent');
  assert.equal((await utxo(store, out(pegIn.txid, 1)))?.spentBy, payment.txid);
  assert.equal((await utxo(store, out(payment.txid, 1)))?.value, 149_990_000n);
  assert.equal(await observer.confirmations(payment.txid), 1);
  chain.mine([]);
  chain.mine([]);
  await observer.sync();
  assert.equal(await observer.confirmations(payment.txid), 3);
  assert.equal(await observer.confirmations(pegIn.txid), 0, 'a peg-in is not a federation payment');
  assert.deepEqual(
    (await listUnspent(store)).map((u) => u.txid),
    [payment.txid],
  );
  await assertIndexConsistent(store);
});

test('a reorg rolls back outputs, spends and confirmations from stored undo data, then follows the new branch', async (t) => {
  const { store, chain, observer } = await setup(t);
  const pegA = scriptedTx('pegA', [], [{ script: FED, sats: 10_000_000n }]);
  const pegB = scriptedTx('pegB', [], [{ script: FED, sats: 20_000_000n }]);
  chain.mine([pegA, pegB]); // 101
  await observer.sync();

  // a proposal reserves pegA; the (old) branch then mines a spend of pegA and of pegB,
  // and an output created and spent inside one block
  const proposal = 'ee'.repeat(32);
  await store.exclusive(async () => {
    const batch = store.batch();
    await reserveUtxos(batch, [out(pegA.txid, 0)], proposal);
    await batch.write({ sync: true });
  });
  const payA = scriptedTx('payA', [out(pegA.txid, 0)], [{ script: USER, sats: 9_000_000n }]);
  const chained1 = scriptedTx('chained1', [out(pegB.txid, 0)], [{ script: FED, sats: 19_000_000n }]);
  const chained2 = scriptedTx('chained2', [out(chained1.txid, 0)], [{ script: FED, sats: 18_000_000n }]);
  chain.mine([payA, chained1, chained2]); // 102
  const pegC = scriptedTx('pegC', [], [{ script: FED, sats: 30_000_000n }]);
  chain.mine([pegC]); // 103
  await observer.sync();
  assert.equal((await utxo(store, out(pegA.txid, 0)))?.state, 'spent');
  assert.equal((await utxo(store, out(chained1.txid, 0)))?.state, 'spent');
  assert.equal(await observer.confirmations(payA.txid), 2);
  const undo = await store.get<ObservedBlock>(bitcoinBlockKey(102));
  assert.equal(undo?.spent.length, 3);
  assert.equal(await pegInTotal(store), 60_000_000n, 'pegA, pegB, pegC: the outputs of spends are no peg-ins');
  await assertIndexConsistent(store);

  // the node switches to a branch forking below 102; the old blocks are not served any more
  chain.disconnect(2);
  const pegD = scriptedTx('pegD', [], [{ script: FED, sats: 40_000_000n }]);
  chain.mine([pegD]); // new 102
  chain.mine([]); // new 103
  chain.mine([]); // 104
  const result = await observer.sync();
  assert.deepEqual([result.rolledBack, result.applied, result.cursor?.height], [2, 3, 104]);

  assert.deepEqual(
    await utxo(store, out(pegA.txid, 0)),
    {
      txid: pegA.txid,
      vout: 0,
      value: 10_000_000n,
      scriptPubKey: Buffer.from(FED_SCRIPT),
      height: 101,
      state: 'reserved',
      reservedBy: proposal,
      pegIn: true,
    },
    'spend undone, reservation kept',
  );
  assert.equal((await utxo(store, out(pegB.txid, 0)))?.state, 'unspent');
  assert.equal(await utxo(store, out(chained1.txid, 0)), undefined, 'created and spent in a rolled-back block: gone');
  assert.equal(await utxo(store, out(chained2.txid, 0)), undefined);
  assert.equal(await utxo(store, out(pegC.txid, 0)), undefined);
  assert.equal((await utxo(store, out(pegD.txid, 0)))?.height, 102);
  assert.equal(await observer.confirmations(payA.txid), 0, 'confirmation reverted');
  assert.equal(await pegInTotal(store), 70_000_000n, 'pegA, pegB, pegD');
  assert.equal(await store.get(bitcoinBlockKey(103)).then((b) => (b as ObservedBlock).hash), chain.best[103]?.hash);
  await assertIndexConsistent(store);
});

test('a reserved output whose block is reorganised away keeps its reservation until mined again or released', async (t) => {
  const { store, chain, observer } = await setup(t);
  const change = scriptedTx('change', [], [{ script: FED, sats: 5_000_000n }]);
  chain.mine([change]); // 101
  await observer.sync();
  const next = 'dd'.repeat(32);
  const reserve = async () =>
    store.exclusive(async () => {
      const batch = store.batch();
      await reserveUtxos(batch, [out(change.txid, 0)], next);
      await batch.write({ sync: true });
    });
  await reserve();

  chain.disconnect(1);
  chain.mine([]); // 101': the change transaction went back to the mempool
  await observer.sync();
  assert.deepEqual(await utxo(store, out(change.txid, 0)), {
    txid: change.txid,
    vout: 0,
    value: 5_000_000n,
    scriptPubKey: Buffer.from(FED_SCRIPT),
    height: null,
    state: 'reserved',
    reservedBy: next,
    pegIn: true,
  });
  assert.deepEqual(await listUnspent(store), []);

  chain.mine([change]); // mined again at 102
  await observer.sync();
  assert.equal((await utxo(store, out(change.txid, 0)))?.height, 102);
  assert.equal((await utxo(store, out(change.txid, 0)))?.reservedBy, next, 're-mined output is still reserved');

  chain.disconnect(1);
  chain.mine([]);
  await observer.sync();
  await store.exclusive(async () => {
    const batch = store.batch();
    assert.deepEqual(await releaseUtxos(batch, [out(change.txid, 0)], next), [], 'nothing became spendable');
    await batch.write({ sync: true });
  });
  assert.equal(await utxo(store, out(change.txid, 0)), undefined, 'an unconfirmed output released is dropped');
  await assertIndexConsistent(store);
});

test('a release while spent survives a reorg of the spend; the node going back below the cursor is followed', async (t) => {
  const { store, chain, observer } = await setup(t);
  const peg = scriptedTx('peg', [], [{ script: FED, sats: 5_000_000n }]);
  chain.mine([peg]); // 101
  await observer.sync();
  const proposal = 'aa'.repeat(32);
  const inBatch = async (fn: (b: ReturnType<Store['batch']>) => Promise<unknown>) =>
    store.exclusive(async () => {
      const batch = store.batch();
      await fn(batch);
      await batch.write({ sync: true });
    });
  await inBatch((b) => reserveUtxos(b, [out(peg.txid, 0)], proposal));
  chain.mine([scriptedTx('spend', [out(peg.txid, 0)], [{ script: USER, sats: 4_000_000n }])]); // 102
  await observer.sync();
  await inBatch((b) => releaseUtxos(b, [out(peg.txid, 0)], proposal));
  assert.equal((await utxo(store, out(peg.txid, 0)))?.state, 'spent', 'a release never unspends');
  assert.equal((await utxo(store, out(peg.txid, 0)))?.reservedBy, undefined);

  chain.disconnect(1); // like invalidateblock: the node's tip is now below our cursor
  const result = await observer.sync();
  assert.deepEqual([result.rolledBack, result.applied, result.cursor?.height], [1, 0, 101]);
  assert.deepEqual(
    await listUnspent(store).then((l) => l.map((u) => u.txid)),
    [peg.txid],
    'back to spendable, not held by the released proposal',
  );
  await assertIndexConsistent(store);
});

test('a reorg deeper than the kept undo data stops the observer loudly; a start-height block can be rolled back', async (t) => {
  const { chain, observer } = await setup(t, 101, 2);
  for (let i = 0; i < 5; i++) chain.mine([]);
  await observer.sync();
  chain.disconnect(4);
  for (let i = 0; i < 5; i++) chain.mine([]);
  await assert.rejects(
    observer.sync(),
    (err) => err instanceof ObserverError && err.code === 'reorg_too_deep' && err.message.includes('at height 103'),
  );

  const second = await setup(t, 101);
  second.chain.mine([scriptedTx('p', [], [{ script: FED, sats: 1_000_000n }])]);
  await second.observer.sync();
  second.chain.disconnect(1);
  const peg = scriptedTx('p2', [], [{ script: FED, sats: 2_000_000n }]);
  second.chain.mine([peg]);
  const result = await second.observer.sync();
  assert.deepEqual([result.rolledBack, result.applied, result.cursor?.hash], [1, 1, second.chain.best[101]?.hash]);
  assert.deepEqual(
    (await listUtxos(second.store, 'unspent')).map((u) => u.txid),
    [peg.txid],
  );
});

test('recoverUtxo accepts only a confirmed, unspent output paying the federation', async (t) => {
  const { store, chain } = await setup(t);
  const peg = scriptedTx(
    'peg',
    [],
    [
      { script: USER, sats: 1n },
      { script: FED, sats: 3_000_000n },
    ],
  );
  const spentPeg = scriptedTx('spentPeg', [], [{ script: FED, sats: 4_000_000n }]);
  const mempoolSpent = scriptedTx('mempoolSpent', [], [{ script: FED, sats: 5_000_000n }]);
  chain.mine([peg, spentPeg, mempoolSpent]); // 101
  chain.mine([scriptedTx('spender', [out(spentPeg.txid, 0)], [{ script: USER, sats: 1n }])]); // 102
  chain.mine([]); // 103
  chain.mempoolSpends.add(`${mempoolSpent.txid}:0`);
  const unconfirmed = scriptedTx(
    'unconfirmed',
    [],
    [
      { script: FED, sats: 6_000_000n },
      { script: FED, sats: 7_000_000n },
    ],
  );
  chain.mempool.push(unconfirmed);
  chain.mempoolSpends.add(`${unconfirmed.txid}:1`);

  // a member that started above these blocks: it recovers only from blocks it has applied (recover.test.ts)
  await store.batch().put(cursorKey('bitcoin'), { height: chain.tip, hash: chain.best[chain.tip]!.hash }).write();
  const recover = (o: Outpoint) => recoverUtxo(store, chain, FED_SCRIPT, o);
  const code = (c: string) => (err: unknown) => err instanceof WalletError && err.code === c;
  const record = await recover(out(peg.txid, 1));
  assert.deepEqual(record, {
    txid: peg.txid,
    vout: 1,
    value: 3_000_000n,
    scriptPubKey: Buffer.from(FED_SCRIPT),
    height: 101,
    state: 'unspent',
    pegIn: true,
  });
  assert.deepEqual(await utxo(store, out(peg.txid, 1)), record, 'stored');
  assert.deepEqual(await recover(out(peg.txid, 1)), record, 'known: returned as stored');
  await assert.rejects(recover(out(peg.txid, 0)), code('utxo_not_federation'));
  await assert.rejects(recover(out(peg.txid, 2)), code('utxo_unknown'));
  await assert.rejects(recover(out('99'.repeat(32), 0)), code('utxo_unknown'));
  // spent in the chain, or in the mempool: refused; a node without -txindex cannot say which
  await assert.rejects(recover(out(spentPeg.txid, 0)), code('utxo_unknown'));
  await assert.rejects(recover(out(mempoolSpent.txid, 0)), code('utxo_unknown'));
  await assert.rejects(recover(out(unconfirmed.txid, 1)), code('utxo_spent'));
  await assert.rejects(recover(out(unconfirmed.txid, 0)), code('utxo_unconfirmed'));
  assert.deepEqual((await listUnspent(store)).length, 1);
});

test("on a rotation's new side, an output is handed over only when every input spent an output of the old federation", async (t) => {
  const store = await openTempStore(t);
  const chain = new ScriptedChain(100);
  const key = (i: number) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i));
  const OLD = buildFederation({ network: 'regtest', threshold: 2, pubkeys: [1, 2, 3].map(key) });
  const NEW = buildFederation({ network: 'regtest', threshold: 2, pubkeys: [1, 2, 4].map(key) });
  const observer = new BitcoinObserver({
    store,
    chain,
    federationScript: NEW.scriptPubKey,
    startHeight: 101,
    handedOverFrom: OLD,
  });
  // an output of an unknown witness version: anyone can spend it, with any witness
  const anyoneCanSpend = toHex(Uint8Array.from([0x52, 0x20, ...new Uint8Array(32).fill(7)]));
  const funding = scriptedTx(
    'funding',
    [out('cc'.repeat(32), 0)],
    [
      { script: toHex(OLD.scriptPubKey), sats: 2_000_000n },
      { script: anyoneCanSpend, sats: 1_000_000n },
    ],
  );
  // both show the old set's tapscript and control block; only the first spends its output
  const spendTo = (vout: number, sats: bigint, txid = funding.txid) =>
    rpcTransaction({
      version: 2,
      locktime: 0,
      inputs: [
        {
          txid,
          vout,
          sequence: 0xfffffffd,
          scriptSig: new Uint8Array(0),
          witness: [new Uint8Array(64), new Uint8Array(0), new Uint8Array(64), OLD.tapscript, OLD.controlBlock],
        },
      ],
      outputs: [
        { value: 0n, scriptPubKey: commitmentScript([]) },
        { value: sats, scriptPubKey: NEW.scriptPubKey },
      ],
    });
  const handoff = spendTo(0, 1_990_000n);
  const forged = spendTo(1, 990_000n);
  chain.mine([funding]); // 101
  chain.mine([handoff, forged]); // 102
  await observer.sync();
  assert.equal((await utxo(store, out(handoff.txid, 1)))?.handedOver, true);
  const stranger = await utxo(store, out(forged.txid, 1));
  assert.equal(stranger?.state, 'unspent', 'still the federation’s coin');
  assert.equal(stranger?.handedOver, undefined, "a stranger's coin, not the old set's");

  // a node that does not show what a payment to the new address spent (Core before 23.0 ignores
  // verbosity 3) leaves the observer unable to tell a handoff: it stops and says why
  const unknown = spendTo(0, 1_000_000n, 'dd'.repeat(32)); // of an output this chain never made
  chain.mine([unknown]); // 103
  await assert.rejects(
    observer.sync(),
    (err) => err instanceof ObserverError && err.code === 'config' && /23\.0/.test(err.message),
  );
});
