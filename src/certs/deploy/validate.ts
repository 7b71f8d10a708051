// Pure: decides whether a private key, a certificate (leaf first, its chain after) and an optional CA
// chain may be deployed for `hostname`, and what exactly is installed if so. No files, no clock, no
// network: the caller passes the PEM texts, the time and the trust anchors. Every refusal names its reason.
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';

/** A certificate that must not be deployed; the message says why, in words for the operator. */
export class CertificateRefused extends Error {}

export const DAY_MS = 86_400_000;

export interface CertificateInput {
  keyPem: string;
  /** The certificate file: the leaf, then (normally) its intermediates, as acme.sh's fullchain. */
  certPem: string;
  /** `--chain`: the CA certificates to verify against instead of the system roots. */
  chainPem?: string | undefined;
}

export interface ValidationContext {
  hostname: string;
  now: Date;
  /** The trust anchors used when there is no `--chain` (the system roots), as PEM texts; called only then. */
  systemRoots: () => readonly string[];
}

export interface ValidatedCertificate {
  /** SHA-256 fingerprint of the leaf, colon-separated upper-case hex (as openssl and Node print it). */
  fingerprint: string;
  /** The versioned file name stem: the leaf's SHA-256 in lower-case hex, then a hash of the chain served with it. */
  stem: string;
  /** The key as Haraka gets it: unencrypted PKCS#8 PEM. */
  keyPem: string;
  /** What haraka-in serves: the leaf, then the intermediates (re-encoded PEM, one block each). */
  certPem: string;
  subject: string;
  issuer: string;
  names: string[];
  /** The certificate name that covers hostname (a wildcard shows as such). */
  matchedName: string;
  validFrom: Date;
  validTo: Date;
  /** Whole days left; 0 on the last day. */
  daysLeft: number;
  /** The verified path, leaf first, ending at the trust anchor, e.g. `CN=mx.example.com <- CN=R11 <- CN=ISRG Root X1`. */
  chain: string;
  trustedBy: 'system roots' | '--chain';
  /** Intermediates taken from --chain because the certificate file lacked them (appended to certPem). */
  appended: number;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** Every certificate in a PEM text, in order; a block that does not parse is refused with its position. */
export function parseCertificates(text: string, what: string): X509Certificate[] {
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  return blocks.map((block, index) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new CertificateRefused(`${what}: certificate ${index + 1} does not parse: ${(err as Error).message}`);
    }
  });
}

export function dateOf(text: string): Date {
  return new Date(text);
}

/** The DNS names and IP addresses a certificate is for: its subjectAltName, or its CN without one. */
export function certificateNames(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (san) {
    return san
      .split(/,\s*/)
      .map((entry) => entry.replace(/^(DNS|IP Address):/, ''))
      .filter((entry) => entry !== '');
  }
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject);
  return cn?.[1] ? [cn[1]] : [];
}

function oneLine(dn: string): string {
  return dn.split('\n').reverse().join(', ');
}

function shortName(cert: X509Certificate): string {
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject);
  return cn ? `CN=${cn[1]}` : oneLine(cert.subject);
}

function isSelfSigned(cert: X509Certificate): boolean {
  return cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function day(date: Date): string {
  return date.toISOString().slice(0, 10);
}

function checkTimes(cert: X509Certificate, now: Date, what: string): void {
  const from = dateOf(cert.validFrom);
  const to = dateOf(cert.validTo);
  if (now < from) throw new CertificateRefused(`${what} ${shortName(cert)} is not valid yet: valid from ${from.toISOString()} (now ${now.toISOString()})`);
  if (now > to) throw new CertificateRefused(`${what} ${shortName(cert)} expired on ${to.toISOString()} (now ${now.toISOString()})`);
}

function loadKey(keyPem: string): KeyObject {
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(keyPem)) throw new CertificateRefused('the key file holds no PEM private key');
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(keyPem)) {
    throw new CertificateRefused('the private key is encrypted: Haraka cannot ask for a passphrase, deploy the unencrypted key');
  }
  try {
    return createPrivateKey({ key: keyPem, format: 'pem' });
  } catch (err) {
    throw new CertificateRefused(`the private key does not parse: ${(err as Error).message}`);
  }
}

const MAX_DEPTH = 10;

/**
 * The issuer path from `leaf` up to a trust anchor: each step must be signed by the next certificate
 * (name and signature), every certificate on it valid now, every issuer below the anchor a CA.
 */
