// mailproxy-limits in a real haraka-in: every limit holds (421 and one `refused` log line) and a client
// under it is served. Test clients are 127.0.0.x: unlike Haraka's edge plugins, the limits apply to
// loopback and private addresses too. Each test uses its own client addresses.
import net from 'node:net';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { LOOPBACK, type Topology } from '../../src/demo/topology';
import type { ConfigInput } from '../../src/config/schema';
import { dataPayload, message, SmtpScript, type Reply } from '../../src/smtp/script';
import { startScriptedBackend, type ScriptedBackend, type ScriptedBackendOptions } from '../helpers/scripted-backend';
import { eventually } from '../helpers/poll';
import { withTopology } from '../helpers/topology';

type Limits = NonNullable<ConfigInput['limits']>;

/** Every limit off or out of the way, except those a test sets. */
function limitsTweak(limits: Limits) {
  return (config: ConfigInput) => {
    config.limits = { max_clients: 1000, max_clients_per_ip: 0, max_connect_rate_per_ip: 0, max_backend_sessions: 50, max_session_time: 0, ...limits };
  };
}

async function withLimits(limits: Limits, body: (t: Topology) => Promise<void>): Promise<void> {
  await withTopology({ instances: ['haraka-in'], tweak: limitsTweak(limits) }, body);
}

async function withLimitsAndScriptedBackend(limits: Limits, options: ScriptedBackendOptions, body: (t: Topology, backend: ScriptedBackend) => Promise<void>): Promise<void> {
  await withTopology({ instances: ['haraka-in'], backend: false, tweak: limitsTweak(limits) }, async (t) => {
    const backend = await startScriptedBackend(LOOPBACK.backend, t.config.backend.port, options);
    try {
      await body(t, backend);
    } finally {
      await backend.close();
    }
  });
}

/** Connects from `address` and reads the first reply: the banner, or the refusal. */
async function connect(t: Topology, address: string): Promise<{ session: SmtpScript; first: Reply }> {
  const session = await SmtpScript.connect(t.inbound.host, t.inbound.port, address);
  return { session, first: await session.reply() };
}

/** A session that got its banner and said EHLO. */
async function greeted(t: Topology, address: string): Promise<SmtpScript> {
  const { session, first } = await connect(t, address);
  expect(first.code, `banner for ${address}: ${first.text}`).toBe(220);
  expect((await session.command('EHLO client.test')).code).toBe(250);
  return session;
}

/** One message through an open session; the codes of MAIL, RCPT, DATA and the end of data. */
async function sendOne(session: SmtpScript, subject: string): Promise<number[]> {
  const codes: number[] = [];
  for (const line of ['MAIL FROM:<sender@example.net>', 'RCPT TO:<alice@demo.test>', 'DATA']) {
    const reply = await session.command(line);
    codes.push(reply.code);
    if (reply.code >= 400) return codes;
  }
  session.write(dataPayload(message(subject, 'body')));
  codes.push((await session.reply()).code);
  return codes;
}

/** The refusal: 421, the enhanced code, the connection closed after it. */
async function expectRefused(t: Topology, address: string, enhanced = '4.7.0'): Promise<void> {
  const { session, first } = await connect(t, address);
  expect(first.code, `first reply to ${address}`).toBe(421);
  expect(first.text).toContain(enhanced);
  await eventually(`the refused connection from ${address} to close`, () => session.isClosed, { timeoutMs: 5000 });
}

function logOf(t: Topology): string {
  return t.haraka['haraka-in']?.output() ?? '';
}

/** Expects haraka-in's log to match `pattern`, once it does: the log is another pipe than the sessions, and
 * its lines may arrive here a moment after the replies. */
async function expectLogged(t: Topology, pattern: RegExp): Promise<void> {
  await eventually(`haraka-in to log ${pattern}`, () => pattern.test(logOf(t)), { context: () => logOf(t).slice(-3000) });
  expect(logOf(t)).toMatch(pattern);
}

