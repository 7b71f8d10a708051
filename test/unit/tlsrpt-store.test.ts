// The day's counts (day.ts), the result types (classify.ts) and the files (store.ts): what haraka-out keeps
// for TLS reports, read back the way `mailproxy tls-report send` reads it.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { certificateResult, stsPolicyResult } from '../../src/tlsrpt/classify';
import { addOutcome, emptyDay, MAX_FAILURE_ROWS, MAX_POLICIES_PER_DOMAIN, MAX_POLICY_STRINGS, MAX_STRING_LENGTH, parseDay } from '../../src/tlsrpt/day';
import { markReported, readDay, reportedDomains, savedDays, TlsRptRecorder } from '../../src/tlsrpt/store';
import type { AppliedPolicy } from '../../src/tlsrpt/types';

const STS: AppliedPolicy = { type: 'sts', domain: 'sts.example', strings: ['version: STSv1', 'mode: enforce', 'mx: mx.sts.example', 'max_age: 86400'], mxHost: ['mx.sts.example'] };
const TLSA: AppliedPolicy = { type: 'tlsa', domain: 'dane.example', strings: ['3 1 1 00ff'], mxHost: ['mx.dane.example'] };
const failure = (receivingIp: string) => ({ resultType: 'certificate-expired' as const, sendingMtaIp: '192.0.2.1', receivingMxHostname: 'mx.sts.example', receivingIp });

describe('a day of sessions', () => {
  it('counts successes and failures per policy, one row per kind of failure between the same hosts', () => {
    const day = emptyDay('2026-12-07');
    addOutcome(day, { policy: STS, ok: true });
    addOutcome(day, { policy: { ...STS, strings: [...STS.strings] }, ok: true });
    addOutcome(day, { policy: STS, ok: false, failure: failure('198.51.100.1') });
    addOutcome(day, { policy: STS, ok: false, failure: failure('198.51.100.1') });
    addOutcome(day, { policy: STS, ok: false, failure: failure('198.51.100.2') });
    addOutcome(day, { policy: TLSA, ok: true });
    expect(day.policies).toEqual([
      {
        policy: STS,
        successes: 2,
        failures: 3,
        rows: [
          { ...failure('198.51.100.1'), count: 2 },
          { ...failure('198.51.100.2'), count: 1 },
        ],
      },
      { policy: TLSA, successes: 1, failures: 0, rows: [] },
    ]);
    expect(parseDay(JSON.parse(JSON.stringify(day)))).toEqual(day);
  });

  it('keeps the totals exact past the row limit', () => {
    const day = emptyDay('2026-12-07');
    for (let index = 0; index < MAX_FAILURE_ROWS + 5; index++) addOutcome(day, { policy: STS, ok: false, failure: failure(`198.51.100.${index}`) });
    expect(day.policies[0]!.rows).toHaveLength(MAX_FAILURE_ROWS);
    expect(day.policies[0]!.failures).toBe(MAX_FAILURE_ROWS + 5);
  });

  it('keeps what a hostile domain can make it keep small: few policies a day, each quoted within bounds', () => {
    const day = emptyDay('2026-12-07');
    const huge = (id: number): AppliedPolicy => ({
      ...STS,
      domain: 'evil.example',
      strings: Array.from({ length: 1000 }, (_, i) => `mx: ${'x'.repeat(5000)}${id}-${i}`),
      mxHost: [`${id}`],
    });
    const kept = Array.from({ length: 50 }, (_, id) => addOutcome(day, { policy: huge(id), ok: true }));
    expect(kept.filter(Boolean)).toHaveLength(MAX_POLICIES_PER_DOMAIN);
    expect(addOutcome(day, { policy: STS, ok: true })).toBe(true);
    for (const entry of day.policies) {
      expect(entry.policy.strings.length).toBeLessThanOrEqual(MAX_POLICY_STRINGS);
      for (const text of entry.policy.strings) expect(text.length).toBeLessThanOrEqual(MAX_STRING_LENGTH);
    }
    expect(JSON.stringify(day).length).toBeLessThan(100_000);
  });

  it('refuses a file that is not a day', () => {
    expect(parseDay({ day: '2026-12-07', policies: [{ policy: STS, successes: -1, failures: 0, rows: [] }] })).toBeNull();
    expect(parseDay({ day: 'yesterday', policies: [] })).toBeNull();
    expect(parseDay({ day: '2026-12-07', policies: [{ policy: STS, successes: 0, failures: 1, rows: [{ ...failure('x'), resultType: 'bad', count: 1 }] }] })).toBeNull();
  });
});

