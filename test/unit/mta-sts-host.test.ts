// The pure side of MTA-STS policy hosting (inbound.mta_sts): the config block, the policy and its id, the
// records to publish, what the service answers, and the verdicts of check, doctor and health on it.
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { acmePlan } from '../../src/certs/acme/plan';
import { makeTestCa } from '../../src/certs/testca';
import { formatConfigError, loadConfigText } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { judgeMtaSts, judgeTlsRpt, type MtaStsFacts } from '../../src/doctor/mta-sts-checks';
import { judgeMtaStsService } from '../../src/health/mta-sts';
import { parsePolicy } from '../../src/mtasts/policy';
import { mtaStsCheckLines } from '../../src/mtasts-host/check';
import { mtaStsListen } from '../../src/config/paths';
import { hostedPolicy, policyHosts, policyId, policyRecords, stsTxtRecord } from '../../src/mtasts-host/policy';
import type { PolicyServiceFacts } from '../../src/mtasts-host/probe';
import { answer, hostName } from '../../src/mtasts-host/route';
import { installNotes } from '../../src/notes/notes';
import type { Lookup } from '../../src/selftest/dns';

const BASE = { version: 1, hostname: 'mx.mailproxy-test.net', public_ipv4: '198.18.7.25', domains: ['mailproxy-test.net', 'Second-Test.org'] };

function load(mtaSts: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return loadConfigText(stringify({ ...BASE, ...extra, inbound: { mta_sts: mtaSts } }));
}

function config(mtaSts: Record<string, unknown> = { enabled: true }, extra: Record<string, unknown> = {}): Config {
  const loaded = load(mtaSts, extra);
  if (!loaded.ok) throw new Error(loaded.errors.map((error) => formatConfigError('test.yaml', error)).join('\n'));
  return loaded.config;
}

function errorsOf(mtaSts: Record<string, unknown>, extra: Record<string, unknown> = {}): string[] {
  const loaded = load(mtaSts, extra);
  return loaded.ok ? [] : loaded.errors.map((error) => formatConfigError('test.yaml', error));
}

const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
function testCa() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-sts-unit-'));
  dirs.push(dir);
  return makeTestCa(dir);
}

describe('inbound.mta_sts', () => {
  it('is off by default, testing, one week, on the public addresses; off changes nothing', () => {
    const off = config({});
    expect(off.inbound.mta_sts).toEqual({ enabled: false, mode: 'testing', mx: [], max_age: 604_800, listen: [], tls_rpt_rua: '' });
    expect(off.system.memory_max_mta_sts).toBe(128);
    expect(acmePlan(off).names).toEqual(['mx.mailproxy-test.net']);
    expect(installNotes(off)).not.toMatch(/MTA-STS|_mta-sts|443/);
    expect(mtaStsCheckLines(off, null, new Date())).toEqual([]);
  });

  it('refuses what no sender could use, naming the key', () => {
    expect(errorsOf({ mode: 'strict' }).join('\n')).toMatch(/inbound\.mta_sts\.mode: "strict": expected one of "testing", "enforce", "none"/);
    expect(errorsOf({ mx: ['mx..example.net'] }).join('\n')).toMatch(/inbound\.mta_sts\.mx\[0\].*expected an MX host name/);
    expect(errorsOf({ mx: ['*.example.net', 'backup.example.net'] })).toEqual([]);
    expect(errorsOf({ max_age: 31_557_601 }).join('\n')).toMatch(/inbound\.mta_sts\.max_age.*at most 31557600/);
    expect(errorsOf({ tls_rpt_rua: 'not an address' }).join('\n')).toMatch(/tls_rpt_rua.*expected an email address/);
    expect(errorsOf({ tls_rpt_rua: 'https://reports.example.net/tlsrpt' })).toEqual([]);
    expect(errorsOf({ listen: ['127.0.0.1:2525'] })).toEqual([]);
    const clash = loadConfigText(stringify({ ...BASE, inbound: { listen: ['127.0.0.1:2525'], mta_sts: { listen: ['127.0.0.1:2525'] } } }));
    expect(clash.ok ? [] : clash.errors.map((error) => formatConfigError('x', error))).toEqual([
      expect.stringContaining('inbound.mta_sts.listen[0]: "127.0.0.1:2525": expected an address different from inbound.listen and outbound.listen'),
    ]);
  });
});

