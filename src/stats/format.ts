// `mailproxy stats`: the summary as text. Pure.
import type { CountsByCheck, Summary } from './aggregate';

function percent(part: number, whole: number): string {
  return whole === 0 ? '-' : `${((100 * part) / whole).toFixed(1)} %`;
}

function sortedEntries(counts: Record<string, number>): [string, number][] {
  return Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

function breakdown(title: string, counts: CountsByCheck): string[] {
  if (counts.total === 0) return [];
  const lines = ['', title];
  for (const [check, count] of sortedEntries(counts.byCheck)) {
    lines.push(`  ${check.padEnd(30)} ${String(count).padStart(8)}`);
    for (const [reason, n] of sortedEntries(counts.byReason[check] ?? {})) lines.push(`    ${reason.padEnd(28)} ${String(n).padStart(8)}`);
  }
  return lines;
}

export function formatSummary(summary: Summary): string {
  const sessions = summary.accepted.sessions + summary.refused.total;
  const range =
    summary.from && summary.to ? `${summary.from.toISOString()} to ${summary.to.toISOString()}` : 'no decision lines (is log_level info or notice?)';
  const lines = [
    `sessions: ${range}`,
    `  ${'total'.padEnd(30)} ${String(sessions).padStart(8)}`,
    `  ${'accepted'.padEnd(30)} ${String(summary.accepted.sessions).padStart(8)}  ${percent(summary.accepted.sessions, sessions)}, ${summary.accepted.messages} messages`,
    `  ${'refused'.padEnd(30)} ${String(summary.refused.total).padStart(8)}  ${percent(summary.refused.total, sessions)}`,
    ...breakdown('refused, by check and reason:', summary.refused),
    ...breakdown('would have been refused (checks in log mode), by check and reason:', summary.logged),
  ];
  return `${lines.join('\n')}\n`;
}
