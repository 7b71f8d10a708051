// Identity abuse against haraka-in, judged by the real Postfix behind it: XCLIENT (or
// XFORWARD) sent *to* haraka-in is refused and changes nothing, and a client whose PTR name carries CR, LF,
// NUL, spaces, `=`, `+`, non-ASCII bytes or too many characters reaches Postfix only xtext-encoded or as
// [UNAVAILABLE]. What Postfix was told is read from its own log: the XCLIENT lines it received (debug_peer_list
// on the forwarder's address) and its `client=NAME[ADDR]` line.
import { describe, expect, it } from 'vitest';
import { LOOPBACK, type Topology } from '../../src/demo/topology';
import { dataPayload, message, openSession, type SmtpScript } from '../../src/smtp/script';
import { postfixUnavailableReason, type PostfixInstance } from '../fixtures/postfix';
import { missingPeers, requirePeers } from '../helpers/peers';
import { harakaInFront, usePostfixBackend } from '../helpers/postfix-backend';
import { eventually } from '../helpers/poll';
import { withTopology } from '../helpers/topology';

const runnable = requirePeers('identity abuse against real Postfix', missingPeers(['/usr/sbin/postfix'], [postfixUnavailableReason()]));

const LONG = `${['a', 'b', 'c', 'd'].map((c) => c.repeat(60)).join('.')}.example.n`;
const reverse = (ip: string) => `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
const escapeRe = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** MAIL, RCPT, DATA and a message with a unique subject; the final reply code (0 when refused earlier). */
async function deliver(session: SmtpScript, subject: string, rcpt = 'alice@demo.test'): Promise<number> {
  if ((await session.command('MAIL FROM:<sender@example.net>')).code !== 250) return 0;
  if ((await session.command(`RCPT TO:<${rcpt}>`)).code !== 250) return 0;
  if ((await session.command('DATA')).code !== 354) return 0;
  session.write(dataPayload(message(subject, 'identity test')));
  return (await session.reply()).code;
}

/** The Postfix queue id and `client=` value of the message whose Subject is `subject`. */
async function clientOf(postfix: PostfixInstance, subject: string): Promise<{ queueId: string; client: string; content: string }> {
  const delivered = await eventually(`Postfix to deliver "${subject}"`, async () => (await postfix.delivered()).find((m) => m.content.includes(`Subject: ${subject}\n`)), {
    context: () => '',
  });
  const queueId = /with ESMTP id ([0-9A-F]+)/.exec(delivered.content)?.[1] ?? 'none';
  const line = await postfix.waitForLog(new RegExp(`: ${queueId}: client=(\\S*)$`));
  return { queueId, client: line[1] ?? '', content: delivered.content };
}

/** Every XCLIENT command line Postfix received from the forwarder for a client address. */
async function xclientLinesFor(postfix: PostfixInstance, ip: string): Promise<string[]> {
  const lines = (await postfix.log()).split('\n').filter((line) => /\]: < [^:]*\[127\.0\.0\.3\]: XCLIENT /.test(line));
  // The forwarder puts ADDR in the last command of a split XCLIENT; a session's lines end with that one.
  const out: string[] = [];
  let pending: string[] = [];
  for (const line of lines) {
    const command = line.replace(/^.*\]: XCLIENT/, 'XCLIENT');
    pending.push(command);
    if (/ ADDR=/.test(command)) {
      if (command.endsWith(` ADDR=${ip}`)) out.push(...pending);
      pending = [];
    }
  }
  return out;
}

describe.runIf(runnable)('identity abuse through haraka-in into a real Postfix', () => {
  const postfix = usePostfixBackend({ users: ['alice', 'bob'], extraMainCf: { debug_peer_list: LOOPBACK.wireguard, debug_peer_level: '2' } });

  function withHarakaIn<T>(body: (t: Topology) => Promise<T>): Promise<T> {
    return withTopology(
      harakaInFront(
        () => postfix().port,
        (config) => void (config.backend = { ...config.backend, rdns_timeout: 2 }),
      ),
      body,
    );
  }

  it('refuses XCLIENT and XFORWARD from anyone, 127.0.0.1 included, and Postfix sees the real client', async () => {
    await withHarakaIn(async (t) => {
      const attempts = [
        'XCLIENT ADDR=6.6.6.6 NAME=spoofed.example.org',
        'XCLIENT NAME=spoofed.example.org HELO=spoofed.example.org',
        'xclient addr=6.6.6.6',
        'XCLIENT ADDR=IPV6:2001:db8::6 PORT=25 PROTO=ESMTP',
        'XFORWARD ADDR=6.6.6.6 NAME=spoofed.example.org',
      ];
      let refused = 0;
      for (const source of ['127.0.0.1', '127.0.0.9']) {
        for (const [index, attempt] of attempts.entries()) {
          const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: source, helo: 'honest.example.net' });
          const reply = await session.command(attempt);
          expect(reply.code, `${attempt} from ${source}: ${reply.text}`).toBeGreaterThanOrEqual(500);
          refused += 1;
          // The session goes on as the real client; a second try after MAIL changes nothing either.
          expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
          expect((await session.command(attempt)).code).toBeGreaterThanOrEqual(500);
          expect((await session.command('RSET')).code).toBe(250);
          const subject = `xclient ${source} ${index}`;
          expect(await deliver(session, subject)).toBe(250);
          session.close();
          const { client, content } = await clientOf(postfix(), subject);
          expect(client).toMatch(new RegExp(`\\[${escapeRe(source)}\\]$`));
          expect(content).not.toMatch(/6\.6\.6\.6|spoofed|2001:db8/);
        }
      }
      console.info(`XCLIENT/XFORWARD to haraka-in: ${refused} attempts from 2 sources, ${refused} refused with 5xx, ${refused} messages delivered with the real client address`);
      expect(await postfix().log()).not.toMatch(/client=[^\n]*\[6\.6\.6\.6\]|ADDR=6\.6\.6\.6/);
    });
  });

  it('passes a hostile PTR name only xtext-encoded or as [UNAVAILABLE], and never into the headers', async () => {
    const label = (text: string | number[]) => (typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text));
    const tail = [label('example'), label('net')];
    // The PTR labels, the name an A record confirms (forward confirmation), and the NAME Postfix must get.
    // c-ares hands a PTR name back with every byte outside letters, digits and `-_/*` escaped (\\013 for
    // CR) and refuses to look up such a name, so none of them is ever forward-confirmed. A name no DNS
    // message can carry (over 255 octets, a label over 63) makes the whole answer malformed: that is a DNS
    // failure ([TEMPUNAVAIL]), as a recursive resolver would report it (SERVFAIL) and Postfix take it.
    const cases: { what: string; labels: Buffer[]; confirm?: string; name?: string }[] = [
      { what: 'CR', labels: [label('a\rb'), ...tail] },
      { what: 'LF', labels: [label('a\nb'), ...tail] },
      { what: 'CRLF and a header', labels: [label('x\r\nX-Injected: yes'), ...tail] },
      { what: 'NUL', labels: [label('a\0b'), ...tail] },
      { what: 'spaces', labels: [label('a b c'), ...tail] },
      { what: '= and +', labels: [label('a=b+c'), ...tail] },
      { what: 'xtext-looking', labels: [label('ADDR+3D6.6.6.6'), ...tail] },
      { what: 'UTF-8', labels: [label('hé'), ...tail] },
      { what: 'Latin-1 byte', labels: [label([0x68, 0xe9]), ...tail] },
      { what: 'a dot inside a label', labels: [label('a.b'), ...tail] },
      // Forward-confirmed, but not a hostname to Postfix (its XCLIENT would answer 501 Bad NAME syntax).
      { what: 'a slash, forward-confirmed', labels: [label('a/b'), ...tail], confirm: 'a/b.example.net' },
      { what: 'an asterisk, forward-confirmed', labels: [label('a*b'), ...tail], confirm: 'a*b.example.net' },
      { what: '253 characters (the most there is), forward-confirmed', labels: [...LONG.split('.').map((part) => label(part))], confirm: LONG, name: LONG },
      { what: '300 characters: 305 octets on the wire', labels: Array.from({ length: 5 }, () => label('p'.repeat(60))), name: '[TEMPUNAVAIL]' },
      { what: 'over 300 characters once escaped (240 CR bytes)', labels: [...Array.from({ length: 4 }, () => label(new Array(60).fill(0x0d))), label('net')] },
      { what: 'a 64-octet label', labels: [label('l'.repeat(64)), label('net')], name: '[TEMPUNAVAIL]' },
    ];
    await withHarakaIn(async (t) => {
      const report: string[] = [];
      for (const [index, test] of cases.entries()) {
        const ip = `127.0.0.${40 + index}`;
        t.dns.zone.RAW_PTR = { ...t.dns.zone.RAW_PTR, [reverse(ip)]: [test.labels] };
        if (test.confirm) t.dns.zone.A = { ...t.dns.zone.A, [test.confirm]: [ip] };
        const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: ip, helo: 'client.example.net' });
        const subject = `ptr ${index}`;
        const final = await deliver(session, subject);
        session.close();
        expect(final, test.what).toBe(250);
        const { client, content } = await clientOf(postfix(), subject);
        const xclient = await xclientLinesFor(postfix(), ip);
        const name = xclient.join(' ').match(/ NAME=(\S+)/)?.[1];
        report.push(`${test.what}: NAME=${name} client=${client}`);
        expect(name, test.what).toBeDefined();
        // xtext (RFC 3461): printable ASCII but '+' and '=', which only appear as +HH.
        expect(name, test.what).toMatch(/^(\[UNAVAILABLE\]|(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})+)$/);
        expect(client, test.what).toMatch(new RegExp(`^[\\x21-\\x7e]+\\[${escapeRe(ip)}\\]$`));
        expect(name, test.what).toBe(test.name ?? '[UNAVAILABLE]');
        // The message reached Postfix with its headers intact: nothing injected, one Received line of ours.
        const headers = content.slice(0, content.indexOf('\n\n'));
        expect(headers).not.toMatch(/^X-Injected/m);
        expect(headers).not.toMatch(/[\r\0]/);
        expect(headers).toMatch(new RegExp(`^Received: from client\\.example\\.net \\([^\\n]*\\[${escapeRe(ip)}\\]\\)`, 'm'));
      }
      console.info(`hostile PTR names as Postfix saw them:\n  ${report.join('\n  ')}`);
    });
  });
});
