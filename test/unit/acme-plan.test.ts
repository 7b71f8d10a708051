// Native ACME's pure part and its config keys: names, directory aliases, file places, the renewal
// decision, the jitter, and what the schema accepts (the DNS API key never in the YAML).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { acmePlan, certFacts, covers, daysLeft, describeChallenge, directoryUrl, jitterMs, renewalDue, tlsIniCertPath, type CertFacts } from '../../src/certs/acme/plan';
import { makeTestCa } from '../../src/certs/testca';
import { formatConfigError, loadConfigText } from '../../src/config/load';
import type { Config } from '../../src/config/schema';

const BASE = { version: 1, hostname: 'mx.example.com', public_ipv4: '203.0.113.25', domains: ['example.com'] };

function load(acme: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return loadConfigText(stringify({ ...BASE, ...extra, acme }));
}

function config(acme: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Config {
  const loaded = load(acme, extra);
  if (!loaded.ok) throw new Error(loaded.errors.map((error) => formatConfigError('test.yaml', error)).join('\n'));
  return loaded.config;
}

function errorsOf(acme: Record<string, unknown>): string[] {
  const loaded = load(acme);
  return loaded.ok ? [] : loaded.errors.map((error) => formatConfigError('test.yaml', error));
}

describe('acme config keys', () => {
  it('defaults: off, Let’s Encrypt production, HTTP-01 standalone on port 80 of every address, 30 days, IONOS key file', () => {
    const { acme } = config();
    expect(acme).toEqual({
      enabled: false,
      directory: 'letsencrypt',
      email: '',
      extra_names: [],
      challenge: 'http-01',
      http_01: { mode: 'standalone', address: '::', port: 80, webroot: '/var/www/html' },
      dns_01: {
        provider: 'ionos',
        api_key_file: '/etc/mailproxy/ionos-api-key',
        api_url: 'https://api.hosting.ionos.com/dns',
        resolvers: [],
        propagation_timeout: 300,
      },
      renew_days: 30,
      jitter: 900,
      trusted_cas: [],
    });
  });

  it('refuses the API key itself in the YAML (only api_key_file), with the key and line', () => {
    const errors = errorsOf({ dns_01: { api_key: 'prefix.secret' } });
    expect(errors.join('\n')).toMatch(/^test\.yaml:\d+: acme\.dns_01\.api_key: \(value hidden\): unsupported key 'api_key' in 'acme\.dns_01'/);
    // The misplaced secret never reaches the output.
    expect(errors.join('\n')).not.toContain('prefix.secret');
  });

  it('refuses a directory that is neither a known name nor an https URL, a relative key file, a bad email, a non-FQDN extra name', () => {
    expect(errorsOf({ directory: 'http://acme.example/dir' }).join('\n')).toContain('expected letsencrypt, letsencrypt-staging or the https:// URL of an ACME directory');
    expect(errorsOf({ dns_01: { api_key_file: 'ionos-key' } }).join('\n')).toContain('expected an absolute path');
    expect(errorsOf({ email: 'not an address' }).join('\n')).toContain('expected an email address');
    expect(errorsOf({ extra_names: ['localhost'] }).join('\n')).toContain('expected a fully qualified domain name');
    expect(errorsOf({ renew_days: 90 }).join('\n')).toMatch(/acme\.renew_days/);
    expect(errorsOf({ challenge: 'tls-alpn-01' }).join('\n')).toMatch(/acme\.challenge/);
  });
});

describe('acmePlan', () => {
  it('names hostname first, then the extra names, lower-case, once each; files under state_dir/acme', () => {
    const plan = acmePlan(config({ extra_names: ['Mail.Example.com', 'mx.example.com'], email: 'hostmaster@example.com' }, { state_dir: '/srv/mp' }));
    expect(plan.names).toEqual(['mx.example.com', 'mail.example.com']);
    expect(plan.email).toBe('hostmaster@example.com');
    expect(plan.accountKeyFile).toBe('/srv/mp/acme/account.key');
    expect(plan.keyFile).toBe('/srv/mp/acme/mx.example.com/privkey.pem');
    expect(plan.certFile).toBe('/srv/mp/acme/mx.example.com/fullchain.pem');
    expect(plan.directoryUrl).toBe('https://acme-v02.api.letsencrypt.org/directory');
    expect(acmePlan(config({ account_key: '/etc/mailproxy/acme.key' })).accountKeyFile).toBe('/etc/mailproxy/acme.key');
    expect(acmePlan(config()).email).toBeNull();
  });

  it('knows the staging directory by name and takes any https URL as it is', () => {
    expect(directoryUrl('letsencrypt-staging')).toBe('https://acme-staging-v02.api.letsencrypt.org/directory');
    expect(directoryUrl('https://127.0.0.1:14000/dir')).toBe('https://127.0.0.1:14000/dir');
  });

  it('describes the challenge and where it is answered', () => {
    expect(describeChallenge(config())).toBe('http-01 with a listener on [::]:80');
    expect(describeChallenge(config({ http_01: { address: '203.0.113.25', port: 8080 } }))).toBe('http-01 with a listener on 203.0.113.25:8080');
    expect(describeChallenge(config({ http_01: { mode: 'webroot', webroot: '/srv/www' } }))).toBe('http-01 with token files in /srv/www/.well-known/acme-challenge/');
    expect(describeChallenge(config({ challenge: 'dns-01' }))).toBe('dns-01 through ionos (https://api.hosting.ionos.com/dns)');
  });
});

describe('renewalDue', () => {
  const now = new Date('2026-06-01T12:00:00Z');
  const day = 86_400_000;
  const cert = (daysFromNow: number, names = ['mx.example.com'], notBeforeDays = -60): CertFacts => ({
    names,
    notBefore: new Date(now.getTime() + notBeforeDays * day),
    notAfter: new Date(now.getTime() + daysFromNow * day),
    issuer: 'CN=test',
    fingerprint: 'AA',
  });

  it.each([
    ['nothing deployed', null, true, 'no certificate is deployed yet'],
    ['60 days left', cert(60), false, '60 days left; renews when fewer than 30 remain (acme.renew_days)'],
    ['exactly 30 days left', cert(30), false, '30 days left; renews when fewer than 30 remain (acme.renew_days)'],
    ['29.5 days left', cert(29.5), true, '29 days left, fewer than acme.renew_days (30)'],
    ['expired', cert(-1), true, 'it expired on 2026-05-31T12:00:00.000Z'],
    ['not yet valid', cert(80, ['mx.example.com'], 1), true, 'it is not valid before 2026-06-02T12:00:00.000Z'],
    ['a name missing', cert(80, ['other.example.com']), true, 'it does not cover mx.example.com (it names other.example.com)'],
    ['a wildcard covering it', cert(80, ['*.example.com']), false, '80 days left; renews when fewer than 30 remain (acme.renew_days)'],
  ])('%s', (_what, facts, due, reason) => {
    const verdict = renewalDue(facts, ['mx.example.com'], now, 30);
    expect(verdict.due).toBe(due);
    expect(verdict.reason).toBe(reason);
  });

  it('counts whole days, rounded down', () => {
    expect(daysLeft(new Date(now.getTime() + 29.99 * day), now)).toBe(29);
    expect(daysLeft(new Date(now.getTime() - 0.5 * day), now)).toBe(-1);
  });

  it('a wildcard covers one label only', () => {
    expect(covers(['*.example.com'], 'mx.example.com')).toBe(true);
    expect(covers(['*.example.com'], 'a.mx.example.com')).toBe(false);
    expect(covers(['*.example.com'], 'example.com')).toBe(false);
    expect(covers(['MX.example.com'.toLowerCase()], 'Mx.Example.Com')).toBe(true);
  });
});

describe('jitterMs', () => {
  it('waits between 0 and the configured seconds, never outside', () => {
    expect(jitterMs(900, () => 0)).toBe(0);
    expect(jitterMs(900, () => 0.5)).toBe(450_000);
    expect(jitterMs(900, () => 0.9999999)).toBeLessThan(900_000);
    expect(jitterMs(0, () => 0.7)).toBe(0);
    expect(jitterMs(10, () => 7)).toBe(10_000);
  });
});

describe('tlsIniCertPath', () => {
  it('reads cert= of [main] (the certificate Haraka serves), skipping comments and other sections', () => {
    const ini = '; generated\n[outbound]\ncert=/x/out.pem\n[main]\nkey=/s/tls/a.key\n; The certificate\ncert=/s/tls/a.pem\n';
    expect(tlsIniCertPath(ini)).toBe('/s/tls/a.pem');
    expect(tlsIniCertPath('[main]\nkey=/k\n')).toBeNull();
  });
});

describe('certFacts', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-acme-plan-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the leaf of a full chain: its DNS names, dates, issuer and fingerprint', () => {
    const ca = makeTestCa(dir);
    const issued = ca.issue(['mx.example.com', 'mail.example.com']);
    const facts = certFacts(`${issued.cert}${ca.caPem}`);
    expect(facts.names).toEqual(['mx.example.com', 'mail.example.com']);
    expect(facts.issuer).toBe('CN=mailproxy test CA');
    expect(facts.fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(facts.notAfter.getTime()).toBeGreaterThan(facts.notBefore.getTime());
    expect(() => certFacts('no certificate here')).toThrow('no PEM certificate in it');
  });
});
