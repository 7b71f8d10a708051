// haraka-out's pickup: every 2 s, each committed message of the pickup directory (../pickup-files.ts) goes
// into Haraka's outbound queue with outbound.send_email, and its two files are deleted only once Haraka
// said it is queued (the queue file written and renamed). A message Haraka does not take stays and is tried
// at the next poll; one whose envelope is missing or unreadable for a minute moves to bad/ with a log line.
// One poller per process (smtp.ini nodes=0); a reload of the settings restarts it with the new directory.
import { whenOutboundQueueLoaded } from '../haraka/patches/outbound-init-queue';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { constants } from '../haraka/constants';
import { ENVELOPE_SUFFIX, MESSAGE_SUFFIX, parseEnvelope, TEMP_PREFIX, TLS_REPORT_NOTE, type PickupEnvelope } from '../pickup-files';

export interface PickupLog {
  info(message: string): void;
  error(message: string): void;
}

type SendEmail = (from: string, to: string[], contents: string, next: (code: number, message: unknown) => void, options: { dot_stuffed: boolean; notes?: object }) => void;

const POLL_MS = 2_000;
/** A message without a readable envelope this long after it was written is not being written any more. */
const BAD_AFTER_MS = 60_000;
/** The longest one poll waits for Haraka to say a message is queued. */
const QUEUE_WAIT_MS = 60_000;

interface Poller {
  dir: string;
  /** Set once Haraka's queue has loaded. */
  timer: NodeJS.Timeout | null;
  running: boolean;
  /** Ids handed to Haraka whose callback has not come yet: not sent twice. */
  sending: Set<string>;
}

let poller: Poller | null = null;

/** Starts (or moves to another directory, or with `dir` null stops) the pickup poller of this process. */
export function configurePickup(dir: string | null, log: PickupLog): void {
  if (poller && poller.dir === dir) return;
  if (poller?.timer) clearInterval(poller.timer);
  poller = null;
  if (!dir) return;
  const started: Poller = { dir, timer: null, running: false, sending: new Set() };
  poller = started;
  // Only once Haraka has loaded its queue: a message queued before would be found again by the load and
  // delivered twice.
  const start = () => {
    if (poller !== started) return;
    started.timer = setInterval(() => void poll(started, log), POLL_MS);
    started.timer.unref();
  };
  if (!whenOutboundQueueLoaded(start)) {
    log.error('pickup: Haraka has no init_queue to wait for; polling at once');
    start();
  }
}

/** The notes of a TLS report's transaction: Haraka's own notes object, with the mark routing reads. */
function tlsReportNotes(): object {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Notes = require('haraka-notes') as new () => Record<string, unknown>;
  const notes = new Notes();
  notes.skip_plugins = [];
  notes[TLS_REPORT_NOTE] = true;
  return notes;
}

function sendEmail(): SendEmail {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const outbound = require('haraka/outbound') as { send_email: SendEmail };
  return outbound.send_email.bind(outbound);
}

async function poll(current: Poller, log: PickupLog): Promise<void> {
  if (current.running || poller !== current) return;
  current.running = true;
  try {
    await fs.mkdir(current.dir, { recursive: true, mode: 0o750 });
    const names = (await fs.readdir(current.dir)).filter((name) => !name.startsWith(TEMP_PREFIX)).sort();
    const envelopes = new Set(names.filter((name) => name.endsWith(ENVELOPE_SUFFIX)).map((name) => name.slice(0, -ENVELOPE_SUFFIX.length)));
    for (const name of names) {
      if (!name.endsWith(MESSAGE_SUFFIX)) continue;
      const id = name.slice(0, -MESSAGE_SUFFIX.length);
      if (current.sending.has(id)) continue;
      await pickUp(current, id, envelopes.has(id), log).catch((err: Error) => log.error(`pickup ${id}: ${err.message}; trying again`));
    }
    // An envelope whose message is gone: a pair half deleted by a crash after its message was queued.
    // readdir is no snapshot: a message renamed into place during the listing may be missing from it, so
    // only an envelope still alone, and a minute old, is set aside.
    for (const id of envelopes) {
      if (names.includes(`${id}${MESSAGE_SUFFIX}`) || current.sending.has(id)) continue;
      if (await exists(path.join(current.dir, `${id}${MESSAGE_SUFFIX}`))) continue;
      const stat = await fs.stat(path.join(current.dir, `${id}${ENVELOPE_SUFFIX}`)).catch(() => null);
      if (stat && Date.now() - stat.mtimeMs >= BAD_AFTER_MS) await setAside(current.dir, [`${id}${ENVELOPE_SUFFIX}`], 'an envelope without its message', log);
    }
  } catch (err) {
    log.error(`pickup ${current.dir}: ${(err as Error).message}`);
  } finally {
    current.running = false;
  }
}

