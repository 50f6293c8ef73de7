// The users' page: one lookup (the member classifies what was pasted), each request as a
// timeline, refreshed every few seconds. The query lives in the URL (#q=…) so a link can be shared.
import { btc, code, el, facts, fill, getJson, poll, table, when } from './common.js';

const PAGE = 20;
const MAX = 100;
const STEP_NAMES = {
  requested: 'Requested',
  final: 'Final on the sidechain',
  batched: 'Batched',
  signatures: 'Signatures',
  broadcast: 'Broadcast',
  confirmations: 'Confirmations',
  paid: 'Paid',
};

let query = '';
// the page grows by PAGE requests at a time and refreshes all it shows (the API's cursor pages are for scripts)
let shown = PAGE;

function timelineOf(p) {
  return el(
    'ol',
    { class: 'timeline' },
    p.timeline.map((s) =>
      el(
        'li',
        { class: s.state, 'data-step': s.step },
        el('span', { class: 'step' }, STEP_NAMES[s.step] ?? s.step),
        el('span', { class: 'text' }, s.text),
        s.at ? el('time', { datetime: s.at }, when(s.at)) : null,
      ),
    ),
  );
}

function paymentState(pay) {
  const parts = [];
  if (pay.replaces.length > 0) parts.push(`replaces ${pay.replaces.join(', ')}`);
  if (pay.supersededBy) parts.push(`superseded by ${pay.supersededBy}`);
  if (pay.lastBroadcast) parts.push(`last broadcast: ${pay.lastBroadcast}`);
  return parts.join('; ');
}

function paymentsOf(p) {
  if (p.payments.length === 0) return null;
  return el(
    'div',
    { class: 'payments' },
    el('h3', {}, p.payments.length > 1 ? 'Bitcoin payments (replacements)' : 'Bitcoin payment'),
    table(
      ['txid', 'signatures', 'confirmations', 'fee rate', ''],
      p.payments.map((pay) => [
        code(pay.txid),
        pay.signatures,
        String(pay.confirmations),
        pay.feeRate === undefined ? '' : `${pay.feeRate} sat/vB`,
        paymentState(pay),
      ]),
    ),
  );
}

function card(p) {
  return el(
    'article',
    { class: `pegout ${p.status}`, 'data-id': p.id },
    el('h2', {}, el('span', { class: 'badge' }, p.status), ' ', btc(p.sats), ' to ', code(p.bitcoinAddress)),
    el('p', { class: 'says' }, p.says),
    timelineOf(p),
    paymentsOf(p),
    el(
      'details',
      {},
      el('summary', {}, 'Details'),
      facts([
        ['Request', code(p.id)],
        ['From', code(p.evmAddress)],
        ['To', code(p.bitcoinAddress)],
        ['Amount', `${btc(p.sats)} (${p.sats} sats, before its share of the fee)`],
        ['EVM block', String(p.block)],
        ['Reason', p.reason],
        ['Detail', p.detail],
      ]),
      table(
        ['status', 'at', 'detail'],
        p.history.map((h) => [h.status, when(h.at), h.detail ?? '']),
      ),
    ),
  );
}

function summaryOf(body) {
  const pay = body.payment;
  if (!pay) return [];
  return el(
    'article',
    { class: 'payment' },
    el('h2', {}, 'Bitcoin payment ', code(pay.txid)),
    facts([
      ['Requests paid', String(pay.requests)],
      ['Signatures', pay.signatures],
      ['Confirmations', String(pay.confirmations)],
      ['Fee rate', pay.feeRate === undefined ? undefined : `${pay.feeRate} sat/vB`],
      ['Replaces', pay.replaces.length > 0 ? pay.replaces.join(', ') : undefined],
      ['Replaced by', pay.replacedBy.length > 0 ? pay.replacedBy.join(', ') : undefined],
    ]),
  );
}

async function load() {
  const asked = query;
  if (!asked) return;
  const { status, body } = await getJson(`/pegouts?q=${encodeURIComponent(asked)}&limit=${Math.min(shown, MAX)}`);
  // a slower answer to an earlier query must not replace the answer to the latest one
  if (asked !== query) return;
  if (status === 404) {
    fill('summary');
    fill('results', el('p', { class: 'empty' }, 'This member knows no payment with that txid.'));
    return;
  }
  if (status !== 200) {
    fill('results', el('p', { class: 'error' }, `The member refused the query: ${body?.expected ?? status}`));
    return;
  }
  fill('summary', summaryOf(body));
  fill(
    'results',
    body.pegouts.length === 0
      ? el('p', { class: 'empty' }, 'No peg-out request found. Requests appear once final on the sidechain.')
      : body.pegouts.map(card),
  );
  document.getElementById('more').hidden = body.next === null || shown >= MAX;
}

const refresh = poll(load, 5000, 'status');

function search(text) {
  query = text.trim();
  shown = PAGE;
  document.getElementById('q').value = query;
  refresh();
}

document.getElementById('search').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = document.getElementById('q').value;
  history.replaceState(null, '', `#q=${encodeURIComponent(text.trim())}`);
  search(text);
});
document.getElementById('more').addEventListener('click', () => {
  shown += PAGE;
  refresh();
});
const fromUrl = new URLSearchParams(location.hash.slice(1)).get('q');
if (fromUrl) search(fromUrl);
