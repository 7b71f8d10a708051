import { describe, expect, it } from 'vitest';
import { mxMatches, normalizeDomain, parsePolicy, parseStsTxt } from '../../src/mtasts/policy';

function policyError(text: string): string {
  const result = parsePolicy(text);
  if (result.ok) throw new Error(`expected ${JSON.stringify(text)} to be rejected`);
  return result.error;
}

describe('parsePolicy', () => {
  it('parses the RFC 8461 §3.2 example', () => {
    const text = 'version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n';
    expect(parsePolicy(text)).toEqual({
      ok: true,
      policy: { version: 'STSv1', mode: 'enforce', mx: ['mail.example.com', '*.example.net', 'backupmx.example.com'], maxAge: 604800 },
    });
  });

  it('accepts LF line endings, no final line ending, field order and whitespace after the colon', () => {
    const result = parsePolicy('max_age:86400\nmx:\t mx1.example.org \nmode:   testing\nversion: STSv1');
    expect(result).toEqual({ ok: true, policy: { version: 'STSv1', mode: 'testing', mx: ['mx1.example.org'], maxAge: 86400 } });
  });

  it('ignores unknown keys and blank lines, and normalises mx patterns', () => {
    const result = parsePolicy('version: STSv1\n\nmode: enforce\nfuture_field: anything goes: here\nmx: MX.Example.COM.\nmax_age: 0\n\n');
    expect(result).toEqual({ ok: true, policy: { version: 'STSv1', mode: 'enforce', mx: ['mx.example.com'], maxAge: 0 } });
  });

  it('allows mode none without mx', () => {
    expect(parsePolicy('version: STSv1\nmode: none\nmax_age: 86400\n')).toEqual({
      ok: true,
      policy: { version: 'STSv1', mode: 'none', mx: [], maxAge: 86400 },
    });
  });

  it('accepts the maximum max_age and rejects one second more', () => {
    expect(parsePolicy('version: STSv1\nmode: none\nmax_age: 31557600\n').ok).toBe(true);
    expect(policyError('version: STSv1\nmode: none\nmax_age: 31557601\n')).toMatch(/exceeds 31557600/);
  });

  const malformed: [string, string, RegExp][] = [
    ['missing version', 'mode: enforce\nmx: a.example\nmax_age: 1\n', /version is missing/],
    ['wrong version', 'version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n', /unsupported version/],
    ['case-sensitive key', 'Version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n', /version is missing/],
    ['missing mode', 'version: STSv1\nmx: a.example\nmax_age: 1\n', /mode is missing/],
    ['unknown mode', 'version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n', /invalid mode/],
    ['missing max_age', 'version: STSv1\nmode: enforce\nmx: a.example\n', /max_age is missing/],
    ['negative max_age', 'version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n', /invalid max_age/],
    ['fractional max_age', 'version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1.5\n', /invalid max_age/],
    ['11-digit max_age', 'version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 00000000001\n', /invalid max_age/],
    ['enforce without mx', 'version: STSv1\nmode: enforce\nmax_age: 1\n', /requires at least one mx/],
    ['testing without mx', 'version: STSv1\nmode: testing\nmax_age: 1\n', /requires at least one mx/],
    ['wildcard not leftmost', 'version: STSv1\nmode: enforce\nmx: mail.*.example\nmax_age: 1\n', /invalid mx/],
    ['double wildcard', 'version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n', /invalid mx/],
    ['empty mx', 'version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n', /invalid mx/],
    ['mx with a space', 'version: STSv1\nmode: enforce\nmx: a.example b.example\nmax_age: 1\n', /invalid mx/],
    ['duplicate mode', 'version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n', /mode appears more than once/],
    ['line without a colon', 'version: STSv1\nmode enforce\nmx: a.example\nmax_age: 1\n', /line 2 is not a "key: value"/],
    ['leading whitespace', 'version: STSv1\n mode: enforce\nmx: a.example\nmax_age: 1\n', /line 2/],
    ['an HTML page', '<html><body>Not found</body></html>', /line 1/],
    ['empty body', '', /version is missing/],
  ];
  it.each(malformed)('rejects %s', (_name, text, expected) => {
    expect(policyError(text)).toMatch(expected);
  });
});

