// The pure side of `mailproxy doctor`: each DNS verdict from gathered facts, the records its fixes spell
// out, and the DNSBL answers that are not listings.
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import {
  judgeAddresses,
  judgeDmarc,
  judgeMx,
  judgePtr,
  judgeSpfIp,
  judgeSpfLookups,
  judgeSpfRecord,
  suggestSpf,
  type DmarcFacts,
  type SpfEvaluation,
  type SpfFacts,
} from '../../src/doctor/checks';
import { DEFAULT_DNSBL_ZONES, dnsblQueryName, judgeDnsbl, parseDnsblZone } from '../../src/doctor/dnsbl-checks';
import { judgeMtaSts, judgeTlsRpt, type MtaStsFacts } from '../../src/doctor/mta-sts-checks';
import type { Lookup } from '../../src/selftest/dns';

function config(extra = ''): Config {
  const loaded = loadConfigText(`version: 1\nhostname: mx.example.com\npublic_ipv4: 203.0.113.25\ndomains: [example.com]\n${extra}`);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  return loaded.config;
}

const records = <T>(...values: T[]): Lookup<T> => ({ kind: 'records', values });
const none: Lookup<never> = { kind: 'none', code: 'ENOTFOUND' };
const failed: Lookup<never> = { kind: 'error', message: 'ETIMEOUT' };

describe('MX, A/AAAA, PTR', () => {
  it('MX is hostname and only hostname', () => {
    expect(judgeMx('example.com', records({ exchange: 'mx.example.com', priority: 10 }), 'mx.example.com').status).toBe('OK');
    expect(judgeMx('example.com', records({ exchange: 'mx.example.com', priority: 10 }, { exchange: 'backup.example.net', priority: 20 }), 'mx.example.com').status).toBe(
      'WARNING',
    );
    expect(judgeMx('example.com', records({ exchange: 'mx.elsewhere.example', priority: 10 }), 'mx.example.com').status).toBe('CRITICAL');
    expect(judgeMx('example.com', none, 'mx.example.com').status).toBe('CRITICAL');
    expect(judgeMx('example.com', failed, 'mx.example.com').status).toBe('UNKNOWN');
  });

  it('A and AAAA are the public IPs; an AAAA without public_ipv6 warns', () => {
    expect(judgeAddresses(config(), records('203.0.113.25'), none).status).toBe('OK');
    expect(judgeAddresses(config(), records('203.0.113.25'), records('2001:db8::99'))).toMatchObject({ status: 'WARNING', fix: expect.stringContaining('or set public_ipv6') });
    expect(judgeAddresses(config('public_ipv6: 2001:db8::25\n'), records('203.0.113.25'), records('2001:0db8::25')).status).toBe('OK');
    expect(judgeAddresses(config('public_ipv6: 2001:db8::25\n'), records('203.0.113.25'), none)).toMatchObject({
      status: 'CRITICAL',
      fix: 'publish mx.example.com. AAAA 2001:db8::25',
    });
    expect(judgeAddresses(config(), records('203.0.113.25', '198.51.100.1'), none).status).toBe('WARNING');
  });

  it('the PTR of each public IP is hostname', () => {
    expect(judgePtr('203.0.113.25', records('mx.example.com'), 'mx.example.com').status).toBe('OK');
    expect(judgePtr('203.0.113.25', records('mx.example.com', 'other.example.com'), 'mx.example.com').status).toBe('WARNING');
    expect(judgePtr('203.0.113.25', none, 'mx.example.com').status).toBe('CRITICAL');
  });
});

