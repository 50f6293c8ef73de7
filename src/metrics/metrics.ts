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
  return {
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
    feeRate: gauge('pegout_fee_rate_sat_per_vb', 'Target fee rate in use'),
    utxos: gauge('pegout_utxos', 'Federation outputs, by state', ['state'] as const),
    balance: gauge('pegout_balance_sats', 'Value of unspent federation outputs'),
    peers: gauge('pegout_peers_connected', 'Authenticated member links'),
    framesDropped: counter('pegout_frames_dropped_total', 'Peer frames dropped, by reason', ['reason'] as const),
    cursor: gauge('pegout_cursor_height', 'Last block whose effects are stored, by chain', ['chain'] as const),
    alarms: counter(
      'pegout_alarms_total',
      'Conditions an operator must look at (e.g. a request orphaned by a reorg after it was acted on)',
      ['kind'] as const,
    ),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
