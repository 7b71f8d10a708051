// The decisions of `mailproxy selftest` (pure: no I/O, no clock): MXToolbox's SMTP test, judged from the
// facts probes.ts measured against haraka-in (and haraka-out), each with the exact fix when it fails. Here
// reverse DNS, timing and STARTTLS; the open-relay verdicts in relay-checks.ts.
import { isFqdn, parseIp } from '../config/net';
import { bannerName, type CertificateFacts, type SmtpReply } from '../health/checks';
import { worst, type Status } from '../report/status';
import { describeLookup, type Lookup } from './dns';
import type { Finding } from '../report/findings';

/** MXToolbox's names for the checks of its SMTP test. */
export const MXTOOLBOX = {
  banner: 'SMTP Banner Check',
  rdns: 'SMTP Reverse DNS Mismatch',
  hostname: 'SMTP Valid Hostname',
  tls: 'SMTP TLS',
  relay: 'SMTP Open Relay',
  connection: 'SMTP Connection Time',
  transaction: 'SMTP Transaction Time',
} as const;

// MXToolbox's thresholds: it reports a connection or transaction slower than 15 s as an error ("Not good!");
// above 2 s a sender's own timeouts and tarpit heuristics start to count it against us.
export const SLOW_MS = 2000;
export const TOO_SLOW_MS = 15_000;
/** "At least 14 days left": Let's Encrypt renews at 30 days left, so under 14 renewal has failed twice. */
export const CERT_MIN_DAYS = 14;

const DAY_MS = 86_400_000;

/** A DNS name as compared: lower case, no trailing dot. */
export const lower = (name: string) => name.toLowerCase().replace(/\.$/, '');

// ---------------------------------------------------------------------------------------------------------
// Reverse DNS of the address senders connect to

export interface ReverseDnsFacts {
  /** The address connected to. */
  ip: string;
  /** Its PTR names. */
  ptr: Lookup<string>;
  /** The A (IPv4) or AAAA (IPv6) records of each PTR name asked (the first few). */
  forward: Record<string, Lookup<string>>;
}

/** Two spellings of one address (`::1` and `0:0::1`); false when either is not an address. */
export const sameIp = (a: string, b: string): boolean => {
  const x = parseIp(a);
  const y = parseIp(b);
  return x !== null && y !== null && x.kind() === y.kind() && x.toNormalizedString() === y.toNormalizedString();
};

/** The PTR names whose A/AAAA records include the address (forward-confirmed reverse DNS). */
export function confirmedNames(facts: ReverseDnsFacts): string[] {
  if (facts.ptr.kind !== 'records') return [];
  return facts.ptr.values.filter((name) => {
    const forward = facts.forward[name];
    return forward?.kind === 'records' && forward.values.some((ip) => sameIp(ip, facts.ip));
  });
}

const askProvider = (ip: string, hostname: string) =>
  `ask your VPS provider to set the PTR (reverse DNS) of ${ip} to ${hostname} (most have it in their control panel), and keep ${hostname} ${ip.includes(':') ? 'AAAA' : 'A'} ${ip}`;

/** MXToolbox "SMTP Banner Check": the greeting names the PTR name of the address connected to. */
export function judgeBannerName(target: string, banner: SmtpReply | null, error: string | null, rdns: ReverseDnsFacts, hostname: string): Finding {
  if (!banner) {
    return {
      status: 'CRITICAL',
      detail: `${target}: no banner (${error ?? 'no reply'})`,
      fix: `make haraka-in answer on ${target}: is it running (\`mailproxy health\`), and is the port open to the internet (the nftables rules \`mailproxy notes\` prints)?`,
    };
  }
  const line = banner.lines[0] ?? '';
  if (banner.code !== 220) {
    return { status: 'CRITICAL', detail: `${target} refuses the connection: ${line}`, fix: 'see `journalctl -u mailproxy-haraka-in` for why haraka-in refused the connection' };
  }
  const name = bannerName(banner);
  if (rdns.ptr.kind === 'error') return { status: 'UNKNOWN', detail: `${target} greets as ${name ?? '(no name)'}; the PTR of ${rdns.ip}: ${describeLookup(rdns.ptr)}` };
  const ptrNames = rdns.ptr.kind === 'records' ? rdns.ptr.values : [];
  if (name && ptrNames.includes(name)) return { status: 'OK', detail: `${target} greets as ${name}, the PTR of ${rdns.ip}: ${line}` };
  const ptrText = ptrNames.length ? `the PTR of ${rdns.ip} is ${ptrNames.join(', ')}` : `${rdns.ip} has no PTR (${describeLookup(rdns.ptr)})`;
  const fix =
    name === lower(hostname)
      ? askProvider(rdns.ip, hostname)
      : `${target} greets as ${name ?? '(no name)'}, not as hostname ${hostname}: it is not haraka-in as mailproxy renders it (its banner is config/me = hostname); check what listens there, then \`mailproxy render\` and restart mailproxy-haraka-in`;
  return { status: 'WARNING', detail: `${target} greets as ${name ?? '(no name)'}, but ${ptrText}: ${line}`, fix };
}

