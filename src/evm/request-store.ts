import {
  newestKeys,
  type Page,
  type PageRequest,
  type Store,
  type StoreBatch,
  type StoreReader,
} from '../storage/store.js';
import {
  holdPrefix,
  PAID_SATS_KEY,
  requestCountKey,
  requestByAddressKey,
  requestByAddressPrefix,
  requestByBitcoinAddressKey,
  requestByBitcoinAddressPrefix,
  requestIndexKey,
  requestIndexPrefix,
  requestKey,
  requestKeyOfAddressIndex,
  requestKeyOfIndex,
  requestPhase,
  requestPaymentsKey,
  requestsOfTxPrefix,
  SPACES,
} from '../storage/keys.js';
import { EvmError } from './errors.js';
import { parseRequestId, tryParseRequestId, type RequestIdentity } from './request-id.js';
import type { RequestRecord, RequestStatus, StatusChange } from '../storage/records.js';

/** A new request as its ingestion builds it: everything but the history, which starts here. */
export type NewRequest = Omit<RequestRecord, 'history'>;

function change(status: RequestStatus, at: string, detail: string | undefined): StatusChange {
  return { status, at, ...(detail ? { detail } : {}) };
}

/**
 * Stages a newly ingested request (its history's first entry inside it), its index entries and its
 * count. The record's txHash and ordinal are its id's parts (ingestion made the id from them), so
 * the keys are built from them rather than by parsing the id again.
 */
export function stageNewRequest(batch: StoreBatch, record: NewRequest, at: string): RequestRecord {
  const full: RequestRecord = { ...record, history: [change(record.status, at, record.detail)] };
  const { txHash, ordinal } = record;
  batch.put(requestKey(txHash, ordinal), full);
  batch.put(requestIndexKey(record.status, txHash, ordinal), 1);
  batch.add(requestCountKey(record.status), 1);
  countPaid(batch, full, 1);
  batch.put(requestByAddressKey(record.evmAddress, record.blockNumber, txHash, ordinal), 1);
  batch.put(requestByBitcoinAddressKey(record.bitcoinAddress, record.blockNumber, txHash, ordinal), 1);
  return full;
}

/**
 * The request state machine: every status a request may move to from each status. Anything else
 * is a bug, and stageStatus refuses it rather than record an impossible history.
 * - accepted, held, rate_limited are QUEUED: final, valid, in no live payment this member signed.
 *   The outflow schedule (wallet/limits.ts) moves requests among them: held while over the
 *   per-request limit and not released by t operators, rate_limited while the rolling cap has no
 *   room (each may move to itself: the releases counted, or the window waited for, changed). An
 *   operator's reject moves held → rejected.
 * - QUEUED → batched (this member signed a payment of it) or signed (a payment finalized before
 *   this member signed one); batched → signed.
 * - signed → broadcast (Core has the payment) → paid (at depth); signed → paid when the payment
 *   confirmed before any broadcast of ours.
 * - batched, signed, broadcast → accepted: the payment lost to a conflicting one (invariant 5).
 * - any status but rejected → orphaned: its EVM block left the chain after the federation acted.
 */
export const REQUEST_TRANSITIONS: Readonly<Record<RequestStatus, readonly RequestStatus[]>> = {
  accepted: ['batched', 'signed', 'held', 'rate_limited', 'orphaned'],
  held: ['held', 'accepted', 'rate_limited', 'batched', 'signed', 'rejected', 'orphaned'],
  rate_limited: ['rate_limited', 'accepted', 'held', 'batched', 'signed', 'orphaned'],
  batched: ['signed', 'accepted', 'orphaned'],
  signed: ['broadcast', 'paid', 'accepted', 'orphaned'],
  broadcast: ['paid', 'accepted', 'orphaned'],
  paid: ['orphaned'],
  rejected: [],
  orphaned: [],
};

/** Final, valid requests that no live payment this member signed pays: what a proposer may batch. */
export const QUEUED: ReadonlySet<RequestStatus> = new Set(['accepted', 'held', 'rate_limited']);

/**
 * Requests no payment finalized here pays yet: QUEUED, or in a payment this member signed. A payment
 * not finalized holds its inputs for these only (wallet/validate.ts input_held), and a merge pays these.
 */
export const AWAITING_FINAL: ReadonlySet<RequestStatus> = new Set([...QUEUED, 'batched']);

