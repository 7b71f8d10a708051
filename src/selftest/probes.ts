// The effectful edge of `mailproxy selftest`: SMTP sessions to haraka-in and haraka-out (timed, with
// STARTTLS at chosen TLS versions, from a chosen source address), and the reverse DNS of the address
// connected to, through the chosen resolver. Probes report facts; checks.ts decides.
import { randomInt } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { formatHostPort, parseIp, type HostPort } from '../config/net';
import type { CertificateFacts, SmtpReply } from '../health/checks';
import type { HarakaOutFacts, LegacyTlsFacts, ReverseDnsFacts, SessionFacts, SmtpTlsFacts } from './checks';
import type { DnsClient } from './dns';

// Longer than MXToolbox's 15 s, so that a banner between 15 and 20 s is measured (and fails) rather than
// cut off; every step of every session has this budget.
export const STEP_TIMEOUT_MS = 20_000;
// A reply longer than this is not SMTP (RFC 5321 §4.5.3.1.5: 512 octets a line).
const MAX_REPLY_BYTES = 64 * 1024;
// PTR names whose forward records are asked: a hostile zone may return hundreds.
const MAX_PTR_NAMES = 5;
// The server may close a session after some refused recipients (a limit on errors); the probe reconnects
// and goes on, this many times at most.
const MAX_RECONNECTS = 5;

class SessionError extends Error {
  constructor(
    message: string,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** One SMTP client session: replies (multi-line included) read from the plain socket, then from TLS. */
class SmtpSession {
  private buffer = '';
  private lines: string[] = [];
  private readonly replies: SmtpReply[] = [];
  private notify: (() => void) | null = null;
  private failure: SessionError | null = null;
  private stream: Duplex;
  private readonly onData = (chunk: Buffer) => this.read(chunk.toString('latin1'));
  private readonly onEnd = () => this.stop(new SessionError('the server closed the connection', 'ECLOSED'));
  private readonly onError = (err: NodeJS.ErrnoException) => this.stop(new SessionError(err.message, err.code ?? null));

  private constructor(
    readonly socket: net.Socket,
    readonly timeoutMs: number,
  ) {
    this.stream = socket;
    this.listen(socket);
  }

  /** Connects (from `localAddress` when given); rejects with the errno code on a failed connect. */
  static connect(target: HostPort, localAddress: string | undefined, timeoutMs: number): Promise<SmtpSession> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: target.host, port: target.port, ...(localAddress ? { localAddress } : {}) });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new SessionError(`no connection within ${timeoutMs / 1000} s`, 'ETIMEDOUT'));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new SmtpSession(socket, timeoutMs));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new SessionError(err.message, err.code ?? null));
      });
    });
  }

  get localAddress(): string | null {
    return this.socket.localAddress ?? null;
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

  private read(text: string): void {
    this.buffer += text;
    let end: number;
    while ((end = this.buffer.indexOf('\r\n')) !== -1) {
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      this.lines.push(line);
      if (/^\d{3}-/.test(line)) continue;
      this.replies.push({ code: /^\d{3}/.test(line) ? Number(line.slice(0, 3)) : 0, lines: this.lines });
      this.lines = [];
    }
    if (this.buffer.length > MAX_REPLY_BYTES || this.lines.length > 1000) {
      this.stop(new SessionError('the server sent more than any SMTP reply holds', 'EPROTO'));
      this.socket.destroy();
    }
    this.notify?.();
  }

  private stop(err: SessionError): void {
    this.failure ??= err;
    this.notify?.();
  }

  /** The next reply; rejects when the session ends first or after the step budget. */
  async reply(what: string): Promise<SmtpReply> {
    const deadline = performance.now() + this.timeoutMs;
    for (;;) {
      const reply = this.replies.shift();
      if (reply) return reply;
      if (this.failure) throw this.failure;
      const left = deadline - performance.now();
      if (left <= 0) throw new SessionError(`no ${what} within ${this.timeoutMs / 1000} s`, 'ESLOW');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.notify = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.notify = null;
    }
  }

  async command(line: string): Promise<SmtpReply> {
    if (this.failure) throw this.failure;
    this.stream.write(`${line}\r\n`);
    return this.reply(`reply to ${line.split(' ')[0]}`);
  }

  /** Hands the socket to TLS (after the server's 220 to STARTTLS) and reads from TLS from then on. */
  upgrade(options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
    this.unlisten(this.socket);
    return new Promise((resolve, reject) => {
      const secure = tls.connect({ ...options, socket: this.socket });
      const timer = setTimeout(() => {
        secure.destroy();
        reject(new SessionError(`no TLS handshake within ${this.timeoutMs / 1000} s`, 'ESLOW'));
      }, this.timeoutMs);
      secure.once('secureConnect', () => {
        clearTimeout(timer);
        secure.removeAllListeners('error');
        this.stream = secure;
        this.listen(secure);
        resolve(secure);
      });
      secure.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        secure.destroy();
        reject(new SessionError(err.message, err.code ?? null));
      });
    });
  }

  /** Says QUIT without waiting and closes. */
  close(): void {
    if (this.socket.destroyed) return;
    this.unlisten(this.stream);
    this.stream.end('QUIT\r\n');
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}

