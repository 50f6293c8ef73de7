import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevnet, type Devnet } from '../../src/devnet/federation.js';
import { sendPegouts } from '../../src/devnet/requests.js';
import { EvmRpc } from '../../src/evm/rpc.js';
import { benchArgs, resultsDir } from './args.js';
import { finalizations, waitFinalized } from './progress.js';
import { STAGES } from '../../src/metrics/stages.js';
import { perRequest, readCpu, summarize, type StageCost } from './stages.js';
import { median } from '../stats.js';

// Does a member's cost per request grow with its history? One federation of member processes pays
// `--blocks` blocks of `--per-block` requests, each block final at once and paid before the next;
// per block: requests/s from final to finalized at every member, process CPU µs per request per
// member (its own counters), by stage too, the members' resident memory, and the CPU time the VM's
// host took (steal): on a shared VM the machine slows down and speeds up with its neighbours, and a
// rise in every stage with the steal is the machine's, where a rise in one stage is the history's.
// Writes bench/results/growth.{json,md}.

const HELP = `npm run bench:growth -- [--blocks B] [--per-block K] [--members N] [--threshold T] [--warmup P | --cold] [--out DIR]
  --blocks B      blocks of requests, each final at once and paid before the next (default 20)
  --per-block K   requests in each block (default 10000)
  --members N, --threshold T   the federation (default 2-of-3)
  --warmup P      before block 1, P % of a block final at once and paid, in no figure (default 200,
                  as bench:e2e): block 1 is then measured with V8's hot code compiled, like the last,
                  so the two differ by the history between them alone
  --cold          no warm-up: block 1 includes the members' compiling their hot code`;

const { values: args, positive } = benchArgs('bench:growth', HELP, {
  blocks: { type: 'string', default: '20' },
  'per-block': { type: 'string', default: '10000' },
  members: { type: 'string', default: '3' },
  threshold: { type: 'string', default: '2' },
  warmup: { type: 'string', default: '200' },
  cold: { type: 'boolean', default: false },
  out: { type: 'string' },
});
const blocks = positive(args.blocks as string, '--blocks');
const perBlock = positive(args['per-block'] as string, '--per-block');
const n = positive(args.members as string, '--members');
const t = positive(args.threshold as string, '--threshold');
const warmup = args.cold === true ? 0 : Math.ceil((perBlock * positive(args.warmup as string, '--warmup')) / 100);
const outDir = resultsDir(args.out);
const PEGOUT_SATS = 1_500_000n;
/** Declared outputs of 2 BTC: every request of the run, its fees, and room to spare. */
const OUTPUT_SATS = 200_000_000;

interface BlockResult {
  readonly block: number;
  readonly paidBefore: number;
  readonly requestsPerSecond: number;
  /** Process CPU per request, mean over the members (µs). */
  readonly cpuUs: number;
  /** The same by stage, mean over the members (µs). */
  readonly stages: StageCost;
  /** CPU time the host took from this VM while the block was paid, % of the VM's (/proc/stat steal). */
  readonly stealPercent: number;
  /** Resident memory after the block, the largest member (MB). */
  readonly rssMb: number;
  /** Where the largest member's memory is after the block (MB), from its /metrics. */
  readonly memory: MemoryReading;
}

const MEMORY_KINDS = ['rss', 'heap_total', 'heap_used', 'external', 'array_buffers'] as const;
const STORE_PARTS = ['memtables', 'tableReaders', 'blockCache'] as const;
type MemoryReading = Record<(typeof MEMORY_KINDS)[number] | (typeof STORE_PARTS)[number], number>;

