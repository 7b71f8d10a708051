// The soak's SMTP client: src/smtp/raw.ts's client seen as the soak needs it (a reply is code 0 when the
// server closed first or nothing came in time), and one whole attempt at one message.
import { RawSmtp } from '../../src/smtp/raw';
import { sleep } from './options';

interface Reply {
  code: number;
  text: string;
}

/** The soak's view of src/smtp/raw.ts's client: a reply is code 0 when the server closed first or nothing
 * came in time. */
export class Client {
  private constructor(private readonly raw: RawSmtp) {}

  static async connect(host: string, port: number, localAddress?: string): Promise<Client> {
    return new Client(await RawSmtp.connect(host, port, localAddress ? { localAddress } : {}));
  }

  write(data: string): void {
    this.raw.write(data);
  }

  async reply(timeoutMs = 30_000): Promise<Reply> {
    return (await this.raw.reply(timeoutMs)) ?? { code: 0, text: this.raw.closed ? 'closed' : 'timeout' };
  }

  async command(line: string, timeoutMs?: number): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  close(): void {
    this.raw.close();
  }
}

/** One attempt at one message; the final code (0: the connection broke). Slow: pauses between steps. */
export async function attempt(host: string, port: number, from: string, localAddress: string, rcpt: string, data: string, slowMs = 0): Promise<number> {
  let client: Client | null = null;
  try {
    client = await Client.connect(host, port, localAddress);
    if ((await client.reply()).code !== 220) return 0;
    const step = async (line: string) => {
      if (slowMs) await sleep(slowMs);
      return (await client!.command(line)).code;
    };
    if ((await step('EHLO client.soak.example.net')) !== 250) return 0;
    const mail = await step(`MAIL FROM:<${from}>`);
    if (mail !== 250) return mail;
    const rcptCode = await step(`RCPT TO:<${rcpt}>`);
    if (rcptCode !== 250) return rcptCode;
    const dataCode = await step('DATA');
    if (dataCode !== 354) return dataCode;
    if (slowMs) {
      const half = Math.floor(data.length / 2);
      client.write(data.slice(0, half));
      await sleep(slowMs);
      client.write(`${data.slice(half)}.\r\n`);
    } else client.write(`${data}.\r\n`);
    const final = (await client.reply(120_000)).code;
    client.write('QUIT\r\n');
    return final;
  } catch {
    return 0;
  } finally {
    client?.close();
  }
}
