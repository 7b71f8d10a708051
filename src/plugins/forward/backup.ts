// Backup MX (inbound.store_and_forward): while the backend cannot be reached, a transaction is kept on
// the VPS's disk instead of forwarded, for recipients the backend accepted before, and handed on by the
// drain (drain.ts) when the backend answers again.
//
//   live RCPT reply       ─▶ the recipient cache learns it (2xx good, address 5xx bad, 4xx nothing)
//   backend unreachable   ─▶ the transaction is stored: cached-good 250, cached-bad 550 5.1.1, unknown 450 4.4.1
//   end of data (stored)  ─▶ raw bytes, envelope and client identity written and fsynced, then 250
//
// Only an unreachable backend (BackendUnreachable: no connection, or none that reached the banner) turns a
// transaction into a stored one: a backend that answered 4xx or 5xx decided for itself, and its answer is
// passed on as always. A transaction that has a recipient accepted live stays live.
import { PassThrough } from 'node:stream';
import { logDecision } from '../decision-log';
import type { Connection, Transaction } from '../haraka/connection';
import { constants } from '../haraka/constants';
import { DSN } from '../haraka/dsn';
import type { Next } from '../haraka/plugin';
import { captureOf, pipeRaw, type RawCapture } from '../raw-message';
import { REPLY_CODE_NOTE } from '../reply-code';
import { Spool } from '../store-forward/spool';
import { storePaths } from '../store-forward/store-dir';
import { VERIFY_DEFAULTS } from '../store-forward/verify-cache';
import { PersistentVerifyCache } from '../store-forward/verify-cache-file';
import { clientName } from './client-name';
import { clientFacts } from './open';
import type { ForwardPlugin, StoreForwardSettings } from './settings';
import { forwardedMailParams, messagePayload } from './transaction';

export interface BackupMx {
  settings: StoreForwardSettings;
  spool: Spool;
  recipients: PersistentVerifyCache;
  /** Since when the backend has been unreachable (ms since the epoch), or null while it answers. */
  downSince: number | null;
  /** Bytes of messages being stored right now, counted against max_disk_mb with what is stored. */
  storing: number;
}

/** Transaction note: the recipients of a stored transaction (each cached-good, each told 250). */
export const STORED = 'mailproxy_forward_stored';
/** Transaction note: the AbortController of a store in progress; a client that leaves before its 250
 * aborts it, so its retry is not a second copy. */
export const STORING = 'mailproxy_forward_storing';
const NOTHING = Buffer.alloc(0);

/** Each directory's backup MX, opened once for the life of the process: a second Spool on one directory
 * would recover (delete) what the first is writing and count its disk use apart. */
const opened = new Map<string, Promise<BackupMx>>();
let current: Promise<BackupMx> | null = null;

/** The backup MX for these settings (opened on first use: the spool recovers, the cache loads); null, and
 * nothing new kept, while store-and-forward is off. */
export function configureBackupMx(settings: StoreForwardSettings, log: (message: string) => void): Promise<BackupMx> | null {
  if (!settings.enabled) {
    current = null;
    return null;
  }
  let opening = opened.get(settings.dir);
  if (!opening) {
    opening = openBackupMx(settings, log);
    // A directory that failed to open is tried again at the next reload.
    opening.catch(() => opened.delete(settings.dir));
    opened.set(settings.dir, opening);
  }
  current = opening.then((backup) => {
    backup.settings = settings;
    return backup;
  });
  current.catch(() => undefined);
  return current;
}

/** The backup MX when store-and-forward is on and its directory opened, else null. */
export async function activeBackupMx(): Promise<BackupMx | null> {
  return current ? current.catch(() => null) : null;
}

/** Writes the recipient cache's last changes (at shutdown). */
export function flushBackupMx(): void {
  for (const opening of opened.values()) void opening.then((backup) => backup.recipients.flush()).catch(() => undefined);
}

async function openBackupMx(settings: StoreForwardSettings, log: (message: string) => void): Promise<BackupMx> {
  const paths = storePaths(settings.dir);
  const spool = await Spool.open(paths.spool, { log });
  const recipients = await PersistentVerifyCache.open({
    file: paths.recipients,
    settings: { ...VERIFY_DEFAULTS, maxEntries: settings.cacheSize },
    minIntervalMs: 5_000,
    log,
  });
  const usage = spool.usage();
  log(`store-and-forward: ${usage.ready} message(s) kept, ${usage.held} held, ${recipients.size} recipient(s) cached`);
  return { settings, spool, recipients, downSince: null, storing: 0 };
}

export function storedRecipients(transaction: Transaction | null): string[] | undefined {
  return transaction?.notes[STORED] as string[] | undefined;
}

