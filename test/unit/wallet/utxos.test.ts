import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WalletError, type WalletErrorCode } from '../../../src/wallet/errors.js';
import {
  getUtxo,
  getUtxos,
  listUnspent,
  largestUnspent,
  listUtxos,
  pegInTotal,
  reclaimUtxos,
  registerUtxo,
  releaseUtxos,
  reserveUtxos,
  spendableAt,
  spendUtxo,
  unregisterUtxo,
  unspendUtxo,
  utxoTotals,
  type Outpoint,
} from '../../../src/wallet/utxos.js';
import { META_KEY, outpointOfKey, SPACES, utxoCountKey, utxoIndexKey, utxoKey } from '../../../src/storage/keys.js';
import { SCHEMA_VERSION, Store } from '../../../src/storage/store.js';
import type { UtxoRecord, UtxoState } from '../../../src/storage/records.js';
import type { StoreBatch } from '../../../src/storage/store.js';
import { counted } from '../../support/counted-store.js';
import { openTempStore, tempDir, TEST_DESCRIPTOR } from '../../support/tempdir.js';

const SCRIPT = Uint8Array.from(Buffer.from(`5120${'ab'.repeat(32)}`, 'hex'));
const P1 = '01'.repeat(32);
const P2 = '02'.repeat(32);
const op = (n: number, vout = 0): Outpoint => ({ txid: n.toString(16).padStart(64, '0'), vout });

async function write(store: Store, fn: (batch: StoreBatch) => Promise<unknown>): Promise<void> {
  await store.exclusive(async () => {
    const batch = store.batch();
    await fn(batch);
    await batch.write({ sync: true });
  });
}

function walletCode(code: WalletErrorCode) {
  return (err: unknown) => err instanceof WalletError && err.code === code && err.domain === 'wallet';
}

async function seeded(t: { after(fn: () => Promise<void>): void }): Promise<Store> {
  const store = await openTempStore(t);
  await write(store, async (batch) => {
    for (let n = 1; n <= 4; n++)
      await registerUtxo(batch, {
        ...op(n),
        value: BigInt(n) * 1_000_000n,
        scriptPubKey: SCRIPT,
        height: 100 + n,
        pegIn: true,
      });
  });
  return store;
}

test('list unspent in outpoint order; reserve moves records and index in one batch', async (t) => {
  const store = await seeded(t);
  assert.deepEqual(
    (await listUnspent(store)).map((u) => u.value),
    [1_000_000n, 2_000_000n, 3_000_000n, 4_000_000n],
  );
  let reserved: Awaited<ReturnType<typeof reserveUtxos>> = [];
  await write(store, async (batch) => {
    reserved = await reserveUtxos(batch, [op(3), op(1)], P1);
  });
  assert.deepEqual(
    reserved.map((r) => [r.txid, r.state, r.reservedBy]),
    [
      [op(3).txid, 'reserved', P1],
      [op(1).txid, 'reserved', P1],
    ],
  );
  assert.deepEqual(
    (await listUnspent(store)).map((u) => u.value),
    [2_000_000n, 4_000_000n],
  );
  assert.deepEqual(
    (await listUtxos(store, 'reserved')).map((u) => u.value),
    [1_000_000n, 3_000_000n],
  );
  // idempotent for the same proposal, and nothing staged for it
  await write(store, async (batch) => {
    assert.deepEqual(await reserveUtxos(batch, [op(1)], P1), [reserved[1]]);
    assert.equal(batch.length, 0);
  });
  assert.equal((await getUtxo(store, op(1)))?.reservedBy, P1);
});

test('reserve refuses unknown, spent, foreign-reserved and duplicate outpoints, staging nothing', async (t) => {
  const store = await seeded(t);
  await write(store, (batch) => reserveUtxos(batch, [op(1)], P1));
  await write(store, (batch) => spendUtxo(batch, op(2), P2));
  const attempt = async (outpoints: Outpoint[]) => {
    const batch = store.batch();
    try {
      await reserveUtxos(batch, outpoints, P2);
    } finally {
      assert.equal(batch.length, 0, 'a refused reservation stages nothing');
    }
  };
  await assert.rejects(attempt([op(3), op(9)]), walletCode('utxo_unknown'));
  await assert.rejects(attempt([op(3), op(2)]), walletCode('utxo_spent'));
  await assert.rejects(attempt([op(3), op(1)]), walletCode('utxo_reserved'));
  await assert.rejects(attempt([op(3), op(4), op(3)]), walletCode('utxo_duplicate'));
  // read in one call, the outpoints are still judged in their order: the first fault is the one named
  await assert.rejects(attempt([op(3), op(3), op(9)]), walletCode('utxo_duplicate'));
  await assert.rejects(attempt([op(9), op(2)]), walletCode('utxo_unknown'));

  // a replacement (RBF) takes over the inputs of the proposal it replaces
  await write(store, (batch) => reserveUtxos(batch, [op(1), op(3)], P2, { replacing: [P1] }));
  assert.equal((await getUtxo(store, op(1)))?.reservedBy, P2);
});

