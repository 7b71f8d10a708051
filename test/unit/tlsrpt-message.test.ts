import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gzipReport, reportMessage } from '../../src/tlsrpt/message';
import { buildReport, reportFileName } from '../../src/tlsrpt/report';
import { SAMPLE_DAY } from '../helpers/tlsrpt-day';

interface Part {
  headers: Map<string, string>;
  body: string;
}

/** Splits a header block and body, unfolds the headers (lower-cased names). Independent of nodemailer. */
function parsePart(text: string): Part {
  const split = text.indexOf('\r\n\r\n');
  const headers = new Map<string, string>();
  for (const line of text
    .slice(0, split)
    .replace(/\r\n(?=[ \t])/g, '')
    .split('\r\n')) {
    const colon = line.indexOf(':');
    headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return { headers, body: text.slice(split + 4) };
}

function multipartChildren(part: Part): Part[] {
  const boundary = /boundary="?([^";]+)"?/.exec(part.headers.get('content-type') ?? '')?.[1];
  expect(boundary).toBeTruthy();
  const [, ...rest] = part.body.split(`--${boundary}\r\n`);
  const last = rest.length - 1;
  rest[last] = rest[last]!.split(`\r\n--${boundary}--`)[0]!;
  return rest.map((chunk) => parsePart(chunk.replace(/\r\n$/, '')));
}

const SUBMITTER = { organization: 'Sender Org', contact: 'mailto:tlsrpt@sender.example' };

describe('TLS report message (RFC 8460 §5.3)', async () => {
  const report = buildReport(SAMPLE_DAY, 'sts.example', SUBMITTER, '20240305.sts.example@sender.example')!;
  const fileName = reportFileName('sender.example', 'sts.example', SAMPLE_DAY.day, report['report-id']);
  const input = {
    report,
    gzipped: gzipReport(report),
    fileName,
    submitter: 'sender.example',
    domain: 'sts.example',
    from: 'tlsrpt@sender.example',
    to: 'reports@sts.example',
    date: new Date('2024-03-06T00:05:00Z'),
  };
  const raw = await reportMessage({ ...input, messageId: 'report-1@sender.example' });
  const text = raw.toString('latin1');
  const message = parsePart(text);

  it('has CRLF line ends only and no line over 998 octets', () => {
    expect(text).not.toMatch(/[^\r]\n/);
    expect(text).not.toMatch(/\r(?!\n)/);
    expect(Math.max(...text.split('\r\n').map((line) => line.length))).toBeLessThanOrEqual(998);
  });

  it('carries the report headers', () => {
    expect(message.headers.get('from')).toBe('tlsrpt@sender.example');
    expect(message.headers.get('to')).toBe('reports@sts.example');
    expect(message.headers.get('date')).toBe('Wed, 06 Mar 2024 00:05:00 +0000');
    expect(message.headers.get('message-id')).toBe('<report-1@sender.example>');
    expect(message.headers.get('subject')).toBe('Report Domain: sts.example Submitter: sender.example Report-ID: <20240305.sts.example@sender.example>');
    expect(message.headers.get('tls-report-domain')).toBe('sts.example');
    expect(message.headers.get('tls-report-submitter')).toBe('sender.example');
    expect(text).toMatch(/^TLS-Report-Domain: /m);
    expect(text).toMatch(/^TLS-Report-Submitter: /m);
    expect(message.headers.get('mime-version')).toBe('1.0');
    expect(message.headers.get('content-type')).toMatch(/^multipart\/report;/);
    expect(message.headers.get('content-type')).toMatch(/report-type="?tlsrpt"?(;|$)/);
  });

  it('has a text part for people and the gzipped report as a base64 attachment', () => {
    const parts = multipartChildren(message);
    expect(parts).toHaveLength(2);
    const [note, attachment] = parts as [Part, Part];
    expect(note.headers.get('content-type')).toMatch(/^text\/plain\b/);
    expect(note.body).toContain('sts.example');

    expect(attachment.headers.get('content-type')).toBe('application/tlsrpt+gzip');
    expect(attachment.headers.get('content-transfer-encoding')).toBe('base64');
    expect(attachment.headers.get('content-disposition')).toBe(`attachment; filename="${fileName}"`);
    const json = gunzipSync(Buffer.from(attachment.body.replace(/\r\n/g, ''), 'base64')).toString('utf8');
    expect(JSON.parse(json)).toEqual(report);
  });

  it('makes a Message-ID at the submitter when none is given', async () => {
    const other = await reportMessage(input);
    expect(parsePart(other.toString('latin1')).headers.get('message-id')).toMatch(/^<[^<>@\s]+@sender\.example>$/);
  });

  it('refuses a file name that would need quoting', async () => {
    await expect(reportMessage({ ...input, fileName: 'a"b.json.gz' })).rejects.toThrow(/file name/);
  });
});
