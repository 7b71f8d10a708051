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
    await withTopology(
      { instances: ['haraka-out'], internet: { rejectRecipient: () => '550 5.1.1 no such user here' } },
      async (t) => {
        await relay(t, 'alice@demo.test', `nobody@${INTERNET_DOMAIN}`, 'will bounce');
        await relay(t, '', `nobody@${INTERNET_DOMAIN}`, 'bounce of a bounce');
        const [dsn] = await t.backend!.waitForMessages(1, 20_000);
        expect(dsn?.mailFrom).toBe('');
        expect(dsn?.rcptTo).toEqual(['alice@demo.test']);
        expect(dsn?.raw.toString('utf8')).toContain('550 5.1.1 no such user here');
        expect(dsn?.remoteAddress).toBe(LOOPBACK.wireguard);
        // Haraka logs the null-sender message's failure as a double bounce and sends nothing for it.
        await waitForLog(t, /Double bounce/);
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(t.backend!.messages).toHaveLength(1);
      },
    );
  });

  it('bounces a message whose queue lifetime ran out, with a DSN back to the backend', async () => {
    await withTopology(
      { instances: ['haraka-out'], internet: false, tweak: (config) => void (config.outbound = { ...config.outbound, retry_intervals: [5], max_queue_lifetime: 5 }) },
      async (t) => {
        await relay(t, 'alice@demo.test', `bob@${INTERNET_DOMAIN}`, 'expires');
        const [dsn] = await t.backend!.waitForMessages(1, 20_000);
        expect(dsn?.mailFrom).toBe('');
        expect(dsn?.rcptTo).toEqual(['alice@demo.test']);
        expect(dsn?.raw.toString('utf8')).toMatch(/Subject: expires|bob@example\.net/);
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