/**
 * Whether a payment of `record` counts against the rolling cap (node/outflow.ts): it is queued now,
 * so the payment takes it out of the queue. A replacement or merge of a payment of it still in flight
 * here does not count; a payment of it after one that lost gave it back to the queue counts again.
 * Counted once only, a payment signed and lost in each window stockpiled requests that one payment
 * then paid, many caps at once; counted again, a lost payment only leaves a window less room.
 */
export function countsInOutflow(record: RequestRecord): boolean {
  return QUEUED.has(record.status);
}

/** What the federation owes (the reserve audit's liabilities): QUEUED, or in a payment not yet paid at depth. */
export const OWED: readonly RequestStatus[] = [...QUEUED, 'batched', 'signed', 'broadcast'];

/**
 * Stages a status change with its history entry (in the record: one put, not a second key per
 * change), the status index (moved only when the phase changes, see keys.ts) and the counts by
 * status together; `record` must be the current one (read through the same batch).
 */
export function stageStatus(
  batch: StoreBatch,
  record: RequestRecord,
  status: RequestStatus,
  at: string,
  detail?: string,
): RequestRecord {
  if (!REQUEST_TRANSITIONS[record.status].includes(status)) {
    throw new EvmError('illegal_transition', `request ${record.id} cannot move from ${record.status} to ${status}`, {
      request: record.id,
      from: record.status,
      to: status,
    });
  }
  const next: RequestRecord = {
    ...record,
    status,
    ...(detail ? { detail } : {}),
    history: [...record.history, change(status, at, detail)],
  };
  const { txHash, ordinal } = record;
  batch.put(requestKey(txHash, ordinal), next);
  if (requestPhase(status) !== requestPhase(record.status))
    batch.del(requestIndexKey(record.status, txHash, ordinal)).put(requestIndexKey(status, txHash, ordinal), 1);
  if (status !== record.status) {
    batch.add(requestCountKey(record.status), -1).add(requestCountKey(status), 1);
    countPaid(batch, record, -1);
    countPaid(batch, next, 1);
  }
  return next;
}

/** Adds a paid request's sats to the paid sum (1), or takes them away (-1); other statuses count nothing. */
function countPaid(batch: StoreBatch, record: RequestRecord, sign: 1 | -1): void {
  if (record.status === 'paid') batch.add(PAID_SATS_KEY, sign * Number(record.sats));
}

/** The sats of every request in status paid, from the counter each status change moves: one key read. */
export async function paidSats(reader: StoreReader): Promise<bigint> {
  return BigInt((await reader.get<number>(PAID_SATS_KEY)) ?? 0);
}

/**
 * Stages the removal of a request that never became final (its block left the chain), and of the
 * operators' releases of it: a release approved what this log asked, and the same transaction
 * mined again elsewhere can ask another address and amount under the same id.
 */
export async function stageForget(
  batch: StoreBatch,
  reader: Pick<Store, 'keys'>,
  record: RequestRecord,
): Promise<void> {
  const { txHash, ordinal } = record;
  for (const key of await reader.keys({ prefix: holdPrefix(txHash, ordinal) })) batch.del(key);
  batch.del(requestKey(txHash, ordinal));
  batch.del(requestIndexKey(record.status, txHash, ordinal));
  batch.add(requestCountKey(record.status), -1);
  countPaid(batch, record, -1);
  batch.del(requestByAddressKey(record.evmAddress, record.blockNumber, txHash, ordinal));
  batch.del(requestByBitcoinAddressKey(record.bitcoinAddress, record.blockNumber, txHash, ordinal));
}

/**
 * The txids of the payments of each request that this member signed or knows finalized (what the
 * no-double-pay check reads), sorted: one point read for them all.
 */
export async function paymentsOfRequests(
  reader: StoreReader,
  requests: readonly RequestIdentity[],
): Promise<(readonly string[])[]> {
  const lists = await reader.getMany<string[]>(requests.map((r) => requestPaymentsKey(r.txHash, r.ordinal)));
  return lists.map((list) => list ?? []);
}

export async function paymentsOfRequest(reader: StoreReader, request: RequestIdentity): Promise<readonly string[]> {
  const [list] = await paymentsOfRequests(reader, [request]);
  return list!;
}

/**
 * Stages that payment `txid` pays `request`, whose payments as read through `batch` are `payments`
 * (unchanged when it is among them already); returns the new list.
 */
