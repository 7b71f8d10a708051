// backend.reuse_sessions in a real haraka-in: a client's idle backend session carries the next client's
// mail under that client's own XCLIENT identity, against a backend stand-in that authorizes XCLIENT for
// every identity (Postfix with smtpd_authorized_xclient_hosts=static:all) and one that takes one XCLIENT
// per connection (the documented setup); a kept session the backend closed, or that refuses the new
// XCLIENT, is replaced without the client seeing a difference; a kept session never blocks a client at
// the backend-session cap.
import { describe, expect, it } from 'vitest';
import type { Topology } from '../../src/demo/topology';
import { openSession } from '../../src/smtp/script';
import type { SinkOptions } from '../../src/testpeers/smtp-sink';
import { withScriptedBackend } from '../helpers/scripted-backend';
import { sendVia } from '../helpers/send';
import { withTopology } from '../helpers/topology';

type Tweak = NonNullable<Parameters<typeof withTopology>[0]['tweak']>;

const reuse =
  (on: boolean, limits: Record<string, number> = {}): Tweak =>
  (config) => {
    config.backend = { ...config.backend, reuse_sessions: on };
    if (Object.keys(limits).length > 0) config.limits = { ...config.limits, ...limits };
  };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Time for haraka-in to run the disconnect hook of a client that said QUIT (the session goes to the pool). */
const AFTER_QUIT_MS = 300;

interface Client {
  address: string;
  helo: string;
  verb?: 'EHLO' | 'HELO';
  subject: string;
}

/** One client session: greeting, one message to alice, QUIT; the end-of-data code. */
async function deliverAs(t: Topology, client: Client): Promise<number> {
  const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: client.address, helo: client.helo, ...(client.verb ? { verb: client.verb } : {}) });
  try {
    const { final } = await sendVia(session, ['alice@demo.test'], client.subject);
    await session.command('QUIT');
    return final?.code ?? 0;
  } finally {
    session.close();
    await sleep(AFTER_QUIT_MS);
  }
}

const CLIENTS: Client[] = [
  { address: '127.0.0.9', helo: 'a.example.net', subject: 'from a' },
  { address: '127.0.0.10', helo: 'b.example.net', subject: 'from b' },
  { address: '127.0.0.11', helo: 'c.example.net', verb: 'HELO', subject: 'from c' },
  { address: '127.0.0.12', helo: 'd.example.net', subject: 'from d' },
];

async function withSink<T>(tweak: Tweak, backend: Partial<SinkOptions>, body: (t: Topology) => Promise<T>): Promise<T> {
  return withTopology({ instances: ['haraka-in'], backend, tweak }, body);
}

describe('backend sessions reused across client sessions (backend.reuse_sessions)', () => {
  it('with reuse on and every identity authorized: one backend connection, each message under its own client’s identity', async () => {
    await withSink(reuse(true), { xclientEveryIdentity: true }, async (t) => {
      for (const client of CLIENTS) expect(await deliverAs(t, client)).toBe(250);
      const messages = await t.backend!.waitForMessages(CLIENTS.length);
      for (const [i, client] of CLIENTS.entries()) {
        const received = messages[i]!;
        expect(received.subject).toBe(client.subject);
        expect(received.xclientSent).toMatchObject({ ADDR: client.address, HELO: client.helo, PROTO: client.verb === 'HELO' ? 'SMTP' : 'ESMTP' });
        expect(received.remoteAddress).toBe(client.address);
        // The HELO the backend logs is the one sent after XCLIENT: this client's.
        expect(received.heloName).toBe(client.helo);
      }
      // All four share one connection: c said HELO, whose reply advertises nothing, but the EHLO after a's
      // XCLIENT showed that this backend takes another one.
      expect(new Set(messages.map((m) => m.connectionId)).size).toBe(1);
    });
  }, 60_000);

  const HELO_CLIENTS: Client[] = [
    { address: '127.0.0.13', helo: 'e.example.net', verb: 'HELO', subject: 'from e' },
    { address: '127.0.0.14', helo: 'f.example.net', verb: 'HELO', subject: 'from f' },
    { address: '127.0.0.15', helo: 'g.example.net', verb: 'HELO', subject: 'from g' },
  ];

  it('clients that all say HELO: an EHLO in the first one’s session after it left shows XCLIENT, and the next two reuse it, each under its own HELO', async () => {
    await withSink(reuse(true), { xclientEveryIdentity: true }, async (t) => {
      for (const client of HELO_CLIENTS) expect(await deliverAs(t, client)).toBe(250);
      const messages = await t.backend!.waitForMessages(HELO_CLIENTS.length);
      for (const [i, client] of HELO_CLIENTS.entries()) {
        expect(messages[i]!.subject).toBe(client.subject);
        expect(messages[i]!.xclientSent).toMatchObject({ ADDR: client.address, HELO: client.helo, PROTO: 'SMTP' });
        expect(messages[i]!.remoteAddress).toBe(client.address);
        expect(messages[i]!.heloName).toBe(client.helo);
      }
      expect(new Set(messages.map((m) => m.connectionId)).size).toBe(1);
    });
  }, 60_000);

  it('clients that all say HELO, against a backend that takes one XCLIENT per connection: everything delivered, one connection each, none kept', async () => {
    await withSink(reuse(true), {}, async (t) => {
      for (const client of HELO_CLIENTS) expect(await deliverAs(t, client)).toBe(250);
      const messages = await t.backend!.waitForMessages(HELO_CLIENTS.length);
      expect(messages.map((m) => m.remoteAddress)).toEqual(HELO_CLIENTS.map((client) => client.address));
      expect(new Set(messages.map((m) => m.connectionId)).size).toBe(HELO_CLIENTS.length);
      // The EHLO asking showed no XCLIENT: no session was kept and then refused.
      expect(t.haraka['haraka-in']!.output()).not.toMatch(/kept backend session not usable/);
    });
  }, 60_000);

  it('clients that say HELO at max_backend_sessions 1: the slot held while an EHLO asks is given back, and the next client takes the kept session', async () => {
    await withSink(reuse(true, { max_backend_sessions: 1, max_backend_sessions_per_network: 1 }), { xclientEveryIdentity: true }, async (t) => {
      for (const client of HELO_CLIENTS) expect(await deliverAs(t, client)).toBe(250);
      const messages = await t.backend!.waitForMessages(HELO_CLIENTS.length);
      expect(messages.map((m) => m.xclientSent.ADDR)).toEqual(HELO_CLIENTS.map((client) => client.address));
      expect(new Set(messages.map((m) => m.connectionId)).size).toBe(1);
    });
  }, 60_000);

  it('with reuse off: one backend connection per client session, as without the setting', async () => {
    await withSink(reuse(false), { xclientEveryIdentity: true }, async (t) => {
      for (const client of CLIENTS.slice(0, 2)) expect(await deliverAs(t, client)).toBe(250);
      const messages = await t.backend!.waitForMessages(2);
      expect(messages.map((m) => m.xclientSent.ADDR)).toEqual(['127.0.0.9', '127.0.0.10']);
      expect(new Set(messages.map((m) => m.connectionId)).size).toBe(2);
    });
  }, 60_000);

  it('with reuse on against a backend that takes one XCLIENT per connection (the documented setup): everything delivered, one connection each', async () => {
    await withSink(reuse(true), {}, async (t) => {
      for (const client of CLIENTS.slice(0, 2)) expect(await deliverAs(t, client)).toBe(250);
      const messages = await t.backend!.waitForMessages(2);
      expect(messages.map((m) => m.xclientSent.ADDR)).toEqual(['127.0.0.9', '127.0.0.10']);
      expect(messages.map((m) => m.remoteAddress)).toEqual(['127.0.0.9', '127.0.0.10']);
      expect(new Set(messages.map((m) => m.connectionId)).size).toBe(2);
      expect(t.haraka['haraka-in']!.output()).not.toMatch(/kept backend session not usable/);
    });
  }, 60_000);

  it('a kept session never blocks a client at max_backend_sessions: the next client takes it', async () => {
    await withSink(reuse(true, { max_backend_sessions: 1, max_backend_sessions_per_network: 1 }), { xclientEveryIdentity: true }, async (t) => {
      for (const client of CLIENTS.slice(0, 2)) expect(await deliverAs(t, client)).toBe(250);
      const messages = await t.backend!.waitForMessages(2);
      expect(messages.map((m) => m.xclientSent.ADDR)).toEqual(['127.0.0.9', '127.0.0.10']);
      expect(messages[1]!.connectionId).toBe(messages[0]!.connectionId);
    });
  }, 60_000);
});

