import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDevnet, type Devnet } from '../../src/devnet/federation.js';
import { sendPegouts } from '../../src/devnet/requests.js';
import { EvmRpc } from '../../src/evm/rpc.js';
import { benchArgs, resultsDir } from './args.js';
import { finalizations, waitFinalized, type PaymentSample } from './progress.js';
import { loadProfile, mainThreadProfile, profileMarkdown, summarizeProfile } from './profile.js';
import { perRequest, readCpu, STAGE_TABLE_HEADER, stageRows, type CpuReading, type StageCost } from './stages.js';
import { barChart, histogram } from './svg.js';

// npm run bench:e2e — n member processes on loopback, k requests, each configuration with the
// native addon and with the JS fallback forced. Bounded: every configuration has a deadline,
// every process started is stopped. Writes JSON, a Markdown table and SVG plots.

const HELP = `npm run bench:e2e -- [--requests K] [--only TEXT] [--quick] [--json] [--out DIR] [--timeout SECONDS] [--warmup P | --cold] [--cpu-prof]
  --requests K   requests of each throughput run, all final in one block (default 10000)
  --warmup P     before the measured requests, P % as many final in one block and paid at every
                 member, outside every figure (default 200): a member runs for months, so what it
                 costs per request is measured once V8 has compiled its hot code, not while it does.
                 After 20 %, V8's compiler threads still took 55 µs per request of a 5-of-7 member
                 (the "V8 and libuv threads" column), after 200 % 19
  --cold         no warm-up: the members' first requests are the measured ones
  --only TEXT    run only the configurations whose name contains TEXT
  --quick        a tiny run (2-of-3, few requests) that checks the benchmark works
  --json         no progress display; print the JSON result on stdout
  --out DIR      where results go (default bench/results)
  --timeout S    deadline per configuration (default 600)
  --cpu-prof     a profiling run: member 1 of each throughput configuration under node --cpu-prof
                 (stage counters on the wall clock, see src/metrics/stages.ts); writes only
                 profile-<t>of<n>.md (its samples between final requests and the last
                 finalization, grouped by stage) and the raw .cpuprofile when under 2 MB`;

const { values: args, positive } = benchArgs('bench:e2e', HELP, {
  requests: { type: 'string' },
  only: { type: 'string' },
  quick: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  out: { type: 'string' },
  timeout: { type: 'string', default: '600' },
  warmup: { type: 'string', default: '200' },
  cold: { type: 'boolean', default: false },
  'cpu-prof': { type: 'boolean', default: false },
});
const quick = args.quick === true;
const only = args.only as string | undefined;
const k = positive((args.requests as string | undefined) ?? (quick ? '6' : '10000'), '--requests');
const timeoutMs = positive(args.timeout as string, '--timeout') * 1000;
const outDir = resultsDir(args.out);
const warmupPercent = args.cold === true ? 0 : positive(args.warmup as string, '--warmup');
const PEGOUT_SATS = 1_500_000n;

/**
 * Latency runs send `bursts` bursts of `perBurst` requests, each final in one block, and wait
 * until a burst is paid before the next: one payment round in flight, so a payment's latency is
 * its own, not its place in a queue. Throughput runs send every request in one block.
 */
interface Scenario {
  readonly name: string;
  readonly t: number;
  readonly n: number;
  readonly backend: 'native' | 'js';
  readonly bursts: number;
  readonly perBurst: number;
  /** Value of each declared federation output: small ones make payments of many inputs. */
  readonly outputSats: number;
  readonly maxOutputs: number;
}

const FEDERATIONS = [
  [2, 3],
  [5, 7],
  [11, 15],
] as const;
const BACKENDS = ['native', 'js'] as const;
const requestsOf = (s: Scenario): number => s.bursts * s.perBurst;
/** The warm-up's requests: sent and paid before the measured ones, in no figure. */
const warmupOf = (s: Scenario): number => Math.ceil((requestsOf(s) * warmupPercent) / 100);
const paced = (s: Scenario): boolean => s.bursts > 1;

