// Address and CIDR helpers on top of ipaddr.js: every address the config holds goes through here.
import ipaddr from 'ipaddr.js';

export type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

export function parseIp(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  if (!ipaddr.isValid(text)) return null;
  const addr = ipaddr.parse(text);
  // Reject the legacy forms ipaddr.js tolerates (010.1, 0x7f.1): only dotted quads and IPv6.
  if (addr.kind() === 'ipv4' && !ipaddr.IPv4.isValidFourPartDecimal(text)) return null;
  return addr;
}

export function parseCidr(text: string): Cidr | null {
  try {
    const [addr, bits] = ipaddr.parseCIDR(text);
    if (addr.kind() === 'ipv4' && !ipaddr.IPv4.isValidFourPartDecimal(text.split('/')[0] ?? '')) return null;
    return [addr, bits];
  } catch {
    return null;
  }
}

export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  const [outerAddr, outerBits] = outer;
  const [innerAddr, innerBits] = inner;
  if (outerAddr.kind() !== innerAddr.kind()) return false;
  return innerBits >= outerBits && innerAddr.match(outer);
}

export function ipInCidr(ip: string, cidr: Cidr): boolean {
  const addr = parseIp(ip);
  if (!addr || addr.kind() !== cidr[0].kind()) return false;
  return addr.match(cidr);
}

/** Ranges a relay ACL or a private listener may live in: RFC 1918, CGNAT (used by some VPNs), loopback, ULA. */
const PRIVATE_RANGES: Cidr[] = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '127.0.0.0/8', 'fc00::/7', '::1/128'].map((text) => ipaddr.parseCIDR(text));

const LOOPBACK_RANGES: Cidr[] = ['127.0.0.0/8', '::1/128'].map((text) => ipaddr.parseCIDR(text));

export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

export function overlapsLoopback(cidr: Cidr): boolean {
  return LOOPBACK_RANGES.some((range) => cidrOverlaps(range, cidr));
}

export function isLoopbackCidr(cidr: Cidr): boolean {
  return LOOPBACK_RANGES.some((range) => cidrContains(range, cidr));
}

/** How many addresses a CIDR covers, for messages: `256`, or `2^64` where a number would be unreadable. */
export function cidrSize([addr, bits]: Cidr): string {
  const free = (addr.kind() === 'ipv4' ? 32 : 128) - bits;
  return free <= 32 ? String(2 ** free) : `2^${free}`;
}

export function isPrivateCidr(cidr: Cidr): boolean {
  return PRIVATE_RANGES.some((range) => cidrContains(range, cidr));
}

export function isLoopbackIp(ip: string): boolean {
  const addr = parseIp(ip);
  return addr !== null && isLoopbackCidr([addr, addr.kind() === 'ipv4' ? 32 : 128]);
}

export function isPrivateIp(ip: string): boolean {
  const addr = parseIp(ip);
  if (!addr) return false;
  return isPrivateCidr([addr, addr.kind() === 'ipv4' ? 32 : 128]);
}

/** A global unicast address: not private, loopback, link-local, shared (CGNAT), reserved, documentation,
 * multicast or unspecified; an IPv4-mapped IPv6 address is judged by its IPv4 address. */
export function isPublicIp(ip: string): boolean {
  const addr = parseIp(ip);
  if (addr === null) return false;
  if (addr.kind() === 'ipv4') return addr.range() === 'unicast';
  const v6 = addr as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().range() === 'unicast';
  // NAT64 (64:ff9b::/96): the IPv4 address it carries decides.
  if (v6.range() === 'rfc6052') return ipaddr.fromByteArray(v6.toByteArray().slice(12)).range() === 'unicast';
  // Global unicast is 2000::/3 (RFC 4291 §2.4); ipaddr.js calls anything it has no name for "unicast",
  // the deprecated IPv4-compatible ::a.b.c.d included.
  return v6.range() === 'unicast' && v6.match(GLOBAL_UNICAST_V6);
}

const GLOBAL_UNICAST_V6: [ipaddr.IPv6, number] = [ipaddr.IPv6.parse('2000::'), 3];

export function isUnspecifiedIp(ip: string): boolean {
  const addr = parseIp(ip);
  return addr !== null && addr.range() === 'unspecified';
}

/**
 * A range of IPv4 answers of a DNS list (an edge.dnsbl zone's `answers`): postscreen's `zone=127.0.0.[2..11]`.
 * IPv4 only: DNS lists answer with A records whatever the client's address family.
 */
export interface AnswerRange {
  /** First and last address, as unsigned 32-bit numbers. */
  from: number;
  to: number;
}

const QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function ipv4ToNumber(ip: string): number | null {
  if (!QUAD.test(ip)) return null;
  return ip.split('.').reduce((sum, part) => sum * 256 + Number(part), 0);
}

