// Native ACME, the pure part: what `cert issue|renew` will do for a config (names, ACME directory, files,
// challenge), whether a renewal is due, and how long the jitter waits. No disk, network or clock here:
// the caller passes the certificate text and the time.
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { ACME_DIRECTORIES, type Config } from '../../config/schema';
import { policyHostName } from '../../mtasts/policy';

export type ChallengeType = 'http-01' | 'dns-01';

export interface AcmePlan {
  /**
   * hostname first (the certificate's CN), then acme.extra_names, then with inbound.mta_sts on the policy
   * host `mta-sts.<domain>` of every domain; lower-case, without repeats.
   */
  names: string[];
  directoryUrl: string;
  email: string | null;
  challenge: ChallengeType;
  accountKeyFile: string;
  /** Where an issued certificate is written before it goes to the deploy path: `<state_dir>/acme/<hostname>/`. */
  keyFile: string;
  certFile: string;
  /** Extra trust (pebble, Let's Encrypt staging), combined into one file for the deploy path's chain check. */
  trustedCas: string[];
  trustFile: string;
}

export function directoryUrl(directory: string): string {
  return Object.hasOwn(ACME_DIRECTORIES, directory) ? ACME_DIRECTORIES[directory as keyof typeof ACME_DIRECTORIES] : directory;
}

export function acmeDir(config: Config): string {
  return path.join(config.state_dir, 'acme');
}

export function acmePlan(config: Config): AcmePlan {
  const policyHosts = config.inbound.mta_sts.enabled ? config.domains.map(policyHostName) : [];
  const names = [...new Set([config.hostname, ...config.acme.extra_names, ...policyHosts].map((name) => name.toLowerCase()))];
  const dir = acmeDir(config);
  const issued = path.join(dir, names[0]!);
  return {
    names,
    directoryUrl: directoryUrl(config.acme.directory),
    email: config.acme.email === '' ? null : config.acme.email,
    challenge: config.acme.challenge,
    accountKeyFile: config.acme.account_key ?? path.join(dir, 'account.key'),
    keyFile: path.join(issued, 'privkey.pem'),
    certFile: path.join(issued, 'fullchain.pem'),
    trustedCas: config.acme.trusted_cas,
    trustFile: path.join(dir, 'trusted-cas.pem'),
  };
}

/** One line naming the challenge and where it is answered, for the command's first output line. */
export function describeChallenge(config: Config): string {
  const { acme } = config;
  if (acme.challenge === 'dns-01') return `dns-01 through ${acme.dns_01.provider} (${acme.dns_01.api_url})`;
  if (acme.http_01.mode === 'webroot') return `http-01 with token files in ${acme.http_01.webroot}/.well-known/acme-challenge/`;
  const host = acme.http_01.address.includes(':') ? `[${acme.http_01.address}]` : acme.http_01.address;
  return `http-01 with a listener on ${host}:${acme.http_01.port}`;
}

export interface CertFacts {
  /** DNS names of subjectAltName (the CN only when there is no subjectAltName). */
  names: string[];
  notBefore: Date;
  notAfter: Date;
  issuer: string;
  /** SHA-256 fingerprint, as colon-separated hex (X509Certificate.fingerprint256). */
  fingerprint: string;
}

/** The facts of the first certificate in a PEM text (the leaf of a full chain). Throws on text that holds none. */
export function certFacts(pem: string): CertFacts {
  const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem);
  if (!first) throw new Error('no PEM certificate in it');
  const cert = new X509Certificate(first[0]);
  const san = (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase());
  const cn = /^CN=(.*)$/m.exec(cert.subject)?.[1];
  return {
    names: san.length ? san : cn ? [cn.toLowerCase()] : [],
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    issuer: cert.issuer.split('\n').join(', '),
    fingerprint: cert.fingerprint256,
  };
}

/** Whether a certificate name covers `name` (a wildcard covers exactly one leftmost label). */
export function covers(certNames: readonly string[], name: string): boolean {
  const wanted = name.toLowerCase();
  return certNames.some((certName) => {
    if (certName === wanted) return true;
    if (!certName.startsWith('*.')) return false;
    const dot = wanted.indexOf('.');
    return dot > 0 && wanted.slice(dot + 1) === certName.slice(2);
  });
}

const DAY_MS = 86_400_000;

/** Whole days left (rounded down; negative once expired). */
export function daysLeft(notAfter: Date, now: Date): number {
  return Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);
}

export type RenewVerdict = { due: true; reason: string } | { due: false; reason: string; daysLeft: number };

/** Whether `cert renew` must get a new certificate: none, expired, not yet valid, a name missing, or under `renewDays` left. */
export function renewalDue(current: CertFacts | null, wanted: readonly string[], now: Date, renewDays: number): RenewVerdict {
  if (!current) return { due: true, reason: 'no certificate is deployed yet' };
  const left = daysLeft(current.notAfter, now);
  if (current.notAfter.getTime() <= now.getTime()) return { due: true, reason: `it expired on ${current.notAfter.toISOString()}` };
  if (current.notBefore.getTime() > now.getTime()) return { due: true, reason: `it is not valid before ${current.notBefore.toISOString()}` };
  const missing = wanted.filter((name) => !covers(current.names, name));
  if (missing.length) return { due: true, reason: `it does not cover ${missing.join(', ')} (it names ${current.names.join(', ') || 'nothing'})` };
  if (left < renewDays) return { due: true, reason: `${left} days left, fewer than acme.renew_days (${renewDays})` };
  return { due: false, daysLeft: left, reason: `${left} days left; renews when fewer than ${renewDays} remain (acme.renew_days)` };
}

/** The random wait before a renewal: up to `maxSeconds`, in whole milliseconds. */
export function jitterMs(maxSeconds: number, random: () => number = Math.random): number {
  return Math.floor(Math.max(0, Math.min(1, random())) * maxSeconds * 1000);
}

/** `cert=` of the `[main]` section of a rendered tls.ini: the certificate Haraka serves. Null when there is none. */
export function tlsIniCertPath(text: string): string | null {
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith(';') || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!.trim();
      continue;
    }
    const pair = /^([^=]+?)\s*=\s*(.*)$/.exec(line);
    if (pair && (section === 'main' || section === '') && pair[1] === 'cert') return pair[2]! || null;
  }
  return null;
}

/** The summary line of an issued certificate. */
export function describeCert(facts: CertFacts, now: Date): string {
  return `${facts.names.join(', ')}; issuer ${facts.issuer}; valid until ${facts.notAfter.toISOString()} (${daysLeft(facts.notAfter, now)} days left); SHA-256 ${facts.fingerprint}`;
}
