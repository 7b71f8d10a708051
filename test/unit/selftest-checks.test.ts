// The pure side of `mailproxy selftest`: each MXToolbox verdict from measured facts at its thresholds, the
// generic-PTR rules, --target parsing, the shared relay trick list, and the report format.
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load';
import { parseTargetHostPort } from '../../src/config/net';
import type { Config } from '../../src/config/schema';
import { allRelayTricks, foreignRelayTricks } from '../../src/relay-tricks';
import {
  genericPtrReason,
  judgeBannerName,
  judgeReverseDns,
  judgeSmtpTls,
  judgeTime,
  judgeValidHostname,
  type ReverseDnsFacts,
  type SessionFacts,
  type SmtpTlsFacts,
} from '../../src/selftest/checks';
import { judgeHarakaOutRelay, judgeOpenRelay, type HarakaOutFacts, type RelayAttempt } from '../../src/selftest/relay-checks';
import { chooseResolver, parseResolverAddress, reverseName } from '../../src/selftest/dns';
import { checkLine, findingsReport, formatFindings, formatFindingsJson } from '../../src/report/findings';
import { inboundRelayPlan, inboundTargets, senderFacingIp } from '../../src/selftest/run';

const now = new Date('2026-03-01T12:00:00Z');
const DAY = 86_400_000;

function config(extra = ''): Config {
  const loaded = loadConfigText(`version: 1\nhostname: mx.example.com\npublic_ipv4: 203.0.113.25\ndomains: [example.com]\n${extra}`);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  return loaded.config;
}

const rdns = (ip: string, names: string[] | 'none', forward: Record<string, string[]> = {}): ReverseDnsFacts => ({
  ip,
  ptr: names === 'none' ? { kind: 'none', code: 'ENOTFOUND' } : { kind: 'records', values: names },
  forward: Object.fromEntries(Object.entries(forward).map(([name, ips]) => [name, ips.length ? { kind: 'records', values: ips } : { kind: 'none', code: 'ENODATA' }])),
});

describe('SMTP Banner Check, Reverse DNS Mismatch, Valid Hostname', () => {
  const banner = (line: string) => ({ code: Number(line.slice(0, 3)), lines: [line] });
  const good = rdns('203.0.113.25', ['mx.example.com'], { 'mx.example.com': ['203.0.113.25'] });

  it('passes a banner naming the PTR, warns otherwise with the right fix', () => {
    expect(judgeBannerName('203.0.113.25:25', banner('220 mx.example.com ESMTP'), null, good, 'mx.example.com').status).toBe('OK');
    const otherPtr = judgeBannerName('203.0.113.25:25', banner('220 mx.example.com ESMTP'), null, rdns('203.0.113.25', ['vps.hoster.example']), 'mx.example.com');
    expect(otherPtr).toMatchObject({ status: 'WARNING', fix: expect.stringContaining('ask your VPS provider to set the PTR (reverse DNS) of 203.0.113.25 to mx.example.com') });
    expect(judgeBannerName('203.0.113.25:25', null, 'connect ECONNREFUSED', good, 'mx.example.com').status).toBe('CRITICAL');
    expect(judgeBannerName('203.0.113.25:25', banner('554 go away'), null, good, 'mx.example.com').status).toBe('CRITICAL');
  });

  it('forward-confirms the PTR (IPv4 and IPv6, any spelling of the address)', () => {
    expect(judgeReverseDns(good, 'mx.example.com').status).toBe('OK');
    expect(judgeReverseDns(rdns('2001:db8::25', ['mx.example.com'], { 'mx.example.com': ['2001:0db8:0:0::25'] }), 'mx.example.com').status).toBe('OK');
    expect(judgeReverseDns(rdns('203.0.113.25', 'none'), 'mx.example.com')).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('has no PTR record') });
    expect(judgeReverseDns(rdns('203.0.113.25', ['mx.example.com'], { 'mx.example.com': ['198.51.100.1'] }), 'mx.example.com')).toMatchObject({
      status: 'CRITICAL',
      fix: 'publish mx.example.com. A 203.0.113.25 (the name the PTR gives must resolve back to the address)',
    });
    expect(judgeReverseDns({ ip: '203.0.113.25', ptr: { kind: 'error', message: 'ETIMEOUT' }, forward: {} }, 'mx.example.com').status).toBe('UNKNOWN');
  });

  it('tells generic PTR names from real ones', () => {
    for (const name of [
      'ip-203-0-113-25.hoster.example',
      '25.113.0.203.static.example.net',
      '25-113-0-203.example.net',
      'cb007119.example.net',
      'host.dynamic.example.net',
      'pool-12.dsl.example.net',
    ]) {
      expect(genericPtrReason(name, '203.0.113.25'), name).not.toBeNull();
    }
    for (const name of ['mx.example.com', 'mail2.example.com', 'smtp-out-1.example.com', 'mx203.example.com']) {
      expect(genericPtrReason(name, '203.0.113.25'), name).toBeNull();
    }
    expect(genericPtrReason('2001-db8--25.v6.example.net', '2001:db8::25')).toBe('it contains the address');
    expect(judgeValidHostname(rdns('203.0.113.25', ['ip-203-0-113-25.hoster.example']), 'mx.example.com').status).toBe('WARNING');
    expect(judgeValidHostname(rdns('203.0.113.25', ['localhost']), 'mx.example.com').status).toBe('CRITICAL');
    expect(judgeValidHostname(good, 'mx.example.com').status).toBe('OK');
  });
});

