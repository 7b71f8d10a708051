// DNS for `mailproxy selftest` and `mailproxy doctor`: the resolver they ask is always a chosen one
// (--resolver, else the config's dns.servers), never the system resolver; with neither they refuse to
// run. Every answer comes back as a fact (records, none, or an error), never as a throw, so that the
// judges can tell "no such record" (a finding) from "could not ask" (UNKNOWN).
import { promises as dns } from 'node:dns';
import ipaddr from 'ipaddr.js';
import { parseHostPort, parseIp } from '../config/net';
import type { Config } from '../config/schema';

// Answers the judges act on come from one query each; a resolver that does not answer in this time (twice)
// is a finding of its own, not a reason to hang.
export const DNS_TIMEOUT_MS = 2500;
const DNS_TRIES = 2;

/** `IP` or `IP:PORT` (`[IPv6]:PORT`) as node's Resolver#setServers takes it, or null. */
export function parseResolverAddress(text: string): string | null {
  const ip = parseIp(text);
  if (ip) return ip.toString();
  const hostPort = parseHostPort(text);
  return hostPort ? text : null;
}

export type ResolverChoice = { servers: string[]; from: string } | { error: string };

/**
 * --resolver when given, else the config's dns.servers. Nothing else: an empty dns.servers means "the
 * system resolver", which these commands never ask (it may be a public resolver that DNSBLs refuse, and a
 * test must never reach it), so they say so and stop.
 */
export function chooseResolver(option: string | undefined, config: Config): ResolverChoice {
  if (option !== undefined) {
    const server = parseResolverAddress(option);
    if (!server) return { error: `--resolver ${JSON.stringify(option)}: expected IP or IP:PORT like 127.0.0.53 or [::1]:53` };
    return { servers: [server], from: '--resolver' };
  }
  if (config.dns.servers.length > 0) return { servers: config.dns.servers, from: 'dns.servers' };
  return {
    error:
      'no resolver to ask: dns.servers is empty (the system resolver), and this command never asks the system resolver; pass --resolver IP[:PORT] (e.g. --resolver 127.0.0.53) or set dns.servers in the config',
  };
}

export type Lookup<T> =
  | { kind: 'records'; values: T[] }
  /** NXDOMAIN (ENOTFOUND) or no records of the type (ENODATA). */
  | { kind: 'none'; code: string }
  | { kind: 'error'; message: string };

export interface MxRecord {
  exchange: string;
  priority: number;
}

/** The lookups the checks make, each through the chosen servers only. */
export interface DnsClient {
  servers: string[];
  a(name: string): Promise<Lookup<string>>;
  aaaa(name: string): Promise<Lookup<string>>;
  mx(name: string): Promise<Lookup<MxRecord>>;
  /** Each record's character strings joined. */
  txt(name: string): Promise<Lookup<string>>;
  /** The PTR names of an address (asked as a PTR query: no /etc/hosts fallback). */
  ptr(ip: string): Promise<Lookup<string>>;
  /** node:dns `resolve(name, type)` through the same servers: mailauth's resolver function. */
  resolve(name: string, type: string): Promise<unknown>;
}

/** The in-addr.arpa / ip6.arpa name of an address. */
export function reverseName(ip: string): string {
  const bytes = ipaddr.process(ip).toByteArray();
  if (bytes.length === 4) return `${bytes.reverse().join('.')}.in-addr.arpa`;
  return `${bytes
    .flatMap((byte) => [byte >> 4, byte & 15])
    .map((nibble) => nibble.toString(16))
    .reverse()
    .join('.')}.ip6.arpa`;
}

const NO_RECORD = new Set(['ENOTFOUND', 'ENODATA']);

async function lookup<T>(ask: () => Promise<T[]>): Promise<Lookup<T>> {
  try {
    const values = await ask();
    return values.length ? { kind: 'records', values } : { kind: 'none', code: 'ENODATA' };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (NO_RECORD.has(code)) return { kind: 'none', code };
    return { kind: 'error', message: `${code || 'error'}${(err as Error).message.includes(code) ? '' : `: ${(err as Error).message}`}` };
  }
}

const trimDot = (name: string) => name.replace(/\.$/, '').toLowerCase();

export function makeDnsClient(servers: string[], timeoutMs = DNS_TIMEOUT_MS): DnsClient {
  const resolver = new dns.Resolver({ timeout: timeoutMs, tries: DNS_TRIES });
  resolver.setServers(servers);
  return {
    servers,
    a: (name) => lookup(() => resolver.resolve4(name)),
    aaaa: (name) => lookup(() => resolver.resolve6(name)),
    mx: (name) => lookup(async () => (await resolver.resolveMx(name)).map((mx) => ({ exchange: trimDot(mx.exchange), priority: mx.priority }))),
    txt: (name) => lookup(async () => (await resolver.resolveTxt(name)).map((chunks) => chunks.join(''))),
    ptr: (ip) => lookup(async () => (await resolver.resolvePtr(reverseName(ip))).map(trimDot)),
    resolve: (name, type) => resolver.resolve(name, type),
  };
}

/** A lookup as words, for details: `192.0.2.25`, `none (NXDOMAIN)`, `error: ETIMEOUT`. */
export function describeLookup<T>(result: Lookup<T>, show: (value: T) => string = String): string {
  if (result.kind === 'records') return result.values.map(show).join(', ');
  if (result.kind === 'none') return result.code === 'ENOTFOUND' ? 'none (NXDOMAIN)' : 'none';
  return `lookup failed (${result.message})`;
}
