// Shared by the status pages. Every value shown comes from the member's API, and some of it from
// strangers (an address is whatever bytes a user sent), so the DOM is only ever built from nodes
// and text nodes here: nothing is parsed as HTML, and no character that moves or hides text is shown
// as itself.

/**
 * Direction controls, zero-width characters and C0/C1 controls: a right-to-left override before an
 * address written backwards would show another address, and turn the rest of its line around.
 */
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/gu;

/** `text` with each character that moves or hides text written as its code point, `[U+202E]`. */
export function visible(text) {
  return text.replace(INVISIBLE, (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}]`);
}

/** An element with attributes and children; a string child is text, never markup, and visible(). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(typeof child === 'string' || typeof child === 'number' ? visible(String(child)) : child);
  }
  return node;
}

/** Replaces the children of the element with this id; a string child as el() takes it. */
export function fill(id, ...children) {
  const nodes = children.flat().filter((c) => c !== undefined && c !== null);
  document.getElementById(id).replaceChildren(...nodes.map((c) => (typeof c === 'string' ? visible(c) : c)));
}

/** GET a JSON path of this member: { status, body }, body null when the answer was not JSON. */
export async function getJson(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' });
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON (an older member without this path answers 404 JSON; anything else is shown as missing)
  }
  return { status: res.status, body };
}

export function btc(sats) {
  const s = BigInt(sats);
  // a shortfall is negative; the digits are those of its magnitude
  const m = s < 0n ? -s : s;
  const frac = (m % 100_000_000n).toString().padStart(8, '0');
  return `${s < 0n ? '−' : ''}${m / 100_000_000n}.${frac} BTC`;
}

export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** A definition list from [term, description] pairs; pairs with an undefined description are left out. */
export function facts(pairs) {
  return el(
    'dl',
    { class: 'facts' },
    pairs.filter(([, d]) => d !== undefined && d !== null).flatMap(([t, d]) => [el('dt', {}, t), el('dd', {}, d)]),
  );
}

/** A table from a header row and rows of cells (strings or nodes). */
export function table(head, rows, empty = 'none') {
  if (rows.length === 0) return el('p', { class: 'empty' }, empty);
  return el(
    'table',
    {},
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        head.map((h) => el('th', {}, h)),
      ),
    ),
    el(
      'tbody',
      {},
      rows.map((r) =>
        el(
          'tr',
          {},
          r.map((c) => el('td', {}, c)),
        ),
      ),
    ),
  );
}

/** Text in a monospace span that wraps anywhere (hashes, addresses). */
export function code(text) {
  return el('code', {}, String(text));
}

/** Runs `load` now and every `ms`; a failure is shown in the element with id `statusId` and retried. */
export function poll(load, ms, statusId) {
  let timer;
  const run = async () => {
    clearTimeout(timer);
    try {
      await load();
      fill(statusId, `updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      fill(statusId, `cannot reach this member: ${err.message}`);
    }
    timer = setTimeout(run, ms);
  };
  run();
  return run;
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = visible(String(text));
  return node;
}

/**
 * A line chart of `points` (objects with `at` and numeric fields) as inline SVG: one line per
 * series `{ key, label }`, a y axis from 0 to the largest value, the latest value of each series.
 */
export function lineChart(points, series, unit) {
  const width = 480;
  const height = 160;
  const pad = { left: 44, right: 10, top: 10, bottom: 22 };
  const values = points.flatMap((p) => series.map((s) => p[s.key]).filter((v) => typeof v === 'number'));
  const top = Math.max(1, ...values);
  const x = (i) => pad.left + (points.length < 2 ? 0 : (i / (points.length - 1)) * (width - pad.left - pad.right));
  const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img' });
  chart.append(svg('title', {}, `${series.map((s) => s.label).join(', ')} (${unit})`));
  chart.append(svg('line', { x1: pad.left, y1: y(0), x2: width - pad.right, y2: y(0), class: 'axis' }));
  chart.append(svg('line', { x1: pad.left, y1: pad.top, x2: pad.left, y2: y(0), class: 'axis' }));
  chart.append(svg('text', { x: pad.left - 4, y: pad.top + 8, class: 'tick', 'text-anchor': 'end' }, fmt(top)));
  chart.append(svg('text', { x: pad.left - 4, y: y(0), class: 'tick', 'text-anchor': 'end' }, '0'));
  const span = points.length > 1 ? `${when(points[0].at)} – ${when(points[points.length - 1].at)}` : 'no samples yet';
  chart.append(svg('text', { x: pad.left, y: height - 6, class: 'tick' }, span));
  series.forEach((s, n) => {
    const at = points.flatMap((p, i) => (typeof p[s.key] === 'number' ? [[x(i), y(p[s.key])]] : []));
    chart.append(
      svg('polyline', {
        points: at.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' '),
        class: `series s${n}`,
      }),
    );
    // a dot per sample, so that a lone sample (latency between idle intervals) shows too
    for (const [a, b] of at)
      chart.append(svg('circle', { cx: a.toFixed(1), cy: b.toFixed(1), r: 2.5, class: `dot s${n}` }));
  });
  const legend = el(
    'ul',
    { class: 'legend' },
    series.map((s, n) => {
      const last = [...points].reverse().find((p) => typeof p[s.key] === 'number');
      return el('li', { class: `s${n}` }, `${s.label}: ${last ? fmt(last[s.key]) : '–'} ${unit}`);
    }),
  );
  return el('figure', {}, chart, legend);
}

function fmt(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}
