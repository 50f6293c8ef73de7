// Minimal SVG charts for the benchmark report: bars with labels, nothing else needed to read them.

export interface Bar {
  readonly label: string;
  readonly value: number;
  /** Shown above the bar; defaults to the value. */
  readonly text?: string;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function barChart(title: string, unit: string, bars: readonly Bar[]): string {
  // labels are drawn at −30°: room below for their height and to the left for the first one's width
  const longest = Math.max(0, ...bars.map((b) => b.label.length));
  const left = Math.max(60, Math.ceil(longest * 5.2) - 20);
  const width = Math.max(480, 70 * bars.length + left + 20);
  const top = 50;
  const bottom = Math.max(70, 30 + Math.ceil(longest * 3.2));
  const plot = 200;
  const height = top + plot + bottom;
  const max = Math.max(1e-9, ...bars.map((b) => b.value));
  const step = (width - left - 20) / Math.max(1, bars.length);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<text x="14" y="${top + plot / 2}" transform="rotate(-90 14 ${top + plot / 2})" text-anchor="middle">${esc(unit)}</text>`,
    `<line x1="${left}" y1="${top + plot}" x2="${width - 10}" y2="${top + plot}" stroke="black"/>`,
  ];
  bars.forEach((b, i) => {
    const h = (b.value / max) * plot;
    const x = left + i * step + step * 0.15;
    const w = step * 0.7;
    parts.push(
      `<rect x="${x.toFixed(1)}" y="${(top + plot - h).toFixed(1)}" width="${w.toFixed(1)}" height="${h.toFixed(1)}" fill="#3b6ea8"/>`,
    );
    parts.push(
      `<text x="${(x + w / 2).toFixed(1)}" y="${(top + plot - h - 4).toFixed(1)}" text-anchor="middle">${esc(b.text ?? String(b.value))}</text>`,
    );
    parts.push(
      `<text x="${(x + w / 2).toFixed(1)}" y="${top + plot + 14}" text-anchor="end" transform="rotate(-30 ${(x + w / 2).toFixed(1)} ${top + plot + 14})">${esc(b.label)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** A histogram of `values` in `buckets` equal-width bins. */
export function histogram(title: string, unit: string, values: readonly number[], buckets = 12): string {
  if (values.length === 0) return barChart(title, 'payments', []);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const width = (hi - lo) / buckets || 1;
  const counts = new Array<number>(buckets).fill(0);
  for (const v of values) counts[Math.min(buckets - 1, Math.floor((v - lo) / width))]!++;
  return barChart(
    title,
    'payments',
    counts.map((c, i) => ({
      label: `${(lo + i * width).toFixed(0)}–${(lo + (i + 1) * width).toFixed(0)} ${unit}`,
      value: c,
    })),
  );
}
