// DKIM for emailed TLS reports: a report message signed with a key made by ensureDkimKey verifies with
// mailauth against the record dkimRecordText publishes, and no longer passes once its body changes; the key is made
// once, readable only by its owner, and two runs at once end with the same key.
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureDkimKey } from '../../src/tls-report/dkim-key';
import { dkimRecordName, dkimRecordText, dkimZoneLine, signReportMessage } from '../../src/tlsrpt/dkim';
import { gzipReport, reportMessage } from '../../src/tlsrpt/message';
import { buildReport } from '../../src/tlsrpt/report';
import { SAMPLE_DAY } from '../helpers/tlsrpt-day';

describe('DKIM-signed TLS report emails', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-tlsrpt-dkim-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function signedReport(privateKey: string): Promise<Buffer> {
    const report = buildReport(SAMPLE_DAY, 'dane.example', { organization: 'Example', contact: 'postmaster@example.org' }, 'r1@mx.example.org');
    if (!report) throw new Error('no report for the sample day');
    const message = await reportMessage({
      report,
      gzipped: gzipReport(report),
      fileName: 'mx.example.org!dane.example!1709596800!1709683199!r1.json.gz',
      submitter: 'mx.example.org',
      domain: 'dane.example',
      from: 'tlsrpt@example.org',
      to: 'reports@dane.example',
      date: new Date('2024-03-06T01:00:00Z'),
    });
    return signReportMessage(message, { domain: 'example.org', selector: 'tlsrpt', privateKey });
  }

  function verify(message: Buffer, privateKey: string) {
    const published: Record<string, string[][]> = { [dkimRecordName('tlsrpt', 'example.org')]: [[dkimRecordText(privateKey)]] };
    const resolver = async (name: string, type: string) => {
      const found = type === 'TXT' ? published[name] : undefined;
      if (!found) throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
      return found;
    };
    return dkimVerify(message, { resolver: resolver as never });
  }

  it('signs at the From domain so that the published record verifies it, and a changed body no longer passes', async () => {
    const { privateKey, created } = await ensureDkimKey(path.join(dir, 'dkim-tlsrpt.pem'));
    expect(created).toBe(true);
    const signed = await signedReport(privateKey);
    expect(signed.toString('latin1')).toMatch(/^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; [\s\S]*d=example\.org;[\s\S]*s=tlsrpt;/);
    const good = await verify(signed, privateKey);
    expect(good.results.map((result) => [result.status.result, result.signingDomain])).toEqual([['pass', 'example.org']]);
    const signedHeaders =
      /\bh=([^;]+);/
        .exec(signed.toString('latin1').replace(/\r\n[ \t]+/g, ''))?.[1]
        ?.replace(/\s+/g, '')
        .toLowerCase()
        .split(':') ?? [];
    expect(signedHeaders).toEqual(expect.arrayContaining(['from', 'subject', 'tls-report-domain', 'tls-report-submitter', 'content-type']));
    const tampered = Buffer.from(signed.toString('latin1').replace('This is an aggregate SMTP TLS report', 'This is an altered SMTP TLS report'), 'latin1');
    // mailauth calls a body hash that does not match "neutral" (RFC 6376 §6.1.3): anything but a pass.
    expect((await verify(tampered, privateKey)).results[0]!.status.result).not.toBe('pass');
  });

  it('makes the key once, readable only by its owner; two runs at once end with one key', async () => {
    const file = path.join(dir, 'sub', 'dkim-tlsrpt.pem');
    const [first, second] = await Promise.all([ensureDkimKey(file), ensureDkimKey(file)]);
    expect(first.privateKey).toBe(second.privateKey);
    expect([first.created, second.created].filter(Boolean)).toHaveLength(1);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = await ensureDkimKey(file);
    expect(again).toEqual({ privateKey: first.privateKey, created: false });
  });

  it.runIf(process.geteuid?.() === 0)('as root, makes the key as the owner of the directory above it, never as root in a directory another user controls', async () => {
    // The service user can reach its state directory, as under /var/lib.
    chmodSync(dir, 0o755);
    const state = path.join(dir, 'haraka-out');
    mkdirSync(state);
    chownSync(state, 65534, 65534);
    const file = path.join(state, 'tls-rpt', 'dkim-tlsrpt.pem');
    const { created } = await ensureDkimKey(file);
    expect(created).toBe(true);
    for (const made of [path.dirname(file), file]) expect([statSync(made).uid, statSync(made).gid], made).toEqual([65534, 65534]);
    expect(process.geteuid?.()).toBe(0);
    // An empty key (a crash of an older version) is an error that says what to do, never a key.
    writeFileSync(file, '');
    await expect(ensureDkimKey(file)).rejects.toThrow(/holds no private key: remove it, run `mailproxy tls-report key`/);
  });

  it('writes the record as a zone-file line of quoted strings no longer than 255 characters', async () => {
    const { privateKey } = await ensureDkimKey(path.join(dir, 'dkim-tlsrpt.pem'));
    const text = dkimRecordText(privateKey);
    expect(text).toMatch(/^v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]{300,}$/);
    const line = dkimZoneLine({ selector: 'tlsrpt', domain: 'example.org', privateKey });
    expect(line.startsWith('tlsrpt._domainkey.example.org.  TXT  "')).toBe(true);
    const strings = [...line.matchAll(/"([^"]*)"/g)].map((match) => match[1]!);
    expect(strings.length).toBeGreaterThan(1);
    for (const part of strings) expect(part.length).toBeLessThanOrEqual(255);
    expect(strings.join('')).toBe(text);
  });
});