describe('parseStsTxt', () => {
  it('parses the RFC 8461 §3.1 example', () => {
    expect(parseStsTxt([['v=STSv1; id=20160831085700Z;']])).toEqual({ id: '20160831085700Z' });
  });

  it('joins the character strings of one record', () => {
    expect(parseStsTxt([['v=STSv1; ', 'id=abc123']])).toEqual({ id: 'abc123' });
  });

  it('ignores records that are not v=STSv1', () => {
    expect(parseStsTxt([['v=spf1 -all'], ['google-site-verification=x'], ['v=STSv1;id=1']])).toEqual({ id: '1' });
    expect(parseStsTxt([['v=STSv10; id=1']])).toBeNull();
  });

  it('accepts whitespace around separators, a trailing separator and extensions', () => {
    expect(parseStsTxt([['v=STSv1 ;\tid=A1b2 ; ext_1=val.ue ; ']])).toEqual({ id: 'A1b2' });
  });

  it('accepts a 32-character id and rejects a 33-character one', () => {
    expect(parseStsTxt([[`v=STSv1; id=${'a'.repeat(32)}`]])).toEqual({ id: 'a'.repeat(32) });
    expect(parseStsTxt([[`v=STSv1; id=${'a'.repeat(33)}`]])).toBeNull();
  });

  const invalid: [string, string[][]][] = [
    ['no records', []],
    ['two v=STSv1 records', [['v=STSv1; id=1'], ['v=STSv1; id=2']]],
    ['no id', [['v=STSv1;']]],
    ['version only', [['v=STSv1']]],
    ['empty id', [['v=STSv1; id=']]],
    ['id with punctuation', [['v=STSv1; id=2016-08-31']]],
    ['two ids', [['v=STSv1; id=1; id=2']]],
    ['an empty field', [['v=STSv1;; id=1']]],
    ['space around =', [['v=STSv1; id = 1']]],
    ['field without =', [['v=STSv1; id=1; bogus']]],
    ['extension with a bad value', [['v=STSv1; id=1; x=a=b']]],
    ['version not first', [['id=1; v=STSv1']]],
    ['lower-case version', [['v=stsv1; id=1']]],
  ];
  it.each(invalid)('returns null for %s', (_name, records) => {
    expect(parseStsTxt(records)).toBeNull();
  });
});

describe('mxMatches', () => {
  it('matches host names exactly, ignoring case and a trailing dot', () => {
    expect(mxMatches('mail.example.com', 'mail.example.com')).toBe(true);
    expect(mxMatches('Mail.Example.COM', 'mail.example.com.')).toBe(true);
    expect(mxMatches('mail.example.com.', 'MAIL.example.com')).toBe(true);
    expect(mxMatches('mail.example.com', 'mail2.example.com')).toBe(false);
    expect(mxMatches('mail.example.com', 'example.com')).toBe(false);
  });

  it('lets a wildcard match exactly one leftmost label (RFC 8461 §4.1)', () => {
    expect(mxMatches('*.example.com', 'mail.example.com')).toBe(true);
    expect(mxMatches('*.example.com', 'MX1.example.com.')).toBe(true);
    expect(mxMatches('*.example.com', 'example.com')).toBe(false);
    expect(mxMatches('*.example.com', 'foo.bar.example.com')).toBe(false);
    expect(mxMatches('*.example.com', '.example.com')).toBe(false);
    expect(mxMatches('*.example.com', 'mail.badexample.com')).toBe(false);
    expect(mxMatches('*.example.com', 'mail.example.com.evil.org')).toBe(false);
  });

  it('does not treat * as a wildcard anywhere else', () => {
    expect(mxMatches('mail.example.com', '*.example.com')).toBe(false);
    expect(mxMatches('*', 'mail')).toBe(false);
    expect(mxMatches('', '')).toBe(false);
  });
});

describe('normalizeDomain', () => {
  it('lower-cases, drops a trailing dot and converts IDNs to A-labels', () => {
    expect(normalizeDomain('Example.NET.')).toBe('example.net');
    expect(normalizeDomain('bücher.example')).toBe('xn--bcher-kva.example');
  });

  it('rejects things that are not host names', () => {
    for (const bad of ['', '.', 'a..b', '-a.example', 'a_b.example', 'example.net/evil', 'a b.example', '[127.0.0.1]']) {
      expect(normalizeDomain(bad), bad).toBeNull();
    }
  });
});
