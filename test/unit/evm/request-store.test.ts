import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  countRequests,
  getRequest,
  listRequests,
  listRequestsIn,
  paymentsOfRequests,
  requestsByBitcoinAddress,
  requestsByEvmAddress,
  requestsOfEvmTx,
  stageForget,
  stageNewRequest,
  stageStatus,
} from '../../../src/evm/request-store.js';
import { META_KEY, requestCountKey, requestKeyOfIndex, SPACES } from '../../../src/storage/keys.js';
import { SCHEMA_VERSION, Store } from '../../../src/storage/store.js';
import { openTempStore, TEST_DESCRIPTOR } from '../../support/tempdir.js';
import { testRequest } from '../../support/requests.js';
import type { NewRequest } from '../../../src/evm/request-store.js';
import type { RequestRecord } from '../../../src/storage/records.js';

// The request records and their status index (reqidx/): one index entry per record, moved in
// the same batch as every status change, and built for stores written before it existed.

const hash = (n: number): string => `0x${n.toString(16).padStart(64, '0')}`;

function request(n: number): NewRequest {
  return testRequest({ txHash: hash(n), blockHash: hash(1000), bitcoinAddress: 'bcrt1q…', sats: 1_000_000n });
}

async function indexKeys(store: Store): Promise<string[]> {
  const keys: string[] = [];
  for await (const [key] of store.entries({ prefix: SPACES.requestIndex })) keys.push(key);
  return keys;
}

test('the status index follows every request through new, status changes and forget', async (t) => {
  const store = await openTempStore(t);
  let batch = store.batch();
  for (const n of [1, 2, 3]) stageNewRequest(batch, request(n), 'then');
  await batch.write();
  assert.deepEqual(
    (await listRequestsIn(store, ['accepted'])).map((r) => r.id),
    [1, 2, 3].map((n) => `${hash(n)}:0`),
  );

  batch = store.batch();
  const one = (await getRequest(batch, `${hash(1)}:0`))!;
  const batched = stageStatus(batch, one, 'batched', 'now');
  stageStatus(batch, batched, 'signed', 'later');
  // the state machine refuses moves no pipeline stage makes, before anything is staged
  const two = (await getRequest(batch, `${hash(2)}:0`))!;
  for (const illegal of ['accepted', 'paid', 'broadcast', 'rejected'] as const) {
    assert.throws(
      () => stageStatus(batch, two, illegal, 'now'),
      { code: 'illegal_transition' },
      `accepted → ${illegal}`,
    );
  }
  assert.throws(
    () => stageStatus(batch, { ...two, status: 'rejected' }, 'batched', 'now'),
    { code: 'illegal_transition' },
    'rejected is final',
  );
  // a payment that lost gives its requests back to the queue; only a signature moves them to batched
  for (const from of ['signed', 'broadcast'] as const) {
    assert.throws(
      () => stageStatus(batch, { ...two, status: from }, 'batched', 'now'),
      { code: 'illegal_transition' },
      `${from} → batched`,
    );
  }
  await stageForget(batch, store, (await getRequest(batch, `${hash(3)}:0`))!);
  await batch.write();

  assert.deepEqual(await indexKeys(store), [
    `${SPACES.requestIndex}inflight/${hash(1)}/0000000000`,
    `${SPACES.requestIndex}queued/${hash(2)}/0000000000`,
  ]);
  assert.deepEqual(
    (await listRequestsIn(store, ['signed'])).map((r) => [r.id, r.status]),
    [[`${hash(1)}:0`, 'signed']],
  );
  assert.deepEqual(await listRequestsIn(store, ['batched']), []);
  assert.deepEqual([...(await countRequests(store))].sort(), [
    ['accepted', 1],
    ['signed', 1],
  ]);
  // the index agrees with the records themselves
  const byRecord = new Map<string, number>();
  for (const r of await listRequests(store)) byRecord.set(r.status, (byRecord.get(r.status) ?? 0) + 1);
  assert.deepEqual([...byRecord].sort(), [...(await countRequests(store))].sort());
});

test('a store of an older schema (requests named by block log index) is refused, untouched', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pegout-migrate-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
  const batch = store.batch();
  for (const n of [1, 2]) stageNewRequest(batch, request(n), 'then');
  await batch.put(META_KEY, { schemaVersion: 2, descriptor: TEST_DESCRIPTOR }).write();
  await store.close();
  await assert.rejects(Store.open(dir, { descriptor: TEST_DESCRIPTOR }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'schema_older');
    assert.match(err.message, /schema version 2.*once every payment this member signed has confirmed/);
    return true;
  });
  // nothing was rewritten: it is refused the same way again
  await assert.rejects(Store.open(dir, { descriptor: TEST_DESCRIPTOR }), { code: 'schema_older' });
});

