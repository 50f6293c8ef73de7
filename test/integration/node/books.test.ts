import { RocksLevel } from '@nxtedition/rocksdb';
import { unpack } from 'msgpackr';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { BitcoinObserver } from '../../../src/chain/observer.js';
import { stageNewRequest, stageStatus } from '../../../src/evm/request-store.js';
import { readBooks } from '../../../src/node/reserves.js';
import { largestUnspent } from '../../../src/wallet/utxos.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import {
  finalizedKey,
  META_KEY,
  openPaymentKey,
  PAID_SATS_KEY,
  PEG_IN_SATS_KEY,
  proposalKey,
  requestKey,
  signatureMadeKey,
  SPACES,
  txConfirmationKey,
  utxoIndexKey,
  utxoKey,
} from '../../../src/storage/keys.js';
import type { FinalizedRecord, RequestRecord, UtxoRecord } from '../../../src/storage/records.js';
import { SCHEMA_VERSION, Store } from '../../../src/storage/store.js';
import { counted } from '../../support/counted-store.js';
import { testRequest } from '../../support/requests.js';
import { ScriptedChain, scriptedTx } from '../../support/scripted-chain.js';
import { openTempStore, tempDir } from '../../support/tempdir.js';

// The reserve audit reads a member's books at every Bitcoin block, every 30 s between blocks, and
// (without Bitcoin Core) whenever anyone asks GET /reserves, at most every 5 s; it reads them in the
// store's exclusive section, which every payment's bookkeeping waits for. Its cost must follow what
// the federation holds and owes, not how much it has paid over its life: with 200,000 requests paid
// it read 400,000 rows, 2.6 s on this machine, the event loop held throughout (the store reads
// synchronously). Counted here, never timed.

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i + 90))),
});
const FED = toHex(federation.scriptPubKey);
const hash = (n: number): string => `0x${n.toString(16).padStart(64, '0')}`;

/** History: peg-in outputs since spent, and requests paid. */
const SPENT = 2_000;
const PAID = 5_000;
/** What the federation still holds: outputs left of the peg-ins, and the payment's change. */
const LIVE = 10;
const PEG_IN_SATS = 1_000_000n;
const REQUEST_SATS = 300_000n;
/** The books' reads may grow with what is held and owed (a few rows each), never with the history. */
const MAX_ROWS = 60;

/** Requests through their whole life, ingested to paid, in batches of 1,000. */
async function payRequests(store: Store): Promise<void> {
  for (let from = 0; from < PAID; from += 1000) {
    const batch = store.batch();
    for (let n = from; n < from + 1000; n++) {
      let record = stageNewRequest(batch, testRequest({ txHash: hash(n), sats: REQUEST_SATS }), 'ingested');
      for (const status of ['batched', 'signed', 'broadcast', 'paid'] as const)
        record = stageStatus(batch, record, status, status);
    }
    await batch.write();
  }
}

describe("the reserve audit's books", () => {
  it(`are read in at most ${MAX_ROWS} rows, however many outputs were spent and requests paid`, async (t) => {
    const store = await openTempStore(t, federation.descriptor);
    const chain = new ScriptedChain(100);
    const pegIn = scriptedTx(
      'peg-in',
      [{ txid: hash(1).slice(2), vout: 0 }],
      Array.from({ length: SPENT + LIVE }, () => ({ script: FED, sats: PEG_IN_SATS })),
    );
    chain.mine([pegIn]);
    // a federation payment spends most of them (its outputs to users are not the federation's) with change back
    const change = 7_000_000n;
    const payment = scriptedTx(
      'payment',
      Array.from({ length: SPENT }, (_, vout) => ({ txid: pegIn.txid, vout })),
      [
        { script: `0014${'ab'.repeat(20)}`, sats: 1_900_000_000n },
        { script: FED, sats: change },
      ],
    );
    chain.mine([payment]);
    const observer = new BitcoinObserver({ store, chain, federationScript: federation.scriptPubKey, startHeight: 100 });
    await observer.sync();
    await payRequests(store);

    const { store: view, reads } = counted(store);
    const books = await readBooks(view);
    t.diagnostic(`${reads.calls} store calls, ${reads.rows} rows`);
    assert.equal(books.outputs.length, LIVE + 1);
    assert.equal(books.pegIns, BigInt(SPENT + LIVE) * PEG_IN_SATS, 'the payment change is no peg-in');
    assert.equal(books.paid, BigInt(PAID) * REQUEST_SATS);
    assert.deepEqual(books.owed, []);
    assert.ok(reads.rows <= MAX_ROWS, `${reads.rows} rows read for the books`);
  });
});

