import { readdir, readFile } from 'node:fs/promises';
import type { DevnetMember } from '../../src/devnet/federation.js';
import { STAGES, type Stage } from '../../src/metrics/stages.js';

// CPU by pipeline stage, from the counters each member keeps (src/metrics/stages.ts) and exports
// in /metrics: read before and after a run, and turned into µs per request per member.

/** One member's CPU counters at one moment, in seconds. */
export interface CpuReading {
  readonly stages: Record<
    Stage,
    { main: number; worker: number; mainWall: number; workerWall: number; mainCalls: number; workerCalls: number }
  >;
  /** The main thread's CPU (NaN when the member runs without the addon's thread clock). */
  readonly mainThread: number;
  /** The whole process: main thread, workers, RocksDB, V8's helper threads. */
  readonly process: number;
  /** The process's threads other than the main one, from /proc (NaN where there is none): RocksDB's, and the rest. */
  readonly threads: { readonly rocksdb: number; readonly rest: number };
  readonly clock: string;
}

/** µs per request of one member over a run. */
export interface StageCost {
  /** Main thread and worker together, by stage. */
  readonly stages: Record<Stage, number>;
  /** The pool's part of sighash_sign and verify (included in `stages`). */
  readonly worker: { readonly sighash_sign: number; readonly verify: number };
  /** Sum of the stages. */
  readonly total: number;
  /** Elapsed time of the main thread's sections: above their CPU by time preempted or blocked (fsync). */
  readonly mainWall: number;
  readonly storeWriteWall: number;
  readonly mainThread: number;
  /** Main-thread CPU in no timed section: TLS decryption and ws parsing of inbound frames, undici, timers, /metrics. */
  readonly mainOther: number;
  readonly process: number;
  /** RocksDB's own threads (flushes and compactions). */
  readonly rocksdb: number;
  /**
   * Every other thread but the signing worker's timed sections: V8's helper threads (the optimizing
   * compiler; collection runs on the main thread, SHARED_CORE_NODE_FLAGS), libuv's pool, the worker's
   * messaging. While V8 still compiles hot code this is tens of µs; a member warmed up, a few.
   */
  readonly helpers: number;
  /** Main-thread sections timed per request, by stage: each costs about a microsecond of clock reads. */
  readonly sections: Record<Stage, number>;
}

const number = (text: string, pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? NaN);

/** Linux's USER_HZ, the unit of utime and stime in /proc/<pid>/task/<tid>/stat on every architecture. */
const TICKS_PER_SECOND = 100;

/**
 * CPU seconds of `pid`'s threads but the main one, RocksDB's (named rocksdb:high, rocksdb:low) apart;
 * NaN for both without /proc (not Linux), and nothing from a thread that ended between two reads.
 */
async function threadCpu(pid: number | undefined): Promise<CpuReading['threads']> {
  const none = { rocksdb: NaN, rest: NaN };
  if (pid === undefined) return none;
  let tids: string[];
  try {
    tids = await readdir(`/proc/${pid}/task`);
  } catch {
    return none;
  }
  let rocksdb = 0;
  let rest = 0;
  for (const tid of tids) {
    if (tid === String(pid)) continue;
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined) continue;
    // the name is in parentheses and may hold spaces; utime and stime are the 14th and 15th fields
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const seconds = (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
    if (name.startsWith('rocksdb')) rocksdb += seconds;
    else rest += seconds;
  }
  return { rocksdb, rest };
}