test('requests by EVM address, by Bitcoin address and by EVM transaction come from indexes, newest first, a page at a time, and leave them with their record', async (t) => {
  const store = await openTempStore(t);
  const alice = `0x${'aa'.repeat(20)}`;
  const bob = `0x${'bb'.repeat(20)}`;
  // any text a user sent, '/' and markup included, is one index prefix of its own
  const odd = 'bc1q/<b>odd</b>';
  const at = (n: number, who: string, block: number, to = 'bcrt1q…') => ({
    ...request(n),
    evmAddress: who,
    blockNumber: block,
    bitcoinAddress: to,
  });
  await store.transaction(async (batch) => {
    for (const [n, who, block, to] of [
      [1, alice, 5, odd],
      [2, bob, 6, 'bcrt1q…'],
      [3, alice, 9, odd],
      [4, alice, 7, 'bcrt1q…'],
    ] as const)
      stageNewRequest(batch, at(n, who, block, to), 'then');
    stageNewRequest(batch, { ...at(5, bob, 8), id: `${hash(2)}:1`, txHash: hash(2), ordinal: 1 }, 'then');
  });
  const blocks = (page: { items: RequestRecord[] }) => page.items.map((r) => r.blockNumber);
  assert.deepEqual(blocks(await requestsByEvmAddress(store, alice, { limit: 10 })), [9, 7, 5]);
  const first = await requestsByEvmAddress(store, alice, { limit: 2 });
  assert.deepEqual(blocks(first), [9, 7]);
  assert.equal(first.next, `0000000007/${hash(4)}/0000000000`);
  const second = await requestsByEvmAddress(store, alice, { limit: 2, cursor: first.next! });
  assert.deepEqual([blocks(second), second.next], [[5], null]);
  assert.deepEqual(
    (await requestsByEvmAddress(store, bob, { limit: 10 })).items.map((r) => r.id),
    [`${hash(2)}:1`, `${hash(2)}:0`],
  );
  assert.deepEqual(blocks(await requestsByBitcoinAddress(store, odd, { limit: 10 })), [9, 5]);
  assert.deepEqual(blocks(await requestsByBitcoinAddress(store, 'bc1q/', { limit: 10 })), []);
  assert.deepEqual(
    (await requestsOfEvmTx(store, hash(2), { limit: 1 })).items.map((r) => r.id),
    [`${hash(2)}:1`],
  );
  assert.equal((await requestsOfEvmTx(store, hash(2), { limit: 1 })).next, '0000000001');
  assert.deepEqual(
    (await requestsOfEvmTx(store, hash(2), { limit: 5, cursor: '0000000001' })).items.map((r) => r.id),
    [`${hash(2)}:0`],
  );
  await store.transaction(async (batch) => stageForget(batch, store, (await getRequest(batch, `${hash(3)}:0`))!));
  assert.deepEqual(blocks(await requestsByEvmAddress(store, alice, { limit: 10 })), [7, 5]);
  assert.deepEqual(blocks(await requestsByBitcoinAddress(store, odd, { limit: 10 })), [5]);
});

test('a store of schema 3 (no Bitcoin address or payment time index) is refused, untouched', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pegout-schema3-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
  await store.batch().put(META_KEY, { schemaVersion: 3, descriptor: TEST_DESCRIPTOR }).write();
  await store.close();
  await assert.rejects(Store.open(dir, { descriptor: TEST_DESCRIPTOR }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'schema_older');
    assert.match(err.message, /schema version 3, which has no index of requests by Bitcoin address \(reqbtc\/\)/);
    assert.match(err.message, /once every payment this member signed has confirmed/);
    return true;
  });
});

