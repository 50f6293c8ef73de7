import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { RocksLevel } from '@nxtedition/rocksdb';
import { Store, SCHEMA_VERSION } from '../../../src/storage/store.js';
import { StorageError } from '../../../src/storage/errors.js';
import {
  META_KEY,
  keyNumber,
  utxoKey,
  utxoIndexKey,
  SPACES,
  requestKey,
  requestIndexKey,
  requestByBitcoinAddressKey,
} from '../../../src/storage/keys.js';
import { openTempStore, tempDir, TEST_DESCRIPTOR as DESCRIPTOR } from '../../support/tempdir.js';
import type { StoreMeta } from '../../../src/storage/records.js';

const OTHER = 'tr(50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0,sortedmulti_a(1,bb))#test0002';
const TXID = 'ab'.repeat(32);

async function collect<T>(it: AsyncIterable<[string, T]>): Promise<[string, T][]> {
  const out: [string, T][] = [];
  for await (const entry of it) out.push(entry);
  return out;
}

function storageCode(code: string, ...mustMention: string[]) {
  return (err: unknown) => {
    assert.ok(err instanceof StorageError, `expected StorageError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.domain, 'storage');
    for (const text of mustMention)
      assert.ok(err.message.includes(text), `message ${JSON.stringify(err.message)} should mention ${text}`);
    return true;
  };
}

test('values round-trip through msgpack, bigint of any size included', async (t) => {
  const store = await openTempStore(t);
  const record = {
    sats: 2_100_000_000_000_000n,
    wei: 2n ** 255n + 12345n,
    negative: -(2n ** 100n),
    small: 0n,
    count: 7,
    big: 2 ** 40,
    text: 'bcrt1q…',
    bytes: new Uint8Array([0, 1, 254, 255]),
    list: [1n, 'two', null],
    nested: { state: 'reserved', reservedBy: TXID },
  };
  await store.batch().put('x/1', record).write();
  const back = await store.get<typeof record>('x/1');
  assert.ok(back);
  assert.deepEqual({ ...back, bytes: new Uint8Array(back.bytes) }, record);
  assert.equal(typeof back.sats, 'bigint');
  assert.equal(typeof back.count, 'number');
  assert.equal(await store.get('x/2'), undefined);
  assert.deepEqual(await store.getMany(['x/2', 'x/1']), [undefined, back]);
});

test('a batch is atomic, reads its own staged writes, and refuses bad keys, undefined values and a second write', async (t) => {
  const store = await openTempStore(t);
  await store.batch().put('a/1', 1).put('a/2', 2).write({ sync: true });

  const batch = store.batch().put('a/3', 3).del('a/1');
  assert.equal(batch.length, 2);
  assert.equal(await batch.get('a/1'), undefined, 'staged delete hides the stored value');
  assert.equal(await batch.get('a/2'), 2, 'unstaged keys read through to the store');
  assert.equal(await batch.get('a/3'), 3);
  assert.equal(await store.get('a/3'), undefined, 'nothing visible before write');
  assert.equal(await store.get('a/1'), 1);
  await batch.write({ sync: true });
  assert.deepEqual(await collect(store.entries({ prefix: 'a/' })), [
    ['a/2', 2],
    ['a/3', 3],
  ]);
  await assert.rejects(batch.write(), storageCode('write_failed', 'already written'));
  assert.throws(() => batch.put('a/4', 4), storageCode('write_failed'));

  assert.throws(() => store.batch().put('a/4', undefined), storageCode('invalid_value', 'a/4'));
  assert.throws(() => store.batch().put('has space', 1), storageCode('invalid_key'));
  assert.throws(() => store.batch().put('', 1), storageCode('invalid_key'));
  await assert.rejects(store.get('ünïcode'), storageCode('invalid_key'));
  // a batch's reads check their keys once, before they look among its own changes or in the store
  await assert.rejects(store.batch().get('ünïcode'), storageCode('invalid_key'));
  await assert.rejects(store.batch().put('a/5', 5).getMany(['a/5', 'ünïcode']), storageCode('invalid_key'));
});

test('entries: fixed-width keys iterate in numeric order, bounded by prefix, gte/lt, reverse, limit', async (t) => {
  const store = await openTempStore(t);
  const vouts = [0, 1, 2, 9, 10, 11, 99, 100, 1000, 4294967295];
  const batch = store.batch();
  for (const vout of [...vouts].reverse()) batch.put(utxoKey(TXID, vout), vout);
  // neighbours that share a textual prefix with utxo/ must stay outside its range
  batch.put(utxoIndexKey('unspent', TXID, 5), 1);
  batch.put(requestKey(`0x${'cd'.repeat(32)}`, 3), 'req');
  await batch.write();

  const all = await collect<number>(store.entries({ prefix: SPACES.utxo }));
  assert.deepEqual(
    all.map(([, v]) => v),
    vouts,
  );
  const rev = await collect<number>(store.entries({ prefix: SPACES.utxo, reverse: true, limit: 3 }));
  assert.deepEqual(
    rev.map(([, v]) => v),
    [4294967295, 1000, 100],
  );
  const window = await collect<number>(
    store.entries({ prefix: SPACES.utxo, gte: utxoKey(TXID, 10), lt: utxoKey(TXID, 1000) }),
  );
  assert.deepEqual(
    window.map(([, v]) => v),
    [10, 11, 99, 100],
  );
  assert.equal(keyNumber(42, 'n'), '0000000042');
  assert.throws(() => keyNumber(-1, 'vout'), storageCode('invalid_key', 'vout'));
  assert.throws(() => keyNumber(1.5, 'vout'), storageCode('invalid_key'));
  assert.throws(() => utxoKey('AB'.repeat(32), 0), storageCode('invalid_key', 'lowercase'));
  // a request's keys share one part, reused while the same request's keys are built in a row:
  // interleaved requests and a bad hash after a good one are still each their own
  const [x, y] = [`0x${'cd'.repeat(32)}`, `0x${'ef'.repeat(32)}`];
  const part = (hash: string, ordinal: number): string => `${hash}/${keyNumber(ordinal, 'ordinal')}`;
  assert.equal(requestKey(x, 3), `${SPACES.request}${part(x, 3)}`);
  assert.equal(requestKey(x, 4), `${SPACES.request}${part(x, 4)}`);
  assert.equal(requestIndexKey('batched', y, 3), `${SPACES.requestIndex}inflight/${part(y, 3)}`);
  assert.equal(requestKey(x, 3), `${SPACES.request}${part(x, 3)}`);
  assert.throws(() => requestKey(x.toUpperCase().replace('0X', '0x'), 3), storageCode('invalid_key', 'lowercase'));
  assert.throws(() => requestKey(x, -1), storageCode('invalid_key', 'ordinal'));

  // breaking out of an iteration releases it: the store still closes cleanly afterwards
  for await (const entry of store.entries({ prefix: '' })) {
    assert.ok(entry);
    break;
  }
});

test('a store persists across reopen and refuses another federation, a newer schema, foreign data, a second opener', async (t) => {
  const dir = await tempDir(t, 'store');
  const storeDir = path.join(dir, 'member');
  const store = await Store.open(storeDir, { descriptor: DESCRIPTOR });
  assert.equal(store.created, true, 'made here: the member warns (store_created)');
  await store.batch().put('x/1', 'kept').write({ sync: true });
  assert.deepEqual(await store.meta(), { schemaVersion: SCHEMA_VERSION, descriptor: DESCRIPTOR });

  await assert.rejects(Store.open(storeDir, { descriptor: DESCRIPTOR }), storageCode('open_failed', storeDir));
  await store.close();
  await store.close();
  await assert.rejects(store.get('x/1'), storageCode('closed'));

  await assert.rejects(
    Store.open(storeDir, { descriptor: OTHER }),
    storageCode('federation_mismatch', DESCRIPTOR, OTHER),
  );

  const reopened = await Store.open(storeDir, { descriptor: DESCRIPTOR });
  assert.equal(reopened.created, false);
  assert.equal(await reopened.get('x/1'), 'kept');
  assert.deepEqual(
    await reopened.meta(),
    { schemaVersion: SCHEMA_VERSION, descriptor: DESCRIPTOR },
    'a refused open overwrote nothing',
  );
  await reopened
    .batch()
    .put(META_KEY, { schemaVersion: SCHEMA_VERSION + 1, descriptor: DESCRIPTOR } satisfies StoreMeta)
    .write({ sync: true });
  await reopened.close();
  await assert.rejects(
    Store.open(storeDir, { descriptor: DESCRIPTOR }),
    storageCode('schema_newer', String(SCHEMA_VERSION + 1), String(SCHEMA_VERSION)),
  );
  const raw = new RocksLevel(storeDir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await raw.open();
  const [metaBytes, kept] = await raw.getMany([META_KEY, 'x/1']);
  await raw.close();
  assert.ok(metaBytes && kept, 'refusing a newer schema leaves the records in place');

  const foreignDir = path.join(dir, 'foreign');
  const foreign = new RocksLevel(foreignDir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await foreign.open({ createIfMissing: true });
  await foreign
    .batch()
    .put('something', Buffer.from([1]))
    .write();
  await foreign.close();
  await assert.rejects(Store.open(foreignDir, { descriptor: DESCRIPTOR }), storageCode('not_a_store', 'something'));
});

test('exclusive sections run one at a time, in call order, and release on failure', async (t) => {
  const store = await openTempStore(t);
  const log: string[] = [];
  const section = (name: string, fail = false) =>
    store.exclusive(async () => {
      log.push(`${name}:in`);
      await new Promise((resolve) => setImmediate(resolve));
      log.push(`${name}:out`);
      if (fail) throw new Error(name);
      return name;
    });
  const results = await Promise.allSettled([section('a'), section('b', true), section('c')]);
  assert.deepEqual(log, ['a:in', 'a:out', 'b:in', 'b:out', 'c:in', 'c:out']);
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
});

test('entries and keys page through long ranges in order, forwards and backwards, with and without a limit', async (t) => {
  const store = await openTempStore(t);
  const batch = store.batch();
  const keys = Array.from({ length: 2_345 }, (_, i) => `pg/${String(i).padStart(5, '0')}`);
  for (const [i, key] of keys.entries()) batch.put(key, i);
  batch.put('ph/after', -1).put('pf/before', -1);
  await batch.write();
  const forward = await collect<number>(store.entries({ prefix: 'pg/' }));
  assert.deepEqual(
    forward.map(([k]) => k),
    keys,
  );
  assert.deepEqual(
    forward.map(([, v]) => v),
    keys.map((_, i) => i),
  );
  assert.deepEqual(
    (await collect(store.entries({ prefix: 'pg/', reverse: true }))).map(([k]) => k),
    [...keys].reverse(),
  );
  assert.deepEqual(
    (await collect(store.entries({ prefix: 'pg/', limit: 1_500 }))).map(([k]) => k),
    keys.slice(0, 1_500),
  );
  assert.deepEqual(
    (await collect(store.entries({ prefix: 'pg/', limit: 1_001, reverse: true }))).map(([k]) => k),
    [...keys].reverse().slice(0, 1_001),
  );
  assert.deepEqual(
    (await collect(store.entries({ prefix: 'pg/', gte: 'pg/01000', lt: 'pg/02001' }))).map(([k]) => k),
    keys.slice(1_000, 2_001),
  );
  assert.deepEqual(await store.keys({ prefix: 'pg/' }), keys);
  assert.deepEqual(
    await store.keys({ prefix: 'pg/', reverse: true, limit: 1_234 }),
    [...keys].reverse().slice(0, 1_234),
  );
  assert.deepEqual(await store.keys({ prefix: 'pz/' }), []);
});

test('reqbtc/ keys hash the destination text as UTF-8, as every schema since 4 wrote them', () => {
  // digests of the text's UTF-8 bytes, computed apart from keys.ts: an existing store's index keeps working
  const tx = `0x${'ab'.repeat(32)}`;
  assert.equal(
    requestByBitcoinAddressKey('bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080', 7, tx, 1),
    `reqbtc/f98c081e21883d1768dfd191d733ff25b81b744259cd40fd5fba819f048912b9/0000000007/${tx}/0000000001`,
  );
  assert.equal(
    requestByBitcoinAddressKey('pay/é😀', 7, tx, 1),
    `reqbtc/7487de137b9ccca27e90c241cc775c2f820b551349b5c59f38e96ed768013dab/0000000007/${tx}/0000000001`,
  );
});
