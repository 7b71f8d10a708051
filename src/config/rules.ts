// Cross-field rules that a per-key schema cannot express: each one rejects a known footgun and says why.
import type { Config } from './schema';
import { ipInCidr, isPrivateCidr, isPrivateIp, isUnspecifiedIp, parseCidr, parseHostPort } from './net';

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

  if (!config.outbound.allow_public_relay_acl) {
    config.outbound.relay_acl.forEach((entry, index) => {
      const parsed = parseCidr(entry);
      if (parsed && !isPrivateCidr(parsed)) {
        issues.push({
          path: ['outbound', 'relay_acl', index],
          value: entry,
          message:
            'expected a private or WireGuard range (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, loopback): ' +
            'a wider ACL makes haraka-out an open relay (set outbound.allow_public_relay_acl: true to override)',
        });
      }
    });
  }

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
