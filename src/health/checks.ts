// The decisions of `mailproxy health` (pure: no I/O, no clock). Each function takes the facts one probe
// measured (probes.ts) and the thresholds of the config's `health` section, and returns a Verdict.
import { ipInCidr, parseCidr } from '../config/net';
import type { QueueListing } from '../queue/tools';
import { formatDuration } from '../queue/format';
import { worst, type Status, type Verdict } from '../report/status';

/** An SMTP reply as the probes read it. */
export interface SmtpReply {
  code: number;
  lines: string[];
}

/** How running an external command (systemctl, wg) went. */
export type CommandOutcome = { kind: 'missing' } | { kind: 'ran'; code: number; stdout: string; stderr: string } | { kind: 'failed'; error: string };

function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((line) => line.trim())
      .find(Boolean) ?? ''
  );
}

// ---------------------------------------------------------------------------------------------------------
// systemd units

// `systemctl is-active` prints one of these (systemd's unit active states). A unit that does not exist
// is "inactive". "activating" includes a unit waiting to be restarted after a crash (auto-restart).
const UNIT_STATES: Record<string, Status> = {
  active: 'OK',
  reloading: 'OK',
  refreshing: 'OK',
  activating: 'WARNING',
  deactivating: 'WARNING',
  maintenance: 'WARNING',
  inactive: 'CRITICAL',
  failed: 'CRITICAL',
};

/** `systemctl is-active UNIT`: active is OK; without systemctl or systemd nothing is known (UNKNOWN). */
export function judgeUnit(unit: string, outcome: CommandOutcome): Verdict {
  if (outcome.kind === 'missing') {
    return { status: 'UNKNOWN', detail: `systemctl not found on PATH: cannot tell whether ${unit} runs` };
  }
  if (outcome.kind === 'failed') return { status: 'UNKNOWN', detail: `systemctl is-active ${unit}: ${outcome.error}` };
  const state = firstLine(outcome.stdout);
  const status = UNIT_STATES[state];
  if (status) {
    const hint = status === 'OK' ? '' : `: see \`systemctl status ${unit}\` and \`journalctl -u ${unit}\``;
    return { status, detail: `${unit} is ${state}${hint}` };
  }
  const said = firstLine(outcome.stderr) || firstLine(outcome.stdout) || `exit ${outcome.code}`;
  if (/not been booted with systemd|failed to connect to bus|systemd is not running/i.test(outcome.stderr)) {
    return { status: 'UNKNOWN', detail: `systemd is not running here (${said}): cannot tell whether ${unit} runs` };
  }
  return { status: 'UNKNOWN', detail: `systemctl is-active ${unit} gave no state: ${said}` };
}

// ---------------------------------------------------------------------------------------------------------
// SMTP banners

export interface BannerFacts {
  /** HOST:PORT probed. */
  address: string;
  /** The greeting, or null when `error` says why there is none. */
  banner: SmtpReply | null;
  error: string | null;
  ms: number;
}

/** The name a `220 NAME ...` greeting announces (lower case), or null. */
export function bannerName(reply: SmtpReply): string | null {
  const name = /^\d{3}[ -](\S+)/.exec(reply.lines[0] ?? '')?.[1];
  return name ? name.toLowerCase() : null;
}

