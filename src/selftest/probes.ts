// The effectful edge of `mailproxy selftest`: SMTP sessions to haraka-in and haraka-out (timed, with
// STARTTLS at chosen TLS versions, from a chosen source address), and the reverse DNS of the address
// connected to, through the chosen resolver. Probes report facts; checks.ts decides.
import { randomInt } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import { formatHostPort, parseIp, type HostPort } from '../config/net';
import { SmtpClient, SmtpClientError } from '../smtp/client';
import { hasExtension } from '../smtp/reply';
import type { CertificateFacts, SmtpReply } from '../health/checks';
import type { LegacyTlsFacts, ReverseDnsFacts, SessionFacts, SmtpTlsFacts } from './checks';
import type { HarakaOutFacts } from './relay-checks';
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

/** One SMTP client session as selftest opens it; every step has the budget `timeoutMs`. */
function connect(target: HostPort, localAddress: string | undefined, timeoutMs: number): Promise<SmtpClient> {
  return SmtpClient.connect(target, {
    ...(localAddress ? { localAddress } : {}),
    timeoutMs,
    timeoutCode: 'ESLOW',
    closed: () => new SmtpClientError('the server closed the connection', 'ECLOSED'),
    parser: { garbage: 'end', maxLine: MAX_REPLY_BYTES, maxLines: 1000 },
    notSmtp: () => new SmtpClientError('the server sent more than any SMTP reply holds', 'EPROTO'),
  });
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

/** Opens a session, reads the banner (timed) and says EHLO; closes and rethrows on any failure. */
async function greet(
  target: HostPort,
  localAddress: string | undefined,
  timeoutMs: number,
): Promise<{ session: SmtpClient; banner: SmtpReply; ehlo: SmtpReply; connectMs: number }> {
  const started = performance.now();
  const session = await connect(target, localAddress, timeoutMs);
  try {
    const banner = await session.reply('banner');
    const connectMs = performance.now() - started;
    if (banner.code !== 220) throw Object.assign(new SmtpClientError(`refused: ${banner.lines.join(' | ')}`, 'EREFUSED'), { banner, connectMs });
    const ehlo = await session.command(`EHLO ${heloLiteral(session.localAddress)}`);
    if (ehlo.code !== 250) throw new SmtpClientError(`EHLO refused: ${ehlo.lines.join(' | ')}`, 'EREFUSED');
    return { session, banner, ehlo, connectMs };
  } catch (err) {
    session.quit();
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
export async function probeSession(
  target: HostPort,
  localAddress: string | undefined,
  probe: { sender: string; rcpt: string },
  timeoutMs = STEP_TIMEOUT_MS,
): Promise<SessionFacts> {
  const started = performance.now();
  const facts: SessionFacts = { source: localAddress ?? null, error: null, banner: null, connectMs: null, transactionMs: null };
  let session: SmtpClient | null = null;
  try {
    const greeted = await greet(target, localAddress, timeoutMs);
    session = greeted.session;
    facts.source = session.localAddress;
    facts.banner = greeted.banner;
    facts.connectMs = greeted.connectMs;
    await session.command(`MAIL FROM:<${probe.sender}>`);
    await session.command(`RCPT TO:<${probe.rcpt}>`);
    const bye = await session.command('QUIT');
    if (bye.code !== 221) throw new SmtpClientError(`QUIT answered ${bye.lines.join(' | ')}`);
    facts.transactionMs = performance.now() - started;
  } catch (err) {
    const failed = err as SmtpClientError & { banner?: SmtpReply; connectMs?: number };
    facts.error = failed.message;
    if (failed.banner) {
      facts.banner = failed.banner;
      facts.connectMs = failed.connectMs ?? null;
    }
  } finally {
    session?.quit();
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
  let session: SmtpClient | null = null;
  try {
    const greeted = await greet(target, undefined, timeoutMs);
    session = greeted.session;
    const go = await session.command('STARTTLS');
    if (go.code !== 220) return { version, accepted: false, note: `not tried (STARTTLS answered ${go.code})` };
    // SECLEVEL=0: OpenSSL 3 refuses the SHA-1 signatures TLS 1.0/1.1 need at its default level.
    await session.upgrade({ servername: hostname, rejectUnauthorized: false, minVersion: version, maxVersion: version, ciphers: 'DEFAULT@SECLEVEL=0' });
    return { version, accepted: true, note: 'accepted' };
  } catch (err) {
    const failure = err as SmtpClientError;
    if (CLIENT_CANNOT.test(`${failure.code ?? ''} ${failure.message}`))
      return { version, accepted: null, note: `not tried: this host's OpenSSL cannot offer it (${failure.code ?? failure.message})` };
    return { version, accepted: false, note: 'refused' };
  } finally {
    session?.quit();
  }
}

/**
 * STARTTLS with the certificate verified against the system's CAs plus `extraCa` (the name judged
 * separately), then one handshake each at TLS 1.0 and TLS 1.1, which must fail.
 */
export async function probeSmtpTls(target: HostPort, hostname: string, extraCa: string[], timeoutMs = STEP_TIMEOUT_MS): Promise<SmtpTlsFacts> {
  const facts: SmtpTlsFacts = { address: formatHostPort(target), offered: false, error: null, protocol: null, cert: null, chainError: null, legacy: [] };
  let session: SmtpClient | null = null;
  try {
    const greeted = await greet(target, undefined, timeoutMs);
    session = greeted.session;
    facts.offered = hasExtension(greeted.ehlo, 'STARTTLS');
    if (!facts.offered) return facts;
    const go = await session.command('STARTTLS');
    if (go.code !== 220) throw new SmtpClientError(`STARTTLS answered ${go.lines.join(' | ')}`);
    const secure = await session.upgrade({
      ...(net.isIP(hostname) ? {} : { servername: hostname }),
      rejectUnauthorized: false,
      ca: [...tls.rootCertificates, ...extraCa],
      // The name is judged on its own (certificateFacts): `authorized` then speaks of the chain only.
      checkServerIdentity: () => undefined,
    });
    facts.protocol = secure.getProtocol();
    const peer = secure.getPeerCertificate();
    if (!peer?.valid_to) throw new SmtpClientError('the server presented no certificate');
    facts.cert = certificateFacts(peer, hostname);
    facts.chainError = secure.authorized ? null : String(secure.authorizationError ?? 'not verified');
  } catch (err) {
    facts.error = (err as Error).message;
    return facts;
  } finally {
    session?.quit();
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
  let session: SmtpClient | null = null;
  const open = async (): Promise<SmtpClient> => {
    session?.quit();
    session = (await greet(target, localAddress, timeoutMs)).session;
    facts.source ??= session.localAddress;
    return session;
  };
  const ended = new SmtpClientError('the server ended the session', 'ECLOSED');
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
          if ((err as SmtpClientError).code !== 'ECLOSED' || facts.reconnects >= MAX_RECONNECTS) throw err;
          facts.reconnects += 1;
          current = await open();
        }
      }
    }
  } catch (err) {
    const failure = err as SmtpClientError;
    if (facts.attempts.length === 0) {
      facts.error = failure.message;
      facts.errorCode = failure.code;
    } else {
      facts.incomplete = `stopped after ${facts.attempts.length} attempts: ${failure.message}`;
    }
  } finally {
    (session as SmtpClient | null)?.quit();
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