describe('the hosted policy', () => {
  it('is RFC 8461 text: version, mode, hostname first then the extra mx names once each, max_age; CRLF lines', () => {
    const policy = hostedPolicy(config({ enabled: true, mode: 'enforce', mx: ['*.backup.example.net', 'MX.mailproxy-test.net'], max_age: 86_400 }));
    expect(policy.text).toBe('version: STSv1\r\nmode: enforce\r\nmx: mx.mailproxy-test.net\r\nmx: *.backup.example.net\r\nmax_age: 86400\r\n');
    expect(parsePolicy(policy.text)).toEqual({ ok: true, policy: { version: 'STSv1', mode: 'enforce', mx: ['mx.mailproxy-test.net', '*.backup.example.net'], maxAge: 86_400 } });
  });

  it('has an id of 1 to 32 letters and digits that changes with every change of the text, and only then', () => {
    const base = hostedPolicy(config());
    expect(base.id).toMatch(/^[A-Za-z0-9]{1,32}$/);
    expect(base.id).toBe(policyId(base.text));
    expect(hostedPolicy(config({ enabled: true })).id).toBe(base.id);
    // Domains, listen and the report address are not in the policy: the id stays.
    expect(hostedPolicy(config({ enabled: true, listen: ['127.0.0.1:8443'], tls_rpt_rua: 'tls@mailproxy-test.net' }, { domains: ['other.test'] })).id).toBe(base.id);
    const changed = [{ mode: 'enforce' }, { mode: 'none' }, { mx: ['mx2.mailproxy-test.net'] }, { max_age: 1_209_600 }].map(
      (change) => hostedPolicy(config({ enabled: true, ...change })).id,
    );
    expect(new Set([base.id, ...changed]).size).toBe(5);
    expect(hostedPolicy(config({ enabled: true }, { hostname: 'mx2.mailproxy-test.net' })).id).not.toBe(base.id);
  });

  it('is served for mta-sts.<domain> of every domain (lower-case), on port 443 of the public addresses unless listen says', () => {
    expect(policyHosts(config())).toEqual(['mta-sts.mailproxy-test.net', 'mta-sts.second-test.org']);
    expect(mtaStsListen(config())).toEqual(['198.18.7.25:443']);
    expect(mtaStsListen(config({ enabled: true }, { public_ipv6: '2a01:4f8::25' }))).toEqual(['198.18.7.25:443', '[2a01:4f8::25]:443']);
    expect(mtaStsListen(config({ enabled: true, listen: ['10.1.2.3:443'] }))).toEqual(['10.1.2.3:443']);
  });

  it('is announced by the records notes prints: mta-sts A/AAAA, _mta-sts TXT with the id, _smtp._tls TXT with the report address', () => {
    const on = config({ enabled: true, tls_rpt_rua: 'tls-reports@mailproxy-test.net' }, { public_ipv6: '2a01:4f8::25' });
    const { id } = hostedPolicy(on);
    expect(policyRecords(on).filter((record) => record.name.endsWith('second-test.org'))).toEqual([
      { name: 'mta-sts.second-test.org', type: 'A', value: '198.18.7.25' },
      { name: 'mta-sts.second-test.org', type: 'AAAA', value: '2a01:4f8::25' },
      { name: '_mta-sts.second-test.org', type: 'TXT', value: `v=STSv1; id=${id}` },
      { name: '_smtp._tls.second-test.org', type: 'TXT', value: 'v=TLSRPTv1; rua=mailto:tls-reports@mailproxy-test.net' },
    ]);
    const notes = installNotes(on);
    expect(notes).toContain(`_mta-sts.mailproxy-test.net.  TXT   "v=STSv1; id=${id}"`);
    expect(notes).toContain('mta-sts.mailproxy-test.net.  A     198.18.7.25');
    expect(notes).toContain('_smtp._tls.mailproxy-test.net.  TXT   "v=TLSRPTv1; rua=mailto:tls-reports@mailproxy-test.net"');
    expect(notes).toContain('      tcp dport 443 accept');
    expect(notes).toContain('  mode: testing\n');
    const https = config({ enabled: true, tls_rpt_rua: 'https://reports.example.net/tlsrpt' });
    expect(policyRecords(https).find((record) => record.name.startsWith('_smtp'))?.value).toBe('v=TLSRPTv1; rua=https://reports.example.net/tlsrpt');
    expect(installNotes(config())).toContain('set inbound.mta_sts.tls_rpt_rua');
  });

  it('makes native ACME order the policy host names too', () => {
    expect(acmePlan(config({ enabled: true }, { acme: { extra_names: ['mail.mailproxy-test.net'] } })).names).toEqual([
      'mx.mailproxy-test.net',
      'mail.mailproxy-test.net',
      'mta-sts.mailproxy-test.net',
      'mta-sts.second-test.org',
    ]);
  });
});

