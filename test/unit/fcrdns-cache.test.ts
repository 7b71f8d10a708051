// The client-name cache of mailproxy-forward against a real DNS server on loopback: one lookup per
// address and minute, shared by concurrent connections; temporary failures are never kept.
import dns from 'node:dns';
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedClientNameLookup } from '../../src/plugins/forward/fcrdns';
import { startDnsServer, type DnsServer } from '../../src/testpeers/dns-server';

describe('cachedClientNameLookup', () => {
  let server: DnsServer;
  let deadPort = 0;
  const previousServers = dns.getServers();

  beforeAll(async () => {
    server = await startDnsServer({
      A: { 'client9.example.net': ['127.0.0.9'], 'elsewhere.example.net': ['192.0.2.1'] },
      AAAA: { 'v6.example.net': ['2001:db8::25'] },
      PTR: {
        '9.0.0.127.in-addr.arpa': ['client9.example.net'],
        '10.0.0.127.in-addr.arpa': ['elsewhere.example.net'],
        '5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa': ['v6.example.net'],
      },
    });
    // A UDP port nobody listens on: queries to it fail at once (ECONNREFUSED), a temporary DNS failure.
    const probe = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', () => resolve()));
    deadPort = probe.address().port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    dns.setServers([server.address]);
  });
  afterAll(async () => {
    dns.setServers(previousServers);
    await server.close();
  });

  const ptrQueries = (address: string) => server.queries.filter((query) => query.type === 'PTR' && query.name.startsWith(address.split('.').reverse().join('.'))).length;

  it('looks a client up once while the entry is fresh, and again once it expired', async () => {
    let clock = 1_000;
    const lookup = cachedClientNameLookup({ ttlMs: 60_000, maxEntries: 10, now: () => clock });
    expect(await lookup('127.0.0.9', 2000)).toEqual({ ptr: 'client9.example.net', xclientName: 'client9.example.net' });
    expect(await lookup('::ffff:127.0.0.9', 2000)).toEqual({ ptr: 'client9.example.net', xclientName: 'client9.example.net' });
    expect(ptrQueries('127.0.0.9')).toBe(1);
    clock += 60_001;
    await lookup('127.0.0.9', 2000);
    expect(ptrQueries('127.0.0.9')).toBe(2);
  });

  it('keeps an unconfirmed name too, and shares one lookup between concurrent connections', async () => {
    const lookup = cachedClientNameLookup({ ttlMs: 60_000, maxEntries: 10 });
    const before = ptrQueries('127.0.0.10');
    const names = await Promise.all([lookup('127.0.0.10', 2000), lookup('127.0.0.10', 2000), lookup('127.0.0.10', 2000)]);
    expect(names).toEqual(Array(3).fill({ ptr: 'elsewhere.example.net', xclientName: '[UNAVAILABLE]' }));
    await lookup('127.0.0.10', 2000);
    expect(ptrQueries('127.0.0.10') - before).toBe(1);
  });

  it('confirms an IPv6 client through its ip6.arpa name', async () => {
    const lookup = cachedClientNameLookup({ ttlMs: 60_000, maxEntries: 10 });
    expect(await lookup('2001:db8::25', 2000)).toEqual({ ptr: 'v6.example.net', xclientName: 'v6.example.net' });
  });

  it('never keeps a temporary failure', async () => {
    const lookup = cachedClientNameLookup({ ttlMs: 60_000, maxEntries: 10 });
    dns.setServers([`127.0.0.1:${deadPort}`]);
    try {
      expect(await lookup('127.0.0.9', 2000)).toEqual({ ptr: 'DNSERROR', xclientName: '[TEMPUNAVAIL]' });
    } finally {
      dns.setServers([server.address]);
    }
    expect(await lookup('127.0.0.9', 2000)).toEqual({ ptr: 'client9.example.net', xclientName: 'client9.example.net' });
  });

  it('drops the oldest entry when full', async () => {
    const lookup = cachedClientNameLookup({ ttlMs: 60_000, maxEntries: 1 });
    const before = ptrQueries('127.0.0.9');
    await lookup('127.0.0.9', 2000);
    await lookup('127.0.0.10', 2000);
    await lookup('127.0.0.9', 2000);
    expect(ptrQueries('127.0.0.9') - before).toBe(2);
  });
});
