// mailproxy-smtp: corrections to Haraka's SMTP replies that no hook can make.
// Haraka answers a message over the size limit with 550 (at MAIL FROM ... SIZE= and after DATA); RFC 5321
// and RFC 1870 say 552, and senders treat 552 as "too big", not "unknown user". Core checks the size
// before any hook runs, so the reply itself is rewritten here.
// Haraka also answers every refused message with 450 or 550, whatever the reason; mailproxy-forward
// leaves the backend's real code in the transaction notes and it is sent instead.
// Refusals Haraka words itself get an RFC 3463 enhanced status code (enhanced.ts).
// A QUIT pipelined right after the final dot (Postfix's SMTP client does it for every message; RFC 2920
// allows a group that ends with QUIT) gets its 221 instead of Haraka 3.3.4's 503 "pipelined after end of
// DATA"; any other pipelined command stays refused, which is what stops SMTP smuggling.
// And it spares Haraka a failing unlink per message (../haraka/patches/unspooled-destroy.ts), limits the
// recipients of one message (max-recipients.ts), and refuses a DATA line of a dot and bare CRs, an end of
// data to Postfix but not to Haraka (dot-cr-line.ts: SMTP smuggling). The replies and DATA lines are
// reached through a patch of Haraka's Connection class (../haraka/patches/connection-replies.ts).
// A message haraka-out could not write to its queue (a full disk) gets 451 4.3.0, not the 550 Haraka 3.3.4
// answers for any temporary failure of its outbound layer: the backend would bounce it to the sender.
// A STARTTLS inside TLS gets 503 5.5.1 (RFC 3207 §4.2); Haraka's tls plugin would answer 220 and try a
// second handshake on the TLS socket, which leaves the session broken.
// Log lines go out a turn of the event loop at a time, not one write(2) each (log-batch.ts).
// Every accepted session gets TCP_NODELAY (../haraka/socket.ts): Haraka writes one reply per command, and a client
// that pipelines (Postfix: MAIL, RCPT, DATA at once) otherwise waits out a delayed ACK for the second reply.
import type { Connection } from '../haraka/connection';
import { constants } from '../haraka/constants';
import { DSN } from '../haraka/dsn';
import type { HarakaPlugin, Next } from '../haraka/plugin';
import { correctConnectionReplies } from '../haraka/patches/connection-replies';
import { skipDestroyOfUnspooledStreams } from '../haraka/patches/unspooled-destroy';
import { setNoDelay } from '../haraka/socket';
import { REPLY_CODE_NOTE } from '../reply-code';
import { withEnhancedStatus } from './enhanced';
import { DOT_CR_REPLY, isDotCrLine } from './dot-cr-line';
import { overRecipientLimit, recipientLimit } from './max-recipients';
import { flushLogLines, plainLogLines, writeLogLine } from './log-batch';

const TOO_BIG = 'Message too big!';
/** What Haraka's outbound layer says when it could not write the queue file (outbound/index.js). */
const QUEUE_WRITE_FAILED = /^(Queueing failed|Queue error|Error from stream line reader: )/;

/** The reply to write in place of Haraka's: 552 for size, 451 for a queue that could not be written, the
 * backend's own code when mailproxy-forward left it, an enhanced status code on the rest. */
function correctReply(connection: Pick<Connection, 'transaction'>, code: number, msg: unknown): [number, unknown] {
  if (code === 550 && msg === TOO_BIG) return [552, '5.3.4 Message size exceeds fixed maximum message size'];
  if (code === 550 && typeof msg === 'string' && QUEUE_WRITE_FAILED.test(msg)) {
    return [451, `4.3.0 ${msg}: the queue could not be written, try again later`];
  }
  const notes = connection.transaction?.notes;
  const wanted = notes?.[REPLY_CODE_NOTE];
  if (notes && typeof wanted === 'number' && code >= 400 && Math.floor(wanted / 100) === Math.floor(code / 100)) {
    delete notes[REPLY_CODE_NOTE];
    return [wanted, withEnhancedStatus(wanted, msg)];
  }
  return [code, withEnhancedStatus(code, msg)];
}

function refuseDotCrLine(line: unknown): { log: string; text: string } | null {
  return isDotCrLine(line) ? { log: 'Client sent a dot and bare CRs as a line in DATA: refused', text: DOT_CR_REPLY } : null;
}

export function register(this: HarakaPlugin): void {
  const connectionIni = this.config.get('connection.ini') as { main?: { spool_after?: unknown }; max?: { recipients?: unknown } };
  if (!skipDestroyOfUnspooledStreams(Number(connectionIni.main?.spool_after))) {
    this.logwarn('cannot patch haraka-message-stream: every message costs a failing unlink');
  }
  this.max_recipients = recipientLimit(connectionIni.max);
  if (this.max_recipients) this.register_hook('rcpt', 'limit_recipients');
  this.register_hook('unrecognized_command', 'refuse_starttls_in_tls');
  this.register_hook('connect_init', 'no_delay');
  this.register_hook('log', 'batch_log_line');
  const outcome = correctConnectionReplies({ reply: correctReply, refuseDataLine: refuseDotCrLine, beforeReply: flushLogLines });
  if (outcome === 'no-connection-class') this.logerror('cannot find Haraka Connection class: size replies stay 550, dot-CR lines are not refused');
  if (outcome === 'without-data-lines') this.logerror('cannot find Haraka accumulate_data: dot-CR lines are not refused');
}

export function limit_recipients(this: HarakaPlugin, next: Next, connection: Connection): void {
  const limit = this.max_recipients as number;
  if (connection.transaction && overRecipientLimit(connection.transaction.rcpt_to.length, limit)) {
    return next(constants.DENYSOFT, DSN.create(452, `Too many recipients: at most ${limit} per message, send the rest in another`, 5, 3));
  }
  next();
}

/** log: the line goes out with the others of this turn of the event loop (log-batch.ts). */
export function batch_log_line(this: HarakaPlugin, next: Next, logger: { timestamps?: unknown }, item: { data?: unknown }): void {
  if (!plainLogLines(logger) || typeof item?.data !== 'string') return next();
  writeLogLine(item.data);
  next(constants.OK);
}

/** connect_init: TCP_NODELAY on the client's socket, before the banner (Haraka's wrapper ignores setNoDelay). */
export function no_delay(this: HarakaPlugin, next: Next, connection: Connection): void {
  if (!setNoDelay(connection.client)) this.logwarn('cannot set TCP_NODELAY on the client socket: pipelined replies wait for delayed ACKs');
  next();
}

/** unrecognized_command: STARTTLS on a session that already runs TLS. */
export function refuse_starttls_in_tls(this: HarakaPlugin, next: Next, connection: Connection, params: unknown[]): void {
  if (connection.tls?.enabled && String(params?.[0] ?? '').toUpperCase() === 'STARTTLS') {
    return next(constants.DENY, DSN.create(503, 'TLS already active', 5, 1));
  }
  next();
}
