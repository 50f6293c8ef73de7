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
  /** Main-thread sections timed per request, by stage: each costs about a microsecond of clock reads. */
  readonly sections: Record<Stage, number>;
}

const number = (text: string, pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? NaN);

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
  return {
    stages,
    worker: { sighash_sign: d('sighash_sign').worker, verify: d('verify').worker },
    total: STAGES.reduce((a, s) => a + stages[s], 0),
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
  `| configuration | members | ${STAGES.join(' | ')} | all stages | main thread: in stages, wall | store_write wall | main thread, outside stages | main thread | process |`,
  `| --- | --- | ${STAGES.map(() => '---:').join(' | ')} | ---: | ---: | ---: | ---: | ---: | ---: |`,
];

function row(name: string, who: string, c: StageCost): string {
  return `| ${name} | ${who} | ${STAGES.map((s) => fmt(c.stages[s])).join(' | ')} | ${fmt(c.total)} | ${fmt(c.mainWall)} | ${fmt(c.storeWriteWall)} | ${fmt(c.mainOther)} | ${fmt(c.mainThread)} | ${fmt(c.process)} |`;
}

/** Two rows per configuration: the mean over members and the busiest member. */
export function stageRows(name: string, costs: readonly StageCost[]): string[] {
  const s = summarize(costs);
  if (!s) return [];
  return [row(name, `mean of ${costs.length}`, s.mean), row(name, `busiest (#${s.busiest + 1})`, costs[s.busiest]!)];
}
