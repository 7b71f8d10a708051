// One SMTP client session to the backend, with its own timers so the forwarder answers 4xx itself
// long before Haraka's plugin timeout. Commands are written whole (pipelined groups in one write) and the
// body is coalesced into large writes; TCP_NODELAY is on, so nothing waits for delayed ACKs.
import net from 'node:net';
import tls from 'node:tls';
import { Writable } from 'node:stream';
import { lineText, ReplyParser, type ParseFault } from '../../smtp/reply';

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
const KEEPALIVE_BURST = 60;
const KEEPALIVE_SLOW_MS = 240_000;
const ABORTED = new BackendError('backend session aborted: the client left');

export interface ConnectOptions {
  host: string;
  port: number;
  localAddress?: string;
  connectTimeoutMs: number;
  replyTimeoutMs: number;
  /** Aborting closes the connection at once, while connecting or at any later point. */
  signal?: AbortSignal;
}

/** Bounds on what we buffer from the backend: a reply line and the number of lines in one reply. */
const MAX_LINE = 4096;
const MAX_REPLY_LINES = 100;
function faultMessage(fault: ParseFault): string {
  if (fault.kind === 'malformed') return `backend sent a malformed reply line: ${JSON.stringify(fault.line.slice(0, 80))}`;
  if (fault.kind === 'too many lines') return 'backend reply has too many lines';
  return 'backend reply line too long';
}
/** Body bytes gathered before one socket write. */
const WRITE_CHUNK = 64 * 1024;

interface Waiter {
  resolve(reply: Reply): void;
  reject(error: Error): void;
  /** How long this reply may take (the end-of-data reply waits longer than the others). */
  timeoutMs: number;
}

