// Delivers a gzipped TLS report to an https: rua (RFC 8460 §5.4): one POST of the report as
// application/tlsrpt+gzip. Any 2xx is success; everything else (another status, a redirect, which is not
// followed, a TLS or network error, no answer in time) rejects with an error that says which.
import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import dns, { type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import tls from 'node:tls';
import { isPublicIp } from '../config/net';
import { TLSRPT_GZIP_TYPE } from './message';

/** How much of a refusal is read (for the error text); the rest is dropped with the connection. */
const MAX_ANSWER_BYTES = 16 * 1024;
/** How much of a refusal's body goes into the error message. */
const ERROR_EXCERPT_CHARS = 200;

export interface PostReportOptions {
  /** Overall limit for connect, TLS, upload and answer, in milliseconds. */
  timeoutMs: number;
  /** Extra trusted CA certificate(s) (PEM), added to Node's default CAs. */
  ca?: string | Buffer;
  /** How the host name is resolved (e.g. through the configured DNS servers); Node's default otherwise. */
  lookup?: LookupFunction;
  /** POST to private, loopback and other non-public addresses too (test rigs). Otherwise a report goes to
   * public addresses only: the rua comes from the recipient domain's DNS, and must not make the VPS POST
   * into its WireGuard network or to its own loopback services. */
  allowPrivateAddresses?: boolean;
}

/** `lookup`, refusing a name with any address that is not public: every answer is checked, and the connection
 * goes to an address that was (no second lookup between the check and the connect). */
function publicOnly(lookup: LookupFunction): LookupFunction {
  return ((hostname: string, options: LookupOptions, callback: (err: Error | null, address: string | LookupAddress[], family?: number) => void) => {
    lookup(hostname, { ...options, all: true }, (err, answers) => {
      if (err) return callback(err, '');
      const addresses = answers as unknown as LookupAddress[];
      const refused = addresses.find((answer) => !isPublicIp(answer.address));
      if (refused) return callback(new Error(`${hostname} has the address ${refused.address}, which is not public: not posting there`), '');
      if (options.all) return callback(null, addresses);
      const first = addresses[0];
      if (!first) return callback(new Error(`${hostname} has no address`), '');
      callback(null, first.address, first.family);
    });
  }) as LookupFunction;
}

function excerpt(body: Buffer): string {
  const text = body.toString('utf8').replace(/\s+/g, ' ').trim();
  return text.length > ERROR_EXCERPT_CHARS ? `${text.slice(0, ERROR_EXCERPT_CHARS)}...` : text;
}

/** The answer's body, at most MAX_ANSWER_BYTES of it; resolves at the end or at the limit. */
function answerBody(response: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    response.on('data', (chunk: Buffer) => {
      if (size >= MAX_ANSWER_BYTES) return;
      chunks.push(chunk.subarray(0, MAX_ANSWER_BYTES - size));
      size += chunk.length;
      if (size >= MAX_ANSWER_BYTES) resolve(Buffer.concat(chunks));
    });
    response.on('end', () => resolve(Buffer.concat(chunks)));
    response.on('error', reject);
  });
}

/** A host name's addresses through `resolver` (the config's dns.servers), in the form https.request takes. */
export function lookupThrough(resolver: dns.promises.Resolver): LookupFunction {
  return ((hostname: string, options: LookupOptions, callback: (err: Error | null, address: string | LookupAddress[], family?: number) => void) => {
    Promise.allSettled([resolver.resolve4(hostname), resolver.resolve6(hostname)]).then(([v4, v6]) => {
      const answers: LookupAddress[] = [
        ...(v4.status === 'fulfilled' ? v4.value.map((address) => ({ address, family: 4 })) : []),
        ...(v6.status === 'fulfilled' ? v6.value.map((address) => ({ address, family: 6 })) : []),
      ];
      const first = answers[0];
      if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '');
      if (options.all) callback(null, answers);
      else callback(null, first.address, first.family);
    });
  }) as LookupFunction;
}

/** POSTs `gzipped` to `url`; resolves on a 2xx answer, rejects otherwise. */
export function postReport(url: string, gzipped: Buffer, options: PostReportOptions): Promise<void> {
  const fail = (reason: string): Error => new Error(`TLS report POST to ${url} failed: ${reason}`);
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return Promise.reject(fail('not a URL'));
  }
  if (target.protocol !== 'https:') return Promise.reject(fail('not an https: URL'));
  const literal = target.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!options.allowPrivateAddresses && isIP(literal) && !isPublicIp(literal)) return Promise.reject(fail(`${literal} is not a public address: not posting there`));
  const lookup = options.lookup ?? (dns.lookup as unknown as LookupFunction);

  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      if (err) reject(err.message.startsWith('TLS report POST') ? err : fail(err.message));
      else resolve();
    };
    const request = https.request(target, {
      method: 'POST',
      headers: { 'content-type': TLSRPT_GZIP_TYPE, 'content-length': gzipped.length, 'user-agent': 'mailproxy-tlsrpt' },
      ca: options.ca ? [...tls.rootCertificates, options.ca] : undefined,
      rejectUnauthorized: true,
      agent: false,
      lookup: options.allowPrivateAddresses ? lookup : publicOnly(lookup),
    });
    const timer = setTimeout(() => finish(fail(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
    request.on('error', (err: NodeJS.ErrnoException) => finish(fail(err.code ? `${err.code}: ${err.message}` : err.message)));
    request.on('response', (response) => {
      const status = response.statusCode ?? 0;
      if (status >= 200 && status < 300) return finish(null);
      if (status >= 300 && status < 400) {
        return finish(fail(`HTTP ${status} redirect${response.headers.location ? ` to ${response.headers.location}` : ''} not followed`));
      }
      answerBody(response).then(
        (body) => {
          const text = excerpt(body);
          finish(fail(`HTTP ${status}${text ? `: ${text}` : ''}`));
        },
        (err: Error) => finish(err),
      );
    });
    request.end(gzipped);
  });
}
