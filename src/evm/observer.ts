import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import type { Network } from '../bitcoin/network.js';
import * as stages from '../metrics/stages.js';
import { cursorKey, evmBlockKey, EVM_PRUNED_KEY, SPACES } from '../storage/keys.js';
import type { Store, StoreBatch } from '../storage/store.js';
import {
  BRIDGE_ADDRESS,
  bridgeRequestLogs,
  decodeRequestLog,
  REQUEST_PEGOUT_TOPIC,
  type RawLog,
  type RequestLog,
} from './bridge.js';
import { EvmError } from './errors.js';
import { getRequest, getRequests, stageForget, stageNewRequest, stageStatus } from './request-store.js';
import { decideRequest } from './decider.js';
import { requestId } from './request-id.js';
import { getBlock, hexQuantity, type EvmRpc } from './rpc.js';
import type { EvmBlockRecord, EvmCursor, EvmPruned, RequestStatus } from '../storage/records.js';

export type Finality = { readonly confirmations: number } | 'finalized';

export interface EvmObserverOptions {
  readonly network: Network;
  readonly finality: Finality;
  /** First block to read when the store has no cursor. */
  readonly startBlock: number;
  /**
   * The first block this member does not read (a rotation's EVM boundary, on the old side: the new
   * federation pays the requests from it on).
   */
  readonly endBlock?: number;
  readonly bridge?: string;
  /** Largest eth_getLogs range tried; halved while the node refuses it, doubled back after answers (readLogs). */
  readonly maxRange?: number;
  /**
   * EVM blocks, counted back from the cursor, whose records (evmblk/) are kept for rollbacks
   * (default DEFAULT_KEEP_BLOCKS): a reorg of final blocks deeper than that may be refused.
   */
  readonly keepBlocks?: number;
  /** Called before sync() throws reorg_too_deep: requests of blocks no longer on the chain may be queued. */
  readonly onReorgTooDeep?: (err: EvmError) => Promise<void>;
  readonly log?: (event: string, fields: Record<string, unknown>) => void;
  readonly now?: () => string;
  /** Called by run() after each step that ingested requests. */
  readonly onIngested?: (report: SyncReport) => void;
  /** Requests the federation acted on whose block left the chain (after the rollback is stored). */
  readonly onOrphaned?: (orphaned: readonly OrphanedRequest[]) => Promise<void>;
}

export interface OrphanedRequest {
  readonly id: string;
  readonly block: number;
  /** What the federation had done with it. */
  readonly status: string;
}

export interface SyncReport {
  readonly from?: number;
  readonly to?: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly rolledBack: number;
  readonly caughtUp: boolean;
}

/** Logs decided between two turns of the event loop. */
const YIELD_EVERY = 500;

/**
 * About 5.5 hours of 2-second blocks. A member that keeps up writes a record for every range it
 * reads, a poll apart: kept forever, they would grow the store by one key a poll for as long as
 * it runs. The Bitcoin observer bounds its undo data the same way (1,000 blocks).
 */
const DEFAULT_KEEP_BLOCKS = 10_000;

/** Answers in a row after which a range wider than half the one the node last refused is tried again. */
const WIDER_AFTER = 16;

/** Records dropped in one range's batch: a store from before the bound sheds its backlog a chunk a range. */
const PRUNE_CHUNK = 1000;

/** Closest two polls may follow each other when wake() cuts a wait short. */
const MIN_POLL_GAP_MS = 50;

/**
 * How long a poll woken at `now` still waits: what is left of MIN_POLL_GAP_MS since the last poll
 * started at `lastStart`. Counted from the wake, the gap would hold back a peer's proposal most of
 * a gap even when the last poll was long ago.
 */
export function wokenPollDelay(lastStart: number, now: number): number {
  return Math.max(0, lastStart + MIN_POLL_GAP_MS - now);
}

/** The block number of an evmblk/ key. */
function blockOfKey(key: string): number {
  return Number(key.slice(SPACES.evmBlock.length));
}

const ACTED_ON = new Set(['batched', 'signed', 'broadcast', 'paid', 'orphaned']);