const scenarios = (
  quick
    ? [
        {
          name: '2-of-3 native',
          t: 2,
          n: 3,
          backend: 'native' as const,
          bursts: 2,
          perBurst: Math.ceil(k / 2),
          outputSats: 1_000_000,
          maxOutputs: 100,
        },
      ]
    : [
        // outputs of 1,000,000 sats against requests of 1,500,000: 60 requests need ~100 inputs
        ...FEDERATIONS.flatMap(([t, n]) =>
          BACKENDS.map((backend): Scenario => ({
            name: `${t}-of-${n} ${backend}, ~100 inputs`,
            t,
            n,
            backend,
            bursts: 12,
            perBurst: 60,
            outputSats: 1_000_000,
            maxOutputs: 100,
          })),
        ),
        // outputs of 60,000 sats: 20 requests need ~500 inputs, the largest payment Bitcoin Core relays
        ...BACKENDS.map((backend): Scenario => ({
          name: `2-of-3 ${backend}, largest payments`,
          t: 2,
          n: 3,
          backend,
          bursts: 4,
          perBurst: 20,
          outputSats: 60_000,
          maxOutputs: 100,
        })),
        // k requests final at once, paid from outputs of 2 BTC in payments of up to 1,000 outputs
        ...FEDERATIONS.map(([t, n]) => ({
          name: `${t}-of-${n} native, ${k} at once`,
          t,
          n,
          backend: 'native' as const,
          bursts: 1,
          perBurst: k,
          outputSats: 200_000_000,
          maxOutputs: 1000,
        })),
        {
          name: `2-of-3 js, ${k} at once`,
          t: 2,
          n: 3,
          backend: 'js' as const,
          bursts: 1,
          perBurst: k,
          outputSats: 200_000_000,
          maxOutputs: 1000,
        },
      ]
).filter((s: Scenario) => only === undefined || s.name.includes(only));
if (scenarios.length === 0) {
  process.stderr.write(`bench:e2e: no configuration's name contains ${JSON.stringify(args.only)}\n`);
  process.exit(2);
}

interface Result {
  readonly scenario: Scenario;
  readonly ok: boolean;
  readonly error?: string;
  readonly requestsPerSecond: number;
  readonly requestsPerSecondFromFinal: number;
  readonly payments: number;
  readonly inputsPerPayment: { readonly mean: number; readonly max: number };
  readonly outputsPerPayment: { readonly mean: number; readonly max: number };
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /**
   * The least the first finalization takes at the raw libsecp256k1 rates: t members sign every input
   * and verify each signature before it leaves (src/signing/schnorr.ts, selfChecking), n members
   * sharing the cores, and one member verifies t − 1 sets on its one signing worker.
   */
  readonly lowerBoundMs: number;
  readonly p50OverBound: number;
  /**
   * Every member's share of the payment's curve operations on the cores (each signs and checks every
   * input and verifies t − 1 sets): the bound of earlier rounds, when every member verified before the first
   * finalization. A member now verifies another's payment after its proposer (src/node/coordinator.ts,
   * track), so this is no longer a bound on the first finalization; shown for comparison.
   */
  readonly everyMemberMs: number;
  readonly members: readonly { readonly cpuSeconds: number; readonly peakRssMb: number }[];
  /** Each member's CPU by stage over the run, µs per request (src/metrics/stages.ts). */
  readonly cpu: readonly StageCost[];
  readonly stageClock: string;
  readonly samples: readonly PaymentSample[];
}

const quantile = (sorted: readonly number[], q: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
const mean = (xs: readonly number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, x) => a + x, 0) / xs.length);

function progress(text: string): void {
  if (!args.json) process.stderr.write(`\r\x1b[K${text}`);
}

/** Raw libsecp256k1 sign and verify rates on this machine, from the signing benchmark. */
async function rawRates(): Promise<{ sign: number; verify: number; workers: { label: string; value: number }[] }> {
  const path = fileURLToPath(new URL('../../../bench/results/signing.json', import.meta.url));
  const json = JSON.parse(await readFile(path, 'utf8')) as {
    rows: { group: string; name: string; opsPerSec: number }[];
  };
  const raw = (group: string): number =>
    json.rows.find((r) => r.group === group && r.name.startsWith('raw libsecp256k1'))?.opsPerSec ?? NaN;
  return {
    sign: raw('sign'),
    verify: raw('verify'),
    workers: json.rows
      .filter((r) => r.group === 'pool')
      .map((r) => ({ label: r.name.split(':')[0]!, value: Math.round(r.opsPerSec) })),
  };
}

