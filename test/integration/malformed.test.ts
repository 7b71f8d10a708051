// Malformed input against haraka-in: each kind of bad input gets its expected reply, and
// after each one the next client is served (a control message through a fresh session). The backend
// stand-in counts what it received: every control message, the lawful messages the cases send, nothing else.
import { describe, expect, it } from 'vitest';
import type { Topology } from '../../src/demo/topology';
import { RawSmtp } from '../helpers/raw-smtp';
import { useTopology } from '../helpers/topology';

const MAX_SIZE = 64 * 1024;
const INACTIVITY = 10;

/** A line to write (latin1: every char one byte) and the reply code it must get, or 'closed'. */
type Step = [string, number | 'closed'];

interface Case {
  name: string;
  /** EHLO name, or null for none. */
  helo?: string | null;
  steps: Step[];
}

const message = (subject: string, body: string) => `From: sender@example.net\r\nTo: alice@demo.test\r\nSubject: ${subject}\r\n\r\n${body}\r\n.\r\n`;

const LONG_LINE_OK = 'k'.repeat(998);
// Over RFC 5322's 998, under the 64 KB haraka-in takes as it is (src/haraka/data-line.ts): handed on whole.
const LONG_LINE_OVER_RFC = 'w'.repeat(1500);

const CASES: Case[] = [
  {
    name: 'a command line of 512 octets is served, one of 513 gets 521 and the connection is closed',
    steps: [
      [`NOOP ${'x'.repeat(505)}\r\n`, 250],
      [`NOOP ${'x'.repeat(506)}\r\n`, 521],
      ['NOOP\r\n', 'closed'],
    ],
  },
  {
    name: 'an over-long MAIL FROM gets 521 and the connection is closed',
    steps: [
      [`MAIL FROM:<${'a'.repeat(600)}@example.net>\r\n`, 521],
      ['NOOP\r\n', 'closed'],
    ],
  },
  {
    name: 'a bare CR inside a command line makes one unknown command, never two commands',
    steps: [
      ['NOOP\rMAIL FROM:<x@example.net>\r\n', 500],
      ['MAIL FROM:<a@example.net>\rRCPT TO:<alice@demo.test>\r\n', 500],
      ['RCPT TO:<alice@demo.test>\r\n', 503],
      ['EHLO a\rb\r\n', 500],
      ['NOOP\r\n', 250],
    ],
  },
  {
    name: 'NUL in a command: 500 for a verb, 501 for an address',
    steps: [
      ['NOOP\0\r\n', 500],
      ['\0\r\n', 500],
      ['MAIL FROM:<a\0b@example.net>\r\n', 501],
      ['MAIL FROM:<a@example.net>\r\n', 250],
      ['RCPT TO:<al\0ice@demo.test>\r\n', 501],
      ['RCPT TO:<alice@demo.test>\0\r\n', 501],
      ['RCPT TO:<alice@demo.test>\r\n', 250],
      ['RSET\r\n', 250],
    ],
  },
  {
    name: '8-bit bytes in commands: a UTF-8 HELO and sender are taken, the backend judges the recipients',
    helo: 'h\xc3\xa9.example.net',
    steps: [
      ['MAIL FROM:<j\xc3\xb6@example.net>\r\n', 250],
      // Not UTF-8: Haraka reads the byte as U+FFFD; the backend refuses the address it is asked about.
      ['RCPT TO:<\xe9@demo.test>\r\n', 550],
      ['RCPT TO:<j\xc3\xb6@demo.test>\r\n', 550],
      ['RCPT TO:<alice@demo.test>\r\n', 250],
      ['DATA\r\n', 354],
      [message('eight-bit sender', 'body'), 250],
      ['MAIL FROM:<j\xc3\xb6@example.net> SMTPUTF8\r\n', 250],
      ['RSET\r\n', 250],
    ],
  },
  {
    name: 'invalid addresses get 501; the null sender is lawful; an empty recipient gets 550',
    steps: [
      ['MAIL FROM:<@>\r\n', 501],
      ['MAIL FROM:<a@b@c>\r\n', 501],
      ['MAIL FROM:<a b@example.net>\r\n', 501],
      ['MAIL FROM:<>\r\n', 250],
      ['RCPT TO:<alice@>\r\n', 501],
      ['RCPT TO:<@demo.test>\r\n', 501],
      ['RCPT TO:<alice@demo.test\r\n', 501],
      ['RCPT TO:<alice@demo..test>\r\n', 501],
      ['RCPT TO:<>\r\n', 550],
      ['RSET\r\n', 250],
    ],
  },
  {
    name: 'more recipients than max_recipients (100): 452 4.5.3 past the limit, the first 100 delivered in one message',
    steps: [
      ['MAIL FROM:<list@example.net>\r\n', 250],
      ...Array.from({ length: 100 }, (_, i): Step => [`RCPT TO:<user${i}@demo.test>\r\n`, 250]),
      ['RCPT TO:<user100@demo.test>\r\n', 452],
      ['RCPT TO:<user101@demo.test>\r\n', 452],
      ['DATA\r\n', 354],
      [message('one hundred recipients', 'body'), 250],
    ],
  },
  {
    name: 'a message over the size limit gets 552 at MAIL (SIZE=) and after the data, and the session goes on',
    steps: [
      [`MAIL FROM:<a@example.net> SIZE=${MAX_SIZE + 1}\r\n`, 552],
      [`MAIL FROM:<a@example.net> SIZE=${MAX_SIZE}\r\n`, 250],
      ['RCPT TO:<alice@demo.test>\r\n', 250],
      ['DATA\r\n', 354],
      [message('too big', `${'y'.repeat(78)}\r\n`.repeat(Math.ceil((MAX_SIZE * 1.5) / 80))), 552],
      ['NOOP\r\n', 250],
    ],
  },
  {
    name: 'MAIL and RCPT before EHLO get 503',
    helo: null,
    steps: [
      ['MAIL FROM:<a@example.net>\r\n', 503],
      ['RCPT TO:<alice@demo.test>\r\n', 503],
      ['DATA\r\n', 503],
      ['EHLO client.example.net\r\n', 250],
    ],
  },
  {
    name: 'ordering games: RCPT or DATA out of sequence, EHLO mid-transaction, unsupported and empty commands',
    steps: [
      ['RCPT TO:<alice@demo.test>\r\n', 503],
      ['DATA\r\n', 503],
      ['MAIL FROM:<a@example.net>\r\n', 250],
      ['DATA\r\n', 503],
      // A second MAIL starts a new transaction in Haraka (the first one is forgotten).
      ['MAIL FROM:<b@example.net>\r\n', 250],
      ['RCPT TO:<alice@demo.test>\r\n', 250],
      // EHLO resets the transaction: DATA has nothing to send.
      ['EHLO again.example.net\r\n', 250],
      ['DATA\r\n', 503],
      ['HELO\r\n', 501],
      ['EHLO\r\n', 501],
      ['BDAT 10 LAST\r\n', 500],
      ['AUTH PLAIN AGFhAGI=\r\n', 500],
      ['EXPN staff\r\n', 500],
      ['VRFY alice\r\n', 252],
      ['MAIL FROM:<a@example.net>\r\n', 250],
      ['RCPT TO:<x@elsewhere.example>\r\n', 550],
      ['DATA\r\n', 503],
      ['QUIT\r\n', 221],
    ],
  },
  {
    name: 'DATA lines: 998 octets pass untouched, a longer one is folded with CRLF SP (data_line_length=1000)',
    steps: [
      ['MAIL FROM:<a@example.net>\r\n', 250],
      ['RCPT TO:<alice@demo.test>\r\n', 250],
      ['DATA\r\n', 354],
      [message('long lines', `${LONG_LINE_OK}\r\n${LONG_LINE_OVER_RFC}`), 250],
    ],
  },
];

