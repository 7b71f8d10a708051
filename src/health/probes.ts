// The effectful edge of `mailproxy health`: SMTP sessions (plain, STARTTLS, from a chosen source address),
// external commands (systemctl, wg) run with the caller's environment, the queue directory and statfs.
// Probes measure and report facts; they never decide (checks.ts does) and never throw for a failed probe.
import { execFile } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { listQueue } from '../queue/tools';
import type { BackendFacts, BannerFacts, CommandOutcome, DiskFacts, QueueFacts, SmtpReply, TlsFacts, WireguardFacts } from './checks';

// A reply line longer than this is not SMTP (RFC 5321 §4.5.3.1.5: 512 octets); never buffer unbounded
// input from whatever answers on the port.
const MAX_REPLY_BYTES = 64 * 1024;
// systemctl can hang on a wedged D-Bus, wg on a wedged netlink; a health check must still finish.
export const COMMAND_TIMEOUT_MS = 10_000;

class ProbeError extends Error {
  constructor(
    message: string,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** Reads SMTP replies (multi-line included) from a stream; detach() before handing the socket to TLS. */
class ReplyReader {
  private buffer = '';
  private lines: string[] = [];
  private replies: SmtpReply[] = [];
  private waiter: { resolve: (reply: SmtpReply) => void; reject: (err: Error) => void } | null = null;
  private failure: Error | null = null;
  private readonly onData = (chunk: Buffer) => this.feed(chunk.toString('latin1'));
  private readonly onClose = () => this.fail(new ProbeError('connection closed'));
  private readonly onError = (err: NodeJS.ErrnoException) => this.fail(new ProbeError(err.message, err.code ?? null));

  constructor(private readonly stream: Duplex) {
    stream.on('data', this.onData);
    stream.on('close', this.onClose);
    stream.on('error', this.onError);
  }

  /** Stops reading (TLS takes the socket over); errors on the socket stay handled. */
  detach(): void {
    this.stream.off('data', this.onData);
    this.stream.off('close', this.onClose);
    this.stream.off('error', this.onError);
    this.stream.on('error', () => undefined);
  }

  private feed(text: string): void {
    this.buffer += text;
    for (;;) {
      const end = this.buffer.indexOf('\r\n');
      if (end === -1) break;
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      this.lines.push(line);
      if (!/^\d{3}-/.test(line)) {
        const reply = { code: /^\d{3}/.test(line) ? Number(line.slice(0, 3)) : 0, lines: this.lines };
        this.lines = [];
        if (this.waiter) {
          const { resolve } = this.waiter;
          this.waiter = null;
          resolve(reply);
        } else {
          this.replies.push(reply);
        }
      }
    }
    if (this.buffer.length + this.lines.join('').length > MAX_REPLY_BYTES) {
      this.fail(new ProbeError(`a reply longer than ${MAX_REPLY_BYTES} bytes: not an SMTP server`));
      this.stream.destroy();
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    if (this.waiter) {
      const { reject } = this.waiter;
      this.waiter = null;
      reject(this.failure);
    }
  }

  next(timeoutMs: number, what: string): Promise<SmtpReply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new ProbeError(`no ${what} within ${timeoutMs / 1000} s`, 'ETIMEDOUT'));
      }, timeoutMs);
      this.waiter = {
        resolve: (reply) => (clearTimeout(timer), resolve(reply)),
        reject: (err) => (clearTimeout(timer), reject(err)),
      };
    });
  }
}

interface Target {
  host: string;
  port: number;
  localAddress?: string;
}

function connect(target: Target, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port, ...(target.localAddress ? { localAddress: target.localAddress } : {}) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ProbeError(`no connection within ${timeoutMs / 1000} s`, 'ETIMEDOUT'));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new ProbeError(err.message, err.code ?? null));
    });
  });
}

