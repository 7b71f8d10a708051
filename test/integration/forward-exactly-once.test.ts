// Every recipient the client was told 250 for is delivered exactly once, or the client is told 4xx/5xx:
// mailproxy-forward in a real haraka-in against a scripted backend that misbehaves on cue. Each test
// counts what the client was told and what the backend received.
import { describe, expect, it } from 'vitest';
import { dataPayload, message, openSession, type SmtpScript } from '../../src/smtp/script';
import { withScriptedBackend } from '../helpers/scripted-backend';
import { sendVia } from '../helpers/send';
import { sendMessage } from '../../src/smtp/send';
import type { withTopology } from '../helpers/topology';
import { eventually } from '../helpers/poll';

type Tweak = Parameters<typeof withTopology>[0]['tweak'];

function backendSettings(settings: Record<string, unknown>): Tweak {
  return (config) => void (config.backend = { ...config.backend, ...settings });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Replies to MAIL, RCPT alice, RCPT bob (after `between`), RCPT carol, and DATA + message. */
async function threeRecipients(session: SmtpScript, between: () => Promise<void> = async () => undefined) {
  const codes: number[] = [];
  const step = async (line: string) => {
    const reply = await session.command(line).catch(() => null);
    codes.push(reply?.code ?? 0);
    return reply;
  };
  await step('MAIL FROM:<sender@example.net>');
  await step('RCPT TO:<alice@demo.test>');
  await between();
  await step('RCPT TO:<bob@demo.test>');
  await step('RCPT TO:<carol@demo.test>');
  const data = await step('DATA');
  if (data?.code === 354) {
    session.write(dataPayload(message('three', 'body')));
    codes.push((await session.reply().catch(() => null))?.code ?? 0);
  }
  return codes;
}

/** The client got 250 at end of data only if the backend got the message for every recipient it got 250 for. */
function expectNothingLost(codes: number[], backend: ScriptedBackend) {
  const [, alice, bob, carol, , final] = codes;
  const told = ['alice@demo.test', 'bob@demo.test', 'carol@demo.test'].filter((_, i) => [alice, bob, carol][i] === 250);
  if (final === 250) expect(backend.deliveries.map((d) => d.rcpts)).toEqual([told]);
  else expect(backend.delivered()).toBe(0);
}

describe('a transaction outlives its backend session: a lost one is replayed in a new session', () => {
  it('the backend drops the connection at a RCPT: that RCPT gets 4xx, the next one replays MAIL and the accepted ones, and the message goes once', async () => {
    await withScriptedBackend({ rcpt: (n) => (n === 1 ? 'drop' : null) }, undefined, async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      const codes = await threeRecipients(session);
      session.close();
      expect(codes).toEqual([250, 250, 451, 250, 354, 250]);
      expectNothingLost(codes, backend);
      expect(backend.accepted()).toBe(2);
      expect(backend.deliveries.map((d) => d.rcpts)).toEqual([['alice@demo.test', 'carol@demo.test']]);
    });
  });

  it('the backend answers 421 at a RCPT: the client gets that 421 and the session ends', async () => {
    await withScriptedBackend({ rcpt: (n) => (n === 1 ? '421 4.3.2 scripted.test shutting down' : null) }, undefined, async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      const codes = await threeRecipients(session);
      expect(codes[2]).toBe(421);
      expect(codes.slice(3)).toEqual([0, 0]);
      await eventually('the client session to close', () => session.isClosed);
      expectNothingLost(codes, backend);
      expect(backend.accepted()).toBe(1);
    });
  });

  it('the backend closes while idle between two RCPTs: the next RCPT replays the transaction, and the message goes once', async () => {
    await withScriptedBackend({ idleTimeoutMs: 300 }, undefined, async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      const codes = await threeRecipients(session, () => sleep(800));
      session.close();
      expect(codes).toEqual([250, 250, 250, 250, 354, 250]);
      expectNothingLost(codes, backend);
      expect(backend.accepted()).toBe(2);
    });
  });

  it('after a transaction whose session was lost the client session goes on with a new one; each delivered once', async () => {
    await withScriptedBackend({ rcpt: (n) => (n === 1 ? 'drop' : null) }, undefined, async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      await threeRecipients(session);
      expect((await session.command('RSET')).code).toBe(250);
      const again = await sendVia(session, ['alice@demo.test', 'bob@demo.test'], 'again');
      session.close();
      expect(again.final?.code).toBe(250);
      expect(backend.deliveries.map((d) => d.rcpts)).toEqual([
        ['alice@demo.test', 'carol@demo.test'],
        ['alice@demo.test', 'bob@demo.test'],
      ]);
    });
  });
});

