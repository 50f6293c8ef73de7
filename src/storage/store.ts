import { RocksLevel } from '@nxtedition/rocksdb';
import { newPackr } from '../msgpack.js';
import * as stages from '../metrics/stages.js';
import { tryParseRequestId } from '../evm/request-id.js';
import { StorageError } from './errors.js';
import {
  finalizedKey,
  META_KEY,
  openPaymentKey,
  PAID_SATS_KEY,
  PEG_IN_SATS_KEY,
  proposalKey,
  requestIndexPrefix,
  requestKey,
  requestKeyOfIndex,
  requestPhase,
  SPACES,
  txConfirmationKey,
  unspentByValueKey,
  utxoCountKey,
  utxoIndexPrefix,
  utxoKey,
} from './keys.js';
import type { FinalizedRecord, RequestRecord, StatusChange, StoreMeta, UtxoRecord, UtxoState } from './records.js';

/**
 * Bumped whenever the layout changes; an older binary refuses a newer store, and a newer one
 * migrates an older store when it opens it (MIGRATIONS) or refuses it (UNREADABLE). 2: the reqidx/
 * status index. 3: requests named by transaction and ordinal. 4: the reqbtc/ and finalat/ indexes
 * and the reqcount/ counters. 5: a request's status history inside its req/ record (no reqlog/), the
 * status index by phase, a request's payments as one list (reqpay/, not a reqsig/ key each). 6: the
 * counts and sums of federation outputs by state (utxocount/). 7: the reserve ledger's sums kept as
 * counters (peg-in outputs marked, utxocount/pegin/sats; reqsats/paid), the unspent outputs' value
 * index (utxoval/). 8: the payments a restart picks up again (open/).
 */
export const SCHEMA_VERSION = 8;

export interface EntriesRange {
  /** Only keys starting with this prefix; gte/lt narrow the range further and are full keys. */
  prefix: string;
  gte?: string;
  lt?: string;
  reverse?: boolean;
  limit?: number;
}

/**
 * Values are msgpack: plain objects, arrays, strings, numbers, booleans, null, Uint8Array
 * (read back as Buffer, a Uint8Array) and bigint of any size (satoshi and wei amounts must not
 * round through float64). Records are maps, not msgpackr "records", so any msgpack reader can
 * inspect a store.
 */
const packr = newPackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint', useBigIntExtension: true });

// Printable ASCII only: keys.ts builds every key from hex, digits and fixed words, and ASCII
// keeps UTF-8 byte order equal to string order, which prefix ranges rely on. Checked on every put
// and read, so by a loop over the characters (a regex test costs several times that here).
function printableAscii(key: string): boolean {
  if (key.length < 1 || key.length > 512) return false;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || !printableAscii(key)) {
    throw new StorageError(
      'invalid_key',
      `store key must be 1 to 512 printable ASCII characters, got ${JSON.stringify(key)}`,
      { key: String(key) },
    );
  }
}

function encode(key: string, value: unknown): Buffer {
  if (value === undefined) {
    throw new StorageError('invalid_value', `value for key ${key} is undefined; use del() to remove a record`, { key });
  }
  try {
    return packr.pack(value);
  } catch (err) {
    throw new StorageError(
      'invalid_value',
      `value for key ${key} cannot be encoded as msgpack: ${(err as Error).message}`,
      { key },
      { cause: err },
    );
  }
}

function decode<T>(key: string, bytes: Buffer): T {
  try {
    return packr.unpack(bytes) as T;
  } catch (err) {
    throw new StorageError(
      'decode_failed',
      `record at key ${key} is not valid msgpack (${bytes.length} bytes): ${(err as Error).message}`,
      { key },
      { cause: err },
    );
  }
}

/** The first string after every string that starts with prefix (prefixes are ASCII). */
function prefixEnd(prefix: string): string {
  const last = prefix.charCodeAt(prefix.length - 1);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

/**
 * A set of puts and deletes applied atomically by write(). Staged values are encoded when
 * put, so later mutation of the caller's object changes nothing, and get() reads the batch's
 * own staged writes first: code that changes several related records in one batch (a block's
 * outputs and the spends of those outputs in the same block) sees its earlier steps.
 */
/** What read-only helpers need: a Store, or a StoreBatch (which also sees its own staged writes). */
export interface StoreReader {
  get<T>(key: string): Promise<T | undefined>;
  getMany<T>(keys: string[]): Promise<(T | undefined)[]>;
}

/** The store's read of keys a batch checked already. */
type ReadStored = <T>(keys: string[]) => Promise<(T | undefined)[]>;

type ApplyBatch = (
  staged: ReadonlyMap<string, Buffer | null>,
  deltas: ReadonlyMap<string, number>,
  sync: boolean,
) => Promise<void>;

/** A counter's stored value: a safe integer (0 when absent). */
function counterValue(key: string, value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isSafeInteger(value))
    throw new StorageError('decode_failed', `counter at key ${key} is not an integer`, { key });
  return value;
}

