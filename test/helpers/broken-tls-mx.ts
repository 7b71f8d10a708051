// An internet MX whose STARTTLS is broken, for haraka-out's TLS tests: it advertises STARTTLS, answers the
// command with 220 and then sends plaintext garbage where the TLS handshake should be, so the client's
// handshake fails. A session that never asks for STARTTLS is served normally, and its message recorded.
import net from 'node:net';
import { takeLines } from './smtp-lines';

export interface PlainDelivery {
  mailFrom: string;
  rcpts: string[];
  data: string;
}

export interface BrokenTlsMx {
  /** The verbs of each connection, in order. */
  sessions: string[][];
  /** Messages received (all in plaintext: no session ever gets past the broken handshake). */
  deliveries: PlainDelivery[];
  /** Connections whose TLS handshake we broke. */
  brokenHandshakes(): number;
  close(): Promise<void>;
}

/** rcptReply: the answer to every RCPT over plaintext (default 250). */
export async function startBrokenTlsMx(host: string, port: number, name = 'mx.broken.test', rcptReply = '250 2.1.5 ok'): Promise<BrokenTlsMx> {
  const sessions: string[][] = [];
  const deliveries: PlainDelivery[] = [];
  const sockets = new Set<net.Socket>();
  let broken = 0;
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const seen: string[] = [];
    sessions.push(seen);
    let buffer = '';
    let handshake = false;
    let inData = false;
    let mailFrom = '';
    let rcpts: string[] = [];
    let body: string[] = [];
    const reply = (text: string) => void (socket.destroyed || socket.write(`${text}\r\n`));
    const onLine = (line: string) => {
      if (inData) {
        if (line !== '.') return void body.push(line.startsWith('.') ? line.slice(1) : line);
        inData = false;
        deliveries.push({ mailFrom, rcpts, data: body.join('\r\n') });
        rcpts = [];
        body = [];
        return reply('250 2.0.0 queued');
      }
      const verb = (line.split(' ')[0] ?? '').toUpperCase();
      seen.push(verb);
      if (verb === 'EHLO') return reply([`250-${name}`, '250-PIPELINING', '250 STARTTLS'].join('\r\n'));
      if (verb === 'STARTTLS') {
        handshake = true;
        return reply('220 2.0.0 ready to start TLS');
      }
      if (verb === 'MAIL') {
        mailFrom = /<([^>]*)>/.exec(line)?.[1] ?? '';
        return reply('250 2.1.0 ok');
      }
      if (verb === 'RCPT') {
        if (!rcptReply.startsWith('250')) return reply(rcptReply);
        rcpts.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
        return reply(rcptReply);
      }
      if (verb === 'DATA') {
        inData = true;
        return reply('354 go ahead');
      }
      if (verb === 'QUIT') return void socket.end('221 2.0.0 bye\r\n');
      reply('250 ok');
    };
    reply(`220 ${name} ESMTP`);
    socket.on('data', (chunk: Buffer) => {
      if (handshake) {
        // The client's ClientHello: answer where the ServerHello belongs with plaintext, which no TLS client accepts.
        handshake = false;
        broken += 1;
        socket.end('this is not a TLS handshake\r\n');
        return;
      }
      buffer = takeLines(buffer + chunk.toString('latin1'), (line) => void onLine(line));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return {
    sessions,
    deliveries,
    brokenHandshakes: () => broken,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
