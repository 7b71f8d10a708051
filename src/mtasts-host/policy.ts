// The MTA-STS policy this appliance publishes for its domains (RFC 8461), from the config's inbound.mta_sts:
// the policy body, its id, the names and addresses that serve it, and the DNS records that announce it.
// Pure: the service, `notes`, `doctor`, `health` and `check` all take the policy from here.
import { createHash } from 'node:crypto';
import type { Config } from '../config/schema';
import { policyHostName, type StsMode } from '../mtasts/policy';

/** Where senders fetch a policy (§3.3). */
export const WELL_KNOWN_PATH = '/.well-known/mta-sts.txt';

export interface HostedPolicy {
  mode: StsMode;
  /** The mx: patterns: hostname first, then inbound.mta_sts.mx, lower-case, each once. */
  mx: string[];
  maxAge: number;
  /** The body served: CRLF-separated `key: value` lines (§3.2). */
  text: string;
  /** What `_mta-sts.<domain>` TXT announces; changes whenever `text` does. */
  id: string;
}

/**
 * The id of a policy body: the first 20 hex digits of its SHA-256 (§3.1 allows 1 to 32 letters and digits).
 * Derived from the text, so that every change of the policy (mode, an mx, max_age) changes the id, which is
 * what makes senders fetch it again, and the same policy always has the same id, on any machine.
 */
export function policyId(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 20);
}

export function hostedPolicy(config: Config): HostedPolicy {
  const settings = config.inbound.mta_sts;
  const mx = [...new Set([config.hostname, ...settings.mx].map((name) => name.toLowerCase()))];
  const lines = ['version: STSv1', `mode: ${settings.mode}`, ...mx.map((name) => `mx: ${name}`), `max_age: ${settings.max_age}`];
  const text = `${lines.join('\r\n')}\r\n`;
  return { mode: settings.mode, mx, maxAge: settings.max_age, text, id: policyId(text) };
}

/** The names the service answers for, and the certificate must cover: `mta-sts.<domain>` of every domain. */
export function policyHosts(config: Config): string[] {
  return [...new Set(config.domains.map(policyHostName))];
}

export function policyUrl(domain: string): string {
  return `https://${policyHostName(domain)}${WELL_KNOWN_PATH}`;
}

/** `_mta-sts.<domain>` TXT (§3.1). */
export function stsTxtRecord(id: string): string {
  return `v=STSv1; id=${id}`;
}

/** The rua= of `_smtp._tls.<domain>` (RFC 8460 §3): an https URL as it is, an address as mailto:. */
export function tlsRptUri(address: string): string {
  return /^https:\/\//i.test(address) ? address : `mailto:${address}`;
}

/** `_smtp._tls.<domain>` TXT (RFC 8460 §3). */
export function tlsRptRecord(address: string): string {
  return `v=TLSRPTv1; rua=${tlsRptUri(address)}`;
}

export interface DnsRecord {
  name: string;
  type: 'A' | 'AAAA' | 'TXT';
  value: string;
}

/**
 * The records that announce the policy, for each domain: the policy host's A (and AAAA) at the public
 * addresses, `_mta-sts` TXT with the id, and `_smtp._tls` TXT when inbound.mta_sts.tls_rpt_rua is set.
 */
export function policyRecords(config: Config): DnsRecord[] {
  const { id } = hostedPolicy(config);
  const rua = config.inbound.mta_sts.tls_rpt_rua;
  return config.domains.flatMap((domain): DnsRecord[] => {
    const host = policyHostName(domain);
    const name = host.slice('mta-sts.'.length);
    return [
      { name: host, type: 'A', value: config.public_ipv4 },
      ...(config.public_ipv6 ? [{ name: host, type: 'AAAA' as const, value: config.public_ipv6 }] : []),
      { name: `_mta-sts.${name}`, type: 'TXT', value: stsTxtRecord(id) },
      ...(rua ? [{ name: `_smtp._tls.${name}`, type: 'TXT' as const, value: tlsRptRecord(rua) }] : []),
    ];
  });
}
