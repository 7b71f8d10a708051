// Cross-field rules that a per-key schema cannot express: each one rejects a known footgun and says why.
import type { Config } from './schema';
import { cidrContains, cidrSize, ipInCidr, isLoopbackCidr, isPrivateCidr, isPrivateIp, isUnspecifiedIp, overlapsLoopback, parseCidr, parseHostPort, type Cidr } from './net';

export interface RuleIssue {
  path: (string | number)[];
  value: unknown;
  message: string;
}

export function checkRules(config: Config): RuleIssue[] {
  const issues: RuleIssue[] = [];
  const network = parseCidr(config.wireguard.network);
  if (!network) return issues; // the schema already reported it

  if (!ipInCidr(config.wireguard.address, network)) {
    issues.push({
      path: ['wireguard', 'address'],
      value: config.wireguard.address,
      message: `expected an address inside wireguard.network ${config.wireguard.network}`,
    });
  }

  if (!ipInCidr(config.backend.host, network)) {
    issues.push({
      path: ['backend', 'host'],
      value: config.backend.host,
      message: `expected an address inside wireguard.network ${config.wireguard.network}: the backend must only be reached over WireGuard`,
    });
  }

  for (const [key, ip] of [
    ['public_ipv4', config.public_ipv4],
    ['public_ipv6', config.public_ipv6],
  ] as const) {
    const message = ip === undefined ? null : publicAddressProblem(ip, config.wireguard.network, network);
    if (message) issues.push({ path: [key], value: ip, message });
  }

  const outboundListen = parseHostPort(config.outbound.listen);
  if (outboundListen) {
    if (isUnspecifiedIp(outboundListen.host)) {
      issues.push({
        path: ['outbound', 'listen'],
        value: config.outbound.listen,
        message: 'expected the WireGuard address, not a wildcard: haraka-out must not be reachable from the internet',
      });
    } else if (!isPrivateIp(outboundListen.host)) {
      issues.push({
        path: ['outbound', 'listen'],
        value: config.outbound.listen,
        message: 'expected a private (WireGuard) address, not a public one: haraka-out must not be reachable from the internet',
      });
    } else if (!ipInCidr(outboundListen.host, network)) {
      issues.push({
        path: ['outbound', 'listen'],
        value: config.outbound.listen,
        message: `expected an address inside wireguard.network ${config.wireguard.network}`,
      });
    }
  }

  config.outbound.relay_acl.forEach((entry, index) => {
    const parsed = parseCidr(entry);
    const message = parsed && relayAclProblem(config, network, parsed);
    if (message) issues.push({ path: ['outbound', 'relay_acl', index], value: entry, message });
  });

  for (const listen of config.inbound.listen) {
    const parsed = parseHostPort(listen);
    if (parsed && outboundListen && parsed.port === outboundListen.port && parsed.host === outboundListen.host) {
      issues.push({
        path: ['inbound', 'listen'],
        value: listen,
        message: 'expected an address different from outbound.listen: the two instances cannot share a socket',
      });
    }
  }

  const smtpSockets = [...config.inbound.listen, config.outbound.listen].map((text) => parseHostPort(text)).filter((parsed) => parsed !== null);
  config.inbound.mta_sts.listen.forEach((listen, index) => {
    const parsed = parseHostPort(listen);
    if (parsed && smtpSockets.some((socket) => socket.port === parsed.port && socket.host === parsed.host)) {
      issues.push({
        path: ['inbound', 'mta_sts', 'listen', index],
        value: listen,
        message: 'expected an address different from inbound.listen and outbound.listen: the policy service cannot share a socket with an SMTP instance',
      });
    }
  });

  const seen = new Set<string>();
  config.domains.forEach((domain, index) => {
    const lower = domain.toLowerCase();
    if (seen.has(lower)) {
      issues.push({ path: ['domains', index], value: domain, message: 'expected each domain once; this one is listed twice' });
    }
    seen.add(lower);
  });

  return issues;
}

/** Ranges the internet cannot reach a host at, named for the message. */
const NOT_PUBLIC: [Cidr, string][] = (
  [
    ['0.0.0.0/8', 'the "this network" range'],
    ['10.0.0.0/8', 'a private range'],
    ['100.64.0.0/10', 'the carrier-grade NAT range'],
    ['127.0.0.0/8', 'the loopback range'],
    ['169.254.0.0/16', 'the link-local range'],
    ['172.16.0.0/12', 'a private range'],
    ['192.168.0.0/16', 'a private range'],
    ['224.0.0.0/4', 'the multicast range'],
    ['240.0.0.0/4', 'the reserved range'],
    ['::/128', 'the unspecified address'],
    ['::1/128', 'the loopback address'],
    ['::ffff:0:0/96', 'the IPv4-mapped range'],
    ['fc00::/7', 'a private range (unique local)'],
    ['fe80::/10', 'the link-local range'],
    ['ff00::/8', 'the multicast range'],
  ] as const
).flatMap(([text, name]) => {
  const cidr = parseCidr(text);
  return cidr ? [[cidr, `${name} (${text})`] as [Cidr, string]] : [];
});

