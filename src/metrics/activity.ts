import type { Metrics } from './metrics.js';

// Recent signing activity for the operator page's charts: the member samples its own counters
// every few seconds and keeps the last few minutes, so a page opened now has a history to draw
// (Prometheus keeps the long one).

/** The counters at one instant. */
export interface ActivitySample {
  /** ms since the epoch */
  readonly t: number;
  readonly signatures: number;
  readonly signingSeconds: number;
  readonly signings: number;
  /** Requests in a finalized payment or further (signed, broadcast, paid). */
  readonly settled: number;
}

/** One interval between two samples. */
export interface ActivityPoint {
  readonly at: string;
  readonly signaturesPerSecond: number;
  /** Mean time from proposal to signatures sent, ms; null when nothing was signed in the interval. */
  readonly signingMs: number | null;
  readonly requestsPerSecond: number;
}

const round = (x: number): number => Math.round(x * 100) / 100;

/** The rates between consecutive samples. Pure. */
export function activityPoints(samples: readonly ActivitySample[]): ActivityPoint[] {
  return samples.slice(1).map((s, i) => {
    const before = samples[i]!;
    const seconds = Math.max((s.t - before.t) / 1000, 0.001);
    const signings = s.signings - before.signings;
    return {
      at: new Date(s.t).toISOString(),
      signaturesPerSecond: round(Math.max(0, s.signatures - before.signatures) / seconds),
      signingMs: signings > 0 ? round(((s.signingSeconds - before.signingSeconds) / signings) * 1000) : null,
      // a lost payment returns its requests: that interval shows none settled, never a negative rate
      requestsPerSecond: round(Math.max(0, s.settled - before.settled) / seconds),
    };
  });
}

const SETTLED = new Set(['signed', 'broadcast', 'paid']);

/** Reads the member's metrics into a bounded window of samples. */
export class Activity {
  readonly #samples: ActivitySample[] = [];

  constructor(
    private readonly metrics: Metrics,
    private readonly keep = 300,
  ) {}

  async sample(now = Date.now()): Promise<void> {
    const [signatures, latency, requests] = await Promise.all([
      this.metrics.signaturesMade.get(),
      this.metrics.signingLatency.get(),
      this.metrics.requests.get(),
    ]);
    const named = (name: string): number => latency.values.find((v) => v.metricName === name)?.value ?? 0;
    this.#samples.push({
      t: now,
      signatures: signatures.values[0]?.value ?? 0,
      signingSeconds: named('pegout_signing_seconds_sum'),
      signings: named('pegout_signing_seconds_count'),
      settled: requests.values.filter((v) => SETTLED.has(String(v.labels.status))).reduce((a, v) => a + v.value, 0),
    });
    if (this.#samples.length > this.keep) this.#samples.shift();
  }

  points(): ActivityPoint[] {
    return activityPoints(this.#samples);
  }
}