/** MXToolbox "SMTP Reverse DNS Mismatch": the PTR name resolves back to the address (forward-confirmed). */
export function judgeReverseDns(facts: ReverseDnsFacts, hostname: string): Finding {
  const { ip, ptr } = facts;
  const record = ip.includes(':') ? 'AAAA' : 'A';
  if (ptr.kind === 'error') return { status: 'UNKNOWN', detail: `PTR of ${ip}: ${describeLookup(ptr)}` };
  if (ptr.kind === 'none')
    return { status: 'CRITICAL', detail: `${ip} has no PTR record (${describeLookup(ptr)}): receivers such as Gmail refuse mail from it`, fix: askProvider(ip, hostname) };
  const confirmed = confirmedNames(facts);
  const shown = ptr.values.map((name) => `${name} → ${describeLookup(facts.forward[name] ?? { kind: 'none', code: 'ENODATA' })}`).join('; ');
  if (confirmed.length) return { status: 'OK', detail: `PTR of ${ip} is ${confirmed.join(', ')}, which resolves back to it (${shown})` };
  const failed = ptr.values.find((name) => facts.forward[name]?.kind === 'error');
  if (failed) return { status: 'UNKNOWN', detail: `PTR of ${ip} is ${ptr.values.join(', ')}; its ${record} lookup failed (${shown})` };
  const name = ptr.values[0] ?? hostname;
  const fix = lower(name) === lower(hostname) ? `publish ${hostname}. ${record} ${ip} (the name the PTR gives must resolve back to the address)` : askProvider(ip, hostname);
  return { status: 'CRITICAL', detail: `PTR of ${ip} is ${ptr.values.join(', ')}, which does not resolve back to ${ip} (${shown}): not forward-confirmed`, fix };
}

// Words that mark a PTR as a provider's generic (dynamic, pool, customer) name.
const GENERIC_WORDS = new Set([
  'dynamic',
  'dyn',
  'dhcp',
  'pool',
  'ppp',
  'pppoe',
  'dsl',
  'adsl',
  'vdsl',
  'xdsl',
  'cable',
  'broadband',
  'dialup',
  'dial',
  'unassigned',
  'customer',
  'cust',
  'residential',
  'client',
  'dip',
  'nat',
]);

/** Why a PTR name looks generic (made from the address, or a pool/dynamic name), or null. */
export function genericPtrReason(name: string, ip: string): string | null {
  const addr = parseIp(ip);
  const text = name.toLowerCase();
  if (addr) {
    const hex = addr
      .toByteArray()
      .map((byte) => byte.toString(16).padStart(2, '0'))
      .join('');
    if (addr.kind() === 'ipv4') {
      // 192-0-2-25, 192.0.2.25, 025.002.000.192 (reversed), with or without separators.
      const octets = addr.toString().split('.');
      for (const order of [octets, [...octets].reverse()]) {
        if (new RegExp(`(^|[^0-9])${order.map((octet) => `0*${octet}`).join('[-._x]?')}([^0-9]|$)`).test(text)) return 'it contains the address';
      }
    } else if (text.includes(addr.toString().replace(/:/g, '-'))) {
      return 'it contains the address';
    }
    if (text.replace(/[-.:]/g, '').includes(hex)) return 'it contains the address in hex';
  }
  const word = text.split(/[-._0-9]+/).find((part) => GENERIC_WORDS.has(part));
  if (word) return `it has the word "${word}" that marks dynamic or pool addresses`;
  return null;
}