/** `127.0.0.2`, `127.0.0.0/24` or `127.0.0.2-127.0.0.11`; null for anything else. */
export function parseAnswerRange(text: string): AnswerRange | null {
  const trimmed = text.trim();
  const range = /^([\d.]+)-([\d.]+)$/.exec(trimmed);
  if (range) {
    const from = ipv4ToNumber(range[1] as string);
    const to = ipv4ToNumber(range[2] as string);
    return from !== null && to !== null && from <= to ? { from, to } : null;
  }
  const cidr = /^([\d.]+)\/(\d{1,2})$/.exec(trimmed);
  if (cidr) {
    const base = ipv4ToNumber(cidr[1] as string);
    const bits = Number(cidr[2]);
    if (base === null || bits > 32) return null;
    const size = 2 ** (32 - bits);
    const from = base - (base % size);
    return { from, to: from + size - 1 };
  }
  const single = ipv4ToNumber(trimmed);
  return single === null ? null : { from: single, to: single };
}

/**
 * An address (as its /32 or /128) or a CIDR, as ipaddr.js reads it: the lists the plugins read from their
 * ini files (mailproxy-edge's allow, mailproxy-limits' exempt); null for anything else.
 */
export function parseAddressOrCidr(text: string): Cidr | null {
  try {
    if (text.includes('/')) return ipaddr.parseCIDR(text);
    const address = ipaddr.parse(text);
    return [address, address.kind() === 'ipv4' ? 32 : 128];
  } catch {
    return null;
  }
}

/** True when the client address (an IPv4-mapped IPv6 address counts as its IPv4) lies in one of the ranges. */
export function ipInRanges(ip: string, ranges: readonly Cidr[]): boolean {
  if (ranges.length === 0 || !ipaddr.isValid(ip)) return false;
  const address = ipaddr.process(ip);
  return ranges.some(([range, bits]) => range.kind() === address.kind() && address.match(range, bits));
}

export interface HostPort {
  host: string;
  port: number;
}

/** Parses `1.2.3.4:25` or `[2001:db8::1]:25`; the host must be an IP literal. */
export function parseHostPort(text: string): HostPort | null {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text);
  if (!match) return null;
  const host = match[1] ?? match[2] ?? '';
  const port = Number(match[3]);
  const addr = parseIp(host);
  if (!addr || port < 1 || port > 65535) return null;
  if (match[1] !== undefined && addr.kind() !== 'ipv6') return null;
  if (match[2] !== undefined && addr.kind() !== 'ipv4') return null;
  return { host: addr.toString(), port };
}

/** Where to connect to reach a listener: a wildcard listen address is reached on loopback. */
export function probeTarget(listen: string): HostPort | null {
  const parsed = parseHostPort(listen);
  if (!parsed) return null;
  if (!isUnspecifiedIp(parsed.host)) return parsed;
  return { host: parsed.host.includes(':') ? '::1' : '127.0.0.1', port: parsed.port };
}

export interface TargetHostPort extends HostPort {
  /** `ip` for an address literal, `name` for a host name still to be resolved (through a chosen resolver). */
  kind: 'ip' | 'name';
}

const HOST_NAME = /^(?=.{1,253}\.?$)(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)\.?$/i;

/**
 * Parses `HOST`, `HOST:PORT`, `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address, where HOST may be a host
 * name (`mx.example.com`, a trailing dot allowed, returned without it); `defaultPort` when none is given.
 * parseHostPort stays IP-only for the config's addresses.
 */
export function parseTargetHostPort(text: string, defaultPort: number): TargetHostPort | null {
  const literal = parseHostPort(text);
  if (literal) return { ...literal, kind: 'ip' };
  const bare = parseIp(text.replace(/^\[(.*)\]$/, '$1'));
  if (bare) return { host: bare.toString(), port: defaultPort, kind: 'ip' };
  const match = /^([^:[\]]+?)(?::(\d{1,5}))?$/.exec(text);
  if (!match) return null;
  const host = match[1] ?? '';
  const port = match[2] === undefined ? defaultPort : Number(match[2]);
  if (port < 1 || port > 65535) return null;
  // A dotted quad that is not an address (999.1.1.1, 010.1.1.1) is a mistake, never a host name.
  if (/^[0-9.]+$/.test(host) || !HOST_NAME.test(host)) return null;
  return { host: host.replace(/\.$/, '').toLowerCase(), port, kind: 'name' };
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

/** A fully qualified domain name: at least two labels, letters-digits-hyphens, a non-numeric TLD, no trailing dot. */
export function isFqdn(name: string): boolean {
  if (name.length > 253 || name.endsWith('.')) return false;
  const labels = name.split('.');
  if (labels.length < 2) return false;
  if (!labels.every((label) => LABEL.test(label))) return false;
  return /[a-z]/i.test(labels[labels.length - 1] ?? '');
}
