// `mailproxy queue`: haraka-out's outbound queue directory (`<state_dir>/haraka-out/queue`), read and
// changed while Haraka runs. See qfile.ts for the file format.
//
// Deleting while Haraka runs (verified against hmail.js/queue.js of Haraka 3.3.4 and a real haraka-out):
// - Haraka reads a queue file's todo header once, when it loads the file (at start, or when it queued
//   the message), and keeps the envelope in memory. A retry does not read the header again: the
//   in-memory HMailItem goes from the temp-fail timer to delivery and opens the file only to stream the
//   message body after DATA, to rename it after another temp failure, or to copy headers into a bounce.
// - So the only safe way to remove a message is unlink(). With the file gone, the next attempt still
//   connects (MAIL/RCPT from memory) but cannot read the body: it logs "Reading from the data stream
//   failed: ENOENT" and sends nothing (the session stalls until outbound connect_timeout, 30 s, and is
//   dropped, so the remote never gets a message); an unreachable MX fails earlier. The temp failure
//   then cannot rename the file, Haraka turns it into a bounce, the bounce cannot read the original
//   headers, and Haraka logs "Double bounce: Error populating bounce message" and forgets the message:
//   no delivery, no DSN to the sender, no crash, nothing left in the queue.
// - Never truncate or rewrite a queued file in place: the in-memory item streams the body from its
//   remembered offset to its remembered size, so a shorter file is delivered as an empty or cut-off
//   message, and header edits are ignored.
// - A message that is due is possibly being delivered right now; once Haraka has opened it, unlink does
//   not stop that delivery (an open file stays readable). deleteMessage refuses due messages unless
//   `force` (use force when haraka-out is not running).
//
// Flushing: haraka.js installs `process.on('SIGHUP', () => server.flushQueue())`; with nodes=0 (our
// smtp.ini) that is outbound.flush_queue() with no domain, i.e. temp_fail_queue.drain(): every message
// waiting for a retry is handed to delivery at once (log: "[core] Flushing the temp fail queue"). A
// process without that handler is killed by SIGHUP, so flushQueue checks the pid is Haraka first.
// Haraka would count each such retry that fails as an attempt (and bounce a message flushed while it
// waits for its last one); mailproxy-outbound puts it back uncounted on the time its file named.
import { constants as fsConstants } from 'node:fs';
import { open, readFile, readdir, readlink, realpath, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { classifyQueueFile, lastErrorsFromLog, tlsPoliciesFromLog, parseQueueFile, todoLength, transactionUuid, type QueueEntry, type QueueFileParse } from './qfile';
import { parseQueueFileName } from '../haraka/queue-file-name';

/** A file in the queue directory that Haraka cannot deliver from (and mostly ignores). */
export interface QueueProblem {
  file: string;
  /** 'queue': a queue file name with unreadable contents; 'unknown': a name Haraka does not recognise. */
  kind: 'queue' | 'unknown';
  error: string;
  size: number | null;
}

/** An `error.*` file: one Haraka moved aside (corrupt header) and never looks at again. */
export interface ErrorFile {
  file: string;
  size: number | null;
  /** Its contents, when they still parse. */
  entry: QueueEntry | null;
  error: string | null;
}

export interface QueueListing {
  dir: string;
  /** Queued messages, oldest first. */
  entries: QueueEntry[];
  problems: QueueProblem[];
  errorFiles: ErrorFile[];
  /** `__tmp__.*` files: messages being written right now (ignored, as Haraka does). */
  inProgress: number;
}

export interface ListOptions {
  /** Haraka's log (e.g. `journalctl -u haraka-out` output): fills lastError, which 3.3.4 never writes to the file. */
  log?: string;
}

export interface QueueCount {
  total: number;
  byDomain: Record<string, number>;
  problems: number;
  errorFiles: number;
  inProgress: number;
}

export interface DeleteOptions {
  /** Delete even a message that is due (possibly being delivered right now). */
  force?: boolean;
  now?: Date;
  /** A message whose next attempt is within this many ms counts as due (default 5000). */
  guardMs?: number;
}

export interface DeleteResult {
  /** Files that matched idOrFile. */
  matched: string[];
  /** Files unlinked. */
  removed: string[];
  /** Files matched but left alone, with why. */
  refused: { file: string; reason: string }[];
  /** Files that disappeared before we could remove them (Haraka delivered or bounced them meanwhile). */
  vanished: string[];
}

type ReadResult = { kind: 'parsed'; parse: QueueFileParse; size: number } | { kind: 'vanished' } | { kind: 'unreadable'; error: string };

async function readFully(handle: FileHandle, length: number, position: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buffer.subarray(0, done);
}

/** Reads and parses one queue file's header (never the message body). */
async function readQueueFile(dir: string, file: string): Promise<ReadResult> {
  let handle: FileHandle | null = null;
  try {
    handle = await open(path.join(dir, file), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    const stat = await handle.stat();
    if (!stat.isFile()) return { kind: 'unreadable', error: 'not a regular file' };
    const size = stat.size;
    const prefix = await readFully(handle, Math.min(4, size), 0);
    const header = todoLength(prefix);
    if (!header.ok) return { kind: 'parsed', parse: parseQueueFile(file, prefix, { size }), size };
    const todo = await readFully(handle, Math.min(header.length, Math.max(0, size - 4)), 4);
    return { kind: 'parsed', parse: parseQueueFile(file, Buffer.concat([prefix, todo]), { size }), size };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'vanished' };
    if (code === 'ELOOP') return { kind: 'unreadable', error: 'a symbolic link (Haraka never writes one)' };
    if (code === 'EISDIR') return { kind: 'unreadable', error: 'not a regular file' };
    return { kind: 'unreadable', error: `cannot read: ${(err as Error).message}` };
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** Parses one file of the queue directory; null when it is gone (delivered, or renamed by a retry). */
export async function readQueueEntry(dir: string, file: string): Promise<QueueFileParse | null> {
  const result = await readQueueFile(dir, file);
  if (result.kind === 'vanished') return null;
  if (result.kind === 'unreadable') return { ok: false, error: result.error };
  return result.parse;
}

async function listNames(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`queue directory ${dir} does not exist (has haraka-out ever started?)`);
    if (code === 'EACCES') throw new Error(`cannot read queue directory ${dir}: permission denied (run as root or the haraka user)`);
    throw new Error(`cannot read queue directory ${dir}: ${(err as Error).message}`);
  }
}

/** Every message in the queue, plus the files Haraka would skip. A snapshot: Haraka keeps working. */
export async function listQueue(dir: string, options: ListOptions = {}): Promise<QueueListing> {
  const listing: QueueListing = { dir, entries: [], problems: [], errorFiles: [], inProgress: 0 };
  const seen = new Set<string>();
  let names = await listNames(dir);
  // A file can vanish between readdir and open: delivered, or renamed by a retry. One more pass picks
  // up the renamed ones.
  for (let pass = 0; pass < 2; pass++) {
    let vanished = 0;
    for (const file of names.sort()) {
      if (seen.has(file)) continue;
      seen.add(file);
      const kind = classifyQueueFile(file);
      if (kind === 'temp') {
        listing.inProgress++;
        continue;
      }
      if (kind === 'unknown') {
        listing.problems.push({ file, kind, error: 'not a Haraka queue file name: Haraka ignores it', size: null });
        continue;
      }
      const result = await readQueueFile(dir, file);
      if (result.kind === 'vanished') {
        vanished++;
        continue;
      }
      if (kind === 'error') {
        listing.errorFiles.push(
          result.kind === 'unreadable'
            ? { file, size: null, entry: null, error: result.error }
            : { file, size: result.size, entry: result.parse.ok ? result.parse.entry : null, error: result.parse.ok ? null : result.parse.error },
        );
        continue;
      }
      if (result.kind === 'unreadable') listing.problems.push({ file, kind, error: result.error, size: null });
      else if (!result.parse.ok) listing.problems.push({ file, kind, error: result.parse.error, size: result.size });
      else listing.entries.push(result.parse.entry);
    }
    if (vanished === 0) break;
    names = await listNames(dir);
  }
  if (options.log) {
    const errors = lastErrorsFromLog(options.log);
    const policies = tlsPoliciesFromLog(options.log);
    for (const entry of listing.entries) {
      entry.tlsPolicy = (entry.uuid && policies.get(entry.uuid)) ?? null;
      const fromLog = errors.get(entry.id);
      if (!entry.lastError && fromLog) {
        entry.lastError = fromLog;
        entry.lastErrorSource = 'log';
      }
    }
  }
  listing.entries.sort((a, b) => a.queuedAt.getTime() - b.queuedAt.getTime() || a.file.localeCompare(b.file));
  return listing;
}

export async function countQueue(dir: string): Promise<QueueCount> {
  const listing = await listQueue(dir);
  const byDomain: Record<string, number> = {};
  for (const entry of listing.entries) byDomain[entry.domain] = (byDomain[entry.domain] ?? 0) + 1;
  return {
    total: listing.entries.length,
    byDomain,
    problems: listing.problems.length,
    errorFiles: listing.errorFiles.length,
    inProgress: listing.inProgress,
  };
}

interface Candidate {
  file: string;
  id: string | null;
  uuid: string | null;
  nextAttempt: Date | null;
  /** Haraka will (try to) deliver it: an active queue file. */
  active: boolean;
}

function candidatesOf(listing: QueueListing): Candidate[] {
  const nameOf = (file: string) => parseQueueFileName(file);
  return [
    ...listing.entries.map((entry) => ({ file: entry.file, id: entry.id, uuid: entry.uuid, nextAttempt: entry.nextAttempt, active: true })),
    ...listing.problems.map((problem) => ({
      file: problem.file,
      id: null,
      uuid: null,
      nextAttempt: nameOf(problem.file)?.nextAttempt ?? null,
      active: problem.kind === 'queue',
    })),
    ...listing.errorFiles.map((errorFile) => ({
      file: errorFile.file,
      id: null,
      uuid: null,
      nextAttempt: null,
      active: false,
    })),
  ];
}

function matchCandidates(candidates: Candidate[], idOrFile: string): { targets: Candidate[]; ambiguous: boolean } {
  const byFile = candidates.filter((candidate) => candidate.file === idOrFile);
  if (byFile.length) return { targets: byFile, ambiguous: false };
  const byId = candidates.filter((candidate) => candidate.id === idOrFile);
  if (byId.length) return { targets: byId, ambiguous: byId.length > 1 };
  // The todo uuid (one recipient domain), or the transaction uuid from the 250 reply (all its domains).
  const byUuid = candidates.filter((candidate) => candidate.uuid && (candidate.uuid === idOrFile || transactionUuid(candidate.uuid) === idOrFile));
  return { targets: byUuid, ambiguous: false };
}

/**
 * Removes one message (by id, todo or transaction uuid, or file name) while Haraka runs: unlink only,
 * see the top of this file for why that is safe and what Haraka does afterwards.
 */
export async function deleteMessage(dir: string, idOrFile: string, options: DeleteOptions = {}): Promise<DeleteResult> {
  const result: DeleteResult = { matched: [], removed: [], refused: [], vanished: [] };
  const key = idOrFile.trim();
  if (!key || key.includes('/') || key === '.' || key === '..') throw new Error(`not a queue id or file name: ${JSON.stringify(idOrFile)}`);
  const guardMs = options.guardMs ?? 5000;
  // Haraka renames a file at every retry; when one vanishes under us, look for it again by id.
  let pending: string = key;
  for (let round = 0; round < 3; round++) {
    const listing = await listQueue(dir);
    const { targets, ambiguous } = matchCandidates(candidatesOf(listing), pending);
    if (targets.length === 0) return result;
    let retry = false;
    for (const target of targets) {
      if (!result.matched.includes(target.file)) result.matched.push(target.file);
      if (ambiguous) {
        result.refused.push({ file: target.file, reason: `id ${pending} matches ${targets.length} files: give the file name` });
        continue;
      }
      const now = (options.now ?? new Date()).getTime();
      if (target.active && !options.force && (!target.nextAttempt || target.nextAttempt.getTime() <= now + guardMs)) {
        result.refused.push({
          file: target.file,
          reason: 'due now: Haraka may be delivering it, and unlink does not stop a delivery in progress; retry after it fails again, or force (safe when haraka-out is stopped)',
        });
        continue;
      }
      try {
        await unlink(path.join(dir, target.file));
        result.removed.push(target.file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot remove ${target.file}: ${(err as Error).message}`);
        if (target.id && target.active && targets.length === 1) {
          pending = target.id;
          retry = true;
        } else {
          result.vanished.push(target.file);
        }
      }
    }
    if (!retry) return result;
  }
  return result;
}

export interface ProcOptions {
  /** Where /proc is (tests point this at a fake tree). */
  procDir?: string;
}

async function cmdlineOf(procDir: string, pid: number): Promise<string[] | null> {
  try {
    const raw = await readFile(path.join(procDir, String(pid), 'cmdline'));
    const args = raw.toString('utf8').split('\0');
    if (args.at(-1) === '') args.pop();
    return args.length ? args : null;
  } catch {
    return null;
  }
}

// Haraka's own one-shot commands (`haraka -c DIR --qlist` etc.) are not the server and have no SIGHUP handler.
const HARAKA_ACTIONS = new Set([
  '-o',
  '--order',
  '-t',
  '--test',
  '-l',
  '--list',
  '-h',
  '--help',
  '-v',
  '--version',
  '-i',
  '--install',
  '-p',
  '--plugin',
  '--qlist',
  '--qstat',
  '--qunstick',
  '--qempty',
  '--graceful',
]);

/** The config dir of a running Haraka server, or null when the command line is not one. */
export function harakaConfigDir(args: string[]): string | null {
  const script = args.findIndex((arg) => /^haraka(\.js)?$/.test(path.basename(arg)));
  if (script === -1) return null;
  const rest = args.slice(script + 1);
  if (rest.some((arg) => HARAKA_ACTIONS.has(arg.split('=')[0] ?? ''))) return null;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] ?? '';
    if ((arg === '-c' || arg === '--configs') && rest[i + 1]) return rest[i + 1] ?? null;
    const inline = /^(?:-c|--configs)=(.+)$/.exec(arg);
    if (inline) return inline[1] ?? null;
  }
  return null;
}

async function samePath(a: string, b: string): Promise<boolean> {
  if (path.resolve(a) === path.resolve(b)) return true;
  const [ra, rb] = await Promise.all([realpath(a).catch(() => null), realpath(b).catch(() => null)]);
  return ra !== null && ra === rb;
}

async function parentPid(procDir: string, pid: number): Promise<number | null> {
  try {
    const stat = await readFile(path.join(procDir, String(pid), 'stat'), 'utf8');
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) ? ppid : null;
  } catch {
    return null;
  }
}

/**
 * The pid of the Haraka server started with `-c <instanceDir>`, found in /proc/<pid>/cmdline (no pid
 * file needed). Null when none runs. Under cluster mode (nodes > 0) the master is returned. Note:
 * Haraka's process_title plugin overwrites the command line, which hides the process from this scan.
 */
export async function findHarakaPid(instanceDir: string, options: ProcOptions = {}): Promise<number | null> {
  const procDir = options.procDir ?? '/proc';
  const entries = await readdir(procDir).catch(() => [] as string[]);
  const matches: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const args = await cmdlineOf(procDir, pid);
    const dir = args ? harakaConfigDir(args) : null;
    if (!dir) continue;
    let resolved = dir;
    if (!path.isAbsolute(dir)) {
      const cwd = await readlink(path.join(procDir, entry, 'cwd')).catch(() => null);
      if (!cwd) continue;
      resolved = path.resolve(cwd, dir);
    }
    if (await samePath(resolved, instanceDir)) matches.push(pid);
  }
  if (matches.length <= 1) return matches[0] ?? null;
  const parents = await Promise.all(matches.map((pid) => parentPid(procDir, pid)));
  const roots = matches.filter((_pid, i) => !matches.includes(parents[i] ?? -1));
  if (roots.length === 1) return roots[0] ?? null;
  throw new Error(`more than one Haraka runs with -c ${instanceDir}: pids ${matches.join(', ')}`);
}

export interface FlushOptions extends ProcOptions {
  /** How to signal (tests); default process.kill. */
  kill?: (pid: number, signal: NodeJS.Signals) => void;
}

/**
 * Makes Haraka retry every temp-failed message now: SIGHUP, which haraka.js maps to
 * outbound.flush_queue() (temp_fail_queue.drain()). Checks first that pid is a Haraka server, since
 * SIGHUP kills a process without a handler.
 */
export async function flushQueue(pid: number, options: FlushOptions = {}): Promise<void> {
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`not a Haraka pid: ${pid}`);
  const args = await cmdlineOf(options.procDir ?? '/proc', pid);
  if (!args) throw new Error(`no process ${pid}`);
  if (!harakaConfigDir(args)) {
    throw new Error(`process ${pid} is not a Haraka server (${args.join(' ')}): not sending SIGHUP, it would end it`);
  }
  const kill = options.kill ?? ((target: number, signal: NodeJS.Signals) => void process.kill(target, signal));
  try {
    kill(pid, 'SIGHUP');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPERM') throw new Error(`not allowed to signal Haraka (pid ${pid}): run as root or its user`);
    if (code === 'ESRCH') throw new Error(`Haraka (pid ${pid}) has exited`);
    throw err;
  }
}