describe('SPF', () => {
  const evaluation = (result: string, comment = '', lookups = { count: 1, void: 0, limit: 10 }): SpfEvaluation => ({ result, comment, record: null, lookups });
  const spf = (txt: Lookup<string>, full: SpfEvaluation, ip: SpfEvaluation = full): SpfFacts => ({
    domain: 'example.com',
    records: txt,
    full,
    byIp: [{ ip: '203.0.113.25', evaluation: ip }],
  });

  it('spells out the record to publish', () => {
    expect(suggestSpf(null, ['203.0.113.25', '2001:db8::25'])).toBe('v=spf1 ip4:203.0.113.25 ip6:2001:db8::25 -all');
    expect(suggestSpf('v=spf1 mx ~all', ['203.0.113.25'])).toBe('v=spf1 ip4:203.0.113.25 mx ~all');
    expect(suggestSpf('v=spf1 +ip4:203.0.113.25 -all', ['203.0.113.25'])).toBe('v=spf1 +ip4:203.0.113.25 -all');
  });

  it('record: one, valid, not +all', () => {
    expect(judgeSpfRecord(spf(records('v=spf1 mx -all'), evaluation('fail')), config()).status).toBe('OK');
    expect(judgeSpfRecord(spf(none, evaluation('none')), config())).toMatchObject({ status: 'CRITICAL', fix: 'publish example.com. TXT "v=spf1 ip4:203.0.113.25 -all"' });
    expect(judgeSpfRecord(spf(records('v=spf1 +all'), evaluation('pass')), config()).detail).toContain('ends in +all');
    expect(judgeSpfRecord(spf(records('v=spf1 mx -all', 'v=spf1 a -all'), evaluation('permerror')), config()).status).toBe('CRITICAL');
    expect(judgeSpfRecord(spf(records('v=spf1 mx -all'), evaluation('temperror', 'DNS timeout')), config()).status).toBe('UNKNOWN');
    // Over the lookup limit is spf.lookups' finding, not a syntax error.
    expect(
      judgeSpfRecord(
        spf(records('v=spf1 include:a -all'), evaluation('permerror', 'x: permanent error in processing during lookup of p@example.com: Too many DNS requests')),
        config(),
      ).status,
    ).toBe('OK');
  });

  it('lookups: at most 10, at most 2 void', () => {
    expect(judgeSpfLookups(spf(records('v=spf1 mx -all'), evaluation('fail', '', { count: 10, void: 2, limit: 10 })), config())).toMatchObject({
      status: 'OK',
      metrics: { spf_lookups: 10, spf_void_lookups: 2 },
    });
    expect(judgeSpfLookups(spf(records('v=spf1 mx -all'), evaluation('permerror', 'Too many DNS requests', { count: 11, void: 0, limit: 10 })), config()).status).toBe('CRITICAL');
    expect(judgeSpfLookups(spf(records('v=spf1 mx -all'), evaluation('permerror', 'Too many void DNS results', { count: 3, void: 3, limit: 10 })), config()).status).toBe(
      'CRITICAL',
    );
  });

  it('authorizes the public IPs; adds only those it misses', () => {
    expect(judgeSpfIp(spf(records('v=spf1 mx -all'), evaluation('fail'), evaluation('pass')), config()).status).toBe('OK');
    expect(judgeSpfIp(spf(records('v=spf1 mx -all'), evaluation('fail'), evaluation('softfail')), config())).toMatchObject({
      status: 'CRITICAL',
      fix: 'publish example.com. TXT "v=spf1 ip4:203.0.113.25 mx -all"',
    });
    expect(judgeSpfIp(spf(records('v=spf1 mx -all'), evaluation('temperror', 'DNS timeout'), evaluation('temperror', 'DNS timeout')), config()).status).toBe('UNKNOWN');
  });
});

