// The challenge responders and the IONOS provider without a CA: what the provider sends to the IONOS API
// (a stand-in on loopback), how it finds zones and records, how the API key is read, the wait for a TXT
// record at a DNS server (the loopback one), and the HTTP-01 listener and webroot files.
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { makeResponder } from '../../src/certs/acme/challenges';
import { authoritativeServers, readApiKey, waitForTxt } from '../../src/certs/acme/dns-provider';
import { IonosProvider, unquoteTxt, zoneFor } from '../../src/certs/acme/ionos';
import { loadConfigText } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { startDnsServer, type DnsServer } from '../../src/testpeers/dns-server';
import { startIonosStandIn, type IonosStandIn } from '../helpers/ionos-standin';
import { freePort } from '../helpers/ports';
import { useTempDirs } from '../helpers/tmp';

const KEY = 'prefix.secret';
const tempDir = useTempDirs('mailproxy-acme-ch-');
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function standIn(zones = ['example.com', 'sub.example.com']): Promise<IonosStandIn> {
  const server = await startIonosStandIn({ apiKey: KEY, zones, challtestsrvUrl: null });
  closers.push(() => server.close());
  return server;
}

async function dnsServer(): Promise<DnsServer> {
  const server = await startDnsServer({ TXT: {} }, '127.0.0.1');
  closers.push(() => server.close());
  return server;
}

function configWith(acme: Record<string, unknown>, extra: Record<string, unknown> = {}): Config {
  const loaded = loadConfigText(
    stringify({ version: 1, hostname: 'mx.example.com', public_ipv4: '203.0.113.25', domains: ['example.com'], ...extra, acme: { enabled: true, ...acme } }),
  );
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  return loaded.config;
}

function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      // A fresh connection each time: Node's default agent keeps sockets alive, and one the responder closed a
      // moment ago could be reused and fail as a hang-up instead of the refusal the test means to see.
      .get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('IonosProvider', () => {
  it('adds each TXT record with its own POST (never PATCH/PUT), finds its id, and deletes exactly that record', async () => {
    const api = await standIn();
    const ionos = new IonosProvider({ apiUrl: `${api.url}/`, apiKey: KEY });
    const [a, b] = await Promise.all([ionos.addTxt('_acme-challenge.mx.example.com', 'value-a'), ionos.addTxt('_acme-challenge.mx.example.com', 'value-b')]);
    expect(api.posts).toEqual([
      [{ name: '_acme-challenge.mx.example.com', type: 'TXT', content: expect.stringMatching(/^value-[ab]$/), ttl: 60, prio: 0, disabled: false }],
      [{ name: '_acme-challenge.mx.example.com', type: 'TXT', content: expect.stringMatching(/^value-[ab]$/), ttl: 60, prio: 0, disabled: false }],
    ]);
    // Both values live side by side (the zone list was asked once for the two parallel calls).
    expect([...api.records.values()].map((r) => r.content).sort()).toEqual(['"value-a"', '"value-b"']);
    expect(api.requests.filter((line) => line === 'GET /v1/zones')).toHaveLength(1);
    expect(a.zone).toBe('example.com');

    await ionos.removeTxt(a);
    expect([...api.records.values()].map((r) => r.content)).toEqual(['"value-b"']);
    await ionos.removeTxt(b);
    expect(api.records.size).toBe(0);
    // Removing a record that is already gone is what was wanted.
    await ionos.removeTxt(b);
    expect(api.requests.filter((line) => /^(PATCH|PUT) /.test(line))).toEqual([]);
  });

  it('puts a name into its most specific zone', async () => {
    const api = await standIn();
    const record = await new IonosProvider({ apiUrl: api.url, apiKey: KEY }).addTxt('_acme-challenge.mx.sub.example.com', 'v');
    expect(record.zone).toBe('sub.example.com');
    expect(
      zoneFor(
        [
          { id: '1', name: 'example.com' },
          { id: '2', name: 'ample.com' },
        ],
        'mx.example.com',
      )?.id,
    ).toBe('1');
    expect(zoneFor([{ id: '2', name: 'ample.com' }], 'mx.example.com')).toBeNull();
    expect(unquoteTxt('"abc"')).toBe('abc');
    expect(unquoteTxt('abc')).toBe('abc');
  });

  it('says what is wrong without showing the key: refused key, missing zone, API down', async () => {
    const api = await standIn(['example.org']);
    await expect(new IonosProvider({ apiUrl: api.url, apiKey: 'wrong.key' }).preflight(['mx.example.com'])).rejects.toThrow(
      'IONOS API GET /v1/zones: HTTP 401 (is the key in acme.dns_01.api_key_file right, as <prefix>.<secret>?)',
    );
    await expect(new IonosProvider({ apiUrl: api.url, apiKey: KEY }).preflight(['mx.example.com'])).rejects.toThrow(
      'no IONOS zone holds _acme-challenge.mx.example.com (the account has example.org)',
    );
    const closed = await freePort('127.0.0.1');
    const down = new IonosProvider({ apiUrl: `http://127.0.0.1:${closed}`, apiKey: KEY }).preflight(['mx.example.com']);
    await expect(down).rejects.toThrow('IONOS API GET /v1/zones: ECONNREFUSED');
    await down.catch((err: Error) => expect(err.message).not.toContain(KEY));
  });
});

