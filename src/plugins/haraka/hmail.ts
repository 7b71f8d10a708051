// One queued delivery as Haraka 3.3.4's outbound layer holds it: an HMailItem (outbound/hmail.js), one queue
// file for one recipient domain, with its TODOItem (outbound/todo.js) once the file's header is read.
import type { Address } from './connection';

/** The queue file's header: the envelope for this domain. */
export interface OutboundTodo {
  domain: string;
  /** When the message was queued (ms since the epoch). */
  queue_time: number;
  mail_from: Address;
  /** Each recipient also carries the dsn_* fields Haraka writes into a bounce (../outbound/dsn.ts). */
  rcpt_to: Address[];
  notes: Record<string, unknown>;
  uuid: string;
}

export interface HMail {
  /** The queue file's path and name; the name encodes the next attempt and the attempts so far. */
  path: string;
  filename: string;
  /** Failed attempts so far; Haraka bounces once a failure takes it past the number of retry intervals. */
  num_failures: number;
  /** Null until the queue file's header is read. */
  todo: OutboundTodo | null;
  loginfo(msg: string): void;
  lognotice(msg: string): void;
  logwarn(msg: string): void;
  logerror(msg: string): void;
}