export function stagePaymentOf(
  batch: StoreBatch,
  request: RequestIdentity,
  payments: readonly string[],
  txid: string,
): readonly string[] {
  if (payments.includes(txid)) return payments;
  const next = [...payments, txid].sort();
  batch.put(requestPaymentsKey(request.txHash, request.ordinal), next);
  return next;
}

export function getRequest(reader: StoreReader, id: string): Promise<RequestRecord | undefined> {
  const { txHash, ordinal } = parseRequestId(id);
  return reader.get<RequestRecord>(requestKey(txHash, ordinal));
}

/** The records of `ids` in one read, in order; undefined for an id not ingested here or not well-formed. */
export function getRequests(reader: StoreReader, ids: readonly string[]): Promise<(RequestRecord | undefined)[]> {
  return requestsOf(reader, ids.map(tryParseRequestId));
}

/** The records of the requests `identities` name, in one read, in order; undefined where none is named or stored. */
export async function requestsOf(
  reader: StoreReader,
  identities: readonly (RequestIdentity | undefined)[],
): Promise<(RequestRecord | undefined)[]> {
  const keys = identities.map((r) => r && requestKey(r.txHash, r.ordinal));
  const found = await reader.getMany<RequestRecord>(keys.filter((k): k is string => k !== undefined));
  let next = 0;
  return keys.map((k) => (k === undefined ? undefined : found[next++]));
}

export async function listRequests(
  store: Store,
  filter: (r: RequestRecord) => boolean = () => true,
): Promise<RequestRecord[]> {
  const out: RequestRecord[] = [];
  for await (const [, record] of store.entries<RequestRecord>({ prefix: SPACES.request }))
    if (filter(record)) out.push(record);
  return out;
}

/** A page of the requests an index under `prefix` points at, newest first: two store reads. */
async function requestsPage(
  store: Store,
  prefix: string,
  page: PageRequest,
  requestKeyOf: (indexKey: string) => string,
): Promise<Page<RequestRecord>> {
  const { items, next } = await newestKeys(store, prefix, page);
  const records = await store.getMany<RequestRecord>(items.map(requestKeyOf));
  return { items: records.filter((r): r is RequestRecord => r !== undefined), next };
}

/** Requests burned by `evmAddress` (lowercase), newest first, read through the reqaddr/ index. */
export function requestsByEvmAddress(
  store: Store,
  evmAddress: string,
  page: PageRequest,
): Promise<Page<RequestRecord>> {
  return requestsPage(store, requestByAddressPrefix(evmAddress), page, requestKeyOfAddressIndex);
}

/** Requests to `bitcoinAddress` (the text as the request carried it), newest first, through the reqbtc/ index. */
export function requestsByBitcoinAddress(
  store: Store,
  bitcoinAddress: string,
  page: PageRequest,
): Promise<Page<RequestRecord>> {
  return requestsPage(store, requestByBitcoinAddressPrefix(bitcoinAddress), page, requestKeyOfAddressIndex);
}

/** Requests one EVM transaction (lowercase hash) made, last ordinal first: req/ keys are their own index. */
export function requestsOfEvmTx(store: Store, txHash: string, page: PageRequest): Promise<Page<RequestRecord>> {
  return requestsPage(store, requestsOfTxPrefix(txHash), page, (key) => key);
}

/**
 * Requests in any of `statuses`, read through the status index, each phase once: a turn costs
 * O(pending), not O(every request ever ingested).
 */
export async function listRequestsIn(store: Store, statuses: Iterable<RequestStatus>): Promise<RequestRecord[]> {
  const wanted = new Set(statuses);
  const out: RequestRecord[] = [];
  for (const phase of new Set([...wanted].map(requestPhase))) {
    const keys = (await store.keys({ prefix: requestIndexPrefix(phase) })).map(requestKeyOfIndex);
    for (const r of await store.getMany<RequestRecord>(keys)) if (r && wanted.has(r.status)) out.push(r);
  }
  return out;
}

/**
 * How many requests are in each status (statuses with none left out), from the reqcount/ counters
 * that every status change moves in its own batch: a read of a few keys, however long the history.
 */
export async function countRequests(store: Store): Promise<Map<RequestStatus, number>> {
  const counts = new Map<RequestStatus, number>();
  for await (const [key, n] of store.entries<number>({ prefix: SPACES.requestCount }))
    if (n !== 0) counts.set(key.slice(SPACES.requestCount.length) as RequestStatus, n);
  return counts;
}
