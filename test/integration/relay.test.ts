// haraka-out is a closed relay: a client outside the ACL gets 5xx for every recipient, whatever form the
// address takes, and the ACL client gets its mail delivered.
import { describe, expect, it } from 'vitest';
import { DEMO_DOMAIN, INTERNET_DOMAIN, LOOPBACK } from '../../src/demo/topology';
import { allRelayTricks } from '../../src/relay-tricks';
import { openSession } from '../../src/smtp/script';
import { useTopology } from '../helpers/topology';

const TRICKS = allRelayTricks({ foreign: INTERNET_DOMAIN, own: DEMO_DOMAIN, ownHost: 'mx.demo.test', ipv4: '127.0.0.4', ipv6: '::1' });

describe('haraka-out refuses clients outside the relay ACL', () => {
  const topology = useTopology({ instances: ['haraka-out'], backend: false });

  for (const sender of ['alice@demo.test', '']) {
    it(`answers 5xx to every relay trick (MAIL FROM:<${sender}>)`, async () => {
      const t = topology();
      const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: '127.0.0.1' });
      const mail = await session.command(`MAIL FROM:<${sender}>`);
      expect(mail.code).toBe(250);
      for (const rcpt of TRICKS) {
        const reply = await session.command(`RCPT TO:<${rcpt}>`);
        expect(Math.floor(reply.code / 100), `RCPT TO:<${rcpt}> got ${reply.code} ${reply.text}`).toBe(5);
      }
      expect(Math.floor((await session.command('DATA')).code / 100)).toBe(5);
      expect((await session.command('QUIT')).code).toBe(221);
      session.close();
    });
  }

  it('refuses other loopback addresses too (127.0.0.9, 127.0.0.3)', async () => {
    const t = topology();
    for (const localAddress of ['127.0.0.9', LOOPBACK.wireguard]) {
      const session = await openSession(t.outbound.host, t.outbound.port, { localAddress });
      await session.command('MAIL FROM:<alice@demo.test>');
      const reply = await session.command(`RCPT TO:<bob@${INTERNET_DOMAIN}>`);
      expect(Math.floor(reply.code / 100), localAddress).toBe(5);
      session.close();
    }
    expect(t.internet!.messages).toHaveLength(0);
  });
});