describe('readApiKey', () => {
  it('reads the first non-empty line of the file, trimmed; warns when every user may read it', () => {
    const dir = tempDir();
    const file = path.join(dir, 'key');
    writeFileSync(file, `\n  ${KEY}  \n`, { mode: 0o600 });
    const warnings: string[] = [];
    expect(readApiKey(file, (line) => warnings.push(line))).toBe(KEY);
    expect(warnings).toEqual([]);
    chmodSync(file, 0o644);
    readApiKey(file, (line) => warnings.push(line));
    expect(warnings).toEqual([`warning: ${file} (the DNS API key) is readable by every user: chmod 600 it`]);
  });

  it('refuses a missing or empty file, naming the setting', () => {
    const dir = tempDir();
    expect(() => readApiKey(path.join(dir, 'none'), () => undefined)).toThrow(`acme.dns_01.api_key_file ${path.join(dir, 'none')} does not exist`);
    writeFileSync(path.join(dir, 'empty'), '\n\n', { mode: 0o600 });
    expect(() => readApiKey(path.join(dir, 'empty'), () => undefined)).toThrow('is empty');
  });
});

describe('waitForTxt', () => {
  it('returns once the value is there; times out naming each server and what it answered', async () => {
    const dns = await dnsServer();
    const name = '_acme-challenge.mx.example.com';
    dns.zone.TXT![name] = ['other'];
    setTimeout(() => dns.zone.TXT![name]!.push('wanted'), 300);
    const lines: string[] = [];
    await waitForTxt({ name, value: 'wanted', servers: [dns.address], timeoutMs: 5000, intervalMs: 100, log: (line) => lines.push(line) });
    expect(lines.length).toBeGreaterThan(0);

    await expect(waitForTxt({ name, value: 'never', servers: [dns.address], timeoutMs: 300, intervalMs: 100 })).rejects.toThrow(
      `the TXT record ${name} did not show up within 0.3 s (acme.dns_01.propagation_timeout): ${dns.address}: 2 other TXT value(s)`,
    );
    await expect(waitForTxt({ name: '_acme-challenge.none.example.com', value: 'x', servers: [dns.address], timeoutMs: 100, intervalMs: 50 })).rejects.toThrow(/ENOTFOUND/);
  });

  it('finds no authoritative servers when the lookup server has no NS records for the zone', async () => {
    const dns = await dnsServer();
    await expect(authoritativeServers('example.com', [dns.address])).rejects.toThrow(/cannot find the nameservers of example\.com/);
  });
});

