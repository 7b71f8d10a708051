// Haraka runs no hook for the reply it writes, nor for a DATA line before it stores it: mailproxy-smtp's
// corrections of both wrap two methods of Haraka's Connection class, respond() and accumulate_data().
// respond() also lets a QUIT pipelined right after the final dot through (Postfix's SMTP client does it for
// every message; RFC 2920 allows a group that ends with QUIT): Haraka 3.3.4 answers 503 "pipelined after
// end of DATA" to every command there; any other stays refused, which is what stops SMTP smuggling.
// Patches a Haraka internal, pinned to Haraka 3.3.4 (connection.js): test/unit/smtp-haraka-pin.test.ts
// fails when Haraka changes.
import type { Connection } from '../connection';

/** What mailproxy-smtp writes instead of Haraka's replies and which DATA lines it refuses. */
export interface ReplyCorrections {
  /** The code and message to write for Haraka's (the same ones to leave it as it is). */
  reply(connection: Connection, code: number, msg: unknown): [code: number, msg: unknown];
  /** A DATA line refused before it is stored, as Haraka refuses a bare LF (451, then close): the log
   * line and the reply text, or null to store it. */
  refuseDataLine(line: unknown): { log: string; text: string } | null;
  /** Runs before each reply is written (mailproxy-smtp writes the log lines still pending, so that a line
   * logged before a reply is out before the client can read the reply). */
  beforeReply?: () => void;
}

/** installed: both methods wrapped (now or before); without-data-lines: respond() only, as accumulate_data()
 * is missing; no-connection-class: nothing wrapped. */
export type PatchOutcome = 'installed' | 'without-data-lines' | 'no-connection-class';

type ConnectionMethods = Pick<Connection, 'respond'> & { accumulate_data?(line: unknown): unknown };

/** Exactly one QUIT line, CRLF-terminated: the only command a client may pipeline after the final dot
 * that we let through (anything else, or any other line ending, is refused as Haraka does). */
const LONE_QUIT = /^QUIT\r\n$/i;

let installed = false;

function letLoneQuitThrough(connection: Connection): void {
  if (!connection.awaiting_data_reply || !connection.current_data) return;
  if (connection.current_data.length > 16 || !LONE_QUIT.test(connection.current_data.toString('latin1'))) return;
  // Haraka then processes the buffered QUIT after this reply, as it would any command.
  connection.awaiting_data_reply = false;
}

/** Wraps Connection.prototype.respond and accumulate_data once per process; later calls change nothing. */
export function correctConnectionReplies(corrections: ReplyCorrections): PatchOutcome {
  if (installed) return 'installed';
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const connectionModule = require('haraka/connection') as { Connection?: { prototype: ConnectionMethods } };
  const proto = connectionModule.Connection?.prototype;
  if (!proto) return 'no-connection-class';
  const accumulate = proto.accumulate_data;
  if (typeof accumulate === 'function') {
    proto.accumulate_data = function accumulateData(this: Connection, line: unknown) {
      const refusal = corrections.refuseDataLine(line);
      if (!refusal) return accumulate.call(this, line);
      // Nothing after the line is read.
      this.lognotice?.(refusal.log);
      return this.respond(451, refusal.text, () => this.disconnect?.());
    };
  }
  const original = proto.respond;
  proto.respond = function respond(this: Connection, code: number, msg: unknown, func?: () => void) {
    letLoneQuitThrough(this);
    corrections.beforeReply?.();
    const [sentCode, sentMsg] = corrections.reply(this, code, msg);
    return original.call(this, sentCode, sentMsg, func);
  };
  installed = true;
  return typeof accumulate === 'function' ? 'installed' : 'without-data-lines';
}
