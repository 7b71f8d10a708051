// Text and JSON output for `mailproxy queue ... --instance in`: the mail haraka-in keeps while the backend
// is away (ready: waiting for it; held: waiting for the operator). Pure.
import type { KeptFigures, KeptListing } from '../plugins/store-forward/spool-admin';
import type { StoredMeta } from '../plugins/store-forward/spool-meta';
import { cut, formatDuration, table, type FormatOptions } from './format';

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** One recipient as it is, several as the first and how many more. */
function recipients(rcptTo: string[]): string {
  if (rcptTo.length <= 1) return rcptTo[0] ?? '-';
  return `${rcptTo[0]} +${rcptTo.length - 1}`;
}

function since(now: number, at: number | null): string {
  return at === null ? '-' : formatDuration(now - at);
}

function readyRows(metas: StoredMeta[], now: number, options: FormatOptions): string[][] {
  return metas.map((meta) => {
    const next = meta.nextAttemptAt === null ? 'when it answers' : meta.nextAttemptAt <= now ? 'due' : `in ${formatDuration(meta.nextAttemptAt - now)}`;
    return [
      meta.id,
      since(now, meta.receivedAt),
      meta.envelope.mailFrom || '<>',
      recipients(meta.envelope.rcptTo),
      String(meta.attempts),
      next,
      meta.lastReply ? cut(meta.lastReply, options.maxErrorWidth) : '-',
    ];
  });
}

function heldRows(metas: StoredMeta[], now: number, options: FormatOptions): string[][] {
  return metas.map((meta) => [
    meta.id,
    since(now, meta.receivedAt),
    meta.envelope.mailFrom || '<>',
    recipients(meta.envelope.rcptTo),
    String(meta.attempts),
    since(now, meta.held?.at ?? null),
    cut(meta.held?.reason ?? '-', options.maxErrorWidth),
  ]);
}

/** Ready and held messages in a table each, then what recovery set aside or could not read. */
export function formatKeptListing(listing: KeptListing, options: FormatOptions & { heldOnly?: boolean } = {}): string {
  if (!listing.exists) return `nothing kept: no spool at ${listing.root} (haraka-in makes it when inbound.store_and_forward is on)`;
  const now = (options.now ?? new Date()).getTime();
  const lines: string[] = [];
  if (!options.heldOnly) {
    lines.push(`ready, waiting for the backend: ${listing.ready.length}`);
    if (listing.ready.length) lines.push(table(['ID', 'AGE', 'FROM', 'RECIPIENTS', 'ATTEMPTS', 'NEXT', 'LAST REPLY'], readyRows(listing.ready, now, options)));
    lines.push('');
  }
  lines.push(`held for you (mailproxy queue release ID, or delete ID --instance in): ${listing.held.length}`);
  if (listing.held.length) lines.push(table(['ID', 'AGE', 'FROM', 'RECIPIENTS', 'ATTEMPTS', 'HELD', 'REASON'], heldRows(listing.held, now, options)));
  if (listing.problems.length) {
    lines.push('', 'unreadable:');
    for (const problem of listing.problems) lines.push(`  ${problem.file}: ${problem.error}`);
  }
  if (listing.corrupt.length) lines.push('', `${plural(listing.corrupt.length, 'message')} in ${listing.root}/corrupt/ (unreadable at a restart; look at them by hand)`);
  return lines.join('\n');
}

export function formatKeptCount(figures: KeptFigures, root: string, now: Date = new Date()): string {
  if (!figures.exists) return `ready 0\nheld 0\n(no spool at ${root} yet)`;
  const oldest = (at: number | null) => (at === null ? '' : ` (oldest ${formatDuration(now.getTime() - at)})`);
  const lines = [`ready ${figures.ready}${oldest(figures.oldestReadyAt)}`, `held ${figures.held}${oldest(figures.oldestHeldAt)}`];
  lines.push(`${Math.ceil(figures.bytes / 1024)} KB on disk`);
  if (figures.corrupt) lines.push(`${figures.corrupt} in corrupt/: see \`mailproxy queue list --instance in\``);
  return lines.join('\n');
}

export function formatReleased(meta: StoredMeta, probeSeconds: number): string {
  return `released ${meta.id} (from ${meta.envelope.mailFrom || '<>'} to ${plural(meta.envelope.rcptTo.length, 'recipient')}): haraka-in hands it to the backend at its next probe (every ${probeSeconds} s) once the backend answers`;
}

export function formatDeletedHeld(meta: StoredMeta): string {
  return `deleted held message ${meta.id} (from ${meta.envelope.mailFrom || '<>'} to ${plural(meta.envelope.rcptTo.length, 'recipient')})`;
}

/** JSON for `--json`: the metas as stored (times in ms since the epoch). */
export function keptJson(value: KeptListing | KeptFigures | StoredMeta): string {
  return JSON.stringify(value, null, 2);
}