describe('a kept backend session that went stale is replaced without the client seeing it', () => {
  it('the backend closed the idle kept session (its smtpd_timeout): the next client gets a new connection and 250', async () => {
    await withScriptedBackend({ idleTimeoutMs: 1000 }, reuse(true), async (t, backend) => {
      expect(await deliverAs(t, CLIENTS[0]!)).toBe(250);
      // Kept for the next client...
      expect(backend.open()).toBe(1);
      await sleep(1500);
      // ...until the backend closed it.
      expect(backend.open()).toBe(0);
      expect(await deliverAs(t, CLIENTS[1]!)).toBe(250);
      expect(backend.accepted()).toBe(2);
      expect(backend.delivered()).toBe(2);
    });
  }, 60_000);

  it('the kept session refuses the new XCLIENT (550, as Postfix with only the VPS authorized): a new connection, 250', async () => {
    await withScriptedBackend({ xclientReply: (n) => (n === 1 ? '550 5.7.0 Error: insufficient authorization' : null) }, reuse(true), async (t, backend) => {
      expect(await deliverAs(t, CLIENTS[0]!)).toBe(250);
      expect(await deliverAs(t, CLIENTS[1]!)).toBe(250);
      expect(backend.delivered()).toBe(2);
      expect(backend.accepted()).toBe(2);
      // The second connection started over: XCLIENT right after the banner (remembered) or after EHLO.
      expect(backend.commands[0]).toEqual(['EHLO', 'XCLIENT', 'EHLO', 'MAIL', 'RCPT', 'DATA', 'XCLIENT']);
      expect(backend.commands[1]).toContain('XCLIENT');
    });
  }, 60_000);

  it('the kept session answers the new XCLIENT with 421 and closes: a new connection, 250', async () => {
    await withScriptedBackend({ xclientReply: (n) => (n === 1 ? '421 4.4.2 scripted.test Error: timeout exceeded' : null) }, reuse(true), async (t, backend) => {
      expect(await deliverAs(t, CLIENTS[0]!)).toBe(250);
      expect(await deliverAs(t, CLIENTS[1]!)).toBe(250);
      expect(backend.delivered()).toBe(2);
      expect(backend.accepted()).toBe(2);
    });
  }, 60_000);

  it('a third client after a successful reuse shares the same connection (the scripted backend takes every XCLIENT)', async () => {
    await withScriptedBackend({}, reuse(true), async (t, backend) => {
      for (const client of [CLIENTS[0]!, CLIENTS[1]!, CLIENTS[3]!]) expect(await deliverAs(t, client)).toBe(250);
      expect(backend.accepted()).toBe(1);
      expect(backend.delivered()).toBe(3);
      expect(backend.commands[0]!.filter((verb) => verb === 'XCLIENT')).toHaveLength(3);
    });
  }, 60_000);
});