describe('what the service answers', () => {
  const hosts = new Set(['mta-sts.mailproxy-test.net', 'mta-sts.second-test.org']);
  const text = hostedPolicy(config()).text;
  const ask = (method: string, url: string, host: string | undefined) => answer({ method, url, host }, hosts, text);

  it('the policy, as text/plain, for exactly GET /.well-known/mta-sts.txt on a policy host (any case, with a port)', () => {
    for (const host of ['mta-sts.mailproxy-test.net', 'MTA-STS.Second-Test.org', 'mta-sts.mailproxy-test.net:443', 'mta-sts.mailproxy-test.net.']) {
      const reply = ask('GET', '/.well-known/mta-sts.txt', host);
      expect(reply, host).toMatchObject({ status: 200, body: text, headers: { 'content-type': 'text/plain', 'content-length': String(text.length) } });
    }
  });

  it('404 for anything else, never a redirect', () => {
    const others: [string, string, string | undefined][] = [
      ['GET', '/', 'mta-sts.mailproxy-test.net'],
      ['GET', '/.well-known/mta-sts.txt?x=1', 'mta-sts.mailproxy-test.net'],
      ['GET', '/.well-known/mta-sts.txt/', 'mta-sts.mailproxy-test.net'],
      ['GET', '/.well-known/MTA-STS.txt', 'mta-sts.mailproxy-test.net'],
      ['GET', '//.well-known/mta-sts.txt', 'mta-sts.mailproxy-test.net'],
      ['GET', 'http://mta-sts.mailproxy-test.net/.well-known/mta-sts.txt', 'mta-sts.mailproxy-test.net'],
      ['GET', '/.well-known/mta-sts.txt', 'mta-sts.other.example'],
      ['GET', '/.well-known/mta-sts.txt', 'mailproxy-test.net'],
      ['GET', '/.well-known/mta-sts.txt', '198.18.7.25'],
      ['GET', '/.well-known/mta-sts.txt', undefined],
      ['POST', '/.well-known/mta-sts.txt', 'mta-sts.mailproxy-test.net'],
      ['HEAD', '/.well-known/mta-sts.txt', 'mta-sts.mailproxy-test.net'],
    ];
    for (const [method, url, host] of others) {
      const reply = ask(method, url, host);
      expect(reply.status, `${method} ${url} ${host}`).toBe(404);
      expect(Object.keys(reply.headers)).not.toContain('location');
    }
  });

  it('reads the Host header as a name', () => {
    expect(hostName('MTA-STS.Example.COM:8443')).toBe('mta-sts.example.com');
    expect(hostName('[2001:db8::1]:443')).toBe('[2001:db8::1]');
    expect(hostName('')).toBeNull();
    expect(hostName(undefined)).toBeNull();
  });
});

