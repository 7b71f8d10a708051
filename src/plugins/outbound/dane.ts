// DANE's verdict on the certificate an MX sent in its TLS handshake, at the level tls-policy.ts gave the
// connection: `dane` must match one of the MX's DNSSEC-signed TLSA records (src/dane/tlsa.ts: mx-connect's
// rules, usages 0/1 dropped, for DANE-TA the leaf's name and dates checked); `encrypt` (TLSA records, none
// usable) is accepted without authentication (RFC 7672 §2.2). Where the verdict is asked for, inside
// Haraka's STARTTLS, is ../haraka/patches/outbound-tls.ts.
import { X509Certificate } from 'node:crypto';
import type tls from 'node:tls';
import { verifyAgainstTlsa } from '../../dane/tlsa';
import type { TlsDecision } from './tls-policy';

export type DaneVerdict = { ok: true; note: string } | { ok: false; why: string };

/** The chain the server sent, leaf first, as Node assembled it (each certificate once). */
export function peerChain(socket: tls.TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  let cert: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (cert?.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(new X509Certificate(cert.raw));
    cert = cert.issuerCertificate;
  }
  return chain;
}

/** Whether the certificate of `socket`, a connection to the MX `mx`, satisfies DANE's level for it. */
export function daneVerdict(socket: tls.TLSSocket, level: Extract<TlsDecision, { level: 'dane' | 'encrypt' }>, mx: string): DaneVerdict {
  if (level.level === 'encrypt') return { ok: true, note: 'TLS without authentication (its TLSA records are all unusable for SMTP: RFC 7672 §2.2)' };
  try {
    const verdict = verifyAgainstTlsa(peerChain(socket), level.records, mx, new Date());
    return verdict.ok ? { ok: true, note: `certificate matches TLSA ${verdict.matched}` } : verdict;
  } catch (error) {
    return { ok: false, why: `the certificate could not be read: ${(error as Error).message}` };
  }
}
