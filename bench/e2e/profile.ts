import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { STAGES } from '../../src/metrics/stages.js';

// A member's V8 CPU profile (`node --cpu-prof`, bench:e2e --cpu-prof) summarized: its samples in
// the throughput window, grouped by pipeline stage — each sample goes to the innermost frame of
// its stack that belongs to a stage's home (RULES, mirroring src/metrics/stages.ts) — and the
// functions with the most self time.

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  /** µs on the machine's monotonic clock (the same as process.hrtime's). */
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Groups that are not stages: where the rest of the main thread's samples go. */
const OTHER_GROUPS = [
  'links: ws and TLS outside the timed sections',
  'EVM HTTP client, outside the timed sections',
  'metrics refresh and /metrics scrapes',
  'garbage collector',
  'program (native code outside JS)',
  'idle',
  'other',
] as const;

/** [group, function name, url]: the first rule a frame matches names its group (innermost frame first). */
const RULES: readonly (readonly [string, RegExp, RegExp])[] = [
  ['links_msgpack', /^(send|receive|broadcast)$/, /\/src\/p2p\/network\.js$/],
  ['links_msgpack', /./, /\/src\/p2p\/frames\.js$/],
  ['store_write', /^(put|#write|#withCounters|#apply|write|encode)$/, /\/src\/storage\/store\.js$/],
  ['evm_fetch_decode', /./, /\/src\/evm\/(rpc|bridge)\.js$/],
  ['evm_fetch_decode', /^checkedLogs$/, /\/src\/evm\/observer\.js$/],
  ['decide', /^ingest$/, /\/src\/evm\/observer\.js$/],
  ['decide', /./, /\/src\/evm\/decider\.js$/],
  ['sighash_sign', /^signTransaction$/, /\/src\/signing\/pool\.js$/],
  ['verify', /^verifyTransaction$/, /\/src\/signing\/pool\.js$/],
  ['verify', /^(add|duplicate|verifyFinalizedWitnesses|witnessSignatures)$/, /\/src\/signing\/collector\.js$/],
  ['verify', /^(checkFinalizedBody|onFinalizedFrame)$/, /\/src\/node\/(messages|coordinator)\.js$/],
  ['finalize_record', /^(finalize|assembleWitnesses)$/, /\/src\/signing\/collector\.js$/],
  ['finalize_record', /./, /\/src\/node\/finalize\.js$/],
  ['finalize_record', /^(applyLocally|settleLocally|stageSuperseded)$/, /\/src\/node\/settlement\.js$/],
  ['validation', /./, /\/src\/node\/signer\.js$/],
  ['validation', /./, /\/src\/wallet\/validate\.js$/],
  ['validation', /^(onProposalFrame|onProposal)$/, /\/src\/node\/coordinator\.js$/],
  ['proposal_build', /^(propose|addPayments|merges|spendable)$/, /\/src\/node\/coordinator\.js$/],
  ['proposal_build', /./, /\/src\/wallet\/(payment|coinselect|commitment)\.js$/],
  ['metrics refresh and /metrics scrapes', /./, /(\/src\/api\/|\/prom-client\/|\/src\/node\/member\.js$)/],
  [
    'links: ws and TLS outside the timed sections',
    /./,
    /(\/ws\/lib\/|bufferutil|node:(_tls|tls|net|internal\/stream))/,
  ],
  ['EVM HTTP client, outside the timed sections', /./, /(node:_http_(client|agent|incoming|common)|undici)/],
  ['garbage collector', /^\(garbage collector\)$/, /^$/],
  ['program (native code outside JS)', /^\(program\)$/, /^$/],
  ['idle', /^\(idle\)$/, /^$/],
];

export interface ProfileSummary {
  readonly windowMs: number;
  readonly samples: number;
  /**
   * Samples by group, in the window. Counted, not weighted by the interval before the next one: on a
   * crowded machine that interval is mostly time the process waited for a core.
   */
  readonly groups: { readonly group: string; readonly samples: number }[];
  /** Functions by self samples in the window, with the group of their samples. */
  readonly functions: {
    readonly fn: string;
    readonly where: string;
    readonly group: string;
    readonly samples: number;
  }[];
}

function groupOf(frame: CallFrame): string | undefined {
  return RULES.find(([, fn, url]) => fn.test(frame.functionName) && url.test(frame.url))?.[0];
}

/** Each node's group: its own frame's, or the nearest ancestor's that has one. */
function nodeGroups(profile: CpuProfile): Map<number, string> {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const groups = new Map<number, string>();
  const resolve = (id: number): string => {
    const known = groups.get(id);
    if (known) return known;
    const own = groupOf(byId.get(id)!.callFrame);
    const up = parent.get(id);
    const group = own ?? (up === undefined ? 'other' : resolve(up));
    groups.set(id, group);
    return group;
  };
  for (const n of profile.nodes) resolve(n.id);
  return groups;
}

const where = (f: CallFrame): string =>
  f.url === ''
    ? ''
    : `${f.url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^file:\/\//, '')}:${f.lineNumber + 1}`;

/** The samples between `from` and `to` (µs, monotonic). */
export function summarizeProfile(profile: CpuProfile, window?: { from: number; to: number }): ProfileSummary {
  const groups = nodeGroups(profile);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const from = window?.from ?? profile.startTime;
  const to = window?.to ?? profile.endTime;
  const perGroup = new Map<string, number>();
  const perFn = new Map<string, { fn: string; where: string; group: string; samples: number }>();
  let t = profile.startTime;
  let samples = 0;
  for (const [i, id] of profile.samples.entries()) {
    t += profile.timeDeltas[i] ?? 0;
    if (t < from || t > to) continue;
    samples++;
    const group = groups.get(id) ?? 'other';
    perGroup.set(group, (perGroup.get(group) ?? 0) + 1);
    const frame = byId.get(id)!.callFrame;
    const key = `${frame.functionName}@${frame.url}:${frame.lineNumber}/${group}`;
    const entry = perFn.get(key) ?? { fn: frame.functionName || '(anonymous)', where: where(frame), group, samples: 0 };
    entry.samples++;
    perFn.set(key, entry);
  }
  const order = [...STAGES, ...OTHER_GROUPS] as readonly string[];
  return {
    windowMs: (to - from) / 1000,
    samples,
    groups: [...perGroup]
      .map(([group, n]) => ({ group, samples: n }))
      .sort((a, b) => order.indexOf(a.group) - order.indexOf(b.group)),
    functions: [...perFn.values()].sort((a, b) => b.samples - a.samples),
  };
}

/** The main thread's profile among those `--cpu-prof-dir` holds (thread id 0), with its size. */
export async function mainThreadProfile(dir: string): Promise<{ file: string; bytes: number } | undefined> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f));
  if (files.length === 0) return undefined;
  const file = join(dir, files.sort()[0]!);
  return { file, bytes: (await stat(file)).size };
}