describe('no backend session outlives its client', () => {
  it('50 clients that leave while their backend session is opening leave no backend connection behind', async () => {
    await withScriptedBackend({ bannerDelayMs: 10_000 }, backendSettings({ timeout: 30 }), async (t, backend) => {
      const clients = await Promise.all(Array.from({ length: 50 }, () => openSession(t.inbound.host, t.inbound.port)));
      for (const client of clients) client.write('MAIL FROM:<sender@example.net>\r\nRCPT TO:<alice@demo.test>\r\n');
      await eventually('50 backend connections', () => backend.accepted() === 50);
      for (const client of clients) client.close();
      await sleep(2000);
      expect(backend.open()).toBe(0);
    });
  });
});

describe('the end of data', () => {
  it('waits data_timeout, not the command timeout nor the client inactivity timeout, for the backend’s verdict', async () => {
    const tweak: Tweak = (config) => {
      config.backend = { ...config.backend, timeout: 1, data_timeout: 30 };
      config.inbound = { ...config.inbound, inactivity_timeout: 10 };
    };
    await withScriptedBackend({ endOfDataDelayMs: 12_000 }, tweak, async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
      expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
      expect((await session.command('DATA')).code).toBe(354);
      const started = Date.now();
      session.write(dataPayload(message('slow filters', 'body')));
      const final = await session.reply(40_000);
      session.close();
      expect(final.code).toBe(250);
      expect(Date.now() - started).toBeGreaterThanOrEqual(11_000);
      expect(backend.delivered()).toBe(1);
    });
  }, 60_000);

  it('waits as long for a client that used STARTTLS (its plain socket’s timer is lifted too)', async () => {
    const tweak: Tweak = (config) => {
      config.backend = { ...config.backend, timeout: 1, data_timeout: 30 };
      config.inbound = { ...config.inbound, inactivity_timeout: 10 };
    };
    await withScriptedBackend({ endOfDataDelayMs: 13_000 }, tweak, async (t, backend) => {
      const started = Date.now();
      const result = await sendMessage({
        host: t.inbound.host,
        port: t.inbound.port,
        starttls: true,
        from: 'sender@example.net',
        to: ['alice@demo.test'],
        subject: 'tls and slow filters',
        text: 'body',
      });
      expect(result.response).toMatch(/^250 /);
      expect(Date.now() - started).toBeGreaterThanOrEqual(12_000);
      expect(backend.delivered()).toBe(1);
    });
  }, 60_000);

  it('passes a 421 at the end of data and ends the client session', async () => {
    await withScriptedBackend({ endOfDataReply: () => '421 4.3.0 scripted.test going down' }, undefined, async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      const { final } = await sendVia(session, ['alice@demo.test'], 'closing');
      expect(final?.code).toBe(421);
      await eventually('the client session to close', () => session.isClosed);
      expect(backend.delivered()).toBe(0);
    });
  });
});

