// haraka-in with real Haraka processes on loopback: what reaches the backend, what is refused, and how.
import { describe, expect, it } from 'vitest';
import { LOOPBACK } from '../../src/demo/topology';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { useTopology, withTopology } from '../helpers/topology';

const MAX_SIZE = 20_000;

describe('haraka-in forwards mail for accepted domains', () => {
  const topology = useTopology({ tweak: (config) => void (config.inbound = { ...config.inbound, max_message_size: MAX_SIZE }), instances: ['haraka-in'] });

  it('delivers to the backend with headers and body intact', async () => {
    const t = topology();
    const session = await openSession(t.inbound.host, t.inbound.port);
    expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
    expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
    expect((await session.command('DATA')).code).toBe(354);
    const body = ['first line', '.a line that starts with a dot', '', 'tabs\tand  spaces  ', 'ünïcödé ✓', 'x'.repeat(900)].join('\r\n');
    const text = message('intact', body, ['X-Custom: kept as is']);
    session.write(dataPayload(text));
    expect((await session.reply()).code).toBe(250);
    await session.command('QUIT');
    const [received] = await t.backend!.waitForMessages(1);
    expect(received?.mailFrom).toBe('sender@example.net');
    expect(received?.rcptTo).toEqual(['alice@demo.test']);
    const raw = received!.raw.toString('utf8');
    expect(raw).toMatch(/^Received: from /);
    expect(raw.endsWith(`${text}\r\n`) || raw.endsWith(text)).toBe(true);
  });

  it('refuses an unlisted domain with 5xx at RCPT and the session goes on', async () => {
    const t = topology();
    const session = await openSession(t.inbound.host, t.inbound.port);
    await session.command('MAIL FROM:<sender@example.net>');
    const refused = await session.command('RCPT TO:<victim@elsewhere.example>');
    expect(refused.code).toBeGreaterThanOrEqual(500);
    expect(refused.code).toBeLessThan(600);
    expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
    await session.command('RSET');
    expect((await session.command('NOOP')).code).toBe(250);
    session.close();
  });

  it('answers 552 for a message over the size limit and keeps serving', async () => {
    const t = topology();
    const before = t.backend!.messages.length;
    const session = await openSession(t.inbound.host, t.inbound.port);
    const announced = await session.command(`MAIL FROM:<sender@example.net> SIZE=${MAX_SIZE * 2}`);
    expect(announced.code).toBe(552);

    expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
    expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
    expect((await session.command('DATA')).code).toBe(354);
    session.write(
      dataPayload(
        message(
          'too big',
          'y'
            .repeat(100)
            .concat('\r\n')
            .repeat(MAX_SIZE / 50),
        ),
      ),
    );
    expect((await session.reply()).code).toBe(552);
    expect((await session.command('NOOP')).code).toBe(250);
    session.close();

    const next = await openSession(t.inbound.host, t.inbound.port);
    await next.command('MAIL FROM:<sender@example.net>');
    await next.command('RCPT TO:<alice@demo.test>');
    await next.command('DATA');
    next.write(dataPayload(message('small after big', 'fine')));
    expect((await next.reply()).code).toBe(250);
    next.close();
    const messages = await t.backend!.waitForMessages(before + 1);
    expect(messages.map((m) => m.subject)).not.toContain('too big');
  });
});

describe('haraka-in with the backend down', () => {
  it('answers 4xx and delivers nothing', async () => {
    await withTopology({ backend: false, instances: ['haraka-in'], tweak: (config) => void (config.backend = { ...config.backend, timeout: 5 }) }, async (t) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      await session.command('MAIL FROM:<sender@example.net>');
      const started = Date.now();
      const rcpt = await session.command('RCPT TO:<alice@demo.test>');
      let final = rcpt;
      if (rcpt.code === 250) {
        expect((await session.command('DATA')).code).toBe(354);
        session.write(dataPayload(message('backend down', 'nobody home')));
        final = await session.reply();
      }
      const elapsedMs = Date.now() - started;
      console.info(`backend down: ${final.code} ${final.text} after ${elapsedMs} ms`);
      expect(final.code).toBeGreaterThanOrEqual(400);
      expect(final.code).toBeLessThan(500);
      session.close();
      expect(LOOPBACK.backend).toBe('127.0.0.2');
    });
  });
});
