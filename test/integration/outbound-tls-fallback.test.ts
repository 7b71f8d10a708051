// haraka-out and an MX whose STARTTLS handshake fails: without an MTA-STS enforce policy the message goes to
// that MX once more without TLS, at once, as Postfix does at smtp_tls_security_level = may. (Haraka 3.3.4
// remembers a failed handshake only in Redis; without it, every retry failed the same way for five days.)
// The enforce side is in mta-sts-delivery.test.ts.
import { describe, expect, it } from 'vitest';
import { INTERNET_DOMAIN, LOOPBACK, type Topology } from '../../src/demo/topology';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { startBrokenTlsMx } from '../helpers/broken-tls-mx';
import { eventually } from '../helpers/poll';
import { withTopology } from '../helpers/topology';

async function relay(t: Topology, to: string, subject: string): Promise<void> {
  const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend });
  expect((await session.command('MAIL FROM:<alice@demo.test>')).code).toBe(250);
  expect((await session.command(`RCPT TO:<${to}>`)).code).toBe(250);
  expect((await session.command('DATA')).code).toBe(354);
  session.write(dataPayload(message(subject, 'over a broken STARTTLS')));
  expect((await session.reply()).code).toBe(250);
  session.close();
}

describe('haraka-out and a broken STARTTLS', () => {
  it('retries that MX once without TLS, logs it, and tries TLS first again for the next message', async () => {
    await withTopology(
      {
        instances: ['haraka-out'],
        internet: false,
        // A retry on Haraka's schedule would come only after 5 minutes: the fallback must not wait for it.
        tweak: (config) => void (config.outbound = { ...config.outbound, retry_intervals: [300], max_queue_lifetime: 3600 }),
      },
      async (t) => {
        const mx = await startBrokenTlsMx(LOOPBACK.internet, t.config.outbound.mx_port, `mx.${INTERNET_DOMAIN}`);
        const log = () => t.haraka['haraka-out']?.output() ?? '';
        try {
          await relay(t, `bob@${INTERNET_DOMAIN}`, 'first');
          await eventually('the first message delivered', () => mx.deliveries.length >= 1, { timeoutMs: 20_000, context: () => log().slice(-4000) });
          expect(mx.deliveries[0]?.rcpts).toEqual([`bob@${INTERNET_DOMAIN}`]);
          expect(mx.sessions[0]).toContain('STARTTLS');
          expect(mx.sessions.at(-1)).not.toContain('STARTTLS');
          expect(log()).toMatch(/STARTTLS with 127\.0\.0\.4 failed[^\n]*once without TLS/);

          await relay(t, `carol@${INTERNET_DOMAIN}`, 'second');
          await eventually('the second message delivered', () => mx.deliveries.length >= 2, { timeoutMs: 20_000, context: () => log().slice(-4000) });
          expect(mx.deliveries[1]?.rcpts).toEqual([`carol@${INTERNET_DOMAIN}`]);
          // Each message tried TLS first: the fallback was for one delivery, not a lasting downgrade of the host.
          expect(mx.brokenHandshakes()).toBe(2);
          expect(mx.deliveries).toHaveLength(2);
        } finally {
          await mx.close();
        }
      },
    );
  });

  it('earns one immediate retry per host and message, never a loop: two MX names on one broken address, a 4xx without TLS', async () => {
    await withTopology(
      {
        instances: ['haraka-out'],
        internet: false,
        tweak: (config) => void (config.outbound = { ...config.outbound, retry_intervals: [300], max_queue_lifetime: 3600 }),
      },
      async (t) => {
        const zone = t.dns.zone;
        zone.MX = {
          ...zone.MX,
          [INTERNET_DOMAIN]: [
            { exchange: `mx1.${INTERNET_DOMAIN}`, preference: 10 },
            { exchange: `mx2.${INTERNET_DOMAIN}`, preference: 20 },
          ],
        };
        zone.A = { ...zone.A, [`mx1.${INTERNET_DOMAIN}`]: [LOOPBACK.internet], [`mx2.${INTERNET_DOMAIN}`]: [LOOPBACK.internet] };
        const mx = await startBrokenTlsMx(LOOPBACK.internet, t.config.outbound.mx_port, `mx.${INTERNET_DOMAIN}`, '451 4.2.1 mailbox busy, try later');
        try {
          await relay(t, `bob@${INTERNET_DOMAIN}`, 'busy');
          await eventually('the first attempt', () => mx.sessions.length >= 2, { timeoutMs: 20_000 });
          await new Promise((resolve) => setTimeout(resolve, 6000));
          // One attempt: TLS to mx1 fails, mx2 (the same address) goes without TLS and gets 451; the message then
          // waits its 300 s retry. Before, every deferral was retried at once, uncounted: a loop.
          expect(mx.sessions.length).toBeLessThanOrEqual(4);
          expect(mx.deliveries).toHaveLength(0);
        } finally {
          await mx.close();
        }
      },
    );
  });
});
