// SMTP smuggling through haraka-in into the real Postfix backend. Each attempt sends, in
// one write after the 354, a carrier message ending in a non-standard end of data, then a second MAIL/RCPT/
// DATA with its own message. Postfix must receive at most the carrier, never the smuggled message: read
// from its mailboxes (bob gets nothing, alice gets each carrier at most once) and its log (no smuggled
// sender). Small carriers go to Postfix in one write built from the stored lines; large ones are over the
// forwarder's one-write limit and connection.ini's spool_after (streamed from Haraka's spool file); medium
// ones (streamed from memory) exist only while the one-write limit is well under spool_after.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOOPBACK } from '../../src/demo/topology';
import { postfixUnavailableReason, startPostfix, type PostfixInstance } from '../fixtures/postfix';
import { missingPeers, requirePeers } from '../helpers/peers';
import { eventually } from '../helpers/poll';
import { RawSmtp } from '../helpers/raw-smtp';
import { withTopology } from '../helpers/topology';

const runnable = requirePeers('SMTP smuggling against real Postfix', missingPeers(['/usr/sbin/postfix'], [postfixUnavailableReason()]));

/** The forwarder's one-write limit, read from its source so that a change there cannot make "medium" one-write. */
function captureLimit(): number {
  const source = readFileSync(path.join(__dirname, '../../src/plugins/forward/index.ts'), 'utf8');
  const match = /const CAPTURE_LIMIT = (\d+) \* 1024;/.exec(source);
  if (!match) throw new Error('CAPTURE_LIMIT not found in src/plugins/forward/index.ts: update this test');
  return Number(match[1]) * 1024;
}

/** Carrier sizes for the paths that exist today: one write (small), streamed from memory (medium, only
 * when the one-write limit is well under spool_after), streamed from the spool file (large). */
function carrierSizes(spoolAfter: number): Record<string, number> {
  const limit = captureLimit();
  const sizes: Record<string, number> = { small: 1024 };
  if (4 * limit < spoolAfter) sizes.medium = 2 * limit;
  sizes.large = 2 * Math.max(limit, spoolAfter) + 64 * 1024;
  return sizes;
}

/** [name, bytes between the carrier's last line and the smuggled MAIL, what haraka-in must do]. */
const VARIANTS: [string, string, 'refused' | 'content'][] = [
  ['<LF>.<LF>', '\n.\n', 'refused'],
  ['<LF>.<CR>', '\n.\r', 'refused'],
  ['<CR>.<LF>', '\r.\n', 'refused'],
  ['<CR>.<CR>', '\r.\r', 'content'],
  ['<LF>.<CRLF>', '\n.\r\n', 'refused'],
  ['<CR>.<CRLF>', '\r.\r\n', 'content'],
  ['<CRLF><NUL>.<CRLF>', '\r\n\x00.\r\n', 'content'],
  // Postfix strips every trailing CR before it looks for the dot: these were smuggled until mailproxy-smtp
  // refused a line of a dot and bare CRs.
  ['<CRLF>.<CR><CRLF>', '\r\n.\r\r\n', 'refused'],
  ['<CR><CRLF>.<CR><CRLF>', '\r\r\n.\r\r\n', 'refused'],
  ['<CRLF>.<CR><CR><CRLF>', '\r\n.\r\r\r\n', 'refused'],
  ['<CRLF>.<SP><CRLF>', '\r\n. \r\n', 'content'],
  ['<CRLF>.<LF>', '\r\n.\n', 'refused'],
];

function carrier(id: string, size: number): string {
  const header = ['From: sender@example.net', 'To: alice@demo.test', `Subject: carrier ${id}`, `Message-ID: <carrier-${id}@example.net>`, '', ''].join('\r\n');
  const line = `${'x'.repeat(74)}\r\n`;
  return `${header}${line.repeat(Math.ceil(size / line.length))}end of carrier ${id}`;
}

function smuggled(id: string): string {
  return `MAIL FROM:<smuggled-${id}@evil.example>\r\nRCPT TO:<bob@demo.test>\r\nDATA\r\nFrom: smuggled-${id}@evil.example\r\nSubject: smuggled ${id}\r\n\r\nsmuggled body ${id}\r\n.\r\n`;
}

