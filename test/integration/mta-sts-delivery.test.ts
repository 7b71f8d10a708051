// haraka-out honours MTA-STS: for an enforce-mode domain it delivers only over TLS with a certificate that
// verifies for the MX name, temp-fails otherwise, and keeps enforcing from its cache when the policy host
// and the TXT record disappear.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSelfSigned } from '../../src/certs/selfsigned';
import { makeTestCa, type TestCa } from '../../src/certs/testca';
import { LOOPBACK, type Topology } from '../../src/demo/topology';
import { startSmtpSink, type SmtpSink } from '../../src/testpeers/smtp-sink';
import { startBrokenTlsMx } from '../helpers/broken-tls-mx';
import { parseDsn } from '../helpers/dsn';
import { withTopology } from '../helpers/topology';
import { eventually } from '../helpers/poll';
import { relayOut } from '../helpers/send';

const DOMAIN = 'secure.example';
const MX = `mx.${DOMAIN}`;
const POLICY_HOST = '127.0.0.5';

describe('MTA-STS enforce mode in haraka-out', () => {
  let dir = '';
  let ca: TestCa;
  let policyServer: https.Server;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-mtasts-'));
    ca = makeTestCa(path.join(dir, 'ca'));
    policyServer = https.createServer(ca.issue([`mta-sts.${DOMAIN}`]), (request, response) => {
      if (request.url !== '/.well-known/mta-sts.txt') return void response.writeHead(404).end();
      response.writeHead(200, { 'content-type': 'text/plain' }).end(`version: STSv1\r\nmode: enforce\r\nmx: ${MX}\r\nmax_age: 86400\r\n`);
    });
    await new Promise<void>((resolve) => policyServer.listen(0, POLICY_HOST, resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => policyServer?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  const relay = (t: Topology) => relayOut(t, `carol@${DOMAIN}`, 'mta-sts');

  async function waitForCount(t: Topology, pattern: RegExp, count: number): Promise<void> {
    const output = () => t.haraka['haraka-out']?.output() ?? '';
    const seen = () => (output().match(new RegExp(pattern.source, 'g')) ?? []).length;
    await eventually(`${count} x ${pattern}`, () => seen() >= count, { timeoutMs: 30_000, context: () => output().slice(-3000) });
  }

  function publishPolicy(t: Topology): void {
    t.dns.zone.MX = { ...t.dns.zone.MX, [DOMAIN]: [{ exchange: MX, preference: 10 }] };
    t.dns.zone.A = { ...t.dns.zone.A, [MX]: [LOOPBACK.internet], [`mta-sts.${DOMAIN}`]: [POLICY_HOST] };
    t.dns.zone.TXT = { ...t.dns.zone.TXT, [`_mta-sts.${DOMAIN}`]: ['v=STSv1; id=20261123;'] };
  }

  // Runs before the test below, which takes the policy host down.
  it('never retries a broken STARTTLS without TLS, and the deferrals and the bounce say why', async () => {
    await withTopology(
      {
        instances: ['haraka-out'],
        internet: false,
        harakaEnv: { NODE_EXTRA_CA_CERTS: ca.caPath },
        tweak: (config) =>
          void (config.outbound = { ...config.outbound, retry_intervals: [5], max_queue_lifetime: 10, mta_sts_port: (policyServer.address() as AddressInfo).port }),
      },
      async (t) => {
        publishPolicy(t);
        const mx = await startBrokenTlsMx(LOOPBACK.internet, t.config.outbound.mx_port, MX);
        try {
          await relay(t);
          const [dsn] = await t.backend!.waitForMessages(1, 30_000);
          // Three attempts, each one stopped at the failed handshake: nothing ever went out in plaintext.
          expect(mx.brokenHandshakes()).toBe(3);
          expect(mx.sessions.every((verbs) => verbs.includes('STARTTLS') && !verbs.includes('MAIL'))).toBe(true);
          expect(mx.deliveries).toHaveLength(0);
          const log = t.haraka['haraka-out']?.output() ?? '';
          expect(log).toContain(`STARTTLS with ${LOOPBACK.internet} failed; ${DOMAIN} enforces MTA-STS: no try without TLS`);
          const why = `MTA-STS policy of ${DOMAIN} (enforce) requires TLS with a certificate valid for the MX host name, but the TLS handshake with ${LOOPBACK.internet} failed`;
          expect(log.match(new RegExp(`Temp failing \\S+ for 5 seconds: ${why.replace(/[.()]/g, '\\$&')}`, 'g'))).toHaveLength(2);

          const report = parseDsn(dsn!.raw);
          expect(report.human).toMatch(
            new RegExp(`<carol@secure\\.example>: ${why.replace(/[.()]/g, '\\$&')} \\(a temporary failure, given up after 3 attempts over \\d+ seconds\\)`),
          );
          const [rcpt] = report.recipients;
          expect(rcpt?.get('final-recipient')).toBe(`rfc822;carol@${DOMAIN}`);
          expect(rcpt?.get('action')).toBe('failed');
          expect(rcpt?.get('status')).toBe('5.7.5');
        } finally {
          await mx.close();
        }
      },
    );
  });

  it('temp-fails without TLS and with an unverifiable certificate, keeps enforcing from its cache, and delivers once TLS verifies', async () => {
    await withTopology(
      {
        instances: ['haraka-out'],
        internet: false,
        harakaEnv: { NODE_EXTRA_CA_CERTS: ca.caPath },
        tweak: (config) =>
          void (config.outbound = { ...config.outbound, retry_intervals: [5], max_queue_lifetime: 20, mta_sts_port: (policyServer.address() as AddressInfo).port }),
      },
      async (t) => {
        publishPolicy(t);
        const port = t.config.outbound.mx_port;

        // 1. The MX offers no STARTTLS: an enforce domain must not get the message in plaintext.
        let mx: SmtpSink = await startSmtpSink({ host: LOOPBACK.internet, port, name: MX });
        await relay(t);
        await waitForCount(t, /Temp failing/, 1);
        expect(t.haraka['haraka-out']?.output()).toMatch(
          /Temp failing \S+ for 5 seconds: MTA-STS policy of secure\.example \(enforce\) requires TLS, but its MX host did not offer STARTTLS/,
        );
        expect(mx.messages).toHaveLength(0);
        await mx.close();

        // 2. The policy host and the TXT record vanish; the cached policy still applies. The MX now offers
        //    TLS, but with a self-signed certificate that does not verify.
        await new Promise((resolve) => policyServer.close(resolve));
        delete t.dns.zone.TXT![`_mta-sts.${DOMAIN}`];
        const selfSigned = makeSelfSigned(path.join(dir, 'selfsigned'), MX);
        mx = await startSmtpSink({ host: LOOPBACK.internet, port, name: MX, tls: { key: readFileSync(selfSigned.keyPath), cert: readFileSync(selfSigned.certPath) } });
        await waitForCount(t, /Temp failing/, 2);
        expect(t.haraka['haraka-out']?.output()).toMatch(/self-signed certificate|failed TLS verification/i);
        await waitForCount(
          t,
          /Temp failing \S+ for 5 seconds: MTA-STS policy of secure\.example \(enforce\) requires TLS with a certificate valid for the MX host name, but the TLS handshake with 127\.0\.0\.4 failed/,
          1,
        );
        expect(mx.messages).toHaveLength(0);
        await mx.close();

        // 3. A certificate from a trusted CA for the MX name: delivered, over TLS.
        mx = await startSmtpSink({ host: LOOPBACK.internet, port, name: MX, tls: ca.issue([MX]) });
        try {
          const [delivered] = await mx.waitForMessages(1, 30_000);
          expect(delivered?.rcptTo).toEqual([`carol@${DOMAIN}`]);
          expect(delivered?.secure).toBe(true);
        } finally {
          await mx.close();
        }
      },
    );
  });
});