test('reserve with the records the caller read stages what reading them stages, and refuses records of other outpoints', async (t) => {
  const store = await seeded(t);
  const outpoints = [op(3), op(1)];
  const staged = async (current?: (UtxoRecord | undefined)[]) => {
    const batch = store.batch();
    const reserved = await reserveUtxos(batch, outpoints, P1, current ? { current } : {});
    return {
      reserved,
      length: batch.length,
      read: await batch.getMany<unknown>(outpoints.map((o) => utxoKey(o.txid, o.vout))),
    };
  };
  const records = await getUtxos(store, outpoints);
  assert.deepEqual(await staged(records), await staged());
  // a refusal judged on the records given, as on the records read
  await assert.rejects(staged([records[0], undefined]), walletCode('utxo_unknown'));
  for (const wrong of [[records[1], records[0]], [records[0]], [records[0], records[1], records[1]]])
    await assert.rejects(staged(wrong), walletCode('utxo_conflict'));
});

test('release returns only the proposal own reservations and never unspends', async (t) => {
  const store = await seeded(t);
  await write(store, (batch) => reserveUtxos(batch, [op(1), op(2)], P1));
  await write(store, (batch) => reserveUtxos(batch, [op(3)], P2));
  await write(store, (batch) => spendUtxo(batch, op(2), 'ff'.repeat(32)));
  let released: Outpoint[] = [];
  await write(store, async (batch) => {
    released = await releaseUtxos(batch, [op(1), op(2), op(3), op(4), op(9)], P1);
  });
  assert.deepEqual(released, [op(1)]);
  const states = await Promise.all([1, 2, 3, 4].map((n) => getUtxo(store, op(n))));
  assert.deepEqual(
    states.map((u) => [u?.state, u?.reservedBy]),
    [
      ['unspent', undefined],
      ['spent', undefined],
      ['reserved', P2],
      ['unspent', undefined],
    ],
  );
});

test('reclaim gives a payment back its inputs another lost: reserved if unspent, held if it spent them, through a reorg', async (t) => {
  const store = await seeded(t);
  // P2 took over op(1) and op(2) from P1; P1 confirmed once, spending op(1); P2 lost and let both go
  await write(store, (b) => reserveUtxos(b, [op(1), op(2)], P2));
  const before = (await getUtxo(store, op(1)))!;
  await write(store, (b) => spendUtxo(b, op(1), P1));
  await write(store, (b) => releaseUtxos(b, [op(1), op(2)], P2));
  await write(store, (b) => reclaimUtxos(b, [op(1), op(2)], P1));
  const [spent, freed] = await getUtxos(store, [op(1), op(2)]);
  assert.deepEqual([spent?.state, spent?.spentBy, spent?.reservedBy], ['spent', P1, P1]);
  assert.deepEqual([freed?.state, freed?.reservedBy], ['reserved', P1]);
  // P1's block leaves the chain: op(1) is P1's again, not the wallet's nor P2's
  await write(store, (b) => unspendUtxo(b, before));
  const back = await getUtxo(store, op(1));
  assert.deepEqual([back?.state, back?.reservedBy], ['reserved', P1]);
  assert.deepEqual(await utxoTotals(store, 'reserved'), { outputs: 2, sats: 3_000_000n });
});

