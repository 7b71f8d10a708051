// `mailproxy stats`: the summary as text. Pure.
import type { CountsByCheck, KeptCounts, Summary } from './aggregate';

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

/** `  label     count  note`, and below it `    reason  count` lines. */
const row = (label: string, count: number, note = '') => `  ${label.padEnd(30)} ${String(count).padStart(8)}${note ? `  ${note}` : ''}`;
const subRow = (label: string, count: number) => `    ${label.padEnd(28)} ${String(count).padStart(8)}`;

function reasons(counts: Record<string, number>): string[] {
  return sortedEntries(counts).map(([reason, n]) => subRow(reason, n));
}

function breakdown(title: string, counts: CountsByCheck): string[] {
  if (counts.total === 0) return [];
  const lines = ['', title];
  for (const [check, count] of sortedEntries(counts.byCheck)) lines.push(row(check, count), ...reasons(counts.byReason[check] ?? {}));
  return lines;
}

/** The backup MX's lines, when the log has any. */
function keptLines(kept: KeptCounts): string[] {
  if (kept.stored.messages + kept.drained + kept.held.total + kept.returned.total + kept.refused.total === 0) return [];
  return [
    '',
    'kept while the backend was away (inbound.store_and_forward):',
    row('stored', kept.stored.messages, `${kept.stored.recipients} recipients`),
    row('handed on to the backend', kept.drained),
    row('held for the operator', kept.held.total, kept.held.total ? 'see `mailproxy queue held`' : ''),
    ...reasons(kept.held.byReason),
    ...(kept.returned.total ? [row('returned to the sender (SPF pass)', kept.returned.total, 'a DSN each'), ...reasons(kept.returned.byReason)] : []),
    row('refused meanwhile', kept.refused.total, kept.refused.total ? 'recipients or messages' : ''),
    ...reasons(kept.refused.byReason),
  ];
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
    "addresses (its health probes); is this haraka-in's log (journalctl -u mailproxy-haraka-in), not haraka-out's, and did a session end in it?"
  );
}

export function formatSummary(summary: Summary, facts?: LogFacts): string {
  const sessions = summary.accepted.sessions + summary.refused.total;
  const range = summary.from && summary.to ? `${summary.from.toISOString()} to ${summary.to.toISOString()}` : facts ? nothingToCount(facts) : 'no decision lines';
  const exempt = sortedEntries(summary.exempt.byReason).map(([why, n]) => subRow(`not checked (${EXEMPT_NAMES[why] ?? why})`, n));
  const lines = [
    `sessions: ${range}`,
    row('total', sessions),
    row('accepted', summary.accepted.sessions, `${percent(summary.accepted.sessions, sessions)}, ${summary.accepted.messages} messages`),
    ...exempt,
    row('refused', summary.refused.total, percent(summary.refused.total, sessions)),
    ...breakdown('refused, by check and reason:', summary.refused),
    ...breakdown('would have been refused (checks in log mode), by check and reason:', summary.logged),
    ...keptLines(summary.kept),
  ];
  return `${lines.join('\n')}\n`;
}
