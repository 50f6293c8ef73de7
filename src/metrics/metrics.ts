import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** A member's metrics, on a registry of its own (several members can share a test process). */
export function createMetrics(options: { processMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'pegout_process_' });
  const registers = [registry];
  return {
    registry,
    requests: new Gauge({
      name: 'pegout_requests',
      help: 'Peg-out requests this member knows, by status',
      labelNames: ['status'] as const,
      registers,
    }),
    rounds: new Counter({
      name: 'pegout_rounds_total',
      help: 'Rounds, by outcome',
      labelNames: ['outcome'] as const,
      registers,
    }),
    signaturesMade: new Counter({
      name: 'pegout_signatures_made_total',
      help: 'Input signatures this member made',
      registers,
    }),
    signaturesReceived: new Counter({
      name: 'pegout_signatures_received_total',
      help: 'Verified signature sets received from members',
      registers,
    }),
    signaturesRejected: new Counter({
      name: 'pegout_signatures_rejected_total',
      help: 'Signature sets refused, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    signingLatency: new Histogram({
      name: 'pegout_signing_seconds',
      help: 'Time from proposal received to signatures sent',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    feeRate: new Gauge({ name: 'pegout_fee_rate_sat_per_vb', help: 'Target fee rate in use', registers }),
    utxos: new Gauge({
      name: 'pegout_utxos',
      help: 'Federation outputs, by state',
      labelNames: ['state'] as const,
      registers,
    }),
    balance: new Gauge({ name: 'pegout_balance_sats', help: 'Value of unspent federation outputs', registers }),
    peers: new Gauge({ name: 'pegout_peers_connected', help: 'Authenticated member links', registers }),
    framesDropped: new Counter({
      name: 'pegout_frames_dropped_total',
      help: 'Peer frames dropped, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    cursor: new Gauge({
      name: 'pegout_cursor_height',
      help: 'Last block whose effects are stored, by chain',
      labelNames: ['chain'] as const,
      registers,
    }),
    alarms: new Counter({
      name: 'pegout_alarms_total',
      help: 'Conditions an operator must look at (e.g. a request orphaned by a reorg after it was acted on)',
      labelNames: ['kind'] as const,
      registers,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