/**
 * Block `height`, which this member ingested. A node without it is behind (restored from a
 * snapshot, a lagging backend): the block cannot have left a chain the node has not reached, and
 * taking it for a reorg would forget or orphan requests the federation acted on.
 */
async function blockAtOrBehind(rpc: EvmRpc, height: number): Promise<{ hash: string }> {
  const block = await getBlock(rpc, height);
  if (block) return block;
  throw new EvmError(
    'rpc_behind',
    `the EVM node has no block ${height}, which this member already ingested: it is behind; waiting for it to catch up`,
    { height },
  );
}

/**
 * The EVM block observer: reads RequestPegOut logs emitted BY the bridge (whoever called it)
 * from final blocks only, decides each request, and writes the requests of a block range
 * together with the cursor in one synced batch — a restart resumes exactly after the last
 * written range. Before each step the cursor's block hash is checked against the node; a
 * changed block is rolled back and read again.
 */
export class EvmObserver {
  private range: number;
  /**
   * The widest range tried until WIDER_AFTER answers in a row came back since the node last refused
   * one: half the width it refused, then maxRange again.
   */
  private ceiling: number;
  /** Answers in a row since the node last refused a range. */
  private answered = 0;
  private readonly maxRange: number;
  private readonly keepBlocks: number;
  private readonly bridge: string;
  /** Ends run()'s current wait between polls early. */
  private wakeUp?: () => void;

  constructor(
    private readonly store: Store,
    private readonly rpc: EvmRpc,
    private readonly options: EvmObserverOptions,
  ) {
    this.maxRange = options.maxRange ?? 1000;
    this.keepBlocks = options.keepBlocks ?? DEFAULT_KEEP_BLOCKS;
    if (!Number.isSafeInteger(this.keepBlocks) || this.keepBlocks < 1)
      throw new EvmError('invalid_option', `keepBlocks must be a positive integer, got ${this.keepBlocks}`, {
        keepBlocks: this.keepBlocks,
      });
    this.range = this.maxRange;
    this.ceiling = this.maxRange;
    this.bridge = (options.bridge ?? BRIDGE_ADDRESS).toLowerCase();
  }

  private log(event: string, fields: Record<string, unknown>): void {
    this.options.log?.(event, fields);
  }

  private now(): string {
    return this.options.now?.() ?? new Date().toISOString();
  }

  async cursor(): Promise<EvmCursor | undefined> {
    return this.store.get<EvmCursor>(cursorKey('evm'));
  }

  private async finalHeight(): Promise<number> {
    const f = this.options.finality;
    if (f === 'finalized') {
      const block = await getBlock(this.rpc, 'finalized');
      return block ? block.number : -1;
    }
    const latest = await getBlock(this.rpc, 'latest');
    return latest ? latest.number - f.confirmations : -1;
  }