async function pickUp(current: Poller, id: string, committed: boolean, log: PickupLog): Promise<void> {
  const files = [`${id}${MESSAGE_SUFFIX}`, `${id}${ENVELOPE_SUFFIX}`];
  const envelope = committed ? parseEnvelope(await fs.readFile(path.join(current.dir, files[1] as string), 'utf8')) : null;
  if (!envelope) {
    const stat = await fs.stat(path.join(current.dir, files[0] as string));
    if (Date.now() - stat.mtimeMs >= BAD_AFTER_MS) await setAside(current.dir, files, committed ? 'its envelope cannot be read' : 'it has no envelope', log);
    return;
  }
  const contents = await fs.readFile(path.join(current.dir, files[0] as string), 'latin1');
  current.sending.add(id);
  // Queued: the files go. One that cannot be deleted keeps its id out of this process's polls, so that
  // nothing is queued twice; the error says which.
  const queued = async (queuedNow: boolean) => {
    if (queuedNow) {
      log.info(`pickup ${id}: queued from <${envelope.from}> to ${describe(envelope)}`);
      try {
        for (const file of files) await fs.unlink(path.join(current.dir, file)).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
      } catch (err) {
        log.error(`pickup ${id}: queued, but cannot delete its files (${(err as Error).message}); delete them by hand`);
        return;
      }
    }
    current.sending.delete(id);
  };
  // The poll waits for Haraka's answer, but not forever: a late answer still settles the files, and the
  // id stays out of the polls until it comes (never queued twice).
  const answered = new Promise<void>((resolve) => {
    try {
      sendEmail()(
        envelope.from === '' ? '<>' : envelope.from,
        [...envelope.to],
        contents,
        (code, message) => {
          if (code === constants.DENY) {
            // Refused for good (an address the queue does not take): set aside, not tried every poll for ever.
            current.sending.delete(id);
            void setAside(current.dir, files, `the queue refused it (${String(message)})`, log).then(resolve, resolve);
            return;
          }
          if (code !== constants.OK) log.error(`pickup ${id}: not queued (${String(message)}); trying again`);
          void queued(code === constants.OK).then(resolve);
        },
        { dot_stuffed: false, ...(envelope.tlsReport ? { notes: tlsReportNotes() } : {}) },
      );
    } catch (err) {
      log.error(`pickup ${id}: not queued (${(err as Error).message}); trying again`);
      void queued(false).then(resolve);
    }
  });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      log.error(`pickup ${id}: no answer from the queue after ${QUEUE_WAIT_MS / 1000} s; waiting for it apart`);
      resolve();
    }, QUEUE_WAIT_MS);
    timer.unref();
  });
  await Promise.race([answered, late]);
  clearTimeout(timer);
}

function describe(envelope: PickupEnvelope): string {
  return envelope.to.map((rcpt) => `<${rcpt}>`).join(', ');
}

async function setAside(dir: string, files: string[], why: string, log: PickupLog): Promise<void> {
  const bad = path.join(dir, 'bad');
  await fs.mkdir(bad, { recursive: true, mode: 0o750 });
  for (const file of files) await fs.rename(path.join(dir, file), path.join(bad, file)).catch(() => undefined);
  log.error(`pickup: ${files[0]} moved to ${bad}: ${why}`);
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(
    () => true,
    () => false,
  );
}
