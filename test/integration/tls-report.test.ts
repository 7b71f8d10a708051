import { Resolver } from 'node:dns/promises';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { dkimVerify } from 'mailauth/lib/dkim/verify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSelfSigned } from '../../src/certs/selfsigned';
import { makeTestCa, type TestCa } from '../../src/certs/testca';
import { tlsRptDir } from '../../src/config/paths';
import { loadConfigText } from '../../src/config/load';
import { DNSSEC_TOOLS, startDnssecPeers, type DnssecPeers } from '../../src/testpeers/dnssec';
import { freePort } from '../../src/testpeers/ports';
import { startSmtpSink, type ReceivedMessage, type SmtpSink } from '../../src/testpeers/smtp-sink';
import { readDay } from '../../src/tlsrpt/store';
import { runCli } from '../helpers/cli';
import { missingPeers, requirePeers } from '../helpers/peers';
import { eventually } from '../helpers/poll';
import { relayOut } from '../helpers/send';
import { daneOutbound, spkiSha256, startPolicyHost } from '../helpers/dane-rig';
import { withTopology } from '../helpers/topology';

const DOMAINS = {
  dane: { domain: 'rpt-dane.test', address: '127.0.0.51' },
  mismatch: { domain: 'rpt-mismatch.test', address: '127.0.0.52' },
  sts: { domain: 'rpt-sts.test', address: '127.0.0.53' },
  noStarttls: { domain: 'rpt-nostarttls.test', address: '127.0.0.54' },
} as const;
type Case = keyof typeof DOMAINS;
const mxOf = (name: Case) => `mx.${DOMAINS[name].domain}`;
const REPORTS = { domain: 'reports.test', address: '127.0.0.55', mailbox: 'tlsrpt@reports.test' };
const POLICY_HOST = '127.0.0.56';
/** Where each domain wants its reports: the stand-in, but the domain without STARTTLS wants them at home. */
const ruaOf = (name: Case) => (name === 'noStarttls' ? `tlsrpt@${DOMAINS.noStarttls.domain}` : REPORTS.mailbox);

const run = requirePeers('TLS reports against NSD and unbound', missingPeers([...DNSSEC_TOOLS, '/usr/bin/openssl']));

