// Text and JSON output for `mailproxy queue list|count|delete` (haraka-out's queue; kept-format.ts: haraka-in's).
import type { QueueEntry } from './qfile';
import type { DeleteResult, QueueCount, QueueListing } from './tools';

export interface FormatOptions {
  now?: Date;
  /** Cut the last-error column to this many characters (default: no limit). */
  maxErrorWidth?: number;
}

/** 45s, 12m, 3h05m, 2d04h. */
export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h${String(minutes % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, '0')}h`;
}

/** `text` on one line, cut to `width` characters with an ellipsis (no limit without a width). */
export function cut(text: string, width: number | undefined): string {
  const flat = text.replace(/\s+/g, ' ');
  if (!width || flat.length <= width) return flat;
  return `${flat.slice(0, Math.max(1, width - 1))}…`;
}

/** Columns padded to their widest cell, two spaces apart, the last one not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** One line per queued message: id, recipient domain, recipients, sender, age, attempts, next retry, TLS policy, last error. */
export function formatQueueTable(entries: QueueEntry[], options: FormatOptions = {}): string {
  if (entries.length === 0) return 'queue is empty';
  const now = (options.now ?? new Date()).getTime();
  const rows = entries.map((entry) => {
    const next = entry.nextAttempt ? entry.nextAttempt.getTime() - now : null;
    return [
      entry.id,
      entry.domain || '-',
      entry.recipients.length === 1 ? (entry.recipients[0] ?? '') : `${entry.recipients.length} rcpts`,
      entry.mailFrom,
      formatDuration(now - entry.queuedAt.getTime()),
      String(entry.attempts),
      next === null ? '-' : next <= 0 ? 'due' : `in ${formatDuration(next)}`,
      entry.tlsPolicy ?? '-',
      entry.lastError ? cut(entry.lastError, options.maxErrorWidth) : '-',
    ];
  });
  return table(['ID', 'DOMAIN', 'RECIPIENTS', 'FROM', 'AGE', 'ATTEMPTS', 'NEXT', 'TLS', 'LAST ERROR'], rows);
}

/** The table, then a summary and whatever Haraka cannot deliver from (corrupt, unknown and error.* files). */
export function formatQueueListing(listing: QueueListing, options: FormatOptions = {}): string {
  const lines = [formatQueueTable(listing.entries, options)];
  const summary = [`${listing.entries.length} message${listing.entries.length === 1 ? '' : 's'} in ${listing.dir}`];
  if (listing.inProgress) summary.push(`${listing.inProgress} being written`);
  lines.push('', summary.join(', '));
  if (listing.problems.length) {
    lines.push('', `unreadable files (Haraka skips or fails on them):`);
    for (const problem of listing.problems) lines.push(`  ${problem.file}: ${problem.error}`);
  }
  if (listing.errorFiles.length) {
    lines.push('', `error files (Haraka moved these aside and never retries them):`);
    for (const file of listing.errorFiles) {
      const what = file.entry ? `${file.entry.domain}, from ${file.entry.mailFrom}, ${file.entry.recipients.length} rcpt(s)` : file.error;
      lines.push(`  ${file.file}: ${what}`);
    }
  }
  return lines.join('\n');
}

export function formatQueueCount(count: QueueCount): string {
  const lines = [`total ${count.total}`];
  const domains = Object.entries(count.byDomain).sort(([a, x], [b, y]) => y - x || a.localeCompare(b));
  if (domains.length)
    lines.push(
      table(
        ['COUNT', 'DOMAIN'],
        domains.map(([domain, n]) => [String(n), domain]),
      ),
    );
  if (count.inProgress) lines.push(`${count.inProgress} being written`);
  if (count.problems) lines.push(`${count.problems} unreadable file(s): see \`mailproxy queue list\``);
  if (count.errorFiles) lines.push(`${count.errorFiles} error file(s): see \`mailproxy queue list\``);
  return lines.join('\n');
}

export function formatDeleteResult(result: DeleteResult, idOrFile: string): string {
  if (result.matched.length === 0) return `no queued message matches ${idOrFile}`;
  const lines = [
    ...result.removed.map((file) => `deleted ${file}`),
    ...result.vanished.map((file) => `gone already (delivered or bounced meanwhile): ${file}`),
    ...result.refused.map(({ file, reason }) => `not deleted ${file}: ${reason}`),
  ];
  return lines.join('\n');
}

/** JSON for `--json`: dates as ISO 8601 strings. */
export function queueJson(value: QueueListing | QueueCount | DeleteResult | QueueEntry[]): string {
  return JSON.stringify(value, null, 2);
}
