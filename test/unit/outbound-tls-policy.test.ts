// haraka-out's TLS level per MX connection (src/plugins/outbound/tls-policy.ts), as a table: each row is
// what routing found, the MX and what the message remembers, and the level and reason that must come out.
import { describe, expect, it } from 'vitest';
import type { TlsaRecord } from '../../src/dane/tlsa';
import { requiresTls, tlsLevel, type TlsLevel, type TlsPolicyInput, type UsableHostTls } from '../../src/plugins/outbound/tls-policy';

const RECORD: TlsaRecord = { usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(32, 7) };
const DANE: UsableHostTls = { level: 'dane', records: [RECORD] };
const ENCRYPT: UsableHostTls = { level: 'encrypt', records: [{ ...RECORD, usage: 1 }] };
const NO_TLSA: UsableHostTls = { level: 'may', why: 'mx.example.org publishes no TLSA records' };
const FAILED_AT = Date.parse('2025-03-01T10:00:00.000Z');

interface Row {
  what: string;
  to?: 'backend' | 'mx';
  config?: boolean;
  report?: boolean;
  dane?: UsableHostTls;
  enforce?: boolean;
  failedAt?: number;
  level: TlsLevel;
  reason: string;
}

type Given = Omit<Row, 'what' | 'level' | 'reason'>;

function input(row: Given): TlsPolicyInput {
  return {
    route: { domain: 'example.org', to: row.to ?? 'mx', configForcesTls: row.config ?? false, ...(row.report ? { tlsReport: true } : {}) },
    mx: { name: 'mx.example.org', address: '192.0.2.25', ...(row.dane ? { dane: row.dane } : {}), mtaStsEnforce: row.enforce ?? false },
    remembered: row.failedAt === undefined ? {} : { tlsFailedAt: row.failedAt },
  };
}

const DANE_REASON = 'mx.example.org publishes DNSSEC-signed TLSA records: TLS required, and the certificate must match one of them (RFC 7672)';
const ENCRYPT_REASON = 'the DNSSEC-signed TLSA records of mx.example.org are all unusable for SMTP: TLS required, without authentication (RFC 7672 §2.2)';
const STS_REASON = 'the MTA-STS policy of example.org is enforce: TLS required, with a certificate valid for mx.example.org (RFC 8461)';
const CONFIG_REASON = "Haraka's force_tls_hosts names mx.example.org or example.org: TLS required, with a certificate valid for mx.example.org";
const ONCE_REASON = 'STARTTLS with 192.0.2.25 failed for this message at 2025-03-01T10:00:00.000Z: one try without TLS (opportunistic TLS)';

const REPORT_REASON = 'a TLS report, delivered despite TLS failures (RFC 8460 §3): opportunistic TLS, whatever the policy of the domain';