/** Answers a recipient of a stored transaction from the cache alone. */
export function answerStoredRecipient(plugin: ForwardPlugin, connection: Connection, transaction: Transaction, backup: BackupMx, target: string, next: Next): void {
  const recipients = storedRecipients(transaction) ?? [];
  transaction.notes[STORED] = recipients;
  const verdict = backup.recipients.lookup(target).status;
  const decide = (code: number, reason: string) =>
    logDecision(connection, plugin, { action: code < 300 ? 'store' : 'refuse', ip: connection.remote.ip, check: 'store_and_forward', reason, code });
  if (backup.spool.wouldExceed(backup.settings.maxDiskBytes, backup.storing)) {
    decide(452, 'max_disk');
    return next(constants.DENYSOFT, DSN.create(452, 'Insufficient system storage, try again later', 3, 1));
  }
  if (verdict === 'good') {
    recipients.push(target);
    transaction.results.add(plugin, { pass: `stored rcpt ${target}` });
    return next(constants.OK, 'Recipient ok (kept while the mail server is away)');
  }
  if (verdict === 'bad') {
    decide(550, 'cached_bad');
    return next(constants.DENY, DSN.create(550, 'No such user here', 1, 1));
  }
  decide(450, 'not_verified');
  next(constants.DENYSOFT, DSN.create(450, 'Mail server unreachable, recipient not verified; try again later', 4, 1));
}

/** The raw message as the backend would get it after DATA (final dot included): one Buffer, or a stream. */
function rawMessage(transaction: Transaction): Buffer | PassThrough {
  const whole = messagePayload(transaction);
  if (whole) return whole;
  const stream = new PassThrough();
  transaction.message_stream.once('error', (err: Error) => stream.destroy(err));
  pipeRaw(transaction.message_stream, captureOf(transaction) as RawCapture, stream, NOTHING, { dot_stuffed: false, ending_dot: true });
  return stream;
}

/** End of data of a stored transaction: 250 only once the message is durable on disk. */
export function storeMessage(plugin: ForwardPlugin, connection: Connection, transaction: Transaction, backup: BackupMx, next: Next): void {
  const recipients = storedRecipients(transaction) ?? [];
  const size = Number(transaction.message_stream.bytes_read) || 0;
  if (backup.spool.wouldExceed(backup.settings.maxDiskBytes, backup.storing + size)) {
    transaction.notes[REPLY_CODE_NOTE] = 452;
    logDecision(connection, plugin, { action: 'refuse', ip: connection.remote.ip, check: 'store_and_forward', reason: 'max_disk', code: 452 });
    return next(constants.DENYSOFT, DSN.create(452, 'Insufficient system storage, try again later', 3, 1));
  }
  const abort = new AbortController();
  transaction.notes[STORING] = abort;
  backup.storing += size;
  (async () => {
    const facts = await clientFacts(connection);
    const name = await clientName(connection);
    const tls = connection.tls?.enabled === true;
    const meta = await backup.spool.store({
      raw: rawMessage(transaction),
      envelope: { mailFrom: transaction.mail_from.address, rcptTo: recipients },
      client: {
        address: facts.ip,
        port: facts.port,
        rdnsName: name.xclientName.startsWith('[') ? null : name.xclientName,
        helo: facts.helo,
        proto: `${facts.esmtp ? 'ESMTP' : 'SMTP'}${tls ? 'S' : ''}`,
        tls: { enabled: tls, cipher: null, version: null },
      },
      receivedAt: Date.now(),
      signal: abort.signal,
      replay: {
        xclientName: facts.name,
        esmtp: facts.esmtp,
        login: facts.login,
        destAddr: facts.destAddr,
        destPort: facts.destPort,
        mailParams: forwardedMailParams(transaction),
      },
    });
    logDecision(connection, plugin, {
      action: 'store',
      ip: connection.remote.ip,
      check: 'store_and_forward',
      reason: 'backend_unreachable',
      code: 250,
      extra: { id: meta.id, rcpts: recipients.length, size: meta.size },
    });
    transaction.results.add(plugin, { pass: `stored ${meta.id}` });
    next(constants.OK, `Kept for the mail server as ${meta.id}`);
  })()
    .catch((err: Error) => {
      connection.logerror(plugin, `store-and-forward: could not keep the message: ${err.message}`);
      transaction.notes[REPLY_CODE_NOTE] = 451;
      next(constants.DENYSOFT, DSN.create(451, 'Could not keep the message, try again later', 3, 0));
    })
    .finally(() => {
      backup.storing -= size;
      delete transaction.notes[STORING];
    });
}

/** The client left (or reset) before its 250: a store still in progress is not committed. */
export function abortStore(transaction: Transaction | null): void {
  (transaction?.notes[STORING] as AbortController | undefined)?.abort();
}