/** MXToolbox "SMTP Valid Hostname": the PTR is a real host name, not a generic or IP-looking one. */
export function judgeValidHostname(facts: ReverseDnsFacts, hostname: string): Finding {
  const { ip, ptr } = facts;
  if (ptr.kind === 'error') return { status: 'UNKNOWN', detail: `PTR of ${ip}: ${describeLookup(ptr)}` };
  if (ptr.kind === 'none') return { status: 'CRITICAL', detail: `${ip} has no PTR record, so no host name`, fix: askProvider(ip, hostname) };
  const invalid = ptr.values.filter((name) => !isFqdn(name));
  if (invalid.length) {
    return {
      status: 'CRITICAL',
      detail: `PTR of ${ip} is ${invalid.join(', ')}: not a valid host name (letters, digits, hyphens; at least two labels)`,
      fix: askProvider(ip, hostname),
    };
  }
  const generic = ptr.values.map((name) => [name, genericPtrReason(name, ip)] as const).filter(([, reason]) => reason);
  if (generic.length) {
    const [name, reason] = generic[0]!;
    return {
      status: 'WARNING',
      detail: `PTR of ${ip} is ${name}, a generic name (${reason}): receivers score such names as dynamic or residential`,
      fix: askProvider(ip, hostname),
    };
  }
  return { status: 'OK', detail: `PTR of ${ip} is ${ptr.values.join(', ')}: a valid host name, not generic` };
}

// ---------------------------------------------------------------------------------------------------------
// Connection and transaction time, cold and warm

export interface SessionFacts {
  /** The address the session came from, when known. */
  source: string | null;
  /** Why the session failed, or null. */
  error: string | null;
  banner: SmtpReply | null;
  /** Connect to the complete banner, ms; null without a banner. */
  connectMs: number | null;
  /** Connect through banner, EHLO, MAIL FROM, RCPT TO to the reply to QUIT, ms; null when it did not finish. */
  transactionMs: number | null;
}

export type Temperature = 'cold' | 'warm';

export interface TimingContext {
  temperature: Temperature;
  /** How cold the cold session was: bound to a fresh source address, or just the first connection. */
  freshSource: boolean;
}

function describeSession(session: SessionFacts, context: TimingContext): string {
  const from = session.source ?? 'this host';
  if (context.temperature === 'warm') return `second connection from ${from} (its reverse DNS now cached by haraka-in)`;
  return context.freshSource
    ? `first connection from ${from}, an address haraka-in had not seen (its reverse DNS not cached)`
    : `first connection from ${from} (cold unless this address connected in the last minute)`;
}

/** MXToolbox "SMTP Connection Time" / "SMTP Transaction Time": warn above 2 s, fail at 15 s. */
export function judgeTime(kind: 'connection' | 'transaction', session: SessionFacts, context: TimingContext): Finding {
  const ms = kind === 'connection' ? session.connectMs : session.transactionMs;
  const what = kind === 'connection' ? 'banner' : 'banner, EHLO, MAIL FROM, RCPT TO and QUIT';
  const where = describeSession(session, context);
  if (ms === null) {
    return {
      status: 'CRITICAL',
      detail: `${where}: no complete ${kind === 'connection' ? 'banner' : 'transaction'} (${session.error ?? 'no reply'})`,
      fix: 'make haraka-in answer: `mailproxy health`, `journalctl -u mailproxy-haraka-in`',
    };
  }
  const metrics = { [`smtp_${kind}_seconds`]: ms / 1000 };
  const text = `${where}: ${what} in ${ms < 10_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`}`;
  const fix =
    context.temperature === 'cold'
      ? 'haraka-in greets only after the client’s reverse DNS lookup (up to backend.rdns_timeout): point dns.servers at a fast caching resolver on the VPS (unbound on 127.0.0.1) and keep backend.rdns_timeout short'
      : 'haraka-in is slow even with the client’s name cached: look at its load and log (`mailproxy health`, `journalctl -u mailproxy-haraka-in`) and at the backend’s response time';
  if (ms >= TOO_SLOW_MS) return { status: 'CRITICAL', detail: `${text}, at or over MXToolbox's ${TOO_SLOW_MS / 1000} s`, fix, metrics };
  if (ms > SLOW_MS) return { status: 'WARNING', detail: `${text}, over ${SLOW_MS / 1000} s`, fix, metrics };
  return { status: 'OK', detail: text, metrics };
}

// ---------------------------------------------------------------------------------------------------------
// STARTTLS

export interface LegacyTlsFacts {
  version: 'TLSv1' | 'TLSv1.1';
  /** The server completed a handshake at this version; null when this host cannot offer it. */
  accepted: boolean | null;
  /** What happened, for the detail. */
  note: string;
}

export interface SmtpTlsFacts {
  address: string;
  /** STARTTLS in the EHLO reply. */
  offered: boolean;
  /** Why STARTTLS did not complete (refused, handshake failed), or null. */
  error: string | null;
  protocol: string | null;
  cert: CertificateFacts | null;
  /** Why the chain does not verify against the system's CAs (and --ca), or null when it does. */
  chainError: string | null;
  legacy: LegacyTlsFacts[];
}

