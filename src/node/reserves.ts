import { equal } from '../bitcoin/bytes.js';
import type { Federation } from '../bitcoin/federation.js';
import { parseTx } from '../bitcoin/tx.js';
import { BitcoinRpcClient, rawDescriptor } from '../chain/rpc.js';
import type { Config } from '../config/config.js';
import { isPegoutError } from '../errors.js';
import { listRequestsIn, OWED, paidSats, paymentsOfRequests, QUEUED } from '../evm/request-store.js';
import type { Metrics } from '../metrics/metrics.js';
import { cursorKey, finalizedKey, signatureMadeKey, SPACES, txConfirmationKey } from '../storage/keys.js';
import type { Store } from '../storage/store.js';
import {
  reserveReport,
  type CoreView,
  type HeldOutput,
  type OwedRequest,
  type ReserveBooks,
  type ReserveReport,
  type Unnamed,
  unnamedWithin,
} from '../wallet/reserves.js';
import { readCommitment } from '../wallet/commitment.js';
import { getUtxo, getUtxos, listUtxos, pegInTotal } from '../wallet/utxos.js';
import type { Logger } from './log.js';
import type { Safety } from './safety.js';
import type { BitcoinCursor, ChainSpend, FinalizedRecord, RequestRecord } from '../storage/records.js';

// The reserve audit in the member (issue 13): on each Bitcoin block this member applies, its books
// (src/wallet/reserves.ts) against Bitcoin Core's UTXO set for the federation script (scantxoutset).
// A shortfall or a difference raises an alarm that pauses the member (node/safety.ts,
// docs/alarms.md); a later audit that passes clears the alarm (the pause stays until an operator
// resumes). Without Bitcoin Core there is no chain to compare with and the funding is declared:
// the books are reported and nothing is alarmed.

/** How long the scan of Core's whole UTXO set may take (minutes on mainnet; Core runs one at a time). */
const SCAN_TIMEOUT_MS = 20 * 60_000;
/** While this member stays at one block, how often its books are judged again against Core's scan of that block. */
export const RECHECK_MS = 30_000;
/** How long a report computed for the API is served again before the books are read anew. */
const REPORT_MAX_AGE_MS = 5_000;

/**
 * The payments among `txids` that are applied to this member's coins: confirmed in a block it applied
 * (txconf/), or, without Bitcoin Core, settled locally (their first input spent by them).
 */
async function appliedPayments(store: Store, txids: readonly string[]): Promise<Set<string>> {
  const confirmed = await store.getMany(txids.map(txConfirmationKey));
  const applied = new Set(txids.filter((_, i) => confirmed[i] !== undefined));
  const rest = txids.filter((t) => !applied.has(t));
  for (const f of await store.getMany<FinalizedRecord>(rest.map(finalizedKey))) {
    const first = f && parseTx(f.tx).inputs[0];
    if (first && (await getUtxo(store, first))?.spentBy === f.txid) applied.add(f.txid);
  }
  return applied;
}

/** Requests in OWED statuses, from the status index; those in flight are checked for an applied payment. */
async function owedRequests(store: Store): Promise<OwedRequest[]> {
  const out: OwedRequest[] = [];
  const inFlight: RequestRecord[] = [];
  for (const r of await listRequestsIn(store, OWED)) {
    if (QUEUED.has(r.status)) out.push({ id: r.id, status: r.status, sats: r.sats, settled: false });
    else inFlight.push(r);
  }
  // the payments of every request in flight in one read
  const payments = await paymentsOfRequests(store, inFlight);
  const applied = await appliedPayments(store, [...new Set(payments.flat())]);
  for (const [i, r] of inFlight.entries())
    out.push({ id: r.id, status: r.status, sats: r.sats, settled: payments[i]!.some((t) => applied.has(t)) });
  return out;
}

/**
 * This member's books at one instant: read inside the store's exclusive section, which every
 * writer of UTXO states and request statuses goes through, so no block, reservation or status
 * change lands halfway. Reads what the federation holds (its outputs, unspent or reserved) and owes
 * (requests not paid yet), and the ledger's two sums from their counters: its cost follows the
 * books, not the history, since it runs at every block and may be asked for by anyone.
 */
export function readBooks(store: Store, naming?: UnnamedWindow): Promise<ReserveBooks> {
  return store.exclusive(async () => {
    const cursor = await store.get<BitcoinCursor>(cursorKey('bitcoin'));
    const outputs: HeldOutput[] = [];
    for (const state of ['unspent', 'reserved'] as const)
      for (const u of await listUtxos(store, state))
        outputs.push({ txid: u.txid, vout: u.vout, value: u.value, height: u.height });
    const owed = await owedRequests(store);
    return {
      cursor: cursor ? { height: cursor.height, hash: cursor.hash } : null,
      outputs,
      owed,
      pegIns: await pegInTotal(store),
      paid: await paidSats(store),
      unnamed: cursor && naming ? await unnamedPayments(store, cursor.height, naming) : { sats: 0n, payments: 0 },
    };
  });
}

