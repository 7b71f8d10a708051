// haraka-out with real Haraka on loopback: relays for the ACL only.
import { describe, expect, it } from 'vitest';
import { LOOPBACK, INTERNET_DOMAIN } from '../../src/demo/topology';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { useTopology } from '../helpers/topology';

describe('haraka-out', () => {
  const topology = useTopology({ instances: ['haraka-out'], backend: false });

  it('relays a message from the backend (127.0.0.2) to the internet MX found by DNS', async () => {
    const t = topology();
    const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend });
    expect((await session.command('MAIL FROM:<alice@demo.test>')).code).toBe(250);
    expect((await session.command(`RCPT TO:<bob@${INTERNET_DOMAIN}>`)).code).toBe(250);
    expect((await session.command('DATA')).code).toBe(354);
    session.write(dataPayload(message('outbound relay', 'to the internet')));
    expect((await session.reply()).code).toBe(250);
    session.close();
    const [delivered] = await t.internet!.waitForMessages(1, 20_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${t.haraka['haraka-out']?.output().slice(-3000)}`);
    });
    expect(delivered?.rcptTo).toEqual([`bob@${INTERNET_DOMAIN}`]);
    expect(delivered?.subject).toBe('outbound relay');
    expect(t.dns.queries.some((query) => query.type === 'MX' && query.name === INTERNET_DOMAIN)).toBe(true);
  });

  it('refuses a client outside the relay ACL (127.0.0.1) with 5xx for every recipient', async () => {
    const t = topology();
    const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: '127.0.0.1' });
    await session.command('MAIL FROM:<alice@demo.test>');
    for (const rcpt of [`bob@${INTERNET_DOMAIN}`, 'alice@demo.test']) {
      const reply = await session.command(`RCPT TO:<${rcpt}>`);
      expect(reply.code, rcpt).toBeGreaterThanOrEqual(500);
      expect(reply.code, rcpt).toBeLessThan(600);
    }
    expect((await session.command('DATA')).code).toBeGreaterThanOrEqual(500);
    session.close();
  });
});
