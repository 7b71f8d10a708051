// SMTP sinks for the demo, tests and benchmarks, built on smtp-server: the backend stand-in (advertises
// XCLIENT and records what it delivered) and the "internet" MX that haraka-out delivers to.
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';

export interface ReceivedMessage {
  mailFrom: string;
  rcptTo: string[];
  /** XCLIENT attributes as smtp-server applied them (NAME, ADDR, HELO, ...), empty without XCLIENT.
   * smtp-server turns [UNAVAILABLE] and [TEMPUNAVAIL] into an empty value. */
  xclient: Record<string, string>;
  /** XCLIENT attributes exactly as sent (xtext-decoded): [UNAVAILABLE] and [TEMPUNAVAIL] stay literal. */
  xclientSent: Record<string, string>;
  remoteAddress: string;
  /** The sink's id of the connection that carried the message (one per backend connection). */
  connectionId: string;
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
  /** Advertise and honour XCLIENT (the backend stand-in); off for an internet MX. Like Postfix with
   * smtpd_authorized_xclient_hosts naming only the proxy, a connection takes one XCLIENT with ADDR: after
   * it, EHLO no longer advertises XCLIENT and another one is refused with 550. */
  xclient?: boolean;
  /** Like Postfix with every client identity authorized (smtpd_authorized_xclient_hosts=static:all): after
   * XCLIENT ADDR, EHLO still advertises XCLIENT and another one starts the session over for a new client. */
  xclientEveryIdentity?: boolean;
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
  /** false: no reverse DNS lookup of each client before the banner (smtp-server's default is one, through
   * the system resolver: tens of ms per session, which a benchmark would measure instead of haraka-in). */
  reverseLookup?: boolean;
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

/** "+2B" -> "+": RFC 3461 xtext. */
function decodeXtext(value: string): string {
  return value.replace(/\+([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The attributes of the XCLIENT command lines a client sent, later ones overriding earlier ones. */
export function parseXclientLines(lines: string[]): Record<string, string> {
  const attributes: Record<string, string> = {};
  for (const line of lines) {
    for (const token of line.split(/\s+/).slice(1)) {
      const at = token.indexOf('=');
      if (at > 0) attributes[token.slice(0, at).toUpperCase()] = decodeXtext(token.slice(at + 1));
    }
  }
  return attributes;
}

/** The original remote port of a session (XCLIENT PORT replaces session.remotePort). */
function originalPort(session: SMTPServerSession): number {
  const map = (session as SMTPServerSession & { xClient?: Map<string, unknown> }).xClient;
  return Number(map?.get('PORT:DEFAULT') || session.remotePort);
}

function xclientOf(session: SMTPServerSession): Record<string, string> {
  const attributes: Record<string, string> = {};
  const map = (session as SMTPServerSession & { xClient?: Map<string, unknown> }).xClient;
  if (!map) return attributes;
  for (const [key, value] of map) if (!key.includes(':')) attributes[key] = String(value);
  return attributes;
}

/** smtp-server allows XCLIENT only until one has set ADDR (the session then belongs to the client): every
 * new connection here allows it again and again, as Postfix does when every identity is authorized. */
function authorizeEveryIdentity(server: SMTPServer): void {
  type ProxyCheck = { _proxyCommandAllowed(command: string, option: string): boolean; _isSupported(command: string): boolean };
  const internals = server as unknown as { connect(...args: unknown[]): void; connections: Set<ProxyCheck> };
  const connect = internals.connect.bind(server);
  internals.connect = (...args: unknown[]) => {
    const before = new Set(internals.connections);
    connect(...args);
    for (const connection of internals.connections) {
      if (!before.has(connection)) connection._proxyCommandAllowed = (command) => command === 'XCLIENT' && connection._isSupported(command);
    }
  };
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
    disableReverseLookup: options.reverseLookup === false,
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
          xclientSent: parseXclientLines(sentXclient.get(originalPort(session)) ?? []),
          remoteAddress: session.remoteAddress,
          connectionId: session.id,
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
  if (options.xclientEveryIdentity) authorizeEveryIdentity(server);
  // smtp-server keeps no raw XCLIENT values: read them off the plain-text command stream, by the
  // client's own port (a demo and test peer; STARTTLS sessions are not read).
  const sentXclient = new Map<number, string[]>();
  server.server.on('connection', (socket: import('node:net').Socket) => {
    const port = socket.remotePort ?? 0;
    let pending = '';
    const onData = (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      const lines = pending.split('\r\n');
      pending = (lines.pop() ?? '').slice(-4096);
      for (const line of lines) {
        const isXclient = /^XCLIENT /i.test(line);
        // A new XCLIENT after other commands is a new client on the same connection: its attributes only.
        if (isXclient) sentXclient.set(port, [...(afterXclient ? (sentXclient.get(port) ?? []) : []), line]);
        afterXclient = isXclient;
      }
    };
    let afterXclient = false;
    socket.on('data', onData);
    socket.once('close', () => setTimeout(() => sentXclient.delete(port), 60_000).unref());
  });
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
