// The backup MX's DSN, through both real instances: a kept message the backend refuses for good goes back to
// its sender, via haraka-out's pickup directory and queue, to the sender's MX (the rig's "internet" sink),
// only when SPF for the original client passed for the sender's domain; from any other client it is held
// and nobody gets a DSN.
import { existsSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { INTERNET_DOMAIN } from '../../src/demo/topology';
import { openSession } from '../../src/smtp/script';
import type { SinkOptions } from '../../src/testpeers/smtp-sink';
import { eventually } from '../helpers/poll';
import { sendVia } from '../helpers/send';
import { useKeptMail } from '../helpers/kept-mail';
import { useTopology } from '../helpers/topology';

const SENDER = `sender@${INTERNET_DOMAIN}`;
const REFUSAL = '554 5.7.1 Refused by content filter';

describe('store-and-forward returns a refused message to a sender whose SPF passed', () => {
  const topology = useTopology({
    instances: ['haraka-in', 'haraka-out'],
    tweak: (config) => {
      config.inbound = { ...config.inbound, store_and_forward: { enabled: true, probe_interval: 1 } };
    },
  });
  const { sinks, spoolDir, count, backendBack } = useKeptMail(topology);

  /** The backend learns `rcpt` live, goes away, and a message to it from `client` is kept; then the backend
   * comes back and refuses that message with `refusal` (5xx by default), after `meanwhile`. */
  const keptThenRefused = async (
    rcpt: string | string[],
    client: string,
    subject: string,
    refusal = REFUSAL,
    meanwhile = () => undefined as void,
    comeBack: Partial<SinkOptions> = {},
  ) => {
    const rcpts = typeof rcpt === 'string' ? [rcpt] : rcpt;
    const t = topology();
    if (t.backend) {
      await t.backend.close();
      t.backend = null;
    }
    const learner = await backendBack();
    await eventually(
      'a live delivery',
      async () => {
        const live = await openSession(t.inbound.host, t.inbound.port);
        const result = await sendVia(live, rcpts, 'learn');
        live.close();
        return result.final?.text?.includes('Queued by backend') === true;
      },
      { timeoutMs: 15_000 },
    );
    await learner.close();
    sinks.splice(sinks.indexOf(learner), 1);
    const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: client });
    const kept = await sendVia(session, rcpts, subject, SENDER);
    session.close();
    expect(kept.final?.code).toBe(250);
    expect(kept.final?.text).toContain('Kept for the mail server');
    meanwhile();
    await backendBack({ rejectMessage: (raw) => (raw.toString().includes(`Subject: ${subject}`) ? refusal : null), ...comeBack });
  };
  const pickupDir = () => path.join(topology().config.state_dir, 'haraka-out', 'pickup');
  /** Ages every kept message to a week, after one attempt: the next temporary failure expires it. */
  const weekOld = () => {
    for (const name of readdirSync(spoolDir('ready')).filter((file) => file.endsWith('.json'))) {
      const file = path.join(spoolDir('ready'), name);
      const meta = JSON.parse(readFileSync(file, 'utf8'));
      writeFileSync(file, `${JSON.stringify({ ...meta, receivedAt: Date.now() - 7 * 86_400_000, attempts: 1 }, null, 1)}\n`);
    }
  };

  it('sends an RFC 3464 DSN from <> to the sender through haraka-out when SPF passes', async () => {
    const t = topology();
    t.dns.zone.TXT = { ...t.dns.zone.TXT, [INTERNET_DOMAIN]: ['v=spf1 ip4:127.0.0.13 -all'] };
    const heldBefore = count('held');
    await keptThenRefused('alice@demo.test', '127.0.0.13', 'return me');
    const dsn = await eventually('the DSN at the sender MX', () => t.internet?.messages.find((message) => message.subject === 'Undelivered Mail Returned to Sender') ?? null, {
      timeoutMs: 30_000,
    });
    expect(dsn.mailFrom).toBe('');
    expect(dsn.rcptTo).toEqual([SENDER]);
    const raw = dsn.raw.toString();
    expect(raw).toMatch(/Content-Type: multipart\/report; report-type=delivery-status;/);
    expect(raw).toContain('From: Mail Delivery System <MAILER-DAEMON@mx.demo.test>');
    expect(raw).toContain('Auto-Submitted: auto-replied');
    expect(raw).toContain('Final-Recipient: rfc822; alice@demo.test');
    expect(raw).toContain('Status: 5.7.1');
    expect(raw).toContain(`Diagnostic-Code: smtp; ${REFUSAL}`);
    expect(raw).toMatch(/Content-Type: text\/rfc822-headers\r\n\r\n[\s\S]*Subject: return me\r\n/);
    await eventually('the returned message gone from the spool', () => count('ready') === 0, { timeoutMs: 10_000 });
    expect(count('held')).toBe(heldBefore);
    await eventually('the pickup directory emptied', () => readdirSync(pickupDir()).filter((name) => name !== 'bad').length === 0, { timeoutMs: 10_000 });
  });

  it('names each refused recipient with the reply it got', async () => {
    const t = topology();
    t.dns.zone.TXT = { ...t.dns.zone.TXT, [INTERNET_DOMAIN]: ['v=spf1 ip4:127.0.0.13 -all'] };
    const replies: Record<string, string> = { 'dave@demo.test': '550 5.1.1 No such user', 'erin@demo.test': '552 5.2.2 Mailbox full' };
    await keptThenRefused(Object.keys(replies), '127.0.0.13', 'two refusals', REFUSAL, undefined, { rejectRecipient: (address) => replies[address] ?? null });
    const dsn = await eventually('the DSN at the sender MX', () => t.internet?.messages.find((message) => message.raw.toString().includes('Subject: two refusals')) ?? null, {
      timeoutMs: 30_000,
    });
    const raw = dsn.raw.toString();
    for (const [address, reply] of Object.entries(replies)) {
      expect(raw).toContain(`<${address}>: ${reply}`);
      // The recipient's own fields in the delivery-status part, up to the blank line that ends them.
      const fields = raw.slice(raw.indexOf(`Final-Recipient: rfc822; ${address}`)).split('\r\n\r\n')[0];
      expect(fields).toContain(`Status: ${reply.split(' ')[1]}`);
      expect(fields).toContain(`Diagnostic-Code: smtp; ${reply}`);
    }
    await eventually('the returned message gone from the spool', () => count('ready') === 0, { timeoutMs: 10_000 });
  });

  it('holds it, and sends nobody a DSN, when SPF does not pass for the client', async () => {
    const t = topology();
    t.dns.zone.TXT = { ...t.dns.zone.TXT, [INTERNET_DOMAIN]: ['v=spf1 ip4:127.0.0.13 -all'] };
    const heldBefore = count('held');
    const dsnsBefore = t.internet?.messages.length ?? 0;
    await keptThenRefused('bob@demo.test', '127.0.0.12', 'hold me');
    await eventually('the refused message held', () => count('held') === heldBefore + 1, { timeoutMs: 20_000 });
    expect(count('ready')).toBe(0);
    // Time for a DSN to have gone through haraka-out, had one been written.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    expect(t.internet?.messages.length ?? 0).toBe(dsnsBefore);
  });

  it('returns a message that expired after a temporary failure, with status 4.4.7', async () => {
    const t = topology();
    t.dns.zone.TXT = { ...t.dns.zone.TXT, [INTERNET_DOMAIN]: ['v=spf1 ip4:127.0.0.13 -all'] };
    await keptThenRefused('carol@demo.test', '127.0.0.13', 'too old', '451 4.3.0 Try again later', weekOld);
    const dsn = await eventually('the expiry DSN', () => t.internet?.messages.find((message) => message.raw.toString().includes('Subject: too old')) ?? null, {
      timeoutMs: 30_000,
    });
    const raw = dsn.raw.toString();
    expect(dsn.mailFrom).toBe('');
    expect(raw).toContain('could not be delivered within 5 days');
    expect(raw).toContain('Final-Recipient: rfc822; carol@demo.test');
    expect(raw).toContain('Status: 4.4.7');
    expect(raw).toContain('Diagnostic-Code: smtp; 451 4.3.0 Try again later');
    await eventually('the expired message gone from the spool', () => count('ready') === 0, { timeoutMs: 10_000 });
  });

  it('an expiry DSN for a recipient deferred at RCPT names its own 4xx, not the 250 another recipient got', async () => {
    const t = topology();
    t.dns.zone.TXT = { ...t.dns.zone.TXT, [INTERNET_DOMAIN]: ['v=spf1 ip4:127.0.0.13 -all'] };
    await keptThenRefused(['dave@demo.test', 'erin@demo.test'], '127.0.0.13', 'half deferred', REFUSAL, weekOld, {
      rejectMessage: () => null,
      rejectRecipient: (address) => (address === 'erin@demo.test' ? '452 4.2.2 Mailbox full' : null),
    });
    const dsn = await eventually('the expiry DSN', () => t.internet?.messages.find((message) => message.raw.toString().includes('Subject: half deferred')) ?? null, {
      timeoutMs: 30_000,
    });
    const raw = dsn.raw.toString();
    expect(raw).toContain('Diagnostic-Code: smtp; 452 4.2.2 Mailbox full');
  });

  it('haraka-out sets aside a pickup pair whose envelope stays unreadable, and sends nothing for it', async () => {
    const t = topology();
    const sent = t.internet?.messages.length ?? 0;
    const id = '1000-badbadbadbad';
    const old = new Date(Date.now() - 120_000);
    writeFileSync(path.join(pickupDir(), `${id}.eml`), 'Subject: orphan\r\n\r\nbody\r\n');
    writeFileSync(path.join(pickupDir(), `${id}.json`), '{"from": "", "to": [');
    for (const suffix of ['.eml', '.json']) utimesSync(path.join(pickupDir(), `${id}${suffix}`), old, old);
    await eventually('the pair in bad/', () => existsSync(path.join(pickupDir(), 'bad', `${id}.eml`)) && existsSync(path.join(pickupDir(), 'bad', `${id}.json`)), {
      timeoutMs: 10_000,
    });
    expect(readdirSync(pickupDir()).filter((name) => name.startsWith(id))).toEqual([]);
    expect(t.internet?.messages.length ?? 0).toBe(sent);
  });
});