  /** One step, as the Bitcoin observer's sync(): a reorg check, then at most one range of final blocks. */
  async sync(): Promise<SyncReport> {
    const cursor = await this.cursor();
    if (cursor) {
      const block = await blockAtOrBehind(this.rpc, cursor.height);
      if (block.hash !== cursor.hash)
        return { accepted: 0, rejected: 0, rolledBack: await this.rollback(), caughtUp: false };
    }
    const from = cursor ? cursor.height + 1 : this.options.startBlock;
    const final = Math.min(await this.finalHeight(), (this.options.endBlock ?? Infinity) - 1);
    if (final < from) return { accepted: 0, rejected: 0, rolledBack: 0, caughtUp: true };
    const { to, toHash, logs } = await this.readLogs(from, Math.min(final, from + this.range - 1));
    const toBlock = await getBlock(this.rpc, to);
    if (!toBlock) throw new EvmError('rpc_malformed', `node has no block ${to} although it reported ${final} final`);
    // the chain may have reorganised between the reads above: the range is applied only on top of a
    // cursor block that is still there, else this step ends and the next one rolls back; and only if
    // its last block is the one it was when the logs were read, else logs of the new branch's blocks
    // that the old one's answer lacked would be missed for good (the cursor would be on the new branch)
    const moved = toHash !== toBlock.hash;
    if (moved || (cursor && (await getBlock(this.rpc, cursor.height))?.hash !== cursor.hash))
      return { accepted: 0, rejected: 0, rolledBack: 0, caughtUp: false };

    const blockHashes = new Map<number, string>([[to, toBlock.hash]]);
    const decoded = await this.checkedLogs(logs, { from, to }, blockHashes);

    let accepted = 0;
    let rejected = 0;
    await this.store.transaction(async (batch) => {
      const perBlock = new Map<number, string[]>();
      const at = this.now();
      for (let from = 0; from < decoded.length; from += YIELD_EVERY) {
        // store reads are synchronous: let the links and the API be served during a long range
        if (from > 0) await setImmediate();
        const chunk = decoded.slice(from, from + YIELD_EVERY);
        const statuses = await stages.timeAsync('decide', async () => {
          const ids = chunk.map((log) => requestId(log.txHash, log.ordinal));
          // one read for the chunk: a range's logs name distinct requests, so none is staged twice
          const known = await getRequests(batch, ids);
          return chunk.map((log, i) => this.ingest(batch, log, ids[i]!, known[i] !== undefined, perBlock, at));
        });
        accepted += statuses.filter((s) => s === 'accepted').length;
        rejected += statuses.filter((s) => s === 'rejected').length;
      }
      for (const [n, hash] of blockHashes)
        batch.put(evmBlockKey(n), { hash, requests: perBlock.get(n) ?? [] } satisfies EvmBlockRecord);
      batch.put(cursorKey('evm'), { height: to, hash: toBlock.hash } satisfies EvmCursor);
      await this.prune(batch, to);
    });
    if (accepted + rejected > 0) this.log('evm_requests_ingested', { from, to, accepted, rejected });
    return { from, to, accepted, rejected, rolledBack: 0, caughtUp: to >= final };
  }

  /**
   * The bridge's request logs decoded (an undecodable one is logged and skipped), in chain order,
   * each once and from `blocks` (bridgeRequestLogs), and each from a block whose hash the node
   * confirms: the logs and the headers must describe the same chain, or the range is read again later.
   */
  private async checkedLogs(
    logs: RawLog[],
    blocks: { from: number; to: number },
    blockHashes: Map<number, string>,
  ): Promise<RequestLog[]> {
    const decoded = stages.time('evm_fetch_decode', () =>
      bridgeRequestLogs(logs, this.bridge, blocks).flatMap(({ raw, ordinal }) => {
        const log = decodeRequestLog(raw, ordinal);
        if (!('error' in log)) return [log];
        this.log('evm_log_undecodable', { tx: raw.transactionHash, logIndex: raw.logIndex, error: log.error });
        return [];
      }),
    );
    for (const log of decoded) {
      if (!blockHashes.has(log.blockNumber)) {
        const b = await getBlock(this.rpc, log.blockNumber);
        if (!b) throw new EvmError('rpc_malformed', `node has no block ${log.blockNumber} for a log it returned`);
        blockHashes.set(log.blockNumber, b.hash);
      }
      if (blockHashes.get(log.blockNumber) !== log.blockHash)
        throw new EvmError('rpc_malformed', `block ${log.blockNumber} changed while it was being read`);
    }
    return decoded;
  }

  /**
   * Decides request `id` of `log` and stages it; undefined when it was ingested before (`known`: a
   * block read twice changes nothing).
   */
  private ingest(
    batch: StoreBatch,
    log: RequestLog,
    id: string,
    known: boolean,
    perBlock: Map<number, string[]>,
    at: string,
  ): RequestStatus | undefined {
    const ids = perBlock.get(log.blockNumber);
    if (ids) ids.push(id);
    else perBlock.set(log.blockNumber, [id]);
    if (known) return undefined;
    const d = decideRequest(log.addressBytes, log.wei, this.options.network);
    stageNewRequest(
      batch,
      {
        id,
        txHash: log.txHash,
        ordinal: log.ordinal,
        blockNumber: log.blockNumber,
        blockHash: log.blockHash,
        evmAddress: log.evmAddress,
        bitcoinAddress: d.bitcoinAddress,
        wei: log.wei.toString(),
        sats: d.sats,
        subSatoshiWei: d.subSatoshiWei.toString(),
        status: d.status,
        ...(d.reason ? { reason: d.reason } : {}),
        ...(d.detail ? { detail: d.detail } : {}),
        ...(d.scriptPubKey ? { scriptPubKey: d.scriptPubKey } : {}),
      },
      at,
    );
    return d.status;
  }

