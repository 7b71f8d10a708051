// The messages of the transparency tests, and sending one as a real client does: each of these is
// something Haraka's parsed header would have changed.
import { expect } from 'vitest';
import { SmtpScript } from '../../src/smtp/script';

export const latin1 = (text: string) => Buffer.from(text, 'latin1');
const utf8 = (text: string) => Buffer.from(text, 'utf8');

export interface TransparencyCase {
  name: string;
  message: Buffer;
  helo?: boolean;
  smtputf8?: boolean;
}

const BODY = 'Hello,\r\n\r\nthis is the body.\r\n';
export const CASES: TransparencyCase[] = [
  { name: '8-bit Latin-1 header bytes under EHLO', message: latin1(`From: Andr\xe9 <andre@example.net>\r\nTo: alice@demo.test\r\nSubject: caf\xe9 cr\xe8me\r\n\r\n${BODY}`) },
  { name: 'UTF-8 headers under HELO', helo: true, message: utf8(`From: Jürgen <j@example.net>\r\nTo: alice@demo.test\r\nSubject: naïve café ☕\r\n\r\n${BODY}`) },
  { name: 'SMTPUTF8 with UTF-8 headers', smtputf8: true, message: utf8(`From: Zoë <zoe@example.net>\r\nTo: alice@demo.test\r\nSubject: Grüße aus Köln\r\n\r\nGrüße\r\n`) },
  {
    name: 'more than 1,000 header lines',
    message: latin1(
      `From: a@example.net\r\nTo: alice@demo.test\r\nSubject: many lines\r\n${Array.from({ length: 1100 }, (_, i) => `X-Trace-${i}: hop ${i}\r\n`).join('')}\r\n${BODY}`,
    ),
  },
  {
    name: 'long folded headers and trailing whitespace',
    message: latin1(
      `From: a@example.net  \r\nTo: alice@demo.test\r\nSubject: a subject that goes on\r\n  and on\t\r\n\tand on  \r\nX-Long: ${'word '.repeat(200)}\r\n\r\nbody line with trailing spaces   \r\n\t\r\n`,
    ),
  },
  {
    name: 'lines that start with dots',
    message: latin1(`From: a@example.net\r\nTo: alice@demo.test\r\nSubject: dots\r\nX-Dot: one\r\n .two\r\n\r\n.\r\n..\r\n.leading\r\n. space\r\n`),
  },
  {
    name: 'over the one-write limit, with 8-bit content',
    message: latin1(`From: a@example.net\r\nTo: alice@demo.test\r\nSubject: gro\xdf\r\n\r\n${`caf\xe9 ${'\xe9'.repeat(60)}\r\n`.repeat(5000)}`),
  },
  { name: 'a header-only message', message: latin1('From: a@example.net\r\nTo: alice@demo.test\r\nSubject: only a header\r\n') },
];

/** Dot-stuffing as an SMTP client does it: a line that starts with a dot gets a second one. */
export function dotStuffed(message: Buffer): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  while (start < message.length) {
    const lf = message.indexOf(0x0a, start);
    const end = lf === -1 ? message.length : lf + 1;
    if (message[start] === 0x2e) parts.push(Buffer.from('.'));
    parts.push(message.subarray(start, end));
    start = end;
  }
  return Buffer.concat(parts);
}

/** One message through a session of its own: EHLO (or HELO), MAIL, one RCPT, DATA; expects 250 throughout. */
export async function sendRaw(host: string, port: number, localAddress: string, rcpt: string, test: TransparencyCase, message: Buffer): Promise<void> {
  const session = await SmtpScript.connect(host, port, localAddress);
  try {
    expect((await session.reply()).code).toBe(220);
    expect((await session.command(`${test.helo ? 'HELO' : 'EHLO'} client.example.net`)).code).toBe(250);
    const params = test.helo ? '' : ` BODY=8BITMIME${test.smtputf8 ? ' SMTPUTF8' : ''}`;
    expect((await session.command(`MAIL FROM:<sender@example.net>${params}`)).lines.join(' ')).toMatch(/^250/);
    expect((await session.command(`RCPT TO:<${rcpt}>`)).lines.join(' ')).toMatch(/^250/);
    expect((await session.command('DATA')).code).toBe(354);
    session.write(Buffer.concat([dotStuffed(message), Buffer.from('.\r\n')]));
    const final = await session.reply(60_000);
    expect(final.lines.join(' ')).toMatch(/^250/);
  } finally {
    session.close();
  }
}

/** The arrived message is one header field this hop added (a Received line) and then the signed message. */
export function expectTraceThenMessage(arrived: Buffer, sent: Buffer): void {
  expect(arrived.length).toBeGreaterThan(sent.length);
  const tail = arrived.subarray(arrived.length - sent.length);
  // Compared as bytes: no re-encoding, no line lost, nothing appended.
  expect(tail.equals(sent), `the message changed on the way:\n${diffAt(tail, sent)}`).toBe(true);
  const prefix = arrived.subarray(0, arrived.length - sent.length).toString('latin1');
  expect(prefix).toMatch(/^Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*$/);
}

/** Where the arrived bytes (aligned at their end with the sent message) differ last. */
function diffAt(got: Buffer, want: Buffer): string {
  let back = 1;
  while (back <= want.length && got[got.length - back] === want[want.length - back]) back++;
  const at = want.length - back;
  const around = (buffer: Buffer, end: number) => JSON.stringify(buffer.subarray(Math.max(0, end - 40), end + 10).toString('latin1'));
  return `last difference ${back - 1} bytes before the end: got ${around(got, got.length - back)}, sent ${around(want, at)}`;
}