interface Attempt {
  id: string;
  expect: 'refused' | 'content' | 'pipelined';
  replies: number[];
}

describe.runIf(runnable)('SMTP smuggling through haraka-in into a real Postfix', () => {
  let postfix: PostfixInstance;

  beforeAll(async () => {
    postfix = await startPostfix({ listenHost: LOOPBACK.backend, port: 0, domains: ['demo.test'], users: ['alice', 'bob'], xclientHosts: [LOOPBACK.wireguard] });
  });
  afterAll(async () => {
    await postfix?.stop();
  });

  it('delivers at most the carrier and never the smuggled message, on the one-write, streamed and spooled paths', async () => {
    await withTopology(
      { instances: ['haraka-in'], backend: false, internet: false, tweak: (config) => void (config.backend = { ...config.backend, port: postfix.port }) },
      async (t) => {
        const spoolAfter = Number(/^spool_after=(\d+)$/m.exec(readFileSync(path.join(t.instancesDir, 'haraka-in/config/connection.ini'), 'utf8'))?.[1]);
        expect(spoolAfter).toBeGreaterThan(0);
        const SIZES = carrierSizes(spoolAfter);

        const attempts: Attempt[] = [];
        const cases: { id: string; bytes: string; expect: Attempt['expect'] }[] = [];
        for (const [size, bytes] of Object.entries(SIZES)) {
          for (const [index, [, ending, outcome]] of VARIANTS.entries()) {
            const id = `${size}-${index}`;
            cases.push({ id, bytes: `${carrier(id, bytes)}${ending}${smuggled(id)}`, expect: outcome });
          }
          // A proper end of data with the next transaction pipelined behind it in the same write.
          const id = `${size}-pipelined`;
          cases.push({ id, bytes: `${carrier(id, bytes)}\r\n.\r\n${smuggled(id)}`, expect: 'pipelined' });
        }

        // Four clients at a time, each on its own address.
        const queue = [...cases];
        const worker = async (lane: number) => {
          for (let next = queue.shift(); next; next = queue.shift()) {
            const client = await RawSmtp.open(t.inbound.host, t.inbound.port, { localAddress: `127.0.0.${20 + lane}` });
            const replies: number[] = [];
            for (const command of ['MAIL FROM:<sender@example.net>', 'RCPT TO:<alice@demo.test>', 'DATA']) replies.push((await client.command(command))?.code ?? 0);
            expect(replies, next.id).toEqual([250, 250, 354]);
            client.write(next.bytes);
            const first = await client.reply(30_000);
            if (first && !client.closed) client.write('QUIT\r\n');
            const rest = await client.repliesUntilClosed(10_000);
            client.close();
            attempts.push({ id: next.id, expect: next.expect, replies: [first?.code ?? 0, ...rest] });
          }
        };
        await Promise.all([0, 1, 2, 3].map(worker));

        for (const attempt of attempts) {
          if (attempt.expect === 'refused') expect(attempt.replies, attempt.id).toEqual([451]);
          else if (attempt.expect === 'content') expect(attempt.replies, attempt.id).toEqual([250, 221]);
          else {
            // Every pipelined command (and smuggled line) is refused with 503, then QUIT is served.
            expect(attempt.replies[0], attempt.id).toBe(250);
            expect(attempt.replies.at(-1), attempt.id).toBe(221);
            expect(attempt.replies.slice(1, -1).length, attempt.id).toBeGreaterThanOrEqual(3);
            expect(new Set(attempt.replies.slice(1, -1)), attempt.id).toEqual(new Set([503]));
          }
        }

        const accepted = attempts.filter((attempt) => attempt.replies[0] === 250).map((attempt) => attempt.id);
        await eventually(`Postfix to deliver ${accepted.length} carriers`, async () => (await postfix.delivered()).length >= accepted.length, { timeoutMs: 30_000 });
        // Anything late (a smuggled message would come right behind its carrier) has had its chance.
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const delivered = await postfix.delivered();
        const log = await postfix.log();

        expect(delivered.filter((m) => m.recipient !== 'alice@demo.test').map((m) => m.recipient)).toEqual([]);
        expect(log).not.toMatch(/from=<smuggled-/);
        expect(log).not.toMatch(/to=<bob@demo\.test>/);
        const carriers = delivered.map((m) => /^Subject: carrier (\S+)$/m.exec(m.content)?.[1]);
        expect(carriers.filter((id) => id === undefined)).toEqual([]);
        expect([...carriers].sort()).toEqual([...accepted].sort());
        for (const message of delivered) {
          const id = /^Subject: carrier (\S+)$/m.exec(message.content)![1]!;
          // The smuggled commands stayed inside the carrier's body (or were refused), never a message.
          // Whole (Postfix stores LF line ends: a 76-byte line loses one byte).
          expect(message.content.length, id).toBeGreaterThan(0.98 * SIZES[id.split('-')[0]!]!);
          expect(message.content, id).toContain(`end of carrier ${id}`);
          if (!id.endsWith('-pipelined')) expect(message.content, id).toContain(`MAIL FROM:<smuggled-${id}@evil.example>`);
          else expect(message.content, id).not.toContain('smuggled');
        }
        const refused = attempts.filter((attempt) => attempt.replies[0] === 451).length;
        const dotCr = VARIANTS.filter(([, ending]) => /\.\r\r/.test(ending)).length * Object.keys(SIZES).length;
        expect(t.haraka['haraka-in']!.output().match(/Client sent a dot and bare CRs as a line in DATA: refused/g)?.length).toBe(dotCr);
        console.info(
          `smuggling: ${attempts.length} attempts (${VARIANTS.length} endings + pipelined after .<CRLF>, sizes ${Object.entries(SIZES)
            .map(([name, bytes]) => `${name} ${bytes / 1024} KB`)
            .join(', ')}; one-write limit ${captureLimit() / 1024} KB, spool_after ${spoolAfter / 1024} KB): ` +
            `${refused} refused with 451, ${accepted.length} carriers accepted and delivered once each, 0 smuggled messages delivered`,
        );
      },
    );
  }, 120_000);

  it('discards commands pipelined after STARTTLS in the same write', async () => {
    await withTopology(
      { instances: ['haraka-in'], backend: false, internet: false, tweak: (config) => void (config.backend = { ...config.backend, port: postfix.port }) },
      async (t) => {
        const before = (await postfix.delivered()).length;
        const client = await RawSmtp.open(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.30' });
        client.write('STARTTLS\r\nMAIL FROM:<smuggled-tls@evil.example>\r\nRCPT TO:<bob@demo.test>\r\n');
        expect((await client.reply())?.code).toBe(220);
        // Nothing answers the plaintext commands before the handshake.
        expect(await client.reply(300)).toBeNull();
        await client.startTls();
        expect((await client.command('EHLO client.example.net'))?.code).toBe(250);
        // No transaction was opened by the plaintext MAIL: RCPT and DATA are out of sequence.
        expect((await client.command('RCPT TO:<bob@demo.test>'))?.code).toBe(503);
        expect((await client.command('DATA'))?.code).toBe(503);
        expect((await client.command('MAIL FROM:<sender@example.net>'))?.code).toBe(250);
        expect((await client.command('RCPT TO:<alice@demo.test>'))?.code).toBe(250);
        expect((await client.command('DATA'))?.code).toBe(354);
        client.write(`${carrier('tls', 100)}\r\n.\r\n`);
        expect((await client.reply())?.code).toBe(250);
        expect((await client.command('QUIT'))?.code).toBe(221);
        client.close();
        const delivered = await postfix.waitForDelivered(before + 1);
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect((await postfix.delivered()).length).toBe(before + 1);
        expect(delivered.at(-1)?.content).toMatch(/^Subject: carrier tls$/m);
        expect(delivered.at(-1)?.recipient).toBe('alice@demo.test');
        expect(await postfix.log()).not.toMatch(/smuggled-tls/);
      },
    );
  });
});
