// MTA-STS discovery and policy fetch against a loopback DNS server and a loopback HTTPS policy host whose
// certificate comes from a CA made for this test run.
import { makeTestCa } from '../../src/certs/testca';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaStsResolver } from '../../src/mtasts/cache';
import { fetchPolicyText } from '../../src/mtasts/fetch';
import { startDnsServer, type DnsServer } from '../../src/testpeers/dns-server';

const POLICY_HOST_IP = '127.0.0.5';
const POLICY = 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.net\r\nmx: *.mx.example.net\r\nmax_age: 86400\r\n';
// Names on the policy host's certificate; mta-sts.wrongname.example.net resolves to the same host but is not on it.
const CERTIFIED = ['example.net', 'redirect.example.net', 'html.example.net', 'big.example.net', 'slow.example.net'];

/** A throwaway CA and a server certificate it signed for `names`. */
function makeCertificates(dir: string, names: string[]): { ca: string; key: string; cert: string } {
  const ca = makeTestCa(dir);
  return { ca: ca.caPem, ...ca.issue(names) };
}

function handle(request: import('node:http').IncomingMessage, response: import('node:http').ServerResponse): void {
  const host = String(request.headers.host).replace(/:\d+$/, '');
  if (request.url !== '/.well-known/mta-sts.txt') {
    response.writeHead(404).end();
    return;
  }
  switch (host) {
    case 'mta-sts.example.net':
    case 'mta-sts.wrongname.example.net':
      response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(POLICY);
      return;
    case 'mta-sts.redirect.example.net':
      response.writeHead(301, { location: 'https://mta-sts.example.net/.well-known/mta-sts.txt' }).end();
      return;
    case 'mta-sts.html.example.net':
      response.writeHead(200, { 'content-type': 'text/html' }).end(POLICY);
      return;
    case 'mta-sts.big.example.net':
      // no content-length: the limit must hold while streaming
      response.writeHead(200, { 'content-type': 'text/plain' });
      response.write(POLICY);
      response.end(`x_padding: ${'x'.repeat(70 * 1024)}\r\n`);
      return;
    case 'mta-sts.slow.example.net':
      response.writeHead(200, { 'content-type': 'text/plain' });
      response.write('version: STSv1\r\n'); // and never finishes
      return;
    default:
      response.writeHead(404).end();
  }
}

describe('MTA-STS over loopback DNS and HTTPS', () => {
  let dir: string | undefined;
  let dns: DnsServer | undefined;
  let server: https.Server | undefined;
  let port = 0;
  let ca = '';
  const requests: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mtasts-'));
    const certs = makeCertificates(
      dir,
      CERTIFIED.map((domain) => `mta-sts.${domain}`),
    );
    ca = certs.ca;
    const policyHosts = [...CERTIFIED, 'wrongname.example.net'];
    dns = await startDnsServer({
      A: Object.fromEntries(policyHosts.map((domain) => [`mta-sts.${domain}`, [POLICY_HOST_IP]])),
      TXT: {
        '_mta-sts.example.net': ['v=STSv1; id=20261123;'],
        '_mta-sts.wrongname.example.net': ['v=STSv1; id=1;'],
        '_mta-sts.redirect.example.net': ['v=STSv1; id=1;'],
        '_mta-sts.nohost.example.net': ['v=STSv1; id=1;'],
      },
    });
    server = https.createServer({ key: certs.key, cert: certs.cert }, (request, response) => {
      requests.push(String(request.headers.host));
      handle(request, response);
    });
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(0, POLICY_HOST_IP, () => resolve());
    });
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server!.close(() => resolve()));
    }
    await dns?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const options = () => ({ servers: [dns!.address], port, ca });

  it('discovers the enforce policy through TXT and HTTPS, then serves it from the cache', async () => {
    const resolver = createMtaStsResolver(options());
    expect(await resolver.policyFor('example.net')).toEqual({
      mode: 'enforce',
      mx: ['mx1.example.net', '*.mx.example.net'],
      source: 'fresh',
      policy: { version: 'STSv1', mode: 'enforce', mx: ['mx1.example.net', '*.mx.example.net'], maxAge: 86400 },
    });
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'enforce', source: 'cache' });
    expect(requests.filter((host) => host.startsWith('mta-sts.example.net'))).toHaveLength(1);
    expect(dns!.queries).toContainEqual({ name: '_mta-sts.example.net', type: 'TXT' });
    expect(dns!.queries).toContainEqual({ name: 'mta-sts.example.net', type: 'A' });
  });

  it('persists the policy to the cache file', async () => {
    const cacheFile = path.join(dir!, 'mta-sts-cache.json');
    await createMtaStsResolver({ ...options(), cacheFile }).policyFor('example.net');
    expect(JSON.parse(readFileSync(cacheFile, 'utf8'))['example.net']).toMatchObject({ id: '20261123', policy: { mode: 'enforce' } });
  });

  it('treats a certificate for another name as a fetch failure', async () => {
    const decision = await createMtaStsResolver(options()).policyFor('wrongname.example.net');
    expect(decision).toMatchObject({ mode: 'no-policy', source: 'none' });
    expect(decision.error).toMatch(/mta-sts\.wrongname\.example\.net.*failed: .*(altnames|does not match)/);
    expect(requests.some((host) => host.startsWith('mta-sts.wrongname.'))).toBe(false);
  });

  it('does not follow a redirect', async () => {
    const before = requests.length;
    const decision = await createMtaStsResolver(options()).policyFor('redirect.example.net');
    expect(decision).toMatchObject({ mode: 'no-policy', source: 'none' });
    expect(decision.error).toMatch(/HTTP 301 redirect to https:\/\/mta-sts\.example\.net\/.* not followed/);
    expect(requests.slice(before)).toEqual([`mta-sts.redirect.example.net:${port}`]);
  });

  it('fails when the policy host has no address', async () => {
    const decision = await createMtaStsResolver(options()).policyFor('nohost.example.net');
    expect(decision).toMatchObject({ mode: 'no-policy', source: 'none' });
    expect(decision.error).toMatch(/mta-sts\.nohost\.example\.net has no A\/AAAA record/);
  });

  it('does not trust the test CA unless told to', async () => {
    await expect(fetchPolicyText('example.net', { servers: [dns!.address], port })).rejects.toThrow(/unable to verify|local issuer|self.signed/);
  });

  it('requires text/plain', async () => {
    await expect(fetchPolicyText('html.example.net', options())).rejects.toThrow(/media type is "text\/html", not text\/plain/);
  });

  it('stops reading a body over 64 KiB', async () => {
    await expect(fetchPolicyText('big.example.net', options())).rejects.toThrow(/body exceeds 65536 bytes/);
  });

  it('gives up after the timeout', async () => {
    const started = Date.now();
    await expect(fetchPolicyText('slow.example.net', { ...options(), timeoutMs: 500 })).rejects.toThrow(/timed out after 500 ms/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