describe('the streamed body path (over the one-write limit) cannot hang', () => {
  const large = message('large', Array.from({ length: 80_000 }, (_, i) => `line ${i} ${'x'.repeat(70)}`).join('\r\n'));

  for (const [name, closeAfterMs] of [
    ['the backend stops reading and drops the connection', 500],
    ['the backend stops reading and stays silent', null],
  ] as const) {
    it(`${name}: the client gets 4xx within seconds`, async () => {
      await withScriptedBackend({ stallInData: { closeAfterMs } }, backendSettings({ timeout: 2 }), async (t, backend) => {
        const session = await openSession(t.inbound.host, t.inbound.port);
        expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
        expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
        expect((await session.command('DATA')).code).toBe(354);
        const started = Date.now();
        session.write(dataPayload(large));
        const final = await session.reply(20_000);
        session.close();
        expect(`${final.code} ${final.text}`).toMatch(/^451 /);
        expect(Date.now() - started).toBeLessThan(10_000);
        expect(backend.delivered()).toBe(0);
      });
    });
  }
});

describe('a slow upload', () => {
  it('takes 20 s and is delivered by a backend that closes sessions idle for 5 s', async () => {
    await withScriptedBackend({ idleTimeoutMs: 5000 }, undefined, async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
      expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
      expect((await session.command('DATA')).code).toBe(354);
      const lines = dataPayload(message('slow upload', Array.from({ length: 10 }, (_, i) => `line ${i}`).join('\r\n'))).split(/(?<=\r\n)/);
      const started = Date.now();
      for (const [i, line] of lines.entries()) {
        session.write(line);
        if (i < lines.length - 1) await sleep(20_000 / lines.length);
      }
      const final = await session.reply();
      session.close();
      expect(Date.now() - started).toBeGreaterThanOrEqual(18_000);
      expect(final.code).toBe(250);
      expect(backend.deliveries.map((d) => d.rcpts)).toEqual([['alice@demo.test']]);
      expect(backend.deliveries[0]?.data).toContain('line 9');
    });
  }, 60_000);
});

describe('a backend session lost while the client takes its time', () => {
  // The backend closes a session idle for 600 ms with 421, as Postfix does after smtpd_timeout (10 s under stress).
  const idle = { idleTimeoutMs: 600 };

  it('is replayed at the end of data: MAIL and every accepted recipient in a new session, no NOOP, the message once', async () => {
    await withScriptedBackend(idle, undefined, async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
      expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
      expect((await session.command('RCPT TO:<bob@demo.test>')).code).toBe(250);
      await sleep(1200);
      expect((await session.command('DATA')).code).toBe(354);
      session.write(dataPayload(message('replayed', 'body')));
      const final = await session.reply();
      session.close();
      expect(final.code, final.text).toBe(250);
      expect(backend.accepted()).toBe(2);
      expect(backend.deliveries.map((delivery) => delivery.rcpts)).toEqual([['alice@demo.test', 'bob@demo.test']]);
      expect(backend.commands[1]).toEqual(['XCLIENT', 'EHLO', 'MAIL', 'RCPT', 'RCPT', 'DATA']);
      expect(backend.commands.flat()).not.toContain('NOOP');
    });
  });

  it('is replayed at the next RCPT too, and the message carries every recipient', async () => {
    await withScriptedBackend(idle, undefined, async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
      expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
      await sleep(1200);
      expect((await session.command('RCPT TO:<bob@demo.test>')).code).toBe(250);
      expect((await session.command('DATA')).code).toBe(354);
      session.write(dataPayload(message('replayed at rcpt', 'body')));
      expect((await session.reply()).code).toBe(250);
      session.close();
      expect(backend.deliveries.map((delivery) => delivery.rcpts)).toEqual([['alice@demo.test', 'bob@demo.test']]);
    });
  });

  it('answers 451 when the new session refuses a recipient the client was told 250 for, and delivers nothing', async () => {
    // The first RCPT (in the first session) is accepted, the replayed one refused.
    await withScriptedBackend({ ...idle, rcpt: (n) => (n === 1 ? '550 5.1.1 <alice@demo.test>: gone meanwhile' : null) }, undefined, async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
      expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
      await sleep(1200);
      expect((await session.command('DATA')).code).toBe(354);
      session.write(dataPayload(message('not replayable', 'body')));
      const final = await session.reply();
      session.close();
      expect(final.code).toBe(451);
      expect(backend.delivered()).toBe(0);
    });
  });
});

