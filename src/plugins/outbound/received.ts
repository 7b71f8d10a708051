// haraka-out's own Received line (header privacy). Haraka's line for a message from the backend
// reads `from <backend HELO> (<backend name> [10.0.0.2]) by <me> (Haraka/<version>) … envelope-from …`,
// and its outbound queue adds a second, `(<received_header>); <date>`. With `[received] rewrite=true`
// the renderer switches both off (connection.ini `headers.add_received=false`, outbound.ini
// `received_header=disabled`) and this module adds exactly one line in their place, naming only the VPS:
//   Received: by <hostname> with ESMTP id <uuid>; <date>
// The protocol is written as RFC 3848 defines it from what the session really was (ESMTP, ESMTPS after
// STARTTLS, ESMTPA/ESMTPSA after AUTH, SMTP after HELO), as Haraka's own received_line() does.
// Every earlier Received line is left as it came (RFC 5321 §4.4), and nothing else in the header changes,
// so a DKIM signature the backend made still verifies: the line goes before the message's bytes as they
// were received, not into Haraka's parsed header (raw-message.ts). Mail haraka-out makes itself (bounces) gets
// `Received: by <hostname> id <uuid>; <date>` when it is queued.

export interface ReceivedIni {
  rewrite?: boolean;
  by?: string;
}

/** The slice of Haraka's connection this module reads. */
export interface ReceivedConnection {
  hello?: { verb?: string | null };
  tls?: { enabled?: boolean };
  authheader?: string | null;
  local?: { host?: string };
  transaction?: ReceivedTransaction | null;
}

export interface ReceivedTransaction {
  uuid: string;
  notes: Record<string, unknown> & { get?(path: string): unknown; set?(path: string, value: unknown): void };
  add_leading_header(key: string, value: string): void;
}

/** The transaction note that says this module already stamped the message. */
const STAMPED = 'mailproxy_received';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const utils = require('haraka-utils') as { date_to_str(date: Date): string };

/** RFC 3848's `with` keyword for the session the message came in on. */
export function protocolOf(connection: ReceivedConnection): string {
  let protocol = connection.hello?.verb === 'EHLO' ? 'ESMTP' : 'SMTP';
  if (connection.tls?.enabled) protocol += 'S';
  if (connection.authheader) protocol += 'A';
  return protocol;
}

/** A host name fit for a header: anything but letters, digits, dots, hyphens and brackets is dropped. */
function headerSafe(host: string): string {
  return host.replace(/[^A-Za-z0-9.\-[\]:]/g, '');
}

/** The value of the Received field (after `Received: `), folded as Haraka folds its own. */
export function receivedValue(by: string, protocol: string | null, id: string, date: Date): string {
  const withPart = protocol ? ` with ${protocol}` : '';
  return `by ${headerSafe(by)}${withPart} id ${headerSafe(id)};\r\n\t${utils.date_to_str(date)}`;
}

/**
 * data_post: the trace line of a message that came in over SMTP, as bytes to put before the message as it
 * was received (raw-message.ts); empty without the rewrite, where Haraka's own line is already the first
 * stored line.
 */
export function smtpTraceLine(cfg: ReceivedIni, connection: ReceivedConnection): Buffer {
  const transaction = connection.transaction;
  if (!cfg.rewrite || !transaction) return Buffer.alloc(0);
  const by = cfg.by || connection.local?.host || 'localhost';
  transaction.notes[STAMPED] = true;
  return Buffer.from(`Received: ${receivedValue(by, protocolOf(connection), transaction.uuid, new Date())}\r\n`);
}

/** pre_send_trans_email: stamp a message haraka-out made itself (a bounce), which no session stamped. */
export function stampLocal(cfg: ReceivedIni, transaction: ReceivedTransaction | undefined): void {
  if (!cfg.rewrite || !transaction || transaction.notes[STAMPED]) return;
  transaction.add_leading_header('Received', receivedValue(cfg.by || 'localhost', null, transaction.uuid, new Date()));
  transaction.notes[STAMPED] = true;
}
