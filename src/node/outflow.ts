import { storedTipHeight } from '../chain/observer.js';
import { EvmError } from '../evm/errors.js';
import { parseRequestId, type RequestIdentity } from '../evm/request-id.js';
import { getRequest, listRequestsIn, QUEUED, stageStatus } from '../evm/request-store.js';
import { holdKey, holdPrefix, outflowKey } from '../storage/keys.js';
import type { Store, StoreBatch, StoreReader } from '../storage/store.js';
import {
  outflowWindow,
  overRequestLimit,
  scheduleOutflow,
  windowHeights,
  type OutflowLimits,
} from '../wallet/limits.js';
import type { HoldRelease, RequestRecord, RequestStatus } from '../storage/records.js';

// The outflow stage between the request decider and the coordinator: which queued requests may be
// paid now under the limits (wallet/limits.ts), which wait for a window, which are held for the
// operators; and the holds themselves. Statuses follow the schedule so the API and `pegout
// status` show why a request waits.

/** A held request as operators see it. */
export interface HeldRequest {
  readonly id: string;
  readonly sats: string;
  readonly bitcoinAddress: string;
  readonly status: RequestStatus;
  /** Members known to have released it, this one included when it did. */
  readonly releasedBy: readonly string[];
  readonly releasedHere: boolean;
  readonly threshold: number;
}

/** The rolling cap's window now (the one the stored Bitcoin tip is in) and what this member counted in it. */
export interface WindowOutflow {
  readonly window: number;
  readonly used: bigint;
}

export async function windowOutflow(reader: StoreReader, limits: OutflowLimits): Promise<WindowOutflow> {
  const window = outflowWindow(await storedTipHeight(reader), limits);
  return { window, used: (await reader.get<bigint>(outflowKey(window))) ?? 0n };
}

/**
 * Counts `added` sats of requests in `outflow`'s window. A request counts when a payment here takes it
 * out of the queue (countsInOutflow, evm/request-store.ts): one it signs (signer.ts), or a finalized
 * one it learns from a peer or finds on the chain (finalize.ts), or, for a request paid before it was
 * ingested here, the payment it is matched to then (the coordinator's late requests). Counted only when
 * signed, a member that learned a window's payments without signing them saw the window's room
 * untouched and proposed past the cap: its peers refused, a wasted round.
 */
export function stageOutflow(batch: StoreBatch, outflow: WindowOutflow, added: bigint): void {
  if (added > 0n) batch.put(outflowKey(outflow.window), outflow.used + added);
}

/** stageOutflow in the window now, read through `batch` only when there is something to count. */
export async function stageOutflowNow(batch: StoreBatch, limits: OutflowLimits, added: bigint): Promise<void> {
  if (added > 0n) stageOutflow(batch, await windowOutflow(batch, limits), added);
}

/** Stages `member`'s release of `request`. */
function stageRelease(batch: StoreBatch, { txHash, ordinal }: RequestIdentity, member: string): void {
  batch.put(holdKey(txHash, ordinal, member), { at: new Date().toISOString() } satisfies HoldRelease);
}

export class Outflow {
  constructor(
    private readonly store: Store,
    private readonly self: string,
    private readonly threshold: number,
    private readonly members: readonly string[],
    readonly limits: OutflowLimits,
  ) {}

  /** Members known to have released request `id` (their x-only keys). */
  async releases(id: string): Promise<string[]> {
    const { txHash, ordinal } = parseRequestId(id);
    const keys = await this.store.keys({ prefix: holdPrefix(txHash, ordinal) });
    return keys.map((k) => k.slice(k.lastIndexOf('/') + 1));
  }

