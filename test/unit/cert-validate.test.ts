// What `cert deploy` accepts and refuses (validate.ts, pure), and what `check` says about the certificate
// on disk: each case is a real certificate made by openssl for this run.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateRefused, certificateWarnings, validateCertificate, type CertificateInput } from '../../src/certs/deploy/validate';
import { makeCa, type Ca } from '../helpers/cert-fixtures';

const HOST = 'mx.demo.test';
const DAY = 86_400_000;
let dir = '';
let root: Ca;
let intermediate: Ca;
let other: Ca;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-cert-validate-'));
  root = makeCa(path.join(dir, 'root'), 'deploy test root');
  intermediate = root.intermediate('deploy test intermediate');
  other = makeCa(path.join(dir, 'other'), 'an unrelated CA');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const now = () => new Date();
const withChain = (chainPem: string) => ({ chainPem });
const context = (roots: string[] = []) => ({ hostname: HOST, now: now(), systemRoots: () => roots });
const refusal = (input: CertificateInput, roots: string[] = []) => {
  try {
    validateCertificate(input, context(roots));
  } catch (err) {
    expect(err).toBeInstanceOf(CertificateRefused);
    return (err as Error).message;
  }
  throw new Error('not refused');
};

describe('cert deploy validation', () => {
  it('accepts a fullchain from an intermediate, verified against --chain (the root), and says how many days are left', () => {
    const leaf = intermediate.issue({ names: [HOST, 'demo.test'], fullchain: true });
    const result = validateCertificate({ keyPem: leaf.keyPem, certPem: leaf.certPem, ...withChain(root.certPem) }, context());
    expect(result.fingerprint).toBe(leaf.fingerprint);
    expect(result.stem).toMatch(/^[0-9a-f]{64}-[0-9a-f]{12}$/);
    expect(result.stem.slice(0, 64)).toBe(leaf.fingerprint.replace(/:/g, '').toLowerCase());
    expect(result.daysLeft).toBe(29);
    expect(result.trustedBy).toBe('--chain');
    expect(result.chain).toBe('CN=mx.demo.test <- CN=deploy test intermediate <- CN=deploy test root');
    expect(result.matchedName).toBe(HOST);
    expect(result.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    // Served: the leaf and the intermediate, never the root.
    const served = result.certPem.match(/-----BEGIN CERTIFICATE-----/g) ?? [];
    expect(served).toHaveLength(2);
    expect(result.appended).toBe(0);
  });

  it('verifies against the system roots without --chain, and refuses a chain that reaches none', () => {
    const leaf = intermediate.issue({ names: [HOST], fullchain: true });
    expect(validateCertificate({ keyPem: leaf.keyPem, certPem: leaf.certPem }, context([root.certPem])).trustedBy).toBe('system roots');
    expect(refusal({ keyPem: leaf.keyPem, certPem: leaf.certPem }, [other.certPem])).toMatch(/does not chain to a system root \(pass the CA with --chain\)/);
  });

  it('appends the intermediate from --chain when the certificate file has only the leaf (acme.sh passes _cca)', () => {
    const leaf = intermediate.issue({ names: [HOST] });
    const result = validateCertificate({ keyPem: leaf.keyPem, certPem: leaf.certPem, chainPem: intermediate.certPem }, context());
    expect(result.appended).toBe(1);
    const served = (result.certPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []).map((pem) => new X509Certificate(pem).subject);
    expect(served).toEqual([`CN=${HOST}`, 'CN=deploy test intermediate']);
  });

  it('names a leaf without chain by its fingerprint alone', () => {
    const leaf = root.issue({ names: [HOST] });
    const result = validateCertificate({ keyPem: leaf.keyPem, certPem: leaf.certPem, chainPem: root.certPem }, context());
    expect(result.stem).toBe(leaf.fingerprint.replace(/:/g, '').toLowerCase());
  });

  it('accepts a wildcard that covers hostname', () => {
    const leaf = root.issue({ names: ['*.demo.test'] });
    expect(validateCertificate({ keyPem: leaf.keyPem, certPem: leaf.certPem, chainPem: root.certPem }, context()).matchedName).toBe('*.demo.test');
  });

  it('refuses the key of another certificate', () => {
    const a = root.issue({ names: [HOST] });
    const b = root.issue({ names: [HOST] });
    expect(refusal({ keyPem: b.keyPem, certPem: a.certPem, chainPem: root.certPem })).toMatch(/the private key does not belong to the certificate CN=mx\.demo\.test/);
  });

  it('refuses an expired certificate and one not valid yet', () => {
    const expired = root.issue({ names: [HOST], notBefore: new Date(Date.now() - 60 * DAY), notAfter: new Date(Date.now() - DAY) });
    expect(refusal({ keyPem: expired.keyPem, certPem: expired.certPem, chainPem: root.certPem })).toMatch(/^the certificate CN=mx\.demo\.test expired on /);
    const early = root.issue({ names: [HOST], notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 60 * DAY) });
    expect(refusal({ keyPem: early.keyPem, certPem: early.certPem, chainPem: root.certPem })).toMatch(/is not valid yet: valid from /);
  });

  it('refuses names that do not cover hostname', () => {
    const leaf = root.issue({ names: ['mail.elsewhere.test', '*.mx.demo.test'] });
    expect(refusal({ keyPem: leaf.keyPem, certPem: leaf.certPem, chainPem: root.certPem })).toBe(
      "the certificate's names (mail.elsewhere.test, *.mx.demo.test) do not cover hostname mx.demo.test",
    );
  });

  it('refuses a broken chain: --chain of another CA, a missing intermediate, an expired intermediate', () => {
    const leaf = root.issue({ names: [HOST] });
    expect(refusal({ keyPem: leaf.keyPem, certPem: leaf.certPem, chainPem: other.certPem })).toMatch(
      /^the chain does not verify: no issuer of the certificate \(issued by CN=deploy test root\)/,
    );
    const below = intermediate.issue({ names: [HOST] });
    expect(refusal({ keyPem: below.keyPem, certPem: below.certPem, chainPem: root.certPem })).toMatch(/no issuer of the certificate \(issued by CN=deploy test intermediate\)/);
    // A chain whose intermediate is the right one but not valid now.
    const expiredIntermediate = root.intermediate('expired intermediate', { notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2020-02-01T00:00:00Z') });
    const underExpired = expiredIntermediate.issue({ names: [HOST], fullchain: true });
    expect(refusal({ keyPem: underExpired.keyPem, certPem: underExpired.certPem, chainPem: root.certPem })).toMatch(
      /the intermediate CN=expired intermediate expired on 2020-02-01/,
    );
  });

  it('refuses an encrypted key, a file without a key and one without a certificate', () => {
    const leaf = root.issue({ names: [HOST] });
    const encrypted = execFileSync('openssl', ['pkey', '-aes256', '-passout', 'pass:secret'], { input: leaf.keyPem }).toString();
    expect(refusal({ keyPem: encrypted, certPem: leaf.certPem, chainPem: root.certPem })).toMatch(/the private key is encrypted/);
    expect(refusal({ keyPem: leaf.certPem, certPem: leaf.certPem, chainPem: root.certPem })).toBe('the key file holds no PEM private key');
    expect(refusal({ keyPem: leaf.keyPem, certPem: leaf.keyPem, chainPem: root.certPem })).toBe('the certificate file holds no PEM certificate');
  });
});

describe('check: the certificate on disk', () => {
  it('says nothing about a good certificate', () => {
    const leaf = root.issue({ names: [HOST] });
    expect(certificateWarnings(leaf.certPem, leaf.keyPem, HOST, now(), 14)).toEqual([]);
  });

  it('warns under 14 days, after expiry, before validity, for names not covering hostname, and for a foreign key', () => {
    const soon = root.issue({ names: ['other.demo.test'], notAfter: new Date(Date.now() + 10 * DAY + 3_600_000) });
    const stranger = root.issue({ names: [HOST] });
    expect(certificateWarnings(soon.certPem, stranger.keyPem, HOST, now(), 14)).toEqual([
      expect.stringMatching(/^the certificate expires in 10 days \(.*\), under 14: renew it$/),
      "the certificate's names (other.demo.test) do not cover hostname mx.demo.test",
      'the key does not belong to the certificate',
    ]);
    expect(certificateWarnings(soon.certPem, null, 'other.demo.test', new Date(Date.now() + 11 * DAY), 14)).toEqual([expect.stringMatching(/^the certificate expired on /)]);
    expect(certificateWarnings(soon.certPem, null, 'other.demo.test', new Date(Date.now() - DAY), 14)).toEqual([expect.stringMatching(/^the certificate is not valid before /)]);
  });
});
