// Which TLS a delivery to a domain owes each of its MX hosts under DANE (RFC 7672 §2.2), from the answers
// of a DNSSEC-validating resolver. The queries go through the resolver it is given; the rules are here:
// - The MX RRset must be secure, else DANE does not apply (Postfix's reading of §2.2.1): the domain
//   falls back to MTA-STS or opportunistic TLS. A failed (bogus) MX lookup defers the message.
// - Per MX host: secure addresses, then a secure TLSA RRset at `_<port>._tcp.<mx>`:
//     usable records          -> `dane`: STARTTLS required, the certificate must match a record;
//     records, none usable    -> `encrypt`: STARTTLS required, no authentication (§2.2);
//     no records (secure)     -> `may`: opportunistic TLS;
//     insecure addresses/TLSA -> `may`;
//     failed (bogus) TLSA     -> the host is unusable: skipped, and never reached in plaintext.
// - A domain with at least one host with TLSA records, or whose TLSA lookup failed, is a DANE domain:
//   its MTA-STS policy governs only the hosts DANE does not authenticate (the plugin's routing).
//   A DANE domain with no usable host left defers.
import net from 'node:net';
import type dnsPacket from 'dns-packet';
import type { DnssecResolver } from './resolver';
import type { DnssecAnswer } from './status';
import { isUsable, type TlsaRecord } from './tlsa';

export type HostTls =
  | { level: 'dane'; records: TlsaRecord[] }
  | { level: 'encrypt'; records: TlsaRecord[] }
  | { level: 'may'; why: string }
  /** signalsDane: its TLSA answer had records or failed, so the domain is a DANE domain. */
  | { level: 'unusable'; why: string; signalsDane: boolean };

export interface MxHost {
  name: string;
  priority: number;
  addresses: string[];
  tls: HostTls;
}

export type DaneRoute =
  /** DANE applies: the hosts to try, best first, each with its TLS level (unusable ones already left out). */
  | { kind: 'dane'; hosts: MxHost[]; skipped: MxHost[] }
  /** DANE does not apply; MTA-STS or opportunistic TLS decide. */
  | { kind: 'insecure'; why: string }
  /** A lookup DANE depends on failed: the message stays queued. */
  | { kind: 'failed'; why: string };

/** More MX hosts than this are not looked at (Postfix's smtp_mx_address_limit is similar in spirit). */
export const MAX_MX_HOSTS = 10;

interface HostAddresses {
  addresses: string[];
  secure: boolean;
  failed?: string;
}

function dataOf(records: dnsPacket.Answer[]): unknown[] {
  return records.map((record) => (record as { data: unknown }).data);
}

async function addressesOf(resolver: DnssecResolver, name: string): Promise<HostAddresses> {
  const answers = await Promise.all([resolver.query(name, 'AAAA'), resolver.query(name, 'A')]);
  const failed = answers.find((answer): answer is Extract<DnssecAnswer, { kind: 'failed' }> => answer.kind === 'failed');
  if (failed) return { addresses: [], secure: false, failed: failed.why };
  const addresses = answers.flatMap((answer) => (answer.kind === 'records' ? (dataOf(answer.records) as string[]) : [])).filter((ip) => net.isIP(ip));
  return { addresses, secure: answers.every((answer) => answer.kind !== 'failed' && answer.security === 'secure') };
}

function tlsaRecordsOf(answer: Extract<DnssecAnswer, { kind: 'records' }>): TlsaRecord[] {
  return (dataOf(answer.records) as dnsPacket.TlsaData[]).map((tlsa) => ({
    usage: tlsa.usage,
    selector: tlsa.selector,
    matchingType: tlsa.matchingType,
    data: Buffer.from(tlsa.certificate),
  }));
}

/** Where an MX host publishes its TLSA records (RFC 7672 §2.2.3; the port is 25 except on test rigs). */
const tlsaName = (host: string, port: number) => `_${port}._tcp.${host}`;

