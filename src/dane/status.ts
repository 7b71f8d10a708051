// What one answer of a validating resolver says (pure). The AD bit marks an answer DNSSEC-secure; an
// answer without it is insecure (unsigned, or signed without a chain of trust). SERVFAIL from a
// validating resolver means bogus or indeterminate: RFC 7672 §2.1.1 treats both as a failed lookup,
// never as "no records".
import type dnsPacket from 'dns-packet';

export type Security = 'secure' | 'insecure';

export type DnssecAnswer =
  | { kind: 'records'; security: Security; records: dnsPacket.Answer[] }
  | { kind: 'nodata' | 'nxdomain'; security: Security }
  | { kind: 'failed'; why: string };

/** dns-packet decodes the rcode (as text) but does not declare it. */
type Response = dnsPacket.DecodedPacket & { rcode?: string };

export function answerStatus(response: Response, name: string, type: string): DnssecAnswer {
  const security: Security = response.flag_ad ? 'secure' : 'insecure';
  switch (response.rcode) {
    case 'NOERROR': {
      const records = (response.answers ?? []).filter((answer) => answer.type === type);
      return records.length ? { kind: 'records', security, records } : { kind: 'nodata', security };
    }
    case 'NXDOMAIN':
      return { kind: 'nxdomain', security };
    case 'SERVFAIL':
      return { kind: 'failed', why: `${type} ${name}: SERVFAIL (DNSSEC-bogus or unreachable)` };
    default:
      return { kind: 'failed', why: `${type} ${name}: ${response.rcode ?? 'no rcode'}` };
  }
}
