import { describe, expect, it } from 'vitest';
import { buildDsn, originalHeaders, statusOf } from '../../src/plugins/store-forward/dsn';

const original = Buffer.from(
  [
    'Received: from mx.example.org',
    'From: Alice <alice@example.org>',
    'To: bob@example.com',
    'Subject: caf\u00e9 plans',
    '..dotted: header line',
    '',
    'body line',
    '..',
    '.',
    '',
  ].join('\r\n'),
  'utf8',
);

const input = {
  hostname: 'mx.example.com',
  sender: 'alice@example.org',
  kind: 'refused' as const,
  maxAgeDays: 5,
  recipients: [
    { address: 'bob@example.com', reply: '550 5.1.1 <bob@example.com>: Recipient address rejected' },
    { address: 'carol@example.com', reply: '554 Transaction failed' },
  ],
  remoteMta: 'dns; backend.example.com',
  arrivedAt: Date.UTC(2026, 0, 2, 3, 4, 5),
  now: Date.UTC(2026, 0, 3, 3, 4, 5),
  token: 'abc123',
  original,
};

/** Splits a multipart body by its boundary into parts of { headers, body }. */
function parse(message: string) {
  const [head, body] = [message.slice(0, message.indexOf('\r\n\r\n')), message.slice(message.indexOf('\r\n\r\n') + 4)];
  const boundary = /boundary="([^"]+)"/.exec(head)?.[1] as string;
  expect(body.endsWith(`--${boundary}--\r\n`)).toBe(true);
  const parts = body
    .split(`--${boundary}`)
    .slice(1, -1)
    .map((chunk) => {
      const text = chunk.replace(/^\r\n/, '');
      const split = text.indexOf('\r\n\r\n');
      return { headers: text.slice(0, split), body: text.slice(split + 4) };
    });
  return { head, parts };
}

describe('store-and-forward DSN', () => {
  it('is a multipart/report of delivery-status with the explanation, each recipient and the original header', () => {
    const message = buildDsn(input).toString('latin1');
    expect(message).toMatch(/^[\x20-\x7e\r\n\t]*$/);
    expect(message.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
    const { head, parts } = parse(message);
    expect(head).toContain('From: Mail Delivery System <MAILER-DAEMON@mx.example.com>');
    expect(head).toContain('To: <alice@example.org>');
    expect(head).toContain('Subject: Undelivered Mail Returned to Sender');
    expect(head).toContain('Auto-Submitted: auto-replied');
    expect(head).toContain('Message-ID: <abc123@mx.example.com>');
    expect(head).toMatch(/Date: Sat, 3 Jan 2026 03:04:05 \+0000/);
    expect(head).toContain('Content-Type: multipart/report; report-type=delivery-status;');
    expect(parts.map((part) => part.headers)).toEqual(['Content-Type: text/plain; charset=us-ascii', 'Content-Type: message/delivery-status', 'Content-Type: text/rfc822-headers']);
    const [text, status, headers] = parts as [{ body: string }, { body: string }, { body: string }];
    expect(text.body).toContain('This is the mail system at host mx.example.com.');
    expect(text.body).toContain('The mail server refused it');
    expect(text.body).toContain('<bob@example.com>: 550 5.1.1 <bob@example.com>: Recipient address rejected');
    const groups = status.body.trim().split('\r\n\r\n');
    expect(groups[0]).toBe('Reporting-MTA: dns; mx.example.com\r\nArrival-Date: Fri, 2 Jan 2026 03:04:05 +0000');
    expect(groups[1]).toContain('Final-Recipient: rfc822; bob@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; backend.example.com');
    expect(groups[1]).toContain('Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected');
    expect(groups[2]).toContain('Status: 5.0.0');
    expect(headers.body).toBe('Received: from mx.example.org\r\nFrom: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: caf?? plans\r\n.dotted: header line\r\n\r\n');
  });

  it('says an expired message could not be delivered in time, status 4.4.7', () => {
    const message = buildDsn({ ...input, kind: 'expired', recipients: [{ address: 'bob@example.com', reply: '451 4.3.0 try later' }] }).toString();
    expect(message).toContain('could not be delivered within 5 days');
    expect(message).toContain('Status: 4.4.7');
  });

  it('reads the enhanced status of a 5xx reply only', () => {
    expect(statusOf('550-5.7.1 no', 'refused')).toBe('5.7.1');
    expect(statusOf('550 4.2.2 odd', 'refused')).toBe('5.0.0');
    expect(statusOf('550 rejected', 'refused')).toBe('5.0.0');
  });

  it('keeps only whole header lines of a header block cut by the read', () => {
    expect(originalHeaders(Buffer.from('A: 1\r\nB: 2\r\nC: par'))).toBe('A: 1\r\nB: 2\r\n');
  });
});
