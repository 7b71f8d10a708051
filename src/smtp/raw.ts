// A raw SMTP client for adversarial tests and the soak: writes exactly the bytes it is given (bare CR/LF, NUL, several
// commands in one write), reads every reply as it comes, tells when the server closed, and can upgrade the
// same socket to TLS after STARTTLS (whatever was written in plaintext before stays written).
import net from 'node:net';
import tls from 'node:tls';

export interface RawReply {
  code: number;
  text: string;
}

export class RawSmtp {
  private buffer = '';
  private replies: RawReply[] = [];
  private lines: string[] = [];
  private wake: (() => void) | null = null;
  private closedFlag = false;
  private socket: net.Socket;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  static connect(host: string, port: number, options: { localAddress?: string; timeoutMs?: number } = {}): Promise<RawSmtp> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to ${host}:${port} timed out`));
      }, options.timeoutMs ?? 10_000);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new RawSmtp(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** Connects and reads the banner; EHLO too unless `helo` is null. */
  static async open(host: string, port: number, options: { localAddress?: string; helo?: string | null } = {}): Promise<RawSmtp> {
    const client = await RawSmtp.connect(host, port, options);
    const banner = await client.reply();
    if (banner?.code !== 220) throw new Error(`banner: ${banner ? `${banner.code} ${banner.text}` : 'closed'}`);
    if (options.helo !== null) {
      const ehlo = await client.command(`EHLO ${options.helo ?? 'client.example.net'}`);
      if (ehlo?.code !== 250) throw new Error(`EHLO: ${ehlo ? `${ehlo.code} ${ehlo.text}` : 'closed'}`);
    }
    return client;
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('latin1');
      for (;;) {
        const end = this.buffer.indexOf('\n');
        if (end === -1) break;
        const line = this.buffer.slice(0, end).replace(/\r$/, '');
        this.buffer = this.buffer.slice(end + 1);
        this.lines.push(line.slice(4));
        if (/^\d{3}(?: |$)/.test(line)) {
          this.replies.push({ code: Number(line.slice(0, 3)), text: this.lines.join('\n') });
          this.lines = [];
        }
      }
      this.notify();
    });
    socket.on('close', () => {
      if (socket !== this.socket) return;
      this.closedFlag = true;
      this.notify();
    });
    socket.on('error', () => undefined);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  write(data: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** The next reply, or null when the server closed first or nothing came within timeoutMs. */
  async reply(timeoutMs = 15_000): Promise<RawReply | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const next = this.replies.shift();
      if (next) return next;
      if (this.closedFlag) return null;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async command(line: string, timeoutMs?: number): Promise<RawReply | null> {
    this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  /** Every reply until the server closes the connection (or timeoutMs passes: then the list ends with -1). */
  async repliesUntilClosed(timeoutMs = 15_000): Promise<number[]> {
    const codes: number[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const next = await this.reply(Math.max(1, deadline - Date.now()));
      if (next) codes.push(next.code);
      else {
        if (!this.closedFlag) codes.push(-1);
        return codes;
      }
    }
  }

  /** TLS over the same socket after a 220 to STARTTLS; whatever the server sent in plaintext after it is dropped. */
  async startTls(servername = 'mx.demo.test'): Promise<void> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    this.buffer = '';
    this.lines = [];
    this.replies = [];
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const socket = tls.connect({ socket: plain, servername, rejectUnauthorized: false }, () => resolve(socket));
      socket.once('error', reject);
    });
    this.socket = secure;
    this.attach(secure);
  }

  close(): void {
    this.socket.destroy();
  }
}