/** `[192.0.2.1]` or `[IPv6:2001:db8::1]`: the address literal a client without a name says EHLO with. */
function heloLiteral(address: string | null): string {
  if (!address) return '[127.0.0.1]';
  const ip = parseIp(address);
  if (!ip) return '[127.0.0.1]';
  if (ip.kind() === 'ipv6') {
    const v6 = ip as import('ipaddr.js').IPv6;
    return v6.isIPv4MappedAddress() ? `[${v6.toIPv4Address().toString()}]` : `[IPv6:${v6.toString()}]`;
  }
  return `[${ip.toString()}]`;
}

function hasExtension(ehlo: SmtpReply, name: string): boolean {
  return ehlo.lines.slice(1).some((line) => line.slice(4).trim().toUpperCase().split(/\s+/)[0] === name);
}

/** Opens a session, reads the banner (timed) and says EHLO; closes and rethrows on any failure. */
async function greet(
  target: HostPort,
  localAddress: string | undefined,
  timeoutMs: number,
): Promise<{ session: SmtpSession; banner: SmtpReply; ehlo: SmtpReply; connectMs: number }> {
  const started = performance.now();
  const session = await SmtpSession.connect(target, localAddress, timeoutMs);
  try {
    const banner = await session.reply('banner');
    const connectMs = performance.now() - started;
    if (banner.code !== 220) throw Object.assign(new SessionError(`refused: ${banner.lines.join(' | ')}`, 'EREFUSED'), { banner, connectMs });
    const ehlo = await session.command(`EHLO ${heloLiteral(session.localAddress)}`);
    if (ehlo.code !== 250) throw new SessionError(`EHLO refused: ${ehlo.lines.join(' | ')}`, 'EREFUSED');
    return { session, banner, ehlo, connectMs };
  } catch (err) {
    session.close();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Where to connect from

/** Whether `ip` is one of this host's own addresses (or loopback): selftest then runs on the VPS itself. */
export function isLocalAddress(ip: string): boolean {
  const addr = parseIp(ip);
  if (!addr) return false;
  if (addr.range() === 'loopback') return true;
  return Object.values(os.networkInterfaces())
    .flat()
    .some((info) => info && parseIp(info.address)?.toNormalizedString() === addr.toNormalizedString());
}

/**
 * A source address haraka-in has not seen, for the cold measurement: a random 127.X.Y.Z when the target
 * is an IPv4 address of this host (Linux delivers any of 127/8 to a local address over lo). Null when the
 * kernel must choose (a remote or IPv6 target): the first connection is then only as cold as it happens to be.
 */
export function freshSourceFor(target: HostPort): string | null {
  if (!net.isIPv4(target.host) || !isLocalAddress(target.host)) return null;
  return `127.${randomInt(100, 255)}.${randomInt(1, 255)}.${randomInt(1, 255)}`;
}

// ---------------------------------------------------------------------------------------------------------
// Sessions

/**
 * One timed transaction, as MXToolbox's SMTP test makes it: connect, banner, EHLO, MAIL FROM, RCPT TO (its
 * probe recipient: refused by a closed relay), QUIT. connectMs ends at the banner, transactionMs at QUIT's reply.
 */
export async function probeSession(target: HostPort, localAddress: string | undefined, probe: { sender: string; rcpt: string }, timeoutMs = STEP_TIMEOUT_MS): Promise<SessionFacts> {
  const started = performance.now();
  const facts: SessionFacts = { source: localAddress ?? null, error: null, banner: null, connectMs: null, transactionMs: null };
  let session: SmtpSession | null = null;
  try {
    const greeted = await greet(target, localAddress, timeoutMs);
    session = greeted.session;
    facts.source = session.localAddress;
    facts.banner = greeted.banner;
    facts.connectMs = greeted.connectMs;
    await session.command(`MAIL FROM:<${probe.sender}>`);
    await session.command(`RCPT TO:<${probe.rcpt}>`);
    const bye = await session.command('QUIT');
    if (bye.code !== 221) throw new SessionError(`QUIT answered ${bye.lines.join(' | ')}`);
    facts.transactionMs = performance.now() - started;
  } catch (err) {
    const failed = err as SessionError & { banner?: SmtpReply; connectMs?: number };
    facts.error = failed.message;
    if (failed.banner) {
      facts.banner = failed.banner;
      facts.connectMs = failed.connectMs ?? null;
    }
  } finally {
    session?.close();
  }
  return facts;
}

const certName = (entity: tls.Certificate | undefined) => {
  const cn = entity?.CN;
  return `CN=${(Array.isArray(cn) ? cn[0] : cn) ?? '(no CN)'}`;
};

function certificateFacts(peer: tls.PeerCertificate, hostname: string): CertificateFacts {
  return {
    subject: certName(peer.subject),
    issuer: certName(peer.issuer),
    validFrom: new Date(peer.valid_from),
    validTo: new Date(peer.valid_to),
    namesHost: tls.checkServerIdentity(hostname, peer) === undefined,
  };
}

// OpenSSL's words for "this host cannot offer that version at all" (a build or policy without TLS 1.0).
const CLIENT_CANNOT = /NO_PROTOCOLS_AVAILABLE|NO_CIPHERS_AVAILABLE|NO_SUITABLE|unsupported protocol/i;

async function tryLegacy(target: HostPort, hostname: string, version: LegacyTlsFacts['version'], timeoutMs: number): Promise<LegacyTlsFacts> {
  let session: SmtpSession | null = null;
  try {
    const greeted = await greet(target, undefined, timeoutMs);
    session = greeted.session;
    const go = await session.command('STARTTLS');
    if (go.code !== 220) return { version, accepted: false, note: `not tried (STARTTLS answered ${go.code})` };
    // SECLEVEL=0: OpenSSL 3 refuses the SHA-1 signatures TLS 1.0/1.1 need at its default level.
    await session.upgrade({ servername: hostname, rejectUnauthorized: false, minVersion: version, maxVersion: version, ciphers: 'DEFAULT@SECLEVEL=0' });
    return { version, accepted: true, note: 'accepted' };
  } catch (err) {
    const failure = err as SessionError;
    if (CLIENT_CANNOT.test(`${failure.code ?? ''} ${failure.message}`)) return { version, accepted: null, note: `not tried: this host's OpenSSL cannot offer it (${failure.code ?? failure.message})` };
    return { version, accepted: false, note: 'refused' };
  } finally {
    session?.close();
  }
}

/**
 * STARTTLS with the certificate verified against the system's CAs plus `extraCa` (the name judged
 * separately), then one handshake each at TLS 1.0 and TLS 1.1, which must fail.
 */
export async function probeSmtpTls(target: HostPort, hostname: string, extraCa: string[], timeoutMs = STEP_TIMEOUT_MS): Promise<SmtpTlsFacts> {
  const facts: SmtpTlsFacts = { address: formatHostPort(target), offered: false, error: null, protocol: null, cert: null, chainError: null, legacy: [] };
  let session: SmtpSession | null = null;
  try {
    const greeted = await greet(target, undefined, timeoutMs);
    session = greeted.session;
    facts.offered = hasExtension(greeted.ehlo, 'STARTTLS');
    if (!facts.offered) return facts;
    const go = await session.command('STARTTLS');
    if (go.code !== 220) throw new SessionError(`STARTTLS answered ${go.lines.join(' | ')}`);
    const secure = await session.upgrade({
      ...(net.isIP(hostname) ? {} : { servername: hostname }),
      rejectUnauthorized: false,
      ca: [...tls.rootCertificates, ...extraCa],
      // The name is judged on its own (certificateFacts): `authorized` then speaks of the chain only.
      checkServerIdentity: () => undefined,
    });
    facts.protocol = secure.getProtocol();
    const peer = secure.getPeerCertificate();
    if (!peer || !peer.valid_to) throw new SessionError('the server presented no certificate');
    facts.cert = certificateFacts(peer, hostname);
    facts.chainError = secure.authorized ? null : String(secure.authorizationError ?? 'not verified');
  } catch (err) {
    facts.error = (err as Error).message;
    return facts;
  } finally {
    session?.close();
  }
  for (const version of ['TLSv1', 'TLSv1.1'] as const) facts.legacy.push(await tryLegacy(target, hostname, version, timeoutMs));
  return facts;
}

export interface RelayPlan {
  senders: string[];
  recipients: { rcpt: string; trick: string }[];
}

/** A 421 ends the session (RFC 5321 §3.8), whatever command it answers: never a verdict on the address. */
const closing = (reply: SmtpReply) => reply.code === 421;

/**
 * Tries every recipient after every sender (RSET between senders) and records each reply; an accepted
 * recipient is never followed by DATA. A session the server ends (a limit on refusals: 421 or a close) is
 * reopened and the recipient tried again, up to MAX_RECONNECTS times.
 */
export async function probeRelay(target: HostPort, plan: RelayPlan, localAddress?: string, timeoutMs = STEP_TIMEOUT_MS): Promise<HarakaOutFacts> {
  const facts: HarakaOutFacts = { address: formatHostPort(target), source: null, error: null, errorCode: null, incomplete: null, attempts: [], reconnects: 0 };
  let session: SmtpSession | null = null;
  const open = async (): Promise<SmtpSession> => {
    session?.close();
    session = (await greet(target, localAddress, timeoutMs)).session;
    facts.source ??= session.localAddress;
    return session;
  };
  const ended = new SessionError('the server ended the session', 'ECLOSED');
  try {
    let current = await open();
    for (const sender of plan.senders) {
      let next = 0;
      while (next < plan.recipients.length) {
        try {
          const mail = await current.command(`MAIL FROM:<${sender}>`);
          if (closing(mail)) throw ended;
          if (mail.code >= 300) {
            // A refused sender refuses every recipient with it.
            for (const { rcpt, trick } of plan.recipients.slice(next)) facts.attempts.push({ sender, rcpt, trick, phase: 'MAIL', code: mail.code, reply: mail.lines.join(' | ') });
            next = plan.recipients.length;
          }
          for (; next < plan.recipients.length; next++) {
            const { rcpt, trick } = plan.recipients[next]!;
            const reply = await current.command(`RCPT TO:<${rcpt}>`);
            if (closing(reply)) throw ended;
            facts.attempts.push({ sender, rcpt, trick, phase: 'RCPT', code: reply.code, reply: reply.lines.join(' | ') });
          }
          await current.command('RSET');
        } catch (err) {
          if ((err as SessionError).code !== 'ECLOSED' || facts.reconnects >= MAX_RECONNECTS) throw err;
          facts.reconnects += 1;
          current = await open();
        }
      }
    }
  } catch (err) {
    const failure = err as SessionError;
    if (facts.attempts.length === 0) {
      facts.error = failure.message;
      facts.errorCode = failure.code;
    } else {
      facts.incomplete = `stopped after ${facts.attempts.length} attempts: ${failure.message}`;
    }
  } finally {
    (session as SmtpSession | null)?.close();
  }
  return facts;
}

// ---------------------------------------------------------------------------------------------------------
// Reverse DNS

/** The PTR names of `ip` and the A/AAAA records of each (the first few). */
export async function probeReverseDns(dns: DnsClient, ip: string): Promise<ReverseDnsFacts> {
  const ptr = await dns.ptr(ip);
  const forward: ReverseDnsFacts['forward'] = {};
  if (ptr.kind === 'records') {
    const names = ptr.values.slice(0, MAX_PTR_NAMES);
    const answers = await Promise.all(names.map((name) => (net.isIPv6(ip) ? dns.aaaa(name) : dns.a(name))));
    names.forEach((name, index) => (forward[name] = answers[index]!));
  }
  return { ip, ptr, forward };
}