describe('result types (RFC 8460 §4.3)', () => {
  it.each([
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'certificate-host-mismatch'],
    ['CERT_HAS_EXPIRED', 'certificate-expired'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'certificate-not-trusted'],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'certificate-not-trusted'],
    ['ECONNRESET', 'validation-failure'],
    [undefined, 'validation-failure'],
  ])('a certificate error %s is %s', (code, type) => expect(certificateResult(code)).toBe(type));

  it.each([
    ['invalid MTA-STS policy for a.example: mode missing', 'sts-policy-invalid'],
    ['MTA-STS policy fetch from https://mta-sts.a.example/.well-known/mta-sts.txt failed: HTTP 404', 'sts-policy-fetch-error'],
    ['MTA-STS policy fetch from https://mta-sts.a.example/.well-known/mta-sts.txt failed: self-signed certificate', 'sts-webpki-invalid'],
    ['TXT lookup of _mta-sts.a.example failed: ETIMEOUT', null],
  ])('a policy error "%s" is %s', (error, type) => expect(stsPolicyResult(error)).toBe(type));
});

describe('the store on disk', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-tlsrpt-store-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('saves what the recorder counts, continues the day after a restart, and removes days past the limit', async () => {
    const now = Date.parse('2026-12-07T12:00:00Z');
    writeFileSync(path.join(dir, '2026-11-20.json'), JSON.stringify(emptyDay('2026-11-20')));
    const logs: string[] = [];
    const first = await TlsRptRecorder.open({ dir, saveIntervalMs: 60_000, log: (line) => logs.push(line), now: () => now });
    expect(await savedDays(dir)).toEqual([]);
    expect(logs.join('\n')).toContain('removed the sessions of 2026-11-20');
    first.record({ policy: STS, ok: true });
    first.record({ policy: STS, ok: false, failure: failure('198.51.100.1') });
    await first.close();
    expect(await savedDays(dir)).toEqual(['2026-12-07']);

    const second = await TlsRptRecorder.open({ dir, saveIntervalMs: 60_000, log: (line) => logs.push(line), now: () => now });
    second.record({ policy: STS, ok: true });
    await second.save();
    const day = await readDay(dir, '2026-12-07');
    expect(day.policies[0]).toMatchObject({ successes: 2, failures: 1 });
    await second.close();
    expect(readdirSync(dir).filter((name) => name.includes('.tmp-'))).toEqual([]);
  });

  it('writes down which domains were reported', async () => {
    expect(await reportedDomains(dir, '2026-12-06')).toEqual(new Set());
    await markReported(dir, '2026-12-06', new Set(['b.example', 'a.example']));
    expect(await reportedDomains(dir, '2026-12-06')).toEqual(new Set(['a.example', 'b.example']));
    expect(JSON.parse(readFileSync(path.join(dir, '2026-12-06.reported.json'), 'utf8'))).toEqual(['a.example', 'b.example']);
  });

  it('says so when a day file is not one', async () => {
    writeFileSync(path.join(dir, '2026-12-05.json'), '{"day":"2026-12-04","policies":[]}');
    await expect(readDay(dir, '2026-12-05')).rejects.toThrow('does not hold the TLS sessions of 2026-12-05');
  });
});
