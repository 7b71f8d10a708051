// mailproxy-forward in a real haraka-in against a scriptable backend (smtp-server): XCLIENT contents,
// live recipient checks, exact backend codes, fail-closed behaviour. test/e2e repeats the essentials
// against a real Postfix.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeSelfSigned } from '../../src/certs/selfsigned';
import { LOOPBACK } from '../../src/demo/topology';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { startSmtpSink, type SmtpSink } from '../../src/testpeers/smtp-sink';
import { eventually } from '../helpers/poll';
import { startScriptedBackend } from '../helpers/scripted-backend';
import { sendVia } from '../helpers/send';
import { useTopology, withTopology } from '../helpers/topology';

describe('mailproxy-forward against a backend that checks recipients', () => {
  const topology = useTopology({
    instances: ['haraka-in'],
    backend: {
      rejectRecipient: (address) =>
        address.startsWith('nobody@') ? '550 5.1.1 <nobody@demo.test>: Recipient address rejected: User unknown' : address.startsWith('full@') ? '452 4.2.2 Mailbox full' : null,
      rejectMessage: (raw) => (raw.includes('Subject: spam') ? '554 5.7.1 Message rejected as spam' : null),
    },
  });

  it('passes the client identity with XCLIENT: forward-confirmed NAME, ADDR, PORT, HELO, PROTO', async () => {
    const t = topology();
    const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9', helo: 'client9.example.net' });
    const { final } = await sendVia(session, ['alice@demo.test'], 'xclient');
    expect(final?.code).toBe(250);
    session.close();
    const received = t.backend!.messages.find((m) => m.subject === 'xclient');
    expect(received?.xclient).toMatchObject({ NAME: 'client9.example.net', ADDR: '127.0.0.9', HELO: 'client9.example.net', PROTO: 'ESMTP' });
    expect(Number(received?.xclient.PORT)).toBeGreaterThan(0);
    expect(received?.remoteAddress).toBe('127.0.0.9');
    expect(final?.text).toContain('Queued by backend');
  });

  it('sends NAME=[UNAVAILABLE] when the PTR name does not point back at the client', async () => {
    const t = topology();
    const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.10', helo: 'liar.example.net' });
    await sendVia(session, ['alice@demo.test'], 'liar');
    session.close();
    const received = (await t.backend!.waitForMessages(1)) && t.backend!.messages.find((m) => m.subject === 'liar');
    // smtp-server stores [UNAVAILABLE] as an empty NAME; the Postfix e2e test sees client=unknown[...].
    expect(received?.xclient).toHaveProperty('NAME', '');
    // What haraka-in sent, as the demo shows it: literally [UNAVAILABLE].
    expect(received?.xclientSent).toMatchObject({ NAME: '[UNAVAILABLE]', ADDR: '127.0.0.10' });
    expect(received?.xclient.ADDR).toBe('127.0.0.10');
  });

  it('gives valid recipients 250 and unknown ones the backend’s 550, and delivers only to the valid one', async () => {
    const t = topology();
    const session = await openSession(t.inbound.host, t.inbound.port);
    const { replies, final } = await sendVia(session, ['alice@demo.test', 'nobody@demo.test', 'full@demo.test', 'bob@demo.test'], 'mixed');
    expect(replies.map((reply) => reply.code)).toEqual([250, 550, 452, 250]);
    expect(replies[1]?.text).toContain('5.1.1');
    expect(replies[1]?.text).toContain('User unknown');
    expect(replies[2]?.text).toContain('4.2.2');
    expect(final?.code).toBe(250);
    session.close();
    const received = t.backend!.messages.find((m) => m.subject === 'mixed');
    expect(received?.rcptTo).toEqual(['alice@demo.test', 'bob@demo.test']);
  });

  it('passes the backend’s end-of-data refusal with its exact code', async () => {
    const t = topology();
    const session = await openSession(t.inbound.host, t.inbound.port);
    const { final } = await sendVia(session, ['alice@demo.test'], 'spam');
    expect(final?.code).toBe(554);
    expect(final?.text).toContain('5.7.1 Message rejected as spam');
    // The session and the backend session go on.
    const next = await sendVia(session, ['alice@demo.test'], 'ham after spam');
    expect(next.final?.code).toBe(250);
    session.close();
    expect(t.backend!.messages.map((m) => m.subject)).not.toContain('spam');
  });

  it("delivers a message over the 256 KB one-write limit intact through Haraka's pipe, dots and all", async () => {
    const t = topology();
    const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9' });
    const body = Array.from({ length: 4000 }, (_, i) => (i % 7 === 0 ? `.line ${i} starts with a dot` : `line ${i} ${'x'.repeat(70)}`)).join('\r\n');
    expect(body.length).toBeGreaterThan(256 * 1024);
    expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
    expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
    expect((await session.command('DATA')).code).toBe(354);
    const text = message('large', body);
    session.write(dataPayload(text));
    expect((await session.reply()).code).toBe(250);
    session.close();
    // The sink records a message before it answers 250, and haraka-in answers only after that 250.
    const delivered = t.backend!.messages.find((m) => m.subject === 'large');
    const raw = delivered!.raw.toString('utf8');
    expect(raw).toMatch(/^Received: from /);
    expect(raw.endsWith(`${text}\r\n`)).toBe(true);
  });

  it('carries several messages over one client session, each with XCLIENT', async () => {
    const t = topology();
    const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9' });
    for (const subject of ['one', 'two', 'three']) expect((await sendVia(session, ['alice@demo.test'], subject)).final?.code).toBe(250);
    await session.command('RSET');
    expect((await sendVia(session, ['alice@demo.test'], 'after rset')).final?.code).toBe(250);
    session.close();
    for (const subject of ['one', 'two', 'three', 'after rset']) {
      expect(t.backend!.messages.find((m) => m.subject === subject)?.xclient.ADDR, subject).toBe('127.0.0.9');
    }
  });
});