export async function loadProfile(file: string): Promise<CpuProfile> {
  return JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
}

const pct = (n: number, total: number): string => `${((100 * n) / total).toFixed(1)} %`;
const count = (n: number): string => n.toLocaleString('en-US');

/** The summary as Markdown: the groups, then the top functions by self time; `reading` is kept as written. */
export function profileMarkdown(s: ProfileSummary, title: string, note: string, reading: string): string {
  const total = s.groups.reduce((a, g) => a + g.samples, 0);
  const busy = s.groups.filter((g) => g.group !== 'idle').reduce((a, g) => a + g.samples, 0);
  return [
    `# ${title}`,
    '',
    note,
    '',
    `${s.samples.toLocaleString('en-US')} samples over ${(s.windowMs / 1000).toFixed(1)} s; not idle: ${pct(busy, total)}.`,
    '',
    '| group | samples | share of all | share of non-idle |',
    '| --- | ---: | ---: | ---: |',
    ...s.groups.map(
      (g) =>
        `| ${g.group} | ${count(g.samples)} | ${pct(g.samples, total)} | ${g.group === 'idle' ? '' : pct(g.samples, busy)} |`,
    ),
    '',
    'Top functions by self time (non-idle), with the group their samples went to:',
    '',
    '| function | where | group | samples | share of non-idle |',
    '| --- | --- | --- | ---: | ---: |',
    ...s.functions
      .filter((f) => f.group !== 'idle')
      .slice(0, 40)
      .map((f) => `| \`${f.fn}\` | ${f.where} | ${f.group} | ${count(f.samples)} | ${pct(f.samples, busy)} |`),
    '',
    '## Reading',
    '',
    reading,
  ].join('\n');
}