describe('HTTP-01 responders', () => {
  it('standalone: answers only the tokens it holds, only while open; refuses tokens that are not base64url', async () => {
    const port = await freePort('127.0.0.1');
    const responder = makeResponder(
      configWith({ http_01: { address: '127.0.0.1', port } }),
      () => undefined,
      () => undefined,
    );
    await responder.prepare(['mx.example.com']);
    closers.push(() => responder.close());
    await responder.create('mx.example.com', { type: 'http-01', token: 'tok_en-1' }, 'tok_en-1.thumb');
    expect(await get(port, '/.well-known/acme-challenge/tok_en-1')).toEqual({ status: 200, body: 'tok_en-1.thumb' });
    expect((await get(port, '/.well-known/acme-challenge/other')).status).toBe(404);
    expect((await get(port, '/')).status).toBe(404);
    await expect(responder.create('mx.example.com', { type: 'http-01', token: '../../etc' }, 'x')).rejects.toThrow('refusing a challenge token');
    await responder.remove('mx.example.com', { type: 'http-01', token: 'tok_en-1' }, 'tok_en-1.thumb');
    expect((await get(port, '/.well-known/acme-challenge/tok_en-1')).status).toBe(404);
    await responder.close();
    await expect(get(port, '/')).rejects.toThrow(/ECONNREFUSED/);
  });

  it('webroot: writes world-readable token files under .well-known/acme-challenge and removes them, also those left on close', async () => {
    const webroot = tempDir();
    const responder = makeResponder(
      configWith({ http_01: { mode: 'webroot', webroot } }),
      () => undefined,
      () => undefined,
    );
    await responder.prepare(['mx.example.com']);
    const dir = path.join(webroot, '.well-known', 'acme-challenge');
    await responder.create('mx.example.com', { type: 'http-01', token: 'one' }, 'one.thumb');
    await responder.create('mail.example.com', { type: 'http-01', token: 'two' }, 'two.thumb');
    expect(readFileSync(path.join(dir, 'one'), 'utf8')).toBe('one.thumb');
    await responder.remove('mx.example.com', { type: 'http-01', token: 'one' }, 'one.thumb');
    expect(readdirSync(dir)).toEqual(['two']);
    await responder.close();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('webroot: refuses a webroot that is not a directory before anything is ordered', async () => {
    const dir = tempDir();
    const responder = makeResponder(
      configWith({ http_01: { mode: 'webroot', webroot: path.join(dir, 'missing') } }),
      () => undefined,
      () => undefined,
    );
    await expect(responder.prepare(['mx.example.com'])).rejects.toThrow(`acme.http_01.webroot ${path.join(dir, 'missing')} is not a directory`);
    mkdirSync(path.join(dir, 'x'));
    expect(existsSync(path.join(dir, 'missing'))).toBe(false);
  });
});

describe('DNS-01 responder', () => {
  it('adds the record through the provider, waits until the resolver has it, and removes it on close if remove() never ran', async () => {
    const api = await standIn();
    const dns = await dnsServer();
    const dir = tempDir();
    writeFileSync(path.join(dir, 'key'), KEY, { mode: 0o600 });
    const lines: string[] = [];
    const responder = makeResponder(
      configWith({ challenge: 'dns-01', dns_01: { api_key_file: path.join(dir, 'key'), api_url: api.url, resolvers: [dns.address], propagation_timeout: 5 } }),
      (line) => lines.push(line),
      () => undefined,
    );
    await responder.prepare(['mx.example.com']);
    // The "nameserver" learns the record a moment after the API took it.
    setTimeout(() => (dns.zone.TXT!['_acme-challenge.mx.example.com'] = ['digest']), 200);
    await responder.create('mx.example.com', { type: 'dns-01', token: 't' }, 'digest');
    expect(lines).toContain(`dns-01: _acme-challenge.mx.example.com is visible at ${dns.address}`);
    expect(api.records.size).toBe(1);
    await responder.close();
    expect(api.records.size).toBe(0);
  });
});
