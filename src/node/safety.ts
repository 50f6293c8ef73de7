import type { Metrics } from '../metrics/metrics.js';
import { PAUSE_KEY } from '../storage/keys.js';
import type { Store } from '../storage/store.js';
import type { PauseReason, PauseRecord } from '../storage/records.js';
import type { Logger } from './log.js';

// The member's circuit breaker and alarms. An alarm is something an operator must look at
// (docs/alarms.md says what to do for each); some of them mean money may be leaving without the
// federation's rules, so the member pauses itself: it signs nothing until an operator resumes it,
// and it keeps ingesting and reporting. The pause is stored (synced) so a restart keeps it.

/** Every alarm a member raises; the pausing ones stop its signing. */
export const ALARMS = {
  /** A confirmed transaction spent a federation output and is no federation payment (keys or a quorum misused). */
  foreign_spend: { pauses: true },
  /** A confirmed spend commits to requests this member cannot match (not ingested, or wrong amounts). */
  chain_spend_unmatched: { pauses: false },
  /** Federation assets are below the requests it owes. */
  reserves_short: { pauses: true },
  /** This member's view of the federation's coins differs from Bitcoin Core's. */
  reserves_mismatch: { pauses: true },
  /** A request the federation acted on left the sidechain (EVM reorg deeper than the finality setting). */
  request_orphaned: { pauses: true },
  /** Every EVM block this member keeps a record of left the sidechain: which requests went with them is unknown. */
  evm_reorg_too_deep: { pauses: true },
  /** A signature this member made failed its own verification and was not sent (a fault while signing). */
  sign_fault: { pauses: true },
} as const;

export type AlarmKind = keyof typeof ALARMS;

export interface ActiveAlarm {
  readonly kind: AlarmKind;
  readonly detail: string;
  readonly since: string;
  count: number;
}

export interface SafetyReport {
  readonly paused: PauseRecord | null;
  readonly alarms: readonly ActiveAlarm[];
}

export class Safety {
  #paused: PauseRecord | null = null;
  readonly #active = new Map<AlarmKind, ActiveAlarm>();
  readonly #listeners: ((paused: boolean) => void)[] = [];

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
    private readonly now: () => string = () => new Date().toISOString(),
  ) {}

  /** Reads the stored pause: a member paused before a restart stays paused. */
  async load(): Promise<void> {
    this.#paused = (await this.store.get<PauseRecord>(PAUSE_KEY)) ?? null;
    if (this.#paused) this.log.warn('member_paused', { reasons: this.#paused.reasons, since: this.#paused.since });
  }

  /** Called with the new state whenever this member pauses or resumes. */
  onChange(fn: (paused: boolean) => void): void {
    this.#listeners.push(fn);
  }

  get paused(): PauseRecord | null {
    return this.#paused;
  }

  report(): SafetyReport {
    return { paused: this.#paused, alarms: [...this.#active.values()] };
  }

  /**
   * Raises an alarm: a structured log line with `alarm: true`, the counter, the health report;
   * a pausing kind also pauses the member.
   */
  async alarm(kind: AlarmKind, detail: string, fields: Record<string, unknown> = {}): Promise<void> {
    const at = this.now();
    const active = this.#active.get(kind);
    if (active) active.count++;
    else this.#active.set(kind, { kind, detail, since: at, count: 1 });
    this.metrics?.alarms.inc({ kind });
    this.log.error('alarm', { alarm: true, kind, detail, pauses: ALARMS[kind].pauses, ...fields });
    if (ALARMS[kind].pauses) await this.pause({ kind, detail, at });
  }

  /** The condition behind an alarm is gone (e.g. the next reserve audit matched); a pause it caused stays. */
  clear(kind: AlarmKind): void {
    if (this.#active.delete(kind)) this.log.info('alarm_cleared', { kind });
  }

  /** Stops this member signing; reasons accumulate until an operator resumes. */
  async pause(reason: Omit<PauseReason, 'at'> & { at?: string }): Promise<PauseRecord> {
    const entry: PauseReason = { kind: reason.kind, detail: reason.detail, at: reason.at ?? this.now() };
    const next: PauseRecord = {
      since: this.#paused?.since ?? entry.at,
      reasons: [...(this.#paused?.reasons ?? []), entry].slice(-20),
    };
    await this.store.batch().put(PAUSE_KEY, next).write({ sync: true });
    const was = this.#paused !== null;
    this.#paused = next;
    this.log.warn('member_paused', { kind: entry.kind, detail: entry.detail });
    if (!was) for (const fn of this.#listeners) fn(true);
    return next;
  }

  /** An operator resumes signing; the alarms stay listed until their condition clears. */
  async resume(): Promise<void> {
    if (!this.#paused) return;
    await this.store.batch().del(PAUSE_KEY).write({ sync: true });
    this.#paused = null;
    this.log.warn('member_resumed', {});
    for (const fn of this.#listeners) fn(false);
  }
}

/** Whether the store says this member is paused: what the signer reads inside its exclusive section. */
export async function isPaused(store: Pick<Store, 'get'>): Promise<PauseRecord | undefined> {
  return store.get<PauseRecord>(PAUSE_KEY);
}

/**
 * What the member does when a signature it made fails its own verification (the signing pool's
 * `onSignFault`): it pauses, since a fault attack needs the signer to go on signing.
 */
export function pauseOnSignFault(safety: Safety, log: Logger): (err: Error) => void {
  return (err) =>
    void safety.alarm('sign_fault', err.message).catch((e: Error) => log.error('pause_failed', { error: e }));
}