/** Which payments found on the chain count as paying requests not named yet: ReserveReport.unnamed. */
export interface UnnamedWindow {
  readonly federationScript: Uint8Array;
  /** The paid depth (wallet/reserves.ts unnamedWithin). */
  readonly blocks: number;
  readonly nowMs: number;
}

/**
 * The spends of federation outputs that this member holds no finalized record of (chain/observer.ts
 * keeps them until node/settlement.ts adopts them), confirmed within the window and committing to
 * requests: what each took from the federation (its federation inputs less its outputs back to it).
 * One it signed is not among them: its requests list it from the signing on, so they already count
 * as settling once its block is applied (owedRequests), before the settlement adopts it.
 */
async function unnamedPayments(store: Store, tip: number, window: UnnamedWindow): Promise<Unnamed> {
  let sats = 0n;
  let payments = 0;
  for await (const [, spend] of store.entries<ChainSpend>({ prefix: SPACES.chainSpend })) {
    if (!unnamedWithin(spend, tip, window.blocks, window.nowMs)) continue;
    const [finalized, signed] = await store.getMany([finalizedKey(spend.txid), signatureMadeKey(spend.txid)]);
    if (finalized !== undefined || signed !== undefined) continue;
    const tx = parseTx(spend.tx);
    if (!tx.outputs[0] || !readCommitment(tx.outputs[0].scriptPubKey)) continue;
    let taken = 0n;
    for (const u of await getUtxos(store, tx.inputs)) if (u?.spentBy === spend.txid) taken += u.value;
    for (const o of tx.outputs) if (equal(o.scriptPubKey, window.federationScript)) taken -= o.value;
    if (taken <= 0n) continue;
    sats += taken;
    payments++;
  }
  return { sats, payments };
}

export interface ReserveAuditorOptions {
  readonly store: Store;
  readonly federation: Federation;
  /** Bitcoin Core's UTXO set; null without Core (declared funding): the books are reported, nothing alarmed. */
  readonly core: Pick<BitcoinRpcClient, 'scanTxOutSet'> | null;
  readonly safety: Pick<Safety, 'alarm' | 'clear' | 'report'>;
  readonly log: Logger;
  readonly metrics?: Metrics;
  readonly now?: () => string;
  /** Default RECHECK_MS. */
  readonly recheckMs?: number;
  /** On the new side of a rotation: the old federation's script, whose outputs Core still holds for this one. */
  readonly handingOverFrom?: Uint8Array;
  /** The paid depth: how long a payment whose requests are not named yet counts (ReserveReport.unnamed); default 0. */
  readonly paidConfirmations?: number;
}

export class ReserveAuditor {
  #last: ReserveReport | undefined;
  #lastMs = 0;
  #running: Promise<ReserveReport> | undefined;
  /** Core's last scan, by the block it was made at: the books at that block are judged against it. */
  #scanned: { hash: string; view: CoreView } | undefined;
  /** The block of the last audit that was compared with Core, and when. */
  #judged: { hash: string; ms: number } | undefined;

  constructor(private readonly o: ReserveAuditorOptions) {}

  /**
   * The loop's step (every bitcoin.pollMs), with Core: an audit at each block this member applies,
   * and again every recheckMs while it stays there (requests arrive between blocks). Core is scanned
   * only when it has not been at this block yet; until the member reaches Core's block, nothing is judged.
   */
  async tick(): Promise<void> {
    if (!this.o.core) return;
    const cursor = await this.o.store.get<BitcoinCursor>(cursorKey('bitcoin'));
    if (!cursor) return;
    const judged = this.#judged;
    if (judged?.hash === cursor.hash && Date.now() - judged.ms < (this.o.recheckMs ?? RECHECK_MS)) return;
    await this.#audit(this.#scanned?.hash === cursor.hash ? this.#scanned.view : undefined);
  }

