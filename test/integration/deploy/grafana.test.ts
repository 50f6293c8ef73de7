import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { federationOfProcesses } from '../../support/federation.js';
import { repoRoot } from '../../support/paths.js';

// The Grafana dashboard asks only for metrics a member exports: every metric name in every
// panel's query is checked against the /metrics of a real member process.

interface Panel {
  readonly title: string;
  readonly targets?: readonly { readonly expr: string }[];
}

/** Every series name /metrics can show: each `# TYPE` line, with a histogram's and summary's derived series. */
function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const [, name, type] of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(`${name}${suffix}`);
  }
  return names;
}

/** Our metric names in a PromQL query: all start with pegout_ (labels, functions and keywords never do). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bpegout_[a-zA-Z0-9_:]*/g)].map((m) => m[0]);
}

describe('the Grafana dashboard', () => {
  it("queries only metrics a member's /metrics exports", async (t) => {
    const dashboard = JSON.parse(await readFile(path.join(repoRoot, 'deploy', 'grafana', 'pegout.json'), 'utf8')) as {
      panels: Panel[];
      templating: { list: { definition?: string }[] };
    };
    const devnet = await federationOfProcesses(t, { members: 1, threshold: 1 });
    const exported = exportedNames(await (await fetch(`${devnet.members[0]!.apiUrl}/metrics`)).text());
    assert.ok(exported.has('pegout_requests'), 'the member exports its metrics');
    const queries = [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((target) => ({ title: p.title, expr: target.expr }))),
      ...dashboard.templating.list.flatMap((v) => (v.definition ? [{ title: 'variable', expr: v.definition }] : [])),
    ];
    assert.ok(queries.length >= 10);
    for (const { title, expr } of queries) {
      const names = metricNames(expr);
      assert.ok(names.length > 0, `panel "${title}" queries a metric of ours: ${expr}`);
      for (const name of names) assert.ok(exported.has(name), `panel "${title}" queries ${name}, which /metrics lacks`);
    }
    // requests by status, payment latency, signatures, peers, fee rate, balance, alarms
    const all = queries.map((q) => q.expr).join('\n');
    for (const wanted of [
      'pegout_requests',
      'pegout_payment_seconds_bucket',
      'pegout_signatures_made_total',
      'pegout_peers_connected',
      'pegout_fee_rate_sat_per_vb',
      'pegout_balance_sats',
      'pegout_alarms_total',
    ])
      assert.ok(all.includes(wanted), `the dashboard shows ${wanted}`);

    const scrape = await readFile(path.join(repoRoot, 'deploy', 'prometheus', 'prometheus.yml'), 'utf8');
    assert.match(scrape, /^\s+metrics_path: \/metrics$/m);
    assert.match(scrape, /^\s+- job_name: pegout$/m);
  });
});
