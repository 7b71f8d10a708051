// The DSN (RFC 3464) the backup MX returns to a sender whose kept message the backend refused for good, or
// that could not be delivered within max_age_days. Pure: the facts in, the message's bytes out (CRLF lines,
// ASCII only), sent with MAIL FROM:<> (RFC 3464 §2, RFC 5321 §4.5.5) through haraka-out's pickup directory.
//
//   multipart/report; report-type=delivery-status
//     text/plain                what happened, in words, each recipient with the backend's reply
//     message/delivery-status   Reporting-MTA, Arrival-Date; per recipient Final-Recipient, Action: failed,
//                               Status, Diagnostic-Code, Remote-MTA
//     text/rfc822-headers       the original message's header block
//
// Only the sender whose SPF passed for the original client gets one (drain-plan.ts bounceOrHold).

export interface DsnRecipient {
  address: string;
  /** The backend's reply as one line ("550 5.1.1 No such user"), or the last temporary one for an expiry. */
  reply: string;
}

export interface DsnInput {
  /** This host's name: From MAILER-DAEMON@, Reporting-MTA. */
  hostname: string;
  /** The envelope sender of the kept message (the DSN's recipient). */
  sender: string;
  /** `refused`: the backend answered 5xx; `expired`: not delivered within `maxAgeDays`. */
  kind: 'refused' | 'expired';
  maxAgeDays: number;
  recipients: DsnRecipient[];
  /** The backend, as `dns; name` or `[address]`, when known. */
  remoteMta?: string;
  /** When the message was kept (ms since the epoch). */
  arrivedAt: number;
  now: number;
  /** A unique token for the Message-ID and the MIME boundary. */
  token: string;
  /** The start of the stored message: its dot-stuffed wire bytes (only the header block is used). */
  original: Buffer;
}

const CRLF = '\r\n';

/** Text with anything outside printable ASCII (and tabs) replaced, so the DSN stays 7-bit. */
function ascii(text: string): string {
  return text.replace(/[^\x20-\x7e\t]/g, '?');
}

/** RFC 5322 date-time, in UTC. */
export function rfc5322Date(ms: number): string {
  const date = new Date(ms);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const two = (n: number) => String(n).padStart(2, '0');
  return `${days[date.getUTCDay()]}, ${date.getUTCDate()} ${months[date.getUTCMonth()]} ${date.getUTCFullYear()} ${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} +0000`;
}

/** The enhanced status code (RFC 3463) of a reply, or the class's generic one: 5.0.0, or 4.4.7 for an expiry. */
export function statusOf(reply: string, kind: DsnInput['kind']): string {
  if (kind === 'expired') return '4.4.7';
  const match = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(reply.trim());
  return match?.[1]?.startsWith('5') ? match[1] : '5.0.0';
}

/**
 * The header block of the stored message: its lines up to the first empty one, dot-unstuffed (RFC 5321
 * §4.5.2), CRLF, ASCII only. A message cut before its header ended gives what there is.
 */
export function originalHeaders(original: Buffer): string {
  const all = original.toString('latin1').split(/\r?\n/);
  const end = all.findIndex((line) => line === '' || line === '.');
  // No end of header in what was read: its last line may be cut short, so only whole lines are kept.
  const lines = end >= 0 ? all.slice(0, end) : all.slice(0, -1);
  return lines.map((line) => `${ascii(line.startsWith('.') ? line.slice(1) : line)}${CRLF}`).join('');
}

function explanation(input: DsnInput): string[] {
  const why =
    input.kind === 'refused' ? 'The mail server refused it, so it is returned to you.' : `It could not be delivered within ${input.maxAgeDays} days, so it is returned to you.`;
  return [
    `This is the mail system at host ${input.hostname}.`,
    '',
    `Your message was kept here on ${rfc5322Date(input.arrivedAt)} while the mail server of its recipients could not be reached.`,
    why,
    '',
    ...input.recipients.map((rcpt) => `<${rcpt.address}>: ${rcpt.reply}`),
  ];
}

function deliveryStatus(input: DsnInput): string[] {
  const lines = [`Reporting-MTA: dns; ${input.hostname}`, `Arrival-Date: ${rfc5322Date(input.arrivedAt)}`];
  for (const rcpt of input.recipients) {
    lines.push(
      '',
      `Final-Recipient: rfc822; ${rcpt.address}`,
      'Action: failed',
      `Status: ${statusOf(rcpt.reply, input.kind)}`,
      ...(input.remoteMta ? [`Remote-MTA: ${input.remoteMta}`] : []),
      `Diagnostic-Code: smtp; ${rcpt.reply}`,
      `Last-Attempt-Date: ${rfc5322Date(input.now)}`,
    );
  }
  return lines;
}

/** The DSN's bytes (CRLF lines, not dot-stuffed). */
export function buildDsn(input: DsnInput): Buffer {
  const boundary = `${input.token}/${input.hostname}`;
  const part = (type: string, body: string[]) => [`--${boundary}`, `Content-Type: ${type}`, '', ...body.map(ascii), ''];
  const headers = originalHeaders(input.original);
  const lines = [
    `From: Mail Delivery System <MAILER-DAEMON@${input.hostname}>`,
    `To: <${input.sender}>`,
    'Subject: Undelivered Mail Returned to Sender',
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: <${input.token}@${input.hostname}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    'Content-Transfer-Encoding: 7bit',
    '',
    'This is a MIME-encapsulated message.',
    '',
    ...part('text/plain; charset=us-ascii', explanation(input)),
    ...part('message/delivery-status', deliveryStatus(input)),
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    '',
  ].map(ascii);
  return Buffer.from(`${lines.join(CRLF)}${CRLF}${headers}${CRLF}--${boundary}--${CRLF}`, 'latin1');
}
