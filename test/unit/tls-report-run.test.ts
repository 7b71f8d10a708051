// `mailproxy tls-report send`'s work (src/tls-report/run.ts) on a real store and a real pickup directory:
// which days and domains it reports, where each report goes, and that nothing is sent twice.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sendReports, type ReportDeps, type ReportSettings } from '../../src/tls-report/run';
import { SAMPLE_DAY } from '../helpers/tlsrpt-day';

describe('sending the reports of a day', () => {
  let root = '';
  let settings: ReportSettings;
  const posts: { url: string; report: unknown }[] = [];
  let failPosts = false;
  const records: Record<string, string[][]> = {
    '_smtp._tls.dane.example': [['v=TLSRPTv1; rua=mailto:reports@dane.example,https://collector.example/tlsrpt']],
  };
  const deps: ReportDeps = {
    resolveTxt: async (name) => {
      const found = records[name];
      if (!found) throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
      return found;
    },
    post: async (url, gzipped) => {
      if (failPosts) throw new Error('TLS report POST failed: HTTP 503');
      posts.push({ url, report: JSON.parse(gunzipSync(gzipped).toString('utf8')) });
    },
    now: () => Date.parse('2024-03-06T01:00:00Z'),
    // Stands in for the DKIM signature (test/unit/tlsrpt-dkim.test.ts signs for real).
    sign: async (message) => Buffer.concat([Buffer.from('X-Signed-By-Test: yes\r\n'), message]),
  };

  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-tlsrpt-run-'));
    settings = {
      dir: path.join(root, 'tls-rpt'),
      pickupDir: path.join(root, 'pickup'),
      submitter: 'mx.example.org',
      organization: 'Example',
      contact: 'postmaster@example.org',
      from: 'postmaster@example.org',
    };
    mkdirSync(settings.dir);
    mkdirSync(settings.pickupDir);
    writeFileSync(path.join(settings.dir, `${SAMPLE_DAY.day}.json`), JSON.stringify(SAMPLE_DAY));
    // Today's sessions are not reported until the day is over.
    writeFileSync(path.join(settings.dir, '2024-03-06.json'), JSON.stringify({ ...SAMPLE_DAY, day: '2024-03-06' }));
    posts.length = 0;
    failPosts = false;
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const pickupEnvelopes = () =>
    readdirSync(settings.pickupDir)
      .filter((name) => name.endsWith('.json'))
      .map((name) => JSON.parse(readFileSync(path.join(settings.pickupDir, name), 'utf8')) as { from: string; to: string[] });

  it('mails and posts the report of each domain that asks for one, once', async () => {
    const lines = await sendReports(settings, deps);
    expect(lines).toEqual([
      { day: '2024-03-05', domain: 'dane.example', outcome: 'sent', to: ['mailto:reports@dane.example', 'https://collector.example/tlsrpt'] },
      { day: '2024-03-05', domain: 'sts.example', outcome: 'none', to: [], note: 'no _smtp._tls.sts.example record' },
    ]);
    expect(pickupEnvelopes()).toEqual([{ from: '', to: ['reports@dane.example'], tlsReport: true }]);
    // What is dropped for haraka-out is the signed message.
    const [dropped] = readdirSync(settings.pickupDir).filter((name) => name.endsWith('.eml'));
    expect(readFileSync(path.join(settings.pickupDir, dropped!), 'latin1')).toMatch(/^X-Signed-By-Test: yes\r\nFrom: [^\r]*\r\n[\s\S]*Content-Type: multipart\/report/);
    expect(posts).toHaveLength(1);
    expect(posts[0]).toMatchObject({
      url: 'https://collector.example/tlsrpt',
      report: { 'organization-name': 'Example', policies: [{ policy: { 'policy-domain': 'dane.example' } }] },
    });
    expect(await sendReports(settings, deps)).toEqual([]);
    expect(pickupEnvelopes()).toHaveLength(1);
  });

  it('tries a failed POST again on the next run without mailing the report a second time', async () => {
    failPosts = true;
    const first = await sendReports(settings, deps);
    expect(first[0]).toMatchObject({ domain: 'dane.example', outcome: 'failed', to: ['mailto:reports@dane.example'] });
    expect(first[0]!.note).toContain('https://collector.example/tlsrpt: TLS report POST failed: HTTP 503');
    failPosts = false;
    const second = await sendReports(settings, deps);
    expect(second).toEqual([{ day: '2024-03-05', domain: 'dane.example', outcome: 'sent', to: ['https://collector.example/tlsrpt'] }]);
    expect(pickupEnvelopes()).toHaveLength(1);
    expect(posts).toHaveLength(1);
  });

  it('reports a given day, today included', async () => {
    const lines = await sendReports(settings, deps, '2024-03-06');
    expect(lines.map((line) => `${line.day} ${line.domain} ${line.outcome}`)).toEqual(['2024-03-06 dane.example sent', '2024-03-06 sts.example none']);
  });
});