  /**
   * The queued requests payable now, oldest first, with every queued request's status brought in
   * line with the schedule (held, rate_limited with its window, or accepted) in one batch.
   */
  async plan(): Promise<RequestRecord[]> {
    const { limits } = this;
    const queued = await listRequestsIn(this.store, QUEUED);
    queued.sort((a, b) => a.blockNumber - b.blockNumber || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const { window, used } = await windowOutflow(this.store, limits);
    const releases = new Map<string, string[]>();
    for (const r of queued) if (this.holdable(r)) releases.set(r.id, await this.releases(r.id));
    const plan = scheduleOutflow(
      queued.map((r) => {
        const by = releases.get(r.id) ?? [];
        return { id: r.id, sats: r.sats, released: by.includes(this.self), releases: by.length };
      }),
      used,
      window,
      limits,
      this.threshold,
    );
    const held = new Set(plan.held);
    const want = (r: RequestRecord): [RequestStatus, string | undefined] => {
      const waits = plan.limited.get(r.id);
      if (waits !== undefined)
        return ['rate_limited', `waits for the rolling cap: window ${waits} (${windowHeights(waits, limits)})`];
      if (held.has(r.id)) {
        const by = releases.get(r.id)!;
        const detail = `over the per-request limit of ${limits.maxRequestSats} sats: released by ${by.length} of the ${this.threshold} operators it needs${by.includes(this.self) ? ', this one included' : ''}`;
        return ['held', detail];
      }
      if (r.status === 'accepted') return ['accepted', undefined];
      return ['accepted', r.status === 'held' ? 'released by t operators' : 'the rolling cap has room'];
    };
    const changes = queued.flatMap((r) => {
      const [status, detail] = want(r);
      return status !== r.status || (status !== 'accepted' && detail !== r.detail) ? [{ r, status, detail }] : [];
    });
    if (changes.length > 0) {
      await this.store.transaction(async (batch) => {
        const at = new Date().toISOString();
        for (const { r, status, detail } of changes) {
          const current = await getRequest(batch, r.id);
          if (current && QUEUED.has(current.status)) stageStatus(batch, current, status, at, detail);
        }
      });
    }
    const payable = new Set(plan.pay);
    return queued.filter((r) => payable.has(r.id));
  }

  /** Held requests and over-limit ones this member released that are not paid yet. */
  async holds(): Promise<HeldRequest[]> {
    const out: HeldRequest[] = [];
    for (const r of await listRequestsIn(this.store, QUEUED)) {
      if (!this.holdable(r)) continue;
      const by = await this.releases(r.id);
      out.push({
        id: r.id,
        sats: r.sats.toString(),
        bitcoinAddress: r.bitcoinAddress,
        status: r.status,
        releasedBy: by,
        releasedHere: by.includes(this.self),
        threshold: this.threshold,
      });
    }
    return out;
  }

  /** Whether holds apply to `r`: queued and over the per-request limit. */
  private holdable(r: RequestRecord): boolean {
    return QUEUED.has(r.status) && overRequestLimit(r.sats, this.limits);
  }

  /** A request an operator may act on (holdable), read through `reader`. Throws a clear error otherwise. */
  private async heldRequest(id: string, reader: StoreReader = this.store): Promise<RequestRecord> {
    const { limits } = this;
    const r = await getRequest(reader, id);
    if (!r) throw new EvmError('unknown_request', `request ${id} is not one this member ingested`, { request: id });
    if (!this.holdable(r)) {
      throw new EvmError(
        'not_held',
        `request ${id} is ${r.status} for ${r.sats} sats; only a queued request over the per-request limit of ${limits.maxRequestSats} sats is held`,
        { request: id, status: r.status },
      );
    }
    return r;
  }

  /**
   * This member's operator releases held request `id` (synced: the signer reads it). Read and written
   * in one exclusive section, as the EVM rollback forgets a request and its releases in one: a release
   * made while a rollback is under way would otherwise outlive the forget and count for whatever
   * request the same transaction makes on the new branch.
   */
  async release(id: string): Promise<void> {
    await this.store.transaction(async (batch) => {
      const r = await this.heldRequest(id, batch);
      stageRelease(batch, r, this.self);
    });
  }

  /** A peer says its operator released `id`: kept only for a request this member holds, once per member. */
  async peerReleased(member: string, id: string): Promise<boolean> {
    if (!this.members.includes(member) || member === this.self) return false;
    return this.store.transaction(
      async (batch) => {
        const r = await getRequest(batch, id).catch(() => undefined);
        if (!r || !this.holdable(r)) return false;
        stageRelease(batch, r, member);
        return true;
      },
      { sync: false },
    );
  }

  /** This member's operator refuses held request `id`: this member will never sign a payment of it. */
  async reject(id: string): Promise<void> {
    await this.store.transaction(async (batch) => {
      const current = await this.heldRequest(id, batch);
      if (current.status !== 'held') {
        throw new EvmError('not_held', `request ${id} is ${current.status}, not held`, { request: id });
      }
      const { txHash, ordinal } = parseRequestId(id);
      if ((await batch.get(holdKey(txHash, ordinal, this.self))) !== undefined) {
        throw new EvmError('not_held', `request ${id} was released by this member's operator; a release stands`, {
          request: id,
        });
      }
      stageStatus(batch, current, 'rejected', new Date().toISOString(), "refused by this member's operator");
    });
  }

  /** Requests this member's operator released that are still queued: announced to peers that (re)connect. */
  async ownReleases(): Promise<string[]> {
    return (await this.holds()).filter((h) => h.releasedHere).map((h) => h.id);
  }
}