describe('SMTP Connection Time and Transaction Time', () => {
  const session = (connectMs: number | null, transactionMs: number | null = connectMs): SessionFacts => ({
    source: '127.1.2.3',
    error: connectMs === null ? 'connect ECONNREFUSED' : null,
    banner: null,
    connectMs,
    transactionMs,
  });
  const cold = { temperature: 'cold' as const, freshSource: true };

  it('passes up to 2 s, warns above, fails at MXToolbox’s 15 s', () => {
    expect(judgeTime('connection', session(2000), cold).status).toBe('OK');
    expect(judgeTime('connection', session(2001), cold).status).toBe('WARNING');
    expect(judgeTime('connection', session(14_999), cold).status).toBe('WARNING');
    expect(judgeTime('connection', session(15_000), cold)).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining("at or over MXToolbox's 15 s") });
    expect(judgeTime('transaction', session(100, 16_000), cold).status).toBe('CRITICAL');
    expect(judgeTime('connection', session(null), cold).status).toBe('CRITICAL');
    expect(judgeTime('connection', session(10), cold).metrics).toEqual({ smtp_connection_seconds: 0.01 });
  });

  it('says how cold the cold measurement was', () => {
    expect(judgeTime('connection', session(10), cold).detail).toContain('an address haraka-in had not seen');
    expect(judgeTime('connection', session(10), { temperature: 'cold', freshSource: false }).detail).toContain('cold unless this address connected in the last minute');
    expect(judgeTime('connection', session(3000), { temperature: 'warm', freshSource: true }).fix).toContain('slow even with the client’s name cached');
  });
});

