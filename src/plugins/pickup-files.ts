// haraka-out's pickup directory, both sides: haraka-in drops a message to send there (the backup MX's DSNs),
// haraka-out picks it up into its queue (outbound/pickup.ts). Files, not SMTP, as Postfix's sendmail hands
// mail to its pickup daemon through maildrop/: haraka-out relays only for the backend, never for a local
// process, and the message still leaves through its queue with DANE, MTA-STS and the private-MX rules.
//
//   <id>.eml    the message, CRLF lines, not dot-stuffed
//   <id>.json   its envelope, { "from": "", "to": ["sender@example.org"] }: the commit record, renamed last;
//               "tlsReport": true marks a TLS report (RFC 8460 §3: delivered despite any TLS failure)
//   .tmp-*      being written: never read
//   bad/        pairs that could not be read, moved aside for the operator
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fsyncDir, writeNew } from './store-forward/spool-files';

export interface PickupEnvelope {
  /** The envelope sender; '' for the null sender <>. */
  from: string;
  to: string[];
  /** A TLS report: haraka-out delivers it with opportunistic TLS whatever the domain's policy. */
  tlsReport?: boolean;
}

export const MESSAGE_SUFFIX = '.eml';
/** The transaction note that marks a TLS report in haraka-out's queue (kept in the queue file's notes). */
export const TLS_REPORT_NOTE = 'mailproxy_tls_report';
export const ENVELOPE_SUFFIX = '.json';
export const TEMP_PREFIX = '.tmp-';

/** The envelope of a pickup file's text, or null when it is not one. */
export function parseEnvelope(text: string): PickupEnvelope | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const { from, to, tlsReport } = (value ?? {}) as { from?: unknown; to?: unknown; tlsReport?: unknown };
  if (typeof from !== 'string' || !Array.isArray(to) || to.length === 0 || !to.every((rcpt) => typeof rcpt === 'string' && rcpt.includes('@'))) return null;
  return { from, to: to as string[], ...(tlsReport === true ? { tlsReport } : {}) };
}

/**
 * Writes a message and its envelope into the pickup directory, durably: each to a temp name, fsynced,
 * renamed (the envelope last: the commit), the directory fsynced after each rename. Resolves with the id
 * once both are on disk; a crash before that leaves at most a message without an envelope, which haraka-out
 * moves aside, never sends.
 */
export async function dropIntoPickup(dir: string, envelope: PickupEnvelope, message: Buffer): Promise<string> {
  const id = `${Date.now()}-${randomBytes(6).toString('hex')}`;
  const put = async (suffix: string, data: Buffer | string) => {
    const temp = path.join(dir, `${TEMP_PREFIX}${id}${suffix}`);
    try {
      await writeNew(temp, data);
      await fs.rename(temp, path.join(dir, `${id}${suffix}`));
    } catch (err) {
      await fs.unlink(temp).catch(() => undefined);
      throw err;
    }
    await fsyncDir(dir);
  };
  await put(MESSAGE_SUFFIX, message);
  await put(ENVELOPE_SUFFIX, `${JSON.stringify({ from: envelope.from, to: envelope.to, ...(envelope.tlsReport ? { tlsReport: true } : {}) })}\n`);
  return id;
}
