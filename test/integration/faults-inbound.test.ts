// haraka-in's forwarder under backend faults, counted: several clients send messages
// with unique subjects; each test counts the messages the clients were told 250 for and the messages the
// backend received. Every 250 must be received exactly once; nothing is received twice. A message the
// backend received although its client was not told 250 is a duplicate at the sender's retry: only the
// backend that commits and then fails to answer in time can cause that, and it is counted where it happens.
import { describe, expect, it } from 'vitest';
import { LOOPBACK, type Topology } from '../../src/demo/topology';
import { freePort } from '../helpers/ports';
import { RawSmtp } from '../helpers/raw-smtp';
import { startScriptedBackend, type Delivery, type ScriptedBackend, type ScriptedBackendOptions } from '../helpers/scripted-backend';
import { withTopology } from '../helpers/topology';

type Tweak = NonNullable<Parameters<typeof withTopology>[0]['tweak']>;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Outcome {
  id: string;
  /** Reply codes: MAIL, each RCPT, DATA, end of data (0: none, the connection was gone). */
  codes: number[];
  told250: boolean;
}

/** One message with unique subject `id` over a fresh client session, every reply kept. */
async function sendOne(t: Topology, id: string, rcpts: string[], options: { replyTimeoutMs?: number } = {}): Promise<Outcome> {
  const codes: number[] = [];
  let client: RawSmtp | null = null;
  try {
    client = await RawSmtp.open(t.inbound.host, t.inbound.port);
    const step = async (line: string) => {
      const reply = await client!.command(line, options.replyTimeoutMs);
      codes.push(reply?.code ?? 0);
      return reply?.code ?? 0;
    };
    if ((await step('MAIL FROM:<sender@example.net>')) !== 250) return { id, codes, told250: false };
    let accepted = 0;
    for (const rcpt of rcpts) if ((await step(`RCPT TO:<${rcpt}>`)) === 250) accepted += 1;
    if (accepted === 0 || (await step('DATA')) !== 354) return { id, codes, told250: false };
    client.write(`From: sender@example.net\r\nTo: ${rcpts.join(', ')}\r\nSubject: ${id}\r\n\r\nbody of ${id}\r\n${'line of body text\r\n'.repeat(20)}.\r\n`);
    const final = (await client.reply(options.replyTimeoutMs))?.code ?? 0;
    codes.push(final);
    return { id, codes, told250: final === 250 };
  } catch {
    return { id, codes, told250: false };
  } finally {
    client?.close();
  }
}

const subjectOf = (delivery: Delivery) => /^Subject: (\S+)$/m.exec(delivery.data.replace(/\r\n/g, '\n'))?.[1] ?? '';

/** Told 250 and received must match one for one; the ids received without a 250 are returned. */
function countAndCheck(outcomes: Outcome[], deliveries: Delivery[]): { told: number; received: number; receivedWithout250: string[] } {
  const received = deliveries.map(subjectOf);
  const counts = new Map<string, number>();
  for (const id of received) counts.set(id, (counts.get(id) ?? 0) + 1);
  const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  expect(twice, 'received twice').toEqual([]);
  const told = outcomes.filter((o) => o.told250).map((o) => o.id);
  for (const id of told) expect(counts.get(id), `${id} was told 250`).toBe(1);
  return { told: told.length, received: received.length, receivedWithout250: received.filter((id) => !told.includes(id)) };
}

async function withBackend(options: ScriptedBackendOptions, tweak: Tweak | undefined, body: (t: Topology, backend: ScriptedBackend) => Promise<void>): Promise<void> {
  await withTopology({ instances: ['haraka-in'], backend: false, internet: false, ...(tweak ? { tweak } : {}) }, async (t) => {
    const backend = await startScriptedBackend(LOOPBACK.backend, t.config.backend.port, options);
    try {
      await body(t, backend);
    } finally {
      await backend.close();
    }
  });
}

/** `total` messages over `lanes` clients at once, each with `rcpts(i)` recipients. */
async function sendMany(t: Topology, prefix: string, total: number, lanes: number, rcpts: (i: number) => string[] = () => ['alice@demo.test']): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      for (let i = next++; i < total; i = next++) outcomes.push(await sendOne(t, `${prefix}${i}`, rcpts(i)));
    }),
  );
  return outcomes;
}

const backendTimeouts =
  (settings: Record<string, number>): Tweak =>
  (config) =>
    void (config.backend = { ...config.backend, ...settings });

