// haraka-out's Received line (header privacy), with real Haraka on loopback: a message from the
// backend keeps every earlier Received line byte for byte, gains exactly one that names only the VPS, and
// the DKIM signatures the backend made (simple and relaxed, one of them covering Received) still verify.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dkimSign, dkimVerify } from 'mailauth';
import { LOOPBACK, INTERNET_DOMAIN } from '../../src/demo/topology';
import { loadConfigText } from '../../src/config/load';
import { renderInstances } from '../../src/render/haraka';
import { protocolOf } from '../../src/plugins/outbound/received';
import { sendMessage } from '../../src/smtp/send';
import { dataPayload, openSession } from '../../src/smtp/script';
import { useTopology } from '../helpers/topology';

const BACKEND_HELO = 'mailcow.home.internal';
const SIGNING_DOMAIN = 'demo.test';
const SELECTOR = 'backend';

/** The header block of a raw message, as one string per field (continuation lines kept, CRLF kept). */
function headerFields(raw: string): string[] {
  const head = raw.slice(0, raw.indexOf('\r\n\r\n') + 2);
  const fields: string[] = [];
  for (const line of head.split(/(?<=\r\n)/)) {
    if (/^[ \t]/.test(line) && fields.length > 0) fields[fields.length - 1] += line;
    else if (line) fields.push(line);
  }
  return fields;
}

const receivedOf = (fields: string[]) => fields.filter((field) => /^received:/i.test(field));