describe('check: enforce only with a STARTTLS certificate for hostname', () => {
  const ca = testCa();
  const good = ca.issue(['mx.mailproxy-test.net', 'mta-sts.mailproxy-test.net', 'mta-sts.second-test.org']).cert;
  const other = ca.issue(['other.mailproxy-test.net']).cert;
  const now = new Date();

  it('refuses enforce while the certificate is missing, not for hostname or not valid now', () => {
    const enforce = config({ enabled: true, mode: 'enforce' });
    expect(mtaStsCheckLines(enforce, good, now)).toEqual([]);
    expect(mtaStsCheckLines(enforce, null, now)).toEqual([expect.stringMatching(/^error: inbound\.mta_sts\.mode is enforce, but there is no STARTTLS certificate: /)]);
    expect(mtaStsCheckLines(enforce, 'not a certificate', now)[0]).toMatch(/^error: .*there is no STARTTLS certificate/);
    const wrong = mtaStsCheckLines(enforce, other, now);
    expect(wrong[0]).toMatch(
      /^error: inbound\.mta_sts\.mode is enforce, but the STARTTLS certificate's names \(other\.mailproxy-test\.net\) do not cover hostname mx\.mailproxy-test\.net: senders that honour the policy would stop delivering/,
    );
    expect(mtaStsCheckLines(enforce, good, new Date(now.getTime() + 10 * 86_400_000))[0]).toMatch(/^error: .*expired on/);
  });

  it('lets testing and none go with any certificate, and warns about policy host names the certificate lacks', () => {
    expect(mtaStsCheckLines(config({ enabled: true, mode: 'testing' }), other, now).filter((line) => line.startsWith('error'))).toEqual([]);
    expect(mtaStsCheckLines(config({ enabled: true, mode: 'none' }), null, now)).toEqual([]);
    const partial = ca.issue(['mx.mailproxy-test.net', 'mta-sts.mailproxy-test.net']).cert;
    expect(mtaStsCheckLines(config({ enabled: true, mode: 'enforce' }), partial, new Date(Date.now() + 2_000))).toEqual([
      'warning: inbound.mta_sts is on, but the certificate does not cover mta-sts.second-test.org: senders cannot fetch the policy there (native ACME adds these names)',
    ]);
  });
});

describe('doctor with inbound.mta_sts on', () => {
  const on = config();
  const hosted = hostedPolicy(on);
  const records = <T>(...values: T[]): Lookup<T> => ({ kind: 'records', values });
  const none: Lookup<never> = { kind: 'none', code: 'ENOTFOUND' };
  const facts = (overrides: Partial<MtaStsFacts>): MtaStsFacts => ({
    domain: 'mailproxy-test.net',
    txt: records(stsTxtRecord(hosted.id)),
    policy: { text: hosted.text },
    mx: records({ exchange: 'mx.mailproxy-test.net', priority: 10 }),
    ...overrides,
  });

  it('passes when the record carries the id of the policy served, and that is the config’s', () => {
    expect(judgeMtaSts(facts({}), on.hostname, hosted)).toMatchObject({ status: 'OK', detail: expect.stringContaining(`(id ${hosted.id})`) });
  });

  it('wants the record published, with the id of the policy served', () => {
    expect(judgeMtaSts(facts({ txt: none }), on.hostname, hosted)).toMatchObject({
      status: 'WARNING',
      fix: `publish _mta-sts.mailproxy-test.net. TXT "v=STSv1; id=${hosted.id}" (mailproxy notes prints every record)`,
    });
    expect(judgeMtaSts(facts({ txt: none }), on.hostname).status).toBe('OK');
    const stale = judgeMtaSts(facts({ txt: records('v=STSv1; id=20240101') }), on.hostname, hosted);
    expect(stale).toMatchObject({
      status: 'WARNING',
      detail: expect.stringContaining(`announces id 20240101, but the policy served is id ${hosted.id}`),
      fix: `publish _mta-sts.mailproxy-test.net. TXT "v=STSv1; id=${hosted.id}" in place of the old record`,
    });
    // Someone else's policy host: its ids are its own business.
    expect(judgeMtaSts(facts({ txt: records('v=STSv1; id=20240101') }), on.hostname).status).toBe('OK');
  });

  it('names a service that serves another policy than the config, and one that cannot be fetched', () => {
    const older = hostedPolicy(config({ enabled: true, max_age: 86_400 }));
    expect(judgeMtaSts(facts({ policy: { text: older.text } }), on.hostname, hosted)).toMatchObject({
      status: 'WARNING',
      detail: expect.stringContaining(`serves policy id ${older.id}, not the config's ${hosted.id}`),
    });
    expect(judgeMtaSts(facts({ policy: { error: 'certificate has expired' } }), on.hostname, hosted)).toMatchObject({
      status: 'CRITICAL',
      fix: expect.stringContaining('systemctl status mailproxy-mta-sts'),
    });
  });

  it('still wants every MX covered by an mx: line', () => {
    const mx = records({ exchange: 'mx.mailproxy-test.net', priority: 10 }, { exchange: 'backup.other.example', priority: 20 });
    expect(judgeMtaSts(facts({ mx }), on.hostname, hosted)).toMatchObject({ status: 'WARNING', detail: expect.stringContaining('no mx: line matches backup.other.example') });
    const enforce = hostedPolicy(config({ enabled: true, mode: 'enforce' }));
    expect(judgeMtaSts(facts({ mx, txt: records(stsTxtRecord(enforce.id)), policy: { text: enforce.text } }), on.hostname, enforce).status).toBe('CRITICAL');
  });

  it('wants the TLS-RPT record to send reports to tls_rpt_rua', () => {
    expect(judgeTlsRpt('mailproxy-test.net', none, 'tls@mailproxy-test.net')).toMatchObject({
      status: 'WARNING',
      fix: 'publish one _smtp._tls.mailproxy-test.net. TXT "v=TLSRPTv1; rua=mailto:tls@mailproxy-test.net"',
    });
    expect(judgeTlsRpt('mailproxy-test.net', records('v=TLSRPTv1; rua=mailto:other@mailproxy-test.net'), 'tls@mailproxy-test.net').status).toBe('WARNING');
    expect(judgeTlsRpt('mailproxy-test.net', records('v=TLSRPTv1; rua=mailto:other@mailproxy-test.net,mailto:TLS@mailproxy-test.net'), 'tls@mailproxy-test.net').status).toBe('OK');
  });
});