describe('DMARC, MTA-STS, TLS-RPT', () => {
  const dmarc = (change: Partial<DmarcFacts>): DmarcFacts => ({
    domain: 'example.com',
    records: none,
    result: 'none',
    policy: null,
    record: null,
    policyDomain: null,
    error: null,
    ...change,
  });

  it('DMARC: parses, and p=none only warns', () => {
    expect(judgeDmarc(dmarc({ records: records('v=DMARC1; p=reject'), result: 'pass', policy: 'reject', record: 'v=DMARC1; p=reject', policyDomain: 'example.com' })).status).toBe(
      'OK',
    );
    expect(judgeDmarc(dmarc({ records: records('v=DMARC1; p=none'), result: 'pass', policy: 'none', record: 'v=DMARC1; p=none', policyDomain: 'example.com' })).status).toBe(
      'WARNING',
    );
    expect(judgeDmarc(dmarc({ records: records('v=DMARC1; p=bogus') })).detail).toContain('does not parse');
    expect(judgeDmarc(dmarc({ records: records('v=DMARC1; p=reject', 'v=DMARC1; p=none') })).detail).toContain('has 2 DMARC records');
    expect(judgeDmarc(dmarc({})).status).toBe('CRITICAL');
    expect(judgeDmarc(dmarc({ records: failed })).status).toBe('UNKNOWN');
  });

  it('MTA-STS: reported when present; mx: lines must match the MX', () => {
    const sts = (change: Partial<MtaStsFacts>): MtaStsFacts => ({
      domain: 'example.com',
      txt: records('v=STSv1; id=1'),
      policy: { text: 'version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n' },
      mx: records({ exchange: 'mx.example.com', priority: 10 }),
      ...change,
    });
    expect(judgeMtaSts(sts({ txt: none }), 'mx.example.com')).toMatchObject({ status: 'OK', detail: expect.stringContaining('no MTA-STS') });
    expect(judgeMtaSts(sts({}), 'mx.example.com').status).toBe('OK');
    expect(judgeMtaSts(sts({ policy: { text: 'version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400\n' } }), 'mx.example.com').status).toBe('OK');
    expect(judgeMtaSts(sts({ policy: { text: 'version: STSv1\nmode: testing\nmx: mx.old.example\nmax_age: 86400\n' } }), 'mx.example.com').status).toBe('WARNING');
    expect(judgeMtaSts(sts({ policy: { text: 'version: STSv1\nmode: none\nmax_age: 86400\n' } }), 'mx.example.com').status).toBe('OK');
    expect(judgeMtaSts(sts({ txt: records('v=STSv1;') }), 'mx.example.com').status).toBe('WARNING');
    expect(judgeMtaSts(sts({ policy: { text: 'mode: enforce\n' } }), 'mx.example.com').status).toBe('CRITICAL');
  });

  it('TLS-RPT: reported when present; rua must be mailto: or https:', () => {
    expect(judgeTlsRpt('example.com', none).status).toBe('OK');
    expect(judgeTlsRpt('example.com', records('v=TLSRPTv1; rua=mailto:tls@example.com,https://reports.example.net/tls')).status).toBe('OK');
    expect(judgeTlsRpt('example.com', records('v=TLSRPTv1;')).status).toBe('WARNING');
    expect(judgeTlsRpt('example.com', records('v=TLSRPTv1; rua=mailto:a@example.com', 'v=TLSRPTv1; rua=mailto:b@example.com')).status).toBe('WARNING');
  });
});

describe('Blacklist Check', () => {
  const zen = DEFAULT_DNSBL_ZONES[0]!;
  it('asks the usual lists with the address reversed; a listing names the delisting page', () => {
    expect(DEFAULT_DNSBL_ZONES.map((zone) => zone.zone)).toEqual(['zen.spamhaus.org', 'b.barracudacentral.org', 'bl.spamcop.net', 'dnsbl-1.uceprotect.net']);
    expect(dnsblQueryName('203.0.113.25', 'zen.spamhaus.org')).toBe('25.113.0.203.zen.spamhaus.org');
    expect(judgeDnsbl({ ip: '203.0.113.25', zone: zen, a: none, txt: null }).status).toBe('OK');
    expect(judgeDnsbl({ ip: '203.0.113.25', zone: zen, a: records('127.0.0.3'), txt: records('https://check.spamhaus.org/query/ip/203.0.113.25') })).toMatchObject({
      status: 'CRITICAL',
      fix: expect.stringContaining('ask for removal at https://check.spamhaus.org/'),
    });
  });

  it('a refused query (127.255.255.x) or a rewritten NXDOMAIN is not a listing: UNKNOWN', () => {
    expect(judgeDnsbl({ ip: '203.0.113.25', zone: zen, a: records('127.255.255.254'), txt: null })).toMatchObject({
      status: 'UNKNOWN',
      detail: expect.stringContaining('refused the query'),
    });
    expect(judgeDnsbl({ ip: '203.0.113.25', zone: zen, a: records('198.51.100.80'), txt: null })).toMatchObject({
      status: 'UNKNOWN',
      detail: expect.stringContaining('rewrite NXDOMAIN'),
    });
    expect(judgeDnsbl({ ip: '203.0.113.25', zone: zen, a: failed, txt: null }).status).toBe('UNKNOWN');
  });

  it('--dnsbl ZONE[=URL]: a known zone keeps its name and page', () => {
    expect(parseDnsblZone('zen.spamhaus.org')).toEqual(zen);
    expect(parseDnsblZone('bl.example.net=https://bl.example.net/remove')).toEqual({ zone: 'bl.example.net', name: 'bl.example.net', delist: 'https://bl.example.net/remove' });
    expect(parseDnsblZone('not a zone')).toBeNull();
    expect(parseDnsblZone('bl.example.net=ftp://x')).toBeNull();
  });
});