/** CPU seconds and peak RSS of a process, from /proc (Linux). */
async function usage(pid: number | undefined): Promise<{ cpuSeconds: number; peakRssMb: number }> {
  if (pid === undefined) return { cpuSeconds: NaN, peakRssMb: NaN };
  try {
    const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    const ticks = Number(stat[11]) + Number(stat[12]);
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
    return { cpuSeconds: ticks / 100, peakRssMb: hwm / 1024 };
  } catch {
    return { cpuSeconds: NaN, peakRssMb: NaN };
  }
}

/** Waits until every member holds `count` requests in finalized payments; reports progress from `started`. */
async function waitPaid(devnet: Devnet, s: Scenario, count: number, started: number, deadline: number): Promise<void> {
  const total = warmupOf(s) + requestsOf(s);
  await waitFinalized(devnet, count, (paid) => {
    progress(
      `${s.name}: in finalized payments at every member ${paid}/${total}, ${(paid / ((Date.now() - started) / 1000)).toFixed(0)} req/s`,
    );
    if (paid < count && Date.now() > deadline)
      throw new Error(`deadline: ${paid}/${total} paid after ${timeoutMs / 1000} s`);
  });
}

/** Monotonic µs, the clock of V8's CPU profiles. */
const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);
/** The monotonic µs of a Date.now() moment in the recent past. */
const monotonicOf = (dateMs: number): number => monotonicUs() - (Date.now() - dateMs) * 1000;

const profiled = (s: Scenario): boolean => args['cpu-prof'] === true && !paced(s);
const profileName = (s: Scenario): string => `profile-${s.t}of${s.n}`;

/**
 * Sends the warm-up, paid before anything is measured, then the bursts, each paid before the next; the members' CPU
 * counters around the bursts; when the last became final.
 */
async function drive(
  devnet: Devnet,
  s: Scenario,
  deadline: number,
): Promise<{ started: number; finalAt: number; finalMono: number; before: CpuReading[]; after: CpuReading[] }> {
  const rpc = new EvmRpc(devnet.anvil.url);
  const burst = async (label: string, count: number): Promise<number> => {
    progress(`${s.name}: sending ${label}`);
    const sent = await sendPegouts(rpc, count, PEGOUT_SATS, {
      inOneBlock: { confirmations: 1, blockSeconds: 1 },
      onSent: (x) => progress(`${s.name}: ${label}: sent ${x}/${count}`),
    });
    return sent.finalAt!;
  };
  const warm = warmupOf(s);
  if (warm > 0) {
    await burst('warm-up', warm);
    await waitPaid(devnet, s, warm, Date.now(), deadline);
  }
  const before = await Promise.all(devnet.members.map(readCpu));
  const started = Date.now();
  let finalAt = started;
  let finalMono = monotonicUs();
  for (let b = 0; b < s.bursts; b++) {
    finalAt = await burst(`burst ${b + 1}/${s.bursts}`, s.perBurst);
    finalMono = monotonicOf(finalAt);
    await waitPaid(devnet, s, warm + (b + 1) * s.perBurst, started, deadline);
  }
  const after = await Promise.all(devnet.members.map(readCpu));
  return { started, finalAt, finalMono, before, after };
}

/**
 * Member 1's main-thread profile summarized over [from, to] (µs, monotonic) into profile-<t>of<n>.md, keeping the
 * Reading written there before; the raw profile beside it when under 2 MB.
 */