/** Every listen address of an instance greets with `220 <hostname>` within the time budget. */
export function judgeBanner(hostname: string, facts: BannerFacts[]): Verdict {
  if (facts.length === 0) return { status: 'UNKNOWN', detail: 'no listen address to probe' };
  const parts = facts.map((fact): { status: Status; text: string } => {
    if (fact.error || !fact.banner) return { status: 'CRITICAL', text: `${fact.address}: ${fact.error ?? 'no banner'}` };
    const line = fact.banner.lines[0] ?? '';
    if (fact.banner.code !== 220) return { status: 'CRITICAL', text: `${fact.address} refuses: ${line}` };
    const name = bannerName(fact.banner);
    if (name !== hostname.toLowerCase()) {
      return {
        status: 'CRITICAL',
        text: `${fact.address} announces ${name ?? '(no name)'}, expected hostname ${hostname} (receivers compare it with the PTR): ${line}`,
      };
    }
    return { status: 'OK', text: `${fact.address} greets as ${name} in ${Math.round(fact.ms)} ms` };
  });
  const status = worst(parts.map((part) => part.status));
  const shown = status === 'OK' ? parts : parts.filter((part) => part.status !== 'OK');
  // Time to greet only where a greeting came: a refused connection's time would read as a fast banner.
  const greeted = facts.filter((fact) => fact.banner);
  return {
    status,
    detail: shown.map((part) => part.text).join('; '),
    ...(greeted.length ? { metrics: { smtp_banner_seconds: Math.max(...greeted.map((fact) => fact.ms)) / 1000 } } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------
// STARTTLS and the certificate

export interface CertificateFacts {
  subject: string;
  issuer: string;
  validFrom: Date;
  validTo: Date;
  /** The certificate is valid for `hostname` (tls.checkServerIdentity). */
  namesHost: boolean;
}

export interface TlsFacts {
  address: string;
  /** Why STARTTLS did not complete (not offered, refused, handshake failed); null when it did. */
  error: string | null;
  protocol: string | null;
  cert: CertificateFacts | null;
}

const DAY_MS = 86_400_000;

/**
 * STARTTLS completes and the certificate is valid now (else CRITICAL), has at least `warningDays` left
 * and names hostname (else WARNING). The chain is not verified: that is the sender's business, and the
 * test rigs use self-signed certificates.
 */
export function judgeTls(hostname: string, facts: TlsFacts, now: Date, warningDays: number): Verdict {
  if (facts.error || !facts.cert) return { status: 'CRITICAL', detail: `${facts.address}: ${facts.error ?? 'no certificate'}` };
  const { cert } = facts;
  const left = cert.validTo.getTime() - now.getTime();
  const metrics = { cert_expiry_seconds: Math.round(left / 1000) };
  const day = (date: Date) => date.toISOString().slice(0, 10);
  const names = cert.namesHost ? '' : `; it does not name hostname ${hostname} (senders that verify, MTA-STS, refuse it)`;
  if (now < cert.validFrom) {
    return { status: 'CRITICAL', detail: `certificate ${cert.subject} is not valid before ${cert.validFrom.toISOString()}${names}`, metrics };
  }
  if (left <= 0) {
    return { status: 'CRITICAL', detail: `certificate ${cert.subject} expired on ${cert.validTo.toISOString()}: renew it${names}`, metrics };
  }
  const days = Math.floor(left / DAY_MS);
  const summary = `${facts.protocol ?? 'TLS'}, certificate ${cert.subject} (issuer ${cert.issuer}) valid until ${day(cert.validTo)}, ${days} day${days === 1 ? '' : 's'} left`;
  if (left < warningDays * DAY_MS) {
    return { status: 'WARNING', detail: `${summary}, under health.cert_warning_days (${warningDays}): is renewal running?${names}`, metrics };
  }
  return { status: cert.namesHost ? 'OK' : 'WARNING', detail: `${summary}${names}`, metrics };
}

// ---------------------------------------------------------------------------------------------------------
// The backend

export interface BackendFacts {
  /** wireguard.address, the source address. */
  from: string;
  /** backend.host:port. */
  to: string;
  /** Why the session failed before EHLO was answered, or null. */
  error: string | null;
  /** The errno code of a failed connect (EADDRNOTAVAIL, ECONNREFUSED, ...). */
  errorCode: string | null;
  banner: SmtpReply | null;
  /** The last EHLO reply: after STARTTLS when it was asked and worked. */
  ehlo: SmtpReply | null;
  /** With backend.starttls: 'ok', 'not offered', or why it failed; null when not asked. */
  starttls: string | null;
}

/** The XCLIENT attributes of an EHLO reply (upper case), or null when XCLIENT is not offered. */
export function xclientAttributes(ehlo: SmtpReply): string[] | null {
  for (const line of ehlo.lines.slice(1)) {
    const words = line.slice(4).trim().toUpperCase().split(/\s+/);
    if (words[0] === 'XCLIENT') return words.slice(1);
  }
  return null;
}

function connectHint(code: string | null, from: string): string {
  if (code === 'EADDRNOTAVAIL') return ` (wireguard.address ${from} is not on this host: is the WireGuard interface up?)`;
  if (code === 'ECONNREFUSED') return ' (nothing listens there: is the backend’s smtpd service for mailproxy set up and published? mailproxy notes shows how)';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return ' (no route: is the tunnel up?)';
  return '';
}

/** A service that answers the port but is not the XCLIENT smtpd: what it is most likely to be. */
function wrongServiceHint(facts: BackendFacts, port: number): string {
  if (facts.errorCode === 'ETIMEDOUT' && !facts.banner) {
    return ' (a postscreen that waits for a PROXY header, like Mailcow’s port 10025, greets nobody: use the smtpd service mailproxy notes prints)';
  }
  if (port === 25) return ' (Mailcow’s port 25 is postscreen, which does not implement XCLIENT: use the smtpd service mailproxy notes prints)';
  return '';
}

/**
 * The backend greets a connection from wireguard.address, takes STARTTLS when backend.starttls is on, and
 * then offers XCLIENT with ADDR to it (Postfix advertises XCLIENT only to `smtpd_authorized_xclient_hosts`).
 * Without either haraka-in refuses every sender (CRITICAL); without XCLIENT only a WARNING when
 * `backend.require_xclient` is off (mail arrives under the proxy's address).
 */
export function judgeBackend(facts: BackendFacts, backend: { port: number; requireXclient: boolean; starttls: boolean }): Verdict {
  const where = `${facts.to} from ${facts.from}`;
  if (facts.error) return { status: 'CRITICAL', detail: `${where}: ${facts.error}${connectHint(facts.errorCode, facts.from)}${wrongServiceHint(facts, backend.port)}` };
  if (facts.banner?.code !== 220) {
    return { status: 'CRITICAL', detail: `${where} refuses the connection: ${facts.banner?.lines.join(' | ') ?? 'no banner'}` };
  }
  if (facts.ehlo?.code !== 250) {
    return { status: 'CRITICAL', detail: `${where} refuses EHLO: ${facts.ehlo?.lines.join(' | ') ?? 'no reply'}` };
  }
  if (backend.starttls && facts.starttls !== 'ok') {
    const why = facts.starttls === 'not offered' ? 'does not offer STARTTLS (Postfix: smtpd_tls_security_level = may, with its certificate)' : `STARTTLS failed: ${facts.starttls}`;
    return { status: 'CRITICAL', detail: `${where} ${why}: haraka-in refuses every sender with 451 (backend.starttls)${wrongServiceHint(facts, backend.port)}` };
  }
  const greeting = facts.banner.lines[0] ?? '';
  const tls = facts.starttls === 'ok' ? '; STARTTLS' : '';
  const attributes = xclientAttributes(facts.ehlo);
  if (attributes?.includes('ADDR')) return { status: 'OK', detail: `${where}: ${greeting}${tls}; XCLIENT ${attributes.join(' ')}` };
  const missing = attributes
    ? `offers XCLIENT without ADDR (${attributes.join(' ') || 'no attributes'})`
    : `does not offer XCLIENT to ${facts.from} (Postfix: smtpd_authorized_xclient_hosts = ${facts.from} on that smtpd service)${wrongServiceHint(facts, backend.port)}`;
  return backend.requireXclient
    ? { status: 'CRITICAL', detail: `${where} ${missing}: haraka-in refuses every sender with 451 (backend.require_xclient)` }
    : { status: 'WARNING', detail: `${where} ${missing}: mail reaches it under the proxy’s address (backend.require_xclient is off)` };
}

// ---------------------------------------------------------------------------------------------------------
// WireGuard

export interface WireguardFacts {
  interface: string;
  /** `wg show <if> latest-handshakes`. */
  handshakes: CommandOutcome;
  /** `wg show <if> allowed-ips` (picks the backend's peer). */
  allowedIps: CommandOutcome;
}

export interface HandshakeThresholds {
  warning: number;
  critical: number;
}

/** `<public key>\t<unix time>` lines: the time of each peer's latest handshake, 0 for never. */
export function parseLatestHandshakes(text: string): Map<string, number> {
  const peers = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, time] = line.trim().split(/\s+/);
    if (key && time && /^\d+$/.test(time)) peers.set(key, Number(time));
  }
  return peers;
}

/** `<public key>\t<cidr> <cidr>...` lines (`(none)` for a peer without any). */
export function parseAllowedIps(text: string): Map<string, string[]> {
  const peers = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const [key, ...cidrs] = line.trim().split(/\s+/);
    if (key)
      peers.set(
        key,
        cidrs.filter((cidr) => cidr !== '(none)'),
      );
  }
  return peers;
}

