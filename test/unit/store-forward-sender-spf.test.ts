// SPF of a stored message's sender through mailauth, with DNS answered from a table (never the system
// resolver): pass only for an address the sender's domain lists.
import { describe, expect, it } from 'vitest';
import { senderSpf, type DnsResolve } from '../../src/plugins/store-forward/sender-spf';

function dnsError(code: string, name: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`queryTxt ${code} ${name}`), { code });
}

/** TXT answers by name; every other query is NODATA. Records the queries made. */
function tableResolver(txt: Record<string, string[]>): { resolve: DnsResolve; queries: string[] } {
  const queries: string[] = [];
  const resolve: DnsResolve = async (name, type) => {
    queries.push(`${type} ${name}`);
    if (type === 'TXT' && txt[name]) return txt[name].map((record) => [record]);
    throw dnsError(type === 'TXT' && !(name in txt) ? 'ENOTFOUND' : 'ENODATA', name);
  };
  return { resolve, queries };
}

const ZONE = {
  'example.com': ['v=spf1 ip4:192.0.2.0/24 -all'],
  'soft.example': ['v=spf1 ip4:192.0.2.0/24 ~all'],
  'broken.example': ['v=spf1 ip4:192.0.2.0/24 bogus:x -all'],
  'other.example': ['some unrelated text'],
};

describe('senderSpf', () => {
  it.each([
    ['sender@example.com', '192.0.2.10', 'pass'],
    ['<sender@example.com>', '192.0.2.10', 'pass'],
    ['sender@EXAMPLE.com', '192.0.2.10', 'pass'],
    ['sender@example.com', '198.51.100.7', 'fail'],
    ['sender@soft.example', '198.51.100.7', 'softfail'],
    ['sender@broken.example', '192.0.2.10', 'permerror'],
    ['sender@other.example', '192.0.2.10', 'none'],
    ['sender@nowhere.example', '192.0.2.10', 'none'],
  ])('%s from %s → %s', async (mailFrom, ip, expected) => {
    const { resolve, queries } = tableResolver(ZONE);
    const verdict = await senderSpf({ mailFrom, ip, helo: 'client.example', mta: 'mx.example.net' }, resolve);
    expect(verdict.result).toBe(expected);
    expect(queries[0]).toBe(`TXT ${mailFrom.replace(/[<>]/g, '').split('@')[1]!.toLowerCase()}`);
  });

  it('gives none for the null sender without asking DNS', async () => {
    const { resolve, queries } = tableResolver(ZONE);
    expect((await senderSpf({ mailFrom: '<>', ip: '192.0.2.10', helo: 'example.com', mta: 'mx' }, resolve)).result).toBe('none');
    expect((await senderSpf({ mailFrom: '', ip: '192.0.2.10', helo: null, mta: 'mx' }, resolve)).result).toBe('none');
    expect(queries).toEqual([]);
  });

  it('gives temperror when DNS fails', async () => {
    const resolve: DnsResolve = async (name) => {
      throw dnsError('ESERVFAIL', name);
    };
    expect((await senderSpf({ mailFrom: 'sender@example.com', ip: '192.0.2.10', helo: null, mta: 'mx' }, resolve)).result).toBe('temperror');
  });
});
