import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { registerStageMetrics } from './stages.js';

/** A member's metrics, on a registry of its own (several members can share a test process). */
export function createMetrics(options: { processMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'pegout_process_' });
  // CPU by pipeline stage (src/metrics/stages.ts)
  registerStageMetrics(registry);
  const registers = [registry];
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers });
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Gauge<L>({ name, help, labelNames, registers });
  const histogram = (name: string, help: string, buckets: number[]) =>
    new Histogram({ name, help, buckets, registers });
  const metrics = {
    registry,
    requests: gauge('pegout_requests', 'Peg-out requests this member knows, by status', ['status'] as const),
    rounds: counter('pegout_rounds_total', 'Rounds, by outcome', ['outcome'] as const),
    signaturesMade: counter('pegout_signatures_made_total', 'Input signatures this member made'),
    signaturesReceived: counter('pegout_signatures_received_total', 'Verified signature sets received from members'),
    signaturesRejected: counter('pegout_signatures_rejected_total', 'Signature sets refused, by reason', [
      'reason',
    ] as const),
    signingLatency: histogram(
      'pegout_signing_seconds',
      'Time from proposal received to signatures sent',
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ),
    paymentLatency: histogram(
      'pegout_payment_seconds',
      "Time from this member's signatures on a payment to the payment finalized (t signatures)",
      [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    ),
    feeRate: gauge('pegout_fee_rate_sat_per_vb', 'Target fee rate in use'),
    utxos: gauge('pegout_utxos', 'Federation outputs, by state', ['state'] as const),
    balance: gauge('pegout_balance_sats', 'Value of unspent federation outputs'),
    peers: gauge('pegout_peers_connected', 'Authenticated member links'),
    framesDropped: counter('pegout_frames_dropped_total', 'Peer frames dropped, by reason', ['reason'] as const),
    cursor: gauge('pegout_cursor_height', 'Last block whose effects are stored, by chain', ['chain'] as const),
    reserveAssets: gauge(
      'pegout_reserve_assets_sats',
      'Confirmed federation outputs this member holds (reserve audit)',
    ),
    reserveLiabilities: gauge(
      'pegout_reserve_liabilities_sats',
      'Requests accepted and not yet paid on chain, in sats (reserve audit)',
    ),
    reserveCore: gauge(
      'pegout_reserve_core_sats',
      "Bitcoin Core's UTXO set for the federation script at the last audit compared with it",
    ),
    reserveOk: gauge(
      'pegout_reserve_ok',
      'Last reserve audit compared with Bitcoin Core: 1 passed, 0 failed (alarm), -1 none yet or no Core',
    ),
    alarms: counter(
      'pegout_alarms_total',
      'Conditions an operator must look at (e.g. a request orphaned by a reorg after it was acted on)',
      ['kind'] as const,
    ),
  };
  metrics.reserveOk.set(-1);
  return { ...metrics, memory: memoryGauges(registers) };
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Where the process's memory is, read at each scrape: process.memoryUsage() (rss, heap, external,
 * arrayBuffers) and, once a store is attached (watchStore), RocksDB's memtables, table readers and
 * block cache, so resident growth that is in none of them shows as native heap (malloc).
 */
function memoryGauges(registers: Registry[]) {
  let store: (() => Record<string, number>) | undefined;
  new Gauge({
    name: 'pegout_memory_bytes',
    help: 'Process memory by kind (process.memoryUsage())',
    labelNames: ['kind'] as const,
    registers,
    collect() {
      const usage = process.memoryUsage();
      this.set({ kind: 'rss' }, usage.rss);
      this.set({ kind: 'heap_total' }, usage.heapTotal);
      this.set({ kind: 'heap_used' }, usage.heapUsed);
      this.set({ kind: 'external' }, usage.external);
      this.set({ kind: 'array_buffers' }, usage.arrayBuffers);
    },
  });
  new Gauge({
    name: 'pegout_store_memory_bytes',
    help: "RocksDB's memory by part (memtables, table readers, block cache)",
    labelNames: ['part'] as const,
    registers,
    collect() {
      if (store === undefined) return;
      try {
        for (const [part, bytes] of Object.entries(store())) this.set({ part }, bytes);
      } catch {
        // closed store during shutdown: keep the last values rather than fail the scrape
      }
    },
  });
  return {
    watchStore(read: () => Record<string, number>): void {
      store = read;
    },
  };
}