/** The report inside an emailed report: the application/tlsrpt+gzip part, base64, gunzipped. */
function attachedReport(message: ReceivedMessage): { headers: string; report: Record<string, unknown>; partHeaders: string } {
  const raw = message.raw.toString('latin1');
  // Unfolded: a long Subject continues on the next line.
  const headers = raw.slice(0, raw.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ');
  const part = /\r\n(Content-Type: application\/tlsrpt\+gzip[\s\S]*?)\r\n\r\n([A-Za-z0-9+/=\r\n]+)\r\n--/i.exec(raw);
  if (!part) throw new Error(`no application/tlsrpt+gzip part in:\n${raw.slice(0, 3000)}`);
  const report = JSON.parse(gunzipSync(Buffer.from(part[2]!.replace(/\r\n/g, ''), 'base64')).toString('utf8')) as Record<string, unknown>;
  return { headers, report, partHeaders: part[1]! };
}

describe.runIf(run)('TLS reports (RFC 8460) from haraka-out', () => {
  let dir = '';
  let port = 0;
  let peers: DnssecPeers;
  let pkix: TestCa;
  let policyServer: https.Server;
  const sinks = new Map<Case, SmtpSink>();
  let reportSink: SmtpSink;
  /** The TLSA record of the DANE domain's MX, as the report quotes it. */
  let daneTlsa = '';

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-tlsrpt-'));
    port = await freePort(DOMAINS.dane.address);
    pkix = makeTestCa(path.join(dir, 'pkix-ca'));
    const selfSigned = (name: string) => {
      const pair = makeSelfSigned(path.join(dir, name), name);
      return { key: readFileSync(pair.keyPath, 'utf8'), cert: readFileSync(pair.certPath, 'utf8') };
    };
    const daneCert = selfSigned(mxOf('dane'));
    const mismatchCert = selfSigned(mxOf('mismatch'));
    const otherKey = selfSigned('other.test');
    const mx = (name: Case) => ['@ IN MX 10 mx', `mx IN A ${DOMAINS[name].address}`];
    const tlsa = (hash: string) => `_${port}._tcp.mx IN TLSA 3 1 1 ${hash}`;
    daneTlsa = `3 1 1 ${spkiSha256(daneCert.cert)}`;
    peers = await startDnssecPeers({
      dir: path.join(dir, 'dns'),
      authoritativeHost: '127.0.0.57',
      resolverHost: '127.0.0.58',
      zones: [
        { name: DOMAINS.dane.domain, records: [...mx('dane'), tlsa(spkiSha256(daneCert.cert))] },
        { name: DOMAINS.mismatch.domain, records: [...mx('mismatch'), tlsa(spkiSha256(otherKey.cert))] },
        // DANE does not apply to these (unsigned): the rig's DNS routes them, and MTA-STS decides.
        { name: DOMAINS.sts.domain, records: mx('sts'), signed: false },
        { name: DOMAINS.noStarttls.domain, records: mx('noStarttls'), signed: false },
        { name: REPORTS.domain, records: ['@ IN MX 10 mx', `mx IN A ${REPORTS.address}`], signed: false },
      ],
    });
    sinks.set('dane', await startSmtpSink({ host: DOMAINS.dane.address, port, name: mxOf('dane'), tls: daneCert }));
    sinks.set('mismatch', await startSmtpSink({ host: DOMAINS.mismatch.address, port, name: mxOf('mismatch'), tls: mismatchCert }));
    sinks.set('sts', await startSmtpSink({ host: DOMAINS.sts.address, port, name: mxOf('sts'), tls: pkix.issue([mxOf('sts')]) }));
    sinks.set('noStarttls', await startSmtpSink({ host: DOMAINS.noStarttls.address, port, name: mxOf('noStarttls') }));
    reportSink = await startSmtpSink({ host: REPORTS.address, port, name: `mx.${REPORTS.domain}` });
    policyServer = await startPolicyHost(pkix, [`mta-sts.${DOMAINS.sts.domain}`, `mta-sts.${DOMAINS.noStarttls.domain}`], POLICY_HOST, (domain) => `mx.${domain}`);
  }, 60_000);

  afterAll(async () => {
    for (const sink of [...sinks.values(), reportSink]) await sink?.close();
    await new Promise((resolve) => policyServer?.close(resolve));
    await peers?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts a day of sessions per policy and emails one report per domain to its rua, through the queue', async () => {
    await withTopology(
      daneOutbound(
        { port, peers, ca: pkix, policyHost: policyServer },
        { tls_rpt: { enabled: true, organization: 'mailproxy test', contact: 'postmaster@demo.test', from: 'tlsrpt@demo.test' } },
      ),
      async (t) => {
        const zone = t.dns.zone;
        for (const name of ['sts', 'noStarttls'] as const) {
          const { domain, address } = DOMAINS[name];
          zone.TXT = { ...zone.TXT, [`_mta-sts.${domain}`]: ['v=STSv1; id=1;'] };
          zone.A = { ...zone.A, [`mta-sts.${domain}`]: [POLICY_HOST], [mxOf(name)]: [address] };
          zone.MX = { ...zone.MX, [domain]: [{ exchange: mxOf(name), preference: 10 }] };
        }
        zone.MX = { ...zone.MX, [REPORTS.domain]: [{ exchange: `mx.${REPORTS.domain}`, preference: 10 }] };
        zone.A = { ...zone.A, [`mx.${REPORTS.domain}`]: [REPORTS.address] };
        for (const name of Object.keys(DOMAINS) as Case[]) {
          zone.TXT = { ...zone.TXT, [`_smtp._tls.${DOMAINS[name].domain}`]: [`v=TLSRPTv1; rua=mailto:${ruaOf(name)}`] };
          await relayOut(t, `bob@${DOMAINS[name].domain}`, `tls report ${name}`);
        }
        const log = () => t.haraka['haraka-out']?.output() ?? '';
        expect((await sinks.get('dane')!.waitForMessages(1, 30_000))[0]!.secure).toBe(true);
        expect((await sinks.get('sts')!.waitForMessages(1, 30_000))[0]!.secure).toBe(true);
        await eventually('the mismatch and the MX without STARTTLS deferred', () => (log().match(/Temp failing \S+ for \d+ seconds/g) ?? []).length >= 2, {
          timeoutMs: 30_000,
          context: () => log().slice(-6000),
        });
        expect(sinks.get('mismatch')!.messages).toHaveLength(0);
        expect(sinks.get('noStarttls')!.messages).toHaveLength(0);

        // haraka-out saves its counts within seconds; the day's file then holds the four policies.
        const { config } = loadConfigText(readFileSync(t.configPath, 'utf8')) as Extract<ReturnType<typeof loadConfigText>, { ok: true }>;
        const storeDir = tlsRptDir(config);
        const today = new Date().toISOString().slice(0, 10);
        await eventually('the four policies saved', async () => (await readDay(storeDir, today).catch(() => ({ policies: [] }))).policies.length === 4, {
          timeoutMs: 20_000,
          context: () => log().slice(-4000),
        });

        // The DKIM key that signs the emailed reports, made by `tls-report key` and published at the From domain.
        const key = await runCli(['tls-report', 'key', '--config', t.configPath]);
        expect(key.code, key.text).toBe(0);
        expect(key.out).toMatch(/^made a new DKIM key for TLS reports/);
        const dkimLine = /^ {2}tlsrpt\._domainkey\.demo\.test\. {2}TXT {2}(.*)$/m.exec(key.out);
        expect(dkimLine, key.out).not.toBeNull();
        zone.TXT = { ...zone.TXT, 'tlsrpt._domainkey.demo.test': [[...dkimLine![1]!.matchAll(/"([^"]*)"/g)].map((match) => match[1]).join('')] };

        const sent = await runCli(['tls-report', 'send', '--config', t.configPath, '--day', today]);
        expect(sent.code, sent.text).toBe(0);
        for (const name of Object.keys(DOMAINS) as Case[]) expect(sent.out).toContain(`${today} ${DOMAINS[name].domain}: sent to mailto:${ruaOf(name)}`);
        // A second run sends nothing twice.
        const again = await runCli(['tls-report', 'send', '--config', t.configPath, '--day', today]);
        expect(again.code, again.text).toBe(0);
        expect(again.out).toContain('nothing to report');

        // The report to the domain whose MX offers no STARTTLS under its enforce policy arrives all the same,
        // without TLS (RFC 8460 §3), and that session is not counted in the next report.
        const ownReport = (await sinks.get('noStarttls')!.waitForMessages(1, 60_000))[0]!;
        expect(ownReport.secure).toBe(false);
        const reports = [...(await reportSink.waitForMessages(3, 60_000)), ownReport];
        expect(reports).toHaveLength(4);
        await new Promise((resolve) => setTimeout(resolve, 6_000));
        const after = await readDay(storeDir, today);
        expect(after.policies.find((entry) => entry.policy.domain === DOMAINS.noStarttls.domain)).toMatchObject({ successes: 0, failures: 1 });
        const byDomain = new Map<string, ReturnType<typeof attachedReport> & { message: ReceivedMessage }>();
        const resolver = new Resolver();
        resolver.setServers([t.dns.address]);
        for (const message of reports) {
          expect(message.mailFrom).toBe('');
          // Signed at the From domain, and unchanged on the way through haraka-out's queue.
          const dkim = await dkimVerify(message.raw, { resolver: ((name: string, type: string) => resolver.resolve(name, type)) as never });
          expect(dkim.results.map((result) => [result.status.result, result.signingDomain, result.selector])).toEqual([['pass', 'demo.test', 'tlsrpt']]);
          expect([ruaOf('dane'), ruaOf('noStarttls')]).toContain(message.rcptTo[0]);
          const parsed = attachedReport(message);
          byDomain.set(/^TLS-Report-Domain: (\S+)/im.exec(parsed.headers)?.[1] ?? '?', { ...parsed, message });
        }
        expect([...byDomain.keys()].sort()).toEqual(
          Object.values(DOMAINS)
            .map((entry) => entry.domain)
            .sort(),
        );

        const policyOf = (domain: string) => {
          const entry = byDomain.get(domain)!;
          expect(entry.headers).toMatch(/^Content-Type: multipart\/report;[\s\S]*report-type="?tlsrpt"?/im);
          expect(entry.headers).toMatch(new RegExp(`^Subject: Report Domain: ${domain.replace(/\./g, '\\.')} Submitter: mx\\.demo\\.test Report-ID: <`, 'im'));
          expect(entry.headers).toMatch(/^TLS-Report-Submitter: mx\.demo\.test/im);
          const report = entry.report as {
            'organization-name': string;
            'contact-info': string;
            'report-id': string;
            'date-range': { 'start-datetime': string; 'end-datetime': string };
            policies: {
              policy: { 'policy-type': string; 'policy-string': string[]; 'policy-domain': string; 'mx-host': string[] };
              summary: { 'total-successful-session-count': number; 'total-failure-session-count': number };
              'failure-details'?: { 'result-type': string; 'sending-mta-ip': string; 'receiving-mx-hostname': string; 'receiving-ip'?: string; 'failed-session-count': number }[];
            }[];
          };
          expect(report['organization-name']).toBe('mailproxy test');
          expect(report['contact-info']).toBe('postmaster@demo.test');
          expect(report['report-id']).toBeTruthy();
          expect(report['date-range']).toEqual({ 'start-datetime': `${today}T00:00:00Z`, 'end-datetime': `${today}T23:59:59Z` });
          expect(report.policies).toHaveLength(1);
          return report.policies[0]!;
        };

        const dane = policyOf(DOMAINS.dane.domain);
        expect(dane.policy).toEqual({ 'policy-type': 'tlsa', 'policy-string': [daneTlsa], 'policy-domain': DOMAINS.dane.domain, 'mx-host': [mxOf('dane')] });
        expect(dane.summary).toEqual({ 'total-successful-session-count': 1, 'total-failure-session-count': 0 });

        const mismatch = policyOf(DOMAINS.mismatch.domain);
        expect(mismatch.policy['policy-type']).toBe('tlsa');
        expect(mismatch.summary).toEqual({ 'total-successful-session-count': 0, 'total-failure-session-count': 1 });
        expect(mismatch['failure-details']).toEqual([
          expect.objectContaining({
            'result-type': 'tlsa-invalid',
            // The socket's address here is loopback, not public (as behind NAT): the row names public_ipv4.
            'sending-mta-ip': t.config.public_ipv4,
            'receiving-mx-hostname': mxOf('mismatch'),
            'receiving-ip': DOMAINS.mismatch.address,
            'failed-session-count': 1,
          }),
        ]);

        const sts = policyOf(DOMAINS.sts.domain);
        expect(sts.policy).toEqual({
          'policy-type': 'sts',
          'policy-string': ['version: STSv1', 'mode: enforce', `mx: ${mxOf('sts')}`, 'max_age: 86400'],
          'policy-domain': DOMAINS.sts.domain,
          'mx-host': [mxOf('sts')],
        });
        expect(sts.summary).toEqual({ 'total-successful-session-count': 1, 'total-failure-session-count': 0 });

        const noStarttls = policyOf(DOMAINS.noStarttls.domain);
        expect(noStarttls.policy['policy-type']).toBe('sts');
        expect(noStarttls.summary).toEqual({ 'total-successful-session-count': 0, 'total-failure-session-count': 1 });
        expect(noStarttls['failure-details']).toEqual([
          expect.objectContaining({ 'result-type': 'starttls-not-supported', 'receiving-mx-hostname': mxOf('noStarttls'), 'failed-session-count': 1 }),
        ]);
      },
    );
  }, 180_000);
});