async function hostTls(resolver: DnssecResolver, name: string, addresses: HostAddresses, port: number): Promise<HostTls> {
  if (!addresses.secure) return { level: 'may', why: `the addresses of ${name} are not DNSSEC-signed` };
  const tlsa = await resolver.query(tlsaName(name, port), 'TLSA');
  if (tlsa.kind === 'failed') return { level: 'unusable', why: `TLSA lookup failed: ${tlsa.why}`, signalsDane: true };
  if (tlsa.security !== 'secure') return { level: 'may', why: `the TLSA answer for ${name} is not DNSSEC-signed` };
  if (tlsa.kind !== 'records') return { level: 'may', why: `${name} publishes no TLSA records` };
  const records = tlsaRecordsOf(tlsa);
  return records.some(isUsable) ? { level: 'dane', records: records.filter(isUsable) } : { level: 'encrypt', records };
}

function mxTargets(answer: Extract<DnssecAnswer, { kind: 'records' }>): { name: string; priority: number }[] {
  return (dataOf(answer.records) as { exchange: string; preference: number }[])
    .map((mx) => ({ name: mx.exchange.replace(/\.$/, '').toLowerCase(), priority: mx.preference }))
    .sort((a, b) => a.priority - b.priority)
    .slice(0, MAX_MX_HOSTS);
}

export async function daneRoute(resolver: DnssecResolver, domain: string, port: number): Promise<DaneRoute> {
  const mx = await resolver.query(domain, 'MX');
  if (mx.kind === 'failed') return { kind: 'failed', why: `MX lookup failed: ${mx.why}` };
  if (mx.kind === 'nxdomain') return { kind: 'insecure', why: `${domain} does not exist` };
  if (mx.security !== 'secure') return { kind: 'insecure', why: `the MX records of ${domain} are not DNSSEC-signed` };
  // No MX records: the domain itself is the mail host (RFC 5321 §5.1).
  const targets = mx.kind === 'records' ? mxTargets(mx) : [{ name: domain.toLowerCase(), priority: 0 }];
  if (targets.length === 1 && (targets[0]?.name === '' || targets[0]?.name === '.')) return { kind: 'insecure', why: `${domain} has a null MX` };
  const hosts = await Promise.all(
    targets.map(async (target): Promise<MxHost> => {
      const addresses = await addressesOf(resolver, target.name);
      if (!addresses.failed) return { ...target, addresses: addresses.addresses, tls: await hostTls(resolver, target.name, addresses, port) };
      // The host is unusable, but its TLSA answer still says whether the domain is a DANE domain: a bogus
      // address answer must not turn a DANE domain into one delivered to opportunistically by other routes.
      const tlsa = await resolver.query(tlsaName(target.name, port), 'TLSA');
      const signalsDane = tlsa.kind === 'failed' || (tlsa.kind === 'records' && tlsa.security === 'secure');
      return { ...target, addresses: [], tls: { level: 'unusable', why: `address lookup failed: ${addresses.failed}`, signalsDane } };
    }),
  );
  // A failed address lookup alone is no sign of DANE (only TLSA answers are), so that a flaky lookup of an
  // unsigned host never takes a domain out of its MTA-STS policy.
  const dane = hosts.some((host) => host.tls.level === 'dane' || host.tls.level === 'encrypt' || (host.tls.level === 'unusable' && host.tls.signalsDane));
  if (!dane) return { kind: 'insecure', why: `no MX host of ${domain} has DNSSEC-signed TLSA records` };
  const usable = hosts.filter((host) => host.tls.level !== 'unusable' && host.addresses.length > 0);
  const skipped = hosts.filter((host) => !usable.includes(host));
  if (!usable.length) {
    return { kind: 'failed', why: skipped.map((host) => `${host.name}: ${host.tls.level === 'unusable' ? host.tls.why : 'no addresses'}`).join('; ') };
  }
  return { kind: 'dane', hosts: usable, skipped };
}

/** One line for the log and `mailproxy dane check`: each host and its level. */
export function describeRoute(route: Extract<DaneRoute, { kind: 'dane' }>): string {
  const hosts = route.hosts.map((host) => `${host.name} ${host.tls.level}`);
  const skipped = route.skipped.map((host) => `${host.name} skipped (${host.tls.level === 'unusable' ? host.tls.why : 'no addresses'})`);
  return [...hosts, ...skipped].join(', ');
}
