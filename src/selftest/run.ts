// Runs `mailproxy selftest`: MXToolbox's SMTP test against each address of haraka-in (or --target), and
// haraka-out's relay refusal from this host. Probes (probes.ts) measure, judges (checks.ts) decide.
import { formatHostPort, isPrivateIp, isUnspecifiedIp, parseHostPort, type HostPort, type TargetHostPort } from '../config/net';
import type { Config } from '../config/schema';
import { probeTarget } from '../health/run';
import { inboundListen } from '../config/paths';
import { MXTOOLBOX_PROBE, relayTricks } from '../relay-tricks';
import { judgeBannerName, judgeReverseDns, judgeSmtpTls, judgeTime, judgeValidHostname, MXTOOLBOX } from './checks';
import { judgeHarakaOutRelay, judgeOpenRelay } from './relay-checks';
import { describeLookup, type DnsClient } from './dns';
import { checkLine, findingsReport, timedCheck, type CheckLine, type FindingsReport } from '../report/findings';
import { freshSourceFor, probeRelay, probeReverseDns, probeSession, probeSmtpTls, STEP_TIMEOUT_MS, type RelayPlan } from './probes';

export interface SelftestOptions {
  dns: DnsClient;
  /** --target: haraka-in's addresses from the config when absent. */
  target?: TargetHostPort;
  /** Extra trusted CA certificates (PEM) for the chain check: a test CA, Let's Encrypt staging. */
  extraCa?: string[];
  now?: () => Date;
  timeoutMs?: number;
}

// Address literals no one may relay to (documentation ranges, RFC 5737 / RFC 3849): never connected to.
const FOREIGN_IPV4 = '192.0.2.1';
const FOREIGN_IPV6 = '2001:db8::1';

/** Where senders reach haraka-in: its listen addresses, a wildcard one replaced by the public address. */
export function inboundTargets(config: Config): HostPort[] {
  return inboundListen(config).flatMap((listen) => {
    const parsed = parseHostPort(listen);
    if (!parsed) return [];
    if (!isUnspecifiedIp(parsed.host)) return [parsed];
    const ipv6 = parsed.host.includes(':');
    const publicIp = ipv6 ? config.public_ipv6 : config.public_ipv4;
    return publicIp ? [{ host: publicIp, port: parsed.port }] : [];
  });
}

/**
 * The address senders reach a listen address at: a public one as it is; a private or loopback one (haraka-in
 * behind NAT, or the demo on 127.0.0.1) is reached through the public address of its family, whose PTR is
 * the one MXToolbox and every sender look up.
 */
export function senderFacingIp(config: Config, host: string): string {
  if (!isPrivateIp(host)) return host;
  return (host.includes(':') ? config.public_ipv6 : config.public_ipv4) ?? host;
}

/** haraka-in's relay probe: MXToolbox's own, then every foreign trick, from three kinds of sender. */
export function inboundRelayPlan(config: Config): RelayPlan {
  const own = config.domains[0] ?? config.hostname;
  const tricks = relayTricks({ foreign: MXTOOLBOX_PROBE.domain, own, ownHost: config.hostname, ipv4: FOREIGN_IPV4, ipv6: FOREIGN_IPV6 }).filter(
    (trick) => trick.target === 'foreign',
  );
  const probe = MXTOOLBOX_PROBE.recipients.map((rcpt) => ({ rcpt, trick: "MXToolbox's probe" }));
  const rest = tricks.filter((trick) => !MXTOOLBOX_PROBE.recipients.includes(trick.rcpt as never)).map(({ rcpt, name }) => ({ rcpt, trick: name }));
  // MXToolbox's sender, the null sender (bounces), and the backend's own domain (a spoofed local sender).
  return { senders: [MXTOOLBOX_PROBE.sender, '', `postmaster@${own}`], recipients: [...probe, ...rest] };
}

/** haraka-out's relay probe: every trick, our own domains included (nobody but the backend may send at all). */
export function outboundRelayPlan(config: Config): RelayPlan {
  const own = config.domains[0] ?? config.hostname;
  const tricks = relayTricks({ foreign: MXTOOLBOX_PROBE.domain, own, ownHost: config.hostname, ipv4: FOREIGN_IPV4, ipv6: FOREIGN_IPV6 });
  return { senders: [`postmaster@${own}`, ''], recipients: tricks.map(({ rcpt, name }) => ({ rcpt, trick: name })) };
}

/** The addresses --target names: an IP as it is, a host name through the chosen resolver (A and AAAA). */
async function resolveTarget(target: TargetHostPort, dns: DnsClient): Promise<{ addresses: HostPort[]; line: CheckLine | null }> {
  if (target.kind === 'ip') return { addresses: [{ host: target.host, port: target.port }], line: null };
  const [a, aaaa] = await Promise.all([dns.a(target.host), dns.aaaa(target.host)]);
  const ips = [...(a.kind === 'records' ? a.values : []), ...(aaaa.kind === 'records' ? aaaa.values : [])];
  const detail = `${target.host} → A ${describeLookup(a)}; AAAA ${describeLookup(aaaa)} (asked ${dns.servers.join(', ')})`;
  if (ips.length === 0) {
    const failed = a.kind === 'error' || aaaa.kind === 'error';
    return {
      addresses: [],
      line: checkLine(`target@${target.host}`, null, {
        status: failed ? 'UNKNOWN' : 'CRITICAL',
        detail,
        ...(failed ? {} : { fix: `publish ${target.host}. A <the VPS's public IPv4> (or pass --target with the address)` }),
      }),
    };
  }
  return { addresses: ips.map((host) => ({ host, port: target.port })), line: checkLine(`target@${target.host}`, null, { status: 'OK', detail }) };
}

