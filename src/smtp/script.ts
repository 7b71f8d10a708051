// A scripted SMTP client for tests and benchmarks that need exact replies to each command (reply codes, multi-line
// replies), which a full client library hides.
import net from 'node:net';

export interface Reply {
  code: number;
  lines: string[];
  text: string;
}

export class SmtpScript {
  private buffer = '';
  private replies: Reply[] = [];
  private waiting: ((reply: Reply | null) => void) | null = null;
  private closed = false;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk) => {
      this.buffer += chunk.toString('latin1');
      this.parse();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiting?.(null);
      this.waiting = null;
    });
    socket.on('error', () => undefined);
  }

  static connect(host: string, port: number, localAddress?: string): Promise<SmtpScript> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
      socket.once('connect', () => resolve(new SmtpScript(socket)));
      socket.once('error', reject);
    });
  }

  private parse(): void {
    let lines: string[] = [];
    for (;;) {
      const end = this.buffer.indexOf('\r\n');
      if (end === -1) return;
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      lines.push(line);
      if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) {
        const reply = { code: Number(line.slice(0, 3)), lines, text: lines.map((l) => l.slice(4)).join('\n') };
        lines = [];
        if (this.waiting) {
          const wake = this.waiting;
          this.waiting = null;
          wake(reply);
        } else {
          this.replies.push(reply);
        }
      }
    }
  }

  /** The next reply from the server; rejects when the connection closes first or after timeoutMs. */
  reply(timeoutMs = 15_000): Promise<Reply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out waiting for a reply')), timeoutMs);
      this.waiting = (reply) => {
        clearTimeout(timer);
        if (reply) resolve(reply);
        else reject(new Error('connection closed'));
      };
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async command(line: string, timeoutMs?: number): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Connects, reads the banner and says EHLO. */
export async function openSession(host: string, port: number, options: { localAddress?: string; helo?: string } = {}): Promise<SmtpScript> {
  const session = await SmtpScript.connect(host, port, options.localAddress);
  const banner = await session.reply();
  if (banner.code !== 220) throw new Error(`banner: ${banner.lines.join(' | ')}`);
  const ehlo = await session.command(`EHLO ${options.helo ?? 'client.test'}`);
  if (ehlo.code !== 250) throw new Error(`EHLO: ${ehlo.lines.join(' | ')}`);
  return session;
}

export function message(subject: string, body: string, extraHeaders: string[] = []): string {
  return [
    'From: sender@example.net',
    'To: alice@demo.test',
    `Subject: ${subject}`,
    'Message-ID: <test-message@example.net>',
    ...extraHeaders,
    '',
    body,
  ].join('\r\n');
}

/** Dot-stuffs and terminates a message for DATA. */
export function dataPayload(text: string): string {
  const stuffed = text
    .split('\r\n')
    .map((line) => (line.startsWith('.') ? `.${line}` : line))
    .join('\r\n');
  return `${stuffed}\r\n.\r\n`;
}
