import { describe, expect, it } from 'vitest';
import { buildReport, reportDomains, reportFileName } from '../../src/tlsrpt/report';
import { SAMPLE_DAY, TLSA_STRING } from '../helpers/tlsrpt-day';

const SUBMITTER = { organization: 'Sender Org', contact: 'mailto:tlsrpt@sender.example' };

describe('TLS report (RFC 8460 §4)', () => {
  it('lists each policy domain of the day once, normalized and sorted', () => {
    expect(reportDomains(SAMPLE_DAY)).toEqual(['dane.example', 'sts.example']);
    expect(reportDomains({ day: '2024-03-05', policies: [] })).toEqual([]);
  });

  it('reports a DANE domain with its TLSA records, counts and failure rows', () => {
    const report = buildReport(SAMPLE_DAY, 'dane.example', SUBMITTER, 'r1');
    expect(report).toEqual({
      'organization-name': 'Sender Org',
      'date-range': { 'start-datetime': '2024-03-05T00:00:00Z', 'end-datetime': '2024-03-05T23:59:59Z' },
      'contact-info': 'mailto:tlsrpt@sender.example',
      'report-id': 'r1',
      policies: [
        {
          policy: { 'policy-type': 'tlsa', 'policy-string': [TLSA_STRING], 'policy-domain': 'dane.example', 'mx-host': ['mx1.dane.example'] },
          summary: { 'total-successful-session-count': 40, 'total-failure-session-count': 7 },
          'failure-details': [
            {
              'result-type': 'tlsa-invalid',
              'sending-mta-ip': '192.0.2.10',
              'receiving-mx-hostname': 'mx1.dane.example',
              'receiving-ip': '198.51.100.21',
              'failed-session-count': 5,
              'failure-reason-code': 'TLSA_NO_MATCH',
            },
            {
              'result-type': 'starttls-not-supported',
              'sending-mta-ip': '192.0.2.10',
              'receiving-mx-hostname': 'mx1.dane.example',
              'receiving-ip': '198.51.100.21',
              'failed-session-count': 2,
            },
          ],
        },
      ],
    });
  });

  it('reports an MTA-STS domain asked for in another case, leaving out what is unknown', () => {
    const report = buildReport(SAMPLE_DAY, 'Sts.Example', SUBMITTER, 'r2')!;
    expect(report.policies).toHaveLength(1);
    const [entry] = report.policies;
    expect(entry!.policy).toEqual({
      'policy-type': 'sts',
      'policy-string': ['version: STSv1', 'mode: enforce', 'mx: *.sts.example', 'max_age: 604800'],
      'policy-domain': 'sts.example',
      'mx-host': ['*.sts.example'],
    });
    expect(entry!.summary).toEqual({ 'total-successful-session-count': 12, 'total-failure-session-count': 4 });
    expect(entry!['failure-details'].map((row) => [row['result-type'], row['failed-session-count']])).toEqual([
      ['certificate-expired', 3],
      ['validation-failure', 1],
    ]);
    const backup = entry!['failure-details'][1]!;
    expect('receiving-ip' in backup).toBe(false);
    expect('failure-reason-code' in backup).toBe(false);
    // The JSON a receiver parses carries the same fields.
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  });

  it('keeps every policy of one domain (a DANE and an MTA-STS policy the same day)', () => {
    const day = {
      day: '2024-03-05',
      policies: [SAMPLE_DAY.policies[0]!, { ...SAMPLE_DAY.policies[1]!, policy: { ...SAMPLE_DAY.policies[1]!.policy, domain: 'dane.example' } }],
    };
    const report = buildReport(day, 'dane.example', SUBMITTER, 'r3')!;
    expect(report.policies.map((entry) => entry.policy['policy-type'])).toEqual(['tlsa', 'sts']);
    expect(report.policies.reduce((sum, entry) => sum + entry.summary['total-failure-session-count'], 0)).toBe(11);
  });

  it('has no report for a domain without a policy that day', () => {
    expect(buildReport(SAMPLE_DAY, 'other.example', SUBMITTER, 'r4')).toBeNull();
  });

  it('refuses a malformed day', () => {
    expect(() => buildReport({ ...SAMPLE_DAY, day: '2024-02-30' }, 'dane.example', SUBMITTER, 'r5')).toThrow(/not a UTC day/);
  });

  it('names the file sender!policy-domain!begin!end!unique-id.json.gz (§5.1)', () => {
    // 2024-03-05T00:00:00Z is 1709596800.
    expect(reportFileName('sender.example', 'dane.example', '2024-03-05', '20240305.dane-example')).toBe(
      'sender.example!dane.example!1709596800!1709683199!20240305daneexample.json.gz',
    );
    expect(reportFileName('Sender.Example.', 'bücher.example', '2024-03-05', '--')).toBe('sender.example!xn--bcher-kva.example!1709596800!1709683199.json.gz');
  });
});
