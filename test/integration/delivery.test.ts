// haraka-out's delivery: retries, durability across kill -9, bounces, and routing of our own domains.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeSelfSigned } from '../../src/certs/selfsigned';
import { INTERNET_DOMAIN, LOOPBACK } from '../../src/demo/topology';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { startSmtpSink, type SmtpSink } from '../../src/testpeers/smtp-sink';
import type { Topology } from '../../src/demo/topology';
import { withTopology } from '../helpers/topology';
import { eventually } from '../helpers/poll';
import { header, parseDsn, type ParsedDsn } from '../helpers/dsn';

const FAST_RETRIES = (config: { outbound?: object }) => void (config.outbound = { ...config.outbound, retry_intervals: [5], max_queue_lifetime: 15 });

async function relay(t: Topology, from: string, to: string, subject: string): Promise<void> {
  const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend });
  expect((await session.command(`MAIL FROM:<${from}>`)).code).toBe(250);
  expect((await session.command(`RCPT TO:<${to}>`)).code).toBe(250);
  expect((await session.command('DATA')).code).toBe(354);
  session.write(dataPayload(message(subject, 'outbound body')));
  expect((await session.reply()).code).toBe(250);
  session.close();
}

/** The fields every bounce must carry, whatever the failure: a message a person can read and reply to. */
function expectReadableDsn(dsn: ParsedDsn, rcpt: string, subject: string): void {
  expect(header(dsn, 'From')).toBe('Mail Delivery System <MAILER-DAEMON@mx.demo.test>');
  expect(header(dsn, 'To')).toBe('<alice@demo.test>');
  expect(header(dsn, 'Subject')).toBe('Undelivered Mail Returned to Sender');
  expect(header(dsn, 'Date')).toMatch(/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$/);
  expect(header(dsn, 'Message-Id')).toMatch(/^<[^@\s]+@mx\.demo\.test>$/);
  expect(header(dsn, 'MIME-Version')).toBe('1.0');
  expect(header(dsn, 'Auto-Submitted')).toBe('auto-replied');
  expect(dsn.reportType).toBe('delivery-status');
  expect(dsn.human).toContain('This is the mail system at mx.demo.test.');
  expect(dsn.human).toContain(`<${rcpt}>: `);
  expect(dsn.human).toContain(`The subject of your message: ${subject}`);
  expect(dsn.human).not.toMatch(/\?\s*$|\{\w+\}/m);
  expect(dsn.perMessage.get('reporting-mta')).toBe('dns;mx.demo.test');
  expect(dsn.recipients).toHaveLength(1);
  expect(dsn.recipients[0]?.get('final-recipient')).toBe(`rfc822;${rcpt}`);
  expect(dsn.recipients[0]?.get('action')).toBe('failed');
}

async function waitForLog(t: Topology, pattern: RegExp): Promise<void> {
  const output = () => t.haraka['haraka-out']?.output() ?? '';
  await eventually(`haraka-out to log ${pattern}`, () => pattern.test(output()), { context: () => output().slice(-3000) });
}

