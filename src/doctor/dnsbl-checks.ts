// MXToolbox's "Blacklist Check" for `mailproxy doctor` (pure: no I/O): the zones asked, the query names,
// and the verdict on what a DNSBL answered for the public IPv4.
import type { Finding } from '../report/findings';
import { describeLookup, type Lookup } from '../selftest/dns';
import { lower } from './checks';

export interface DnsblZone {
  zone: string;
  /** The list's name, for people. */
  name: string;
  /** Where to look up a listing and ask for removal. */
  delist: string;
}

/** The usual lists (the issue's: Spamhaus ZEN, Barracuda, SpamCop, UCEPROTECT level 1); --dnsbl replaces them. */
export const DEFAULT_DNSBL_ZONES: DnsblZone[] = [
  { zone: 'zen.spamhaus.org', name: 'Spamhaus ZEN', delist: 'https://check.spamhaus.org/' },
  { zone: 'b.barracudacentral.org', name: 'Barracuda', delist: 'https://www.barracudacentral.org/rbl/removal-request' },
  { zone: 'bl.spamcop.net', name: 'SpamCop', delist: 'https://www.spamcop.net/bl.shtml' },
  { zone: 'dnsbl-1.uceprotect.net', name: 'UCEPROTECT level 1', delist: 'https://www.uceprotect.net/en/rblcheck.php' },
];

/** `ZONE` or `ZONE=DELISTING-URL` (--dnsbl); a known zone keeps its name and page. Null when malformed. */
export function parseDnsblZone(text: string): DnsblZone | null {
  const [zone = '', ...rest] = text.split('=');
  const url = rest.join('=');
  const name = lower(zone.trim());
  if (!/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/.test(name)) return null;
  if (url && !/^https?:\/\/\S+$/.test(url)) return null;
  const known = DEFAULT_DNSBL_ZONES.find((entry) => entry.zone === name);
  return { zone: name, name: known?.name ?? name, delist: url || known?.delist || `the web site of ${name}` };
}

/** The query name of an IPv4 address in a DNSBL zone: octets reversed (RFC 5782 §2.1). */
export function dnsblQueryName(ip: string, zone: string): string {
  return `${ip.split('.').reverse().join('.')}.${zone}`;
}

export interface DnsblFacts {
  ip: string;
  zone: DnsblZone;
  /** A records of the query name: none = not listed. */
  a: Lookup<string>;
  /** TXT of the query name (the list's reason), asked when listed. */
  txt: Lookup<string> | null;
}

/** MXToolbox "Blacklist Check": the public IPv4 is not listed; a listing is a finding with the delisting page. */
export function judgeDnsbl(facts: DnsblFacts): Finding {
  const { ip, zone, a } = facts;
  const where = `${zone.name} (${zone.zone})`;
  if (a.kind === 'error') return { status: 'UNKNOWN', detail: `${where}: ${describeLookup(a)}` };
  if (a.kind === 'none') return { status: 'OK', detail: `${ip} is not listed in ${where}` };
  // Answers in 127.255.255.0/24 are the list refusing the query (Spamhaus: 254 = a public resolver asked,
  // 255 = too many queries), never a listing; anything outside 127/8 is not a DNSBL answer at all.
  const codes = a.values;
  if (codes.some((code) => code.startsWith('127.255.255.'))) {
    return {
      status: 'UNKNOWN',
      detail: `${where} refused the query (${codes.join(', ')}): lists refuse public resolvers; ask through a resolver of your own (unbound on the VPS) with --resolver or dns.servers`,
    };
  }
  if (!codes.every((code) => code.startsWith('127.'))) {
    return { status: 'UNKNOWN', detail: `${where} answered ${codes.join(', ')}, which is not a DNSBL answer: does the resolver rewrite NXDOMAIN?` };
  }
  const reason = facts.txt?.kind === 'records' ? `: ${facts.txt.values.join(' ')}` : '';
  return {
    status: 'CRITICAL',
    detail: `${ip} is LISTED in ${where} (${codes.join(', ')})${reason}: receivers using it refuse mail from the VPS`,
    fix: `find why and ask for removal at ${zone.delist} (fix the cause first: an open relay, a compromised account, a previous tenant of the address)`,
  };
}