/** Says QUIT (politely, without waiting) and closes. */
function quit(socket: Duplex): void {
  if (socket.destroyed) return;
  socket.on('error', () => undefined);
  socket.end('QUIT\r\n');
  setTimeout(() => socket.destroy(), 1000).unref();
}

async function command(socket: Duplex, reader: ReplyReader, line: string, timeoutMs: number): Promise<SmtpReply> {
  socket.write(`${line}\r\n`);
  return reader.next(timeoutMs, `reply to ${line.split(' ')[0]}`);
}

const formatTarget = (target: Target) => (net.isIPv6(target.host) ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`);

/** Connects and reads the greeting; `ms` is the time from connecting to the whole greeting. */
export async function probeBanner(target: Target, timeoutMs: number): Promise<BannerFacts> {
  const started = performance.now();
  const address = formatTarget(target);
  let socket: net.Socket | null = null;
  try {
    socket = await connect(target, timeoutMs);
    const reader = new ReplyReader(socket);
    const banner = await reader.next(timeoutMs, 'banner');
    return { address, banner, error: null, ms: performance.now() - started };
  } catch (err) {
    return { address, banner: null, error: (err as Error).message, ms: performance.now() - started };
  } finally {
    if (socket) quit(socket);
  }
}

function hasExtension(ehlo: SmtpReply, name: string): boolean {
  return ehlo.lines.slice(1).some((line) => line.slice(4).trim().toUpperCase().split(/\s+/)[0] === name);
}

function upgrade(socket: net.Socket, servername: string, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      ...(net.isIP(servername) ? {} : { servername }),
      // Not verified here: judgeTls reads validity and names; the chain is the sender's business.
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => {
      secure.destroy();
      reject(new ProbeError(`no TLS handshake within ${timeoutMs / 1000} s`, 'ETIMEDOUT'));
    }, timeoutMs);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(secure);
    });
    secure.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new ProbeError(`TLS handshake failed: ${err.message}`, err.code ?? null));
    });
  });
}

/** Banner, EHLO, STARTTLS, the TLS handshake, and the certificate the server presented. */
export async function probeStarttls(target: Target, hostname: string, timeoutMs: number): Promise<TlsFacts> {
  const address = formatTarget(target);
  let socket: Duplex | null = null;
  try {
    const plain = await connect(target, timeoutMs);
    socket = plain;
    const reader = new ReplyReader(plain);
    const banner = await reader.next(timeoutMs, 'banner');
    if (banner.code !== 220) throw new ProbeError(`refused: ${banner.lines.join(' | ')}`);
    const ehlo = await command(plain, reader, `EHLO ${hostname}`, timeoutMs);
    if (ehlo.code !== 250) throw new ProbeError(`EHLO refused: ${ehlo.lines.join(' | ')}`);
    if (!hasExtension(ehlo, 'STARTTLS')) throw new ProbeError('STARTTLS is not offered after EHLO: is tls.ini rendered and the certificate readable?');
    const go = await command(plain, reader, 'STARTTLS', timeoutMs);
    if (go.code !== 220) throw new ProbeError(`STARTTLS refused: ${go.lines.join(' | ')}`);
    reader.detach();
    const secure = await upgrade(plain, hostname, timeoutMs);
    socket = secure;
    const peer = secure.getPeerCertificate();
    if (!peer || !peer.valid_to) throw new ProbeError('the server presented no certificate');
    const name = (entity: tls.Certificate | undefined) => {
      const cn = entity?.CN;
      return (Array.isArray(cn) ? cn[0] : cn) ?? '(no CN)';
    };
    return {
      address,
      error: null,
      protocol: secure.getProtocol(),
      cert: {
        subject: `CN=${name(peer.subject)}`,
        issuer: `CN=${name(peer.issuer)}`,
        validFrom: new Date(peer.valid_from),
        validTo: new Date(peer.valid_to),
        namesHost: tls.checkServerIdentity(hostname, peer) === undefined,
      },
    };
  } catch (err) {
    return { address, error: (err as Error).message, protocol: null, cert: null };
  } finally {
    if (socket) quit(socket);
  }
}

/**
 * A session to the backend from `from` (wireguard.address) as haraka-in opens it: banner, EHLO, and with
 * `starttls` STARTTLS and EHLO again (the EHLO that counts for XCLIENT is the last one), then QUIT.
 */
export async function probeBackend(target: Target & { localAddress: string }, hostname: string, timeoutMs: number, starttls: boolean): Promise<BackendFacts> {
  const facts: BackendFacts = { from: target.localAddress, to: formatTarget(target), error: null, errorCode: null, banner: null, ehlo: null, starttls: null };
  let socket: Duplex | null = null;
  try {
    const plain = await connect(target, timeoutMs);
    socket = plain;
    const reader = new ReplyReader(plain);
    facts.banner = await reader.next(timeoutMs, 'banner');
    if (facts.banner.code !== 220) return facts;
    facts.ehlo = await command(plain, reader, `EHLO ${hostname}`, timeoutMs);
    if (!starttls || facts.ehlo.code !== 250) return facts;
    if (!hasExtension(facts.ehlo, 'STARTTLS')) {
      facts.starttls = 'not offered';
      return facts;
    }
    const go = await command(plain, reader, 'STARTTLS', timeoutMs);
    if (go.code !== 220) {
      facts.starttls = `refused: ${go.lines.join(' | ')}`;
      return facts;
    }
    reader.detach();
    try {
      socket = await upgrade(plain, hostname, timeoutMs);
    } catch (err) {
      facts.starttls = (err as Error).message;
      return facts;
    }
    facts.starttls = 'ok';
    facts.ehlo = await command(socket, new ReplyReader(socket), `EHLO ${hostname}`, timeoutMs);
  } catch (err) {
    facts.error = (err as Error).message;
    facts.errorCode = err instanceof ProbeError ? err.code : null;
  } finally {
    if (socket) quit(socket);
  }
  return facts;
}

/**
 * Runs `file args` found on env.PATH, in the C locale (the checks read its messages). A missing command
 * is `missing`, a timeout or other spawn error `failed`; any exit code is `ran`.
 */
export function runCommand(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = COMMAND_TIMEOUT_MS): Promise<CommandOutcome> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { env: { ...env, LC_ALL: 'C' }, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (!err) return resolve({ kind: 'ran', code: 0, stdout, stderr });
        const failure = err as NodeJS.ErrnoException & { code?: string | number; killed?: boolean };
        if (failure.code === 'ENOENT') return resolve({ kind: 'missing' });
        if (failure.killed) return resolve({ kind: 'failed', error: `no answer within ${timeoutMs / 1000} s` });
        if (typeof failure.code === 'number') return resolve({ kind: 'ran', code: failure.code, stdout, stderr });
        resolve({ kind: 'failed', error: failure.message });
      },
    );
  });
}

export function probeUnit(unit: string, env: NodeJS.ProcessEnv): Promise<CommandOutcome> {
  return runCommand('systemctl', ['is-active', unit], env);
}

export async function probeWireguard(iface: string, env: NodeJS.ProcessEnv): Promise<WireguardFacts> {
  const handshakes = await runCommand('wg', ['show', iface, 'latest-handshakes'], env);
  const allowedIps: CommandOutcome =
    handshakes.kind === 'ran' && handshakes.code === 0 ? await runCommand('wg', ['show', iface, 'allowed-ips'], env) : { kind: 'failed', error: 'not asked' };
  return { interface: iface, handshakes, allowedIps };
}

export async function probeQueue(queueDir: string): Promise<QueueFacts> {
  try {
    return { listing: await listQueue(queueDir) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

export async function probeDisk(dir: string): Promise<DiskFacts> {
  try {
    const stats = await statfs(dir);
    return { path: dir, freeBytes: stats.bavail * stats.bsize, totalBytes: stats.blocks * stats.bsize };
  } catch (err) {
    return { path: dir, error: (err as Error).message };
  }
}
