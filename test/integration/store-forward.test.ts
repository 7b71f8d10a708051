// Backup MX (inbound.store_and_forward) in a real haraka-in against the backend stand-in: the recipient
// cache learns from live RCPTs, an unreachable backend turns transactions into stored ones (known 250,
// refused 550, unknown 450), stored mail survives kill -9 and reaches the backend once, with XCLIENT
// replaying the original client, when it is back; a stored message the backend refuses is held.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSession } from '../../src/smtp/script';
import { eventually } from '../helpers/poll';
import { sendVia } from '../helpers/send';
import { useKeptMail } from '../helpers/kept-mail';
import { useTopology } from '../helpers/topology';

const refuseNobody = (address: string) => (address.startsWith('nobody@') ? '550 5.1.1 <nobody@demo.test>: Recipient address rejected: User unknown' : null);

describe('store-and-forward while the backend is away', () => {
  const topology = useTopology({
    instances: ['haraka-in'],
    backend: { rejectRecipient: refuseNobody },
    tweak: (config) => {
      config.inbound = { ...config.inbound, store_and_forward: { enabled: true, probe_interval: 1 } };
    },
  });
  const { sinks, spoolDir, count, backendBack } = useKeptMail(topology, { rejectRecipient: refuseNobody });

  /** A backend that accepts everything learns `recipients` live, then goes away. */
  const learnThenAway = async (recipients: string[]) => {
    const t = topology();
    const sink = await backendBack({ rejectRecipient: () => null });
    await eventually(
      'a live delivery',
      async () => {
        const live = await openSession(t.inbound.host, t.inbound.port);
        const result = await sendVia(live, recipients, 'learn');
        live.close();
        return result.final?.text?.includes('Queued by backend') === true;
      },
      { timeoutMs: 15_000 },
    );
    await sink.close();
    sinks.splice(sinks.indexOf(sink), 1);
  };
  const keep = async (recipients: string[], subject: string) => {
    const t = topology();
    const client = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.13' });
    const kept = await sendVia(client, recipients, subject);
    client.close();
    expect(kept.final?.code).toBe(250);
  };
  const readyMetas = () =>
    readdirSync(spoolDir('ready'))
      .filter((name) => name.endsWith('.json'))
      .map((name) => JSON.parse(readFileSync(path.join(spoolDir('ready'), name), 'utf8')));

  it('learns recipients live, keeps mail for them while the backend is away, and delivers it once, as the original client, after kill -9', async () => {
    const t = topology();
    const live = await openSession(t.inbound.host, t.inbound.port);
    const learnt = await sendVia(live, ['alice@demo.test', 'bob@demo.test', 'nobody@demo.test'], 'live');
    expect(learnt.replies.map((reply) => reply.code)).toEqual([250, 250, 550]);
    expect(learnt.final?.code).toBe(250);
    live.close();
    await t.backend!.waitForMessages(1);
    await t.backend!.close();

    const client = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9', helo: 'client9.example.net' });
    const kept = await sendVia(client, ['alice@demo.test', 'bob@demo.test'], 'kept while away');
    expect(kept.replies.map((reply) => reply.code)).toEqual([250, 250]);
    expect(kept.final?.code).toBe(250);
    expect(kept.final?.text).toContain('Kept for the mail server');
    await client.command('RSET');
    const unknown = await sendVia(client, ['carol@demo.test'], 'unknown');
    expect(unknown.replies[0]?.code).toBe(450);
    expect(unknown.replies[0]?.text).toContain('4.4.1');
    await client.command('RSET');
    const refused = await sendVia(client, ['nobody@demo.test'], 'refused');
    expect(refused.replies[0]?.code).toBe(550);
    expect(refused.replies[0]?.text).toContain('5.1.1');
    client.close();
    expect(count('ready')).toBe(1);

    await t.restart('haraka-in', 'SIGKILL');
    const sink = await backendBack();
    const [arrived] = await sink.waitForMessages(1, 30_000);
    expect(arrived?.subject).toBe('kept while away');
    expect(arrived?.rcptTo).toEqual(['alice@demo.test', 'bob@demo.test']);
    expect(arrived?.xclient).toMatchObject({ ADDR: '127.0.0.9', HELO: 'client9.example.net', NAME: 'client9.example.net' });
    expect(arrived?.raw.toString()).toContain('Subject: kept while away');
    await eventually('the drained message removed', () => count('ready') === 0, { timeoutMs: 10_000 });
    // Once: nothing more arrives after the drain removed it.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(sink.messages.map((message) => message.subject)).toEqual(['kept while away']);
  });

  it('holds a stored message the backend refuses with 5xx instead of bouncing it, and leaves nothing ready', async () => {
    const t = topology();
    const [sink] = sinks.length ? sinks : [await backendBack()];
    await eventually(
      'a live delivery',
      async () => {
        const probe = await openSession(t.inbound.host, t.inbound.port);
        const result = await sendVia(probe, ['alice@demo.test'], 'probe live');
        probe.close();
        return result.final?.text?.includes('Queued by backend') === true;
      },
      { timeoutMs: 15_000 },
    );
    await sink!.close();
    sinks.splice(0);
    const client = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.12' });
    const kept = await sendVia(client, ['alice@demo.test'], 'refuse me');
    expect(kept.final?.code).toBe(250);
    client.close();
    const heldBefore = count('held');
    const strict = await backendBack({ rejectMessage: (raw) => (raw.toString().includes('Subject: refuse me') ? '554 5.7.1 Refused by content filter' : null) });
    await eventually('the refused message held', () => count('held') === heldBefore + 1, { timeoutMs: 20_000 });
    expect(count('ready')).toBe(0);
    expect(strict.messages.map((message) => message.subject)).not.toContain('refuse me');
  });

  it('delivers a kept message older than max_age_days when the backend returns, instead of holding it untried', async () => {
    await learnThenAway(['dora@demo.test']);
    await keep(['dora@demo.test'], 'away for a week');
    const [meta] = readyMetas().filter((m) => m.envelope.rcptTo.includes('dora@demo.test'));
    const file = path.join(spoolDir('ready'), `${meta.id}.json`);
    writeFileSync(file, `${JSON.stringify({ ...meta, receivedAt: Date.now() - 7 * 86_400_000 }, null, 1)}\n`);
    const heldBefore = count('held');
    const sink = await backendBack();
    const [arrived] = await sink.waitForMessages(1, 20_000);
    expect(arrived?.subject).toBe('away for a week');
    expect(count('held')).toBe(heldBefore);
  });

  it('holds only the recipients the backend refuses and keeps trying the ones it defers', async () => {
    await learnThenAway(['erin@demo.test', 'finn@demo.test', 'gus@demo.test']);
    await keep(['erin@demo.test', 'finn@demo.test', 'gus@demo.test'], 'mixed verdicts');
    const heldBefore = count('held');
    const sink = await backendBack({
      rejectRecipient: (address) => (address.startsWith('finn@') ? '550 5.1.1 <finn@demo.test>: User unknown' : address.startsWith('gus@') ? '452 4.2.2 Mailbox full' : null),
    });
    const [arrived] = await sink.waitForMessages(1, 20_000);
    expect(arrived?.rcptTo).toEqual(['erin@demo.test']);
    await eventually('the refused recipient held', () => count('held') === heldBefore + 1, { timeoutMs: 10_000 });
    await eventually(
      'the deferred recipient kept with a later try',
      () => {
        const kept = readyMetas().find((m) => m.envelope.mailFrom === 'sender@example.net' && m.envelope.rcptTo.includes('gus@demo.test'));
        return kept && kept.envelope.rcptTo.length === 1 && kept.nextAttemptAt > Date.now() ? kept : null;
      },
      { timeoutMs: 10_000 },
    );
    const held = readdirSync(spoolDir('held'))
      .filter((name) => name.endsWith('.json'))
      .map((name) => JSON.parse(readFileSync(path.join(spoolDir('held'), name), 'utf8')));
    expect(held.some((m) => m.envelope.rcptTo.join() === 'finn@demo.test' && m.held.reason.includes('5.1.1'))).toBe(true);
  });
});
