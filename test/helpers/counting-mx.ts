// A counting SMTP server for fault tests: an "internet" MX for haraka-out (or a backend without XCLIENT)
// that records every message it committed to (by the id in its Subject), the moment it committed, and can
// misbehave on cue: answer the end of data late, greylist (451 at RCPT, then 250), or drop the connection
// after the final dot without a reply (having committed the message, as a real MTA that crashed then would).
import net from 'node:net';
import { takeLines } from './smtp-lines';

export interface Committed {
  /** The `Subject:` of the message (tests put a unique id there). */
  id: string;
  rcpts: string[];
  /** Date.now() when the server committed (then it sends its 250, or drops the connection). */
  at: number;
  /** What the client was sent: 250; 'dropped' (no reply, on cue); 'lost' (the client was gone before the
   * 250 went out: ackDelayMs). */
  outcome: 250 | 'dropped' | 'lost';
}

export interface CountingMxOptions {
  /** Hold every end of data until this settles (then endOfDataDelayMs), e.g. until a queue has filled up. */
  holdUntil?: Promise<unknown>;
  /** Wait this long after the end of data before committing (content filters). */
  endOfDataDelayMs?: number;
  /** Send the 250 this long after committing: the reply still on its way, as over a WAN (half a round trip). */
  ackDelayMs?: number;
  /** The reply to a RCPT, or null for 250: e.g. greylisting. `attempt` counts RCPTs for that address (1-based). */
  rcptReply?: (address: string, attempt: number) => string | null;
  /** Commit the message, then close the connection without a reply to the dot. `attempt` counts that id's copies (1-based). */
  dropAfterDot?: (id: string, attempt: number) => boolean;
}

export interface CountingMx {
  host: string;
  port: number;
  committed: Committed[];
  /** Copies committed per id. */
  copies(): Map<string, number>;
  /** Connections open now. */
  open(): number;
  close(): Promise<void>;
}

export async function startCountingMx(host: string, port: number, options: CountingMxOptions = {}): Promise<CountingMx> {
  const committed: Committed[] = [];
  const sockets = new Set<net.Socket>();
  const rcptAttempts = new Map<string, number>();
  const idCopies = new Map<string, number>();

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffer = '';
    let inData = false;
    let rcpts: string[] = [];
    let subject = '';
    let inHeaders = true;
    let busy = false;
    const pending: string[] = [];
    const reply = (text: string) => {
      if (!socket.destroyed) socket.write(`${text}\r\n`);
    };
    const endOfData = () => {
      const id = subject || '(no subject)';
      const copy = (idCopies.get(id) ?? 0) + 1;
      const finish = () => {
        if (socket.destroyed) return;
        idCopies.set(id, copy);
        if (options.dropAfterDot?.(id, copy)) {
          committed.push({ id, rcpts, at: Date.now(), outcome: 'dropped' });
          socket.destroy();
          return;
        }
        const entry: Committed = { id, rcpts, at: Date.now(), outcome: 250 };
        committed.push(entry);
        const ack = () => {
          if (socket.destroyed) entry.outcome = 'lost';
          reply(`250 2.0.0 committed ${id}`);
          rcpts = [];
          busy = false;
          drain();
        };
        if (options.ackDelayMs) setTimeout(ack, options.ackDelayMs);
        else ack();
      };
      busy = true;
      const afterHold = () => {
        if (options.endOfDataDelayMs) setTimeout(finish, options.endOfDataDelayMs);
        else finish();
      };
      if (options.holdUntil) void options.holdUntil.then(afterHold, afterHold);
      else afterHold();
    };
    const onLine = (line: string) => {
      if (inData) {
        if (line === '.') {
          inData = false;
          endOfData();
          return;
        }
        if (inHeaders) {
          if (line === '') inHeaders = false;
          else if (/^subject:/i.test(line)) subject = line.replace(/^subject:\s*/i, '');
        }
        return;
      }
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO') reply('250-counting.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800');
      else if (verb === 'HELO') reply('250 counting.test');
      else if (verb === 'MAIL') {
        rcpts = [];
        reply('250 2.1.0 ok');
      } else if (verb === 'RCPT') {
        const address = (/<([^>]*)>/.exec(line)?.[1] ?? '').toLowerCase();
        const attempt = (rcptAttempts.get(address) ?? 0) + 1;
        rcptAttempts.set(address, attempt);
        const scripted = options.rcptReply?.(address, attempt) ?? null;
        if (scripted) reply(scripted);
        else {
          rcpts.push(address);
          reply('250 2.1.5 ok');
        }
      } else if (verb === 'DATA') {
        if (rcpts.length === 0) reply('554 5.5.1 no valid recipients');
        else {
          inData = true;
          inHeaders = true;
          subject = '';
          reply('354 go ahead');
        }
      } else if (verb === 'RSET') {
        rcpts = [];
        reply('250 2.0.0 ok');
      } else if (verb === 'QUIT') socket.end('221 2.0.0 bye\r\n');
      else reply('250 ok');
    };
    const drain = () => {
      while (!busy && pending.length > 0) onLine(pending.shift()!);
    };
    reply('220 counting.test ESMTP');
    socket.on('data', (chunk: Buffer) => {
      buffer = takeLines(buffer + chunk.toString('latin1'), (line) => void pending.push(line));
      drain();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    host,
    port: (server.address() as net.AddressInfo).port,
    committed,
    copies() {
      const counts = new Map<string, number>();
      for (const entry of committed) counts.set(entry.id, (counts.get(entry.id) ?? 0) + 1);
      return counts;
    },
    open: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
