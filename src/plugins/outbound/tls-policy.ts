// haraka-out's TLS level for one connection to one MX, decided here and nowhere else. Pure: the route, the
// MX and what this message remembers in; the level and a sentence saying why out. The Haraka side
// (src/plugins/haraka/patches/outbound-tls.ts) asks before each connection and does what the level says.
//
// The levels are Postfix's (smtp_tls_security_level; smtp_tls_policy.c computes one per next hop and MX
// host), as far as haraka-out has them:
//   dane            STARTTLS required; the certificate must match one of the MX's DNSSEC-signed TLSA
//                   records (RFC 7672; src/dane/tlsa.ts does the matching).
//   encrypt         STARTTLS required, without authentication: the MX publishes DNSSEC-signed TLSA
//                   records and none is usable for SMTP (RFC 7672 §2.2; Postfix's dane_init turns `dane`
//                   into `encrypt` the same way).
//   verify          STARTTLS required with a certificate that chains to a trusted CA and names the MX:
//                   the recipient domain's MTA-STS policy is `enforce` (RFC 8461 §4.2; routing has kept
//                   only the MX hosts it names), or Haraka's tls.ini force_tls_hosts list names the MX.
//   may             opportunistic: STARTTLS when the MX offers it, plaintext otherwise.
//   plaintext-once  `may`, after STARTTLS with this address failed for this message: one try without TLS
//                   (zone-mta's shouldRetryWithoutTls in lib/tls-retry.js: only where TLS is not required).
// Postfix's `none` is Haraka's tls.ini no_tls_hosts, which Haraka checks before it asks for a level, and
// `secure` is what `verify` is under MTA-STS: the MX name is trusted because the policy names it.
//
// A TLS report (RFC 8460 §3) comes first of all: it must arrive even where TLS to its domain fails, which is
// what it may be reporting, so it gets `may` whatever DANE or MTA-STS say (routing skips them too).
// Otherwise strongest first, as postfix-tlspol orders them: DANE for the hosts it authenticates; the MTA-STS
// policy for the other hosts of the domain (RFC 8461 §2), `encrypt` ones included; Haraka's list; then a
// remembered failure; then opportunistic TLS.
import type { HostTls } from '../../dane/route';
import type { TlsaRecord } from '../../dane/tlsa';

export type TlsLevel = 'dane' | 'encrypt' | 'verify' | 'may' | 'plaintext-once';

/** DANE's level for an MX host that routing kept (a host whose TLSA lookup failed is never tried). */
export type UsableHostTls = Exclude<HostTls, { level: 'unusable' }>;

/** Which rule decided the TLS of a delivery to a domain: the routing log line `mailproxy queue list` shows. */
export type TlsPolicy = 'dane' | 'mta-sts' | 'opportunistic';

export interface TlsPolicyInput {
  route: {
    /** The recipient domain. */
    domain: string;
    /** `backend`: one of our own domains, relayed to the backend over WireGuard; `mx`: by the domain's MX. */
    to: 'backend' | 'mx';
    /** Haraka's force_tls_hosts list (tls.ini [outbound]) names this MX or the domain. */
    configForcesTls: boolean;
    /** The message is a TLS report, which RFC 8460 §3 says is delivered despite any TLS failure. */
    tlsReport?: boolean;
  };
  mx: {
    /** The MX name (the SNI), or the address when there is no name. */
    name: string;
    address: string;
    /** DANE's level for this MX name, when the domain is a DANE domain (src/dane/route.ts). */
    dane?: UsableHostTls;
    /** The domain's MTA-STS policy is `enforce` (routing used only the MX hosts it names). */
    mtaStsEnforce: boolean;
  };
  remembered: {
    /** When STARTTLS with this address failed for this message, while its one try without TLS is owed. */
    tlsFailedAt?: number;
  };
}

export type TlsDecision =
  | { level: 'dane'; reason: string; records: TlsaRecord[] }
  | { level: 'encrypt'; reason: string }
  | { level: 'verify'; reason: string; by: 'mta-sts' | 'force_tls_hosts' }
  | { level: 'may'; reason: string }
  | { level: 'plaintext-once'; reason: string; tlsFailedAt: number };

/** The levels under which a connection goes on only over TLS (Haraka's force-TLS path). */
export function requiresTls(level: TlsLevel): boolean {
  return level === 'dane' || level === 'encrypt' || level === 'verify';
}

/** Why DANE does not authenticate a host of a DANE domain, for the reason of the level it gets instead. */
function withoutDane(dane: UsableHostTls | undefined): string {
  if (!dane) return '';
  return dane.level === 'may' ? `; DANE does not apply to it: ${dane.why}` : '; DANE does not authenticate it: its TLSA records are all unusable for SMTP';
}

export function tlsLevel({ route, mx, remembered }: TlsPolicyInput): TlsDecision {
  const { dane } = mx;
  if (route.tlsReport) {
    if (remembered.tlsFailedAt !== undefined) {
      return {
        level: 'plaintext-once',
        tlsFailedAt: remembered.tlsFailedAt,
        reason: `a TLS report, delivered despite TLS failures (RFC 8460 §3): STARTTLS with ${mx.address} failed, one try without TLS`,
      };
    }
    return { level: 'may', reason: 'a TLS report, delivered despite TLS failures (RFC 8460 §3): opportunistic TLS, whatever the policy of the domain' };
  }
  if (dane?.level === 'dane') {
    return { level: 'dane', records: dane.records, reason: `${mx.name} publishes DNSSEC-signed TLSA records: TLS required, and the certificate must match one of them (RFC 7672)` };
  }
  if (mx.mtaStsEnforce) {
    return {
      level: 'verify',
      by: 'mta-sts',
      reason: `the MTA-STS policy of ${route.domain} is enforce: TLS required, with a certificate valid for ${mx.name} (RFC 8461)${withoutDane(dane)}`,
    };
  }
  if (dane?.level === 'encrypt') {
    return { level: 'encrypt', reason: `the DNSSEC-signed TLSA records of ${mx.name} are all unusable for SMTP: TLS required, without authentication (RFC 7672 §2.2)` };
  }
  if (route.configForcesTls) {
    return {
      level: 'verify',
      by: 'force_tls_hosts',
      reason: `Haraka's force_tls_hosts names ${mx.name} or ${route.domain}: TLS required, with a certificate valid for ${mx.name}`,
    };
  }
  if (remembered.tlsFailedAt !== undefined) {
    return {
      level: 'plaintext-once',
      tlsFailedAt: remembered.tlsFailedAt,
      reason: `STARTTLS with ${mx.address} failed for this message at ${new Date(remembered.tlsFailedAt).toISOString()}: one try without TLS (opportunistic TLS)`,
    };
  }
  if (route.to === 'backend') return { level: 'may', reason: `${route.domain} is one of our domains, relayed to the backend: opportunistic TLS` };
  return { level: 'may', reason: `opportunistic TLS: no MTA-STS enforce policy${dane ? withoutDane(dane) : ', no DANE'}` };
}