/** The peer whose allowed IPs route `host` (longest prefix, as WireGuard's own routing), or null. */
export function peerFor(host: string, allowed: Map<string, string[]>): string | null {
  let best: { key: string; bits: number } | null = null;
  for (const [key, cidrs] of allowed) {
    for (const text of cidrs) {
      const cidr = parseCidr(text);
      if (!cidr || !ipInCidr(host, cidr)) continue;
      if (!best || cidr[1] > best.bits) best = { key, bits: cidr[1] };
    }
  }
  return best?.key ?? null;
}

function wgFailure(iface: string, outcome: CommandOutcome): Verdict | null {
  if (outcome.kind === 'missing') {
    // Without wg-tools there is no tunnel on this VPS, or no way to look at it: unknown, not OK.
    return { status: 'UNKNOWN', detail: `wg not found on PATH (Debian: apt install wireguard-tools): cannot read ${iface}'s handshakes` };
  }
  if (outcome.kind === 'failed') return { status: 'UNKNOWN', detail: `wg show ${iface}: ${outcome.error}` };
  if (outcome.code === 0) return null;
  const said = firstLine(outcome.stderr) || `exit ${outcome.code}`;
  if (/no such device/i.test(outcome.stderr)) {
    return { status: 'CRITICAL', detail: `interface ${iface} does not exist: is wg-quick@${iface} up? (${said})` };
  }
  if (/operation not permitted|permission denied/i.test(outcome.stderr)) {
    return { status: 'UNKNOWN', detail: `not allowed to read ${iface} (run health as root, or with CAP_NET_ADMIN): ${said}` };
  }
  return { status: 'UNKNOWN', detail: `wg show ${iface}: ${said}` };
}

