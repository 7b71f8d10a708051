// Both instances hand on exactly the bytes they accepted, after only their own trace header: DKIM-signed
// messages (simple and relaxed) that Haraka's parsed header would have changed go through haraka-in to
// the backend stand-in and through haraka-out to the "internet" MX, and arrive byte for byte, their
// signatures still verifying.
import { describe, expect, it } from 'vitest';
import { LOOPBACK, type Topology } from '../../src/demo/topology';
import { SmtpScript } from '../../src/smtp/script';
import { signed, verdict, type Canonicalization } from '../helpers/dkim';
import { useTopology } from '../helpers/topology';
import { CASES, expectTraceThenMessage, latin1, sendRaw, type TransparencyCase } from '../helpers/transparency';

const CANONICALIZATIONS: Canonicalization[] = ['simple/simple', 'relaxed/relaxed'];

describe('byte transparency with DKIM-signed mail', () => {
  const topology = useTopology();
  let counter = 0;

  async function through(t: Topology, instance: 'haraka-in' | 'haraka-out', test: TransparencyCase, canonicalization: Canonicalization): Promise<void> {
    const id = `${instance}-${counter++}`;
    // A header of its own per run, so that each message is found among all the sink received.
    const message = await signed(Buffer.concat([Buffer.from(`X-Run: ${id}\r\n`), test.message]), canonicalization);
    const sink = instance === 'haraka-in' ? t.backend : t.internet;
    if (!sink) throw new Error('no sink');
    const before = sink.messages.length;
    if (instance === 'haraka-in') await sendRaw(t.inbound.host, t.inbound.port, '127.0.0.9', 'alice@demo.test', test, message);
    else await sendRaw(t.outbound.host, t.outbound.port, LOOPBACK.backend, 'bob@example.net', test, message);
    const messages = await sink.waitForMessages(before + 1, 30_000);
    const arrived = messages.find((m) => m.raw.includes(`X-Run: ${id}\r\n`));
    if (!arrived) throw new Error(`message ${id} did not arrive`);
    expectTraceThenMessage(arrived.raw, message);
    expect(await verdict(arrived.raw)).toBe('pass');
  }

  it('refuses a message with a line Haraka would fold (over 64 KB) with 552 5.3.4 before 250, on both instances', async () => {
    const t = topology();
    const message = latin1(`From: a@example.net\r\nTo: alice@demo.test\r\nSubject: long line\r\n\r\n${'x'.repeat(70_000)}\r\n`);
    for (const [host, port, from, rcpt] of [
      [t.inbound.host, t.inbound.port, '127.0.0.9', 'alice@demo.test'],
      [t.outbound.host, t.outbound.port, LOOPBACK.backend, 'bob@example.net'],
    ] as const) {
      const session = await SmtpScript.connect(host, port, from);
      try {
        await session.reply();
        await session.command('EHLO client.example.net');
        await session.command('MAIL FROM:<sender@example.net>');
        expect((await session.command(`RCPT TO:<${rcpt}>`)).code).toBe(250);
        expect((await session.command('DATA')).code).toBe(354);
        session.write(Buffer.concat([message, Buffer.from('.\r\n')]));
        const final = await session.reply(30_000);
        expect(final.code, final.text).toBe(552);
        expect(final.text).toMatch(/^5\.3\.4 Message has a line over 65536 bytes/);
      } finally {
        session.close();
      }
    }
  });

  for (const instance of ['haraka-in', 'haraka-out'] as const) {
    for (const test of CASES) {
      for (const canonicalization of CANONICALIZATIONS) {
        it(`${instance}: ${test.name} (${canonicalization})`, async () => {
          await through(topology(), instance, test, canonicalization);
        }, 60_000);
      }
    }
  }
});