test('a schema 4 store is migrated: histories into their records, the status index by phase, payments listed, resumably', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pegout-schema4-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  let store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
  // schema 4 as it was written: the record with a seq, one reqlog/ key per status change
  const old = (n: number) => {
    const { history: _history, ...record } = stageNewRequest(store.batch(), request(n), 'unused');
    return { ...record, status: 'batched', seq: 1 };
  };
  const logKey = (n: number, seq: number) => `reqlog/${hash(n)}/0000000000/${String(seq).padStart(10, '0')}`;
  const batch = store.batch();
  for (const n of [1, 2, 3]) {
    batch.put(`req/${hash(n)}/0000000000`, old(n));
    batch.put(`reqidx/batched/${hash(n)}/0000000000`, 1);
    batch.put(logKey(n, 0), { status: 'accepted', at: `t${n}` });
    batch.put(logKey(n, 1), { status: 'batched', at: `u${n}`, detail: `in payment ${n}` });
  }
  // the payments of requests 1 and 2 as schema 4 indexed them, one key each
  for (const [n, txid] of [
    [1, 'bb'],
    [1, 'aa'],
    [2, 'cc'],
  ] as const)
    batch.put(`reqsig/${hash(n)}/0000000000/${txid.repeat(32)}`, 1);
  // request 3 as a migration cut short by a crash left it: converted, its old keys gone
  const { seq: _seq, ...converted } = old(3);
  batch.put(`req/${hash(3)}/0000000000`, { ...converted, history: [{ status: 'batched', at: 'kept' }] });
  batch
    .del(logKey(3, 0))
    .del(logKey(3, 1))
    .del(`reqidx/batched/${hash(3)}/0000000000`);
  batch.put(`reqidx/inflight/${hash(3)}/0000000000`, 1);
  await batch.put(META_KEY, { schemaVersion: 4, descriptor: TEST_DESCRIPTOR }).write();
  await store.close();

  store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
  assert.equal((await store.meta()).schemaVersion, SCHEMA_VERSION);
  for (const n of [1, 2]) {
    const r = (await getRequest(store, `${hash(n)}:0`))!;
    assert.deepEqual(r.history, [
      { status: 'accepted', at: `t${n}` },
      { status: 'batched', at: `u${n}`, detail: `in payment ${n}` },
    ]);
    assert.equal('seq' in r, false, 'the record loses its seq');
  }
  assert.deepEqual((await getRequest(store, `${hash(3)}:0`))!.history, [{ status: 'batched', at: 'kept' }]);
  assert.deepEqual(await store.keys({ prefix: 'reqlog/' }), [], 'no reqlog/ key is left');
  assert.deepEqual(await store.keys({ prefix: 'reqsig/' }), [], 'no reqsig/ key is left');
  assert.deepEqual(
    await paymentsOfRequests(
      store,
      [1, 2, 3].map((n) => ({ txHash: hash(n), ordinal: 0 })),
    ),
    [['aa'.repeat(32), 'bb'.repeat(32)], ['cc'.repeat(32)], []],
  );
  assert.deepEqual(
    await indexKeys(store),
    [1, 2, 3].map((n) => `reqidx/inflight/${hash(n)}/0000000000`),
    'the index is by phase',
  );
  assert.deepEqual(
    (await listRequestsIn(store, ['batched'])).map((r) => r.id),
    [1, 2, 3].map((n) => `${hash(n)}:0`),
  );
  await store.close();
});

/** Counts by status of the records the status index points at: what the counters must always equal. */
async function indexCounts(store: Store): Promise<[string, number][]> {
  const counts = new Map<string, number>();
  const records = await store.getMany<RequestRecord>((await indexKeys(store)).map(requestKeyOfIndex));
  for (const r of records) counts.set(r!.status, (counts.get(r!.status) ?? 0) + 1);
  return [...counts].sort();
}

const counted = async (store: Store): Promise<[string, number][]> => [...(await countRequests(store))].sort();

test('the counts by status follow every transition, concurrent batches and a restart, without a scan', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pegout-counts-'));
  let store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const id = (n: number): string => `${hash(n)}:0`;
  await store.transaction(async (batch) => {
    for (const n of [1, 2, 3, 4, 5, 6]) stageNewRequest(batch, request(n), 'then');
    stageNewRequest(batch, { ...request(7), status: 'rejected', reason: 'below_minimum' }, 'then');
  });
  assert.deepEqual(await counted(store), [
    ['accepted', 6],
    ['rejected', 1],
  ]);
  await store.transaction(async (batch) => {
    // two moves of one request in one batch, a forget and an orphan
    const one = stageStatus(batch, (await getRequest(batch, id(1)))!, 'batched', 'now');
    stageStatus(batch, one, 'signed', 'now');
    stageStatus(batch, (await getRequest(batch, id(2)))!, 'batched', 'now');
    await stageForget(batch, store, (await getRequest(batch, id(3)))!);
    stageStatus(batch, (await getRequest(batch, id(4)))!, 'orphaned', 'now');
    // a read through the batch sees its own changes to the counts
    assert.equal(await batch.get(requestCountKey('accepted')), 2);
  });
  // batches written at the same time, outside any transaction, lose no update
  const move = async (n: number, to: 'batched' | 'signed'): Promise<void> => {
    const batch = store.batch();
    stageStatus(batch, (await getRequest(store, id(n)))!, to, 'now');
    await batch.write();
  };
  const fresh = store.batch();
  stageNewRequest(fresh, request(8), 'then');
  await Promise.all([move(5, 'signed'), move(6, 'batched'), fresh.write()]);
  const expected = [
    ['accepted', 1],
    ['batched', 2],
    ['orphaned', 1],
    ['rejected', 1],
    ['signed', 2],
  ];
  assert.deepEqual(await counted(store), expected);
  assert.deepEqual(await counted(store), await indexCounts(store));

  await store.close();
  store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
  assert.deepEqual(await counted(store), expected, 'the counts survive a restart');
  await store.transaction(async (batch) => {
    stageStatus(batch, (await getRequest(batch, id(6)))!, 'accepted', 'later', 'its payment lost');
  });
  assert.deepEqual(await counted(store), await indexCounts(store));
});