describe('mailproxy-forward fails closed', () => {
  it('answers 4xx and delivers nothing when the backend does not offer XCLIENT', async () => {
    await withTopology({ instances: ['haraka-in'], backend: { xclient: false } }, async (t) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      const { replies } = await sendVia(session, ['alice@demo.test'], 'no xclient');
      expect(replies[0]?.code).toBe(451);
      session.close();
      expect(t.backend!.messages).toHaveLength(0);
      // The log is another pipe than the session: its lines may arrive here a moment after the replies.
      await eventually('the refusal logged', () => t.haraka['haraka-in']?.output().includes('backend does not offer XCLIENT'));
      expect(t.haraka['haraka-in']?.output()).toContain('backend does not offer XCLIENT');
    });
  });

  it('forwards without XCLIENT only when require_xclient is off', async () => {
    await withTopology(
      { instances: ['haraka-in'], backend: { xclient: false }, tweak: (config) => void (config.backend = { ...config.backend, require_xclient: false }) },
      async (t) => {
        const session = await openSession(t.inbound.host, t.inbound.port);
        expect((await sendVia(session, ['alice@demo.test'], 'degraded')).final?.code).toBe(250);
        session.close();
        expect(t.backend!.messages[0]?.xclient).toEqual({});
      },
    );
  });

  it('uses STARTTLS to the backend when backend.starttls is on, and refuses when it is not offered', async () => {
    const certDir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-backend-tls-'));
    const pair = makeSelfSigned(certDir, 'backend.test');
    const tls = { key: readFileSync(pair.keyPath), cert: readFileSync(pair.certPath) };
    rmSync(certDir, { recursive: true, force: true });
    const starttls = (config: { backend?: object }) => void (config.backend = { ...config.backend, starttls: true });
    await withTopology({ instances: ['haraka-in'], backend: { tls }, tweak: starttls }, async (t) => {
      const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9' });
      expect((await sendVia(session, ['alice@demo.test'], 'over tls')).final?.code).toBe(250);
      session.close();
      expect(t.backend!.messages[0]).toMatchObject({ secure: true, xclient: { ADDR: '127.0.0.9' } });
    });
    await withTopology({ instances: ['haraka-in'], tweak: starttls }, async (t) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      expect((await sendVia(session, ['alice@demo.test'], 'no tls offered')).replies[0]?.code).toBe(451);
      session.close();
      expect(t.backend!.messages).toHaveLength(0);
    });
  });

  it('answers 4xx when the backend accepts the connection but never greets', async () => {
    await withTopology({ instances: ['haraka-in'], backend: { silent: true }, tweak: (config) => void (config.backend = { ...config.backend, timeout: 1 }) }, async (t) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      await session.command('MAIL FROM:<sender@example.net>');
      const started = Date.now();
      const rcpt = await session.command('RCPT TO:<alice@demo.test>');
      console.info(`silent backend: ${rcpt.code} after ${Date.now() - started} ms (backend.timeout 1 s)`);
      expect(rcpt.code).toBe(451);
      expect((await session.command('NOOP')).code).toBe(250);
      session.close();
    });
  });

  it('stops trusting remembered XCLIENT support when the backend withdraws it, and learns it again', async () => {
    // Later sessions send XCLIENT without a first EHLO; a refusal must send them back to EHLO, never on
    // without XCLIENT.
    await withTopology({ instances: ['haraka-in'], backend: false }, async (t) => {
      const backendAt = { host: LOOPBACK.backend, port: t.config.backend.port };
      const sendOne = async (subject: string) => {
        const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9' });
        const result = await sendVia(session, ['alice@demo.test'], subject);
        session.close();
        return result;
      };
      // Each stand-in is closed even when an assertion inside fails.
      const withSink = async (xclient: boolean, body: (sink: SmtpSink) => Promise<void>) => {
        const sink = await startSmtpSink({ ...backendAt, xclient });
        try {
          await body(sink);
        } finally {
          await sink.close();
        }
      };
      await withSink(true, async () => {
        expect((await sendOne('learns xclient')).final?.code).toBe(250);
      });
      await withSink(false, async (withdrawn) => {
        expect((await sendOne('withdrawn')).replies[0]?.code).toBe(451);
        expect(withdrawn.messages).toHaveLength(0);
      });
      // The log is another pipe than the sessions: its lines may arrive here a moment after the replies.
      const output = () => t.haraka['haraka-in']!.output();
      await eventually('the withdrawal logged', () => output().includes('asking the backend again with EHLO') && output().includes('backend does not offer XCLIENT'));
      const log = output();
      expect(log).toContain('asking the backend again with EHLO');
      expect(log).toContain('backend does not offer XCLIENT');

      await withSink(true, async (restored) => {
        expect((await sendOne('restored')).final?.code).toBe(250);
        expect((await sendOne('restored again')).final?.code).toBe(250);
        expect(restored.messages.map((m) => [m.subject, m.xclient.ADDR, m.xclient.HELO])).toEqual([
          ['restored', '127.0.0.9', 'client.test'],
          ['restored again', '127.0.0.9', 'client.test'],
        ]);
      });
    });
  });

  it('stops sending XCLIENT before EHLO to a backend that takes it only after EHLO', async () => {
    await withTopology({ instances: ['haraka-in'], backend: false }, async (t) => {
      const backend = await startScriptedBackend(LOOPBACK.backend, t.config.backend.port, { ehloFirst: true });
      try {
        for (const subject of ['first', 'second', 'third']) {
          const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9' });
          expect((await sendVia(session, ['alice@demo.test'], subject)).final?.code).toBe(250);
          session.close();
        }
        expect(backend.delivered()).toBe(3);
        const opening = backend.commands.map((verbs) => verbs.slice(0, 3).join(' '));
        // First session: learns XCLIENT. Second: tries it early, is refused, starts over. Third: EHLO first.
        expect(opening).toEqual(['EHLO XCLIENT EHLO', 'XCLIENT', 'EHLO XCLIENT EHLO', 'EHLO XCLIENT EHLO']);
      } finally {
        await backend.close();
      }
    });
  });
  it('passes a refused DATA back with its code, and resets the backend before the next message', async () => {
    await withTopology({ instances: ['haraka-in'], backend: false }, async (t) => {
      const backend = await startScriptedBackend(LOOPBACK.backend, t.config.backend.port, { dataReply: (n) => (n === 0 ? '554 5.3.0 no data today' : '354 go ahead') });
      try {
        const session = await openSession(t.inbound.host, t.inbound.port);
        const first = await sendVia(session, ['alice@demo.test'], 'refused');
        expect(first.final?.code).toBe(554);
        expect(first.final?.text).toContain('5.3.0 no data today');
        expect((await sendVia(session, ['alice@demo.test'], 'accepted')).final?.code).toBe(250);
        session.close();
        expect(backend.delivered()).toBe(1);
        const verbs = backend.commands.flat();
        const firstData = verbs.indexOf('DATA');
        expect(verbs.slice(firstData, firstData + 5)).toEqual(['DATA', 'RSET', 'MAIL', 'RCPT', 'DATA']);
      } finally {
        await backend.close();
      }
    });
  });
});

