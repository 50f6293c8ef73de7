import type { Store, StoreBatch, StoreReader } from '../storage/store.js';
import { requestKey, requestLogKey, requestLogPrefix, SPACES } from '../storage/keys.js';
import { parseRequestId, type RequestRejectReason } from './requests.js';

/**
 * accepted → batched → signed → broadcast → paid is the happy path; rejected is final;
 * orphaned marks a request whose EVM block left the chain after the federation acted on it
 * (an alarm for operators, never a silent drop).
 */
export type RequestStatus = 'accepted' | 'rejected' | 'batched' | 'signed' | 'broadcast' | 'paid' | 'orphaned';

export interface RequestRecord {
  readonly id: string;
  readonly txHash: string;
  readonly logIndex: number;
  readonly blockNumber: number;
  readonly blockHash: string;
  readonly evmAddress: string;
  readonly bitcoinAddress: string;
  readonly wei: string;
  readonly sats: bigint;
  readonly subSatoshiWei: string;
  readonly status: RequestStatus;
  readonly reason?: RequestRejectReason;
  readonly detail?: string;
  readonly scriptPubKey?: Uint8Array;
  /** Sequence number of the latest status-history entry. */
  readonly seq: number;
}

export interface StatusChange {
  readonly status: RequestStatus;
  readonly at: string;
  readonly detail?: string;
}

function keyOf(record: Pick<RequestRecord, 'id'>): { txHash: string; logIndex: number } {
  return parseRequestId(record.id);
}

/** Stages a newly ingested request and the first entry of its history. */
export function stageNewRequest(batch: StoreBatch, record: Omit<RequestRecord, 'seq'>, at: string): RequestRecord {
  const full: RequestRecord = { ...record, seq: 0 };
  const { txHash, logIndex } = keyOf(record);
  batch.put(requestKey(txHash, logIndex), full);
  const change: StatusChange = { status: record.status, at, ...(record.detail ? { detail: record.detail } : {}) };
  batch.put(requestLogKey(txHash, logIndex, 0), change);
  return full;
}

/** Stages a status change and its history entry together. */
export function stageStatus(batch: StoreBatch, record: RequestRecord, status: RequestStatus, at: string, detail?: string): RequestRecord {
  const next: RequestRecord = { ...record, status, seq: record.seq + 1, ...(detail ? { detail } : {}) };
  const { txHash, logIndex } = keyOf(record);
  batch.put(requestKey(txHash, logIndex), next);
  batch.put(requestLogKey(txHash, logIndex, next.seq), { status, at, ...(detail ? { detail } : {}) } satisfies StatusChange);
  return next;
}

/** Stages the removal of a request that never became final (its block left the chain). */
export function stageForget(batch: StoreBatch, record: RequestRecord): void {
  const { txHash, logIndex } = keyOf(record);
  batch.del(requestKey(txHash, logIndex));
  for (let seq = 0; seq <= record.seq; seq++) batch.del(requestLogKey(txHash, logIndex, seq));
}

export function getRequest(reader: StoreReader, id: string): Promise<RequestRecord | undefined> {
  const { txHash, logIndex } = parseRequestId(id);
  return reader.get<RequestRecord>(requestKey(txHash, logIndex));
}

export async function requestHistory(store: Store, id: string): Promise<StatusChange[]> {
  const { txHash, logIndex } = parseRequestId(id);
  const out: StatusChange[] = [];
  for await (const [, change] of store.entries<StatusChange>({ prefix: requestLogPrefix(txHash, logIndex) })) out.push(change);
  return out;
}

export async function listRequests(store: Store, filter: (r: RequestRecord) => boolean = () => true): Promise<RequestRecord[]> {
  const out: RequestRecord[] = [];
  for await (const [, record] of store.entries<RequestRecord>({ prefix: SPACES.request })) if (filter(record)) out.push(record);
  return out;
}
