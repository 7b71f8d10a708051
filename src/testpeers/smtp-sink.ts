// SMTP sinks for the demo, tests and benchmarks, built on smtp-server: the backend stand-in (advertises
// XCLIENT and records what it delivered) and the "internet" MX that haraka-out delivers to.
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';

export interface ReceivedMessage {
  mailFrom: string;
  rcptTo: string[];
  /** XCLIENT attributes as received (NAME, ADDR, HELO, ...), empty without XCLIENT. */
  xclient: Record<string, string>;
  remoteAddress: string;
  clientHostname: string;
  heloName: string;
  secure: boolean;
  raw: Buffer;
  subject: string;
}

export interface SinkOptions {
  host: string;
  port?: number;
  name?: string;
  /** Advertise and honour XCLIENT (the backend stand-in); off for an internet MX. */
  xclient?: boolean;
  /** Return an SMTP error text like '550 5.1.1 no such user' to refuse a recipient. */
  rejectRecipient?: (address: string) => string | null;
  /** Return an SMTP error text to refuse a message at end of data. */
  rejectMessage?: (raw: Buffer) => string | null;
  /** Accept connections but never greet (a hung backend). */
  silent?: boolean;
  /** TLS key and cert: offered over STARTTLS when given. */
  tls?: { key: Buffer | string; cert: Buffer | string };
  onMessage?: (message: ReceivedMessage) => void;
  size?: number;
}

export interface SmtpSink {
  host: string;
  port: number;
  messages: ReceivedMessage[];
  /** Resolves with the next message (or one already received past `index`). */
  waitForMessages(count: number, timeoutMs?: number): Promise<ReceivedMessage[]>;
  close(): Promise<void>;
}

function subjectOf(raw: Buffer): string {
  const headerEnd = raw.indexOf('\r\n\r\n');
  const headers = raw.subarray(0, headerEnd === -1 ? raw.length : headerEnd).toString('utf8');
  const match = /^Subject:[ \t]*(.*(?:\r\n[ \t].*)*)/im.exec(headers);
  return match ? (match[1] ?? '').replace(/\r\n[ \t]/g, ' ') : '';
}

function xclientOf(session: SMTPServerSession): Record<string, string> {
  const attributes: Record<string, string> = {};
  const map = (session as SMTPServerSession & { xClient?: Map<string, unknown> }).xClient;
  if (!map) return attributes;
  for (const [key, value] of map) if (!key.includes(':')) attributes[key] = String(value);
  return attributes;
}

function smtpError(text: string): Error {
  const match = /^(\d{3})\s+(.*)$/.exec(text);
  const error = new Error(match ? match[2] : text) as Error & { responseCode?: number };
  error.responseCode = match ? Number(match[1]) : 550;
  return error;
}

export async function startSmtpSink(options: SinkOptions): Promise<SmtpSink> {
  const messages: ReceivedMessage[] = [];
  const waiters: (() => void)[] = [];
  const serverOptions: SMTPServerOptions = {
    name: options.name ?? 'sink.test',
    banner: 'mailproxy test sink',
    logger: false,
    authOptional: true,
    disabledCommands: options.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    useXClient: options.xclient ?? false,
    size: options.size ?? 0,
    ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
    ...(options.silent ? { onConnect: () => undefined } : {}),
    onRcptTo(address, _session, callback) {
      const refusal = options.rejectRecipient?.(address.address) ?? null;
      callback(refusal ? smtpError(refusal) : undefined);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks);
        const message: ReceivedMessage = {
          mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          rcptTo: session.envelope.rcptTo.map((rcpt) => rcpt.address),
          xclient: xclientOf(session),
          remoteAddress: session.remoteAddress,
          clientHostname: session.clientHostname,
          heloName: session.hostNameAppearsAs,
          secure: session.secure,
          raw,
          subject: subjectOf(raw),
        };
        const refusal = options.rejectMessage?.(raw) ?? null;
        if (refusal) return callback(smtpError(refusal));
        messages.push(message);
        options.onMessage?.(message);
        for (const wake of waiters.splice(0)) wake();
        callback();
      });
    },
  };
  const server = new SMTPServer(serverOptions);
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(options.port ?? 0, options.host, () => resolve());
  });
  const port = (server.server.address() as AddressInfo).port;
  return {
    host: options.host,
    port,
    messages,
    async waitForMessages(count, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`sink ${options.host}:${port}: expected ${count} messages, got ${messages.length}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return messages.slice(0, count);
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
