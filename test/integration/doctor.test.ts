// `mailproxy doctor` against a DNS server on loopback holding the appliance's zone (and DNSBL zones), and an
// HTTPS MTA-STS policy host on loopback with a certificate from a CA made for this run. A correct zone
// passes every check; each broken record gives its own finding, fix and exit code. Nothing asks the system
// resolver, and the public address in the records (192.0.2.25, TEST-NET-1) is data only, never connected to.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { makeTestCa } from '../../src/certs/testca';
import { startDnsServer, type DnsServer, type Zone } from '../../src/testpeers/dns-server';
import { runCli } from '../helpers/cli';

const DOMAIN = 'demo.test';
const HOSTNAME = 'mx.demo.test';
const PUBLIC_IP = '192.0.2.25';
const POLICY_HOST = '127.0.0.35';
const GOOD_POLICY = `version: STSv1\r\nmode: enforce\r\nmx: ${HOSTNAME}\r\nmax_age: 604800\r\n`;
const TEST_ZONE = 'bl.test.example';

/** The records a correct setup publishes. */
function goodZone(): Zone {
  return {
    MX: { [DOMAIN]: [{ exchange: HOSTNAME, preference: 10 }] },
    A: { [HOSTNAME]: [PUBLIC_IP], [`mta-sts.${DOMAIN}`]: [POLICY_HOST] },
    PTR: { '25.2.0.192.in-addr.arpa': [HOSTNAME] },
    TXT: {
      [DOMAIN]: [`v=spf1 mx ip4:${PUBLIC_IP} -all`, 'google-site-verification=not-spf'],
      [`_dmarc.${DOMAIN}`]: [`v=DMARC1; p=reject; rua=mailto:postmaster@${DOMAIN}`],
      [`_mta-sts.${DOMAIN}`]: ['v=STSv1; id=20260101T000000'],
      [`_smtp._tls.${DOMAIN}`]: [`v=TLSRPTv1; rua=mailto:tls-reports@${DOMAIN}`],
    },
  };
}

interface JsonCheck {
  name: string;
  mxtoolbox: string | null;
  status: string;
  detail: string;
  fix: string | null;
}

