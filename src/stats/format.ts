// `mailproxy stats`: the summary as text. Pure.
import type { CountsByCheck, Summary } from './aggregate';

/** What the command saw of the log besides the decisions: the facts behind "nothing to count". */
export interface LogFacts {
  /** Lines read. */
  lines: number;
  /** Lines at Haraka's NOTICE or INFO level (`[NOTICE]`, `[INFO]`), where decision lines are written. */
  noticeLines: number;
  /** Decision lines left out by --since. */
  before: number;
  since: Date | null;
}

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

const EXEMPT_NAMES: Record<string, string> = { loopback: 'loopback', private: 'private', allow: 'edge.allow', own: 'own address' };

/** Why a log gave no decision line, in the words that lead to the fix. */
export function nothingToCount(facts: LogFacts): string {
  if (facts.before > 0 && facts.since) return `no decision lines since ${facts.since.toISOString()} (${facts.before} before it)`;
  if (facts.lines === 0) return 'no decision lines: the log is empty';
  if (facts.noticeLines === 0) {
    return `no decision lines: none of the log's ${facts.lines} lines is at NOTICE or INFO, where haraka-in writes them (is log_level warn or error? set it to info or notice)`;
  }
  return (
    `no decision lines in ${facts.lines} lines of log: haraka-in writes one per session when it ends, except for the appliance's own ` +
    'addresses (its health probes); is this haraka-in\'s log (journalctl -u mailproxy-haraka-in), not haraka-out\'s, and did a session end in it?'
  );
}

export function formatSummary(summary: Summary, facts?: LogFacts): string {
  const sessions = summary.accepted.sessions + summary.refused.total;
  const range =
    summary.from && summary.to
      ? `${summary.from.toISOString()} to ${summary.to.toISOString()}`
      : facts
        ? nothingToCount(facts)
        : 'no decision lines';
  const exempt = sortedEntries(summary.exempt.byReason).map(
    ([why, n]) => `    ${`not checked (${EXEMPT_NAMES[why] ?? why})`.padEnd(28)} ${String(n).padStart(8)}`,
  );
  const lines = [
    `sessions: ${range}`,
    `  ${'total'.padEnd(30)} ${String(sessions).padStart(8)}`,
    `  ${'accepted'.padEnd(30)} ${String(summary.accepted.sessions).padStart(8)}  ${percent(summary.accepted.sessions, sessions)}, ${summary.accepted.messages} messages`,
    ...exempt,
    `  ${'refused'.padEnd(30)} ${String(summary.refused.total).padStart(8)}  ${percent(summary.refused.total, sessions)}`,
    ...breakdown('refused, by check and reason:', summary.refused),
    ...breakdown('would have been refused (checks in log mode), by check and reason:', summary.logged),
  ];
  return `${lines.join('\n')}\n`;
}
