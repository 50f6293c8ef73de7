import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { requestCounts, startDevnet, type Devnet } from '../../src/devnet/federation.js';
import { sendPegouts } from '../../src/devnet/requests.js';
import { EvmRpc } from '../../src/evm/rpc.js';
import { barChart, histogram } from './svg.js';

// npm run bench:e2e — n member processes on loopback, k requests, each configuration with the
// native addon and with the JS fallback forced. Bounded: every configuration has a deadline,
// every process started is stopped. Writes JSON, a Markdown table and SVG plots.

const HELP = `npm run bench:e2e -- [--requests K] [--quick] [--json] [--out DIR] [--timeout SECONDS]
  --requests K   requests per configuration (default 2000)
  --quick        a tiny run (2-of-3, few requests) that checks the benchmark works
  --json         no progress display; print the JSON result on stdout
  --out DIR      where results go (default bench/results)
  --timeout S    deadline per configuration (default 600)`;

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string' },
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
    timeout: { type: 'string', default: '600' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}
const positive = (text: string, name: string): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`bench:e2e: ${name} is ${JSON.stringify(text)}; expected a positive integer\n`);
    process.exit(2);
  }
  return n;
};
const quick = args.quick;
const k = positive(args.requests ?? (quick ? '6' : '2000'), '--requests');
const timeoutMs = positive(args.timeout, '--timeout') * 1000;
const outDir = args.out ?? fileURLToPath(new URL('../../../bench/results/', import.meta.url));
const PEGOUT_SATS = 1_500_000n;

interface Scenario {
  readonly name: string;
  readonly t: number;
  readonly n: number;
  readonly backend: 'native' | 'js';
  readonly requests: number;
  /** Value of each declared federation output: small ones make payments of many inputs. */
  readonly outputSats: number;
  readonly maxOutputs: number;
}

const scenarios: Scenario[] = quick
  ? [{ name: '2-of-3 native', t: 2, n: 3, backend: 'native', requests: k, outputSats: 1_000_000, maxOutputs: 100 }]
  : [
      ...([[2, 3], [5, 7], [11, 15]] as const).flatMap(([t, n]) =>
        (['native', 'js'] as const).map((backend) => ({ name: `${t}-of-${n} ${backend}`, t, n, backend, requests: k, outputSats: 1_000_000, maxOutputs: 100 })),
      ),
      // outputs of 60,000 sats: 40 requests need ~1,000 inputs; the 400,000 WU standardness
      // limit splits that into the largest payments Bitcoin Core would relay
      ...(['native', 'js'] as const).map((backend) => ({ name: `2-of-3 ${backend}, largest payments`, t: 2, n: 3, backend, requests: 40, outputSats: 60_000, maxOutputs: 100 })),
    ];

interface PaymentSample {
  readonly txid: string;
  readonly inputs: number;
  readonly outputs: number;
  readonly latencyMs: number;
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
  readonly lowerBoundMs: number;
  readonly p50OverBound: number;
  readonly members: readonly { readonly cpuSeconds: number; readonly peakRssMb: number }[];
  readonly samples: readonly PaymentSample[];
}

const quantile = (sorted: readonly number[], q: number): number => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!);
const mean = (xs: readonly number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, x) => a + x, 0) / xs.length);

function progress(text: string): void {
  if (!args.json) process.stderr.write(`\r\x1b[K${text}`);
}