describe('SMTP TLS', () => {
  const facts = (change: Partial<SmtpTlsFacts> = {}, days = 60): SmtpTlsFacts => ({
    address: '203.0.113.25:25',
    offered: true,
    error: null,
    protocol: 'TLSv1.3',
    cert: { subject: 'CN=mx.example.com', issuer: 'CN=R11', validFrom: new Date(now.getTime() - DAY), validTo: new Date(now.getTime() + days * DAY), namesHost: true },
    chainError: null,
    legacy: [
      { version: 'TLSv1', accepted: false, note: 'refused' },
      { version: 'TLSv1.1', accepted: false, note: 'refused' },
    ],
    ...change,
  });

  it('passes STARTTLS with a verified chain for hostname and 14 days or more, nothing below TLS 1.2', () => {
    expect(judgeSmtpTls(facts(), 'mx.example.com', now).status).toBe('OK');
    expect(judgeSmtpTls(facts({}, 14), 'mx.example.com', now).status).toBe('OK');
  });

  it('warns under 14 days and for TLS 1.0/1.1; fails expired, not yet valid, wrong name, unverified chain, no STARTTLS', () => {
    expect(judgeSmtpTls(facts({}, 13), 'mx.example.com', now)).toMatchObject({ status: 'WARNING', detail: expect.stringContaining('13 days left (under 14)') });
    const legacy = facts({
      legacy: [
        { version: 'TLSv1', accepted: true, note: 'accepted' },
        { version: 'TLSv1.1', accepted: false, note: 'refused' },
      ],
    });
    expect(judgeSmtpTls(legacy, 'mx.example.com', now)).toMatchObject({ status: 'WARNING', detail: '203.0.113.25:25: TLSv1 accepted' });
    expect(judgeSmtpTls(facts({}, -1), 'mx.example.com', now).status).toBe('CRITICAL');
    const future = facts();
    future.cert!.validFrom = new Date(now.getTime() + DAY);
    expect(judgeSmtpTls(future, 'mx.example.com', now).status).toBe('CRITICAL');
    expect(judgeSmtpTls(facts({ chainError: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' }), 'mx.example.com', now).fix).toContain('fullchain.pem');
    const wrongName = facts();
    wrongName.cert!.namesHost = false;
    expect(judgeSmtpTls(wrongName, 'mx.example.com', now).status).toBe('CRITICAL');
    expect(judgeSmtpTls(facts({ offered: false, cert: null }), 'mx.example.com', now).status).toBe('CRITICAL');
  });

  it('when this host’s OpenSSL cannot offer TLS 1.0, says so rather than guessing', () => {
    const cannot = facts({ legacy: [{ version: 'TLSv1', accepted: null, note: "not tried: this host's OpenSSL cannot offer it (ERR_SSL_NO_PROTOCOLS_AVAILABLE)" }] });
    expect(judgeSmtpTls(cannot, 'mx.example.com', now)).toMatchObject({ status: 'OK', detail: expect.stringContaining("TLSv1 not tried: this host's OpenSSL cannot offer it") });
  });
});

describe('SMTP Open Relay', () => {
  const attempt = (rcpt: string, code: number, phase: 'MAIL' | 'RCPT' = 'RCPT'): RelayAttempt => ({
    sender: 'supertool@mxtoolboxsmtpdiag.com',
    rcpt,
    trick: 't',
    phase,
    code,
    reply: `${code} x`,
  });
  const relay = (attempts: RelayAttempt[], change: Partial<HarakaOutFacts> = {}): HarakaOutFacts => ({
    address: '203.0.113.25:25',
    source: '203.0.113.25',
    error: null,
    errorCode: null,
    incomplete: null,
    attempts,
    reconnects: 0,
    ...change,
  });

  it('fails any 2xx to RCPT, naming who accepted it', () => {
    expect(judgeOpenRelay(relay([attempt('test@mxtoolboxsmtpdiag.com', 550)]), ['example.com']).status).toBe('OK');
    const foreign = judgeOpenRelay(relay([attempt('test@mxtoolboxsmtpdiag.com', 250)]), ['example.com']);
    expect(foreign.fix).toContain('accepts mail for other domains');
    expect(foreign.fix).not.toContain('allow_percent_hack');
    const viaBackend = judgeOpenRelay(relay([attempt('bob%mxtoolboxsmtpdiag.com@example.com', 250)]), ['example.com']);
    expect(viaBackend).toMatchObject({ status: 'CRITICAL', fix: expect.stringMatching(/^haraka-in passed these to the backend.*allow_percent_hack = no/) });
  });

  it('a refused sender refuses its recipients; 4xx and a stopped probe are unknown verdicts (WARNING)', () => {
    expect(judgeOpenRelay(relay([attempt('test@mxtoolboxsmtpdiag.com', 550, 'MAIL')]), ['example.com']).status).toBe('OK');
    expect(judgeOpenRelay(relay([attempt('bob%x@example.com', 451)]), ['example.com']).status).toBe('WARNING');
    expect(judgeOpenRelay(relay([attempt('a@b.example', 550)], { incomplete: 'stopped after 1 attempts: timeout' }), ['example.com']).status).toBe('WARNING');
    expect(judgeOpenRelay(relay([], { error: 'connect ECONNREFUSED' }), ['example.com']).status).toBe('UNKNOWN');
  });

  it('haraka-out: refused from here passes and says only that; a firewall drop passes; nothing listening is unknown', () => {
    expect(judgeHarakaOutRelay(relay([attempt('a@b.example', 550)]), ['10.0.0.2/32'])).toMatchObject({ status: 'OK', detail: expect.stringContaining('"refused from here"') });
    expect(judgeHarakaOutRelay(relay([], { error: 'no connection within 5 s', errorCode: 'ETIMEDOUT' }), ['10.0.0.2/32'])).toMatchObject({
      status: 'OK',
      detail: expect.stringContaining('dropped'),
    });
    expect(judgeHarakaOutRelay(relay([], { error: 'connect ECONNREFUSED', errorCode: 'ECONNREFUSED' }), ['10.0.0.2/32']).status).toBe('UNKNOWN');
    expect(judgeHarakaOutRelay(relay([attempt('a@b.example', 250)]), ['10.0.0.2/32']).status).toBe('CRITICAL');
  });

  it('one trick list for tests and selftest: haraka-in gets the foreign ones, haraka-out every one', () => {
    const params = { foreign: 'example.net', own: 'demo.test', ownHost: 'mx.demo.test', ipv4: '127.0.0.4', ipv6: '::1' };
    expect(foreignRelayTricks(params)).toEqual(
      expect.arrayContaining([
        'bob%example.net@demo.test',
        'example.net!bob@demo.test',
        '"bob@example.net"@demo.test',
        '@demo.test:bob@example.net',
        'bob@[127.0.0.4]',
        'bob@example.net.',
      ]),
    );
    expect(foreignRelayTricks(params)).not.toContain('alice@demo.test');
    expect(allRelayTricks(params)).toHaveLength(foreignRelayTricks(params).length + 4);
    const plan = inboundRelayPlan(config());
    expect(plan.senders).toEqual(['supertool@mxtoolboxsmtpdiag.com', '', 'postmaster@example.com']);
    expect(plan.recipients.slice(0, 2).map((r) => r.rcpt)).toEqual(['test@mxtoolboxsmtpdiag.com', 'test@example.com']);
  });
});

describe('targets and resolvers', () => {
  it('parses --target as an IP or a host name, with or without a port', () => {
    expect(parseTargetHostPort('mx.example.com', 25)).toEqual({ host: 'mx.example.com', port: 25, kind: 'name' });
    expect(parseTargetHostPort('MX.Example.com.:2525', 25)).toEqual({ host: 'mx.example.com', port: 2525, kind: 'name' });
    expect(parseTargetHostPort('203.0.113.25', 25)).toEqual({ host: '203.0.113.25', port: 25, kind: 'ip' });
    expect(parseTargetHostPort('203.0.113.25:587', 25)).toEqual({ host: '203.0.113.25', port: 587, kind: 'ip' });
    expect(parseTargetHostPort('[2001:db8::25]:25', 25)).toEqual({ host: '2001:db8::25', port: 25, kind: 'ip' });
    expect(parseTargetHostPort('2001:db8::25', 25)).toEqual({ host: '2001:db8::25', port: 25, kind: 'ip' });
    for (const bad of ['', 'a:b:c', 'mx.example.com:0', 'mx.example.com:70000', '999.1.1.1', '-bad-.example.com', 'under_score.example.com:25', 'mx.example.com/25']) {
      expect(parseTargetHostPort(bad, 25), bad).toBeNull();
    }
  });

  it('asks --resolver, else dns.servers, never the system resolver', () => {
    expect(chooseResolver('127.0.0.53', config())).toEqual({ servers: ['127.0.0.53'], from: '--resolver' });
    expect(chooseResolver('[::1]:5353', config())).toEqual({ servers: ['[::1]:5353'], from: '--resolver' });
    expect(chooseResolver(undefined, config('dns:\n  servers: [127.0.0.1:53]\n'))).toEqual({ servers: ['127.0.0.1:53'], from: 'dns.servers' });
    expect(chooseResolver(undefined, config())).toMatchObject({ error: expect.stringContaining('never asks the system resolver') });
    expect(chooseResolver('resolver.example.net', config())).toMatchObject({ error: expect.stringContaining('expected IP or IP:PORT') });
    expect(parseResolverAddress('10.0.0.1:99999')).toBeNull();
    expect(reverseName('203.0.113.25')).toBe('25.113.0.203.in-addr.arpa');
    expect(reverseName('2001:db8::25')).toBe('5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa');
  });

  it('connects where senders do: a wildcard listen address becomes the public address', () => {
    expect(inboundTargets(config())).toEqual([{ host: '203.0.113.25', port: 25 }]);
    expect(inboundTargets(config('public_ipv6: 2001:db8::25\ninbound:\n  listen: ["0.0.0.0:25", "[::]:25"]\n'))).toEqual([
      { host: '203.0.113.25', port: 25 },
      { host: '2001:db8::25', port: 25 },
    ]);
  });

  it('judges the reverse DNS of the address senders reach: the public one for a listen address behind NAT or on loopback', () => {
    const natted = config('public_ipv6: 2001:db8::25\ninbound:\n  listen: ["10.0.0.5:25", "[fd00::5]:25"]\n');
    expect(inboundTargets(natted)).toEqual([
      { host: '10.0.0.5', port: 25 },
      { host: 'fd00::5', port: 25 },
    ]);
    expect(senderFacingIp(natted, '10.0.0.5')).toBe('203.0.113.25');
    expect(senderFacingIp(natted, '127.0.0.1')).toBe('203.0.113.25');
    expect(senderFacingIp(natted, 'fd00::5')).toBe('2001:db8::25');
    expect(senderFacingIp(config(), '::1')).toBe('::1');
    expect(senderFacingIp(natted, '203.0.113.25')).toBe('203.0.113.25');
    expect(senderFacingIp(natted, '198.51.100.9')).toBe('198.51.100.9');
  });
});

describe('the report', () => {
  it('one line per check with MXToolbox’s name, the fix under a failure, JSON with the same, worst status wins', () => {
    const report = findingsReport(
      'selftest',
      [
        checkLine('banner@203.0.113.25:25', 'SMTP Banner Check', { status: 'OK', detail: 'greets as mx.example.com' }, 12.4),
        checkLine('rdns@203.0.113.25', 'SMTP Reverse DNS Mismatch', { status: 'CRITICAL', detail: 'no PTR', fix: 'ask the provider' }),
        checkLine('target@x', null, { status: 'WARNING', detail: 'w', fix: 'do y' }),
        checkLine('ok@x', null, { status: 'OK', detail: 'fine', fix: 'never shown for a pass' }),
      ],
      now,
    );
    expect(formatFindings(report)).toBe(
      [
        'mailproxy selftest CRITICAL: 2 pass, 1 warn, 1 fail',
        'PASS     banner@203.0.113.25:25  SMTP Banner Check          greets as mx.example.com',
        'FAIL     rdns@203.0.113.25       SMTP Reverse DNS Mismatch  no PTR',
        '         fix: ask the provider',
        'WARN     target@x                -                          w',
        '         fix: do y',
        'PASS     ok@x                    -                          fine',
        '',
      ].join('\n'),
    );
    const json = JSON.parse(formatFindingsJson(report));
    expect(json).toMatchObject({ command: 'selftest', status: 'CRITICAL', exit_code: 2, checked_at: now.toISOString() });
    expect(json.checks[0]).toEqual({
      name: 'banner@203.0.113.25:25',
      mxtoolbox: 'SMTP Banner Check',
      status: 'OK',
      result: 'pass',
      detail: 'greets as mx.example.com',
      fix: null,
      ms: 12,
      metrics: {},
    });
    expect(json.checks[1].fix).toBe('ask the provider');
  });
});
