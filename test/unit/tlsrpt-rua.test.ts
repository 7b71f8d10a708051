import { describe, expect, it } from 'vitest';
import { parseTlsRptRecord, tlsRptName } from '../../src/tlsrpt/rua';

describe('TLSRPT record (RFC 8460 §3)', () => {
  it('is looked up at _smtp._tls.<domain>', () => {
    expect(tlsRptName('Example.COM.')).toBe('_smtp._tls.example.com');
  });

  const accepted: Array<[string, string[][], unknown]> = [
    ['one mailto', [['v=TLSRPTv1; rua=mailto:tlsrpt@example.com']], [{ kind: 'mailto', address: 'tlsrpt@example.com' }]],
    ['an https endpoint', [['v=TLSRPTv1;rua=https://reports.example.com/v1/tlsrpt']], [{ kind: 'https', url: 'https://reports.example.com/v1/tlsrpt' }]],
    [
      'several URIs, spaces around the commas, a trailing ";"',
      [['v=TLSRPTv1 ; rua=mailto:a@example.com , https://r.example.com/x ,mailto:b@example.com;']],
      [
        { kind: 'mailto', address: 'a@example.com' },
        { kind: 'https', url: 'https://r.example.com/x' },
        { kind: 'mailto', address: 'b@example.com' },
      ],
    ],
    ['a mailto with a query and percent-escapes', [['v=TLSRPTv1; rua=mailto:tls%2Brpt@example.com?subject=hi%3B']], [{ kind: 'mailto', address: 'tls+rpt@example.com' }]],
    ['a record split into strings', [['v=TLSRPTv1; rua=mai', 'lto:split@example.com']], [{ kind: 'mailto', address: 'split@example.com' }]],
    [
      'next to unrelated TXT records and a wrong version',
      [['v=spf1 -all'], ['v=TLSRPTv2; rua=mailto:new@example.com'], ['v=TLSRPTv1; rua=mailto:ok@example.com']],
      [{ kind: 'mailto', address: 'ok@example.com' }],
    ],
    [
      'unknown schemes and fields ignored, duplicates dropped',
      [['v=TLSRPTv1; ext-1=x; rua=http://plain.example.com/,ftp://f.example.com/,mailto:c@example.com,mailto:C@example.com']],
      [{ kind: 'mailto', address: 'c@example.com' }],
    ],
  ];

  for (const [name, records, rua] of accepted) {
    it(`accepts ${name}`, () => {
      expect(parseTlsRptRecord(records)).toEqual({ rua });
    });
  }

  const refused: Array<[string, string[][], RegExp]> = [
    ['no record', [], /no v=TLSRPTv1 record/],
    ['only a wrong version', [['v=TLSRPTv10; rua=mailto:a@example.com']], /no v=TLSRPTv1 record/],
    ['the version not first', [['rua=mailto:a@example.com; v=TLSRPTv1']], /no v=TLSRPTv1 record/],
    ['two records', [['v=TLSRPTv1; rua=mailto:a@example.com'], ['v=TLSRPTv1; rua=mailto:b@example.com']], /2 v=TLSRPTv1 records/],
    ['no rua', [['v=TLSRPTv1; ext=1']], /has no rua=/],
    ['only unusable URIs', [['v=TLSRPTv1; rua=http://r.example.com/,mailto:not-an-address,mailto:bad%ZZ@example.com']], /no usable rua/],
    ['garbage after the version', [['v=TLSRPTv1; this is not a field']], /malformed/],
    ['an empty field in the middle', [['v=TLSRPTv1;; rua=mailto:a@example.com']], /malformed/],
  ];

  for (const [name, records, error] of refused) {
    it(`refuses ${name}`, () => {
      const result = parseTlsRptRecord(records);
      expect('error' in result ? result.error : `rua ${JSON.stringify(result.rua)}`).toMatch(error);
    });
  }
});
