// Haraka 3.3.4 outbound queue files, read without Haraka (pure: no I/O here).
//
// Facts from node_modules/haraka/outbound/{qfile,queue,index,hmail}.js:
// - Name: see src/haraka/queue-file-name.ts, which parses it.
// - On every temp failure Haraka renames the file (hmail.deferred_respond): new nextattempt, attempts,
//   counter; arrival, pid and uid are kept, so uid is the id that survives retries.
// - `__tmp__.<name>` is a file still being written (renamed into place when complete); `error.<name>`
//   is a file Haraka moved aside (corrupt header). Haraka skips both when loading the queue, and skips
//   names that qfile.parts() does not recognise.
// - Contents (outbound.build_todo): a 4-byte big-endian length N, then N bytes of UTF-8
//   `\n<JSON todo, tab-indented>\n`, then the message. The todo holds queue_time, domain (one recipient
//   domain per file), rcpt_to and mail_from (Address JSON {original, original_host, host, user}), notes,
//   uuid (`<transaction uuid>.<n>`: the transaction uuid is what the 250 "Message Queued (...)" reply
//   names), force_tls.
// - Haraka 3.3.4 never writes the failure reason into the file: a temp failure only renames it, and
//   Address.toJSON drops the dsn_* fields even when a split rewrites the todo. lastError is therefore read
//   from rcpt dsn fields when present (older Haraka wrote them) and otherwise from Haraka's log
//   (lastErrorsFromLog below), where the cause of a "Tried all MXs" deferral is on the lines before it
//   ("Failed to get socket: connect ECONNREFUSED …").

import { parseQueueFileName, type QueueFileName } from '../haraka/queue-file-name';

export const TEMP_PREFIX = '__tmp__.';
export const ERROR_PREFIX = 'error.';
/** A todo header longer than this is treated as corrupt rather than allocated. */
export const MAX_TODO_BYTES = 16 * 1024 * 1024;

export type QueueFileKind = 'queue' | 'temp' | 'error' | 'unknown';

export interface QueueEntry {
  /** The file name in the queue directory (changes at every retry). */
  file: string;
  /** Stable id for `queue delete`: the uid of the file name (the whole name for the old 4-part form). */
  id: string;
  /** todo.uuid: `<transaction uuid>.<n>`, n counting the recipient domains of one message. */
  uuid: string | null;
  domain: string;
  /** `<>` for the null sender (a bounce). */
  mailFrom: string;
  recipients: string[];
  queuedAt: Date;
  /** When Haraka retries; equal to arrival before the first attempt. Null if the name has none. */
  nextAttempt: Date | null;
  attempts: number;
  lastError: string | null;
  /** Where lastError came from: the file itself or Haraka's log. */
  lastErrorSource: 'file' | 'log' | null;
  /** The TLS policy of its last attempt (dane, mta-sts, opportunistic), from Haraka's log. */
  tlsPolicy: string | null;
  /** Bytes on disk (header and message). */
  size: number;
  /** The Haraka process the name says owns the file. */
  pid: number | null;
}

export type QueueFileParse = { ok: true; entry: QueueEntry } | { ok: false; error: string };

export function classifyQueueFile(file: string): QueueFileKind {
  if (file.startsWith(TEMP_PREFIX)) return 'temp';
  if (file.startsWith(ERROR_PREFIX)) return 'error';
  return parseQueueFileName(file) ? 'queue' : 'unknown';
}

