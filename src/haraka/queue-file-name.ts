// The names of Haraka 3.3.4's outbound queue files, parsed without Haraka (pure). mailproxy-outbound reads
// a retried file's scheduled time from it; the queue tools (src/queue/qfile.ts) read the rest of the file.
//
// From node_modules/haraka/outbound/qfile.js: `$arrival_$nextattempt_$attempts_$pid_$uid_$counter_$host`
// (qfile.name()). arrival and nextattempt are epoch milliseconds, attempts is the number of temp failures
// so far, pid the Haraka process that owns it, uid 6 random [A-Za-z0-9], counter a per-process counter
// (0..10000), host the hostname with `\` `:` `_` escaped as `\057` `\072` `\137`. An old 4-part form
// `$nextattempt_$attempts_$pid_$uniq.$host` is still accepted by qfile.parts().

export interface QueueFileName {
  file: string;
  /** Null for the old 4-part name, which has no arrival time. */
  arrival: Date | null;
  nextAttempt: Date;
  /** Temp failures so far (0 until the first failed attempt). */
  attempts: number;
  pid: number;
  /** The random part; kept by Haraka across retry renames. */
  uid: string;
  /** Null for the old 4-part name. */
  counter: number | null;
  /** Hostname, unescaped. */
  host: string;
  legacy: boolean;
}

/** Inverse of qfile.hostname(); repeated because Haraka re-escapes an escaped host at each rename. */
export function unescapeHost(host: string): string {
  const table: Record<string, string> = { '057': '\\', '072': ':', '137': '_' };
  let current = host;
  for (let i = 0; i < 8; i++) {
    const next = current.replace(/\\(057|072|137)/g, (_match, code: string) => table[code] ?? '');
    if (next === current) return next;
    current = next;
  }
  return current;
}

const DIGITS = /^\d+$/;

/** Parses a queue file name like qfile.parts(), a little stricter (numeric fields must be digits). */
export function parseQueueFileName(file: string): QueueFileName | null {
  if (!file || file.includes('/')) return null;
  const parts = file.split('_');
  if (parts.length === 7) {
    const [arrival, next, attempts, pid, uid, counter, host] = parts as [string, string, string, string, string, string, string];
    if (![arrival, next, attempts, pid, counter].every((field) => DIGITS.test(field))) return null;
    if (!uid) return null;
    return {
      file,
      arrival: new Date(Number(arrival)),
      nextAttempt: new Date(Number(next)),
      attempts: Number(attempts),
      pid: Number(pid),
      uid,
      counter: Number(counter),
      host: unescapeHost(host),
      legacy: false,
    };
  }
  if (parts.length === 4) {
    const match = /^(\d+)_(\d+)_(\d+)_(\d+)\.(.*)$/.exec(file);
    if (!match) return null;
    const [, next, attempts, pid, uniq, host] = match as unknown as [string, string, string, string, string, string];
    return {
      file,
      arrival: null,
      nextAttempt: new Date(Number(next)),
      attempts: Number(attempts),
      pid: Number(pid),
      uid: uniq,
      counter: null,
      host: unescapeHost(host),
      legacy: true,
    };
  }
  return null;
}