describe('health of the service', () => {
  const hosted = hostedPolicy(config());
  const now = new Date('2026-06-01T00:00:00Z');
  const answerOf = (overrides: Partial<PolicyServiceFacts>): PolicyServiceFacts => ({
    address: '198.18.7.25:443',
    host: 'mta-sts.mailproxy-test.net',
    error: null,
    status: 200,
    contentType: 'text/plain',
    body: hosted.text,
    certificate: { validFrom: new Date('2026-05-01T00:00:00Z'), validTo: new Date('2026-08-01T00:00:00Z'), coversHost: true, fingerprint: 'AB' },
    ms: 3,
    ...overrides,
  });

  it('OK only for the config’s policy as text/plain with a certificate for the name, valid now', () => {
    expect(judgeMtaStsService([answerOf({}), answerOf({ host: 'mta-sts.second-test.org' })], hosted, now)).toMatchObject({
      status: 'OK',
      detail: expect.stringContaining(`policy id ${hosted.id} served for mta-sts.mailproxy-test.net, mta-sts.second-test.org`),
    });
    expect(judgeMtaStsService([answerOf({ error: 'connect ECONNREFUSED 198.18.7.25:443' })], hosted, now).status).toBe('CRITICAL');
    expect(judgeMtaStsService([answerOf({ status: 404 })], hosted, now).status).toBe('CRITICAL');
    expect(judgeMtaStsService([answerOf({ contentType: 'text/html' })], hosted, now).status).toBe('CRITICAL');
    expect(judgeMtaStsService([answerOf({ certificate: { ...answerOf({}).certificate!, validTo: new Date('2026-05-31T00:00:00Z') } })], hosted, now).status).toBe('CRITICAL');
    expect(judgeMtaStsService([answerOf({ certificate: { ...answerOf({}).certificate!, coversHost: false } })], hosted, now).status).toBe('WARNING');
    expect(judgeMtaStsService([answerOf({}), answerOf({ body: 'version: STSv1\r\n' })], hosted, now)).toMatchObject({
      status: 'WARNING',
      detail: expect.stringContaining('systemctl reload mailproxy-mta-sts'),
    });
    expect(judgeMtaStsService([], hosted, now).status).toBe('UNKNOWN');
  });
});
