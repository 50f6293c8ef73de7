import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { requestCounts, type Devnet } from '../../src/devnet/federation.js';

// How a benchmark follows a devnet's payments: bench:e2e and bench:growth wait and time the same way.

/**
 * How often waitFinalized scrapes every member's /metrics. Only when a wait ends depends on it, not
 * what is measured (finalizations()'s times are the members' own), while each scrape is CPU the
 * member spends on the harness: at every 50 ms, 20 scrapes a second per member were about 3 % of a
 * member's main thread in a 5-of-7 throughput run, hundreds of times Prometheus's pace.
 */
const PROGRESS_POLL_MS = 250;

/**
 * Waits until every member holds `count` requests in finalized payments; `report` gets the lowest
 * member's count after each scrape, and may throw to give up.
 */
export async function waitFinalized(devnet: Devnet, count: number, report: (finalized: number) => void): Promise<void> {
  for (;;) {
    const counts = await Promise.all(
      devnet.members.map((m) => requestCounts(m).catch(() => ({}) as Record<string, number>)),
    );
    const finalized = Math.min(...counts.map((c) => c.signed ?? 0));
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
 * when the last member recorded its last finalized payment (the /metrics counts lag by up to a second).
 */
export async function finalizations(
  devnet: Devnet,
  since: number,
): Promise<{ payments: PaymentSample[]; lastFinalizedAt: number }> {
  const proposed = new Map<string, { at: number; inputs: number; outputs: number }>();
  const finalized = new Map<string, number>();
  let lastFinalizedAt = 0;
  for (const m of devnet.members) {
    for (const line of (await readFile(m.logFile, 'utf8')).split('\n')) {
      if (!line.startsWith('{')) continue;
      const e = JSON.parse(line) as { ts: string; event: string; txid?: string; inputs?: number; requests?: number };
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
