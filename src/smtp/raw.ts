// A raw SMTP client for adversarial tests and the soak: writes exactly the bytes it is given (bare CR/LF, NUL, several
// commands in one write), reads every reply as it comes, tells when the server closed, and can upgrade the
// same socket to TLS after STARTTLS (whatever was written in plaintext before stays written). Replies are read
// by the one SMTP client (client.ts); here they are only null instead of an error.
import { SmtpClient } from './client';
import { replyText } from './reply';

export interface RawReply {
  code: number;
  text: string;
}

export class RawSmtp {
  private constructor(private readonly client: SmtpClient) {}

  static async connect(host: string, port: number, options: { localAddress?: string; timeoutMs?: number } = {}): Promise<RawSmtp> {
    const client = await SmtpClient.connect({ host, port }, { ...(options.localAddress ? { localAddress: options.localAddress } : {}), timeoutMs: options.timeoutMs ?? 10_000 });
    return new RawSmtp(client);
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

  get closed(): boolean {
    return this.client.closed;
  }

  /** Writes the bytes as given (a string as latin1: one character a byte). */
  write(data: string | Buffer): void {
    this.client.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** The next reply, or null when the server closed first or nothing came within timeoutMs. */
  async reply(timeoutMs = 15_000): Promise<RawReply | null> {
    try {
      const reply = await this.client.reply('reply', timeoutMs);
      return { code: reply.code, text: replyText(reply) };
    } catch {
      return null;
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
        if (!this.closed) codes.push(-1);
        return codes;
      }
    }
  }

  /** TLS over the same socket after a 220 to STARTTLS; whatever the server sent in plaintext after it is dropped. */
  async startTls(servername = 'mx.demo.test'): Promise<void> {
    await this.client.upgrade({ servername, rejectUnauthorized: false });
  }

  close(): void {
    this.client.destroy();
  }
}
