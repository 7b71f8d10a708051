// What the client hears: the backend's reply mapped onto Haraka's return codes (its class, its code and
// enhanced status kept), and the 4xx of every way forwarding can fail (fail closed).
import { logDecision } from '../decision-log';
import type { Connection, Transaction } from '../haraka/connection';
import { constants } from '../haraka/constants';
import { DSN, type Dsn } from '../haraka/dsn';
import type { Next } from '../haraka/plugin';
import { REPLY_CODE_NOTE } from '../reply-code';
import type { Reply } from './backend-session';
import type { ForwardPlugin } from './settings';
import { dropBackend, type BackendBusy } from './state';

/** The reply is of class `code` (2: success, 5: permanent failure). */
export function isOk(reply: Reply, code = 2): boolean {
  return Math.floor(reply.code / 100) === code;
}

function dsnFrom(reply: Reply): Dsn {
  const first = reply.lines[0] ?? '';
  const enhanced = /^([245])\.(\d{1,3})\.(\d{1,3})\s+/.exec(first);
  const texts = reply.lines.map((line) => line.replace(/^[245]\.\d{1,3}\.\d{1,3}\s+/, ''));
  if (enhanced && Number(enhanced[1]) === Math.floor(reply.code / 100)) {
    return DSN.create(reply.code, texts.length === 1 ? (texts[0] as string) : texts, Number(enhanced[2]), Number(enhanced[3]));
  }
  return DSN.create(reply.code, texts.length === 1 ? (texts[0] as string) : texts);
}

/** A backend refusal keeps its class: 5xx denies, 4xx defers; a 421 (the backend is closing) is passed on
 * and ends the client session too (RFC 5321 §3.8), since that transaction is gone. */
export function refusal(reply: Reply): [code: number, dsn: Dsn, replyCode: number] {
  if (reply.code === 421) return [constants.DENYSOFTDISCONNECT, dsnFrom(reply), 421];
  // 503 is a protocol error between haraka-in and the backend, never a verdict on the message: the
  // sender retries rather than bounces.
  if (reply.code === 503) return [constants.DENYSOFT, DSN.create(451, 'Backend protocol error, try again later', 4, 5), 451];
  return [isOk(reply, 5) ? constants.DENY : constants.DENYSOFT, dsnFrom(reply), reply.code];
}

/** The backend refused the message: the client gets the backend's own code (mailproxy-smtp sends it). */
export function refuse(plugin: ForwardPlugin, next: Next, transaction: Transaction, reply: Reply): void {
  transaction.results.add(plugin, { fail: `backend ${reply.code}` });
  const [code, dsn, replyCode] = refusal(reply);
  transaction.notes[REPLY_CODE_NOTE] = replyCode;
  next(code, dsn);
}

/** Fail closed: drop the backend session and defer, whatever went wrong. */
export function backendUnavailable(plugin: ForwardPlugin, connection: Connection, next: Next, what: string, err?: Error): void {
  if (err) connection.results.add(plugin, { err: err.message });
  connection.logerror(plugin, err ? `${what}: ${err.message}` : what);
  dropBackend(connection);
  deferWith(connection, next, DSN.create(451, 'Backend temporarily unavailable, try again later', 4, 1));
}

/** DENYSOFT with the DSN's own code: Haraka's queue reply keeps only the DSN's text (and says 450). */
function deferWith(connection: Connection, next: Next, dsn: Dsn): void {
  if (connection.transaction) connection.transaction.notes[REPLY_CODE_NOTE] = 451;
  next(constants.DENYSOFT, dsn);
}

/** The transaction's backend session is gone: nothing more of this transaction can be accepted. */
export function transactionLost(plugin: ForwardPlugin, connection: Connection, next: Next, when: string, why = ''): void {
  connection.logwarn(plugin, `backend session of this transaction was lost before ${when}${why ? ` (${why})` : ''}: refusing with 4xx`);
  connection.transaction?.results.add(plugin, { fail: `backend session lost before ${when}` });
  deferWith(connection, next, DSN.create(451, 'Connection to the backend was lost during this transaction; send the message again', 4, 4));
}

/** Over limits.max_backend_sessions: 421 and the session ends (RFC 5321 §3.8). Nothing this session could
 * send would get a backend session now, and a 451 per recipient would keep it, and its client slot, open;
 * after a 421 the sender queues the message and retries later, or tries the next MX. */
export function backendBusy(plugin: ForwardPlugin, connection: Connection, next: Next, err: BackendBusy): void {
  connection.transaction?.results.add(plugin, { fail: err.reason });
  logDecision(connection, plugin, { action: 'refuse', ip: connection.remote.ip, check: 'limits', reason: err.reason, code: 421, extra: { limit: err.limit } });
  next(constants.DENYSOFTDISCONNECT, DSN.create(421, 'Mail server busy, try again later', 7, 0));
}