/**
 * public_ipv4/public_ipv6 is where the internet reaches the VPS: the A record, the PTR and SPF name it, and
 * haraka-in listens on it unless inbound.listen says otherwise. An address inside the tunnel or a private
 * range is a slip (the WireGuard address pasted in the wrong key, or the NAT-side address of a cloud VM).
 */
function publicAddressProblem(ip: string, networkText: string, network: Cidr): string | null {
  const nat = 'behind NAT, put the public address here and the local one in inbound.listen';
  if (ipInCidr(ip, network)) {
    return `expected the VPS's public address, not one inside wireguard.network ${networkText}: the internet reaches the VPS there (A record, PTR, SPF), never through the tunnel`;
  }
  const range = NOT_PUBLIC.find(([cidr]) => ipInCidr(ip, cidr));
  if (!range) return null;
  return `expected the VPS's public address, not one in ${range[1]}: the internet cannot reach it there (A record, PTR, SPF); ${nat}`;
}

/**
 * A relay ACL entry may name only hosts that reach haraka-out over WireGuard, never the VPS itself: a local
 * process connecting to haraka-out comes from wireguard.address (the kernel's source for a local address),
 * from 127.0.0.1, or from any address it binds, so an ACL that covers one of them lets anything on the
 * VPS relay. A loopback wireguard.network is the single-host test rig (the demo): there the backend
 * stand-in itself is a loopback address, so only the addresses above are refused, and `check` warns.
 */
function relayAclProblem(config: Config, network: Cidr, entry: Cidr): string | null {
  const { allow_public_relay_acl: allowPublic, allow_local_relay_acl: allowLocal } = config.outbound;
  if (!allowPublic && !isPrivateCidr(entry)) {
    return (
      'expected a private or WireGuard range (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, loopback): ' +
      'a wider ACL makes haraka-out an open relay (set outbound.allow_public_relay_acl: true to override)'
    );
  }
  if (!allowPublic && !cidrContains(network, entry)) {
    return `expected a range inside wireguard.network ${config.wireguard.network}: only hosts behind the tunnel may relay (set outbound.allow_public_relay_acl: true to override)`;
  }
  if (allowLocal) return null;
  const own: [string, string | undefined][] = [
    ['wireguard.address', config.wireguard.address],
    ['public_ipv4', config.public_ipv4],
    ['public_ipv6', config.public_ipv6],
    ['loopback address', '127.0.0.1'],
    ['loopback address', '::1'],
  ];
  for (const [name, ip] of own) {
    if (ip !== undefined && ipInCidr(ip, entry)) {
      return `expected a range without ${name} ${ip}: every process on the VPS can connect from it and would relay (set outbound.allow_local_relay_acl: true to override)`;
    }
  }
  if (!isLoopbackCidr(network) && overlapsLoopback(entry)) {
    return (
      'expected a range outside loopback (127.0.0.0/8, ::1): every process on the VPS can connect from it and would relay ' +
      '(set outbound.allow_local_relay_acl: true to override)'
    );
  }
  return null;
}

/** What is allowed but worth a second look; `mailproxy check` prints these. */
export function checkWarnings(config: Config): RuleIssue[] {
  const warnings: RuleIssue[] = [];
  const network = parseCidr(config.wireguard.network);
  if (network && isLoopbackCidr(network)) {
    warnings.push({
      path: ['wireguard', 'network'],
      value: config.wireguard.network,
      message:
        'a loopback network is the single-host test rig (the demo): relay_acl may then hold loopback addresses ' +
        'other than 127.0.0.1 and wireguard.address; never use one on a VPS',
    });
  }
  config.outbound.relay_acl.forEach((entry, index) => {
    const parsed = parseCidr(entry);
    const hostBits = parsed?.[0].kind() === 'ipv4' ? 32 : 128;
    if (!parsed || parsed[1] === hostBits) return;
    warnings.push({
      path: ['outbound', 'relay_acl', index],
      value: entry,
      message: `covers ${cidrSize(parsed)} addresses and each may relay through haraka-out; the backend is usually one address (/${hostBits})`,
    });
  });
  return warnings;
}