  /**
   * Stages the removal of the records of blocks more than keepBlocks behind `to` (the oldest
   * PRUNE_CHUNK of them) and notes below which block records are gone, for rollback(). The newest
   * record under the kept blocks stays: records are sparse (a range's end, blocks with requests), and
   * that block is the one a reorg of all the kept blocks forks from.
   */
  private async prune(batch: StoreBatch, to: number): Promise<void> {
    const below = to - this.keepBlocks + 1;
    if (below <= 0) return;
    const [fork] = await this.store.keys({ prefix: SPACES.evmBlock, lt: evmBlockKey(below), reverse: true, limit: 1 });
    if (fork === undefined) return;
    const old = await this.store.keys({ prefix: SPACES.evmBlock, lt: fork, limit: PRUNE_CHUNK });
    if (old.length === 0) return;
    for (const key of old) batch.del(key);
    batch.put(EVM_PRUNED_KEY, { below: blockOfKey(old.at(-1)!) + 1 } satisfies EvmPruned);
  }

  /**
   * eth_getLogs for [from, to], halving the range while the node refuses it, times out or answers over
   * the size cap, and doubling it after each answer, up to half the width last refused until WIDER_AFTER
   * answers in a row came back, then up to maxRange; with the hash block `to` had before the logs were read.
   */
  private async readLogs(
    from: number,
    to: number,
  ): Promise<{ to: number; toHash: string | undefined; logs: RawLog[] }> {
    for (;;) {
      try {
        const toHash = (await getBlock(this.rpc, to))?.hash;
        const logs = await this.rpc.call<RawLog[]>('eth_getLogs', [
          {
            address: this.bridge,
            topics: [REQUEST_PEGOUT_TOPIC],
            fromBlock: hexQuantity(from),
            toBlock: hexQuantity(to),
          },
        ]);
        if (!Array.isArray(logs))
          throw new EvmError('rpc_malformed', 'eth_getLogs answered with something other than a list');
        // back up after an answer: a refusal (a rate limit, a burst of logs) must not leave every later
        // range one block wide; but not at once to the width just refused, which while the load lasts
        // times out again (each timeout a minute with the default client's retries)
        if (++this.answered >= WIDER_AFTER) this.ceiling = this.maxRange;
        this.range = Math.min(this.ceiling, this.range * 2);
        return { to, toHash, logs };
      } catch (err) {
        // a timeout too: a node builds the whole answer before it sends it, so a heavy range (a user can
        // fill blocks with cheap bridge calls) times out long before it reaches the size cap, and at
        // every member alike
        const tooLarge =
          err instanceof EvmError &&
          (err.code === 'rpc_error' || err.code === 'rpc_too_large' || err.code === 'rpc_timeout');
        if (!tooLarge || to === from) throw err;
        this.range = Math.max(1, Math.floor((to - from + 1) / 2));
        this.ceiling = this.range;
        this.answered = 0;
        this.log('evm_log_range_halved', { from, to, range: this.range, error: err.message });
        to = from + this.range - 1;
      }
    }
  }

  /**
   * Undoes every stored block the node no longer has, newest first, down to the newest one it
   * still has. Requests never acted on vanish without trace; a request already batched or
   * signed becomes 'orphaned' and raises an alarm. When none of the kept blocks is on the chain any
   * more and older records were dropped, nothing is undone: reorg_too_deep, and onReorgTooDeep.
   */
  private async rollback(): Promise<number> {
    try {
      return await this.undo();
    } catch (err) {
      // outside the store's exclusive section: the alarm pauses the member, a store write
      if (err instanceof EvmError && err.code === 'reorg_too_deep') await this.options.onReorgTooDeep?.(err);
      throw err;
    }
  }

