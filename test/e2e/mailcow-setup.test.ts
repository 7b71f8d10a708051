// The backend set-up `mailproxy notes` prints for Mailcow, applied as written to a real Postfix: its hook
// commands add the XCLIENT smtpd service (with `postconf -c DIR`, as Mailcow's hook runs them against
// /opt/postfix/conf), and haraka-in's default STARTTLS to the backend gets mail through to a mailbox with
// Mailcow's "enforce inbound TLS" (reject_plaintext_session), which plaintext forwarding cannot.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { makeSelfSigned } from '../../src/certs/selfsigned';
import { loadConfigText } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { LOOPBACK, type Topology } from '../../src/demo/topology';
import { judgeBackend } from '../../src/health/checks';
import { probeBackend } from '../../src/health/probes';
import { installNotes } from '../../src/notes/notes';
import { openSession } from '../../src/smtp/script';
import { postfixUnavailableReason, startPostfix, type PostfixInstance } from '../fixtures/postfix';
import { missingPeers, requirePeers } from '../helpers/peers';
import { freePort } from '../helpers/ports';
import { sendVia } from '../helpers/send';
import { withTopology } from '../helpers/topology';

const runnable = requirePeers('the Mailcow set-up against real Postfix', missingPeers(['/usr/sbin/postfix', '/usr/sbin/postconf'], [postfixUnavailableReason()]));

// The fixture's inet_interfaces is loopback-only: a service without a host part, as the hook adds it,
// listens on 127.0.0.1 there (on Mailcow: every address of the container, published on backend.host).
const SERVICE_HOST = '127.0.0.1';

const TOOL_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

/** A config whose backend is the service the hook adds (what `notes` prints depends on nothing else). */
function backendConfig(port: number): Config {
  const loaded = loadConfigText(
    stringify({
      version: 1,
      hostname: 'mx.demo.test',
      public_ipv4: '192.0.2.25',
      domains: ['demo.test'],
      backend: { host: SERVICE_HOST, port },
      wireguard: { address: LOOPBACK.wireguard, network: '127.0.0.0/8' },
      outbound: { listen: `${LOOPBACK.wireguard}:2526`, relay_acl: [`${LOOPBACK.backend}/32`] },
    }),
  );
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  return loaded.config;
}

/** The `postconf` lines of the hook script in `notes`, aimed at the fixture's config directory. */
function hookCommands(notes: string, configDir: string): string[] {
  const script = notes.split('#!/bin/sh\n')[1]?.split('\n  2.')[0] ?? '';
  return script
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.startsWith('postconf '))
    .map((line) => line.replace('/opt/postfix/conf', configDir));
}