/** The id `queue delete` accepts for a file: its uid, or the whole name for the old form. */
export function queueIdOf(name: QueueFileName): string {
  return name.legacy ? name.file : name.uid;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An envelope address as Haraka serialised it (Address JSON, or a plain string). */
export function formatAddress(value: unknown): string | null {
  if (typeof value === 'string') {
    const bare = value.trim().replace(/^<(.*)>$/, '$1');
    return bare === '' ? '<>' : bare;
  }
  if (!isObject(value)) return null;
  const user = typeof value.user === 'string' ? value.user : '';
  const host = typeof value.host === 'string' ? value.host : '';
  if (user && host) return `${user}@${host}`;
  if (user) return user;
  if (typeof value.original === 'string') return formatAddress(value.original);
  return host ? `@${host}` : '<>';
}

function text(value: unknown): string | null {
  if (typeof value === 'string' && value.trim() !== '') return value.trim();
  if (typeof value === 'number') return String(value);
  return null;
}

/** The failure a recipient carries in its dsn fields, as `450 4.2.1 mailbox busy`. */
function rcptError(rcpt: Json): string | null {
  const response = text(rcpt.dsn_smtp_response);
  if (response) {
    const code = text(rcpt.dsn_smtp_code);
    const extc = text(rcpt.dsn_smtp_extc);
    const prefix = [code, extc].filter((part): part is string => part !== null && !response.startsWith(part));
    return [...prefix, response].join(' ');
  }
  const msg = text(rcpt.dsn_msg);
  if (msg) {
    const code = text(rcpt.dsn_code);
    const status = text(rcpt.dsn_status);
    return [code, status, msg].filter(Boolean).join(' ');
  }
  return text(rcpt.reason);
}

function todoError(todo: Json): string | null {
  for (const key of ['last_error', 'error', 'bounce_error']) {
    const value = todo[key];
    const found = text(value) ?? (isObject(value) ? text(value.message) : null);
    if (found) return found;
  }
  const seen = new Set<string>();
  const errors: string[] = [];
  for (const rcpt of Array.isArray(todo.rcpt_to) ? todo.rcpt_to : []) {
    if (!isObject(rcpt)) continue;
    const error = rcptError(rcpt);
    if (!error) continue;
    const line = `${formatAddress(rcpt) ?? '?'}: ${error}`;
    if (!seen.has(line)) {
      seen.add(line);
      errors.push(line);
    }
  }
  return errors.length ? errors.join('; ') : null;
}

/** Length of the todo header (the 4-byte prefix), or an error when the data cannot hold one. */
export function todoLength(data: Buffer): { ok: true; length: number } | { ok: false; error: string } {
  if (data.length === 0) return { ok: false, error: 'empty file (zero bytes)' };
  if (data.length < 4) return { ok: false, error: `truncated: ${data.length} bytes, shorter than the 4-byte header length` };
  const length = data.readUInt32BE(0);
  if (length === 0) return { ok: false, error: 'header length is 0: not a Haraka queue file' };
  if (length > MAX_TODO_BYTES) return { ok: false, error: `header length ${length} is implausible: not a Haraka queue file or corrupt` };
  return { ok: true, length };
}

/**
 * Parses a queue file. `data` is the whole file or at least its first 4 + header-length bytes; `size`
 * is the file's size on disk (default: data.length). Never throws: a malformed or partial file gives
 * `{ ok: false, error }`.
 */
export function parseQueueFile(file: string, data: Buffer, options: { size?: number } = {}): QueueFileParse {
  const size = options.size ?? data.length;
  const fail = (error: string): QueueFileParse => ({ ok: false, error });
  const header = todoLength(data);
  if (!header.ok) return fail(header.error);
  const available = Math.min(data.length, size) - 4;
  if (available < header.length) {
    return fail(`truncated: header says ${header.length} bytes of todo, the file has ${Math.max(0, size - 4)} (partial write?)`);
  }
  const raw = data
    .subarray(4, 4 + header.length)
    .toString('utf8')
    .trim();
  if (!raw.endsWith('}')) return fail(`todo header does not end with '}' (Haraka rejects it too)`);
  let todo: unknown;
  try {
    todo = JSON.parse(raw);
  } catch (err) {
    return fail(`todo header is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(todo)) return fail('todo header is not a JSON object');
  if (!Array.isArray(todo.rcpt_to)) return fail('todo header has no rcpt_to list');
  const recipients = todo.rcpt_to.map(formatAddress);
  if (recipients.some((rcpt) => rcpt === null)) return fail('todo header has an unreadable recipient');
  const mailFrom = formatAddress(todo.mail_from);
  if (mailFrom === null) return fail('todo header has no mail_from');

  const name = parseQueueFileName(file.startsWith(ERROR_PREFIX) ? file.slice(ERROR_PREFIX.length) : file);
  const domain = text(todo.domain) ?? (recipients as string[]).map((rcpt) => rcpt.split('@')[1]).find(Boolean) ?? '';
  const queueTime = typeof todo.queue_time === 'number' ? todo.queue_time : Number(todo.queue_time);
  const queuedAt = Number.isFinite(queueTime) && queueTime > 0 ? new Date(queueTime) : (name?.arrival ?? null);
  if (!queuedAt) return fail('todo header has no queue_time and the file name no arrival time');
  const lastError = todoError(todo);
  return {
    ok: true,
    entry: {
      file,
      id: name ? queueIdOf(name) : file,
      uuid: text(todo.uuid),
      domain: domain.toLowerCase(),
      mailFrom,
      recipients: recipients as string[],
      queuedAt,
      nextAttempt: name && Number.isFinite(name.nextAttempt.getTime()) && name.nextAttempt.getTime() > 0 ? name.nextAttempt : null,
      attempts: name?.attempts ?? 0,
      lastError,
      lastErrorSource: lastError ? 'file' : null,
      tlsPolicy: null,
      size,
      pid: name?.pid ?? null,
    },
  };
}

/** The transaction uuid a todo uuid belongs to (what the 250 "Message Queued (...)" reply names). */
export function transactionUuid(uuid: string): string {
  return uuid.replace(/\.\d+$/, '');
}

const LOG_UUID = /\[([0-9A-Fa-f-]{36}(?:\.\d+)*)\] \[outbound\]/;

/** The TLS policy of each todo uuid's last attempt, from mailproxy-outbound's `TLS policy for <domain>: <policy> (…)` lines. */
export function tlsPoliciesFromLog(log: string): Map<string, string> {
  const policies = new Map<string, string>();
  for (const line of log.split('\n')) {
    const policy = /\[outbound\] TLS policy for \S+: ([a-z-]+) \(/.exec(line)?.[1];
    const uuid = policy ? LOG_UUID.exec(line)?.[1] : undefined;
    if (policy && uuid) policies.set(uuid, policy);
  }
  return policies;
}

/**
 * What went wrong with one MX in a delivery attempt, from hmail.js's own log lines (try_deliver and
 * try_deliver_host_on_socket), or null for any other line. Haraka then defers with only "Tried all MXs".
 */
export function mxFailureOf(message: string): string | null {
  const socket = /^Failed to get socket: (.*)$/.exec(message)?.[1];
  if (socket !== undefined) return readableSocketError(socket.trim());
  const ongoing = /^Ongoing connection failed to (.+?) : (.*)$/.exec(message);
  if (ongoing) return `${ongoing[1]}: ${(ongoing[2] ?? '').trim()}`;
  const closed = /^Remote end (\S+) closed connection while we were processing mail/.exec(message)?.[1];
  if (closed) return `${closed} closed the connection during the SMTP session`;
  const local = /^MX (\S+) is local, skipping since local_mx_ok=false/.exec(message)?.[1];
  if (local) return `MX ${local} is this host (skipped: outbound local_mx_ok=false)`;
  return null;
}

/** client_pool.js names a timed-out socket by its JSON arguments: `outbound::{"port":25,"host":"…"}`. */
function readableSocketError(error: string): string {
  const timedOut = /^connection timed out to outbound::(\{.*\})$/.exec(error)?.[1];
  if (!timedOut) return error;
  try {
    const args = JSON.parse(timedOut) as { host?: unknown; port?: unknown; path?: unknown };
    if (typeof args.path === 'string') return `connection timed out to ${args.path}`;
    if (typeof args.host === 'string') return `connection timed out to ${args.host}:${String(args.port ?? 25)}`;
  } catch {
    // fall through: keep Haraka's words
  }
  return error;
}

const TRIED_ALL_MXS = /^Tried all MXs\b/;

/**
 * Last failure per queue id from Haraka's log (journald or captured output, any line prefix). Reads
 * hmail's `Temp failing <file> for <n> seconds: <reason>` lines, and adds the remote's reply from the
 * `recipient <addr> deferred: <reply>` lines logged for the same uuid since its previous failure.
 * Haraka's "Tried all MXs" names no cause: it is replaced by the last MX failure logged for the uuid in
 * that attempt (`connect ECONNREFUSED 192.0.2.1:25`), as Postfix's mailq shows the last cause.
 */
export function lastErrorsFromLog(log: string): Map<string, string> {
  const errors = new Map<string, string>();
  const deferred = new Map<string, string[]>();
  const mxFailures = new Map<string, string[]>();
  const add = (map: Map<string, string[]>, uuid: string, text: string) => map.set(uuid, [...(map.get(uuid) ?? []), text]);
  const uuidOf = (line: string) => LOG_UUID.exec(line)?.[1] ?? null;
  for (const line of log.split('\n')) {
    const message = /\[outbound\] (.*)$/.exec(line)?.[1];
    if (message === undefined) continue;
    const rcpt = /^recipient (\S+) deferred: (.*)$/.exec(message);
    if (rcpt) {
      const uuid = uuidOf(line);
      if (uuid) add(deferred, uuid, `${rcpt[1]} ${(rcpt[2] ?? '').trim()}`);
      continue;
    }
    const mxFailure = mxFailureOf(message.trimEnd());
    if (mxFailure) {
      const uuid = uuidOf(line);
      if (uuid) add(mxFailures, uuid, mxFailure);
      continue;
    }
    const temp = /^Temp failing (\S+) for \d+ seconds: (.*)$/.exec(message);
    if (!temp) continue;
    const name = parseQueueFileName(temp[1] ?? '');
    if (!name) continue;
    const uuid = uuidOf(line);
    const replies = uuid ? (deferred.get(uuid) ?? []) : [];
    const tried = uuid ? (mxFailures.get(uuid) ?? []) : [];
    if (uuid) {
      deferred.delete(uuid);
      mxFailures.delete(uuid);
    }
    let reason = (temp[2] ?? '').trim();
    const cause = tried.at(-1);
    if (cause && TRIED_ALL_MXS.test(reason)) {
      reason = reason.replace(TRIED_ALL_MXS, tried.length > 1 ? `${cause} (the last of ${tried.length} MX failures)` : cause);
    }
    errors.set(queueIdOf(name), replies.length ? `${reason} (${replies.join('; ')})` : reason);
  }
  return errors;
}