describe('the backend’s reply text', () => {
  it('reaches the client as the backend wrote it, UTF-8 included', async () => {
    await withScriptedBackend({ rcpt: () => '550 5.1.1 <jörg@demo.test>: Empfänger unbekannt' }, undefined, async (t) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
      const refused = await session.command('RCPT TO:<alice@demo.test>');
      session.close();
      expect(refused.code).toBe(550);
      // SmtpScript reads bytes as latin1: decode them as the UTF-8 they must be.
      expect(Buffer.from(refused.text, 'latin1').toString('utf8')).toContain('<jörg@demo.test>: Empfänger unbekannt');
    });
  });
});

describe('keepalive NOOPs', () => {
  it('never pipeline a command behind a NOOP still waiting for its reply (Postfix would refuse DATA)', async () => {
    await withScriptedBackend({ noopDelayMs: 800 }, backendSettings({ keepalive: 1 }), async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      expect((await session.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
      expect((await session.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
      // The NOOP goes out 1 s after RCPT and its reply comes 0.8 s later: the end of data falls between.
      await sleep(1300);
      expect((await session.command('DATA')).code).toBe(354);
      session.write(dataPayload(message('behind a noop', 'body')));
      const final = await session.reply();
      session.close();
      expect(backend.commands.flat()).toContain('NOOP');
      expect(final.code).toBe(250);
      expect(backend.delivered()).toBe(1);
    });
  });
});

describe('XCLIENT without ADDR is no XCLIENT', () => {
  for (const capability of ['XCLIENT', 'XCLIENT NAME HELO PROTO']) {
    it(`a backend advertising "${capability}" gets nothing and the sender 4xx`, async () => {
      await withScriptedBackend({ xclient: capability }, undefined, async (t, backend) => {
        const session = await openSession(t.inbound.host, t.inbound.port);
        const { replies } = await sendVia(session, ['alice@demo.test'], 'no addr');
        session.close();
        expect(replies[0]?.code).toBe(451);
        expect(backend.commands.flat()).not.toContain('XCLIENT');
        expect(backend.commands.flat()).not.toContain('MAIL');
        // The log is another pipe than the session: its lines may arrive here a moment after the replies.
        await eventually('the warning logged', () => t.haraka['haraka-in']!.output().includes('XCLIENT without ADDR'));
        expect(t.haraka['haraka-in']!.output()).toContain('XCLIENT without ADDR');
      });
    });
  }
});

describe('what was learnt about the backend', () => {
  it('one refused early XCLIENT does not send every later session back to EHLO first', async () => {
    await withScriptedBackend({ xclientReply: (n) => (n === 1 ? '451 4.3.0 try again' : null) }, undefined, async (t, backend) => {
      for (const subject of ['learns', 'refused once', 'early again']) {
        const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9' });
        expect((await sendVia(session, ['alice@demo.test'], subject)).final?.code).toBe(250);
        session.close();
      }
      const opening = backend.commands.map((verbs) => verbs.slice(0, 3).join(' '));
      expect(opening).toEqual(['EHLO XCLIENT EHLO', 'XCLIENT', 'EHLO XCLIENT EHLO', 'XCLIENT EHLO MAIL']);
      expect(backend.delivered()).toBe(3);
    });
  });
});

describe('RCPT TO:<postmaster>', () => {
  it('is accepted and goes to the postmaster of the first domain (RFC 5321 §4.5.1)', async () => {
    await withScriptedBackend({}, undefined, async (t, backend) => {
      const session = await openSession(t.inbound.host, t.inbound.port);
      const { replies, final } = await sendVia(session, ['postmaster'], 'to postmaster');
      session.close();
      expect(replies[0]?.code).toBe(250);
      expect(final?.code).toBe(250);
      expect(backend.deliveries.map((d) => d.rcpts)).toEqual([[`postmaster@${t.config.domains[0]}`]]);
    });
  });
});
