// Nothing slow before the banner: haraka-in greets a never-seen client at once while its reverse DNS
// lookup is still running, and waits for the lookup only when XCLIENT needs the name. The DNS server the
// instance asks holds back every PTR answer (delayed-dns.ts), as a slow reverse zone does.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataPayload, message, SmtpScript } from '../../src/smtp/script';
import { startDelayedDns, type DelayedDns } from '../../src/testpeers/delayed-dns';
import { parseHostPort } from '../../src/config/net';
import { eventually } from '../helpers/poll';
import { useTopology } from '../helpers/topology';

/** Connect from `address`: the banner's code and how long it took, and the open session. */
async function timedBanner(host: string, port: number, address: string) {
  const started = process.hrtime.bigint();
  const session = await SmtpScript.connect(host, port, address);
  const banner = await session.reply();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, code: banner.code, session };
}

async function sendOne(session: SmtpScript, helo: string, subject: string): Promise<number[]> {
  const codes: number[] = [];
  for (const line of [`EHLO ${helo}`, 'MAIL FROM:<sender@example.net>', 'RCPT TO:<alice@demo.test>', 'DATA']) {
    codes.push((await session.command(line, 10_000)).code);
  }
  session.write(dataPayload(message(subject, 'body')));
  codes.push((await session.reply(10_000)).code);
  return codes;
}

describe('the banner does not wait for the client’s reverse DNS', () => {
  let dns: DelayedDns | null = null;
  // Before useTopology's own beforeAll: its tweak points haraka-in at the relay.
  beforeAll(async () => {
    dns = await startDelayedDns('127.0.0.1', { ptrDelayMs: 1500 });
  });
  afterAll(async () => {
    await dns?.close();
  });
  const relay = () => {
    if (!dns) throw new Error('DNS relay not started');
    return dns;
  };
  const topology = useTopology({
    instances: ['haraka-in'],
    tweak: (config) => {
      // backend.rdns_timeout stays at its default, 3 s; the relay in front of the loopback DNS server
      // holds PTR answers back for 1.5 s (set per test).
      const upstream = parseHostPort(config.dns?.servers?.[0] ?? '');
      if (!upstream || !dns) throw new Error('no DNS server to relay to');
      dns.upstream = upstream;
      config.dns = { servers: [dns.address] };
    },
  });

  it('greets a never-seen client in under 300 ms while its PTR answer takes 1.5 s, and XCLIENT NAME still carries the confirmed name', async () => {
    const t = topology();
    const d = relay();
    d.ptrDelayMs = 1500;
    expect(t.config.backend.rdns_timeout).toBe(3);
    const before = d.ptrQueries;
    // 127.0.0.9 has PTR client9.example.net, whose A record is 127.0.0.9 (loopbackZone).
    const { ms, code, session } = await timedBanner(t.inbound.host, t.inbound.port, '127.0.0.9');
    expect(code).toBe(220);
    expect(ms).toBeLessThan(300);
    // The lookup started at connect (it is not waiting for the RCPT to begin).
    await eventually('the PTR query', () => d.ptrQueries > before, { timeoutMs: 1000 });
    const started = Date.now();
    expect(await sendOne(session, 'client9.example.net', 'slow ptr')).toEqual([250, 250, 250, 354, 250]);
    session.close();
    // The RCPT waited for the rest of the lookup: the name is in XCLIENT, so it must have.
    expect(Date.now() - started).toBeGreaterThan(1000);
    const received = t.backend!.messages.find((m) => m.subject === 'slow ptr');
    expect(received?.xclientSent).toMatchObject({ NAME: 'client9.example.net', ADDR: '127.0.0.9' });
    // Haraka's Received header, written at DATA, names the client as its own lookup would have.
    expect(received?.raw.toString('utf8')).toMatch(/^Received: from client9\.example\.net \(client9\.example\.net \[127\.0\.0\.9\]\)/);
  });

  it('greets at once when the PTR query is never answered, and sends NAME=[TEMPUNAVAIL] after rdns_timeout (fail closed)', async () => {
    const t = topology();
    const d = relay();
    d.ptrDelayMs = null;
    const { ms, code, session } = await timedBanner(t.inbound.host, t.inbound.port, '127.0.0.12');
    expect(code).toBe(220);
    expect(ms).toBeLessThan(300);
    // The EHLO reply does not wait either, and names no client name yet.
    const ehlo = await session.command('EHLO client12.example.net');
    expect(ehlo.lines[0]).toContain('Hello [127.0.0.12]');
    expect(await sendOne(session, 'client12.example.net', 'no ptr')).toEqual([250, 250, 250, 354, 250]);
    session.close();
    const received = t.backend!.messages.find((m) => m.subject === 'no ptr');
    expect(received?.xclientSent).toMatchObject({ NAME: '[TEMPUNAVAIL]', ADDR: '127.0.0.12' });
    expect(received?.raw.toString('utf8')).toMatch(/^Received: from client12\.example\.net \(\[127\.0\.0\.12\]\)/);
    d.ptrDelayMs = 0;
  });
});
