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
      names = await dns.reverse(ipaddr.isValid(rawIp) ? ipaddr.process(rawIp).toString() : rawIp);
    } catch (err) {
      return PERMANENT.has((err as NodeJS.ErrnoException).code ?? '')
        ? { ptr: 'NXDOMAIN', xclientName: '[UNAVAILABLE]' }
        : { ptr: 'DNSERROR', xclientName: '[TEMPUNAVAIL]' };
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
