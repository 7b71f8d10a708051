// DKIM for emailed TLS reports: RFC 8460 §5.3 has reports sent by email DKIM-signed by the submitter, and
// report receivers ignore the ones that are not. The signature is made over the finished message with
// mailauth (relaxed/relaxed, rsa-sha256) at the From address's domain, so that it aligns for DMARC; the
// public half goes in DNS as `<selector>._domainkey.<domain>`, which `mailproxy tls-report key` and
// `mailproxy notes` print.
import { createPublicKey } from 'node:crypto';
import { dkimSign } from 'mailauth/lib/dkim/sign';

export interface DkimKey {
  /** The signing domain (d=): the From address's domain. */
  domain: string;
  /** The selector (s=). */
  selector: string;
  /** The private key, PEM. */
  privateKey: string;
}

/** Where the public key is published. */
export function dkimRecordName(selector: string, domain: string): string {
  return `${selector}._domainkey.${domain}`;
}

/** The TXT record's text for a private key (RFC 6376 §3.6.1): the public key's SubjectPublicKeyInfo, base64. */
export function dkimRecordText(privateKeyPem: string): string {
  const spki = createPublicKey(privateKeyPem).export({ type: 'spki', format: 'der' });
  return `v=DKIM1; k=rsa; p=${spki.toString('base64')}`;
}

/** The record as a zone-file line: the text in quoted strings of at most 255 characters (RFC 1035 §3.3.14),
 * which a 2048-bit key needs. */
export function dkimZoneLine(key: DkimKey): string {
  const strings = dkimRecordText(key.privateKey).match(/.{1,255}/g) ?? [];
  return `${dkimRecordName(key.selector, key.domain)}.  TXT  ${strings.map((part) => `"${part}"`).join(' ')}`;
}

/** The domain of an address (the text after its last @). */
export function addressDomain(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** The headers a report's signature covers: the ones report receivers read, and the MIME structure. */
const SIGNED_HEADERS = ['From', 'To', 'Subject', 'Date', 'Message-ID', 'MIME-Version', 'Content-Type', 'TLS-Report-Domain', 'TLS-Report-Submitter'];

/** The message with its DKIM-Signature header in front. A key mailauth cannot sign with throws. */
export async function signReportMessage(message: Buffer, key: DkimKey): Promise<Buffer> {
  const signature = { signingDomain: key.domain, selector: key.selector, privateKey: key.privateKey };
  // mailauth 7.1 signs only what is listed in signatureData (its top-level signingDomain, selector and
  // privateKey, which its types also name, are ignored).
  const result = await dkimSign(message, {
    ...signature,
    signatureData: [signature],
    canonicalization: 'relaxed/relaxed',
    algorithm: 'rsa-sha256',
    headerList: SIGNED_HEADERS,
  });
  if (result.errors.length > 0 || !result.signatures) {
    throw new Error(`DKIM signing at ${key.domain} failed: ${result.errors.map((error) => error.err.message).join('; ') || 'no signature made'}`);
  }
  return Buffer.concat([Buffer.from(result.signatures, 'latin1'), message]);
}
