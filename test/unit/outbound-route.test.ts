// mailproxy-outbound's get_mx hook (route) on its own, with a real loopback DNS server and Haraka's real
// OutboundTLS singleton: the two ways it used to give a message up or drop MTA-STS without a word.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PolicyDecision } from '../../src/mtasts/cache';
import { route } from '../../src/plugins/outbound/index';
import { queueFileState } from '../../src/plugins/outbound/queue-file';
import { harakaOutboundTls } from '../../src/plugins/haraka/patches/outbound-tls';
import { startDnsServer, type DnsServer } from '../../src/testpeers/dns-server';
import { useTempDirs } from '../helpers/tmp';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const constants = require('haraka-constants') as { OK: number; DENY: number; DENYSOFT: number };

const DOMAIN = 'secure.example';
const MX = `mx.${DOMAIN}`;

function fakeHmail(file?: string) {
  const logs: { level: string; msg: string }[] = [];
  const log = (level: string) => (msg: string) => void logs.push({ level, msg });
  return {
    logs,
    hmail: {
      ...(file ? { path: file } : {}),
      num_failures: 0,
      todo: { domain: DOMAIN },
      loginfo: log('info'),
      lognotice: log('notice'),
      logwarn: log('warn'),
      logerror: log('error'),
    },
  };
}

function fakePlugin(decision: PolicyDecision | null) {
  return {
    cfg: { main: { mx_port: 25 }, backend: {}, local: { domains: [] }, mta_sts: {} },
    localDomains: new Set<string>(),
    mtaSts: decision ? { policyFor: async () => decision } : null,
  };
}

function callRoute(plugin: ReturnType<typeof fakePlugin>, hmail: ReturnType<typeof fakeHmail>['hmail']): Promise<[number | undefined, unknown]> {
  return new Promise((resolve) => {
    route.call(plugin as never, (code?: number, result?: unknown) => resolve([code, result]), hmail as never, DOMAIN);
  });
}

const enforce: PolicyDecision = { mode: 'enforce', mx: [MX], source: 'cache' };

describe('mailproxy-outbound route', () => {
  const tempDir = useTempDirs('mailproxy-route-');
  let dns: DnsServer;
  const obtls = harakaOutboundTls();

  beforeAll(async () => {
    dns = await startDnsServer({ MX: { [DOMAIN]: [{ exchange: MX, preference: 10 }] }, A: { [MX]: ['127.0.0.4'] } });
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    (require('haraka-net-utils/lib/dns_config') as { getDnsResolver(): { setServers(s: string[]): void } }).getDnsResolver().setServers([dns.address]);
  });
  afterAll(async () => {
    await dns?.close();
  });
  afterEach(() => {
    delete obtls.cfg;
  });

  it('defers an MTA-STS enforce domain when Haraka has no outbound TLS settings to require TLS with', async () => {
    expect(obtls.cfg).toBeUndefined();
    const { hmail, logs } = fakeHmail();
    const [code, reason] = await callRoute(fakePlugin(enforce), hmail);
    expect(code).toBe(constants.DENYSOFT);
    expect(String(reason)).toMatch(/MTA-STS policy of secure\.example \(enforce\) requires TLS, but Haraka's outbound TLS settings are not loaded/);
    expect(logs).toContainEqual({ level: 'error', msg: String(reason) });
  });

  it('routes an MTA-STS enforce domain to its policy MX with TLS forced once the settings are there', async () => {
    obtls.cfg = { force_tls_hosts: [] };
    const { hmail } = fakeHmail();
    const [code, mxes] = await callRoute(fakePlugin(enforce), hmail);
    expect(code).toBe(constants.OK);
    expect((mxes as { exchange: string }[]).map((mx) => mx.exchange)).toEqual([MX]);
    expect(obtls.cfg.force_tls_hosts).toEqual([DOMAIN]);
  });

  it('drops a delivery whose queue file is gone (ENOENT): `mailproxy queue delete`', async () => {
    const { hmail } = fakeHmail(path.join(tempDir(), 'deleted'));
    const [code] = await callRoute(fakePlugin(null), hmail);
    expect(code).toBe(constants.DENY);
  });

  it('keeps a message whose queue file cannot be read for another reason, and says why', async () => {
    // A file in place of the queue directory: stat fails with ENOTDIR, not ENOENT.
    const notADirectory = path.join(tempDir(), 'file');
    writeFileSync(notADirectory, '');
    const { hmail, logs } = fakeHmail(path.join(notADirectory, 'queued'));
    const [code, reason] = await callRoute(fakePlugin(null), hmail);
    expect(code).toBe(constants.DENYSOFT);
    expect(String(reason)).toMatch(/cannot be read \(ENOTDIR: .*\); kept for the next attempt/);
    expect(logs.some((entry) => entry.level === 'error' && entry.msg.includes('ENOTDIR'))).toBe(true);
  });
});

describe('queueFileState', () => {
  const failing = (code: string) => () => {
    throw Object.assign(new Error(`${code}: failed`), { code });
  };

  it('calls only ENOENT deleted; EACCES and EIO leave the message where it is', () => {
    expect(queueFileState('/q/f', failing('ENOENT'))).toEqual({ kind: 'deleted' });
    expect(queueFileState('/q/f', failing('EACCES'))).toEqual({ kind: 'unreadable', error: 'EACCES: EACCES: failed' });
    expect(queueFileState('/q/f', failing('EIO'))).toEqual({ kind: 'unreadable', error: 'EIO: EIO: failed' });
    expect(queueFileState('/q/f', () => ({}))).toEqual({ kind: 'present' });
  });
});