describe('haraka-in: told 250 = received once, under backend faults', () => {
  it('backend down: every client gets 4xx at RCPT, nothing is told 250', async () => {
    const closed = await freePort(LOOPBACK.backend);
    await withTopology({ instances: ['haraka-in'], backend: false, internet: false, tweak: backendTimeouts({ port: closed }) }, async (t) => {
      const started = Date.now();
      const outcomes = await sendMany(t, 'down', 20, 4);
      const ms = Date.now() - started;
      expect(outcomes.every((o) => o.codes[1] === 451 && !o.told250)).toBe(true);
      console.info(`backend down: 20 messages, 0 told 250, 0 received, all 451 at RCPT (20 sessions in ${ms} ms)`);
    });
  });

  it('slow backend (replies after the command timeout): 4xx, nothing received; a slow verdict within data_timeout: 250, received once', async () => {
    await withBackend({ replyDelayMs: { RCPT: 2500 } }, backendTimeouts({ timeout: 1 }), async (t, backend) => {
      const outcomes = await sendMany(t, 'slowrcpt', 8, 4);
      await sleep(2000);
      const count = countAndCheck(outcomes, backend.deliveries);
      expect(count.told).toBe(0);
      expect(outcomes.every((o) => o.codes[1] === 451)).toBe(true);
      expect(count.received).toBe(0);
      console.info(`slow RCPT (2.5 s, timeout 1 s): 8 messages, 0 told 250, 0 received`);
    });
    await withBackend({ endOfDataDelayMs: 2500 }, backendTimeouts({ timeout: 1, data_timeout: 10 }), async (t, backend) => {
      const outcomes = await sendMany(t, 'slowdot', 8, 4);
      const count = countAndCheck(outcomes, backend.deliveries);
      expect(count.told).toBe(8);
      expect(count.received).toBe(8);
      console.info(`slow end-of-data verdict (2.5 s, timeout 1 s, data_timeout 10 s): 8 messages, 8 told 250, 8 received once`);
    });
  }, 60_000);

  it('a verdict later than data_timeout: the client gets 4xx while the backend has the message (the duplicate at its retry, counted)', async () => {
    // A message sent in one write waits data_timeout for its verdict (at least 10 s); the backend answers
    // at 11.5 s, after the forwarder gave up.
    const tweak: Tweak = (config) => {
      backendTimeouts({ timeout: 1, data_timeout: 10 })(config);
      config.inbound = { ...config.inbound, max_message_size: 4096 };
    };
    await withBackend({ endOfDataDelayMs: 11_500 }, tweak, async (t, backend) => {
      const outcomes = await sendMany(t, 'lateverdict', 4, 4);
      await sleep(2500);
      const count = countAndCheck(outcomes, backend.deliveries);
      expect(count.told).toBe(0);
      expect(outcomes.every((o) => o.codes.at(-1) === 451)).toBe(true);
      // The backend committed each one after the forwarder gave up: the sender retries, a second copy.
      expect(count.receivedWithout250).toHaveLength(4);
      console.info(`verdict after data_timeout: 4 messages, 0 told 250, 4 received anyway (each a duplicate at the sender's retry): why data_timeout is 600 s`);
    });
  }, 45_000);

  it('the backend drops the connection after a RCPT: later RCPTs and DATA get 4xx, told 250 = received', async () => {
    // Every third RCPT of the run drops the connection (the messages have two recipients).
    await withBackend({ rcpt: (n) => (n % 3 === 1 ? 'drop' : null) }, undefined, async (t, backend) => {
      const outcomes = await sendMany(t, 'droprcpt', 20, 4, () => ['alice@demo.test', 'bob@demo.test']);
      await sleep(500);
      const count = countAndCheck(outcomes, backend.deliveries);
      expect(count.receivedWithout250).toEqual([]);
      expect(count.told).toBeGreaterThan(0);
      expect(count.told).toBeLessThan(20);
      // A message told 250 was delivered to every recipient its client was told 250 for.
      for (const o of outcomes.filter((x) => x.told250)) {
        const delivery = backend.deliveries.find((d) => subjectOf(d) === o.id)!;
        expect(delivery.rcpts).toHaveLength(o.codes.slice(1, -2).filter((code) => code === 250).length);
      }
      console.info(`drop after RCPT: 20 messages, ${count.told} told 250, ${count.received} received, ${20 - count.told} refused with 4xx`);
    });
  });

  it('the backend drops the connection in the middle of the message data: 4xx, told 250 = received', async () => {
    await withBackend({ dropInData: (n) => n % 2 === 0 }, undefined, async (t, backend) => {
      const outcomes = await sendMany(t, 'dropdata', 20, 4);
      await sleep(500);
      const count = countAndCheck(outcomes, backend.deliveries);
      expect(count.receivedWithout250).toEqual([]);
      expect(count.told).toBe(10);
      expect(outcomes.filter((o) => !o.told250).every((o) => o.codes.at(-1) === 451)).toBe(true);
      console.info(`drop mid-DATA: 20 messages, ${count.told} told 250, ${count.received} received, 10 refused with 451`);
    });
  });

  it('the backend restarts three times under load: told 250 = received once', async () => {
    await withTopology({ instances: ['haraka-in'], backend: false, internet: false }, async (t) => {
      const port = t.config.backend.port;
      const deliveries: Delivery[] = [];
      let backend = await startScriptedBackend(LOOPBACK.backend, port);
      const outcomes: Outcome[] = [];
      let running = true;
      let n = 0;
      const lanes = Array.from({ length: 6 }, async () => {
        while (running) outcomes.push(await sendOne(t, `restart${n++}`, ['alice@demo.test', 'bob@demo.test']));
      });
      for (let restart = 0; restart < 3; restart++) {
        await sleep(1500);
        deliveries.push(...backend.deliveries);
        await backend.close();
        await sleep(300);
        backend = await startScriptedBackend(LOOPBACK.backend, port);
      }
      await sleep(1500);
      running = false;
      await Promise.all(lanes);
      deliveries.push(...backend.deliveries);
      await backend.close();
      const count = countAndCheck(outcomes, deliveries);
      const refused = outcomes.length - count.told;
      expect(count.told).toBeGreaterThan(100);
      expect(refused).toBeGreaterThan(0);
      console.info(
        `backend restarted 3 times under load (6 clients): ${outcomes.length} messages, ${count.told} told 250, ${count.received} received, ${refused} refused with 4xx, ` +
          `${count.receivedWithout250.length} received without a 250`,
      );
      // The scripted backend answers the end of data in the same instant it commits: a restart cannot fall
      // between the two, so nothing may be received without its 250.
      expect(count.receivedWithout250).toEqual([]);
    });
  }, 60_000);
});
