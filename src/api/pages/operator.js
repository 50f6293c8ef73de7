// The operators' page: the federation, its members' links, requests, payments, signing activity,
// alarms and pause state, from /overview and /health (and /reserves where the member has it).
// Fields a member does not report yet (pause, alarms, reserves) are left out, never an error.
import { btc, code, el, facts, fill, getJson, lineChart, poll, table, when } from './common.js';

/** A field of /health, at its top level or among its components. */
function healthField(health, name) {
  if (health?.[name] !== undefined) return health[name];
  return health?.components?.[name];
}

function text(value) {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function renderState(health) {
  const paused = healthField(health, 'paused');
  const bitcoin = healthField(health, 'bitcoin');
  const pause =
    paused === undefined
      ? null
      : paused === null
        ? el('p', { class: 'ok' }, 'Signing: running (not paused)')
        : el(
            'p',
            { class: 'alarm' },
            `Signing PAUSED since ${when(paused.since)}: ${(paused.reasons ?? []).map(text).join('; ') || 'no reason given'}`,
          );
  fill(
    'state',
    el('p', { class: health?.ok ? 'ok' : 'alarm' }, `Health: ${health?.ok ? 'ok' : 'NOT OK'}`),
    pause,
    bitcoin === undefined ? null : el('p', {}, `Bitcoin Core: ${text(bitcoin)}`),
  );
}

function renderFederation(f) {
  const tolerance = f.faultTolerance ?? {};
  fill(
    'federation',
    facts([
      ['Address', code(f.address)],
      ['Descriptor', code(f.descriptor)],
      ['Network', f.network],
      ['Threshold', `${f.threshold} of ${f.members.length} (t of n)`],
      ['Tolerates', tolerance.statement ?? `f = ${tolerance.safety}`],
      ['Balance', `${btc(f.balance.unspentSats)} in ${f.balance.unspentOutputs} outputs`],
      ['Reserved', `${btc(f.balance.reservedSats)} in ${f.balance.reservedOutputs} outputs`],
    ]),
  );
}

function renderMembers(members) {
  const up = members.filter((m) => m.link === 'self' || m.link === 'connected').length;
  fill(
    'members',
    el('p', {}, `${up} of ${members.length} reachable from this member`),
    table(
      ['member (x-only key)', 'link'],
      members.map((m) => [
        code(m.key),
        el('span', { class: `link ${m.link}` }, m.link === 'self' ? 'this member' : m.link),
      ]),
    ),
  );
}

function renderCounts(id, counts, label, empty) {
  const rows = Object.entries(counts ?? {})
    .filter(([, n]) => n > 0)
    .map(([name, n]) => [name, String(n)]);
  fill(id, table([label, 'count'], rows, empty));
}

function renderPayments(payments) {
  fill(
    'payments',
    table(
      ['finalized', 'txid', 'requests', 'signatures', 'fee rate', 'confirmations', 'broadcast'],
      payments.map((p) => [
        when(p.at),
        el('a', { href: `/#q=${encodeURIComponent(p.txid)}` }, code(p.txid)),
        String(p.requests),
        p.signatures,
        p.feeRate === undefined ? '' : `${p.feeRate} sat/vB`,
        String(p.confirmations),
        p.broadcast ? 'yes' : (p.lastBroadcast ?? 'no'),
      ]),
      'no payment finalized yet',
    ),
  );
}

function renderActivity(points) {
  fill(
    'throughput',
    lineChart(
      points,
      [
        { key: 'signaturesPerSecond', label: 'input signatures' },
        { key: 'requestsPerSecond', label: 'requests finalized' },
      ],
      'per second',
    ),
  );
  fill('latency', lineChart(points, [{ key: 'signingMs', label: 'proposal to signatures sent, mean' }], 'ms'));
}

function renderReserves(answer) {
  const section = document.getElementById('reserves-section');
  section.hidden = answer.status !== 200 || answer.body === null || typeof answer.body !== 'object';
  if (section.hidden) return;
  const r = answer.body;
  const core = r.core.compared
    ? `${btc(r.core.sats)} in ${r.core.outputs} outputs at block ${r.core.height}; differences: ${r.core.differences.onlyInCore} only in Core, ${r.core.differences.onlyHere} only here, ${r.core.differences.otherValue} of another value`
    : `not compared: ${r.core.reason}`;
  fill(
    'reserves',
    facts([
      ['Verdict', r.verdict],
      ['Assets', `${btc(r.assets.sats)} in ${r.assets.outputs} confirmed outputs`],
      ['Owed', `${btc(r.liabilities.sats)} to ${r.liabilities.requests} requests`],
      ['Surplus', btc(r.surplus)],
      ['Settling', `${btc(r.settling.sats)} to ${r.settling.requests} requests (payment in a block)`],
      ['Peg-ins − paid', btc(r.ledger.pegInsMinusPaid)],
      ['Bitcoin Core', core],
      ['Faults', r.faults.length === 0 ? 'none' : r.faults.map((f) => `${f.kind}: ${f.message}`).join('; ')],
      ['At block', r.member ? String(r.member.height) : 'none yet'],
    ]),
  );
}

async function load() {
  const [overview, health, reserves] = await Promise.all([
    getJson('/overview'),
    getJson('/health'),
    getJson('/reserves'),
  ]);
  if (overview.status !== 200) throw new Error(`/overview answered ${overview.status}`);
  const o = overview.body;
  renderState(health.body);
  renderFederation(o.federation);
  renderMembers(o.members);
  renderCounts('requests', o.requests, 'status', 'no requests yet');
  renderCounts('alarms', healthField(health.body, 'alarms'), 'kind', 'none');
  renderPayments(o.recentPayments);
  renderActivity(o.activity);
  renderReserves(reserves);
}

poll(load, 5000, 'status');