export class StoreBatch implements StoreReader {
  readonly #read: ReadStored;
  readonly #apply: ApplyBatch;
  readonly #staged = new Map<string, Buffer | null>();
  /** Counter increments, added to the stored values when the batch is written (add()). */
  readonly #deltas = new Map<string, number>();
  #written = false;

  /** Made by Store.batch(). */
  constructor(read: ReadStored, apply: ApplyBatch) {
    this.#read = read;
    this.#apply = apply;
  }

  put(key: string, value: unknown): this {
    this.#checkOpen();
    const section = stages.enter('store_write');
    try {
      checkKey(key);
      this.#staged.set(key, encode(key, value));
    } finally {
      stages.leave(section);
    }
    return this;
  }

  /**
   * Adds `delta` to the integer counter at `key` (0 when absent) as the batch is written. The store
   * reads, adds and writes counters under a lock of its own, so two batches never add to the same
   * stale value, whoever writes them. Reads through this batch see the sum.
   */
  add(key: string, delta: number): this {
    checkKey(key);
    this.#checkOpen();
    if (!Number.isSafeInteger(delta))
      throw new StorageError('invalid_value', `counter delta for key ${key} must be a safe integer`, { key });
    this.#deltas.set(key, (this.#deltas.get(key) ?? 0) + delta);
    return this;
  }

  del(key: string): this {
    checkKey(key);
    this.#checkOpen();
    this.#staged.set(key, null);
    return this;
  }