describe('mailproxy doctor', () => {
  let dir = '';
  let dns: DnsServer;
  let server: https.Server;
  let policy = GOOD_POLICY;
  let config = '';
  let ca = '';

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-doctor-'));
    const testCa = makeTestCa(path.join(dir, 'ca'));
    ca = testCa.caPath;
    const issued = testCa.issue([`mta-sts.${DOMAIN}`]);
    server = https.createServer({ key: issued.key, cert: issued.cert }, (request, response) => {
      if (request.url !== '/.well-known/mta-sts.txt') return void response.writeHead(404).end();
      response.writeHead(200, { 'content-type': 'text/plain' }).end(policy);
    });
    await new Promise<void>((resolve) => server.listen(0, POLICY_HOST, resolve));
    dns = await startDnsServer(goodZone());
    config = path.join(dir, 'mailproxy.yaml');
    writeFileSync(
      config,
      stringify({
        version: 1,
        hostname: HOSTNAME,
        public_ipv4: PUBLIC_IP,
        domains: [DOMAIN],
        dns: { servers: [dns.address] },
        outbound: { mta_sts_port: (server.address() as AddressInfo).port },
      }),
    );
  });

  afterAll(async () => {
    await dns?.close();
    await new Promise((resolve) => server?.close(resolve));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    for (const key of Object.keys(dns.zone)) delete dns.zone[key as keyof Zone];
    Object.assign(dns.zone, goodZone());
    policy = GOOD_POLICY;
  });

  async function doctor(extra: string[] = []): Promise<{ code: number; by: Record<string, JsonCheck>; out: string }> {
    const result = await runCli(['doctor', '--config', config, '--ca', ca, '--json', ...extra]);
    expect(result.err).toBe('');
    const json = JSON.parse(result.out) as { exit_code: number; checks: JsonCheck[] };
    expect(json.exit_code).toBe(result.code);
    return { code: result.code, by: Object.fromEntries(json.checks.map((check) => [check.name, check])), out: result.out };
  }

  /** Every check but `failing` passed. */
  function onlyFailing(by: Record<string, JsonCheck>, failing: string[]): void {
    expect(
      Object.values(by)
        .filter((check) => check.status !== 'OK')
        .map((check) => check.name)
        .sort(),
    ).toEqual([...failing].sort());
  }

  const ALL = [
    `address@${HOSTNAME}`,
    `ptr@${PUBLIC_IP}`,
    `mx@${DOMAIN}`,
    `spf@${DOMAIN}`,
    `spf.lookups@${DOMAIN}`,
    `spf.ip@${DOMAIN}`,
    `dmarc@${DOMAIN}`,
    `mta-sts@${DOMAIN}`,
    `tls-rpt@${DOMAIN}`,
    'dnsbl@zen.spamhaus.org',
    'dnsbl@b.barracudacentral.org',
    'dnsbl@bl.spamcop.net',
    'dnsbl@dnsbl-1.uceprotect.net',
  ];

  it('exit 0: a correct zone passes every check, one line each with MXToolbox’s name', async () => {
    const human = await runCli(['doctor', '--config', config, '--ca', ca]);
    expect(human.err).toBe('');
    const lines = human.out.trimEnd().split('\n');
    expect(lines[0]).toBe(`mailproxy doctor OK: ${ALL.length} pass`);
    expect(lines.slice(1).map((line) => line.split(/\s+/).slice(0, 2).join(' '))).toEqual(ALL.map((name) => `PASS ${name}`));
    expect(human.out).toMatch(/spf\.lookups@demo\.test +SPF Included Lookups, SPF Void Lookups +demo\.test: 1 DNS lookup, 0 void \(limits 10 and 2\)/);
    expect(human.out).toMatch(/spf\.ip@demo\.test +SPF Authentication +demo\.test authorizes 192\.0\.2\.25 pass/);
    expect(human.out).toMatch(/mta-sts@demo\.test +MTA-STS Lookup +demo\.test: mode enforce, mx: mx\.demo\.test, max_age 604800/);
    expect(human.out).toMatch(/dnsbl@zen\.spamhaus\.org +Blacklist Check +192\.0\.2\.25 is not listed in Spamhaus ZEN/);
    expect(human.code).toBe(0);
    // Every name was asked of the loopback server: the DNSBL queries included.
    expect(dns.queries).toContainEqual({ name: '25.2.0.192.zen.spamhaus.org', type: 'A' });
  });

  it('SPF missing the IP: SPF Authentication fails, with the record to publish', async () => {
    dns.zone.TXT![DOMAIN] = ['v=spf1 ip4:198.51.100.7 -all'];
    const { code, by } = await doctor();
    onlyFailing(by, [`spf.ip@${DOMAIN}`]);
    expect(by[`spf.ip@${DOMAIN}`]).toMatchObject({ status: 'CRITICAL', mxtoolbox: 'SPF Authentication', detail: expect.stringContaining('does not authorize 192.0.2.25') });
    expect(by[`spf.ip@${DOMAIN}`]!.fix).toBe('publish demo.test. TXT "v=spf1 ip4:192.0.2.25 ip4:198.51.100.7 -all"');
    expect(code).toBe(2);
  });

  it('SPF over the 10-lookup limit (through includes): SPF Included Lookups fails', async () => {
    // The public IP comes first, so a receiver's evaluation for it still passes; a stranger's walks all 11 includes.
    dns.zone.TXT![DOMAIN] = [`v=spf1 ip4:${PUBLIC_IP} include:s1.${DOMAIN} -all`];
    for (let n = 1; n <= 11; n++) dns.zone.TXT![`s${n}.${DOMAIN}`] = [n < 11 ? `v=spf1 include:s${n + 1}.${DOMAIN} -all` : 'v=spf1 -all'];
    const { code, by } = await doctor();
    onlyFailing(by, [`spf.lookups@${DOMAIN}`]);
    expect(by[`spf.lookups@${DOMAIN}`]).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('takes more than 10 DNS lookups') });
    expect(by[`spf.lookups@${DOMAIN}`]!.fix).toContain('the appliance itself needs only ip4:192.0.2.25');
    expect(code).toBe(2);
  });

  it('SPF over the 2-void-lookup limit, a syntax error, and two records: each fails', async () => {
    dns.zone.TXT![DOMAIN] = [`v=spf1 a:gone1.${DOMAIN} a:gone2.${DOMAIN} a:gone3.${DOMAIN} ip4:${PUBLIC_IP} -all`];
    let result = await doctor();
    expect(result.by[`spf.lookups@${DOMAIN}`]).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('more than 2 of the SPF record') });
    dns.zone.TXT![DOMAIN] = [`v=spf1 ip4:${PUBLIC_IP} bogus:term -all`];
    result = await doctor();
    expect(result.by[`spf@${DOMAIN}`]).toMatchObject({
      status: 'CRITICAL',
      mxtoolbox: 'SPF Record Published, SPF Syntax Check',
      detail: expect.stringContaining('is not valid SPF'),
    });
    dns.zone.TXT![DOMAIN] = [`v=spf1 ip4:${PUBLIC_IP} -all`, 'v=spf1 mx -all'];
    result = await doctor();
    expect(result.by[`spf@${DOMAIN}`]).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('has 2 SPF records') });
    expect(result.code).toBe(2);
  });

  it('an SPF record longer than one DNS string (255 octets) is read whole', async () => {
    const filler = Array.from({ length: 20 }, (_, n) => `ip4:198.51.100.${n + 1}`).join(' ');
    dns.zone.TXT![DOMAIN] = [`v=spf1 ${filler} ip4:${PUBLIC_IP} -all`];
    const { code, by } = await doctor();
    expect(by[`spf.ip@${DOMAIN}`]!.status).toBe('OK');
    expect(code).toBe(0);
  });

  it('MX pointing elsewhere: the MX check fails', async () => {
    dns.zone.MX![DOMAIN] = [{ exchange: 'mx.elsewhere.example', preference: 10 }];
    delete dns.zone.TXT![`_mta-sts.${DOMAIN}`];
    const { code, by } = await doctor();
    onlyFailing(by, [`mx@${DOMAIN}`]);
    expect(by[`mx@${DOMAIN}`]).toMatchObject({
      status: 'CRITICAL',
      mxtoolbox: 'MX Lookup',
      detail: 'MX of demo.test is 10 mx.elsewhere.example, not hostname mx.demo.test: mail for demo.test does not reach haraka-in',
    });
    expect(by[`mx@${DOMAIN}`]!.fix).toBe('publish demo.test. MX 10 mx.demo.test. (and remove every other MX of demo.test)');
    expect(code).toBe(2);
  });

  it('no DMARC: fails; p=none: warns (DMARC Policy Not Enabled)', async () => {
    delete dns.zone.TXT![`_dmarc.${DOMAIN}`];
    const missing = await doctor();
    onlyFailing(missing.by, [`dmarc@${DOMAIN}`]);
    expect(missing.by[`dmarc@${DOMAIN}`]).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('demo.test has no DMARC record') });
    expect(missing.by[`dmarc@${DOMAIN}`]!.fix).toContain('publish _dmarc.demo.test. TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@demo.test"');
    expect(missing.code).toBe(2);

    dns.zone.TXT![`_dmarc.${DOMAIN}`] = ['v=DMARC1; p=none'];
    const none = await doctor();
    onlyFailing(none.by, [`dmarc@${DOMAIN}`]);
    expect(none.by[`dmarc@${DOMAIN}`]).toMatchObject({ status: 'WARNING', detail: expect.stringContaining('DMARC Policy Not Enabled') });
    expect(none.code).toBe(1);
  });

  it('MTA-STS mx: not matching the MX: fails for an enforce policy; a policy that cannot be fetched fails too', async () => {
    policy = 'version: STSv1\r\nmode: enforce\r\nmx: mx.old-provider.example\r\nmax_age: 604800\r\n';
    const mismatch = await doctor();
    onlyFailing(mismatch.by, [`mta-sts@${DOMAIN}`]);
    expect(mismatch.by[`mta-sts@${DOMAIN}`]).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('no mx: line matches mx.demo.test') });
    expect(mismatch.by[`mta-sts@${DOMAIN}`]!.fix).toContain('put "mx: mx.demo.test" in https://mta-sts.demo.test/.well-known/mta-sts.txt');
    expect(mismatch.code).toBe(2);

    delete dns.zone.A![`mta-sts.${DOMAIN}`];
    const unreachable = await doctor();
    expect(unreachable.by[`mta-sts@${DOMAIN}`]).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('announces a policy (id 20260101T000000), but') });
  });

  it('the public IP listed in a DNSBL zone: Blacklist Check fails with the delisting page', async () => {
    dns.zone.A![`25.2.0.192.${TEST_ZONE}`] = ['127.0.0.2'];
    dns.zone.TXT![`25.2.0.192.${TEST_ZONE}`] = ['Listed for sending spam, see https://bl.test.example/lookup'];
    const { code, by } = await doctor(['--dnsbl', `${TEST_ZONE}=https://bl.test.example/delist`, '--dnsbl', 'zen.spamhaus.org']);
    onlyFailing(by, [`dnsbl@${TEST_ZONE}`]);
    expect(Object.keys(by).filter((name) => name.startsWith('dnsbl@'))).toEqual([`dnsbl@${TEST_ZONE}`, 'dnsbl@zen.spamhaus.org']);
    expect(by[`dnsbl@${TEST_ZONE}`]).toMatchObject({
      status: 'CRITICAL',
      mxtoolbox: 'Blacklist Check',
      detail: `192.0.2.25 is LISTED in ${TEST_ZONE} (${TEST_ZONE}) (127.0.0.2): Listed for sending spam, see https://bl.test.example/lookup: receivers using it refuse mail from the VPS`,
    });
    expect(by[`dnsbl@${TEST_ZONE}`]!.fix).toContain('ask for removal at https://bl.test.example/delist');
    expect(code).toBe(2);
  });

  it('the address, PTR and TLS-RPT checks fail on wrong records', async () => {
    dns.zone.A![HOSTNAME] = ['198.51.100.9'];
    dns.zone.PTR!['25.2.0.192.in-addr.arpa'] = ['vps-25.provider.example'];
    dns.zone.TXT![`_smtp._tls.${DOMAIN}`] = ['v=TLSRPTv1; rua=tls-reports@demo.test'];
    const { code, by } = await doctor();
    onlyFailing(by, [`address@${HOSTNAME}`, `ptr@${PUBLIC_IP}`, `tls-rpt@${DOMAIN}`]);
    expect(by[`address@${HOSTNAME}`]).toMatchObject({ status: 'CRITICAL', fix: 'publish mx.demo.test. A 192.0.2.25 and remove A 198.51.100.9' });
    expect(by[`ptr@${PUBLIC_IP}`]).toMatchObject({ status: 'CRITICAL', fix: expect.stringContaining('set the PTR (reverse DNS) of 192.0.2.25 to mx.demo.test') });
    expect(by[`tls-rpt@${DOMAIN}`]).toMatchObject({ status: 'WARNING', fix: 'publish one _smtp._tls.demo.test. TXT "v=TLSRPTv1; rua=mailto:postmaster@demo.test"' });
    expect(code).toBe(2);
  });

  it('exit 3: refuses to ask the system resolver, and a malformed --dnsbl', async () => {
    const bare = path.join(dir, 'no-dns.yaml');
    writeFileSync(bare, stringify({ version: 1, hostname: HOSTNAME, public_ipv4: PUBLIC_IP, domains: [DOMAIN] }));
    const refused = await runCli(['doctor', '--config', bare]);
    expect(refused.code).toBe(3);
    expect(refused.err).toContain('this command never asks the system resolver');
    const withResolver = await runCli(['doctor', '--config', bare, '--resolver', dns.address, '--ca', ca, '--json']);
    expect(JSON.parse(withResolver.out).checks).toHaveLength(ALL.length);
    const bad = await runCli(['doctor', '--config', config, '--dnsbl', 'not a zone']);
    expect(bad.code).toBe(3);
    expect(bad.err).toContain('--dnsbl "not a zone"');
  });
});
