// `mailproxy stats --svg`: refusals by reason over time as an SVG line chart (what Haraka's old graph
// plugin drew), one line per check and reason. Pure: the same series always give the same bytes.
import type { TimeSeries } from './aggregate';

const WIDTH = 960;
const HEIGHT = 420;
const MARGIN = { top: 40, right: 260, bottom: 60, left: 60 };
/** Okabe–Ito: told apart by colour-blind readers too. */
const COLOURS = ['#E69F00', '#56B4E9', '#009E73', '#D55E00', '#0072B2', '#CC79A7', '#F0E442', '#000000'];

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (char) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[char] as string);
}

/** A round step for the y axis with at most ~5 ticks. */
function yStep(max: number): number {
  const raw = Math.max(1, max) / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= raw) as number;
  return Math.max(1, step);
}

function label(ms: number, bucketMs: number): string {
  const iso = new Date(ms).toISOString();
  return bucketMs >= 86400_000 ? iso.slice(0, 10) : `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
}

function duration(ms: number): string {
  const minutes = ms / 60_000;
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 1440) return `${minutes / 60} h`;
  return `${minutes / 1440} d`;
}

export function renderChart(data: TimeSeries, title = 'refused sessions by check and reason'): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const max = Math.max(0, ...data.series.flatMap((series) => series.counts));
  const step = yStep(max);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const x = (i: number) => MARGIN.left + (data.buckets <= 1 ? plotW / 2 : (i * plotW) / (data.buckets - 1));
  const y = (count: number) => MARGIN.top + plotH - (count * plotH) / top;
  const fmt = (n: number) => (Math.round(n * 10) / 10).toString();
  const out: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${MARGIN.left}" y="24" font-size="15">${escapeXml(`${title}, per ${duration(data.bucketMs)} (UTC)`)}</text>`,
    '<g class="axes" stroke="#888888" stroke-width="1">',
    `<line x1="${MARGIN.left}" y1="${MARGIN.top + plotH}" x2="${MARGIN.left + plotW}" y2="${MARGIN.top + plotH}"/>`,
    `<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${MARGIN.top + plotH}"/>`,
    '</g>',
    '<g class="y-ticks" fill="#444444" text-anchor="end">',
  ];
  for (let value = 0; value <= top; value += step) {
    out.push(`<line x1="${MARGIN.left}" y1="${fmt(y(value))}" x2="${MARGIN.left + plotW}" y2="${fmt(y(value))}" stroke="#eeeeee"/>`);
    out.push(`<text x="${MARGIN.left - 6}" y="${fmt(y(value) + 4)}">${value}</text>`);
  }
  out.push('</g>', '<g class="x-ticks" fill="#444444" text-anchor="middle">');
  const every = Math.max(1, Math.ceil(data.buckets / 8));
  for (let i = 0; i < data.buckets; i += every) {
    out.push(`<text x="${fmt(x(i))}" y="${MARGIN.top + plotH + 18}">${escapeXml(label(data.start + i * data.bucketMs, data.bucketMs))}</text>`);
  }
  out.push('</g>');
  if (data.series.length === 0) {
    out.push(`<text x="${MARGIN.left + plotW / 2}" y="${MARGIN.top + plotH / 2}" text-anchor="middle" fill="#444444">no refusals in this period</text>`);
  }
  data.series.forEach((series, index) => {
    const colour = COLOURS[index % COLOURS.length] as string;
    const points = series.counts.map((count, i) => `${fmt(x(i))},${fmt(y(count))}`).join(' ');
    const total = series.counts.reduce((sum, count) => sum + count, 0);
    out.push(`<g class="series" data-series="${escapeXml(series.name)}" data-total="${total}">`);
    out.push(`<title>${escapeXml(`${series.name}: ${total}`)}</title>`);
    if (series.counts.length === 1) out.push(`<circle cx="${fmt(x(0))}" cy="${fmt(y(series.counts[0] ?? 0))}" r="3" fill="${colour}"/>`);
    else out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points}"/>`);
    const ly = MARGIN.top + 10 + index * 20;
    out.push(`<rect x="${WIDTH - MARGIN.right + 20}" y="${ly - 9}" width="12" height="12" fill="${colour}"/>`);
    out.push(`<text x="${WIDTH - MARGIN.right + 38}" y="${ly + 1}">${escapeXml(`${series.name} (${total})`)}</text>`);
    out.push('</g>');
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