describe('haraka-out Received line', () => {
  const topology = useTopology({ instances: ['haraka-out'], backend: false });

  it('keeps every earlier Received line, adds exactly one naming only the VPS, and the DKIM signatures still verify', async () => {
    const t = topology();
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const publicDer = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    const earlier = [
      // what Mailcow's Postfix and its submission hop leave in a message before relaying it
      `Received: from mailcow.home.internal (mailcow.home.internal [10.0.0.2])\r\n\tby mailcow.home.internal (Postfix) with ESMTPSA id 4ABCDEF123;\r\n\tTue, 1 Dec 2026 22:00:01 +0000 (UTC)\r\n`,
      `Received: from [192.168.1.20] (laptop.lan [192.168.1.20])\r\n\tby mailcow.home.internal (Postfix) with ESMTPSA id 4ABCDEF000;\r\n\tTue, 1 Dec 2026 22:00:00 +0000 (UTC)\r\n`,
    ];
    const unsigned =
      earlier.join('') +
      [
        'From: Alice <alice@demo.test>',
        `To: Bob <bob@${INTERNET_DOMAIN}>`,
        'Subject: header privacy',
        'Date: Tue, 1 Dec 2026 22:00:00 +0000',
        'Message-ID: <received-privacy@demo.test>',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        '',
        'A body with  two spaces, a trailing space ',
        '.a line that starts with a dot',
        '',
      ].join('\r\n');
    const signed = await dkimSign(unsigned, {
      signingDomain: SIGNING_DOMAIN,
      selector: SELECTOR,
      privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      signatureData: [
        { signingDomain: SIGNING_DOMAIN, selector: SELECTOR, privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }), canonicalization: 'simple/simple' },
        {
          signingDomain: SIGNING_DOMAIN,
          selector: SELECTOR,
          privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }),
          canonicalization: 'relaxed/relaxed',
          headerList: ['From', 'To', 'Subject', 'Date', 'Message-ID', 'Received'],
        },
      ],
    });
    expect(signed.errors).toEqual([]);
    const original = signed.signatures + unsigned;

    // The key is served by this resolver function only, never by the system resolver.
    const resolver = async (name: string, rrtype: string): Promise<string[][]> => {
      if (rrtype === 'TXT' && name === `${SELECTOR}._domainkey.${SIGNING_DOMAIN}`) return [[`v=DKIM1; k=rsa; p=${publicDer}`]];
      throw Object.assign(new Error(`no ${rrtype} for ${name}`), { code: 'ENOTFOUND' });
    };
    const before = await dkimVerify(original, { resolver });
    expect(before.results.map((result) => result.status.result)).toEqual(['pass', 'pass']);

    const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend, helo: BACKEND_HELO });
    expect((await session.command('MAIL FROM:<alice@demo.test>')).code).toBe(250);
    expect((await session.command(`RCPT TO:<bob@${INTERNET_DOMAIN}>`)).code).toBe(250);
    expect((await session.command('DATA')).code).toBe(354);
    session.write(dataPayload(original.replace(/\r\n$/, '')));
    expect((await session.reply()).code).toBe(250);
    session.close();
    const [delivered] = await t.internet!.waitForMessages(1, 20_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${t.haraka['haraka-out']?.output().slice(-3000)}`);
    });
    const raw = delivered!.raw.toString('utf8');

    const receivedBefore = receivedOf(headerFields(original));
    const receivedAfter = receivedOf(headerFields(raw));
    // exactly one more, on top; every earlier one unchanged and in order
    expect(receivedAfter.length).toBe(receivedBefore.length + 1);
    expect(receivedAfter.slice(1)).toEqual(receivedBefore);
    expect(raw.endsWith(original)).toBe(true);

    const added = receivedAfter[0]!;
    expect(added).toMatch(
      new RegExp(
        `^Received: by ${t.config.hostname.replace(/\./g, '\\.')} with ESMTP id [0-9A-F-]+(\\.\\d+)?;\\r\\n\\t\\w{3}, \\d{1,2} \\w{3} \\d{4} \\d\\d:\\d\\d:\\d\\d [+-]\\d{4}\\r\\n$`,
        'i',
      ),
    );
    for (const leak of [BACKEND_HELO, LOOPBACK.backend, t.config.wireguard.address, t.outbound.host, 'Haraka', 'from ', 'envelope-from', 'alice@']) {
      expect(added, leak).not.toContain(leak);
    }
    expect(added).not.toMatch(/\b(10|127)\.\d+\.\d+\.\d+\b/);

    const after = await dkimVerify(raw, { resolver });
    expect(after.results.map((result) => result.status.result)).toEqual(['pass', 'pass']);
  });

  it('writes the protocol as the session was (RFC 3848): ESMTP, since haraka-out offers no STARTTLS on WireGuard', async () => {
    const t = topology();
    const already = t.internet!.messages.length;
    const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend, helo: BACKEND_HELO });
    const ehlo = await session.command(`EHLO ${BACKEND_HELO}`);
    expect(ehlo.lines.join('\n')).not.toMatch(/STARTTLS/i);
    session.close();
    const sent = await sendMessage({
      host: t.outbound.host,
      port: t.outbound.port,
      localAddress: LOOPBACK.backend,
      heloName: BACKEND_HELO,
      from: 'alice@demo.test',
      to: [`bob@${INTERNET_DOMAIN}`],
      subject: 'plain ESMTP',
      text: 'no earlier Received line at all',
    });
    expect(sent.accepted).toEqual([`bob@${INTERNET_DOMAIN}`]);
    const delivered = (await t.internet!.waitForMessages(already + 1, 20_000))[already]!;
    const received = receivedOf(headerFields(delivered.raw.toString('utf8')));
    expect(received).toHaveLength(1);
    expect(received[0]).toMatch(new RegExp(`^Received: by ${t.config.hostname.replace(/\./g, '\\.')} with ESMTP id `));
    expect(received[0]).not.toContain(BACKEND_HELO);
  });

  it('names the protocol from the session: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA', () => {
    expect(protocolOf({ hello: { verb: 'HELO' } })).toBe('SMTP');
    expect(protocolOf({ hello: { verb: 'EHLO' } })).toBe('ESMTP');
    expect(protocolOf({ hello: { verb: 'EHLO' }, tls: { enabled: true } })).toBe('ESMTPS');
    expect(protocolOf({ hello: { verb: 'EHLO' }, authheader: '(authenticated bits=0)' })).toBe('ESMTPA');
    expect(protocolOf({ hello: { verb: 'EHLO' }, tls: { enabled: true }, authheader: '(authenticated bits=0)' })).toBe('ESMTPSA');
  });
});

describe('haraka-out Received line of its own bounces', () => {
  const topology = useTopology({ instances: ['haraka-out'], internet: { rejectRecipient: () => '550 5.1.1 no such user here' } });

  it('stamps a bounce once, naming only the VPS', async () => {
    const t = topology();
    const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend, helo: BACKEND_HELO });
    expect((await session.command('MAIL FROM:<alice@demo.test>')).code).toBe(250);
    expect((await session.command(`RCPT TO:<nobody@${INTERNET_DOMAIN}>`)).code).toBe(250);
    expect((await session.command('DATA')).code).toBe(354);
    session.write(dataPayload(['From: alice@demo.test', `To: nobody@${INTERNET_DOMAIN}`, 'Subject: will bounce', '', 'body'].join('\r\n')));
    expect((await session.reply()).code).toBe(250);
    session.close();
    const [dsn] = await t.backend!.waitForMessages(1, 20_000);
    const fields = headerFields(dsn!.raw.toString('utf8'));
    const received = receivedOf(fields);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatch(new RegExp(`^Received: by ${t.config.hostname.replace(/\./g, '\\.')} id [0-9A-F-]+(\\.\\d+)?;\r\n\t`, 'i'));
    expect(received[0]).not.toMatch(/Haraka|\b(10|127)\.\d+\.\d+\.\d+\b/);
  });
});

describe('outbound.hide_internal_received (render)', () => {
  const render = (hide: boolean | undefined) => {
    const example = readFileSync(path.join(__dirname, '../../mailproxy.example.yaml'), 'utf8');
    const text = example.replace(/^ {2}hide_internal_received: true\n/m, hide === undefined ? '' : `  hide_internal_received: ${hide}\n`);
    expect(text).not.toBe(example);
    const loaded = loadConfigText(text);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
    return renderInstances(loaded.config, { source: 'test.yaml' });
  };

  it('is on by default: Haraka’s two lines off in haraka-out only, mailproxy-outbound stamps instead', () => {
    const files = render(undefined);
    expect(files.get('haraka-out/config/connection.ini')).toMatch(/^add_received=false$/m);
    expect(files.get('haraka-out/config/outbound.ini')).toMatch(/^received_header=disabled$/m);
    expect(files.get('haraka-out/config/mailproxy-outbound.ini')).toMatch(/\[received\][^[]*^rewrite=true$[^[]*^by=mx\.example\.com$/m);
    expect(files.get('haraka-in/config/connection.ini')).toMatch(/^add_received=true$/m);
  });

  it('false gives Haraka’s own line back', () => {
    const files = render(false);
    expect(files.get('haraka-out/config/connection.ini')).toMatch(/^add_received=true$/m);
    // Its outbound queue's second line went into Haraka's parsed header, which the queue no longer holds.
    expect(files.get('haraka-out/config/outbound.ini')).toMatch(/^received_header=disabled$/m);
    expect(files.get('haraka-out/config/mailproxy-outbound.ini')).toMatch(/^rewrite=false$/m);
  });
});