function verifyChain(
  leaf: X509Certificate,
  pool: readonly X509Certificate[],
  anchors: readonly X509Certificate[],
  now: Date,
  trustedBy: string,
): { path: X509Certificate[]; anchor: X509Certificate } {
  const path = [leaf];
  let current = leaf;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const anchor = anchors.find((candidate) => candidate.fingerprint256 === current.fingerprint256) ?? anchors.find((candidate) => issuedBy(current, candidate));
    if (anchor) {
      if (anchor !== current) checkTimes(anchor, now, 'the CA certificate');
      return { path, anchor };
    }
    const next = pool.find((candidate) => candidate.fingerprint256 !== current.fingerprint256 && candidate.ca && issuedBy(current, candidate));
    if (!next) {
      const what = current === leaf ? 'the certificate' : `the intermediate ${shortName(current)}`;
      throw new CertificateRefused(
        `the chain does not verify: no issuer of ${what} (issued by ${oneLine(current.issuer)}) among the certificate file's chain${
          trustedBy === '--chain' ? ' and --chain' : ''
        }, and ${trustedBy === '--chain' ? 'no --chain certificate signed it' : 'it does not chain to a system root (pass the CA with --chain)'}`,
      );
    }
    checkTimes(next, now, 'the intermediate');
    path.push(next);
    current = next;
  }
  throw new CertificateRefused(`the chain does not verify: no trust anchor within ${MAX_DEPTH} certificates`);
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The key, certificate and chain checked in the order an operator fixes them; throws CertificateRefused. */
export function validateCertificate(input: CertificateInput, context: ValidationContext): ValidatedCertificate {
  const { hostname, now } = context;
  const certs = parseCertificates(input.certPem, 'the certificate file');
  const leaf = certs[0];
  if (!leaf) throw new CertificateRefused('the certificate file holds no PEM certificate');
  const key = loadKey(input.keyPem);
  if (!leaf.checkPrivateKey(key)) {
    throw new CertificateRefused(`the private key does not belong to the certificate ${shortName(leaf)} (a key of another certificate?)`);
  }
  checkTimes(leaf, now, 'the certificate');
  const names = certificateNames(leaf);
  const matchedName = leaf.checkHost(hostname);
  if (!matchedName) {
    throw new CertificateRefused(`the certificate's names (${names.join(', ') || 'none'}) do not cover hostname ${hostname}`);
  }

  const given = input.chainPem === undefined ? null : parseCertificates(input.chainPem, '--chain');
  if (given && given.length === 0) throw new CertificateRefused('--chain holds no PEM certificate');
  const trustedBy = given ? '--chain' : 'system roots';
  const anchors = given ?? context.systemRoots().map((pem) => new X509Certificate(pem));
  const pool = [...certs.slice(1), ...(given ?? [])];
  const { path, anchor } = verifyChain(leaf, pool, anchors, now, trustedBy);

  // Served: the certificate file as given, plus what the verified path needed from --chain (never a
  // self-signed root: a client that trusts it has it already).
  const served = [...certs];
  let appended = 0;
  const fromChain = trustedBy === '--chain' && !path.includes(anchor) ? [anchor] : [];
  for (const cert of [...path.slice(1), ...fromChain]) {
    if (served.some((known) => known.fingerprint256 === cert.fingerprint256) || isSelfSigned(cert)) continue;
    served.push(cert);
    appended++;
  }
  const chainBytes = Buffer.concat(served.slice(1).map((cert) => cert.raw));
  const leafHex = sha256(leaf.raw);
  const stem = served.length > 1 ? `${leafHex}-${sha256(chainBytes).slice(0, 12)}` : leafHex;

  const validFrom = dateOf(leaf.validFrom);
  const validTo = dateOf(leaf.validTo);
  const chain = [...path, ...(path.includes(anchor) ? [] : [anchor])].map(shortName).join(' <- ');
  return {
    fingerprint: leaf.fingerprint256,
    stem,
    keyPem: key.export({ format: 'pem', type: 'pkcs8' }) as string,
    certPem: `${served.map((cert) => cert.toString().trim()).join('\n')}\n`,
    subject: oneLine(leaf.subject),
    issuer: oneLine(leaf.issuer),
    names,
    matchedName,
    validFrom,
    validTo,
    daysLeft: Math.floor((validTo.getTime() - now.getTime()) / DAY_MS),
    chain,
    trustedBy,
    appended,
  };
}

/** One line for the operator: names, issuer, validity and the days left. */
export function describeCertificate(cert: ValidatedCertificate): string {
  return `certificate ${cert.subject} for ${cert.names.join(', ')} (issuer ${cert.issuer}), valid ${day(cert.validFrom)} to ${day(cert.validTo)}: ${cert.daysLeft} day${cert.daysLeft === 1 ? '' : 's'} left`;
}

/**
 * What `mailproxy check` says about the certificate on disk (no chain check: that needs the CA): expired,
 * not yet valid, fewer than `warningDays` left, names that do not cover hostname, a key of another
 * certificate. Empty when all is well.
 */
export function certificateWarnings(certPem: string, keyPem: string | null, hostname: string, now: Date, warningDays: number): string[] {
  let leaf: X509Certificate | undefined;
  try {
    leaf = parseCertificates(certPem, 'the certificate file')[0];
  } catch (err) {
    return [(err as Error).message];
  }
  if (!leaf) return ['it holds no PEM certificate'];
  const warnings: string[] = [];
  const from = dateOf(leaf.validFrom);
  const to = dateOf(leaf.validTo);
  const left = to.getTime() - now.getTime();
  const days = Math.floor(left / DAY_MS);
  if (now < from) warnings.push(`the certificate is not valid before ${from.toISOString()}`);
  else if (left < 0) warnings.push(`the certificate expired on ${to.toISOString()}: renew and deploy it`);
  else if (left < warningDays * DAY_MS) warnings.push(`the certificate expires in ${days} day${days === 1 ? '' : 's'} (${to.toISOString()}), under ${warningDays}: renew it`);
  if (!leaf.checkHost(hostname)) {
    warnings.push(`the certificate's names (${certificateNames(leaf).join(', ') || 'none'}) do not cover hostname ${hostname}`);
  }
  if (keyPem !== null) {
    try {
      if (!leaf.checkPrivateKey(createPrivateKey({ key: keyPem, format: 'pem' }))) warnings.push('the key does not belong to the certificate');
    } catch (err) {
      warnings.push(`the key does not parse: ${(err as Error).message}`);
    }
  }
  return warnings;
}
