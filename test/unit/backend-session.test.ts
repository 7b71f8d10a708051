// BackendSession against raw sockets on loopback: the parts of the backend protocol that decide whether
// a message can be lost or delivered twice.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BackendSession } from '../../src/plugins/forward/backend-session';

const servers: net.Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
});

/** A server whose connection handler the test writes; resolves with its port. */
async function serve(onConnection: (socket: net.Socket) => void): Promise<number> {
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

const connect = (port: number) => BackendSession.connect({ host: '127.0.0.1', port, connectTimeoutMs: 2000, replyTimeoutMs: 2000 });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Answers each command line with 250 (NOOPs after delayMs), counting NOOPs. */
function lineServer(counts: { noops: number; lines: string[] }, noopDelayMs = 0) {
  return (socket: net.Socket) => {
    socket.write('220 test\r\n');
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString('latin1');
      let end: number;
      while ((end = buffer.indexOf('\r\n')) !== -1) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        counts.lines.push(line);
        if (line === 'NOOP') {
          counts.noops += 1;
          setTimeout(() => socket.write('250 ok\r\n'), noopDelayMs);
        } else {
          socket.write('250 ok\r\n');
        }
      }
    });
  };
}

describe('BackendSession', () => {
  it('writes nothing behind a keepalive NOOP until its reply is in (RFC 2920: NOOP ends a group)', async () => {
    const counts = { noops: 0, lines: [] as string[] };
    const arrivals: [string, number][] = [];
    const port = await serve((socket) => {
      socket.on('data', (chunk) => arrivals.push([chunk.toString('latin1'), Date.now()]));
      lineServer(counts, 300)(socket);
    });
    const session = await connect(port);
    await session.read();
    session.keepAlive(50);
    await sleep(80);
    expect(counts.noops).toBe(1);
    const sent = Date.now();
    await session.command('DATA');
    // DATA went out in its own write, after the NOOP's reply (300 ms after the NOOP).
    const data = arrivals.find(([text]) => text.includes('DATA'));
    expect(data?.[0]).toBe('DATA\r\n');
    expect(data![1] - sent).toBeGreaterThanOrEqual(150);
    session.keepAlive(null);
    session.destroy();
  });

  it('sends at most 60 quick keepalive NOOPs per session (Postfix’s junk command limit is 100)', async () => {
    const counts = { noops: 0, lines: [] as string[] };
    const port = await serve(lineServer(counts));
    const session = await connect(port);
    await session.read();
    session.keepAlive(5);
    await sleep(1500);
    session.keepAlive(null);
    session.destroy();
    expect(counts.noops).toBe(60);
  });

  it('fails the session on a reply nobody asked for, instead of handing it to the next command', async () => {
    const port = await serve((socket) => {
      socket.write('220 test\r\n');
      setTimeout(() => socket.write('421 4.4.2 test Error: timeout exceeded\r\n'), 50);
      socket.on('data', () => socket.write('250 ok\r\n'));
    });
    const session = await connect(port);
    await session.read();
    await sleep(150);
    expect(session.usable).toBe(false);
    await expect(session.command('MAIL FROM:<a@b.example>')).rejects.toThrow(/unrequested reply: 421/);
  });

  it('drops what is still queued when it gives up (a reset, not a close that would deliver the final dot)', async () => {
    /** What a backend that stopped reading after DATA receives once it reads again, after the sender gave up. */
    const received = async (send: (port: number) => Promise<() => void>) => {
      let text = '';
      let release: () => void = () => undefined;
      const port = await serve((socket) => {
        socket.write('220 test\r\n');
        socket.once('data', () => {
          socket.pause();
          release = () => socket.resume();
        });
        socket.on('data', (chunk) => (text += chunk.toString('latin1')));
      });
      const giveUp = await send(port);
      await sleep(100);
      giveUp();
      await sleep(100);
      release();
      await sleep(300);
      return text;
    };
    const message = Buffer.from(`DATA\r\n${`${'x'.repeat(76)}\r\n`.repeat(20_000)}.\r\n`);
    // Control: a plain close still delivers everything queued, final dot included.
    const closed = await received(async (port) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write(message);
      return () => socket.destroy();
    });
    expect(closed.endsWith('\r\n.\r\n')).toBe(true);
    const aborted = await received(async (port) => {
      const session = await connect(port);
      await session.read();
      session.write(message);
      return () => session.destroy();
    });
    expect(aborted.endsWith('\r\n.\r\n')).toBe(false);
  });
});
