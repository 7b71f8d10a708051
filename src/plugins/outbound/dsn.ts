// What haraka-out's bounce (an RFC 3464 report, built by Haraka from the rendered outbound.bounce_message)
// says about each recipient. Haraka writes the delivery-status fields from the dsn_* properties it keeps on
// each recipient and the human-readable part's `{extended_reason}` from `reason`; this module decides their
// values. Pure functions only.
import { isIP } from 'node:net';
import type { Failure } from './explain';

/** The properties Haraka keeps on each recipient (an Address in hmail.todo.rcpt_to) for its DSN. */
export interface RecipientDsn {
  reason?: string;
  dsn_action?: string;
  dsn_status?: string;
  dsn_code?: number | string;
  dsn_msg?: string;
  dsn_smtp_code?: string;
  dsn_smtp_extc?: string;
  dsn_smtp_response?: string;
  dsn_remote_mta?: string;
}

export interface BounceContext {
  domain: string;
  /** Haraka's reason for the bounce: `Too many failures (<last error>)` when the retries ran out. */
  reason: string;
  /** Delivery attempts made, the last one included; unknown for recipients Haraka split off another message. */
  attempts?: number;
  /** Time since the message was queued, in milliseconds. */
  ageMs: number;
  /** The MX host the failure came from, when Haraka passed it to the bounce. */
  remote?: { name?: string; address?: string };
  /** The failure as this plugin explains it (MTA-STS, an unreadable queue file). */
  explained?: Failure | null;
}

export type BounceFields = { [K in keyof Required<RecipientDsn>]: RecipientDsn[K] };

const EXPIRED = /^Too many failures \(([\s\S]*)\)$/;
const STATUS = /^[245]\.\d{1,3}\.\d{1,3}$/;

export function isExpiry(reason: string): boolean {
  return EXPIRED.test(reason);
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

export function duration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 120) return plural(seconds, 'second');
  if (seconds < 120 * 60) return plural(Math.round(seconds / 60), 'minute');
  if (seconds < 48 * 3600) return plural(Math.round(seconds / 3600), 'hour');
  return plural(Math.round(seconds / 86400), 'day');
}

function permanent(status: string): string {
  return `5${status.slice(1)}`;
}

function remoteMta(name: string): string {
  return `dns; ${isIP(name) ? `[${name}]` : name}`;
}

/**
 * The DSN properties of one recipient of a bounce (undefined clears one). Haraka prints a Status comment
 * from dsn_code/dsn_msg and leaves Status out without dsn_status; here every recipient gets one plain
 * status of class 5, the remote's reply as Diagnostic-Code when the last attempt got one, and a sentence
 * naming what went wrong and how long delivery was tried.
 */
export function bounceFields(rcpt: RecipientDsn, context: BounceContext): BounceFields {
  const expired = EXPIRED.exec(context.reason);
  const last = expired ? (expired[1] ?? '') : context.reason;
  const remoteName = context.remote?.name && !isIP(context.remote.name) ? context.remote.name : undefined;
  const remoteAddress = context.remote?.address ?? rcpt.dsn_remote_mta;
  const noReply = { dsn_smtp_code: undefined, dsn_smtp_extc: undefined, dsn_smtp_response: undefined, dsn_remote_mta: undefined };

  let status: string;
  let what: string;
  let smtp: Pick<BounceFields, 'dsn_smtp_code' | 'dsn_smtp_extc' | 'dsn_smtp_response' | 'dsn_remote_mta'> = noReply;
  if (context.explained) {
    status = context.explained.status;
    what = context.explained.text;
  } else if (/^Tried all MXs/.test(last)) {
    // Every MX host failed before it answered (refused, timed out, TLS broke): nothing to quote.
    status = '4.4.7';
    what = `no mail server of ${context.domain} could be reached`;
  } else if (rcpt.dsn_smtp_code) {
    const extc = rcpt.dsn_smtp_extc && STATUS.test(rcpt.dsn_smtp_extc) ? rcpt.dsn_smtp_extc : undefined;
    status = extc ?? `${rcpt.dsn_smtp_code[0]}.0.0`;
    const reply = [rcpt.dsn_smtp_code, extc, rcpt.dsn_smtp_response?.trim()].filter(Boolean).join(' ');
    const who = remoteName && remoteAddress ? `${remoteName} (${remoteAddress})` : (remoteName ?? remoteAddress ?? 'the receiving server');
    what = `${who} answered: ${reply}`;
    const mta = remoteName ?? remoteAddress;
    smtp = {
      dsn_smtp_code: rcpt.dsn_smtp_code,
      dsn_smtp_extc: extc,
      dsn_smtp_response: rcpt.dsn_smtp_response,
      dsn_remote_mta: mta ? remoteMta(mta) : undefined,
    };
  } else {
    status = rcpt.dsn_status && STATUS.test(rcpt.dsn_status) ? rcpt.dsn_status : '5.0.0';
    what = rcpt.dsn_msg ? String(rcpt.dsn_msg) : last;
  }

  const { attempts } = context;
  const when = expired
    ? `a temporary failure, given up after ${attempts === undefined ? '' : `${plural(attempts, 'attempt')} over `}${duration(context.ageMs)}`
    : `a permanent failure${attempts === undefined ? '' : `, at ${attempts === 1 ? 'the first attempt' : `attempt ${attempts}`}`}`;
  return {
    reason: `${what} (${when})`,
    dsn_action: 'failed',
    dsn_status: permanent(status),
    dsn_code: undefined,
    dsn_msg: undefined,
    ...smtp,
  };
}
