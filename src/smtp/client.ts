// The SMTP client of health, selftest, the certificate probe, the test tools and the soak: connect (from a
// chosen source address, with a deadline), read replies (the one parser in reply.ts), commands, pipelined
// commands, the STARTTLS upgrade of the same socket, QUIT. Like Postfix's smtp_chat.c it is the only code
// of theirs that reads replies; each caller keeps its own words for a failure (the options).
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { ReplyParser, type ParseFault, type ParserOptions, type Reply } from './reply';

export class SmtpClientError extends Error {
  constructor(
    message: string,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

export interface Target {
  host: string;
  port: number;
}

export interface ClientOptions {
  localAddress?: string;
  /** Every step: the connection, each reply, the TLS handshake. */
  timeoutMs?: number;
  /** The code a step that took too long fails with. */
  timeoutCode?: string;
  /** The failure once the server closed the connection, `what` the reply awaited. */
  closed?: (what: string) => SmtpClientError;
  /** The failure when the server sent what no SMTP reply is (a bound of the parser crossed). */
  notSmtp?: (fault: ParseFault) => SmtpClientError;
  /** The message of a failed TLS handshake. */
  tlsFailed?: (message: string) => string;
  parser?: ParserOptions;
}

// RFC 5321 §4.5.3.1.5: 512 octets a reply line; never buffer unbounded input from whatever answers.
const DEFAULT_PARSER: ParserOptions = { garbage: 'keep', maxBytes: 64 * 1024, maxLines: 1000 };
const seconds = (ms: number) => `${ms / 1000} s`;

export class SmtpClient {
  private readonly parser: ReplyParser;
  private readonly replies: Reply[] = [];
  /** Why no more replies come: an error, or 'closed' (worded for the reply awaited). */
  private failure: SmtpClientError | 'closed' | null = null;
  private wake: (() => void) | null = null;
  private ended = false;
  private stream: Duplex;
  readonly timeoutMs: number;
  private readonly onData = (chunk: Buffer) => this.read(chunk);
  private readonly onEnd = () => {
    this.ended = true;
    this.stop('closed');
  };
  private readonly onError = (err: NodeJS.ErrnoException) => this.stop(new SmtpClientError(err.message, err.code ?? null));

  private constructor(
    readonly socket: net.Socket,
    private readonly options: ClientOptions,
  ) {
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.parser = new ReplyParser(options.parser ?? DEFAULT_PARSER);
    this.stream = socket;
    this.listen(socket);
  }

  /** Connects (from `localAddress` when given); rejects with the errno code on a failed connect. */
  static connect(target: Target, options: ClientOptions = {}): Promise<SmtpClient> {
    const timeoutMs = options.timeoutMs ?? 15_000;
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: target.host, port: target.port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new SmtpClientError(`no connection within ${seconds(timeoutMs)}`, options.timeoutCode ?? 'ETIMEDOUT'));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new SmtpClient(socket, options));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new SmtpClientError(err.message, err.code ?? null));
      });
    });
  }

  get localAddress(): string | null {
    return this.socket.localAddress ?? null;
  }

  /** True once the server closed the connection (or it broke). */
  get closed(): boolean {
    return this.ended;
  }

  private listen(stream: Duplex): void {
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
    stream.on('error', this.onError);
  }

  private unlisten(stream: Duplex): void {
    stream.off('data', this.onData);
    stream.off('end', this.onEnd);
    stream.off('close', this.onEnd);
    stream.off('error', this.onError);
    stream.on('error', () => undefined);
  }

  private read(chunk: Buffer): void {
    const { replies, fault } = this.parser.feed(chunk);
    this.replies.push(...replies);
    if (fault) {
      this.stop(this.options.notSmtp?.(fault) ?? new SmtpClientError('the server sent more than any SMTP reply holds', 'EPROTO'));
      this.socket.destroy();
    }
    this.notify();
  }

  private stop(failure: SmtpClientError | 'closed'): void {
    this.failure ??= failure;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private failed(what: string): SmtpClientError {
    const failure = this.failure as SmtpClientError | 'closed';
    if (failure !== 'closed') return failure;
    return this.options.closed?.(what) ?? new SmtpClientError('connection closed');
  }

  /** The next reply, those already read first; rejects when the session ends first or after timeoutMs. */
  async reply(what = 'reply', timeoutMs = this.timeoutMs): Promise<Reply> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const reply = this.replies.shift();
      if (reply) return reply;
      if (this.failure) throw this.failed(what);
      const left = deadline - performance.now();
      if (left <= 0) throw new SmtpClientError(`no ${what} within ${seconds(timeoutMs)}`, this.options.timeoutCode ?? 'ETIMEDOUT');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  /** Writes the bytes as given (a string as UTF-8); nothing once the connection is gone. */
  write(data: string | Buffer): void {
    if (!this.stream.destroyed && this.stream.writable) this.stream.write(data);
  }

  async command(line: string, timeoutMs?: number, what = `reply to ${line.split(' ')[0]}`): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply(what, timeoutMs);
  }

  /** Writes the commands in one write (RFC 2920) and reads their replies in order. */
  async pipeline(lines: string[], timeoutMs?: number): Promise<Reply[]> {
    this.write(lines.map((line) => `${line}\r\n`).join(''));
    const replies: Reply[] = [];
    for (const line of lines) replies.push(await this.reply(`reply to ${line.split(' ')[0]}`, timeoutMs));
    return replies;
  }

  /** Hands the socket to TLS (after the server's 220 to STARTTLS): what was read in plaintext and not yet
   * asked for is dropped, replies are read from TLS from then on. */
  upgrade(options: tls.ConnectionOptions = { rejectUnauthorized: false }, timeoutMs = this.timeoutMs): Promise<tls.TLSSocket> {
    this.unlisten(this.stream);
    this.parser.reset();
    this.replies.length = 0;
    return new Promise((resolve, reject) => {
      const secure = tls.connect({ ...options, socket: this.socket });
      const done = (err: SmtpClientError | null) => {
        clearTimeout(timer);
        secure.removeAllListeners('error');
        secure.off('close', onClose);
        if (err) {
          secure.on('error', () => undefined);
          secure.destroy();
          return reject(err);
        }
        this.stream = secure;
        this.listen(secure);
        resolve(secure);
      };
      const onClose = () => done(new SmtpClientError('connection closed during the TLS handshake', 'ECLOSED'));
      const timer = setTimeout(() => done(new SmtpClientError(`no TLS handshake within ${seconds(timeoutMs)}`, this.options.timeoutCode ?? 'ETIMEDOUT')), timeoutMs);
      secure.once('secureConnect', () => done(null));
      secure.once('error', (err: NodeJS.ErrnoException) => done(new SmtpClientError(this.options.tlsFailed?.(err.message) ?? err.message, err.code ?? null)));
      secure.once('close', onClose);
    });
  }

  /** Says QUIT without waiting for its reply and closes (at the latest a second later). */
  quit(): void {
    if (this.socket.destroyed) return;
    this.unlisten(this.stream);
    this.stream.end('QUIT\r\n');
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  destroy(): void {
    this.stream.destroy();
    this.socket.destroy();
  }
}