describe.runIf(runnable)('the Mailcow set-up from mailproxy notes, against a real Postfix', () => {
  let postfix: PostfixInstance;
  let servicePort = 0;
  let tlsDir = '';

  beforeAll(async () => {
    tlsDir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-mailcow-tls-'));
    const pair = makeSelfSigned(tlsDir, 'backend.test');
    postfix = await startPostfix({
      listenHost: LOOPBACK.backend,
      port: 0,
      domains: ['demo.test'],
      users: ['alice', 'bob'],
      // Like Mailcow's port 25 (postscreen): no XCLIENT on the main port.
      xclientHosts: [],
      advertiseXclient: false,
      extraMainCf: {
        smtpd_tls_security_level: 'may',
        smtpd_tls_cert_file: pair.certPath,
        smtpd_tls_key_file: pair.keyPath,
        smtpd_tls_loglevel: '1',
        // Mailcow's "enforce inbound TLS" for alice: its tls_enforce_in map answers reject_plaintext_session.
        smtpd_recipient_restrictions: 'check_recipient_access inline:{alice@demo.test=reject_plaintext_session}, reject_unlisted_recipient',
      },
    });
    servicePort = await freePort(SERVICE_HOST);
    for (const command of hookCommands(installNotes(backendConfig(servicePort)), postfix.configDir)) execFileSync('/bin/sh', ['-c', command], { env: TOOL_ENV });
    execFileSync('/usr/sbin/postfix', ['-c', postfix.configDir, 'reload'], { env: TOOL_ENV });
  });
  afterAll(async () => {
    await postfix?.stop();
    if (tlsDir) rmSync(tlsDir, { recursive: true, force: true });
  });

  async function withHarakaIn<T>(starttls: boolean | undefined, body: (t: Topology) => Promise<T>): Promise<T> {
    return withTopology(
      {
        instances: ['haraka-in'],
        backend: false,
        internet: false,
        tweak: (config) => {
          const backend = { ...config.backend, host: SERVICE_HOST, port: servicePort };
          // undefined: the schema's default, as an unedited config has it.
          delete backend.starttls;
          config.backend = starttls === undefined ? backend : { ...backend, starttls };
        },
      },
      body,
    );
  }

  async function sendToBoth(t: Topology, subject: string) {
    const session = await openSession(t.inbound.host, t.inbound.port, { localAddress: '127.0.0.9', helo: 'client9.example.net' });
    try {
      return await sendVia(session, ['alice@demo.test', 'bob@demo.test'], subject);
    } finally {
      session.close();
    }
  }

  it('the hook adds the XCLIENT smtpd; health finds STARTTLS and XCLIENT there, and names the port without them', async () => {
    await withHarakaIn(undefined, async (t) => {
      expect(t.config.backend.starttls).toBe(true);
      // beforeAll ran the hook from a config with the same backend and WireGuard address.
      expect(hookCommands(installNotes(t.config), postfix.configDir)).toEqual(hookCommands(installNotes(backendConfig(servicePort)), postfix.configDir));
      const service = execFileSync('/usr/sbin/postconf', ['-c', postfix.configDir, '-M', `${servicePort}/inet`], { encoding: 'utf8' });
      expect(service).toMatch(new RegExp(`^${servicePort}\\s+inet\\s+n\\s+-\\s+n\\s+-\\s+-\\s+smtpd\\b`, 'm'));
      expect(service).toContain(`smtpd_authorized_xclient_hosts=${LOOPBACK.wireguard}`);

      const settings = { port: servicePort, requireXclient: true, starttls: true };
      let verdict = { status: '', detail: '' };
      for (let tries = 0; tries < 50 && verdict.status !== 'OK'; tries++) {
        verdict = judgeBackend(await probeBackend({ host: SERVICE_HOST, port: servicePort, localAddress: LOOPBACK.wireguard }, 'mx.demo.test', 2000, true), settings);
        if (verdict.status !== 'OK') await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(
        verdict.status,
        `${verdict.detail}\n${(await postfix.log())
          .split('\n')
          .filter((line) => /TLS|tls|fatal|key|cert/i.test(line))
          .slice(0, 6)
          .join('\n')}`,
      ).toBe('OK');
      expect(verdict.detail).toContain('; STARTTLS; XCLIENT');

      const mainPort = judgeBackend(await probeBackend({ host: postfix.host, port: postfix.port, localAddress: LOOPBACK.wireguard }, 'mx.demo.test', 2000, true), {
        ...settings,
        port: postfix.port,
      });
      expect(mainPort.status).toBe('CRITICAL');
      expect(mainPort.detail).toContain(`does not offer XCLIENT to ${LOOPBACK.wireguard}`);
    });
  });

  it('delivers to an "enforce inbound TLS" mailbox over STARTTLS (the default), with the real client in Postfix’s log', async () => {
    await withHarakaIn(undefined, async (t) => {
      const { replies, final } = await sendToBoth(t, 'mailcow tls');
      expect(replies.map((reply) => reply.code)).toEqual([250, 250]);
      expect(final?.code).toBe(250);
      const delivered = (await postfix.waitForDelivered(2)).filter((m) => m.content.includes('Subject: mailcow tls'));
      expect(delivered.map((m) => m.recipient).sort()).toEqual(['alice@demo.test', 'bob@demo.test']);
      expect(delivered[0]?.content, delivered[0]?.content).toMatch(
        /^Received: from client9\.example\.net \(client9\.example\.net \[127\.0\.0\.9\]\)\s+by backend\.test \(Postfix\) with ESMTPS id/m,
      );
    });
  });

  it('with backend.starttls off, that mailbox refuses the plaintext session (4xx) and the other one still gets its mail', async () => {
    await withHarakaIn(false, async (t) => {
      const { replies, final } = await sendToBoth(t, 'mailcow plaintext');
      expect(replies[0]?.code).toBe(450);
      expect(replies[0]?.text).toMatch(/Session encryption is required/);
      expect(replies[1]?.code).toBe(250);
      expect(final?.code).toBe(250);
      await postfix.waitForLog(/to=<bob@demo\.test>.*status=sent/);
      const delivered = (await postfix.delivered()).filter((m) => m.content.includes('Subject: mailcow plaintext'));
      expect(delivered.map((m) => m.recipient)).toEqual(['bob@demo.test']);
    });
  });
});