/** Raw libsecp256k1 sign and verify rates on this machine, from the signing benchmark. */
async function rawRates(): Promise<{ sign: number; verify: number; workers: { label: string; value: number }[] }> {
  const path = fileURLToPath(new URL('../../../bench/results/signing.json', import.meta.url));
  const json = JSON.parse(await readFile(path, 'utf8')) as { rows: { group: string; name: string; opsPerSec: number }[] };
  const raw = (group: string): number => json.rows.find((r) => r.group === group && r.name.startsWith('raw libsecp256k1'))?.opsPerSec ?? NaN;
  return { sign: raw('sign'), verify: raw('verify'), workers: json.rows.filter((r) => r.group === 'pool').map((r) => ({ label: r.name.split(':')[0]!, value: Math.round(r.opsPerSec) })) };
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

/** Proposal → first finalization, per payment, from the members' JSON logs. */
async function samples(devnet: Devnet): Promise<PaymentSample[]> {
  const proposed = new Map<string, { at: number; inputs: number; outputs: number }>();
  const finalized = new Map<string, number>();
  for (const m of devnet.members) {
    for (const line of (await readFile(m.logFile, 'utf8')).split('\n')) {
      if (!line.startsWith('{')) continue;
      const e = JSON.parse(line) as { ts: string; event: string; txid?: string; inputs?: number; requests?: number };
      if (!e.txid) continue;
      const at = Date.parse(e.ts);
      if (e.event === 'proposed') proposed.set(e.txid, { at, inputs: e.inputs ?? 0, outputs: e.requests ?? 0 });
      if (e.event === 'finalized') finalized.set(e.txid, Math.min(finalized.get(e.txid) ?? Infinity, at));
    }
  }
  return [...proposed].flatMap(([txid, p]) => (finalized.has(txid) ? [{ txid, inputs: p.inputs, outputs: p.outputs, latencyMs: finalized.get(txid)! - p.at }] : []));
}

async function run(s: Scenario, rates: { sign: number; verify: number }): Promise<Result> {
  const dir = await mkdtemp(join(tmpdir(), 'pegout-bench-'));
  const count = Math.ceil((s.requests * Number(PEGOUT_SATS) * 1.3) / s.outputSats) + 10;
  let devnet: Devnet | undefined;
  const deadline = Date.now() + timeoutMs;
  try {
    devnet = await startDevnet({
      dir, members: s.n, threshold: s.t, funding: { count, sats: s.outputSats }, slotMs: 2000, maxOutputs: s.maxOutputs, workers: 1, evmConfirmations: 1,
      memberEnv: { PEGOUT_SECP256K1: s.backend },
    });
    const started = Date.now();
    progress(`${s.name}: sending ${s.requests} requests`);
    await sendPegouts(new EvmRpc(devnet.anvil.url), s.requests, PEGOUT_SATS, { onSent: (x) => progress(`${s.name}: sent ${x}/${s.requests}`) });
    const finalAt = Date.now();
    for (;;) {
      const counts = await Promise.all(devnet.members.map((m) => requestCounts(m).catch(() => ({}) as Record<string, number>)));
      const paid = Math.min(...counts.map((c) => c.signed ?? 0));
      progress(`${s.name}: sent ${s.requests}, in finalized payments at every member ${paid}/${s.requests}, ${(paid / ((Date.now() - started) / 1000)).toFixed(0)} req/s`);
      if (paid === s.requests) break;
      if (Date.now() > deadline) throw new Error(`deadline: ${paid}/${s.requests} paid after ${timeoutMs / 1000} s`);
      await sleep(100);
    }
    const done = Date.now();
    const members = await Promise.all(devnet.members.map((m) => usage(m.process?.pid)));
    await devnet.stop();
    const list = await samples(devnet);
    const latencies = list.map((x) => x.latencyMs).sort((a, b) => a - b);
    const inputs = list.map((x) => x.inputs);
    // each member signs every input once and verifies t−1 sets; n members share the cores
    const meanInputs = mean(inputs);
    const perMemberMs = meanInputs * (1 / rates.sign + (s.t - 1) / rates.verify) * 1000;
    const lowerBoundMs = Math.max(perMemberMs, (perMemberMs * s.n) / cpus().length);
    const p50 = quantile(latencies, 0.5);
    return {
      scenario: s, ok: true, payments: list.length,
      requestsPerSecond: s.requests / ((done - started) / 1000),
      requestsPerSecondFromFinal: s.requests / ((done - finalAt) / 1000),
      inputsPerPayment: { mean: meanInputs, max: Math.max(0, ...inputs) },
      outputsPerPayment: { mean: mean(list.map((x) => x.outputs)), max: Math.max(0, ...list.map((x) => x.outputs)) },
      latencyMs: { p50, p99: quantile(latencies, 0.99), max: latencies.at(-1) ?? 0 },
      lowerBoundMs, p50OverBound: p50 / lowerBoundMs, members, samples: list,
    };
  } catch (err) {
    await devnet?.stop();
    return { scenario: s, ok: false, error: (err as Error).message, requestsPerSecond: 0, requestsPerSecondFromFinal: 0, payments: 0, inputsPerPayment: { mean: 0, max: 0 }, outputsPerPayment: { mean: 0, max: 0 }, latencyMs: { p50: 0, p99: 0, max: 0 }, lowerBoundMs: 0, p50OverBound: 0, members: [], samples: [] };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const rates = await rawRates();
const results: Result[] = [];
for (const s of scenarios) results.push(await run(s, rates));
progress('');

const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, platform: `${process.platform}-${process.arch}` };
const fmt = (x: number, d = 0): string => (Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '—');
const rows = results.map((r) =>
  r.ok
    ? `| ${r.scenario.name} | ${r.scenario.requests} | ${r.payments} | ${fmt(r.inputsPerPayment.mean, 1)} (max ${r.inputsPerPayment.max}) | ${fmt(r.outputsPerPayment.mean, 1)} | ${fmt(r.requestsPerSecond, 1)} / ${fmt(r.requestsPerSecondFromFinal, 1)} | ${fmt(r.latencyMs.p50)} / ${fmt(r.latencyMs.p99)} / ${fmt(r.latencyMs.max)} | ${fmt(r.lowerBoundMs, 1)} | ${fmt(r.p50OverBound, 1)}× | ${fmt(Math.max(...r.members.map((m) => m.cpuSeconds)), 1)} / ${fmt(Math.max(...r.members.map((m) => m.peakRssMb)))} |`
    : `| ${r.scenario.name} | ${r.scenario.requests} | failed: ${r.error} | | | | | | | |`,
);
const markdown = [
  `End-to-end on ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; members are separate processes on loopback with one signing worker each, no Bitcoin Core (declared funding; finalized = t valid signatures on every input, checked by every member). Raw libsecp256k1 on this machine: ${fmt(rates.sign)} signs/s, ${fmt(rates.verify)} verifies/s.`,
  '',
  '| configuration | requests | payments | inputs/payment | outputs/payment | requests/s: from first sent / from all mined | latency ms p50 / p99 / max | lower bound ms | p50 ÷ bound | per member: max CPU s / peak RSS MB |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows,
  '',
  'Latency: proposal sent → first member holding t verified signature sets. Throughput: first request sent (or: every request mined) → every request in a finalized payment at every member; anvil mines a block a second and members wait one confirmation. Lower bound: each member signs every input once and verifies t−1 sets at the raw libsecp256k1 rates, n members sharing the cores.',
].join('\n');

const json = { machine, quick, rawRates: { sign: rates.sign, verify: rates.verify }, results: results.map(({ samples: s, ...rest }) => ({ ...rest, latenciesMs: s.map((x) => x.latencyMs) })) };
await mkdir(outDir, { recursive: true });
await writeFile(join(outDir, 'e2e.json'), `${JSON.stringify(json, null, 2)}\n`);
await writeFile(join(outDir, 'e2e.md'), `${markdown}\n`);
const ok = results.filter((r) => r.ok);
const largest = ok.reduce<Result | undefined>((a, r) => (!a || r.samples.length > a.samples.length ? r : a), undefined);
await writeFile(join(outDir, 'e2e-latency.svg'), histogram(`Proposal → finalized, ${largest?.scenario.name ?? 'no run'}`, 'ms', largest?.samples.map((x) => x.latencyMs) ?? []));
await writeFile(join(outDir, 'e2e-throughput.svg'), barChart('Requests per second by federation', 'requests/s', ok.filter((r) => !r.scenario.name.includes('largest')).map((r) => ({ label: r.scenario.name, value: r.requestsPerSecond, text: fmt(r.requestsPerSecond, 0) }))));
await writeFile(join(outDir, 'e2e-workers.svg'), barChart('Worker scaling: sighash + sign, 1000-input tx', 'signatures/s', rates.workers));
if (args.json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
else process.stdout.write(`${markdown}\n\nwritten to ${outDir}\n`);
process.exit(results.every((r) => r.ok) ? 0 : 1);