const shortKey = (key: string) => `${key.slice(0, 8)}…`;

/**
 * The latest handshake with the peer that routes backend.host is recent. Never (0) is CRITICAL: the
 * tunnel has not come up since the interface did.
 */
export function judgeWireguard(facts: WireguardFacts, backendHost: string, now: Date, limits: HandshakeThresholds): Verdict {
  const iface = facts.interface;
  const failed = wgFailure(iface, facts.handshakes);
  if (failed) return failed;
  const handshakes = parseLatestHandshakes(facts.handshakes.kind === 'ran' ? facts.handshakes.stdout : '');
  if (handshakes.size === 0) return { status: 'CRITICAL', detail: `${iface} has no peers: the backend cannot be reached` };
  // Without allowed-ips (an older wg, a failure) every peer is judged, and the freshest counts.
  let keys = [...handshakes.keys()];
  if (facts.allowedIps.kind === 'ran' && facts.allowedIps.code === 0) {
    const peer = peerFor(backendHost, parseAllowedIps(facts.allowedIps.stdout));
    if (!peer || !handshakes.has(peer)) {
      return { status: 'CRITICAL', detail: `no peer of ${iface} has backend.host ${backendHost} in its AllowedIPs: the tunnel does not carry mail to the backend` };
    }
    keys = [peer];
  }
  const key = keys.reduce((a, b) => ((handshakes.get(b) ?? 0) > (handshakes.get(a) ?? 0) ? b : a));
  const time = handshakes.get(key) ?? 0;
  if (time === 0) return { status: 'CRITICAL', detail: `peer ${shortKey(key)} on ${iface} has never completed a handshake: check its endpoint, keys and the firewall (UDP)` };
  const age = Math.max(0, Math.round(now.getTime() / 1000 - time));
  const metrics = { wireguard_handshake_age_seconds: age };
  const text = `peer ${shortKey(key)} on ${iface}: latest handshake ${formatDuration(age * 1000)} ago`;
  if (age >= limits.critical) return { status: 'CRITICAL', detail: `${text} (health.handshake_critical: ${limits.critical} s): the tunnel is down`, metrics };
  if (age >= limits.warning) return { status: 'WARNING', detail: `${text} (health.handshake_warning: ${limits.warning} s)`, metrics };
  return { status: 'OK', detail: text, metrics };
}

// ---------------------------------------------------------------------------------------------------------
// haraka-out's queue

export interface QueueThresholds {
  queueWarning: number;
  queueCritical: number;
  /** Seconds. */
  oldestWarning: number;
  oldestCritical: number;
}

export type QueueFacts = { listing: QueueListing } | { error: string };