export class BackendSession {
  /** Kept across STARTTLS, as it always was. */
  private readonly parser = new ReplyParser({ garbage: 'fault', maxLine: MAX_LINE, maxLines: MAX_REPLY_LINES });
  private readonly waiters: Waiter[] = [];
  private failure: Error | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly failureListeners = new Set<(error: Error) => void>();
  private keepAliveMs: number | null = null;
  private keepAliveTimer: NodeJS.Timeout | null = null;
  /** The reply to a keepalive NOOP still on its way: nothing is written behind it (RFC 2920: NOOP ends a
   * pipelined group; Postfix's reject_unauth_pipelining refuses DATA for the rest of the session). */
  private noopInFlight: Promise<unknown> | null = null;
  /** NOOPs sent in this session: Postfix counts them against smtpd_junk_command_limit (100). */
  private noops = 0;

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
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(ABORTED);
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host: options.host,
        port: options.port,
        ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      });
      const onAbort = () => {
        clearTimeout(timer);
        socket.destroy();
        reject(ABORTED);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        socket.destroy();
        reject(new BackendError(`backend ${options.host}:${options.port} did not accept a connection within ${options.connectTimeoutMs} ms`));
      }, options.connectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.removeAllListeners('error');
        const session = new BackendSession(socket, options.replyTimeoutMs);
        if (signal) session.abortOn(signal);
        resolve(session);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        reject(new BackendError(`cannot connect to backend ${options.host}:${options.port}: ${err.message}`));
      });
    });
  }

  /** Closes the session when the signal fires (the client left while the session was still opening, or
   * while a kept session was handed to it); the returned function stops watching the signal. */
  abortOn(signal: AbortSignal): () => void {
    const onAbort = () => this.fail(ABORTED, true);
    const stop = () => signal.removeEventListener('abort', onAbort);
    signal.addEventListener('abort', onAbort, { once: true });
    this.failureListeners.add(stop);
    return () => {
      stop();
      this.failureListeners.delete(stop);
    };
  }

  /** Calls `listener` once when the session ends, however it ends (at once when it already has); the
   * returned function forgets the listener (a session kept for the next client outlives its first one). */
  onEnd(listener: () => void): () => void {
    if (this.failure) {
      listener();
      return () => undefined;
    }
    const onFailure = () => listener();
    this.failureListeners.add(onFailure);
    return () => this.failureListeners.delete(onFailure);
  }

  get usable(): boolean {
    return this.failure === null && !this.socket.destroyed;
  }

  /** Usable, with no reply awaited and no keepalive NOOP on its way: nothing of a command is in flight. */
  get idle(): boolean {
    return this.usable && this.waiters.length === 0 && this.noopInFlight === null && this.keepAliveMs === null;
  }

  /** The session runs over TLS (STARTTLS succeeded). */
  get secure(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  private onData(chunk: Buffer): void {
    // Ended (QUIT, or a failure): nothing waits for a reply, and the 221 to QUIT is no fault.
    if (this.failure) return;
    const { replies, fault } = this.parser.feed(chunk);
    for (const parsed of replies) {
      // Split as bytes (latin1 keeps each byte one character), read as UTF-8: a reply that names an
      // SMTPUTF8 address reaches the client as the backend wrote it.
      const reply = { code: parsed.code, lines: parsed.lines.map((line) => Buffer.from(lineText(line), 'latin1').toString('utf8')) };
      const waiter = this.waiters.shift();
      // Every command registers its waiter before it is written: a reply nobody asked for (an idle
      // 421 racing our next command) would shift every later reply onto the wrong command.
      if (!waiter) return this.fail(new BackendError(`backend sent an unrequested reply: ${reply.code} ${reply.lines.join(' ')}`, reply), true);
      waiter.resolve(reply);
      this.rearm();
    }
    if (fault) this.fail(new BackendError(faultMessage(fault)), true);
  }

  private rearm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const head = this.waiters[0];
    if (!head) return;
    this.timer = setTimeout(() => this.fail(new BackendError(`backend did not reply within ${head.timeoutMs} ms`), true), head.timeoutMs);
  }

  private fail(error: Error, destroy = false): void {
    const first = !this.failure;
    if (first) this.failure = error;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.keepAlive(null);
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure as Error);
    if (first) for (const listener of this.failureListeners) listener(this.failure as Error);
    this.failureListeners.clear();
    if (destroy) this.abort();
  }

  /** Closes with a reset, so that bytes still queued (the end of a message, its final dot) are dropped
   * instead of reaching the backend after we gave up on it. */
  private abort(): void {
    const socket = this.socket as net.Socket & { resetAndDestroy?: () => void };
    try {
      if (socket.resetAndDestroy) socket.resetAndDestroy();
      else socket.destroy();
    } catch {
      socket.destroy();
    }
  }

  /** The next reply, in order; timeoutMs overrides the reply timeout for this one reply. */
  read(timeoutMs = this.replyTimeoutMs): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject, timeoutMs });
      if (this.waiters.length === 1) this.rearm();
    });
  }

  /** Writes the lines in one write and returns their replies in order. */
  async send(...lines: string[]): Promise<Reply[]> {
    while (this.noopInFlight) await this.noopInFlight;
    return this.sendNow(lines);
  }

  private sendNow(lines: string[], timeoutMs = this.replyTimeoutMs): Promise<Reply[]> {
    if (this.failure) return Promise.reject(this.failure);
    const replies = lines.map(() => this.read(timeoutMs));
    this.socket.write(lines.map((line) => `${line}\r\n`).join(''));
    this.armKeepAlive();
    return Promise.all(replies);
  }

  /**
   * While a transaction waits for its client (a slow sender between RCPTs, or uploading its message),
   * send NOOP whenever the session has been quiet for intervalMs, so that the backend's idle timeout
   * (Postfix's smtpd_timeout: 300 s, 10 s under stress) does not end a transaction the client was
   * already told 250 for. null stops it; it must be stopped before DATA (a NOOP would be body text).
   */
  keepAlive(intervalMs: number | null): void {
    this.keepAliveMs = intervalMs;
    this.armKeepAlive();
  }

  private armKeepAlive(): void {
    if (this.keepAliveTimer) clearTimeout(this.keepAliveTimer);
    this.keepAliveTimer = null;
    const intervalMs = this.keepAliveMs;
    if (intervalMs === null || this.failure) return;
    // Postfix counts NOOP as a junk command (smtpd_junk_command_limit, 100 per session): after the first
    // 60, one every 4 minutes, still under its normal smtpd_timeout of 300 s.
    const delay = this.noops < KEEPALIVE_BURST ? intervalMs : Math.max(intervalMs, KEEPALIVE_SLOW_MS);
    this.keepAliveTimer = setTimeout(() => {
      this.keepAliveTimer = null;
      if (this.waiters.length > 0 || this.noopInFlight) return this.armKeepAlive();
      this.noops += 1;
      const noop = this.sendNow(['NOOP']).then(
        ([reply]) => {
          if (Math.floor((reply as Reply).code / 100) !== 2) this.fail(new BackendError(`backend answered NOOP with ${(reply as Reply).code}`, reply), true);
        },
        () => undefined,
      );
      this.noopInFlight = noop.finally(() => {
        this.noopInFlight = null;
      });
    }, delay);
  }

  /** Writes raw bytes (a whole DATA payload); the reply that follows is read with read(). */
  write(data: Buffer): void {
    if (!this.failure) this.socket.write(data);
  }

  /** One command and its reply; timeoutMs overrides the reply timeout for it. */
  async command(line: string, timeoutMs?: number): Promise<Reply> {
    while (this.noopInFlight) await this.noopInFlight;
    const [reply] = await this.sendNow([line], timeoutMs);
    return reply as Reply;
  }

  /** Resolves when the socket has taken what was written; rejects when the session fails, or when the
   * backend takes nothing for idleMs (it stopped reading). */
  private drained(idleMs: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const socket = this.socket;
    return new Promise((resolve, reject) => {
      const done = (error?: Error) => {
        clearTimeout(timer);
        socket.removeListener('drain', onDrain);
        this.failureListeners.delete(onFailure);
        if (error) reject(error);
        else resolve();
      };
      const onDrain = () => done();
      const onFailure = (error: Error) => done(error);
      const timer = setTimeout(() => {
        done(new BackendError(`backend took no message data for ${idleMs} ms`));
        this.fail(new BackendError('backend stopped reading the message'), true);
      }, idleMs);
      socket.once('drain', onDrain);
      this.failureListeners.add(onFailure);
    });
  }

  /** A Writable that gathers body chunks into large socket writes; end it to flush. It fails when the
   * session fails, and when the backend takes nothing for idleMs. */
  bodyWriter(idleMs = this.replyTimeoutMs): Writable {
    const socket = this.socket;
    let chunks: Buffer[] = [];
    let size = 0;
    const flush = (callback: (error?: Error | null) => void) => {
      if (size === 0) return callback();
      const data = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      chunks = [];
      size = 0;
      if (this.failure || socket.destroyed) return callback(this.failure ?? CLOSED);
      if (socket.write(data)) return callback();
      this.drained(idleMs).then(() => callback(), callback);
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
    if (keyword)
      capabilities.set(
        keyword.toUpperCase(),
        params.map((param) => param.toUpperCase()),
      );
  }
  return capabilities;
}
