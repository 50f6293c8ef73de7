import { open, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Devnet } from '../../src/devnet/federation.js';

// How a benchmark follows a devnet's payments: bench:e2e and bench:growth wait and time the same way,
// from the members' own JSON logs.

/**
 * How often waitFinalized reads what the members' logs gained. Only when a wait ends depends on it,
 * not what is measured (finalizations()'s times are the members' own).
 */
const PROGRESS_POLL_MS = 250;

interface LogEvent {
  readonly ts: string;
  readonly event: string;
  readonly txid?: string;
  readonly inputs?: number;
  readonly requests?: number;
}

/** The JSON events of a log's complete lines (a member also prints non-JSON lines, e.g. Node's warnings). */
function logEvents(lines: readonly string[]): LogEvent[] {
  return lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as LogEvent);
}

/**
 * Requests in the payments a member logged as finalized (and those it matched to one late, having
 * ingested them after it was recorded), read as its log grows: each read costs the
 * harness, not the member. Scraping every member's /metrics for the same count, four times a second,
 * cost each member about 3 ms of its main thread a scrape (prom-client renders every stage series),
 * work no Prometheus at its pace would ask of it, counted in the member's CPU per request.
 */
class FinalizedCount {
  #offset = 0;
  #partial = '';
  #count = 0;

  constructor(private readonly file: string) {}

  async read(): Promise<number> {
    const handle = await open(this.file, 'r');
    try {
      const { size } = await handle.stat();
      if (size > this.#offset) {
        const bytes = Buffer.alloc(size - this.#offset);
        const { bytesRead } = await handle.read(bytes, 0, bytes.length, this.#offset);
        this.#offset += bytesRead;
        const lines = (this.#partial + bytes.subarray(0, bytesRead).toString('utf8')).split('\n');
        this.#partial = lines.pop()!;
        for (const e of logEvents(lines))
          if (e.event === 'finalized' || e.event === 'late_matched') this.#count += e.requests ?? 0;
      }
    } finally {
      await handle.close();
    }
    return this.#count;
  }
}

/**
 * Waits until every member holds `count` requests in finalized payments (since it started); `report`
 * gets the lowest member's count after each look, and may throw to give up.
 */
export async function waitFinalized(devnet: Devnet, count: number, report: (finalized: number) => void): Promise<void> {
  const logs = devnet.members.map((m) => new FinalizedCount(m.logFile));
  for (;;) {
    const counts = await Promise.all(logs.map((log) => log.read()));
    const finalized = Math.min(...counts);
    report(finalized);
    if (finalized >= count) return;
    await sleep(PROGRESS_POLL_MS);
  }
}

export interface PaymentSample {
  readonly txid: string;
  readonly inputs: number;
  readonly outputs: number;
  readonly latencyMs: number;
}

/**
 * From the members' JSON logs: proposal → first finalization, per payment proposed since `since`, and
 * when the last member recorded its last finalized payment.
 */
export async function finalizations(
  devnet: Devnet,
  since: number,
): Promise<{ payments: PaymentSample[]; lastFinalizedAt: number }> {
  const proposed = new Map<string, { at: number; inputs: number; outputs: number }>();
  const finalized = new Map<string, number>();
  let lastFinalizedAt = 0;
  for (const m of devnet.members) {
    for (const e of logEvents((await readFile(m.logFile, 'utf8')).split('\n'))) {
      if (!e.txid) continue;
      const at = Date.parse(e.ts);
      // a warm-up's payments were all finalized before the measured requests were sent
      if (e.event === 'proposed' && at >= since)
        proposed.set(e.txid, { at, inputs: e.inputs ?? 0, outputs: e.requests ?? 0 });
      if (e.event === 'finalized') {
        finalized.set(e.txid, Math.min(finalized.get(e.txid) ?? Infinity, at));
        lastFinalizedAt = Math.max(lastFinalizedAt, at);
      }
    }
  }
  const payments = [...proposed].flatMap(([txid, p]) =>
    finalized.has(txid) ? [{ txid, inputs: p.inputs, outputs: p.outputs, latencyMs: finalized.get(txid)! - p.at }] : [],
  );
  return { payments, lastFinalizedAt };
}
