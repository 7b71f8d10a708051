// Fetches an MTA-STS policy body over HTTPS (RFC 8461 §3.3). Host names are resolved through the configured
// DNS servers only, never the system resolver, so the appliance's DNS choice holds for policy fetches too.
import { promises as dnsPromises, type LookupAddress, type LookupOptions } from 'node:dns';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { LookupFunction } from 'node:net';
import tls from 'node:tls';
import { normalizeDomain, policyHostName } from './policy';

export const MAX_POLICY_BYTES = 64 * 1024;
export const POLICY_PATH = '/.well-known/mta-sts.txt';

export interface FetchPolicyOptions {
  /** DNS servers as `ip:port` (or `[ipv6]:port`) for resolving `mta-sts.<domain>`. */
  servers: string[];
  /** HTTPS port, 443 unless testing. */
  port?: number;
  /** Overall limit for DNS, connect, TLS and body, in milliseconds. */
  timeoutMs?: number;
  /** Extra trusted CA certificate(s) (PEM), added to Node's default CAs. */
  ca?: string | Buffer;
}

const NO_ADDRESS_CODES = new Set(['ENODATA', 'ENOTFOUND']);

async function resolveAddresses(resolver: dnsPromises.Resolver, host: string, family: number | undefined): Promise<LookupAddress[]> {
  const families = family === 4 || family === 6 ? [family] : [4, 6];
  const results = await Promise.allSettled(
    families.map(async (fam) => {
      const addresses = fam === 4 ? await resolver.resolve4(host) : await resolver.resolve6(host);
      return addresses.map((address) => ({ address, family: fam }));
    }),
  );
  const addresses = results.flatMap((result) => (result.status === 'fulfilled' ? result.value : []));
  if (addresses.length > 0) return addresses;
  const failure = results
    .map((result) => (result.status === 'rejected' ? (result.reason as NodeJS.ErrnoException) : undefined))
    .find((err) => err && !NO_ADDRESS_CODES.has(String(err.code)));
  if (failure) throw failure;
  throw Object.assign(new Error(`${host} has no ${families.map((fam) => (fam === 4 ? 'A' : 'AAAA')).join('/')} record`), { code: 'ENOTFOUND' });
}

function lookupThrough(resolver: dnsPromises.Resolver): LookupFunction {
  return (hostname: string, options: LookupOptions, callback) => {
    resolveAddresses(resolver, hostname, options.family as number | undefined).then(
      (addresses) => {
        if (options.all) callback(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };
}

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

/**
 * GETs `https://mta-sts.<domain>/.well-known/mta-sts.txt` and returns the body. Rejects on anything but a
 * 200 text/plain response of at most 64 KiB from a server whose certificate is valid for `mta-sts.<domain>`;
 * redirects are not followed (§3.3).
 */
export function fetchPolicyText(domain: string, options: FetchPolicyOptions): Promise<string> {
  const name = normalizeDomain(domain);
  const host = name ? policyHostName(name) : `mta-sts.${domain}`;
  const url = `https://${host}${POLICY_PATH}`;
  const fail = (reason: string): Error => new Error(`MTA-STS policy fetch from ${url} failed: ${reason}`);
  if (!name) return Promise.reject(fail(`${JSON.stringify(domain)} is not a domain name`));
  if (options.servers.length === 0) return Promise.reject(fail('no DNS servers configured'));

  const timeoutMs = options.timeoutMs ?? 10_000;
  const resolver = new dnsPromises.Resolver({ timeout: Math.max(1, Math.min(timeoutMs, 5_000)), tries: 2 });
  resolver.setServers(options.servers);

  return new Promise<string>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (err: Error | null, body?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        resolver.cancel();
        request.destroy();
        reject(err.message.startsWith('MTA-STS policy fetch') ? err : fail(err.message));
      } else {
        resolve(body!);
      }
    };

    const request = https.request({
      host,
      servername: host,
      port: options.port ?? 443,
      path: POLICY_PATH,
      method: 'GET',
      headers: { accept: 'text/plain', 'user-agent': 'mailproxy-mta-sts' },
      lookup: lookupThrough(resolver),
      ca: options.ca ? [...tls.rootCertificates, options.ca] : undefined,
      rejectUnauthorized: true,
      agent: false,
    });
    timer = setTimeout(() => finish(fail(`timed out after ${timeoutMs} ms`)), timeoutMs);

    request.on('error', (err) => finish(err));
    request.on('response', (response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      if (status >= 300 && status < 400) {
        return finish(fail(`HTTP ${status} redirect${response.headers.location ? ` to ${response.headers.location}` : ''} not followed`));
      }
      if (status !== 200) return finish(fail(`HTTP ${status}`));
      const type = mediaType(response.headers['content-type']);
      if (type !== 'text/plain') return finish(fail(`media type is ${JSON.stringify(type || 'missing')}, not text/plain`));
      if (Number(response.headers['content-length'] ?? 0) > MAX_POLICY_BYTES) {
        return finish(fail(`body of ${response.headers['content-length']} bytes exceeds ${MAX_POLICY_BYTES}`));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_POLICY_BYTES) return finish(fail(`body exceeds ${MAX_POLICY_BYTES} bytes`));
        chunks.push(chunk);
      });
      response.on('error', (err) => finish(err));
      response.on('end', () => {
        try {
          finish(null, new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks)));
        } catch {
          finish(fail('body is not valid UTF-8'));
        }
      });
    });
    request.end();
  });
}
