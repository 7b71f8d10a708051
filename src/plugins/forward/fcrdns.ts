// The XCLIENT NAME of a client: its forward-confirmed reverse DNS name (a PTR name whose A/AAAA records
// include the client's address), [UNAVAILABLE] when there is none, [TEMPUNAVAIL] when DNS failed.
import { promises as dns } from 'node:dns';
import ipaddr from 'ipaddr.js';

const PERMANENT = new Set<string>([dns.NOTFOUND, dns.NODATA, dns.BADNAME, dns.FORMERR]);
/** Most PTR names we try to confirm: a hostile zone may return hundreds. */
const MAX_NAMES = 5;

/** One spelling per address (IPv4-mapped IPv6 unwrapped), so PTR answers compare by value. */
function normalise(ip: string): string {
  return ipaddr.isValid(ip) ? ipaddr.process(ip).toNormalizedString() : ip.toLowerCase();
}

/** The in-addr.arpa / ip6.arpa name of an address. */
function reverseName(ip: string): string {
  const bytes = ipaddr.process(ip).toByteArray();
  if (bytes.length === 4) return `${bytes.reverse().join('.')}.in-addr.arpa`;
  const nibbles = bytes.flatMap((byte) => [byte >> 4, byte & 15]).map((nibble) => nibble.toString(16));
  return `${nibbles.reverse().join('.')}.ip6.arpa`;
}

async function addressesOf(name: string, ipv6: boolean): Promise<string[]> {
  try {
    return ipv6 ? await dns.resolve6(name) : await dns.resolve4(name);
  } catch (err) {
    if (PERMANENT.has((err as NodeJS.ErrnoException).code ?? '')) return [];
    throw err;
  }
}

export interface ClientName {
  /** The first PTR name, for Haraka's remote.host; 'NXDOMAIN' or 'DNSERROR' like Haraka's own lookup. */
  ptr: string;
  /** The XCLIENT NAME value. */
  xclientName: string;
}

export async function lookupClientName(rawIp: string, timeoutMs: number): Promise<ClientName> {
  const ip = normalise(rawIp);
  const ipv6 = ip.includes(':');
  const same = (candidate: string) => normalise(candidate) === ip;
  const lookup = async (): Promise<ClientName> => {
    let names: string[];
    try {
      // A PTR query, not dns.reverse: that one falls back to /etc/hosts and turns a DNS outage into NXDOMAIN.
      names = ipaddr.isValid(rawIp) ? await dns.resolvePtr(reverseName(rawIp)) : [];
    } catch (err) {
      return PERMANENT.has((err as NodeJS.ErrnoException).code ?? '') ? { ptr: 'NXDOMAIN', xclientName: '[UNAVAILABLE]' } : { ptr: 'DNSERROR', xclientName: '[TEMPUNAVAIL]' };
    }
    const ptr = (names[0] ?? 'NXDOMAIN').replace(/\.$/, '');
    let temporary = false;
    for (const name of names.slice(0, MAX_NAMES)) {
      try {
        if ((await addressesOf(name, ipv6)).some(same)) return { ptr, xclientName: name.replace(/\.$/, '') };
      } catch {
        temporary = true;
      }
    }
    return { ptr, xclientName: temporary ? '[TEMPUNAVAIL]' : '[UNAVAILABLE]' };
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<ClientName>((resolve) => {
    timer = setTimeout(() => resolve({ ptr: 'DNSERROR', xclientName: '[TEMPUNAVAIL]' }), timeoutMs);
  });
  try {
    return await Promise.race([lookup(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export type ClientNameLookup = (rawIp: string, timeoutMs: number) => Promise<ClientName>;

export interface ClientNameCacheOptions {
  ttlMs: number;
  maxEntries: number;
  now?: () => number;
}

function isTemporary(name: ClientName): boolean {
  return name.ptr === 'DNSERROR' || name.xclientName === '[TEMPUNAVAIL]';
}

/**
 * lookupClientName with a small cache per client address, the job a local caching resolver would do:
 * Haraka asks on every connection and senders come back in bursts, so a burst from one address costs one
 * PTR and one A/AAAA query, and concurrent connections from it share the lookup in flight. Temporary
 * failures are not kept; the oldest entry goes when the cache is full.
 */
export function cachedClientNameLookup(options: ClientNameCacheOptions, lookup: ClientNameLookup = lookupClientName): ClientNameLookup {
  const now = options.now ?? Date.now;
  const entries = new Map<string, { expires: number; name: Promise<ClientName> }>();
  const forget = (key: string, name: Promise<ClientName>) => {
    if (entries.get(key)?.name === name) entries.delete(key);
  };
  return (rawIp, timeoutMs) => {
    const key = normalise(rawIp);
    const hit = entries.get(key);
    if (hit && hit.expires > now()) return hit.name;
    entries.delete(key);
    const name = lookup(rawIp, timeoutMs);
    entries.set(key, { expires: now() + options.ttlMs, name });
    if (entries.size > options.maxEntries) entries.delete(entries.keys().next().value as string);
    name.then(
      (result) => {
        if (isTemporary(result)) forget(key, name);
      },
      () => forget(key, name),
    );
    return name;
  };
}