async function readMemory(member: Devnet['members'][number]): Promise<MemoryReading> {
  const text = await (await fetch(`${member.apiUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const mb = (pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? NaN) / 2 ** 20;
  return Object.fromEntries([
    ...MEMORY_KINDS.map((k) => [k, mb(new RegExp(`^pegout_memory_bytes\\{kind="${k}"\\} (\\S+)$`, 'm'))]),
    ...STORE_PARTS.map((p) => [p, mb(new RegExp(`^pegout_store_memory_bytes\\{part="${p}"\\} (\\S+)$`, 'm'))]),
  ]) as MemoryReading;
}

/** The VM's CPU ticks, all and stolen by the host (Linux /proc/stat). */
async function cpuTicks(): Promise<{ all: number; steal: number }> {
  const line = (await readFile('/proc/stat', 'utf8').catch(() => '')).split('\n')[0] ?? '';
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return { all: ticks.reduce((a, b) => a + b, 0), steal: ticks[7] ?? NaN };
}

async function rssMb(pid: number | undefined): Promise<number> {
  if (pid === undefined) return NaN;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
}

/** Sends `count` requests final in one block and waits until every member holds them finalized. */
async function payBlock(devnet: Devnet, rpc: EvmRpc, count: number, paid: number): Promise<number> {
  const sent = await sendPegouts(rpc, count, PEGOUT_SATS, { inOneBlock: { confirmations: 1, blockSeconds: 1 } });
  await waitFinalized(devnet, paid, (finalized) =>
    process.stderr.write(`\r${finalized}/${paid} in finalized payments at every member   `),
  );
  return sent.finalAt!;
}

async function runBlock(devnet: Devnet, rpc: EvmRpc, block: number): Promise<BlockResult> {
  const before = await Promise.all(devnet.members.map(readCpu));
  const ticks = await cpuTicks();
  const finalAt = await payBlock(devnet, rpc, perBlock, warmup + (block + 1) * perBlock);
  // until the last member's last finalization, by the members' own clocks: not the next scrape
  const seconds = ((await finalizations(devnet, finalAt)).lastFinalizedAt - finalAt) / 1000;
  const after = await Promise.all(devnet.members.map(readCpu));
  const ticksAfter = await cpuTicks();
  const costs = before.map((b, i) => perRequest(b, after[i]!, perBlock));
  const mean = summarize(costs)!.mean;
  const rss = await Promise.all(devnet.members.map((m) => rssMb(m.process?.pid)));
  const largest = devnet.members[rss.indexOf(Math.max(...rss))] ?? devnet.members[0]!;
  return {
    block,
    paidBefore: warmup + block * perBlock,
    requestsPerSecond: perBlock / seconds,
    cpuUs: mean.process,
    stages: mean,
    stealPercent: (100 * (ticksAfter.steal - ticks.steal)) / (ticksAfter.all - ticks.all),
    rssMb: Math.max(...rss),
    memory: await readMemory(largest),
  };
}

function report(results: readonly BlockResult[]): string {
  const [first, last] = [results[0]!, results[results.length - 1]!];
  const change = (a: number, b: number): string => `${(((b - a) / a) * 100).toFixed(1)} %`;
  const rows = results.map(
    (r) =>
      `| ${r.block + 1} | ${r.paidBefore} | ${r.requestsPerSecond.toFixed(0)} | ${r.cpuUs.toFixed(0)} | ${r.rssMb.toFixed(0)} | ${[...MEMORY_KINDS.slice(1), ...STORE_PARTS].map((k) => r.memory[k].toFixed(1)).join(' | ')} |`,
  );
  const within = (a: number, b: number): string => (Math.abs(b - a) / a <= 0.1 ? 'met' : 'missed');
  const ends = Math.min(5, Math.floor(results.length / 2));
  const medians = (f: (r: BlockResult) => number): [number, number] => [
    median(results.slice(0, ends).map(f)),
    median(results.slice(-ends).map(f)),
  ];
  const [rpsFirst, rpsLast] = medians((r) => r.requestsPerSecond);
  const [cpuFirst, cpuLast] = medians((r) => r.cpuUs);
  const us = (x: number): string => (x < 10 ? x.toFixed(1) : x.toFixed(0));
  const stageRows = results.map(
    (r) =>
      `| ${r.block + 1} | ${STAGES.map((s) => us(r.stages.stages[s])).join(' | ')} | ${us(r.stages.mainOther)} | ${us(r.stages.mainThread)} | ${us(r.stages.rocksdb)} | ${us(r.stages.helpers)} | ${us(r.stages.process)} | ${r.stealPercent.toFixed(1)} |`,
  );
  return [
    `Growth run: ${t}-of-${n}, ${blocks} blocks of ${perBlock} requests, each final at once and paid before the next (no Bitcoin Core: declared funding). ${warmup > 0 ? `Warm-up: ${warmup} requests final at once and paid before block 1, in no figure (requests paid before it counts them).` : 'No warm-up (--cold): block 1 includes the members compiling their hot code.'}`,
    '',
    '| block | requests paid before it | requests/s (final → finalized at every member) | process CPU µs per request per member (mean) | RSS MB (largest member) | its V8 heap total | heap used | external | arrayBuffers | RocksDB memtables | table readers | block cache (MB) |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    `First block against the last: requests/s ${first.requestsPerSecond.toFixed(0)} → ${last.requestsPerSecond.toFixed(0)} (${change(first.requestsPerSecond, last.requestsPerSecond)}; target within 10 %: ${within(first.requestsPerSecond, last.requestsPerSecond)}), CPU µs per request ${first.cpuUs.toFixed(0)} → ${last.cpuUs.toFixed(0)} (${change(first.cpuUs, last.cpuUs)}; target within 10 %: ${within(first.cpuUs, last.cpuUs)}), RSS ${first.rssMb.toFixed(0)} → ${last.rssMb.toFixed(0)} MB.`,
    `Medians of the first and the last ${ends} blocks, less moved by one block's neighbours on the host: requests/s ${rpsFirst.toFixed(0)} → ${rpsLast.toFixed(0)} (${change(rpsFirst, rpsLast)}), CPU µs per request ${cpuFirst.toFixed(0)} → ${cpuLast.toFixed(0)} (${change(cpuFirst, cpuLast)}).`,
    '',
    "CPU µs per request per member by stage, each block (mean of the members; sighash_sign and verify include the signing worker), and the CPU time the host took from this VM meanwhile (steal, % of the VM's):",
    '',
    `| block | ${STAGES.join(' | ')} | main thread, outside stages | main thread | RocksDB threads | V8 and libuv threads | process | steal % |`,
    `| ---: | ${STAGES.map(() => '---:').join(' | ')} | ---: | ---: | ---: | ---: | ---: | ---: |`,
    ...stageRows,
    '',
  ].join('\n');
}

const dir = await mkdtemp(join(tmpdir(), 'pegout-growth-'));
const count = Math.ceil(((warmup + blocks * perBlock) * Number(PEGOUT_SATS) * 1.3) / OUTPUT_SATS) + 10;
const devnet = await startDevnet({
  dir,
  members: n,
  threshold: t,
  funding: { count, sats: OUTPUT_SATS },
  slotMs: 2000,
  maxOutputs: 1000,
  workers: 1,
  evmConfirmations: 1,
  // glibc's arena count is an allocator experiment (MALLOC_ARENA_MAX=2 npm run bench:growth)
  ...(process.env.MALLOC_ARENA_MAX ? { memberEnv: { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX } } : {}),
});
const results: BlockResult[] = [];
try {
  const rpc = new EvmRpc(devnet.anvil.url);
  if (warmup > 0) {
    await payBlock(devnet, rpc, warmup, warmup);
    process.stderr.write(`\rwarm-up: ${warmup} requests paid\n`);
  }
  for (let b = 0; b < blocks; b++) {
    results.push(await runBlock(devnet, rpc, b));
    const r = results[results.length - 1]!;
    const breakdown = Object.entries(r.memory)
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(', ');
    process.stderr.write(
      `\rblock ${b + 1}/${blocks}: ${r.requestsPerSecond.toFixed(0)} req/s, ${r.cpuUs.toFixed(0)} µs/request, steal ${r.stealPercent.toFixed(1)} %, RSS ${r.rssMb.toFixed(0)} MB (${breakdown})\n`,
    );
  }
} finally {
  await devnet.stop();
  await rm(dir, { recursive: true, force: true });
}
const md = report(results);
await mkdir(outDir, { recursive: true });
await writeFile(
  join(outDir, 'growth.json'),
  `${JSON.stringify({ t, n, blocks, perBlock, warmup, results }, null, 2)}\n`,
);
await writeFile(join(outDir, 'growth.md'), md);
process.stdout.write(md);
