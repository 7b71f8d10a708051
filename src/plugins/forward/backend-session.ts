// One SMTP client session to the backend, with its own timers so the forwarder answers 4xx itself
// long before Haraka's plugin timeout. Commands are written whole (pipelined groups in one write) and the
// body is coalesced into large writes; TCP_NODELAY is on, so nothing waits for delayed ACKs.
import net from 'node:net';
import tls from 'node:tls';
import { Writable } from 'node:stream';

export interface Reply {
  code: number;
  /** Text of every line without the code, e.g. ['5.1.1 <x@y>: Recipient address rejected']. */
  lines: string[];
}

export class BackendError extends Error {
  constructor(
    message: string,
    readonly reply: Reply | null = null,
  ) {
    super(message);
    this.name = 'BackendError';
  }
}

// Shared: an Error per connection close (and its stack trace) costs measurable CPU at hundreds a second.
const CLOSED = new BackendError('backend closed the connection');
const SESSION_CLOSED = new BackendError('session closed');

export interface ConnectOptions {
  host: string;
  port: number;
  localAddress?: string;
  connectTimeoutMs: number;
  replyTimeoutMs: number;
}

/** Bounds on what we buffer from the backend: a reply line and the number of lines in one reply. */
const MAX_LINE = 4096;
const MAX_REPLY_LINES = 100;
/** Body bytes gathered before one socket write. */
const WRITE_CHUNK = 64 * 1024;

interface Waiter {
  resolve(reply: Reply): void;
  reject(error: Error): void;
}

export class BackendSession {
  private buffer = '';
  private partial: string[] = [];
  private readonly replies: Reply[] = [];
  private readonly waiters: Waiter[] = [];
  private failure: Error | null = null;
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    private socket: net.Socket,
    private readonly replyTimeoutMs: number,
  ) {
    this.attach(socket);
  }

  private attach(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new BackendError(`backend connection error: ${err.message}`)));
    socket.on('close', () => this.fail(CLOSED));
  }

  /** STARTTLS, then the same session over TLS. The backend is reached over WireGuard, so by default its
   * certificate is not verified (a home server rarely has one for its WireGuard address). */
  async startTls(options: tls.ConnectionOptions = { rejectUnauthorized: false }): Promise<void> {
    const reply = await this.command('STARTTLS');
    if (Math.floor(reply.code / 100) !== 2) throw new BackendError(`backend refused STARTTLS with ${reply.code}`, reply);
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('error');
    plain.removeAllListeners('close');
    const secure = tls.connect({ ...options, socket: plain });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new BackendError(`backend TLS handshake took over ${this.replyTimeoutMs} ms`)), this.replyTimeoutMs);
      secure.once('secureConnect', () => {
        clearTimeout(timer);
        resolve();
      });
      secure.once('error', (err) => {
        clearTimeout(timer);
        reject(new BackendError(`backend TLS handshake failed: ${err.message}`));
      });
    }).catch((err: Error) => {
      this.fail(err, true);
      secure.destroy();
      throw err;
    });
    this.socket = secure;
    this.attach(secure);
  }

  static connect(options: ConnectOptions): Promise<BackendSession> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host: options.host,
        port: options.port,
        ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new BackendError(`backend ${options.host}:${options.port} did not accept a connection within ${options.connectTimeoutMs} ms`));
      }, options.connectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new BackendSession(socket, options.replyTimeoutMs));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new BackendError(`cannot connect to backend ${options.host}:${options.port}: ${err.message}`));
      });
    });
  }

  get usable(): boolean {
    return this.failure === null && !this.socket.destroyed;
  }

  private onData(chunk: Buffer): void {
    this.buffer += chunk.toString('latin1');
    for (;;) {
      const end = this.buffer.indexOf('\n');
      if (end === -1) break;
      const line = this.buffer.slice(0, end).replace(/\r$/, '');
      this.buffer = this.buffer.slice(end + 1);
      const match = /^(\d{3})([ -]?)(.*)$/.exec(line);
      if (!match) return this.fail(new BackendError(`backend sent a malformed reply line: ${JSON.stringify(line.slice(0, 80))}`), true);
      this.partial.push(match[3] ?? '');
      if (this.partial.length > MAX_REPLY_LINES) return this.fail(new BackendError('backend reply has too many lines'), true);
      if (match[2] !== '-') {
        const reply = { code: Number(match[1]), lines: this.partial };
        this.partial = [];
        const waiter = this.waiters.shift();
        if (waiter) waiter.resolve(reply);
        else this.replies.push(reply);
        this.rearm();
      }
    }
    if (this.buffer.length > MAX_LINE) this.fail(new BackendError('backend reply line too long'), true);
  }

  private rearm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.waiters.length === 0) return;
    this.timer = setTimeout(() => this.fail(new BackendError(`backend did not reply within ${this.replyTimeoutMs} ms`), true), this.replyTimeoutMs);
  }

  private fail(error: Error, destroy = false): void {
    if (!this.failure) this.failure = error;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure);
    if (destroy) this.socket.destroy();
  }

  /** The next reply, in order. */
  read(): Promise<Reply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (this.waiters.length === 1) this.rearm();
    });
  }

  /** Writes the lines in one write and returns their replies in order. */
  send(...lines: string[]): Promise<Reply[]> {
    if (this.failure) return Promise.reject(this.failure);
    const replies = lines.map(() => this.read());
    this.socket.write(lines.map((line) => `${line}\r\n`).join(''));
    return Promise.all(replies);
  }

  /** Writes raw bytes (a whole DATA payload); the reply that follows is read with read(). */
  write(data: Buffer): void {
    if (!this.failure) this.socket.write(data);
  }

  async command(line: string): Promise<Reply> {
    const [reply] = await this.send(line);
    return reply as Reply;
  }

  /** A Writable that gathers body chunks into large socket writes; end it to flush. */
  bodyWriter(): Writable {
    const socket = this.socket;
    let chunks: Buffer[] = [];
    let size = 0;
    const flush = (callback: (error?: Error | null) => void) => {
      if (size === 0) return callback();
      const data = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      chunks = [];
      size = 0;
      if (socket.destroyed) return callback(this.failure ?? new BackendError('backend closed the connection'));
      if (socket.write(data)) return callback();
      socket.once('drain', () => callback());
    };
    return new Writable({
      highWaterMark: WRITE_CHUNK,
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= WRITE_CHUNK) flush(callback);
        else callback();
      },
      final: flush,
    });
  }

  /** Polite goodbye: QUIT, then close whatever the backend does. */
  quit(): void {
    if (this.usable) {
      this.socket.end('QUIT\r\n');
      this.socket.setTimeout(this.replyTimeoutMs, () => this.socket.destroy());
    } else {
      this.socket.destroy();
    }
    this.fail(SESSION_CLOSED);
  }

  destroy(): void {
    this.fail(SESSION_CLOSED, true);
  }
}

/** Parses EHLO reply lines into keyword -> parameters (the first line is the greeting and skipped). */
export function parseCapabilities(reply: Reply): Map<string, string[]> {
  const capabilities = new Map<string, string[]>();
  for (const line of reply.lines.slice(1)) {
    const [keyword, ...params] = line.trim().split(/\s+/);
    if (keyword) capabilities.set(keyword.toUpperCase(), params.map((param) => param.toUpperCase()));
  }
  return capabilities;
}