  private async undo(): Promise<number> {
    let undone = 0;
    const orphaned: OrphanedRequest[] = [];
    // the oldest record kept is on the chain, or no kept block is: then nothing more is asked of the node
    const pruned = await this.store.get<EvmPruned>(EVM_PRUNED_KEY);
    if (pruned) {
      for await (const [key, record] of this.store.entries<EvmBlockRecord>({ prefix: SPACES.evmBlock, limit: 1 })) {
        if ((await blockAtOrBehind(this.rpc, blockOfKey(key))).hash !== record.hash)
          throw this.tooDeep(blockOfKey(key), pruned);
      }
    }
    await this.store.transaction(async (batch) => {
      let fork: EvmCursor | undefined;
      let oldest: number | undefined;
      for await (const [key, record] of this.store.entries<EvmBlockRecord>({
        prefix: SPACES.evmBlock,
        reverse: true,
      })) {
        const height = blockOfKey(key);
        oldest = height;
        const block = await blockAtOrBehind(this.rpc, height);
        if (block.hash === record.hash) {
          fork = { height, hash: record.hash };
          break;
        }
        for (const id of record.requests) {
          const request = await getRequest(batch, id);
          if (!request) continue;
          if (ACTED_ON.has(request.status)) {
            if (request.status !== 'orphaned') {
              stageStatus(
                batch,
                request,
                'orphaned',
                this.now(),
                `EVM block ${height} (${record.hash}) left the chain after the request was ${request.status}`,
              );
              orphaned.push({ id, block: height, status: request.status });
            }
          } else {
            await stageForget(batch, this.store, request);
          }
          undone++;
        }
        batch.del(key);
      }
      // the chain moved again since the oldest record was found on it
      if (!fork && pruned) throw this.tooDeep(oldest!, pruned);
      if (fork) batch.put(cursorKey('evm'), fork);
      else batch.del(cursorKey('evm'));
      this.log('evm_reorg_rolled_back', { toHeight: fork?.height ?? null, requestsUndone: undone });
    });
    if (orphaned.length > 0) await this.options.onOrphaned?.(orphaned);
    return undone;
  }

  private tooDeep(oldest: number, pruned: EvmPruned): EvmError {
    return new EvmError(
      'reorg_too_deep',
      `every EVM block this member keeps a record of, down to block ${oldest}, left the chain, and the records of the blocks under ${pruned.below} were dropped (kept for ${this.keepBlocks} blocks): the store cannot follow this reorg`,
      { oldest, below: pruned.below, keepBlocks: this.keepBlocks },
    );
  }

  /**
   * Reads the chain now instead of at the next poll: a peer's proposal named a request this
   * member has not ingested yet. Polls stay at least MIN_POLL_GAP_MS apart, so a peer naming
   * unknown requests cannot make this member hammer its node.
   */
  wake(): void {
    this.wakeUp?.();
  }

  /** Follows the chain until `signal` aborts; failures are logged and retried with backoff. */
  async run(signal: AbortSignal, pollMs = 1000): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      const started = Date.now();
      let waitMs: number;
      try {
        const report = await this.sync();
        failures = 0;
        if (report.accepted + report.rejected > 0) this.options.onIngested?.(report);
        waitMs = report.caughtUp ? pollMs : 0;
      } catch (err) {
        failures++;
        this.log('evm_sync_failed', { error: (err as Error).message, failures });
        waitMs = Math.min(30_000, pollMs * 2 ** Math.min(failures, 5));
      }
      if (waitMs === 0) continue;
      // a failing node keeps its backoff: wake() shortens only the wait between good polls
      if (failures > 0) await sleep(waitMs, undefined, { signal }).catch(() => undefined);
      else await this.pause(waitMs, started, signal);
    }
  }

  /** Waits `ms`, or once wake() is called only until MIN_POLL_GAP_MS after `lastStart`. */
  private async pause(ms: number, lastStart: number, signal: AbortSignal): Promise<void> {
    const woken = new AbortController();
    this.wakeUp = () => woken.abort();
    await sleep(ms, undefined, { signal: AbortSignal.any([signal, woken.signal]) }).catch(() => undefined);
    this.wakeUp = undefined;
    const rest = wokenPollDelay(lastStart, Date.now());
    if (woken.signal.aborted && !signal.aborted && rest > 0)
      await sleep(rest, undefined, { signal }).catch(() => undefined);
  }
}