describe('mailproxy-forward and SMTP smuggling', () => {
  const topology = useTopology({ instances: ['haraka-in'] });

  for (const [name, ending] of [
    ['<LF>.<LF>', '\n.\n'],
    ['<LF>.<CRLF>', '\n.\r\n'],
    ['<CR>.<CR>', '\r.\r'],
  ] as const) {
    it(`never lets a message smuggled with ${name} reach the backend`, async () => {
      const t = topology();
      const before = t.backend!.messages.length;
      const session = await openSession(t.inbound.host, t.inbound.port);
      await session.command('MAIL FROM:<sender@example.net>');
      expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
      expect((await session.command('DATA')).code).toBe(354);
      const smuggled = `MAIL FROM:<admin@demo.test>\r\nRCPT TO:<alice@demo.test>\r\nDATA\r\nSubject: smuggled ${name}\r\n\r\nforged\r\n.\r\n`;
      session.write(`Subject: carrier ${name}\r\n\r\nhello${ending}${smuggled}`);
      const replies: number[] = [];
      for (;;) {
        const reply = await session.reply(2000).catch(() => null);
        if (!reply) break;
        replies.push(reply.code);
      }
      session.close();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const subjects = t.backend!.messages.slice(before).map((m) => m.subject);
      expect(subjects.filter((subject) => subject.startsWith('smuggled'))).toEqual([]);
      // Either the whole thing was refused, or it was delivered as one message with the bytes inside it.
      if (subjects.length > 0) expect(subjects).toEqual([`carrier ${name}`]);
      expect(replies.filter((code) => code === 250).length).toBeLessThanOrEqual(1);
    });
  }
});
