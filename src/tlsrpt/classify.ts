// Which RFC 8460 result type a failed TLS session gets (§4.3), from what Node says about the handshake.
// Pure. Node names certificate problems by OpenSSL's verify codes (X509_V_ERR_* without the prefix) and
// its own host name check by ERR_TLS_CERT_ALTNAME_INVALID.
import type { ResultType } from './types';

const EXPIRED = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
const NOT_TRUSTED = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_SIGNATURE_FAILURE',
]);

/** The result type of a certificate the MX presented that did not verify, by Node's error code. */
export function certificateResult(code: string | undefined): ResultType {
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') return 'certificate-host-mismatch';
  if (code && EXPIRED.has(code)) return 'certificate-expired';
  if (code && NOT_TRUSTED.has(code)) return 'certificate-not-trusted';
  return 'validation-failure';
}

/** The result type of an MTA-STS policy that could not be had (RFC 8460 §4.3.2.2), by the resolver's error. */
export function stsPolicyResult(error: string): ResultType | null {
  if (/^invalid MTA-STS policy/.test(error)) return 'sts-policy-invalid';
  if (!/^MTA-STS policy fetch/.test(error)) return null;
  if (/certificate|self[- ]signed|altname|CERT_|unable to (get|verify)/i.test(error)) return 'sts-webpki-invalid';
  return 'sts-policy-fetch-error';
}
