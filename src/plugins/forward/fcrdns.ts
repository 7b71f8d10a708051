// The XCLIENT NAME of a client: its forward-confirmed reverse DNS name (a PTR name whose A/AAAA records
// include the client's address), [UNAVAILABLE] when there is none, [TEMPUNAVAIL] when DNS failed.
import { promises as dns } from 'node:dns';

const PERMANENT = new Set<string>([dns.NOTFOUND, dns.NODATA, dns.BADNAME, dns.FORMERR]);
/** Most PTR names we try to confirm: a hostile zone may return hundreds. */
const MAX_NAMES = 5;

function normalise(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return (mapped ? mapped[1] : ip)!.toLowerCase();
}

async function addressesOf(name: string, ipv6: boolean): Promise<string[]> {
  try {
    return ipv6 ? await dns.resolve6(name) : await dns.resolve4(name);
  } catch (err) {
    if (PERMANENT.has((err as NodeJS.ErrnoException).code ?? '')) return [];
    throw err;
  }
}

function expandIpv6(ip: string): string {
  // Compare IPv6 addresses in one spelling.
  const [head = '', tail = ''] = ip.split('::');
  const headParts = head ? head.split(':') : [];
  const tailParts = tail ? tail.split(':') : [];
  const missing = ip.includes('::') ? 8 - headParts.length - tailParts.length : 0;
  return [...headParts, ...Array(missing).fill('0'), ...tailParts].map((part) => part.padStart(4, '0')).join(':');
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
  const same = (candidate: string) => (ipv6 ? expandIpv6(candidate.toLowerCase()) === expandIpv6(ip) : candidate === ip);
  const lookup = async (): Promise<ClientName> => {
    let names: string[];
    try {
      names = await dns.reverse(ip);
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