test('getUtxos reads outpoints in their order in one call; through a batch it sees what the batch staged', async (t) => {
  const store = await seeded(t);
  const outpoints = [op(4), op(9), op(2), op(1)];
  await write(store, async (batch) => {
    await reserveUtxos(batch, [op(2)], P1);
    assert.deepEqual(
      (await getUtxos(batch, outpoints)).map((u) => u && [u.value, u.state, u.reservedBy]),
      [[4_000_000n, 'unspent', undefined], undefined, [2_000_000n, 'reserved', P1], [1_000_000n, 'unspent', undefined]],
    );
    assert.equal((await getUtxos(store, outpoints))[2]?.state, 'unspent', 'the store sees nothing staged');
  });
  assert.deepEqual(
    (await getUtxos(store, outpoints)).map((u) => u?.state),
    ['unspent', undefined, 'reserved', 'unspent'],
  );
  assert.deepEqual(await getUtxos(store, []), []);
});

const STATES: UtxoState[] = ['unspent', 'reserved', 'spent'];

/** The counts by state, and the peg-ins' sum, say what listing the records says. */
async function assertCounted(store: Store, when: string): Promise<void> {
  let pegIns = 0n;
  for (const state of STATES) {
    const listed = await listUtxos(store, state);
    assert.deepEqual(
      await utxoTotals(store, state),
      { outputs: listed.length, sats: listed.reduce((a, u) => a + u.value, 0n) },
      `${state} ${when}`,
    );
    for (const u of listed) if (u.pegIn && u.height !== null) pegIns += u.value;
  }
  assert.equal(await pegInTotal(store), pegIns, `peg-ins ${when}`);
  // the value index names exactly the unspent records, largest first
  const byValue = (await store.keys({ prefix: SPACES.unspentByValue, reverse: true })).map(outpointOfKey);
  const unspent = await listUtxos(store, 'unspent');
  assert.deepEqual(
    byValue,
    unspent
      .sort((a, b) =>
        a.value === b.value
          ? a.txid < b.txid
            ? 1
            : a.txid > b.txid
              ? -1
              : b.vout - a.vout
          : a.value > b.value
            ? -1
            : 1,
      )
      .map((u) => ({ txid: u.txid, vout: u.vout })),
    `value index ${when}`,
  );
}

test('the counts by state follow every change: register, reserve, release, spend, a reorg undoing each', async (t) => {
  const store = await seeded(t);
  await assertCounted(store, 'registered');
  await write(store, (batch) => reserveUtxos(batch, [op(1), op(2)], P1));
  await assertCounted(store, 'reserved');
  await write(store, (batch) => releaseUtxos(batch, [op(2)], P1));
  await assertCounted(store, 'released');
  const before: UtxoRecord[] = [];
  await write(store, async (batch) => {
    // spent in the block that also made a new output, both in one batch
    for (const o of [op(1), op(3)]) before.push((await spendUtxo(batch, o, P2))!);
    await registerUtxo(batch, { ...op(9), value: 7n, scriptPubKey: SCRIPT, height: 120, pegIn: true });
    // a payment's change: no peg-in
    await registerUtxo(batch, { ...op(10), value: 11n, scriptPubKey: SCRIPT, height: 120, pegIn: false });
  });
  await assertCounted(store, 'spent');
  assert.equal(await pegInTotal(store), 10_000_007n);
  await write(store, async (batch) => {
    for (const b of before) await unspendUtxo(batch, b);
    await unregisterUtxo(batch, op(9));
    await unregisterUtxo(batch, op(10));
    await unregisterUtxo(batch, op(1)); // reserved: kept, its block gone
  });
  await assertCounted(store, 'undone by a reorg');
  assert.equal((await utxoTotals(store, 'reserved')).outputs, 1);
  assert.equal(await pegInTotal(store), 9_000_000n, 'a reserved output off the chain is no confirmed peg-in');
  // its block comes back; an output recovered from Core as a peg-in is found a payment's change by the block's applier
  await write(store, async (batch) => {
    await registerUtxo(batch, { ...op(1), value: 1_000_000n, scriptPubKey: SCRIPT, height: 121, pegIn: true });
    await registerUtxo(batch, { ...op(4), value: 4_000_000n, scriptPubKey: SCRIPT, height: 104, pegIn: false });
  });
  await assertCounted(store, 'mined again');
  assert.equal(await pegInTotal(store), 6_000_000n);
});

