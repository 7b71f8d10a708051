// A scripted SMTP client for tests and benchmarks that need exact replies to each command (reply codes, multi-line
// replies), which a full client library hides.
import { SmtpClient } from './client';
import { replyText, type Reply as AnyReply } from './reply';

/** A reply with its text: every line's text without the code, joined with '\n'. */
export type Reply = AnyReply & { text: string };

/** Replies are read by the one SMTP client (client.ts); strings are written as UTF-8. */
export class SmtpScript {
  private constructor(private readonly client: SmtpClient) {}

  static async connect(host: string, port: number, localAddress?: string): Promise<SmtpScript> {
    return new SmtpScript(await SmtpClient.connect({ host, port }, localAddress ? { localAddress } : {}));
  }

  /** The next reply from the server; rejects when the connection closes first or after timeoutMs. */
  async reply(timeoutMs = 15_000): Promise<Reply> {
    const reply = await this.client.reply('reply', timeoutMs);
    return { ...reply, text: replyText(reply) };
  }

  write(data: string | Buffer): void {
    this.client.write(data);
  }

  async command(line: string, timeoutMs?: number): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  get isClosed(): boolean {
    return this.client.closed;
  }

  close(): void {
    this.client.destroy();
  }
}

/** Connects, reads the banner and says EHLO (or HELO with `verb`). */
export async function openSession(host: string, port: number, options: { localAddress?: string; helo?: string; verb?: 'EHLO' | 'HELO' } = {}): Promise<SmtpScript> {
  const session = await SmtpScript.connect(host, port, options.localAddress);
  const banner = await session.reply();
  if (banner.code !== 220) throw new Error(`banner: ${banner.lines.join(' | ')}`);
  const verb = options.verb ?? 'EHLO';
  const greeting = await session.command(`${verb} ${options.helo ?? 'client.test'}`);
  if (greeting.code !== 250) throw new Error(`${verb}: ${greeting.lines.join(' | ')}`);
  return session;
}

export function message(subject: string, body: string, extraHeaders: string[] = []): string {
  return ['From: sender@example.net', 'To: alice@demo.test', `Subject: ${subject}`, 'Message-ID: <test-message@example.net>', ...extraHeaders, '', body].join('\r\n');
}

/** Dot-stuffs and terminates a message for DATA. */
export function dataPayload(text: string): string {
  const stuffed = text
    .split('\r\n')
    .map((line) => (line.startsWith('.') ? `.${line}` : line))
    .join('\r\n');
  return `${stuffed}\r\n.\r\n`;
}