async function control(t: Topology, subject: string): Promise<number> {
  const client = await RawSmtp.open(t.inbound.host, t.inbound.port);
  for (const line of ['MAIL FROM:<sender@example.net>', 'RCPT TO:<alice@demo.test>', 'DATA']) await client.command(line);
  client.write(message(subject, 'the next client is served'));
  const final = await client.reply();
  client.close();
  return final?.code ?? 0;
}

describe('haraka-in answers malformed input and serves the next client', () => {
  const topology = useTopology({
    instances: ['haraka-in'],
    internet: false,
    // The backend refuses addresses that are not plain ASCII, as Postfix does for unknown (or invalid UTF-8) users.
    backend: { rejectRecipient: (address) => (/[^\x21-\x7e]/.test(address) ? '550 5.1.1 no such user' : null) },
    tweak: (config) => void (config.inbound = { ...config.inbound, max_message_size: MAX_SIZE, inactivity_timeout: INACTIVITY }),
  });

  it('gives each malformed input its reply, then serves a new client', async () => {
    const t = topology();
    let replies = 0;
    for (const [index, test] of CASES.entries()) {
      const client = await RawSmtp.open(t.inbound.host, t.inbound.port, { helo: test.helo === undefined ? 'client.example.net' : test.helo });
      for (const [line, expected] of test.steps) {
        client.write(line);
        const reply = await client.reply(expected === 'closed' ? 3000 : 15_000);
        const got = reply ? reply.code : client.closed ? 'closed' : 'no reply';
        expect(got, `${test.name}: ${JSON.stringify(line.slice(0, 60))} (${reply?.text ?? ''})`).toBe(expected);
        if (reply?.code === 452) expect(reply.text).toMatch(/^4\.5\.3 Too many recipients/);
        if (reply?.code === 552) expect(reply.text).toMatch(/^5\.3\.4 /);
        replies += 1;
      }
      client.close();
      expect(await control(t, `control ${index}`), `the client after "${test.name}"`).toBe(250);
    }

    const lawful = ['eight-bit sender', 'one hundred recipients', 'long lines'];
    const received = await t.backend!.waitForMessages(CASES.length + lawful.length);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(t.backend!.messages.map((m) => m.subject).sort()).toEqual([...CASES.map((_, index) => `control ${index}`), ...lawful].sort());
    const hundred = received.find((m) => m.subject === 'one hundred recipients')!;
    expect(hundred.rcptTo).toEqual(Array.from({ length: 100 }, (_, i) => `user${i}@demo.test`));
    expect(received.find((m) => m.subject === 'eight-bit sender')?.mailFrom).toBe('jö@example.net');
    const long = received.find((m) => m.subject === 'long lines')!.raw.toString('latin1');
    expect(long).toContain(`\r\n${LONG_LINE_OK}\r\n`);
    expect(long).toContain(`\r\n${LONG_LINE_OVER_RFC}\r\n`);
    console.info(
      `malformed input: ${CASES.length} cases, ${replies} replies as expected, ${CASES.length} next clients served, backend received ${t.backend!.messages.length} messages (${lawful.length} lawful ones from the cases), nothing else`,
    );
  }, 120_000);

  it('closes a client that never sends with 421 after inactivity_timeout, and serves others meanwhile', async () => {
    const t = topology();
    const started = Date.now();
    const idle = await RawSmtp.connect(t.inbound.host, t.inbound.port);
    expect((await idle.reply())?.code).toBe(220);
    const silent = await RawSmtp.connect(t.inbound.host, t.inbound.port);
    // The second client stays silent after EHLO, in the middle of a session.
    expect((await silent.reply())?.code).toBe(220);
    expect((await silent.command('EHLO quiet.example.net'))?.code).toBe(250);
    expect(await control(t, 'during the idle clients')).toBe(250);
    for (const client of [idle, silent]) {
      const reply = await client.reply((INACTIVITY + 10) * 1000);
      expect(reply?.code).toBe(421);
      expect(await client.reply(3000)).toBeNull();
      expect(client.closed).toBe(true);
    }
    const elapsed = (Date.now() - started) / 1000;
    expect(elapsed).toBeGreaterThanOrEqual(INACTIVITY - 0.5);
    expect(elapsed).toBeLessThan(INACTIVITY + 8);
    expect(await control(t, 'after the idle clients')).toBe(250);
    console.info(`inactivity: 2 silent clients got 421 after ${elapsed.toFixed(1)} s (inactivity_timeout ${INACTIVITY} s); 2 other clients served`);
  }, 60_000);
});