/** The machine-readable line of a refusal (src/plugins/decision-log.ts), after Haraka's own prefix. */
function refusalLine(ip: string, reason: string, limit: number): RegExp {
  const time = '\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z';
  return new RegExp(
    `\\[NOTICE\\] \\[[^\\]]+\\] \\[mailproxy-(limits|forward)\\] mailproxy-decision time=${time} action=refuse ip=${ip.replaceAll('.', '\\.')} check=limits reason=${reason} code=421 limit=${limit}$`,
    'm',
  );
}

/** LINGER_MS in src/plugins/limits/index.ts: how long haraka-in leaves a socket open after the session ended. */
const LINGER_MS = 2000;

/**
 * A client that never closes its side of the connection (allowHalfOpen): after the server's 221 or 421 and its
 * FIN it keeps the socket, as a broken or hostile client does. Only by writing can it learn that the server
 * dropped the socket: the kernel answers data for a closed socket with a reset, and the socket closes.
 */
class LingeringClient {
  private buffer = '';
  private readonly replies: Reply[] = [];
  private wake: (() => void) | null = null;
  /** When the server ended its side (FIN), and when this socket closed (after the server dropped it). */
  endedAt: number | null = null;
  closedAt: number | null = null;

  private constructor(private socket: net.Socket) {
    this.attach(socket);
  }

