import { clockNs } from '../../src/metrics/stages.js';

// The phases of a round as bench:member and bench:store time them and print them, one line a round.

export interface Phase {
  /** Main-thread CPU µs per request (the stage clock). */
  readonly mainUs: number;
  /** The whole process's CPU µs per request: the signing worker, RocksDB's and V8's threads too. */
  readonly processUs: number;
}

/** `fn` timed, per request of `count`. */
export async function timed(count: number, fn: () => Promise<void>): Promise<Phase> {
  const start = clockNs();
  const cpu = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(cpu);
  return { mainUs: (clockNs() - start) / 1000 / count, processUs: (used.user + used.system) / count };
}

/** A round's `figure` over its phases. */
export function total<P extends string>(result: Readonly<Record<P, Phase>>, figure: keyof Phase): number {
  return (Object.values(result) as Phase[]).reduce((a, p) => a + p[figure], 0);
}

/** Round `n`'s line: each phase's main-thread µs a request, their sum and the process's. */
export function roundLine<P extends string>(n: number, result: Readonly<Record<P, Phase>>): string {
  const phases = (Object.entries(result) as [string, Phase][]).map(([p, f]) => `${p} ${f.mainUs.toFixed(1)}`);
  return `round ${n}: main thread µs/request ${phases.join(', ')}; all ${total(result, 'mainUs').toFixed(1)}; process ${total(result, 'processUs').toFixed(1)}\n`;
}
