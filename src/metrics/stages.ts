import { Counter, Gauge, type Registry } from 'prom-client';
import { loadThreadCpuClock } from '../signing/native.js';

// Per-stage CPU accounting, always on: where a member's CPU goes, stage by stage, from counters it
// keeps itself and exports in /metrics (pegout_stage_cpu_seconds_total{stage,thread}). Each stage
// is timed at its one home (the table below); bench/results/README.md says what each figure
// measures and how far off it can be.
//
// | stage            | main thread                                                     | worker      |
// |------------------|-----------------------------------------------------------------|-------------|
// | evm_fetch_decode | JSON of the EVM node's answers (src/evm/rpc.ts), the bridge     |             |
// |                  | logs' ABI decoding (src/evm/observer.ts)                        |             |
// | decide           | each new request: the duplicate check, decideRequest, its       |             |
// |                  | records staged (observer.ts)                                    |             |
// | store_write      | msgpack encoding of every staged value, counters resolved, the  |             |
// |                  | RocksDB batch built and handed over (src/storage/store.ts)      |             |
// | proposal_build   | the proposer's pending requests, spendable outputs, payments    |             |
// |                  | built, merges (src/node/coordinator.ts)                         |             |
// | validation       | a peer's proposal parsed and checked at the edge, the signer's  |             |
// |                  | state read, validateProposal, reservations and the record of    |             |
// |                  | what it signed (src/node/coordinator.ts, signer.ts)             |             |
// | sighash_sign     | BIP341 per-transaction hashes, tasks handed to the pool         | sighashes + |
// |                  | (src/signing/pool.ts)                                           | signing     |
// | verify           | the same for verification, collector checks, a peer's finalized | sighashes + |
// |                  | payment parsed and its witnesses split (collector.ts, pool.ts)  | verifying   |
// | finalize_record  | witnesses assembled, the finalized payment recorded and applied |             |
// |                  | (coordinator.ts, src/node/finalize.ts, settlement.ts)           |             |
// | links_msgpack    | frames encoded and written (ws framing, TLS encryption), frames |             |
// |                  | read: decoded and checked (src/p2p/network.ts)                  |             |
//
// Sections nest: an inner stage's time is not counted in the outer one (a validation's store
// writes are store_write), so the stages of one thread never add up to more than its CPU. The CPU
// clock is read when the outermost section opens and closes; nested ones share its CPU out by
// their wall time (see enter()).

export const STAGES = [
  'evm_fetch_decode',
  'decide',
  'store_write',
  'proposal_build',
  'validation',
  'sighash_sign',
  'verify',
  'finalize_record',
  'links_msgpack',
] as const;
export type Stage = (typeof STAGES)[number];

const cpuClock = loadThreadCpuClock();
/**
 * PEGOUT_STAGE_CLOCK=wall times sections on the wall clock even with the addon: for a member
 * under a sampling profiler, which on a crowded machine over-samples code that makes system calls
 * (the thread CPU clock is one), so that the profile does not show the counters' own clock.
 */
const threadCpu = process.env.PEGOUT_STAGE_CLOCK === 'wall' ? undefined : cpuClock;
/**
 * What the counters measure: 'thread_cpu' is the CPU time of the thread that ran the section
 * (clock_gettime(CLOCK_THREAD_CPUTIME_ID) through the addon), which waiting in a crowded run
 * queue does not inflate; 'wall' (no addon, or PEGOUT_STAGE_CLOCK=wall) is elapsed time, which it does.
 */
export const STAGE_CLOCK: 'thread_cpu' | 'wall' = threadCpu ? 'thread_cpu' : 'wall';
/** Nanoseconds on STAGE_CLOCK; a system call, under a microsecond, with the addon. */
export const clockNs: () => number = threadCpu ?? (() => performance.now() * 1e6);

/** Wall-clock nanoseconds, beside the CPU clock: their difference is time a section spent off the CPU. */
const wallNs = (): number => performance.now() * 1e6;

const INDEX = new Map<Stage, number>(STAGES.map((s, i) => [s, i]));
const mainNs = new Float64Array(STAGES.length);
const mainWallNs = new Float64Array(STAGES.length);
const mainCalls = new Float64Array(STAGES.length);
const workerNs = new Float64Array(STAGES.length);
const workerWallNs = new Float64Array(STAGES.length);
const workerCalls = new Float64Array(STAGES.length);
/** Stages of the sections open on this thread, innermost last. */
const open: number[] = [];
/** The CPU clock when the outermost open section opened. */
let cpuMark = 0;
/** The wall clock at the last time a section opened or closed. */
let wallMark = 0;
/** Wall time of each stage since the outermost open section opened: how its CPU is shared out. */
const pendingWall = new Float64Array(STAGES.length);

/** Wall time since the last switch, to the innermost open section. */
function chargeWall(): void {
  const wall = wallNs();
  const top = open[open.length - 1];
  if (top !== undefined) pendingWall[top] = pendingWall[top]! + (wall - wallMark);
  wallMark = wall;
}

/** The outermost section closed: its CPU shared out by the wall time each stage had in it. */
function settle(): void {
  const cpu = clockNs() - cpuMark;
  let wall = 0;
  for (const w of pendingWall) wall += w;
  for (let i = 0; i < STAGES.length; i++) {
    const w = pendingWall[i]!;
    if (w === 0) continue;
    mainNs[i] = mainNs[i]! + (wall > 0 ? (cpu * w) / wall : cpu);
    mainWallNs[i] = mainWallNs[i]! + w;
    pendingWall[i] = 0;
  }
}