  static connect(t: Topology, address: string): Promise<LingeringClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: t.inbound.host, port: t.inbound.port, localAddress: address, allowHalfOpen: true });
      socket.once('connect', () => resolve(new LingeringClient(socket)));
      socket.once('error', reject);
    });
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => {
      if (socket !== this.socket) return;
      this.buffer += chunk.toString('latin1');
      for (let end = this.buffer.indexOf('\r\n'); end !== -1; end = this.buffer.indexOf('\r\n')) {
        const line = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 2);
        if (/^\d{3}(?: |$)/.test(line)) this.replies.push({ code: Number(line.slice(0, 3)), lines: [line], text: line.slice(4) });
      }
      this.notify();
    });
    socket.on('end', () => {
      if (socket === this.socket) this.endedAt ??= Date.now();
      this.notify();
    });
    socket.on('close', () => {
      if (socket === this.socket) this.closedAt ??= Date.now();
      this.notify();
    });
    socket.on('error', () => undefined);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** Waits, without polling, until `probe` gives something; throws after 10 s. */
  private async until<T>(what: string, probe: () => T | undefined | false): Promise<T> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const value = probe();
      if (value) return value;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  reply(): Promise<Reply> {
    return this.until('a reply', () => this.replies.shift());
  }

  /** Waits for the server to end its side (its FIN, or TLS close_notify). */
  async serverEnded(): Promise<void> {
    await this.until('the server to end its side', () => this.ended);
  }

  async command(line: string): Promise<Reply> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  /** STARTTLS, and TLS over the same socket, half-open as the plain one (tls.connect takes allowHalfOpen from
   * the socket it is given): a TLS close_notify and FIN do not end it. */
  async startTls(): Promise<void> {
    expect((await this.command('STARTTLS')).code).toBe(220);
    const plain = this.socket;
    plain.removeAllListeners('data');
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const socket = tls.connect({ socket: plain, servername: 'mx.demo.test', rejectUnauthorized: false }, () => resolve(socket));
      socket.once('error', reject);
    });
    // A reset may reach the plain socket first; either closing counts.
    plain.on('close', () => (this.closedAt ??= Date.now()));
    this.socket = secure;
    this.attach(secure);
  }

  /** A command the server ignores after the session ended; once the server dropped the socket, it brings the reset. */
  poke(): void {
    if (!this.socket.destroyed) this.socket.write('NOOP\r\n');
  }

  get ended(): boolean {
    return this.endedAt !== null;
  }

  get closed(): boolean {
    return this.closedAt !== null;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Pokes every client every 200 ms until all of them are closed; throws after timeoutMs. */
async function untilDropped(what: string, clients: readonly LingeringClient[], timeoutMs: number): Promise<void> {
  const poke = setInterval(() => {
    for (const client of clients) client.poke();
  }, 200);
  try {
    await eventually(what, () => clients.every((client) => client.closed), { timeoutMs });
  } finally {
    clearInterval(poke);
  }
}

describe('mailproxy-limits: client sessions', () => {
  it('max_clients: the session over the cap gets 421 4.7.0, one under it is served', async () => {
    await withLimits({ max_clients: 3 }, async (t) => {
      const held = [await greeted(t, '127.0.0.21'), await greeted(t, '127.0.0.22'), await greeted(t, '127.0.0.23')];
      await expectRefused(t, '127.0.0.24');
      await expectLogged(t, refusalLine('127.0.0.24', 'max_clients', 3));
      held.pop()!.close();
      // The slot comes back when haraka-in has seen that client leave.
      const session = await eventually('a slot under max_clients', async () => {
        const { session: s, first } = await connect(t, '127.0.0.24');
        if (first.code === 220) return s;
        s.close();
        return null;
      });
      expect((await session.command('EHLO client.test')).code).toBe(250);
      expect(await sendOne(session, 'under max_clients')).toEqual([250, 250, 354, 250]);
      for (const s of [...held, session]) s.close();
    });
  });

  it('max_clients_per_ip: a third session from one address gets 421 4.7.0, another address is served', async () => {
    await withLimits({ max_clients_per_ip: 2 }, async (t) => {
      const held = [await greeted(t, '127.0.0.31'), await greeted(t, '127.0.0.31')];
      await expectRefused(t, '127.0.0.31');
      await expectLogged(t, refusalLine('127.0.0.31', 'max_clients_per_ip', 2));
      const other = await greeted(t, '127.0.0.32');
      expect(await sendOne(other, 'other address')).toEqual([250, 250, 354, 250]);
      // A session from the limited address still works.
      expect(await sendOne(held[0]!, 'limited address')).toEqual([250, 250, 354, 250]);
      for (const s of [...held, other]) s.close();
      expect(t.backend!.messages.map((m) => m.subject).sort()).toEqual(['limited address', 'other address']);
    });
  });

  it('a client that sends QUIT and keeps its socket counts until haraka-in drops the socket, 2 s later; so does a refused one', async () => {
    await withLimits({ max_clients_per_ip: 10 }, async (t) => {
      const address = '127.0.0.81';
      const clients: LingeringClient[] = [];
      try {
        // Ten sessions one after another: each is greeted, says QUIT, gets 221 and the server's FIN, and keeps
        // its socket.
        for (let n = 0; n < 10; n++) {
          const client = await LingeringClient.connect(t, address);
          clients.push(client);
          expect((await client.reply()).code, `banner of session ${n + 1}`).toBe(220);
          expect((await client.command('QUIT')).code).toBe(221);
          await client.serverEnded();
        }
        // While those ten sockets are open, thirty more from the same address are refused; they keep their
        // sockets after the 421 too.
        const refused = await Promise.all(
          Array.from({ length: 30 }, async () => {
            const client = await LingeringClient.connect(t, address);
            clients.push(client);
            const first = await client.reply();
            if (first.code === 421) await client.serverEnded();
            return first;
          }),
        );
        // The refusals came before the first lingering socket may have been dropped: they are for open sockets.
        expect(Date.now() - clients[0]!.endedAt!, 'forty sessions took too long for this test to mean anything').toBeLessThan(LINGER_MS);
        expect(refused.map((reply) => reply.code)).toEqual(Array(30).fill(421));
        expect(refused[0]!.text).toContain('4.7.0');
        await expectLogged(t, refusalLine(address, 'max_clients_per_ip', 10));
        expect(clients.some((client) => client.closed)).toBe(false);

        // The clients keep writing; haraka-in drops every socket about LINGER_MS after its session ended.
        await untilDropped('haraka-in to drop the forty lingering sockets', clients, 4 * LINGER_MS);
        for (const client of clients) {
          const lingered = client.closedAt! - client.endedAt!;
          expect(lingered).toBeGreaterThanOrEqual(LINGER_MS - 200);
          expect(lingered).toBeLessThan(2 * LINGER_MS);
        }
        // Their counts came back with their sockets: the address is served again.
        const session = await greeted(t, address);
        expect(await sendOne(session, 'after the lingering sockets')).toEqual([250, 250, 354, 250]);
        session.close();
      } finally {
        for (const client of clients) client.close();
      }
    });
  });

  it('a client that QUITs after STARTTLS and keeps its socket counts until haraka-in drops the socket', async () => {
    await withLimits({ max_clients_per_ip: 1 }, async (t) => {
      const address = '127.0.0.82';
      const client = await LingeringClient.connect(t, address);
      try {
        expect((await client.reply()).code).toBe(220);
        expect((await client.command('EHLO client.test')).code).toBe(250);
        await client.startTls();
        expect((await client.command('EHLO client.test')).code).toBe(250);
        expect((await client.command('QUIT')).code).toBe(221);
        await client.serverEnded();
        await expectRefused(t, address);
        await untilDropped('haraka-in to drop the lingering TLS socket', [client], 4 * LINGER_MS);
        expect(client.closedAt! - client.endedAt!).toBeGreaterThanOrEqual(LINGER_MS - 200);
        (await greeted(t, address)).close();
      } finally {
        client.close();
      }
    });
  });

  it('max_connect_rate_per_ip: the connection over the rate gets 421 4.7.0 even when the earlier ones closed; another address is served', async () => {
    await withLimits({ max_connect_rate_per_ip: 3 }, async (t) => {
      for (let i = 0; i < 3; i++) {
        const session = await greeted(t, '127.0.0.41');
        await session.command('QUIT');
        session.close();
      }
      await expectRefused(t, '127.0.0.41');
      await expectLogged(t, refusalLine('127.0.0.41', 'max_connect_rate_per_ip', 3));
      const other = await greeted(t, '127.0.0.42');
      expect(await sendOne(other, 'under the rate')).toEqual([250, 250, 354, 250]);
      other.close();
    });
  });

  it('exempt: listed addresses pass the per-address limits, others do not', async () => {
    await withLimits({ max_clients_per_ip: 1, exempt: ['127.0.0.51/32'] }, async (t) => {
      const held = [await greeted(t, '127.0.0.51'), await greeted(t, '127.0.0.51'), await greeted(t, '127.0.0.51'), await greeted(t, '127.0.0.52')];
      await expectRefused(t, '127.0.0.52');
      for (const s of held) s.close();
    });
  });

  it('max_session_time: an idle session gets 421 4.4.2 and is closed; a quick one is served', async () => {
    await withLimits({ max_session_time: 2 }, async (t) => {
      const idle = await greeted(t, '127.0.0.56');
      const started = Date.now();
      const quick = await greeted(t, '127.0.0.57');
      expect(await sendOne(quick, 'quick')).toEqual([250, 250, 354, 250]);
      await quick.command('QUIT');
      const ended = await idle.reply(10_000);
      const after = Date.now() - started;
      expect(ended.code).toBe(421);
      expect(ended.text).toContain('4.4.2');
      expect(after).toBeGreaterThan(1500);
      expect(after).toBeLessThan(5000);
      await eventually('the long session to close', () => idle.isClosed, { timeoutMs: 5000 });
      await expectLogged(t, refusalLine('127.0.0.56', 'max_session_time', 2));
      expect(logOf(t)).not.toMatch(/action=refuse ip=127\.0\.0\.57 /);
    });
  });

  it('max_session_time never cuts in while the backend decides on a message: 250 first, then 421 4.4.2', async () => {
    await withLimitsAndScriptedBackend({ max_session_time: 1 }, { endOfDataDelayMs: 2500 }, async (t, backend) => {
      const session = await greeted(t, '127.0.0.58');
      expect(await sendOne(session, 'slow verdict')).toEqual([250, 250, 354, 250]);
      expect(backend.delivered()).toBe(1);
      const ended = await session.reply(5000);
      expect(ended.code).toBe(421);
      expect(ended.text).toContain('4.4.2');
    });
  });
});

describe('mailproxy-limits: backend sessions', () => {
  it('over max_backend_sessions the client gets 421 4.7.0 at RCPT and no backend connection is opened; under it, it is served', async () => {
    await withLimitsAndScriptedBackend({ max_backend_sessions: 2 }, {}, async (t, backend) => {
      // Two clients hold a backend session each (opened at their first RCPT, kept for the session).
      const a = await greeted(t, '127.0.0.61');
      const b = await greeted(t, '127.0.0.62');
      for (const s of [a, b]) {
        expect((await s.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
        expect((await s.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
      }
      expect(backend.accepted()).toBe(2);
      const c = await greeted(t, '127.0.0.63');
      expect((await c.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
      const refused = await c.command('RCPT TO:<alice@demo.test>');
      expect(refused.code).toBe(421);
      expect(refused.text).toContain('4.7.0');
      await eventually('the refused session to close', () => c.isClosed, { timeoutMs: 5000 });
      expect(backend.accepted()).toBe(2);
      await expectLogged(t, refusalLine('127.0.0.63', 'max_backend_sessions', 2));
      // A recipient outside our domains needs no backend session: not refused by the cap.
      const d = await greeted(t, '127.0.0.64');
      expect((await d.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
      expect((await d.command('RCPT TO:<someone@elsewhere.example>')).code).toBe(550);
      d.close();
      // A finishes its message and leaves: its backend session is free for the next client.
      expect((await a.command('DATA')).code).toBe(354);
      a.write(dataPayload(message('held a session', 'body')));
      expect((await a.reply()).code).toBe(250);
      await a.command('QUIT');
      const e = await eventually('a backend session under the cap', async () => {
        const s = await greeted(t, '127.0.0.65');
        const codes = await sendOne(s, 'after a left');
        if (codes.at(-1) === 250) return s;
        s.close();
        return null;
      });
      e.close();
      b.close();
      expect(backend.accepted()).toBe(3);
      expect(backend.deliveries).toHaveLength(2);
    });
  });

  it('five addresses of one network that hold sessions on a refused RCPT cannot lock out another network; a backend idle close frees their slots', async () => {
    // The first ten RCPTs that reach the backend (those of the ten sessions the network's share allows) are
    // refused; the backend idle-closes a session after 1.5 s, as Postfix does after smtpd_timeout.
    const options: ScriptedBackendOptions = { idleTimeoutMs: 1500, rcpt: (n) => (n < 10 ? '550 5.1.1 <nobody@demo.test>: Recipient address rejected' : null) };
    await withLimitsAndScriptedBackend({ max_backend_sessions: 50, max_backend_sessions_per_network: 10, max_clients_per_ip: 10 }, options, async (t, backend) => {
      const held: SmtpScript[] = [];
      const codes: number[] = [];
      for (const address of ['127.0.0.71', '127.0.0.72', '127.0.0.73', '127.0.0.74', '127.0.0.75']) {
        for (let n = 0; n < 10; n++) {
          const session = await greeted(t, address);
          held.push(session);
          expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
          codes.push((await session.command('RCPT TO:<nobody@demo.test>')).code);
        }
      }
      // Their network (127.0.0.0/24) got its share of backend sessions, the rest 421.
      expect(codes.filter((code) => code === 421)).toHaveLength(40);
      await expectLogged(t, refusalLine('127.0.0.75', 'max_backend_sessions_per_network', 10));
      // Another network is served at once, while those sessions sit there.
      const other = await greeted(t, '127.0.1.6');
      expect(await sendOne(other, 'another network')).toEqual([250, 250, 354, 250]);
      other.close();
      // The backend closes the idle sessions; their slots come back though the clients stay connected.
      const stillConnected = held.filter((session) => !session.isClosed);
      expect(stillConnected.length).toBeGreaterThanOrEqual(10);
      const sixth = await eventually(
        'a backend session for the sixth address of the same network',
        async () => {
          const s = await greeted(t, '127.0.0.76');
          const result = await sendOne(s, 'after the idle close');
          if (result.at(-1) === 250) return s;
          s.close();
          return null;
        },
        { timeoutMs: 10_000 },
      );
      sixth.close();
      for (const session of held) session.close();
      expect(backend.deliveries).toHaveLength(2);
    });
  });
});