async function writeProfile(s: Scenario, profileDir: string, window: { from: number; to: number }): Promise<void> {
  const found = await mainThreadProfile(profileDir);
  if (!found) throw new Error(`no main-thread profile in ${profileDir}`);
  const summary = summarizeProfile(await loadProfile(found.file), window);
  await mkdir(outDir, { recursive: true });
  const md = join(outDir, `${profileName(s)}.md`);
  const old = await readFile(md, 'utf8').catch(() => '');
  const reading = old.includes('## Reading\n') ? old.slice(old.indexOf('## Reading\n') + 12).trim() : '(to be written)';
  const raw = found.bytes <= 2 * 1024 * 1024;
  if (raw) await copyFile(found.file, join(outDir, `${profileName(s)}.cpuprofile`));
  const note = [
    `Member 1 of the ${s.name} run (\`npm run bench:e2e -- --cpu-prof\`), main thread, \`node --cpu-prof\` (V8's sampling profiler, a sample a millisecond while the process runs; shares are of samples, not weighted by the gaps between them, which on a crowded machine are mostly waits for a core):`,
    'the samples from the block that made the requests final to the last finalization at any member.',
    `Each sample goes to the innermost frame of its stack that belongs to a stage's home (bench/e2e/profile.ts, RULES); the raw profile (${(found.bytes / 1e6).toFixed(1)} MB) is ${raw ? `${profileName(s)}.cpuprofile` : 'not kept (over 2 MB)'}.`,
  ].join(' ');
  await writeFile(md, `${profileMarkdown(summary, `CPU profile: one member, ${s.name}`, note, reading)}\n`);
}