  /**
   * The latest report, for GET /reserves and `pegout reserves`. Never starts a scan of Core (the API
   * is public): with Core it is the last audit's; before the first one, and without Core, the books
   * are read (at most every few seconds).
   */
  async report(): Promise<ReserveReport> {
    const last = this.#last;
    if (last && (this.o.core || Date.now() - this.#lastMs < REPORT_MAX_AGE_MS)) return last;
    return this.#shared(async () => {
      const pending = 'no audit against Bitcoin Core yet: it runs once this member has applied a block';
      const books = await readBooks(this.o.store, this.#naming());
      const report = reserveReport(books, this.o.core ? { unavailable: pending } : null, this.#now());
      this.#keep(report);
      return report;
    });
  }

  /** Reads the books, scans Core, judges, and acts on the verdict: gauges, alarms (which pause), clears. */
  audit(): Promise<ReserveReport> {
    return this.#audit(undefined);
  }

  #audit(scanned: CoreView | undefined): Promise<ReserveReport> {
    return this.#shared(async () => {
      const books = await readBooks(this.o.store, this.#naming());
      const report = reserveReport(books, scanned ?? (await this.#scan()), this.#now());
      this.#keep(report);
      if (report.core.compared && report.member) this.#judged = { hash: report.member.hash, ms: Date.now() };
      await this.#act(report);
      return report;
    });
  }

  #naming(): UnnamedWindow {
    return {
      federationScript: this.o.federation.scriptPubKey,
      blocks: this.o.paidConfirmations ?? 0,
      nowMs: Date.parse(this.#now()),
    };
  }

  #now(): string {
    return this.o.now?.() ?? new Date().toISOString();
  }

  #keep(report: ReserveReport): void {
    this.#last = report;
    this.#lastMs = Date.now();
    this.o.metrics?.reserveAssets.set(Number(report.assets.sats));
    this.o.metrics?.reserveLiabilities.set(Number(report.liabilities.sats));
  }

  /** Concurrent callers share one pass. */
  #shared(fn: () => Promise<ReserveReport>): Promise<ReserveReport> {
    this.#running ??= fn().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #scan(): Promise<CoreView | null> {
    if (!this.o.core) return null;
    try {
      const old = this.o.handingOverFrom;
      // one scan for both: Core runs one at a time
      const scripts = [this.o.federation.scriptPubKey, ...(old ? [old] : [])];
      const scan = await this.o.core.scanTxOutSet(scripts.map(rawDescriptor));
      const ours = Buffer.from(this.o.federation.scriptPubKey).toString('hex');
      const outputs = scan.outputs
        .filter((o) => o.scriptPubKey === ours)
        .map(({ txid, vout, value, height }) => ({ txid, vout, value, height }));
      const handingOver = old
        ? scan.outputs.filter((o) => o.scriptPubKey !== ours).reduce((a, o) => a + o.value, 0n)
        : undefined;
      const view = { height: scan.height, hash: scan.bestblock, outputs, ...(old ? { handingOver } : {}) };
      if (scan.bestblock !== undefined) this.#scanned = { hash: scan.bestblock, view };
      return view;
    } catch (err) {
      this.o.log.warn('reserves_scan_failed', { error: err as Error });
      // the report is public (GET /reserves): the code only; the message names files and addresses, in the log
      return {
        unavailable: `Bitcoin Core's scan failed (${isPegoutError(err) ? err.code : 'error'}; see the member's log)`,
      };
    }
  }

  async #act(report: ReserveReport): Promise<void> {
    const { core, assets, liabilities } = report;
    if (!core.compared) {
      this.o.log.debug('reserves_not_compared', { reason: core.reason });
      return;
    }
    this.o.metrics?.reserveCore.set(Number(core.sats));
    this.o.metrics?.reserveOk.set(report.faults.length === 0 ? 1 : 0);
    const fields = {
      height: core.height,
      assetsSats: assets.sats,
      liabilitiesSats: liabilities.sats,
      coreSats: core.sats,
    };
    this.o.log.info('reserves_audited', { ...fields, verdict: report.verdict, surplusSats: report.surplus });
    const safety = this.o.safety.report();
    for (const kind of ['reserves_short', 'reserves_mismatch'] as const) {
      const fault = report.faults.find((f) => f.kind === kind);
      if (!fault) this.o.safety.clear(kind);
      // once per episode, and again if an operator resumed the member while the fault stays
      else if (safety.paused === null || !safety.alarms.some((a) => a.kind === kind)) {
        const more = kind === 'reserves_mismatch' ? { differences: core.listed } : {};
        await this.o.safety.alarm(kind, fault.message, { ...fields, ...more });
      }
    }
  }
}

/**
 * The member's auditor. With a `bitcoin` section it has its own RPC client: a scan of Core's whole
 * UTXO set outlasts the timeout the rest of the member uses.
 */
export function reserveAuditor(
  config: Config,
  deps: Omit<ReserveAuditorOptions, 'core'>,
  cleanup: (() => Promise<void>)[],
): ReserveAuditor {
  const b = config.bitcoin;
  if (!b) return new ReserveAuditor({ ...deps, core: null });
  const auth = b.cookieFile ? { cookieFile: b.cookieFile } : { user: b.user!, password: b.password! };
  const rpc = new BitcoinRpcClient({ url: b.rpcUrl, auth, timeoutMs: SCAN_TIMEOUT_MS, retries: 1 });
  cleanup.push(async () => rpc.close());
  return new ReserveAuditor({ ...deps, core: rpc, paidConfirmations: b.paidConfirmations });
}
