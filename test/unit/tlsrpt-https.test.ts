import { Resolver } from 'node:dns/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type IssuedCertificate, makeTestCa, type TestCa } from '../../src/certs/testca';
import { startDnsServer } from '../../src/testpeers/dns-server';
import { lookupThrough, postReport } from '../../src/tlsrpt/https';
import { gzipReport } from '../../src/tlsrpt/message';
import { buildReport } from '../../src/tlsrpt/report';
import { SAMPLE_DAY } from '../helpers/tlsrpt-day';

interface Received {
  method: string;
  url: string;
  contentType: string | undefined;
  body: Buffer;
}

type Handler = (request: IncomingMessage, response: ServerResponse, body: Buffer) => void;

const servers: https.Server[] = [];

/** A real HTTPS server on 127.0.0.1 with a certificate for "localhost" from the test CA. */
async function serve(certificate: IssuedCertificate, handler: Handler): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const server = https.createServer(certificate, (request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      received.push({ method: request.method ?? '', url: request.url ?? '', contentType: request.headers['content-type'], body });
      handler(request, response, body);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `https://localhost:${(server.address() as AddressInfo).port}/v1/tlsrpt?src=mailproxy`, received };
}

/** "localhost" resolved to 127.0.0.1 whatever the system resolver says. */
const lookup = ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
  if (options.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
  else callback(null, '127.0.0.1', 4);
}) as never;

describe('TLS report POST (RFC 8460 §5.4)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-tlsrpt-https-'));
  let ca: TestCa;
  let certificate: IssuedCertificate;
  const report = buildReport(SAMPLE_DAY, 'dane.example', { organization: 'Sender Org', contact: 'mailto:tlsrpt@sender.example' }, 'r1')!;
  const gzipped = gzipReport(report);

  beforeAll(() => {
    ca = makeTestCa(dir);
    certificate = ca.issue(['localhost']);
  });
  afterAll(async () => {
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('POSTs the gzipped report as application/tlsrpt+gzip and resolves on a 2xx', async () => {
    const { url, received } = await serve(certificate, (_request, response) => response.writeHead(201).end('created'));
    await postReport(url, gzipped, { timeoutMs: 5_000, ca: ca.caPem, lookup, allowPrivateAddresses: true });
    expect(received).toHaveLength(1);
    const [got] = received;
    expect(got!.method).toBe('POST');
    expect(got!.url).toBe('/v1/tlsrpt?src=mailproxy');
    expect(got!.contentType).toBe('application/tlsrpt+gzip');
    expect(JSON.parse(gunzipSync(got!.body).toString('utf8'))).toEqual(report);
  });

  it('rejects a 500 with the status and what the server said', async () => {
    const { url } = await serve(certificate, (_request, response) => response.writeHead(500, { 'content-type': 'text/plain' }).end('database is down'));
    await expect(postReport(url, gzipped, { timeoutMs: 5_000, ca: ca.caPem, lookup, allowPrivateAddresses: true })).rejects.toThrow(/failed: HTTP 500: database is down/);
  });

  it('does not follow a redirect', async () => {
    const { url } = await serve(certificate, (_request, response) => response.writeHead(302, { location: 'https://elsewhere.example/' }).end());
    await expect(postReport(url, gzipped, { timeoutMs: 5_000, ca: ca.caPem, lookup, allowPrivateAddresses: true })).rejects.toThrow(
      /HTTP 302 redirect to https:\/\/elsewhere\.example\/ not followed/,
    );
  });

  it('rejects when the server never answers', async () => {
    const { url, received } = await serve(certificate, () => {});
    const started = Date.now();
    await expect(postReport(url, gzipped, { timeoutMs: 500, ca: ca.caPem, lookup, allowPrivateAddresses: true })).rejects.toThrow(/no answer within 500 ms/);
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(received).toHaveLength(1);
  });

  it('rejects a certificate it does not trust', async () => {
    const { url, received } = await serve(certificate, (_request, response) => response.writeHead(200).end());
    await expect(postReport(url, gzipped, { timeoutMs: 5_000, lookup, allowPrivateAddresses: true })).rejects.toThrow(/failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
    expect(received).toHaveLength(0);
  });

  it('refuses a URL that is not https:', async () => {
    await expect(postReport('http://127.0.0.1:9/', gzipped, { timeoutMs: 1_000 })).rejects.toThrow(/not an https: URL/);
  });
});

describe('TLS report POST: public addresses only', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-tlsrpt-https-public-'));
  const report = buildReport(SAMPLE_DAY, 'dane.example', { organization: 'Sender Org', contact: 'mailto:tlsrpt@sender.example' }, 'r1')!;
  const gzipped = gzipReport(report);
  afterAll(async () => {
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** A name whose answers are `addresses`, whatever the system resolver says. */
  const resolvingTo = (...addresses: string[]) =>
    ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
      const answers = addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
      if (options.all) callback(null, answers);
      else callback(null, answers[0]!.address, answers[0]!.family);
    }) as never;

  it('does not POST to a name with a private, loopback or shared address among its answers, nor to such an address', async () => {
    const ca = makeTestCa(dir);
    const { url, received } = await serve(ca.issue(['localhost']), (_request, response) => response.writeHead(200).end());
    await expect(postReport(url, gzipped, { timeoutMs: 5_000, ca: ca.caPem, lookup: resolvingTo('127.0.0.1') })).rejects.toThrow(
      /localhost has the address 127\.0\.0\.1, which is not public: not posting there/,
    );
    await expect(postReport(url, gzipped, { timeoutMs: 5_000, ca: ca.caPem, lookup: resolvingTo('93.184.215.14', '10.0.0.2') })).rejects.toThrow(
      /10\.0\.0\.2, which is not public/,
    );
    await expect(postReport(url, gzipped, { timeoutMs: 5_000, ca: ca.caPem, lookup: resolvingTo('::ffff:100.64.0.1') })).rejects.toThrow(/not public/);
    const port = new URL(url).port;
    for (const literal of ['127.0.0.1', '[::1]', '10.0.0.2', '169.254.169.254', '[fd00::1]']) {
      await expect(postReport(`https://${literal}:${port}/`, gzipped, { timeoutMs: 5_000, ca: ca.caPem })).rejects.toThrow(/is not a public address: not posting there/);
    }
    expect(received).toHaveLength(0);
  });

  it('resolves the rua through the given DNS server (lookupThrough): refused at a loopback answer, posted when a test rig allows it', async () => {
    const ca = makeTestCa(path.join(dir, 'through'));
    const { url, received } = await serve(ca.issue(['rua.example']), (_request, response) => response.writeHead(200).end());
    const dns = await startDnsServer({ A: { 'rua.example': ['127.0.0.1'] } }, '127.0.0.1');
    try {
      const resolver = new Resolver();
      resolver.setServers([dns.address]);
      const target = url.replace('localhost', 'rua.example');
      await expect(postReport(target, gzipped, { timeoutMs: 5_000, ca: ca.caPem, lookup: lookupThrough(resolver) })).rejects.toThrow(
        /rua\.example has the address 127\.0\.0\.1, which is not public/,
      );
      expect(received).toHaveLength(0);
      await postReport(target, gzipped, { timeoutMs: 5_000, ca: ca.caPem, lookup: lookupThrough(resolver), allowPrivateAddresses: true });
      expect(received).toHaveLength(1);
      await expect(postReport(target.replace('rua.example', 'missing.example'), gzipped, { timeoutMs: 5_000, ca: ca.caPem, lookup: lookupThrough(resolver) })).rejects.toThrow(
        /ENOTFOUND/,
      );
    } finally {
      await dns.close();
    }
  });
});