async function run(s: Scenario, rates: { sign: number; verify: number }): Promise<Result> {
  const dir = await mkdtemp(join(tmpdir(), 'pegout-bench-'));
  const requests = requestsOf(s);
  const count = Math.ceil(((warmupOf(s) + requests) * Number(PEGOUT_SATS) * 1.3) / s.outputSats) + 10;
  const profileDir = join(dir, 'cpu-prof');
  let devnet: Devnet | undefined;
  const deadline = Date.now() + timeoutMs;
  try {
    devnet = await startDevnet({
      dir,
      members: s.n,
      threshold: s.t,
      funding: { count, sats: s.outputSats },
      slotMs: 2000,
      maxOutputs: s.maxOutputs,
      workers: 1,
      evmConfirmations: 1,
      memberEnv: { PEGOUT_SECP256K1: s.backend, ...(profiled(s) ? { PEGOUT_STAGE_CLOCK: 'wall' } : {}) },
      ...(profiled(s)
        ? { nodeArgs: (i: number) => (i === 0 ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []) }
        : {}),
    });
    const { started, finalAt, finalMono, before, after } = await drive(devnet, s, deadline);
    const members = await Promise.all(devnet.members.map((m) => usage(m.process?.pid)));
    await devnet.stop();
    const { payments: list, lastFinalizedAt: done } = await finalizations(devnet, started);
    if (profiled(s)) await writeProfile(s, profileDir, { from: finalMono, to: monotonicOf(done) });
    const latencies = list.map((x) => x.latencyMs).sort((a, b) => a - b);
    const inputs = list.map((x) => x.inputs);
    const meanInputs = mean(inputs);
    const setMs = (meanInputs / rates.verify) * 1000;
    // a set signed and checked before it leaves
    const signMs = (meanInputs / rates.sign) * 1000 + setMs;
    // one member's part: its set signed, t − 1 verified one after another on its worker
    const perMemberMs = signMs + (s.t - 1) * setMs;
    // the first finalizer's part, and all the work before it (t members sign) on the cores
    const lowerBoundMs = Math.max(perMemberMs, (s.t * signMs + (s.t - 1) * setMs) / cpus().length);
    // every member's part on the cores
    const everyMemberMs = Math.max(perMemberMs, (perMemberMs * s.n) / cpus().length);
    const p50 = quantile(latencies, 0.5);
    return {
      scenario: s,
      ok: true,
      payments: list.length,
      requestsPerSecond: requests / ((done - started) / 1000),
      // a burst run's last burst; for a one-block run, all of it
      requestsPerSecondFromFinal: s.perBurst / ((done - finalAt) / 1000),
      inputsPerPayment: { mean: meanInputs, max: Math.max(0, ...inputs) },
      outputsPerPayment: { mean: mean(list.map((x) => x.outputs)), max: Math.max(0, ...list.map((x) => x.outputs)) },
      latencyMs: { p50, p99: quantile(latencies, 0.99), max: latencies.at(-1) ?? 0 },
      lowerBoundMs,
      p50OverBound: p50 / lowerBoundMs,
      everyMemberMs,
      members,
      cpu: before.map((b, i) => perRequest(b, after[i]!, requests)),
      stageClock: after[0]?.clock ?? 'unknown',
      samples: list,
    };
  } catch (err) {
    await devnet?.stop();
    return failed(s, err as Error);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function failed(s: Scenario, err: Error): Result {
  return {
    scenario: s,
    ok: false,
    error: err.message,
    requestsPerSecond: 0,
    requestsPerSecondFromFinal: 0,
    payments: 0,
    inputsPerPayment: { mean: 0, max: 0 },
    outputsPerPayment: { mean: 0, max: 0 },
    latencyMs: { p50: 0, p99: 0, max: 0 },
    lowerBoundMs: 0,
    p50OverBound: 0,
    everyMemberMs: 0,
    members: [],
    cpu: [],
    stageClock: 'unknown',
    samples: [],
  };
}

const rates = await rawRates();
const results: Result[] = [];
for (const s of scenarios) results.push(await run(s, rates));
progress('');
if (args['cpu-prof']) {
  // a profiling run: the profiler slows the member it samples, so its figures are not the benchmark's
  for (const r of results)
    process.stderr.write(`${r.scenario.name}: ${r.ok ? `profile in ${outDir}` : `failed: ${r.error}`}\n`);
  process.exit(results.every((r) => r.ok) ? 0 : 1);
}

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
};
const fmt = (x: number, d = 0): string =>
  Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '—';
const rows = results.map((r) =>
  r.ok
    ? `| ${r.scenario.name} | ${requestsOf(r.scenario)} | ${r.payments} | ${fmt(r.inputsPerPayment.mean, 1)} (max ${r.inputsPerPayment.max}) | ${fmt(r.outputsPerPayment.mean, 1)} | ${paced(r.scenario) ? 'paced' : `${fmt(r.requestsPerSecond, 0)} / ${fmt(r.requestsPerSecondFromFinal, 0)}`} | ${fmt(r.latencyMs.p50)} / ${fmt(r.latencyMs.p99)} / ${fmt(r.latencyMs.max)} | ${fmt(r.lowerBoundMs, 1)} | ${fmt(r.p50OverBound, 1)}× | ${fmt(Math.max(...r.members.map((m) => m.cpuSeconds)), 1)} / ${fmt(Math.max(...r.members.map((m) => m.peakRssMb)))} |`
    : `| ${r.scenario.name} | ${requestsOf(r.scenario)} | failed: ${r.error} | | | | | | | |`,
);

/** SPEC §5's targets against what this run measured. */
function targets(): string[] {
  const latency = results.find(
    (r) => r.ok && r.scenario.t === 5 && r.scenario.n === 7 && r.scenario.backend === 'native' && paced(r.scenario),
  );
  const bulk = results.filter((r) => r.ok && !paced(r.scenario) && requestsOf(r.scenario) >= 10_000);
  const out: string[] = [];
  if (latency)
    out.push(
      `- 5-of-7, ${fmt(latency.inputsPerPayment.mean, 0)}-input payments: p50 ${fmt(latency.latencyMs.p50)} ms = ${fmt(latency.p50OverBound, 1)}× the lower bound of the first finalization, ${fmt(latency.lowerBoundMs, 1)} ms (target ≤ 2×): **${latency.p50OverBound <= 2 ? 'met' : 'missed'}**; ${fmt(latency.latencyMs.p50 / latency.everyMemberMs, 1)}× every member's share of the payment's curve operations on the cores, ${fmt(latency.everyMemberMs, 1)} ms (the bound of earlier rounds, which the first finalization no longer waits for)`,
    );
  for (const r of bulk)
    out.push(
      `- ${r.scenario.name}: ${fmt(r.requestsPerSecondFromFinal, 0)} requests/s from final requests to finalized payments (target ≥ 1,000): **${r.requestsPerSecondFromFinal >= 1000 ? 'met' : 'missed'}**`,
    );
  return out.length > 0 ? ['', 'Targets:', ...out] : [];
}

const markdown = [
  `End-to-end on ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; members are separate processes on loopback with one signing worker each, no Bitcoin Core (declared funding; finalized = t valid signatures on every input, checked by every member). Raw libsecp256k1 on this machine: ${fmt(rates.sign)} signs/s, ${fmt(rates.verify)} verifies/s.`,
  '',
  '| configuration | requests | payments | inputs/payment | outputs/payment | requests/s: from first sent / from final | latency ms p50 / p99 / max | lower bound ms | p50 ÷ bound | per member: max CPU s / peak RSS MB |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows,
  '',
  'Latency: proposal sent → first member holding t verified signature sets; "paced" runs send bursts that are each final in one block, one payment round in flight. Throughput ("at once" runs): every request is final in one block (anvil mining paused while they are sent); from the first request sent, or from the block that made them final, to every request in a finalized payment at every member. Lower bound: of the first finalization, at the raw libsecp256k1 rates: t members sign every input and verify each signature before it leaves, n members sharing the cores, and the first finalizer verifies t−1 sets one after another on its signing worker (a member verifies another\'s payment once its proposer announced it, or a quarter slot later).',
  warmupPercent > 0
    ? `Warm-up: before the measured requests, ${warmupPercent} % as many were final in one block and paid at every member; they are in no figure but the members' CPU s and peak RSS, which cover each process's life.`
    : "No warm-up (--cold): the measured requests are each member's first.",
  ...targets(),
  '',
  `CPU µs per request per member, by stage (clock: ${results.find((r) => r.ok)?.stageClock ?? '—'}), from each member's own counters (\`pegout_stage_cpu_seconds_total\` in /metrics) read before the first request was sent and after the last was paid: the mean over the members, and the member whose process used the most CPU. sighash_sign and verify include the signing worker's CPU. What each figure measures and its error: the section after the table.`,
  '',
  ...STAGE_TABLE_HEADER,
  ...results.flatMap((r) => stageRows(r.scenario.name, r.cpu)),
].join('\n');

const json = {
  machine,
  quick,
  warmupPercent,
  rawRates: { sign: rates.sign, verify: rates.verify },
  results: results.map(({ samples: s, ...rest }) => ({ ...rest, latenciesMs: s.map((x) => x.latencyMs) })),
};
await mkdir(outDir, { recursive: true });
await writeFile(join(outDir, 'e2e.json'), `${JSON.stringify(json, null, 2)}\n`);
await writeFile(join(outDir, 'e2e.md'), `${markdown}\n`);
if (args.out === undefined) {
  // bench/results/README.md shows the latest default run between its e2e markers
  const readme = join(outDir, 'README.md');
  const text = await readFile(readme, 'utf8');
  const [open, close] = ['<!-- e2e -->\n', '\n<!-- /e2e -->'];
  const [from, to] = [text.indexOf(open), text.indexOf(close)];
  if (from >= 0 && to > from)
    await writeFile(readme, `${text.slice(0, from + open.length)}${markdown}${text.slice(to)}`);
}
const ok = results.filter((r) => r.ok);
const shown =
  ok.find((r) => r.scenario.t === 5 && r.scenario.backend === 'native' && paced(r.scenario)) ??
  ok.reduce<Result | undefined>((a, r) => (!a || r.samples.length > a.samples.length ? r : a), undefined);
await writeFile(
  join(outDir, 'e2e-latency.svg'),
  histogram(
    `Proposal → finalized, ${shown?.scenario.name ?? 'no run'}`,
    'ms',
    shown?.samples.map((x) => x.latencyMs) ?? [],
  ),
);
await writeFile(
  join(outDir, 'e2e-throughput.svg'),
  barChart(
    'Requests per second from final to finalized, by federation',
    'requests/s',
    ok
      .filter((r) => !paced(r.scenario))
      .map((r) => ({
        label: `${r.scenario.t}-of-${r.scenario.n} ${r.scenario.backend}`,
        value: r.requestsPerSecondFromFinal,
        text: fmt(r.requestsPerSecondFromFinal, 0),
      })),
  ),
);
await writeFile(
  join(outDir, 'e2e-workers.svg'),
  barChart('Worker scaling: sighash + sign, 1000-input tx', 'signatures/s', rates.workers),
);
if (args.json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
else process.stdout.write(`${markdown}\n\nwritten to ${outDir}\n`);
process.exit(results.every((r) => r.ok) ? 0 : 1);
