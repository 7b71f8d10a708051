// An SMTP session as Haraka 3.3.4 hands it to hooks: its Connection (connection.js), the Transaction open on
// it (transaction.js), their addresses (@haraka/email-address), notes (haraka-notes) and results
// (haraka-results). Only what our plugins read or write is listed, typed as Haraka sets it; a plugin whose
// helpers need less takes a Pick<> of these.
import type { ClientSocket } from './socket';

/** haraka-notes: a plain object for a plugin's own keys, with dotted-path get/set. */
export type Notes = Record<string, unknown> & {
  get(path: string): unknown;
  set(path: string, value: unknown): void;
};

/** haraka-results: what a plugin found, for the logs and later plugins. */
export interface ResultStore {
  add(plugin: unknown, result: object): void;
}

/** An envelope address. A bare `postmaster` has user 'postmaster' and host ''; the null sender has both ''. */
export interface Address {
  user: string;
  host: string;
  /** `user@host` as the client wrote the host; a property, not a method. */
  readonly address: string;
  original: string;
  isNull(): boolean;
}

/** haraka-message-stream 2.0.8: the message as the transaction stores it (in memory, then spooled). */
export interface MessageStream {
  add_line(line: Buffer | string): unknown;
  add_line_end(cb?: () => void): unknown;
  /** Bytes given to add_line so far. */
  bytes_read: number;
  /** Bytes held in memory so far; past spool_after the stream writes them to its spool file. */
  total_buffered: number;
  spooling: boolean;
  pipe(destination: NodeJS.WritableStream, options?: { dot_stuffed?: boolean; ending_dot?: boolean; skip_headers?: boolean; end?: boolean }): unknown;
  once(event: 'error', listener: (err: Error) => void): unknown;
  destroy(): unknown;
}

export interface Transaction {
  uuid: string;
  /** Set by the mail hook's caller: the MAIL FROM address. */
  mail_from: Address;
  /** Haraka pushes a recipient before the rcpt hooks run and pops it when they refuse it. */
  rcpt_to: Address[];
  notes: Notes;
  results: ResultStore;
  message_stream: MessageStream;
  discard_data: boolean;
  end_data(cb: () => void): unknown;
  add_leading_header(key: string, value: string): void;
}

export interface Connection {
  uuid: string;
  client: ClientSocket;
  local: { ip: string; port: number; host: string; info: string };
  /** ip and port are set before any hook runs (a socket without them is destroyed). host and info are
   * Haraka's name for the client (Received header, logs): null until looked up, 'Unknown' for none. */
  remote: { ip: string; port: number; host: string | null; info: string | null; closed: boolean; is_private: boolean; is_local: boolean };
  hello: { verb: string | null; host: string | null };
  tls: { enabled: boolean; advertised: boolean; verified: boolean };
  notes: Notes;
  transaction: Transaction | null;
  results: ResultStore;
  /** constants.connection.state: CMD, DATA, ... DISCONNECTING, DISCONNECTED. */
  state: number;
  start_time: number;
  msg_count: { accept: number; tempfail: number; reject: number };
  /** Set by core when bytes arrive while it has not answered yet (before the banner, or between a command
   * and its reply without PIPELINING). */
  early_talker: boolean;
  /** The last reply written; null until the banner. */
  last_response: string | null;
  /** Set while a plugin hook runs (plugins.js), null between hooks; absent before the first. */
  current_hook?: unknown;
  /** Set after the final dot until the first reply; current_data: the bytes that came after it. */
  awaiting_data_reply: boolean;
  current_data: Buffer | null;
  respond(code: number, msg: unknown, func?: () => void): void;
  disconnect(): void;
  logdebug(...args: unknown[]): void;
  loginfo(...args: unknown[]): void;
  lognotice(...args: unknown[]): void;
  logwarn(...args: unknown[]): void;
  logerror(...args: unknown[]): void;
}