const RENEW = 'renew and deploy it (`mailproxy cert renew` with acme.enabled, or your acme.sh run with the mailproxy deploy hook), then run selftest again';

/**
 * MXToolbox "SMTP TLS": STARTTLS offered; the chain verifies and is valid for hostname with at least 14
 * days left; nothing older than TLS 1.2 is accepted.
 */
export function judgeSmtpTls(facts: SmtpTlsFacts, hostname: string, now: Date, minDays = CERT_MIN_DAYS): Finding {
  const where = facts.address;
  if (!facts.offered) {
    return {
      status: 'CRITICAL',
      detail: `${where} does not offer STARTTLS after EHLO${facts.error ? ` (${facts.error})` : ''}: mail to you travels in clear text, and MTA-STS senders cannot deliver`,
      fix: 'haraka-in offers STARTTLS when tls.key and tls.cert (mailproxy.yaml) name a readable key and full chain: check them (`mailproxy check`), `mailproxy render`, restart mailproxy-haraka-in',
    };
  }
  if (facts.error || !facts.cert) {
    return {
      status: 'CRITICAL',
      detail: `${where}: STARTTLS offered but ${facts.error ?? 'no certificate presented'}`,
      fix: 'see `journalctl -u mailproxy-haraka-in` for the TLS error; check tls.key and tls.cert belong together',
    };
  }
  const cert = facts.cert;
  const day = (date: Date) => date.toISOString().slice(0, 10);
  const left = cert.validTo.getTime() - now.getTime();
  const days = Math.floor(left / DAY_MS);
  const metrics = { cert_expiry_seconds: Math.round(left / 1000) };
  const parts: { status: Status; text: string; fix?: string }[] = [];
  if (now < cert.validFrom)
    parts.push({
      status: 'CRITICAL',
      text: `certificate ${cert.subject} is not valid before ${cert.validFrom.toISOString()}`,
      fix: 'check the VPS clock (timedatectl), or deploy a certificate valid now',
    });
  else if (left <= 0) parts.push({ status: 'CRITICAL', text: `certificate ${cert.subject} expired on ${day(cert.validTo)}`, fix: RENEW });
  else if (left < minDays * DAY_MS)
    parts.push({
      status: 'WARNING',
      text: `certificate ${cert.subject} has ${days} day${days === 1 ? '' : 's'} left (under ${minDays})`,
      fix: `${RENEW}; renewal should have happened at 30 days left: is mailproxy-cert-renew.timer (or acme.sh's cron) running?`,
    });
  if (!cert.namesHost) {
    parts.push({
      status: 'CRITICAL',
      text: `certificate ${cert.subject} is not valid for hostname ${hostname}`,
      fix: `get a certificate whose names include ${hostname} (the MX name senders verify) and point tls.cert/tls.key at it`,
    });
  }
  if (facts.chainError) {
    parts.push({
      status: 'CRITICAL',
      text: `the chain does not verify (${facts.chainError}): senders that verify it (MTA-STS enforce) refuse to deliver`,
      fix: 'tls.cert must hold the certificate followed by its intermediates (fullchain.pem) from a public CA (a staging or test CA: pass it with --ca)',
    });
  }
  for (const legacy of facts.legacy) {
    if (legacy.accepted) {
      parts.push({
        status: 'WARNING',
        text: `${legacy.version} accepted`,
        fix: 'haraka-in’s rendered tls.ini sets minVersion=TLSv1.2: `mailproxy render` and restart mailproxy-haraka-in, and check that nothing else answers on this port',
      });
    }
  }
  const status = worst(parts.map((part) => part.status));
  const legacyText = facts.legacy.map((legacy) => `${legacy.version} ${legacy.note}`).join(', ');
  const summary = `${where}: STARTTLS ${facts.protocol ?? ''}, certificate ${cert.subject} (issuer ${cert.issuer}) valid for ${hostname} until ${day(cert.validTo)}, ${days} days left, chain verified${legacyText ? `; ${legacyText}` : ''}`;
  if (status === 'OK') return { status, detail: summary, metrics };
  const shown = parts.filter((part) => part.status !== 'OK');
  return {
    status,
    detail: `${where}: ${shown.map((part) => part.text).join('; ')}`,
    fix: [...new Set(shown.map((part) => part.fix).filter(Boolean))].join('; '),
    metrics,
  };
}