  /** Number of distinct keys this batch changes (counters included). */
  get length(): number {
    let counters = 0;
    for (const key of this.#deltas.keys()) if (!this.#staged.has(key)) counters++;
    return this.#staged.size + counters;
  }

  async get<T>(key: string): Promise<T | undefined> {
    const [value] = await this.getMany<T>([key]);
    return value;
  }

  /** Staged values where this batch changed the key, the store's elsewhere; one store read for all the rest. */
  async getMany<T>(keys: string[]): Promise<(T | undefined)[]> {
    for (const key of keys) checkKey(key);
    const unstaged = keys.filter((key) => !this.#staged.has(key));
    const stored = unstaged.length > 0 ? await this.#read<T>(unstaged) : [];
    let next = 0;
    return keys.map((key) => {
      const staged = this.#staged.get(key);
      const value = staged === undefined ? stored[next++] : staged === null ? undefined : decode<T>(key, staged);
      const delta = this.#deltas.get(key);
      return delta === undefined ? value : ((counterValue(key, value) + delta) as T);
    });
  }

  /**
   * Applies every staged change or none. `sync: true` returns only after the write-ahead log
   * reached the disk; use it for records the safety invariants depend on (a signature made, a
   * UTXO reserved). Without it a process crash still loses nothing, a power loss may lose the
   * last writes, whole batches at a time.
   */
  async write(options: { sync?: boolean } = {}): Promise<void> {
    this.#checkOpen();
    this.#written = true;
    await this.#apply(this.#staged, this.#deltas, options.sync === true);
  }

  #checkOpen(): void {
    if (this.#written)
      throw new StorageError('write_failed', 'this batch was already written; start a new batch()', {});
  }
}

/**
 * The synchronous reads of @nxtedition/rocksdb (a point read from the memtable or block cache
 * takes a few microseconds; the abstract-level promise API sends each read through the libuv
 * thread pool and back, several times that). The signer and the coordinator make thousands of
 * small reads per payment, so they read synchronously wherever the binding offers it.
 */
interface SyncReads {
  _getManySync(keys: string[]): (Buffer | undefined)[];
  querySync(options: {
    gte?: string;
    gt?: string;
    lt?: string;
    reverse: boolean;
    limit: number;
    values: boolean;
    keyEncoding: 'utf8';
    valueEncoding: 'buffer';
  }): { rows: (string | Buffer)[] };
}

/**
 * A batch as the store writes it. @nxtedition/rocksdb's own chained batch offers `_put`, `_del` and
 * `_writeSync`, which go straight to the binding: abstract-level's public put copies its options
 * twice and logs every operation until the write, a dozen allocations per put on the path every
 * request takes about ten times. Keys were checked (checkKey) and values encoded when staged.
 */
interface RawBatch {
  put(key: string, value: Buffer): void;
  del(key: string): void;
  write(sync: boolean): void;
}

interface BindingBatch {
  _put(key: string, value: Buffer): void;
  _del(key: string): void;
  _writeSync(options: { sync: boolean }): void;
}

function rawBatch(batch: ReturnType<RocksLevel['batch']>): RawBatch {
  const binding = batch as unknown as Partial<BindingBatch>;
  if (
    typeof binding._put === 'function' &&
    typeof binding._del === 'function' &&
    typeof binding._writeSync === 'function'
  ) {
    const b = binding as BindingBatch;
    return { put: (k, v) => b._put(k, v), del: (k) => b._del(k), write: (sync) => b._writeSync({ sync }) };
  }
  throw new StorageError('write_failed', 'this @nxtedition/rocksdb has no synchronous chained batch', {});
}

interface IteratorBounds {
  gte?: string;
  lt?: string;
  reverse: boolean;
  limit?: number;
}

/** One page of a listing: at most `limit` items after `cursor`, the `next` of the page before. */
export interface PageRequest {
  readonly limit: number;
  readonly cursor?: string | undefined;
}

export interface Page<T> {
  readonly items: T[];
  /** The cursor of the following page; null on the last one. */
  readonly next: string | null;
}

/**
 * The last keys under `prefix`, newest (greatest) first: an index read, one page at a time. A
 * cursor is the tail of the last key of the page before (what follows the prefix), so it cannot
 * reach outside the prefix whatever a client sends.
 */
export async function newestKeys(store: Store, prefix: string, page: PageRequest): Promise<Page<string>> {
  const keys = await store.keys({
    prefix,
    reverse: true,
    limit: page.limit + 1,
    ...(page.cursor === undefined ? {} : { lt: `${prefix}${page.cursor}` }),
  });
  const items = keys.slice(0, page.limit);
  const last = items[items.length - 1];
  return { items, next: keys.length > page.limit && last !== undefined ? last.slice(prefix.length) : null };
}

/** Schema 4's request history space: reqlog/<tx hash>/<ordinal>/<seq>, one key per status change. */
const SCHEMA_4_HISTORY = 'reqlog/';

/** Records a migration rewrites in each of its own synced batches, so a large store is not one huge batch. */
const MIGRATION_CHUNK = 1000;

/** Finalized records a migration reads at a time. */
const FINALIZED_CHUNK = 50;

/**
 * 4 → 5: each request's history moves from its reqlog/ keys into its req/ record (which loses its
 * `seq`), and its status index entry from reqidx/<status>/ to reqidx/<phase>/. Chunks are written
 * as they are done, each record with its old keys' removal, and a record that already has its
 * history is passed over: a migration cut short by a crash resumes where it stopped.
 */
async function foldRequestHistories(store: Store): Promise<void> {
  let batch = store.batch();
  for await (const [key, record] of store.entries<RequestRecord & { seq?: number }>({ prefix: SPACES.request })) {
    if (record.history !== undefined) continue;
    const part = key.slice(SPACES.request.length);
    batch.del(`${SPACES.requestIndex}${record.status}/${part}`);
    batch.put(`${SPACES.requestIndex}${requestPhase(record.status)}/${part}`, 1);
    const logPrefix = `${SCHEMA_4_HISTORY}${part}/`;
    const history: StatusChange[] = [];
    for await (const [logKey, change] of store.entries<StatusChange>({ prefix: logPrefix })) {
      history.push(change);
      batch.del(logKey);
    }
    const { seq: _seq, ...rest } = record;
    batch.put(key, { ...rest, history } satisfies RequestRecord);
    if (batch.length >= MIGRATION_CHUNK) {
      await batch.write({ sync: true });
      batch = store.batch();
    }
  }
  if (batch.length > 0) await batch.write({ sync: true });
}

/** Schema 4's request→payment index: reqsig/<tx hash>/<ordinal>/<txid>, one key per payment. */
const SCHEMA_4_PAYMENTS = 'reqsig/';

/**
 * 4 → 5: each request's reqsig/ keys become one sorted list at reqpay/<tx hash>/<ordinal>. A
 * request's keys are moved in one batch (chunks are cut between requests only), so a migration cut
 * short by a crash resumes with whole requests left.
 */
async function listRequestPayments(store: Store): Promise<void> {
  let batch = store.batch();
  let group: { part: string; keys: string[]; txids: string[] } | undefined;
  const stage = async (): Promise<void> => {
    if (!group) return;
    const key = `${SPACES.requestPayments}${group.part}`;
    const listed = (await batch.get<string[]>(key)) ?? [];
    batch.put(key, [...new Set([...listed, ...group.txids])].sort());
    for (const old of group.keys) batch.del(old);
    if (batch.length >= MIGRATION_CHUNK) {
      await batch.write({ sync: true });
      batch = store.batch();
    }
  };
  for await (const [key] of store.entries({ prefix: SCHEMA_4_PAYMENTS })) {
    const cut = key.lastIndexOf('/');
    const part = key.slice(SCHEMA_4_PAYMENTS.length, cut);
    if (group?.part !== part) {
      await stage();
      group = { part, keys: [], txids: [] };
    }
    group.keys.push(key);
    group.txids.push(key.slice(cut + 1));
  }
  await stage();
  if (batch.length > 0) await batch.write({ sync: true });
}

/**
 * 5 → 6: how many federation outputs each state holds and their sats, counted from the utxoidx/ index
 * and the records it names. Only reads until the counts are staged: they are written with the new
 * version, so a migration cut short by a crash counts again from the start.
 */
async function countUtxos(store: Store, batch: StoreBatch): Promise<void> {
  for (const state of ['unspent', 'reserved', 'spent'] satisfies UtxoState[]) {
    let outputs = 0;
    let sats = 0;
    for await (const records of indexedUtxos(store, state))
      for (const record of records) {
        outputs++;
        sats += Number(record.value);
      }
    batch.put(utxoCountKey(state, 'outputs'), outputs).put(utxoCountKey(state, 'sats'), sats);
  }
}

/**
 * The entries of an index under `prefix` and the records they name (`recordKey` of each entry;
 * undefined where one is missing), MIGRATION_CHUNK at a time: a store's millions of entries are
 * never held at once.
 */
async function* indexChunks<T>(
  store: Store,
  prefix: string,
  recordKey: (indexKey: string) => string,
): AsyncIterable<{ indexKeys: string[]; records: (T | undefined)[] }> {
  for await (const indexKeys of keyChunks(store, prefix))
    yield { indexKeys, records: await store.getMany<T>(indexKeys.map(recordKey)) };
}

/**
 * Which of `keys` the store holds, their values unread: a migration asks only whether a finalized
 * record or a proposal is there, and each holds its whole transaction (up to 400,000 WU), a
 * thousand of which read at once could take 400 MB.
 */
async function held(store: Store, keys: readonly string[]): Promise<boolean[]> {
  const out: boolean[] = [];
  for (const key of keys) out.push((await store.keys({ prefix: key, limit: 1 }))[0] === key);
  return out;
}

/** The keys under `prefix`, MIGRATION_CHUNK at a time, their values unread. */
async function* keyChunks(store: Store, prefix: string): AsyncIterable<string[]> {
  let after: string | undefined;
  for (;;) {
    // the least key after the last one read: keys are printable ASCII, so nothing sorts between
    const keys = await store.keys({ prefix, limit: MIGRATION_CHUNK, ...(after ? { gte: `${after}\0` } : {}) });
    if (keys.length > 0) yield keys;
    if (keys.length < MIGRATION_CHUNK) return;
    after = keys[keys.length - 1];
  }
}

/**
 * What is wrong with the entry `indexKey` of an index of `state` (utxoidx/, utxoval/) when the record
 * it names is missing or in another state; undefined when nothing is. Every reader of the index
 * refuses such an entry, never skips it: the index and the records are written in one batch.
 */
export function utxoIndexFault(indexKey: string, record: UtxoRecord | undefined, state: UtxoState): string | undefined {
  if (record !== undefined && record.state === state) return undefined;
  return `UTXO index entry ${indexKey} says ${state} but the record is ${record === undefined ? 'missing' : record.state}`;
}

/** The records the utxoidx/ index names under `state`, MIGRATION_CHUNK at a time; a faulty entry is refused. */
async function* indexedUtxos(store: Store, state: UtxoState): AsyncIterable<UtxoRecord[]> {
  const prefix = utxoIndexPrefix(state);
  const utxo = (key: string): string => `${SPACES.utxo}${key.slice(prefix.length)}`;
  for await (const { indexKeys, records } of indexChunks<UtxoRecord>(store, prefix, utxo))
    yield records.map((record, i) => {
      const fault = utxoIndexFault(indexKeys[i]!, record, state);
      if (fault) throw new StorageError('read_failed', fault, { key: indexKeys[i], state });
      return record!;
    });
}

/**
 * 6 → 7: the reserve ledger's two sums as counters. Each federation output is marked a peg-in where
 * the audit judged it one at each block before (its transaction has no txconf/ and no final/ record)
 * and the confirmed ones summed; the paid requests' sats summed from the status index. The marks are
 * written in chunks (marking again changes nothing), the sums with the new version, so a migration
 * cut short by a crash resumes from the start.
 */
async function sumLedger(store: Store, batch: StoreBatch): Promise<void> {
  let pegIns = 0;
  let records: UtxoRecord[] = [];
  const mark = async (): Promise<void> => {
    const txids = records.map((r) => r.txid);
    const known = await held(store, [...txids.map(txConfirmationKey), ...txids.map(finalizedKey)]);
    const marks = store.batch();
    for (const [i, record] of records.entries()) {
      if (known[i] || known[records.length + i]) continue;
      marks.put(utxoKey(record.txid, record.vout), { ...record, pegIn: true } satisfies UtxoRecord);
      if (record.height !== null) pegIns += Number(record.value);
    }
    if (marks.length > 0) await marks.write({ sync: true });
    records = [];
  };
  for await (const [, record] of store.entries<UtxoRecord>({ prefix: SPACES.utxo })) {
    records.push(record);
    if (records.length >= MIGRATION_CHUNK) await mark();
  }
  await mark();
  let paid = 0;
  for await (const { records } of indexChunks<RequestRecord>(
    store,
    requestIndexPrefix(requestPhase('paid')),
    requestKeyOfIndex,
  ))
    for (const r of records) if (r?.status === 'paid') paid += Number(r.sats);
  batch.put(PEG_IN_SATS_KEY, pegIns).put(PAID_SATS_KEY, paid);
}

/**
 * 6 → 7: the unspent outputs' value index (utxoval/), from the unspent records named by the utxoidx/
 * index, written in chunks (writing an entry again changes nothing), so a migration cut short by a
 * crash resumes.
 */
async function indexUnspentByValue(store: Store): Promise<void> {
  for await (const records of indexedUtxos(store, 'unspent')) {
    const entries = store.batch();
    for (const record of records) entries.put(unspentByValueKey(record.value, record.txid, record.vout), 1);
    if (entries.length > 0) await entries.write({ sync: true });
  }
}

/**
 * 7 → 8: the payments a restart picks up again (open/), from every signature and finalized record
 * written before: signed, not finalized, its proposal kept (what the coordinator's recovery took
 * up); finalized with a request not paid or not ingested here, or paying none (a handoff, whose
 * depth the restart judges with the configured one). Entries are written a chunk at a time (writing
 * one again changes nothing), so a migration cut short by a crash resumes from the start.
 */
async function listOpenPayments(store: Store): Promise<void> {
  for await (const keys of keyChunks(store, SPACES.signatureMade)) {
    const txids = keys.map((key) => key.slice(SPACES.signatureMade.length));
    const found = await held(store, [...txids.map(finalizedKey), ...txids.map(proposalKey)]);
    const open = store.batch();
    for (const [i, txid] of txids.entries())
      if (!found[i] && found[txids.length + i]) open.put(openPaymentKey(txid), 1);
    if (open.length > 0) await open.write({ sync: true });
  }
  for await (const keys of keyChunks(store, SPACES.finalized)) {
    const open = store.batch();
    // a record holds its whole transaction, up to 400,000 weight units: a few dozen at a time
    const records = (from: number) => store.getMany<FinalizedRecord>(keys.slice(from, from + FINALIZED_CHUNK));
    for (let from = 0; from < keys.length; from += FINALIZED_CHUNK)
      for (const [i, record] of (await records(from)).entries()) {
        if (!record) continue;
        if (!Array.isArray(record.requestIds))
          throw new StorageError('read_failed', `finalized record ${keys[from + i]} has no list of requests`, {
            key: keys[from + i],
          });
        const requests = await store.getMany<RequestRecord>(
          record.requestIds.flatMap((id) => {
            const identity = tryParseRequestId(id);
            return identity ? [requestKey(identity.txHash, identity.ordinal)] : [];
          }),
        );
        if (
          record.requestIds.length === 0 ||
          Object.keys(record.unmatched ?? {}).length > 0 ||
          requests.some((r) => r !== undefined && r.status !== 'paid')
        )
          open.put(openPaymentKey(record.txid), 1);
      }
    if (open.length > 0) await open.write({ sync: true });
  }
}

/**
 * Schema version n → n + 1; what a migration stages in `batch` is written with the new version
 * number. Versions below 4 cannot be migrated (UNREADABLE).
 */
const MIGRATIONS: Record<number, (store: Store, batch: StoreBatch) => Promise<void>> = {
  4: async (store) => {
    await foldRequestHistories(store);
    await listRequestPayments(store);
  },
  5: countUtxos,
  6: async (store, batch) => {
    await indexUnspentByValue(store);
    await sumLedger(store, batch);
  },
  7: listOpenPayments,
};

/**
 * Why a store of an older schema cannot be read, by its version; such a store is refused, untouched.
 * Below 3 requests are named by their block-level log index, not by transaction and ordinal (what
 * payments commit to), and the new ids cannot be made from the store alone (logs that did not
 * decode were never stored). Schema 3 has no index of requests by Bitcoin address (reqbtc/) nor of
 * payments by time (finalat/), which the status pages read instead of scanning. The signature
 * records are what keeps the member from signing a second payment of a request, so the message
 * tells the operator to upgrade only once nothing is in flight.
 */
const UNREADABLE: Record<number, string> = {
  1: 'names requests by block log index (this program names them by transaction and ordinal)',
  2: 'names requests by block log index (this program names them by transaction and ordinal)',
  3: 'has no index of requests by Bitcoin address (reqbtc/) nor of payments by time (finalat/)',
};

/** Rows read at once by entries() on the synchronous path. */
const ENTRIES_PAGE = 1000;

/** Runs sections one after another, in the order they asked. */
class Lock {
  #tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/**
 * RocksDB's memory bounded and its CPU kept flat as the store grows (@nxtedition/rocksdb binding.cc
 * InitOptions; durability unchanged: same WAL, same synced writes). The binding's defaults leave its
 * memory to grow with write volume and history:
 * - two 64 MB memtables, and every flush buffering all the uncompressed data blocks of the memtable
 *   it writes (ZSTD dictionary training with max_dict_buffer_bytes 0 and no target file size for
 *   flushes: block_based_table_builder.cc), another 64 MB malloc'd and freed per flush by a
 *   background thread, which glibc keeps resident;
 * - index and filter blocks of every table held outside the 8 MB block cache, growing with the store.
 * 'universal' with a 32 MB budget: memtables of 8 MB, at most 6 (48 MB) and flushed 2 at a time;
 * index and filter blocks charged to a 32 MB block cache. No compression, of tables or of the WAL:
 * with 'level' (L2 and below ZSTD-compressed) the compaction thread's CPU grew with the store, to
 * about 200 µs per request of a 2-of-3 member by its 190,000th request (`git show
 * 53ff4b7:bench/results/README.md`, "The store's compaction"), and compressing the WAL costs the
 * writing thread, the main one, CPU on every batch. Universal compaction rewrites each record fewer
 * times than levelled compaction; with nothing compressed no table builder buffers blocks for a
 * dictionary. The price is disk: a record is stored uncompressed, and a full compaction may briefly
 * need as much free space again as the store.
 */
const STORE_OPTIONS = {
  compaction: 'universal',
  compression: false,
  walCompression: false,
  memtableMemoryBudget: 32 * 2 ** 20,
  cacheSize: 32 * 2 ** 20,
  cacheIndexAndFilterBlocks: true,
} as const;

const MEMORY_PROPERTIES = [
  ['memtables', 'rocksdb.cur-size-all-mem-tables'],
  ['tableReaders', 'rocksdb.estimate-table-readers-mem'],
  ['blockCache', 'rocksdb.block-cache-usage'],
  ['blockCachePinned', 'rocksdb.block-cache-pinned-usage'],
] as const;

export class Store implements StoreReader {
  readonly #db: RocksLevel;
  readonly #dir: string;
  #created = false;
  readonly #sync: SyncReads | undefined;
  readonly #exclusive = new Lock();
  /** Held from reading a batch's counters to writing their sums. */
  readonly #counters = new Lock();
  #closed = false;
  #writes = 0;

  private constructor(db: RocksLevel, dir: string) {
    this.#db = db;
    this.#dir = dir;
    const candidate = db as unknown as Partial<SyncReads>;
    this.#sync =
      typeof candidate._getManySync === 'function' && typeof candidate.querySync === 'function'
        ? (candidate as SyncReads)
        : undefined;
  }

  /**
   * Opens (creating if needed) the store of one member for one federation. A store made for
   * another federation, by a newer schema, or holding data but no meta record is refused and
   * left untouched.
   */
  static async open(dir: string, meta: { descriptor: string }): Promise<Store> {
    if (typeof meta.descriptor !== 'string' || meta.descriptor.length === 0) {
      throw new StorageError(
        'open_failed',
        `federation descriptor must be a non-empty string to open the store at ${dir}`,
        { dir },
      );
    }
    const db = new RocksLevel(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer', ...STORE_OPTIONS });
    try {
      await db.open({ createIfMissing: true });
    } catch (err) {
      const cause = (err as { cause?: Error }).cause ?? (err as Error);
      throw new StorageError('open_failed', `cannot open store at ${dir}: ${cause.message}`, { dir }, { cause: err });
    }
    const store = new Store(db, dir);
    try {
      await store.#checkMeta(meta.descriptor);
    } catch (err) {
      await db.close();
      throw err;
    }
    return store;
  }

  /** Whether open() made this store: it was empty (a first start, or a storeDir that names the wrong place). */
  get created(): boolean {
    return this.#created;
  }

  async #checkMeta(descriptor: string): Promise<void> {
    const stored = await this.get<StoreMeta>(META_KEY);
    if (stored === undefined) {
      for await (const [key] of this.entries({ prefix: '', limit: 1 })) {
        throw new StorageError(
          'not_a_store',
          `the database at ${this.#dir} holds data (first key ${key}) but no ${META_KEY} record; refusing to adopt it`,
          { dir: this.#dir, key },
        );
      }
      await this.batch()
        .put(META_KEY, { schemaVersion: SCHEMA_VERSION, descriptor } satisfies StoreMeta)
        .write({ sync: true });
      this.#created = true;
      return;
    }
    if (
      typeof stored !== 'object' ||
      stored === null ||
      !Number.isSafeInteger(stored.schemaVersion) ||
      stored.schemaVersion < 1 ||
      typeof stored.descriptor !== 'string' ||
      (stored.migratingFrom !== undefined && stored.migratingFrom !== stored.schemaVersion - 1)
    ) {
      throw new StorageError(
        'meta_corrupt',
        `${META_KEY} in ${this.#dir} is not { schemaVersion: positive integer, descriptor: string, migratingFrom?: schemaVersion - 1 }`,
        { dir: this.#dir },
      );
    }
    if (stored.schemaVersion > SCHEMA_VERSION) {
      throw new StorageError(
        'schema_newer',
        `store at ${this.#dir} has schema version ${stored.schemaVersion}, newer than this program's ${SCHEMA_VERSION}; upgrade the program`,
        { dir: this.#dir, stored: stored.schemaVersion, supported: SCHEMA_VERSION },
      );
    }
    const unreadable = UNREADABLE[stored.schemaVersion];
    if (unreadable !== undefined) {
      throw new StorageError(
        'schema_older',
        `store at ${this.#dir} has schema version ${stored.schemaVersion}, which ${unreadable}; this program uses schema ${SCHEMA_VERSION}. Upgrade only once every payment this member signed has confirmed (no request batched, signed or broadcast): then move the store aside and start with an empty directory, which re-ingests the sidechain`,
        { dir: this.#dir, stored: stored.schemaVersion, supported: SCHEMA_VERSION },
      );
    }
    if (stored.descriptor !== descriptor) {
      throw new StorageError(
        'federation_mismatch',
        `store at ${this.#dir} belongs to federation ${stored.descriptor}, not to the configured ${descriptor}`,
        { dir: this.#dir, stored: stored.descriptor, configured: descriptor },
      );
    }
    for (let version = stored.migratingFrom ?? stored.schemaVersion; version < SCHEMA_VERSION; version++) {
      // said before the step's first chunk: a store cut short midway is one the old program refuses
      await this.batch()
        .put(META_KEY, { schemaVersion: version + 1, descriptor, migratingFrom: version } satisfies StoreMeta)
        .write({ sync: true });
      const batch = this.batch();
      await MIGRATIONS[version]!(this, batch);
      await batch.put(META_KEY, { schemaVersion: version + 1, descriptor } satisfies StoreMeta).write({ sync: true });
    }
  }

  /**
   * RocksDB's own memory, in bytes (none of it on the JS heap or in process.memoryUsage().external):
   * memtables, table readers (index and filter blocks held outside the block cache) and the block
   * cache. Read synchronously; cheap enough for every /metrics scrape.
   */
  memory(): Record<(typeof MEMORY_PROPERTIES)[number][0], number> {
    this.#checkOpen();
    return Object.fromEntries(
      MEMORY_PROPERTIES.map(([name, property]) => [name, Number(this.#db.getProperty(property))]),
    ) as Record<(typeof MEMORY_PROPERTIES)[number][0], number>;
  }

  async meta(): Promise<StoreMeta> {
    const meta = await this.get<StoreMeta>(META_KEY);
    if (meta === undefined)
      throw new StorageError('meta_corrupt', `${META_KEY} missing in ${this.#dir}`, { dir: this.#dir });
    return meta;
  }

  async get<T>(key: string): Promise<T | undefined> {
    const [value] = await this.getMany<T>([key]);
    return value;
  }

  async getMany<T>(keys: string[]): Promise<(T | undefined)[]> {
    for (const key of keys) checkKey(key);
    return this.#read(keys);
  }

  /** getMany for keys checked already (a batch checks its reads' keys before it looks among its own). */
  async #read<T>(keys: string[]): Promise<(T | undefined)[]> {
    this.#checkOpen();
    let raw: (Buffer | undefined)[];
    try {
      raw = this.#sync ? this.#sync._getManySync(keys) : await this.#db.getMany(keys);
    } catch (err) {
      throw new StorageError(
        'read_failed',
        `reading ${keys.length} key(s) from ${this.#dir} failed: ${(err as Error).message}`,
        { dir: this.#dir },
        { cause: err },
      );
    }
    return raw.map((bytes, i) => (bytes === undefined ? undefined : decode<T>(keys[i] as string, bytes)));
  }

  batch(): StoreBatch {
    this.#checkOpen();
    return new StoreBatch(
      (keys) => this.#read(keys),
      (staged, deltas, sync) => this.#apply(staged, deltas, sync),
    );
  }

  /**
   * How many batches this store has written (or tried to) since it was opened: whatever is read between
   * two reads of the same count is unchanged, so a value derived from the store may be kept until it moves.
   */
  get writes(): number {
    return this.#writes;
  }

  /** Staged changes of one StoreBatch, null meaning delete, and its counter increments. */
  async #apply(
    staged: ReadonlyMap<string, Buffer | null>,
    deltas: ReadonlyMap<string, number>,
    sync: boolean,
  ): Promise<void> {
    this.#checkOpen();
    if (deltas.size === 0) return this.#write(staged, new Map(), sync);
    await this.#counters.run(async () => this.#write(staged, await this.#counterValues(staged, deltas), sync));
  }

  /** Each counter's new value: what the batch staged for it, or the stored value, plus its delta. */
  async #counterValues(
    staged: ReadonlyMap<string, Buffer | null>,
    deltas: ReadonlyMap<string, number>,
  ): Promise<Map<string, Buffer>> {
    return stages.timeAsync('store_write', async () => {
      const values = new Map<string, Buffer>();
      const keys = [...deltas.keys()];
      const stored = await this.getMany<unknown>(keys);
      for (const [i, key] of keys.entries()) {
        const own = staged.get(key);
        const base = own === undefined ? stored[i] : own === null ? undefined : decode<unknown>(key, own);
        values.set(key, encode(key, counterValue(key, base) + deltas.get(key)!));
      }
      return values;
    });
  }

  /** Writes `staged`, with `counters` in place of whatever it staged for those keys. */
  async #write(
    staged: ReadonlyMap<string, Buffer | null>,
    counters: ReadonlyMap<string, Buffer>,
    sync: boolean,
  ): Promise<void> {
    if (staged.size === 0 && counters.size === 0) return;
    // before the write: a read that overlaps a write that then fails must not be kept either
    this.#writes++;
    try {
      // @nxtedition/rocksdb writes a chained batch synchronously, on this thread, the WAL's fsync
      // included (sync): its CPU is store_write's, the wait on the disk shows in the wall figure only
      const batch = this.#db.batch();
      try {
        stages.time('store_write', () => {
          const raw = rawBatch(batch);
          for (const [key, value] of staged) {
            if (counters.has(key)) continue;
            if (value === null) raw.del(key);
            else raw.put(key, value);
          }
          for (const [key, value] of counters) raw.put(key, value);
          raw.write(sync);
        });
      } finally {
        await batch.close();
      }
    } catch (err) {
      throw new StorageError(
        'write_failed',
        `writing a batch of ${staged.size} change(s) to ${this.#dir} failed: ${(err as Error).message}`,
        { dir: this.#dir },
        { cause: err },
      );
    }
  }

  async *entries<T>(range: EntriesRange): AsyncIterable<[string, T]> {
    const options = this.#options(range);
    if (!this.#sync) {
      for await (const [key, bytes] of this.#db.iterator(options)) yield [key, decode<T>(key, bytes)];
      return;
    }
    for (const rows of this.#pages(this.#sync, options, true)) {
      for (let i = 0; i < rows.length; i += 2)
        yield [rows[i] as string, decode<T>(rows[i] as string, rows[i + 1] as Buffer)];
    }
  }

  /** The keys of a range, values unread, as one array: for counting and for index scans. */
  async keys(range: EntriesRange): Promise<string[]> {
    const options = this.#options(range);
    const out: string[] = [];
    if (!this.#sync) {
      for await (const [key] of this.#db.iterator(options)) out.push(key);
      return out;
    }
    for (const rows of this.#pages(this.#sync, options, false))
      for (let i = 0; i < rows.length; i += 2) out.push(rows[i] as string);
    return out;
  }

  #options(range: EntriesRange): IteratorBounds {
    this.#checkOpen();
    const { prefix } = range;
    if (prefix !== '') checkKey(prefix);
    let gte = prefix;
    if (range.gte !== undefined && range.gte > gte) gte = range.gte;
    let lt = prefix === '' ? undefined : prefixEnd(prefix);
    if (range.lt !== undefined && (lt === undefined || range.lt < lt)) lt = range.lt;
    const options: IteratorBounds = { reverse: range.reverse === true };
    if (gte !== '') options.gte = gte;
    if (lt !== undefined) options.lt = lt;
    if (range.limit !== undefined) options.limit = range.limit;
    return options;
  }

  /**
   * Pages of ENTRIES_PAGE rows ([key, value, key, value, …]), each read synchronously; a page resumes after the last
   * key.
   */
  *#pages(sync: SyncReads, options: IteratorBounds, values: boolean): Generator<(string | Buffer)[]> {
    let remaining = options.limit ?? Infinity;
    const page: IteratorBounds & { gt?: string } = {
      reverse: options.reverse,
      ...(options.gte !== undefined ? { gte: options.gte } : {}),
      ...(options.lt !== undefined ? { lt: options.lt } : {}),
    };
    while (remaining > 0) {
      const want = Math.min(ENTRIES_PAGE, remaining);
      let rows: (string | Buffer)[];
      try {
        rows = sync.querySync({ ...page, limit: want, values, keyEncoding: 'utf8', valueEncoding: 'buffer' }).rows;
      } catch (err) {
        throw new StorageError(
          'read_failed',
          `reading a range from ${this.#dir} failed: ${(err as Error).message}`,
          { dir: this.#dir },
          { cause: err },
        );
      }
      yield rows;
      if (rows.length / 2 < want) return;
      remaining -= want;
      const last = rows[rows.length - 2] as string;
      if (page.reverse) page.lt = last;
      else {
        delete page.gte;
        page.gt = last;
      }
    }
  }

  /**
   * Runs fn with no other exclusive section running. Every read-modify-write of records
   * shared between pipeline stages (UTXO states, request statuses) goes through here, so a
   * stage never writes a decision based on a record another stage changed meanwhile. Not
   * re-entrant: fn must not call exclusive() itself.
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#exclusive.run(fn);
  }

  /**
   * One atomic state change: fn reads (through the batch, to see its own staged changes) and
   * stages inside exclusive(), and the batch is written when fn returns — with sync unless told
   * otherwise (see StoreBatch.write) — or not at all when fn staged nothing or threw. Every
   * read-decide-write of shared records goes through here.
   */
  async transaction<T>(fn: (batch: StoreBatch) => Promise<T>, options: { sync?: boolean } = {}): Promise<T> {
    return this.exclusive(async () => {
      const batch = this.batch();
      const result = await fn(batch);
      if (batch.length > 0) await batch.write({ sync: options.sync ?? true });
      return result;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#db.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new StorageError('closed', `store at ${this.#dir} is closed`, { dir: this.#dir });
  }
}