export interface QueueSummary {
  messages: number;
  /** Messages that have failed at least once and wait for a retry. */
  deferred: number;
  /** Seconds the oldest message has waited; 0 for an empty queue. */
  oldestSeconds: number;
  errorFiles: number;
  unreadable: number;
}

export function summarizeQueue(listing: QueueListing, now: Date): QueueSummary {
  const oldest = listing.entries.reduce((min, entry) => Math.min(min, entry.queuedAt.getTime()), Infinity);
  return {
    messages: listing.entries.length,
    deferred: listing.entries.filter((entry) => entry.attempts > 0).length,
    oldestSeconds: oldest === Infinity ? 0 : Math.max(0, Math.round((now.getTime() - oldest) / 1000)),
    errorFiles: listing.errorFiles.length,
    unreadable: listing.problems.length,
  };
}

/** Size and oldest age against their thresholds; files Haraka will never deliver are a WARNING. */
export function judgeQueue(facts: QueueFacts, now: Date, limits: QueueThresholds): Verdict {
  if ('error' in facts) return { status: 'UNKNOWN', detail: facts.error };
  const summary = summarizeQueue(facts.listing, now);
  const metrics = {
    queue_messages: summary.messages,
    queue_deferred_messages: summary.deferred,
    queue_oldest_seconds: summary.oldestSeconds,
    queue_error_files: summary.errorFiles,
  };
  const parts: { status: Status; text: string }[] = [];
  const size = `${summary.messages} message${summary.messages === 1 ? '' : 's'} (${summary.deferred} deferred)`;
  if (summary.messages >= limits.queueCritical) parts.push({ status: 'CRITICAL', text: `${size}, health.queue_critical is ${limits.queueCritical}` });
  else if (summary.messages >= limits.queueWarning) parts.push({ status: 'WARNING', text: `${size}, health.queue_warning is ${limits.queueWarning}` });
  else parts.push({ status: 'OK', text: size });
  if (summary.messages > 0) {
    const oldest = `oldest ${formatDuration(summary.oldestSeconds * 1000)}`;
    if (summary.oldestSeconds >= limits.oldestCritical) parts.push({ status: 'CRITICAL', text: `${oldest} (health.oldest_critical: ${limits.oldestCritical} s)` });
    else if (summary.oldestSeconds >= limits.oldestWarning) parts.push({ status: 'WARNING', text: `${oldest} (health.oldest_warning: ${limits.oldestWarning} s)` });
    else parts.push({ status: 'OK', text: oldest });
  }
  if (summary.errorFiles) parts.push({ status: 'WARNING', text: `${summary.errorFiles} error file(s) Haraka never retries` });
  if (summary.unreadable) parts.push({ status: 'WARNING', text: `${summary.unreadable} unreadable file(s)` });
  const status = worst(parts.map((part) => part.status));
  const hint = status === 'OK' ? '' : ': see `mailproxy queue list`';
  return { status, detail: `${parts.map((part) => part.text).join(', ')}${hint}`, metrics };
}

// ---------------------------------------------------------------------------------------------------------
// Disk

export type DiskFacts = { path: string; freeBytes: number; totalBytes: number } | { path: string; error: string };

export interface DiskThresholds {
  warningMb: number;
  criticalMb: number;
}

const MB = 1024 * 1024;

/** Free space (for unprivileged users) on the file system of state_dir, where both queues and spools live. */
export function judgeDisk(facts: DiskFacts, limits: DiskThresholds): Verdict {
  if ('error' in facts) return { status: 'UNKNOWN', detail: `${facts.path}: ${facts.error}` };
  const free = Math.floor(facts.freeBytes / MB);
  const total = Math.floor(facts.totalBytes / MB);
  const text = `${free} MB free of ${total} MB under ${facts.path}`;
  const metrics = { disk_free_bytes: facts.freeBytes, disk_size_bytes: facts.totalBytes };
  if (facts.freeBytes < limits.criticalMb * MB) return { status: 'CRITICAL', detail: `${text} (health.disk_critical_mb: ${limits.criticalMb})`, metrics };
  if (facts.freeBytes < limits.warningMb * MB) return { status: 'WARNING', detail: `${text} (health.disk_warning_mb: ${limits.warningMb})`, metrics };
  return { status: 'OK', detail: text, metrics };
}
