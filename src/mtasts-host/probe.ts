// Fetches the policy from one listener of the policy service the way a sender does (HTTPS, SNI and Host
// `mta-sts.<domain>`), for `mailproxy health`: what it answered and the certificate it presented. Not
// verified against CAs here (health judges names and dates; the chain is the sender's business, and the
// test rigs use their own CA). Never throws: a failure is a fact.
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { formatHostPort, type HostPort } from '../config/net';
import { WELL_KNOWN_PATH } from './policy';

/** A policy is a few hundred bytes; whatever answers with more is not the policy service. */
const MAX_BODY_BYTES = 64 * 1024;

export interface PolicyServiceFacts {
  /** HOST:PORT asked. */
  address: string;
  /** The name asked for (SNI and Host). */
  host: string;
  /** Why no complete answer came (refused, TLS, timeout); null when one did. */
  error: string | null;
  status: number | null;
  contentType: string | null;
  body: string | null;
  certificate: { validFrom: Date; validTo: Date; coversHost: boolean; fingerprint: string } | null;
  ms: number;
}

export function probePolicyService(target: HostPort, host: string, timeoutMs: number): Promise<PolicyServiceFacts> {
  const started = performance.now();
  const address = formatHostPort(target);
  return new Promise((resolve) => {
    let certificate: PolicyServiceFacts['certificate'] = null;
    let settled = false;
    const finish = (facts: Partial<PolicyServiceFacts>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      resolve({ address, host, error: null, status: null, contentType: null, body: null, certificate, ms: performance.now() - started, ...facts });
    };
    const request = https.request({
      host: target.host,
      port: target.port,
      servername: host,
      path: WELL_KNOWN_PATH,
      method: 'GET',
      headers: { host, 'user-agent': 'mailproxy-health' },
      rejectUnauthorized: false,
      agent: false,
    });
    const timer = setTimeout(() => finish({ error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    request.on('socket', (socket) => {
      socket.once('secureConnect', () => {
        const peer = (socket as TLSSocket).getPeerX509Certificate();
        if (peer) {
          certificate = { validFrom: new Date(peer.validFrom), validTo: new Date(peer.validTo), coversHost: peer.checkHost(host) !== undefined, fingerprint: peer.fingerprint256 };
        }
      });
    });
    request.on('error', (err) => finish({ error: err.message }));
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) return finish({ error: `an answer longer than ${MAX_BODY_BYTES} bytes: not the policy service` });
        chunks.push(chunk);
      });
      response.on('error', (err) => finish({ error: err.message }));
      response.on('end', () =>
        finish({ status: response.statusCode ?? null, contentType: response.headers['content-type'] ?? null, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    request.end();
  });
}
