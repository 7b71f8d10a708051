// A flood of connections from one address does not starve another address. The backend here has a
// process limit, as Postfix does (default_process_limit): past it, a new connection waits in the listen
// queue without a banner until a process is free. Without limits the flood's sessions would take every
// backend process and the other address's RCPT would wait for a banner that never comes.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { LOOPBACK } from '../../src/demo/topology';
import { dataPayload, message, SmtpScript } from '../../src/smtp/script';
import { startScriptedBackend } from '../helpers/scripted-backend';
import { freePort } from '../helpers/ports';
import { withTopology } from '../helpers/topology';

interface ProcessLimitedBackend {
  /** Connections served by a "process" right now, and the most at once. */
  busy(): number;
  mostBusy(): number;
  /** Connections waiting for a process. */
  waiting(): number;
  close(): Promise<void>;
}

/** Listens on host:port and hands at most `processes` connections at a time to the backend at
 * host:upstreamPort; the others wait, ungreeted, until one of those ends. */
async function processLimitedBackend(host: string, port: number, upstreamPort: number, processes: number): Promise<ProcessLimitedBackend> {
  let busy = 0;
  let mostBusy = 0;
  const queue: net.Socket[] = [];
  const sockets = new Set<net.Socket>();
  const serve = (client: net.Socket) => {
    busy += 1;
    mostBusy = Math.max(mostBusy, busy);
    const upstream = net.connect({ host, port: upstreamPort });
    sockets.add(upstream);
    let done = false;
    const end = () => {
      if (done) return;
      done = true;
      busy -= 1;
      client.destroy();
      upstream.destroy();
      sockets.delete(upstream);
      const next = queue.shift();
      if (next) serve(next);
    };
    client.pipe(upstream).pipe(client);
    for (const socket of [client, upstream]) {
      socket.on('close', end);
      socket.on('error', end);
    }
  };
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => {
      sockets.delete(client);
      const waitingAt = queue.indexOf(client);
      if (waitingAt !== -1) queue.splice(waitingAt, 1);
    });
    client.on('error', () => undefined);
    if (busy < processes) serve(client);
    else queue.push(client);
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    busy: () => busy,
    mostBusy: () => mostBusy,
    waiting: () => queue.length,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('a flood of connections from one address', () => {
  it('does not starve another address: the flood holds max_clients_per_ip sessions, the other address gets its banner in under 1 s and its message through', async () => {
    const limits = { max_clients: 100, max_clients_per_ip: 4, max_connect_rate_per_ip: 0, max_backend_sessions: 8, max_session_time: 0 };
    await withTopology(
      {
        instances: ['haraka-in'],
        backend: false,
        // A backend that never greets fails the RCPT after backend.timeout: 5 s, well inside the test.
        tweak: (config) => {
          config.limits = limits;
          config.backend = { ...config.backend, timeout: 5 };
        },
      },
      async (t) => {
        const upstreamPort = await freePort(LOOPBACK.backend);
        const scripted = await startScriptedBackend(LOOPBACK.backend, upstreamPort);
        // Ten backend processes, as a Postfix with default_process_limit scaled down from 100.
        const backend = await processLimitedBackend(LOOPBACK.backend, t.config.backend.port, upstreamPort, 10);
        const flood: SmtpScript[] = [];
        try {
          // 40 connections at once from one address; each that is greeted asks for a recipient (which takes a
          // backend session) and then sits there.
          const outcomes = await Promise.all(
            Array.from({ length: 40 }, async () => {
              const session = await SmtpScript.connect(t.inbound.host, t.inbound.port, '127.0.0.71');
              flood.push(session);
              const banner = await session.reply();
              if (banner.code !== 220) return banner.code;
              await session.command('EHLO flood.test');
              await session.command('MAIL FROM:<flood@example.net>');
              // Its backend session is open (or has failed) before the other address comes.
              await session.command('RCPT TO:<alice@demo.test>').catch(() => null);
              return 220;
            }),
          );
          expect(outcomes.filter((code) => code === 220)).toHaveLength(limits.max_clients_per_ip);
          expect(outcomes.filter((code) => code === 421)).toHaveLength(40 - limits.max_clients_per_ip);
          expect(backend.busy()).toBe(limits.max_clients_per_ip);

          const started = process.hrtime.bigint();
          const other = await SmtpScript.connect(t.inbound.host, t.inbound.port, '127.0.0.72');
          const banner = await other.reply();
          const bannerMs = Number(process.hrtime.bigint() - started) / 1e6;
          expect(banner.code).toBe(220);
          expect(bannerMs).toBeLessThan(1000);
          expect((await other.command('EHLO other.test')).code).toBe(250);
          expect((await other.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
          expect((await other.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
          expect((await other.command('DATA')).code).toBe(354);
          other.write(dataPayload(message('not starved', 'body')));
          expect((await other.reply()).code).toBe(250);
          other.close();
          expect(scripted.deliveries).toHaveLength(1);
          expect(backend.mostBusy()).toBeLessThanOrEqual(limits.max_backend_sessions);
          expect(backend.waiting()).toBe(0);
        } finally {
          for (const session of flood) session.close();
          await backend.close();
          await scripted.close();
        }
      },
    );
  });
});
