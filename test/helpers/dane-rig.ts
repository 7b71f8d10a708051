// What the DANE and TLS report tests share: haraka-out alone, routing through a DNSSEC-validating resolver
// (src/testpeers/dnssec.ts) to MX stand-ins on `port`, trusting a test CA, with MTA-STS policies served by
// an HTTPS server of the test (enforce, the given mx line for every domain it is asked about).
import { createHash, X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TestCa } from '../../src/certs/testca';
import type { ConfigInput } from '../../src/config/schema';
import type { DnssecPeers } from '../../src/testpeers/dnssec';
import type { TestTopologyOptions } from './topology';

/** An MTA-STS policy host on `host`: `enforce`, `mx: <mxFor(domain)>`, with a certificate of `ca` for `names`. */
export async function startPolicyHost(ca: TestCa, names: string[], host: string, mxFor: (domain: string) => string): Promise<https.Server> {
  const server = https.createServer(ca.issue(names), (request, response) => {
    const domain = String(request.headers.host ?? '')
      .replace(/^mta-sts\./, '')
      .replace(/:\d+$/, '');
    response.writeHead(200, { 'content-type': 'text/plain' }).end(`version: STSv1\r\nmode: enforce\r\nmx: ${mxFor(domain)}\r\nmax_age: 86400\r\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return server;
}

/** haraka-out with DANE through `peers`' resolver, MX port `port`, the policy host's port, and `outbound` on top. */
export function daneOutbound(
  rig: { port: number; peers: DnssecPeers; ca: TestCa; policyHost: https.Server },
  outbound: Partial<ConfigInput['outbound']> = {},
): TestTopologyOptions {
  return {
    instances: ['haraka-out'],
    internet: false,
    harakaEnv: { NODE_EXTRA_CA_CERTS: rig.ca.caPath },
    tweak: (config) =>
      void (config.outbound = {
        ...config.outbound,
        mx_port: rig.port,
        dane: true,
        dane_resolver: `${rig.peers.resolver.host}:${rig.peers.resolver.port}`,
        mta_sts_port: (rig.policyHost.address() as AddressInfo).port,
        retry_intervals: [3600],
        ...outbound,
      }),
  };
}

/** The SHA-256 of a certificate's public key (SPKI), as a `3 1 1` TLSA record names it. */
export const spkiSha256 = (pem: string) =>
  createHash('sha256')
    .update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex');