export async function readCpu(member: DevnetMember): Promise<CpuReading> {
  const text = await (await fetch(`${member.apiUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const of = (name: string, stage: Stage, thread: string): number =>
    number(text, new RegExp(`^${name}\\{stage="${stage}",thread="${thread}"\\} (\\S+)$`, 'm'));
  const stages = Object.fromEntries(
    STAGES.map((s) => [
      s,
      {
        main: of('pegout_stage_cpu_seconds_total', s, 'main'),
        worker: of('pegout_stage_cpu_seconds_total', s, 'worker'),
        mainWall: of('pegout_stage_wall_seconds_total', s, 'main'),
        workerWall: of('pegout_stage_wall_seconds_total', s, 'worker'),
        mainCalls: of('pegout_stage_calls_total', s, 'main'),
        workerCalls: of('pegout_stage_calls_total', s, 'worker'),
      },
    ]),
  ) as CpuReading['stages'];
  return {
    stages,
    mainThread: number(text, /^pegout_main_thread_cpu_seconds_total (\S+)$/m),
    process: number(text, /^pegout_process_process_cpu_seconds_total (\S+)$/m),
    threads: await threadCpu(member.process?.pid),
    clock: /^pegout_stage_clock_info\{clock="([a-z_]+)"\} 1$/m.exec(text)?.[1] ?? 'unknown',
  };
}

export function perRequest(before: CpuReading, after: CpuReading, requests: number): StageCost {
  const us = (a: number, b: number): number => ((a - b) * 1e6) / requests;
  const d = (s: Stage) => ({
    main: us(after.stages[s].main, before.stages[s].main),
    worker: us(after.stages[s].worker, before.stages[s].worker),
    mainWall: us(after.stages[s].mainWall, before.stages[s].mainWall),
  });
  const stages = Object.fromEntries(STAGES.map((s) => [s, d(s).main + d(s).worker])) as Record<Stage, number>;
  const main = STAGES.reduce((a, s) => a + d(s).main, 0);
  const mainThread = us(after.mainThread, before.mainThread);
  const worker = { sighash_sign: d('sighash_sign').worker, verify: d('verify').worker };
  return {
    stages,
    worker,
    total: STAGES.reduce((a, s) => a + stages[s], 0),
    rocksdb: us(after.threads.rocksdb, before.threads.rocksdb),
    helpers: us(after.threads.rest, before.threads.rest) - worker.sighash_sign - worker.verify,
    mainWall: STAGES.reduce((a, s) => a + d(s).mainWall, 0),
    storeWriteWall: d('store_write').mainWall,
    mainThread,
    mainOther: mainThread - main,
    process: us(after.process, before.process),
    sections: Object.fromEntries(
      STAGES.map((s) => [s, (after.stages[s].mainCalls - before.stages[s].mainCalls) / requests]),
    ) as Record<Stage, number>,
  };
}

/** The mean over members, and the member whose process used the most CPU. */
export function summarize(costs: readonly StageCost[]): { mean: StageCost; busiest: number } | undefined {
  if (costs.length === 0) return undefined;
  const avg = (f: (c: StageCost) => number): number => costs.reduce((a, c) => a + f(c), 0) / costs.length;
  const mean: StageCost = {
    stages: Object.fromEntries(STAGES.map((s) => [s, avg((c) => c.stages[s])])) as Record<Stage, number>,
    worker: { sighash_sign: avg((c) => c.worker.sighash_sign), verify: avg((c) => c.worker.verify) },
    total: avg((c) => c.total),
    rocksdb: avg((c) => c.rocksdb),
    helpers: avg((c) => c.helpers),
    mainWall: avg((c) => c.mainWall),
    storeWriteWall: avg((c) => c.storeWriteWall),
    mainThread: avg((c) => c.mainThread),
    mainOther: avg((c) => c.mainOther),
    process: avg((c) => c.process),
    sections: Object.fromEntries(STAGES.map((s) => [s, avg((c) => c.sections[s])])) as Record<Stage, number>,
  };
  const busiest = costs.reduce((best, c, i) => (c.process > costs[best]!.process ? i : best), 0);
  return { mean, busiest };
}

const fmt = (x: number): string =>
  Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: x < 10 ? 1 : 0 }) : '—';

export const STAGE_TABLE_HEADER = [
  `| configuration | members | ${STAGES.join(' | ')} | all stages | main thread: in stages, wall | store_write wall | main thread, outside stages | main thread | RocksDB threads | V8 and libuv threads | process |`,
  `| --- | --- | ${STAGES.map(() => '---:').join(' | ')} | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
];

function row(name: string, who: string, c: StageCost): string {
  return `| ${name} | ${who} | ${STAGES.map((s) => fmt(c.stages[s])).join(' | ')} | ${fmt(c.total)} | ${fmt(c.mainWall)} | ${fmt(c.storeWriteWall)} | ${fmt(c.mainOther)} | ${fmt(c.mainThread)} | ${fmt(c.rocksdb)} | ${fmt(c.helpers)} | ${fmt(c.process)} |`;
}

/** Two rows per configuration: the mean over members and the busiest member. */
export function stageRows(name: string, costs: readonly StageCost[]): string[] {
  const s = summarize(costs);
  if (!s) return [];
  return [row(name, `mean of ${costs.length}`, s.mean), row(name, `busiest (#${s.busiest + 1})`, costs[s.busiest]!)];
}