/**
 * Opens a section of `stage`; `leave` closes it. For the hottest paths (a store put), where a
 * closure per call would cost more than the clock: everywhere else, time() and timeAsync().
 *
 * The CPU clock (a system call) is read when the outermost section opens and closes; inside it,
 * nested sections (store puts, mostly) read only the wall clock, and each stage gets the share of
 * the outermost section's CPU that its wall time had. A preemption lands in any part of a section
 * in proportion to its length, so the shares are right on average, at a tenth of the cost.
 */
export function enter(stage: Stage): number {
  const i = INDEX.get(stage)!;
  if (open.length === 0) {
    cpuMark = clockNs();
    wallMark = wallNs();
  } else chargeWall();
  open.push(i);
  mainCalls[i] = mainCalls[i]! + 1;
  return i;
}

/** Closes the section enter() opened (its return value). */
export function leave(i: number): void {
  chargeWall();
  // normally the last one; after an interleaving (see timeAsync) it may sit lower
  const at = open.lastIndexOf(i);
  if (at >= 0) open.splice(at, 1);
  if (open.length === 0) settle();
}

/** Runs synchronous `fn` as a section of `stage`. */
export function time<T>(stage: Stage, fn: () => T): T {
  const i = enter(stage);
  try {
    return fn();
  } finally {
    leave(i);
  }
}

/**
 * Runs `fn` as a section of `stage`. Only for code that awaits nothing but promises already
 * settled (the store's synchronous reads): never I/O, a timer, the pool or a lock, since whatever
 * else the thread did during such a wait would be charged to this stage. Another chain's
 * microtasks that slip in between its awaits are charged to it; time is never counted twice.
 */
export async function timeAsync<T>(stage: Stage, fn: () => Promise<T>): Promise<T> {
  const i = enter(stage);
  try {
    return await fn();
  } finally {
    leave(i);
  }
}

/** What a worker measured for one task: CPU and wall nanoseconds on its own thread. */
export interface TaskTime {
  readonly ns: number;
  readonly wallNs: number;
}

/** In a worker: runs `fn` and returns its result with the time it took on this thread. */
export function measure<T>(fn: () => T): { value: T } & TaskTime {
  const from = clockNs();
  const wallFrom = wallNs();
  const value = fn();
  return { value, ns: clockNs() - from, wallNs: wallNs() - wallFrom };
}

/** Adds what a worker measured for a task of `stage` (measure()). */
export function addWorkerTime(stage: Stage, time: TaskTime): void {
  const i = INDEX.get(stage)!;
  workerNs[i] = workerNs[i]! + time.ns;
  workerWallNs[i] = workerWallNs[i]! + time.wallNs;
  workerCalls[i] = workerCalls[i]! + 1;
}

export interface StageFigure {
  readonly stage: Stage;
  readonly thread: 'main' | 'worker';
  /** On STAGE_CLOCK. */
  readonly seconds: number;
  readonly wallSeconds: number;
  readonly calls: number;
}

/** Every counter of this process (sections still open are not counted until the outermost one closes). */
export function stageFigures(): StageFigure[] {
  return STAGES.flatMap((stage, i) => [
    {
      stage,
      thread: 'main' as const,
      seconds: mainNs[i]! / 1e9,
      wallSeconds: mainWallNs[i]! / 1e9,
      calls: mainCalls[i]!,
    },
    {
      stage,
      thread: 'worker' as const,
      seconds: workerNs[i]! / 1e9,
      wallSeconds: workerWallNs[i]! / 1e9,
      calls: workerCalls[i]!,
    },
  ]);
}

/**
 * The stage counters on `registry`, read when scraped. They are per process: members sharing a
 * process (tests) share them.
 */
export function registerStageMetrics(registry: Registry): void {
  const registers = [registry];
  const labelNames = ['stage', 'thread'] as const;
  const set = (counter: Counter<'stage' | 'thread'>, value: (f: StageFigure) => number): void => {
    counter.reset();
    for (const f of stageFigures()) counter.inc({ stage: f.stage, thread: f.thread }, value(f));
  };
  new Counter({
    name: 'pegout_stage_cpu_seconds_total',
    help: `CPU seconds by pipeline stage and thread (clock: ${STAGE_CLOCK}; see src/metrics/stages.ts)`,
    labelNames,
    registers,
    collect() {
      set(this, (f) => f.seconds);
    },
  });
  new Counter({
    name: 'pegout_stage_wall_seconds_total',
    help: 'Elapsed seconds in the same sections: above the CPU figure by the time they were preempted or blocked (fsync)',
    labelNames,
    registers,
    collect() {
      set(this, (f) => f.wallSeconds);
    },
  });
  new Counter({
    name: 'pegout_stage_calls_total',
    help: 'Timed sections by pipeline stage and thread (worker: pool tasks)',
    labelNames,
    registers,
    collect() {
      set(this, (f) => f.calls);
    },
  });
  if (cpuClock) {
    new Counter({
      name: 'pegout_main_thread_cpu_seconds_total',
      help: 'CPU seconds of the main thread (the stages of thread "main" are parts of it)',
      registers,
      collect() {
        this.reset();
        this.inc(cpuClock() / 1e9);
      },
    });
  }
  new Gauge({
    name: 'pegout_stage_clock_info',
    help: 'The clock of the stage counters: thread_cpu, or wall without the native addon',
    labelNames: ['clock'] as const,
    registers,
  }).set({ clock: STAGE_CLOCK }, 1);
}
