// A fast SMTP sink for the benchmarks that advertises XCLIENT with ADDR, as a Postfix backend that
// authorizes haraka-in does (Postfix's own smtp-sink offers XCLIENT without ADDR, which the forwarder rightly
// counts as no XCLIENT). It answers every command at once, in order, with one write per batch of pipelined
// commands, takes a message to its final dot, and keeps nothing: a stand-in whose cost is far below a relay's.
//
//   node dist/scripts/xclient-sink.js HOST PORT     (prints "ready" once it listens)
import net from 'node:net';

const EHLO = [
  '250-sink.bench',
  '250-PIPELINING',
  '250-SIZE 52428800',
  '250-8BITMIME',
  '250-ENHANCEDSTATUSCODES',
  '250 XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT',
].join('\r\n');

/** The reply to one command line (to DATA its 354: the message follows, up to its final dot). */
function replyTo(line: string): string {
  const verb = line.slice(0, 4).toUpperCase();
  switch (verb) {
    case 'EHLO':
      return EHLO;
    case 'HELO':
      return '250 sink.bench';
    case 'XCLI':
      return '220 sink.bench ESMTP';
    case 'DATA':
      return '354 go ahead';
    case 'QUIT':
      return '221 2.0.0 bye';
    default:
      return '250 2.0.0 ok';
  }
}

export function startXclientSink(host: string, port: number): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    let buffer = '';
    let inData = false;
    socket.setEncoding('latin1');
    socket.write('220 sink.bench ESMTP\r\n');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const replies: string[] = [];
      let quit = false;
      for (;;) {
        if (inData) {
          const end = buffer.indexOf('\r\n.\r\n');
          const atStart = buffer.startsWith('.\r\n');
          if (end === -1 && !atStart) {
            // Keep only what could be the start of the final dot.
            buffer = buffer.slice(-4);
            break;
          }
          buffer = atStart ? buffer.slice(3) : buffer.slice(end + 5);
          inData = false;
          replies.push('250 2.0.0 queued');
          continue;
        }
        const eol = buffer.indexOf('\r\n');
        if (eol === -1) break;
        const line = buffer.slice(0, eol);
        buffer = buffer.slice(eol + 2);
        const reply = replyTo(line);
        replies.push(reply);
        if (reply.startsWith('354')) inData = true;
        if (reply.startsWith('221')) quit = true;
      }
      if (replies.length > 0) socket.write(`${replies.join('\r\n')}\r\n`);
      if (quit) socket.end();
    });
    socket.on('error', () => socket.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

if (require.main === module) {
  const [host, port] = process.argv.slice(2);
  startXclientSink(host ?? '127.0.0.2', Number(port)).then(() => console.log('ready'));
}
