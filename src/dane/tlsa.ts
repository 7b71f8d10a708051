// TLSA records and the certificate an MX presents (pure), after RFC 7672 §3 (DANE for SMTP):
// - Usable records are DANE-TA(2) and DANE-EE(3), selector Cert(0) or SPKI(1), matching Full(0),
//   SHA2-256(1) or SHA2-512(2). PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (§3.1.3).
// - DANE-EE: the leaf certificate (or its key) must match; its names and dates are ignored (§3.1.1).
// - DANE-TA: a certificate on a signature-verified path of CA certificates from the leaf must match, and
//   the leaf must be valid now and name the MX host (§3.1.2, §3.2.3). The path must be in the chain the
//   server sends.
// The matching itself is zone-eu's mx-connect (verifyCertAgainstTlsa), which builds that verified path.
import type { X509Certificate } from 'node:crypto';

export interface TlsaRecord {
  usage: number;
  selector: number;
  matchingType: number;
  data: Buffer;
}

const DATA_LENGTH: Record<number, number | undefined> = { 1: 32, 2: 64 };

export function isUsable(record: TlsaRecord): boolean {
  if (record.usage !== 2 && record.usage !== 3) return false;
  if (record.selector !== 0 && record.selector !== 1) return false;
  if (![0, 1, 2].includes(record.matchingType)) return false;
  const length = DATA_LENGTH[record.matchingType];
  return length === undefined ? record.data.length > 0 : record.data.length === length;
}

/** `3 1 1 ab12…` as a zone file writes it. */
export function describeRecord(record: TlsaRecord): string {
  const hex = record.data.toString('hex');
  return `${record.usage} ${record.selector} ${record.matchingType} ${hex.length > 16 ? `${hex.slice(0, 16)}…` : hex}`;
}

export type TlsaVerdict = { ok: true; matched: string } | { ok: false; why: string };

interface MxConnectDane {
  verifyCertAgainstTlsa(
    cert: X509Certificate,
    records: { usage: number; selector: number; matchingType: number; data: Buffer }[],
    chain?: X509Certificate[],
  ): { valid: boolean; matchedRecord: { usage: number; selector: number; matchingType: number; data: Buffer } | null; error: string | null };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const dane = require('mx-connect/lib/dane') as MxConnectDane;

/**
 * Does the chain the MX sent (leaf first) match one of the usable records? `mxName` is the name the
 * TLSA records were found under (also the SNI); `now` checks the leaf's dates under DANE-TA.
 */
export function verifyAgainstTlsa(chain: X509Certificate[], records: TlsaRecord[], mxName: string, now: Date): TlsaVerdict {
  const [leaf, ...issuers] = chain;
  if (!leaf) return { ok: false, why: 'the server sent no certificate' };
  const usable = records.filter(isUsable);
  const endEntity = usable.filter((record) => record.usage === 3);
  const trustAnchors = usable.filter((record) => record.usage === 2);
  const problems: string[] = [];
  if (endEntity.length) {
    const result = dane.verifyCertAgainstTlsa(leaf, endEntity);
    if (result.valid && result.matchedRecord) return { ok: true, matched: describeRecord(result.matchedRecord) };
    problems.push('the certificate matches no DANE-EE record');
  }
  if (trustAnchors.length) {
    // Only CA certificates valid now may stand above the leaf: a CA's ordinary leaf certificate has the key
    // to sign, but no authority to issue (mx-connect checks signatures, not basicConstraints or dates).
    const authorities = issuers.filter((cert) => cert.ca && now >= new Date(cert.validFrom) && now <= new Date(cert.validTo));
    const result = dane.verifyCertAgainstTlsa(leaf, trustAnchors, authorities);
    if (!result.valid || !result.matchedRecord) {
      problems.push('no certificate on a verified path from the server certificate matches a DANE-TA record');
    } else if (!leaf.checkHost(mxName, { subject: 'default', partialWildcards: false })) {
      problems.push(`the certificate chains to a DANE-TA record but does not name ${mxName}`);
    } else if (now < new Date(leaf.validFrom) || now > new Date(leaf.validTo)) {
      problems.push(`the certificate chains to a DANE-TA record but is not valid now (${leaf.validFrom} to ${leaf.validTo})`);
    } else {
      return { ok: true, matched: describeRecord(result.matchedRecord) };
    }
  }
  if (!problems.length) problems.push('no usable TLSA record');
  return { ok: false, why: problems.join('; ') };
}