const rows: Row[] = [
  // A TLS report must arrive even where the TLS it may be reporting on fails (RFC 8460 §3).
  { what: 'a TLS report, usable TLSA records', report: true, dane: DANE, level: 'may', reason: REPORT_REASON },
  { what: 'a TLS report, MTA-STS enforce, listed in force_tls_hosts', report: true, enforce: true, config: true, level: 'may', reason: REPORT_REASON },
  {
    what: 'a TLS report, a remembered STARTTLS failure',
    report: true,
    enforce: true,
    failedAt: FAILED_AT,
    level: 'plaintext-once',
    reason: 'a TLS report, delivered despite TLS failures (RFC 8460 §3): STARTTLS with 192.0.2.25 failed, one try without TLS',
  },
  // DANE authenticates the host: nothing else matters.
  { what: 'usable TLSA records', dane: DANE, level: 'dane', reason: DANE_REASON },
  { what: 'usable TLSA records, MTA-STS enforce', dane: DANE, enforce: true, level: 'dane', reason: DANE_REASON },
  { what: 'usable TLSA records, listed in force_tls_hosts', dane: DANE, config: true, level: 'dane', reason: DANE_REASON },
  { what: 'usable TLSA records, a remembered STARTTLS failure', dane: DANE, failedAt: FAILED_AT, level: 'dane', reason: DANE_REASON },
  // TLSA records, none usable: TLS without authentication, unless MTA-STS governs the host.
  { what: 'unusable TLSA records', dane: ENCRYPT, level: 'encrypt', reason: ENCRYPT_REASON },
  { what: 'unusable TLSA records, listed in force_tls_hosts', dane: ENCRYPT, config: true, level: 'encrypt', reason: ENCRYPT_REASON },
  { what: 'unusable TLSA records, a remembered STARTTLS failure', dane: ENCRYPT, failedAt: FAILED_AT, level: 'encrypt', reason: ENCRYPT_REASON },
  {
    what: 'unusable TLSA records, MTA-STS enforce',
    dane: ENCRYPT,
    enforce: true,
    level: 'verify',
    reason: `${STS_REASON}; DANE does not authenticate it: its TLSA records are all unusable for SMTP`,
  },
  // MTA-STS enforce.
  { what: 'MTA-STS enforce', enforce: true, level: 'verify', reason: STS_REASON },
  { what: 'MTA-STS enforce, a remembered STARTTLS failure', enforce: true, failedAt: FAILED_AT, level: 'verify', reason: STS_REASON },
  {
    what: 'a DANE domain host without TLSA records, MTA-STS enforce',
    dane: NO_TLSA,
    enforce: true,
    level: 'verify',
    reason: `${STS_REASON}; DANE does not apply to it: mx.example.org publishes no TLSA records`,
  },
  // Haraka's own list.
  { what: 'listed in force_tls_hosts', config: true, level: 'verify', reason: CONFIG_REASON },
  { what: 'listed in force_tls_hosts, a remembered STARTTLS failure', config: true, failedAt: FAILED_AT, level: 'verify', reason: CONFIG_REASON },
  { what: 'the backend, listed in force_tls_hosts', to: 'backend', config: true, level: 'verify', reason: CONFIG_REASON },
  // Opportunistic TLS, and its one try without TLS.
  { what: 'a remembered STARTTLS failure', failedAt: FAILED_AT, level: 'plaintext-once', reason: ONCE_REASON },
  { what: 'a DANE domain host without TLSA records, a remembered STARTTLS failure', dane: NO_TLSA, failedAt: FAILED_AT, level: 'plaintext-once', reason: ONCE_REASON },
  { what: 'the backend, a remembered STARTTLS failure', to: 'backend', failedAt: FAILED_AT, level: 'plaintext-once', reason: ONCE_REASON },
  { what: 'nothing known', level: 'may', reason: 'opportunistic TLS: no MTA-STS enforce policy, no DANE' },
  {
    what: 'a DANE domain host without TLSA records',
    dane: NO_TLSA,
    level: 'may',
    reason: 'opportunistic TLS: no MTA-STS enforce policy; DANE does not apply to it: mx.example.org publishes no TLSA records',
  },
  { what: 'the backend', to: 'backend', level: 'may', reason: 'example.org is one of our domains, relayed to the backend: opportunistic TLS' },
];

describe('the TLS level of an MX connection', () => {
  it.each(rows)('$what: $level', (row) => {
    const decision = tlsLevel(input(row));
    expect(decision.level).toBe(row.level);
    expect(decision.reason).toBe(row.reason);
  });

  it('hands DANE the records to match, MTA-STS and the list who asked, and the try without TLS when it failed', () => {
    expect(tlsLevel(input({ dane: DANE }))).toMatchObject({ records: [RECORD] });
    expect(tlsLevel(input({ enforce: true, config: true }))).toMatchObject({ by: 'mta-sts' });
    expect(tlsLevel(input({ config: true }))).toMatchObject({ by: 'force_tls_hosts' });
    expect(tlsLevel(input({ failedAt: FAILED_AT }))).toMatchObject({ tlsFailedAt: FAILED_AT });
  });

  it('requires TLS at dane, encrypt and verify only', () => {
    const levels: TlsLevel[] = ['dane', 'encrypt', 'verify', 'may', 'plaintext-once'];
    expect(levels.filter(requiresTls)).toEqual(['dane', 'encrypt', 'verify']);
  });
});