test('a schema 5 store gets its counts when it opens, from the records', async (t) => {
  const dir = await tempDir(t, 'utxo-migration');
  let store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
  await write(store, async (batch) => {
    for (let n = 1; n <= 2500; n++)
      await registerUtxo(batch, { ...op(n), value: BigInt(n), scriptPubKey: SCRIPT, height: 100, pegIn: true });
  });
  await write(store, (batch) => reserveUtxos(batch, [op(7)], P1));
  // as schema 5 left it: no counts
  const old = store.batch();
  for (const state of STATES) old.del(utxoCountKey(state, 'outputs')).del(utxoCountKey(state, 'sats'));
  await old.put(META_KEY, { schemaVersion: 5, descriptor: TEST_DESCRIPTOR }).write();
  assert.equal((await utxoTotals(store, 'unspent')).outputs, 0);
  await store.close();
  store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
  // closed here: the directory's own clean-up runs first among the test's after hooks
  try {
    assert.equal((await store.meta()).schemaVersion, SCHEMA_VERSION);
    assert.deepEqual(await utxoTotals(store, 'unspent'), { outputs: 2499, sats: (2500n * 2501n) / 2n - 7n });
    await assertCounted(store, 'migrated');
  } finally {
    await store.close();
  }
});

test('a schema 5 store whose index names a record that is missing or in another state is refused, not counted', async (t) => {
  // the count took such an entry for an output of its state (a missing one for 0 sats): a broken
  // store opened with counts that hid the damage, where every read of the index refuses it
  for (const [broken, why] of [
    [(batch: StoreBatch) => batch.del(utxoKey(op(3).txid, op(3).vout)), 'missing'],
    [(batch: StoreBatch) => batch.put(utxoIndexKey('spent', op(4).txid, op(4).vout), 1), 'spent'],
  ] as const) {
    const dir = await tempDir(t, `utxo-migration-${why}`);
    const store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
    await write(store, async (batch) => {
      for (let n = 1; n <= 5; n++)
        await registerUtxo(batch, { ...op(n), value: 1_000n, scriptPubKey: SCRIPT, height: 100, pegIn: true });
    });
    const old = store.batch();
    broken(old);
    await old.put(META_KEY, { schemaVersion: 5, descriptor: TEST_DESCRIPTOR }).write();
    await store.close();
    await assert.rejects(
      Store.open(dir, { descriptor: TEST_DESCRIPTOR }),
      new RegExp(
        `utxoidx/\\w+/${op(why === 'missing' ? 3 : 4).txid}.* says \\w+ but the record is ${why === 'missing' ? 'missing' : 'unspent'}`,
      ),
      why,
    );
  }
});

test('a proposer reads the largest outputs deep enough to spend, through the value index, not the dust', async (t) => {
  const store = await openTempStore(t);
  const DUST = 5_000;
  await write(store, async (batch) => {
    for (let n = 1; n <= DUST; n++)
      await registerUtxo(batch, {
        ...op(n),
        value: 330n + BigInt(n % 7),
        scriptPubKey: SCRIPT,
        height: 100,
        pegIn: true,
      });
    // funds: three deep, two too shallow to spend yet (the largest), one of equal value to a deep one
    for (const [n, value, height] of [
      [9001, 5_000_000n, 100],
      [9002, 7_000_000n, 101],
      [9003, 6_000_000n, 100],
      [9004, 9_000_000n, 118],
      [9005, 8_000_000n, 119],
      [9006, 6_000_000n, 102],
    ] as const)
      await registerUtxo(batch, { ...op(n), value, scriptPubKey: SCRIPT, height, pegIn: true });
  });
  await write(store, (batch) => reserveUtxos(batch, [op(9002)], P1));
  const { store: view, reads } = counted(store);
  const deep = (u: UtxoRecord): boolean => spendableAt(u, { tipHeight: 120, spendDepth: 6 });
  const largest = await largestUnspent(view, 6, deep);
  assert.deepEqual(
    largest.map((u) => [u.txid, u.value]),
    [
      // equal values: the later outpoint first, as the index reads backwards
      [op(9006).txid, 6_000_000n],
      [op(9003).txid, 6_000_000n],
      [op(9001).txid, 5_000_000n],
      ...largest.slice(3).map((u) => [u.txid, 336n]),
    ],
    'the deep funds first, then the largest dust; not the reserved, not the shallow',
  );
  assert.equal(largest.length, 6);
  t.diagnostic(`${reads.calls} store calls, ${reads.rows} rows for ${DUST} dust outputs`);
  assert.ok(reads.rows <= 2 * 512 + 10, `${reads.rows} rows read`);
  // fewer than asked for when the wallet holds no more
  assert.equal((await largestUnspent(store, DUST + 100, deep)).length, DUST + 3);
});