describe('haraka-out delivery', () => {
  /** Relays a message while the MX is down, waits for the first temp failure, starts the MX, lets `meanwhile`
   * run (a restart), and expects the message delivered. */
  async function deliveredAfterOutage(subject: string, meanwhile: (t: Topology) => Promise<void> = async () => undefined): Promise<void> {
    await withTopology({ instances: ['haraka-out'], internet: false, tweak: FAST_RETRIES }, async (t) => {
      await relay(t, 'alice@demo.test', `bob@${INTERNET_DOMAIN}`, subject);
      await waitForLog(t, /Temp failing/);
      const mx: SmtpSink = await startSmtpSink({ host: LOOPBACK.internet, port: t.config.outbound.mx_port });
      try {
        await meanwhile(t);
        const [delivered] = await mx.waitForMessages(1, 30_000);
        expect(delivered?.subject).toBe(subject);
      } finally {
        await mx.close();
      }
    });
  }

  it('queues while the MX is down, retries, and delivers once it is back', async () => {
    await deliveredAfterOutage('retry me');
  });

  it('loses nothing to kill -9: the queue reloads on start and delivers', async () => {
    await deliveredAfterOutage('survive kill -9', async (t) => void (await t.restart('haraka-out', 'SIGKILL')));
  });

  it('shuts down gracefully on SIGINT with the queue intact, and delivers after the restart', async () => {
    await deliveredAfterOutage('survive SIGINT', async (t) => {
      const before = t.haraka['haraka-out']!;
      await t.restart('haraka-out', 'SIGINT');
      expect(await before.exited).toBe(0);
    });
  });

  it('sends one DSN back to the backend for a permanent failure, and never bounces a bounce', async () => {
    await withTopology({ instances: ['haraka-out'], internet: { rejectRecipient: () => '550 5.1.1 no such user here' } }, async (t) => {
      await relay(t, 'alice@demo.test', `nobody@${INTERNET_DOMAIN}`, 'will bounce');
      await relay(t, '', `nobody@${INTERNET_DOMAIN}`, 'bounce of a bounce');
      const [dsn] = await t.backend!.waitForMessages(1, 20_000);
      expect(dsn?.mailFrom).toBe('');
      expect(dsn?.rcptTo).toEqual(['alice@demo.test']);
      expect(dsn?.remoteAddress).toBe(LOOPBACK.wireguard);
      const report = parseDsn(dsn!.raw);
      expectReadableDsn(report, `nobody@${INTERNET_DOMAIN}`, 'will bounce');
      expect(report.human).toContain(
        `<nobody@${INTERNET_DOMAIN}>: mx.${INTERNET_DOMAIN} (${LOOPBACK.internet}) answered: 550 5.1.1 no such user here (a permanent failure, at the first attempt)`,
      );
      const [rcpt] = report.recipients;
      expect(rcpt?.get('status')).toBe('5.1.1');
      expect(rcpt?.get('diagnostic-code')).toBe('smtp;550 5.1.1 no such user here');
      expect(rcpt?.get('remote-mta')).toBe(`dns; mx.${INTERNET_DOMAIN}`);
      // Haraka logs the null-sender message's failure as a double bounce and sends nothing for it.
      await waitForLog(t, /Double bounce/);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(t.backend!.messages).toHaveLength(1);
    });
  });

  it('bounces a message whose queue lifetime ran out, with a DSN back to the backend', async () => {
    await withTopology(
      { instances: ['haraka-out'], internet: false, tweak: (config) => void (config.outbound = { ...config.outbound, retry_intervals: [5], max_queue_lifetime: 5 }) },
      async (t) => {
        await relay(t, 'alice@demo.test', `bob@${INTERNET_DOMAIN}`, 'expires');
        const [dsn] = await t.backend!.waitForMessages(1, 20_000);
        expect(dsn?.mailFrom).toBe('');
        expect(dsn?.rcptTo).toEqual(['alice@demo.test']);
        const report = parseDsn(dsn!.raw);
        expectReadableDsn(report, `bob@${INTERNET_DOMAIN}`, 'expires');
        // No MX ever answered: no remote reply to quote, the delivery time ran out (RFC 3463 X.4.7).
        expect(report.human).toMatch(/<bob@example\.net>: no mail server of example\.net could be reached \(a temporary failure, given up after 2 attempts over \d+ seconds\)/);
        const [rcpt] = report.recipients;
        expect(rcpt?.get('status')).toBe('5.4.7');
        expect(rcpt?.has('diagnostic-code')).toBe(false);
      },
    );
  });

  it('bounces an expired message with the remote reply of its last attempt', async () => {
    await withTopology(
      {
        instances: ['haraka-out'],
        internet: { rejectRecipient: () => '452 4.2.2 mailbox full' },
        tweak: (config) => void (config.outbound = { ...config.outbound, retry_intervals: [5], max_queue_lifetime: 5 }),
      },
      async (t) => {
        await relay(t, 'alice@demo.test', `bob@${INTERNET_DOMAIN}`, 'mailbox full');
        const [dsn] = await t.backend!.waitForMessages(1, 20_000);
        const report = parseDsn(dsn!.raw);
        expectReadableDsn(report, `bob@${INTERNET_DOMAIN}`, 'mailbox full');
        expect(report.human).toMatch(
          /<bob@example\.net>: mx\.example\.net \(127\.0\.0\.4\) answered: 452 4\.2\.2 mailbox full \(a temporary failure, given up after 2 attempts over \d+ seconds\)/,
        );
        const [rcpt] = report.recipients;
        // Given up: a permanent status now, with the remote's own reply as the diagnostic.
        expect(rcpt?.get('status')).toBe('5.2.2');
        expect(rcpt?.get('diagnostic-code')).toBe('smtp;452 4.2.2 mailbox full');
        expect(rcpt?.get('remote-mta')).toBe(`dns; mx.${INTERNET_DOMAIN}`);
      },
    );
  });

  it('uses STARTTLS opportunistically when the MX offers it, even with a certificate that does not verify', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-mx-tls-'));
    try {
      const pair = makeSelfSigned(dir, `mx.${INTERNET_DOMAIN}`);
      const tls = { key: readFileSync(pair.keyPath), cert: readFileSync(pair.certPath) };
      await withTopology({ instances: ['haraka-out'], internet: { tls } }, async (t) => {
        await relay(t, 'alice@demo.test', `bob@${INTERNET_DOMAIN}`, 'opportunistic');
        const [delivered] = await t.internet!.waitForMessages(1, 15_000);
        expect(delivered?.secure).toBe(true);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('routes mail for our own domains straight back to the backend, from the WireGuard address', async () => {
    await withTopology({ instances: ['haraka-out'] }, async (t) => {
      await relay(t, 'alice@demo.test', 'carol@demo.test', 'internal');
      const [received] = await t.backend!.waitForMessages(1, 15_000);
      expect(received?.rcptTo).toEqual(['carol@demo.test']);
      expect(received?.remoteAddress).toBe(LOOPBACK.wireguard);
      expect(t.internet!.messages).toHaveLength(0);
    });
  });
});