/**
 * Every check against one address of haraka-in: the reverse DNS of `publicIp` (where senders reach it), the
 * banner, and a cold and a warm transaction.
 */
async function addressChecks(config: Config, target: HostPort, publicIp: string, options: SelftestOptions): Promise<CheckLine[]> {
  const label = formatHostPort(target);
  const timeoutMs = options.timeoutMs ?? STEP_TIMEOUT_MS;
  const probe = { sender: MXTOOLBOX_PROBE.sender, rcpt: MXTOOLBOX_PROBE.recipients[0] };
  let fresh = freshSourceFor(target);
  const started = performance.now();
  const rdnsPromise = probeReverseDns(options.dns, publicIp);
  // Cold first (the address is new to haraka-in), then warm from the same address.
  let cold = await probeSession(target, fresh ?? undefined, probe, timeoutMs);
  if (fresh && cold.connectMs === null && /EADDRNOTAVAIL|EINVAL/.test(cold.error ?? '')) {
    // This kernel does not let us use that loopback address: the first connection is as cold as it gets.
    fresh = null;
    cold = await probeSession(target, undefined, probe, timeoutMs);
  }
  const warm = await probeSession(target, fresh ?? cold.source ?? undefined, probe, timeoutMs);
  const rdns = await rdnsPromise;
  const ms = performance.now() - started;
  const context = { freshSource: fresh !== null };
  return [
    checkLine(`banner@${label}`, MXTOOLBOX.banner, judgeBannerName(label, cold.banner ?? warm.banner, cold.error, rdns, config.hostname), cold.connectMs ?? 0),
    checkLine(`rdns@${publicIp}`, MXTOOLBOX.rdns, judgeReverseDns(rdns, config.hostname)),
    checkLine(`hostname@${publicIp}`, MXTOOLBOX.hostname, judgeValidHostname(rdns, config.hostname)),
    checkLine(`connect.cold@${label}`, MXTOOLBOX.connection, judgeTime('connection', cold, { ...context, temperature: 'cold' }), cold.connectMs ?? ms),
    checkLine(`connect.warm@${label}`, MXTOOLBOX.connection, judgeTime('connection', warm, { ...context, temperature: 'warm' }), warm.connectMs ?? ms),
    checkLine(`transaction.cold@${label}`, MXTOOLBOX.transaction, judgeTime('transaction', cold, { ...context, temperature: 'cold' }), cold.transactionMs ?? ms),
    checkLine(`transaction.warm@${label}`, MXTOOLBOX.transaction, judgeTime('transaction', warm, { ...context, temperature: 'warm' }), warm.transactionMs ?? ms),
  ];
}

export async function runSelftest(config: Config, options: SelftestOptions): Promise<FindingsReport> {
  const now = options.now ?? (() => new Date());
  const timeoutMs = options.timeoutMs ?? STEP_TIMEOUT_MS;
  const lines: CheckLine[] = [];
  let targets: HostPort[];
  // --target names the address senders use; haraka-in's own listen addresses may sit behind NAT.
  let publicIpOf = (host: string) => host;
  if (options.target) {
    const resolved = await resolveTarget(options.target, options.dns);
    if (resolved.line) lines.push(resolved.line);
    targets = resolved.addresses;
  } else {
    targets = inboundTargets(config);
    publicIpOf = (host) => senderFacingIp(config, host);
  }
  for (const target of targets) lines.push(...(await addressChecks(config, target, publicIpOf(target.host), options)));
  // One address is enough for TLS and relaying: every address of haraka-in is one process with one tls.ini.
  const first = targets[0];
  if (first) {
    const label = formatHostPort(first);
    lines.push(
      await timedCheck(`tls@${label}`, MXTOOLBOX.tls, async () =>
        judgeSmtpTls(await probeSmtpTls(first, config.hostname, options.extraCa ?? [], timeoutMs), config.hostname, now()),
      ),
      await timedCheck(`relay@${label}`, MXTOOLBOX.relay, async () => judgeOpenRelay(await probeRelay(first, inboundRelayPlan(config), undefined, timeoutMs), config.domains)),
    );
  }
  const outbound = probeTarget(config.outbound.listen);
  if (outbound) {
    // A firewall's drop (the nftables rules of `mailproxy notes`) shows as a connect timeout: keep it short.
    const connectBudget = Math.min(timeoutMs, 5000);
    lines.push(
      await timedCheck(`haraka-out.relay@${formatHostPort(outbound)}`, MXTOOLBOX.relay, async () =>
        judgeHarakaOutRelay(await probeRelay(outbound, outboundRelayPlan(config), undefined, connectBudget), config.outbound.relay_acl),
      ),
    );
  }
  return findingsReport('selftest', lines, now());
}
