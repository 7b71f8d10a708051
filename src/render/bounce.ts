// haraka-out's bounce template, config/outbound.bounce_message. Haraka (outbound/hmail.js) reads it raw, as
// the lines of a message: the headers up to the first empty line, then the text of the human-readable part
// of the multipart/report it builds around them (declared us-ascii, so the text stays ASCII). It fills
// {name} placeholders: {me} is config/me, {to} the original sender, {msgid} a new Message-Id, {subject} the
// original subject (decoded), {extended_reason} one line per recipient, "<address>: <reason>", whose reason
// mailproxy-outbound writes (src/plugins/outbound/dsn.ts). Haraka adds Content-Type and the report parts.
// No comment is possible: every line of this file is a line of the bounce.

const HEADERS = [
  'Date: {date}',
  'From: Mail Delivery System <MAILER-DAEMON@{me}>',
  'To: {to}',
  'Subject: Undelivered Mail Returned to Sender',
  'Message-Id: {msgid}',
  'Auto-Submitted: auto-replied',
  'MIME-Version: 1.0',
];

const TEXT = [
  'This is the mail system at {me}.',
  '',
  'Your message could not be delivered to the recipients below. For each one:',
  'what the receiving mail server answered, or what went wrong, and how long',
  'delivery was tried.',
  '',
  '{extended_reason}',
  '',
  'The subject of your message: {subject}',
  '',
  'Its headers are attached. If you need help, forward this report to the',
  'postmaster of your mail system.',
];

export function bounceMessage(): string {
  return `${[...HEADERS, '', ...TEXT].join('\n')}\n`;
}