/** A store at `dir` as schema 6 left it, holding `count` paid requests of 1,000 sats and no paid sum. */
async function schema6WithPaid(dir: string, count: number): Promise<RequestRecord[]> {
  const store = await Store.open(dir, { descriptor: federation.descriptor });
  const batch = store.batch();
  const records: RequestRecord[] = [];
  for (let n = 0; n < count; n++) {
    let record = stageNewRequest(batch, testRequest({ txHash: hash(50_000 + n), sats: 1_000n }), 'ingested');
    for (const status of ['batched', 'signed', 'paid'] as const) record = stageStatus(batch, record, status, status);
    records.push(record);
  }
  await batch.put(PAID_SATS_KEY, 0).put(META_KEY, { schemaVersion: 6, descriptor: federation.descriptor }).write();
  await store.close();
  return records;
}

describe('a schema 6 store', () => {
  it("gets the ledger's sums when it opens: peg-ins marked as the audit judged them, paid requests summed", async (t) => {
    const dir = await tempDir(t, 'ledger-migration');
    let store = await Store.open(dir, { descriptor: federation.descriptor });
    const output = (n: number, vout: number, height: number | null, sats: bigint): UtxoRecord => ({
      txid: hash(n).slice(2),
      vout,
      value: sats,
      scriptPubKey: federation.scriptPubKey,
      height,
      state: 'unspent',
    });
    // 2,500 peg-in outputs (more than a chunk of the migration), one off the chain (not counted);
    // the change of a payment seen confirmed (txconf/) and of one finalized here (final/)
    const pegIns = Array.from({ length: 2500 }, (_, i) => output(1000 + i, 0, i === 7 ? null : 100, 10_000n));
    const confirmedChange = output(1, 1, 101, 70_000n);
    const finalizedChange = output(2, 1, 0, 80_000n);
    const old = store.batch();
    // as schema 6 wrote them: the records and their state index
    for (const u of [...pegIns, confirmedChange, finalizedChange])
      old.put(utxoKey(u.txid, u.vout), u).put(utxoIndexKey(u.state, u.txid, u.vout), 1);
    old.put(txConfirmationKey(confirmedChange.txid), { height: 101, blockHash: hash(9).slice(2) });
    old.put(finalizedKey(finalizedChange.txid), { txid: finalizedChange.txid, requestIds: [] });
    await old.write();
    const batch = store.batch();
    for (let n = 0; n < 30; n++) {
      let record = stageNewRequest(batch, testRequest({ txHash: hash(n), sats: 1_000n + BigInt(n) }), 'ingested');
      for (const status of ['batched', 'signed', ...(n < 20 ? (['paid'] as const) : [])] as const)
        record = stageStatus(batch, record, status, status);
    }
    await batch.write();
    // as schema 6 left it: no marks, no sums
    await store
      .batch()
      .put(PEG_IN_SATS_KEY, 0)
      .put(PAID_SATS_KEY, 0)
      .put(META_KEY, { schemaVersion: 6, descriptor: federation.descriptor })
      .write();
    await store.close();

    store = await Store.open(dir, { descriptor: federation.descriptor });
    // closed here: the directory's own clean-up runs first among the test's after hooks
    try {
      assert.equal((await store.meta()).schemaVersion, SCHEMA_VERSION);
      const books = await readBooks(store);
      assert.equal(books.pegIns, 2499n * 10_000n);
      assert.equal(books.paid, 20n * 1_000n + (19n * 20n) / 2n);
      const marked = await store.getMany<UtxoRecord>(
        [confirmedChange, finalizedChange, pegIns[0]!].map((u) => utxoKey(u.txid, u.vout)),
      );
      assert.deepEqual(
        marked.map((u) => u?.pegIn),
        [undefined, undefined, true],
      );
      // and the unspent outputs' value index
      const largest = await largestUnspent(store, 3, () => true);
      assert.deepEqual(
        largest.map((u) => u.value),
        [80_000n, 70_000n, 10_000n],
      );
    } finally {
      await store.close();
    }
  });

  it('holds no more than a chunk of the paid requests at a time while it sums them', async (t) => {
    // every paid request's index key was read into one array: millions of them took the heap, the
    // open failed before anything was written, and so again at every start
    const dir = await tempDir(t, 'ledger-migration-paid');
    await schema6WithPaid(dir, 1_200);
    let store: Store;
    const keys = Store.prototype.keys;
    let largest = 0;
    Store.prototype.keys = async function (this: Store, range) {
      const found = await keys.call(this, range);
      largest = Math.max(largest, found.length);
      return found;
    };
    try {
      store = await Store.open(dir, { descriptor: federation.descriptor });
    } finally {
      Store.prototype.keys = keys;
    }
    try {
      assert.equal((await readBooks(store)).paid, 1_200n * 1_000n);
      assert.ok(largest <= 1_000, `${largest} keys read at once`);
    } finally {
      await store.close();
    }
  });

  it('a migration cut short leaves a store the older program refuses, and the next open finishes it', async (t) => {
    // the version was bumped only after the step's chunks: a store cut short said "6", and the
    // program of schema 6, run again by its operator, wrote no value index while the chunks already
    // written stood, so the value index named outputs that were no longer unspent
    const dir = await tempDir(t, 'ledger-migration-cut');
    const records = await schema6WithPaid(dir, 3);
    // a record the step cannot read stops it midway, as a kill would
    const broken = requestKey(records[1]!.txHash, records[1]!.ordinal);
    const raw = new RocksLevel(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    await raw.open();
    const [good] = await raw.getMany([broken]);
    await raw
      .batch()
      .put(broken, Buffer.from([0x85]))
      .write();
    await raw.close();
    await assert.rejects(Store.open(dir, { descriptor: federation.descriptor }), /not valid msgpack/);
    await raw.open();
    const meta = unpack((await raw.getMany([META_KEY]))[0]!) as { schemaVersion: number; migratingFrom?: number };
    assert.deepEqual(meta, { schemaVersion: 7, descriptor: federation.descriptor, migratingFrom: 6 });
    await raw.batch().put(broken, good!).write();
    await raw.close();
    const store = await Store.open(dir, { descriptor: federation.descriptor });
    try {
      assert.deepEqual(await store.meta(), { schemaVersion: SCHEMA_VERSION, descriptor: federation.descriptor });
      assert.equal((await readBooks(store)).paid, 3_000n);
    } finally {
      await store.close();
    }
  });
});

describe('a schema 7 store', () => {
  it('gets the list of payments a restart takes up again, from every signature and finalized record', async (t) => {
    const dir = await tempDir(t, 'open-migration');
    let store = await Store.open(dir, { descriptor: federation.descriptor });
    const batch = store.batch();
    const request = (n: number, statuses: readonly ('batched' | 'signed' | 'paid')[]): string => {
      let r = stageNewRequest(batch, testRequest({ txHash: hash(70_000 + n), sats: 1_000n }), 'then');
      for (const status of statuses) r = stageStatus(batch, r, status, status);
      return r.id;
    };
    const paid = request(1, ['batched', 'signed', 'paid']);
    const unpaid = request(2, ['batched', 'signed']);
    const final = (n: number, requestIds: string[], unmatched: Record<string, number> = {}): string => {
      const txid = hash(80_000 + n).slice(2);
      batch.put(finalizedKey(txid), {
        txid,
        tx: new Uint8Array(10),
        prevouts: [],
        requestIds,
        unmatched,
        fee: 1_000n,
        vsize: 100,
        conflicts: [],
        at: 'then',
      } satisfies FinalizedRecord);
      return txid;
    };
    const signed = (n: number, proposal: boolean): string => {
      const txid = hash(80_000 + n).slice(2);
      batch.put(signatureMadeKey(txid), { txid, requestIds: [unpaid] });
      if (proposal) batch.put(proposalKey(txid), { requestIds: [unpaid] });
      return txid;
    };
    const inFlight = signed(1, true);
    signed(2, false); // its proposal is gone: nothing to take up
    signed(3, true);
    final(3, [paid]); // signed, then finalized and paid: settled
    const unsettled = final(4, [unpaid]);
    const late = final(5, [paid], { [`0x${'77'.repeat(32)}:0`]: 2 });
    const handoff = final(6, []);
    await batch.put(META_KEY, { schemaVersion: 7, descriptor: federation.descriptor }).write();
    await store.close();

    store = await Store.open(dir, { descriptor: federation.descriptor });
    try {
      assert.deepEqual(await store.meta(), { schemaVersion: SCHEMA_VERSION, descriptor: federation.descriptor });
      assert.deepEqual(
        await store.keys({ prefix: SPACES.openPayment }),
        [inFlight, unsettled, late, handoff].map(openPaymentKey).sort(),
      );
    } finally {
      await store.close();
    }
  });
});
