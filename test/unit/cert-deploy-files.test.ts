// The file side of `cert deploy`: tls.ini rewritten in place (only key= and cert=), the deploy record
// that `render` and `check` follow, versioned files written with their final mode, pruning, the lock.
import { mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquireLock, ensureDeployDir, filePolicy, installFile, lookupUser, pruneVersions } from '../../src/certs/deploy/files';
import { systemdRestarter } from '../../src/certs/deploy/restart';
import { effectiveTls, formatRecord, parseRecord, type DeployRecord } from '../../src/haraka/deploy-record';
import { readTlsPair, withTlsPair } from '../../src/certs/deploy/tlsini';
import { tlsCheckLines } from '../../src/check/run';
import { loadConfigText } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { renderInstances } from '../../src/render/haraka';
import { makeCa } from '../helpers/cert-fixtures';
import { useTempDirs } from '../helpers/tmp';

const tempDir = useTempDirs('mailproxy-cert-files-');

function config(stateDir: string, tls = { key: '/etc/mailproxy/tls/privkey.pem', cert: '/etc/mailproxy/tls/fullchain.pem' }): Config {
  const loaded = loadConfigText(
    ['version: 1', 'hostname: mx.demo.test', 'public_ipv4: 192.0.2.25', 'domains: [demo.test]', `state_dir: ${stateDir}`, `tls: {key: ${tls.key}, cert: ${tls.cert}}`].join('\n'),
  );
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  return loaded.config;
}

const A = 'a'.repeat(64);
const B = `${'b'.repeat(64)}-0123456789ab`;

describe('tls.ini rewritten in place', () => {
  const rendered = renderInstances(config('/var/lib/mailproxy'), { source: 'mailproxy.yaml' }).get('haraka-in/config/tls.ini') as string;

  it('reads and replaces only the [main] key and cert, keeping every other byte', () => {
    expect(readTlsPair(rendered)).toEqual({ key: '/etc/mailproxy/tls/privkey.pem', cert: '/etc/mailproxy/tls/fullchain.pem' });
    const pair = { key: `/var/lib/mailproxy/tls/${A}.key`, cert: `/var/lib/mailproxy/tls/${A}.pem` };
    const next = withTlsPair(rendered, pair, 'tls.ini');
    expect(readTlsPair(next)).toEqual(pair);
    const differing = next.split('\n').filter((line, index) => line !== rendered.split('\n')[index]);
    expect(differing).toEqual([`key=${pair.key}`, `cert=${pair.cert}`]);
    // The renderer, given the deployed pair, writes exactly that text: render and deploy agree.
    expect(renderInstances(config('/var/lib/mailproxy'), { source: 'mailproxy.yaml', tls: pair }).get('haraka-in/config/tls.ini')).toBe(next);
    // haraka-out's tls.ini has no inbound cipher policy (its deliveries must still reach CBC-only MXs).
    const renderedOut = renderInstances(config('/var/lib/mailproxy'), { source: 'mailproxy.yaml' }).get('haraka-out/config/tls.ini') as string;
    expect(renderInstances(config('/var/lib/mailproxy'), { source: 'mailproxy.yaml', tls: pair }).get('haraka-out/config/tls.ini')).toBe(withTlsPair(renderedOut, pair, 'tls.ini'));
  });

  it('leaves other sections alone, reads keys above the first section as [main], refuses a file without them', () => {
    const text = 'key = /old.key\n[main]\ncert=/old.pem\n[outbound]\nkey=/client.key\n';
    expect(readTlsPair(text)).toEqual({ key: '/old.key', cert: '/old.pem' });
    expect(withTlsPair(text, { key: '/n.key', cert: '/n.pem' }, 'x')).toBe('key = /n.key\n[main]\ncert=/n.pem\n[outbound]\nkey=/client.key\n');
    expect(() => withTlsPair('[main]\nkey=/a\n', { key: '/n.key', cert: '/n.pem' }, 'haraka-in tls.ini')).toThrow('haraka-in tls.ini has no cert= in [main]');
    expect(() => withTlsPair('[main]\n;key=/a\ncert=/b\n', { key: '/n', cert: '/m' }, 't')).toThrow('t has no key= in [main]');
  });
});

describe('the deploy record', () => {
  const pair = (stem: string, dir: string) => ({
    fingerprint: 'AA:BB',
    stem,
    key: path.join(dir, `${stem}.key`),
    cert: path.join(dir, `${stem}.pem`),
    deployed: '2026-01-01T00:00:00.000Z',
  });

  it('makes render use the deployed files while they exist, and tls.key/tls.cert otherwise', () => {
    const state = tempDir();
    const c = config(state);
    expect(effectiveTls(c)).toEqual({ key: c.tls.key, cert: c.tls.cert, from: 'tls.key/tls.cert', ignored: null });
    const dir = path.join(state, 'tls');
    mkdirSync(dir);
    const record: DeployRecord = { version: 1, current: pair(A, dir), previous: null };
    writeFileSync(path.join(dir, 'deployed.json'), formatRecord(record));
    expect(effectiveTls(c).ignored).toMatch(/names .*\.key and .*\.pem, which do not exist$/);
    writeFileSync(record.current.key, 'k');
    writeFileSync(record.current.cert, 'c');
    expect(effectiveTls(c)).toEqual({ key: record.current.key, cert: record.current.cert, from: 'cert deploy', ignored: null });
    expect(parseRecord(formatRecord(record), 'f')).toEqual(record);
    expect(() => parseRecord('{"version":1}', 'deployed.json')).toThrow('deployed.json is not a deploy record of this version');
    writeFileSync(path.join(dir, 'deployed.json'), 'not json');
    expect(effectiveTls(c).ignored).toMatch(/is not JSON/);
  });
});

describe('versioned files', () => {
  it('are written with their final mode, left alone when identical, and pruned to the ones kept', async () => {
    const state = tempDir();
    const dir = path.join(state, 'tls');
    const policy = filePolicy('no-such-user-here', () => null);
    await ensureDeployDir(dir, policy);
    expect(statSync(dir).mode & 0o777).toBe(0o750);
    expect(await installFile(dir, `${A}.key`, 'KEY', 0o640, policy)).toBe(true);
    expect(statSync(path.join(dir, `${A}.key`)).mode & 0o777).toBe(0o640);
    expect(await installFile(dir, `${A}.key`, 'KEY', 0o640, policy)).toBe(false);
    for (const name of [`${A}.pem`, `${B}.key`, `${B}.pem`, `${'c'.repeat(64)}.key`, `${'c'.repeat(64)}.pem`, 'deployed.json', 'notes.txt', `.${A}.key.tmp-0123456789abcdef`]) {
      writeFileSync(path.join(dir, name), 'x');
    }
    expect(await pruneVersions(dir, new Set([A, B]))).toEqual([`.${A}.key.tmp-0123456789abcdef`, `${'c'.repeat(64)}.key`, `${'c'.repeat(64)}.pem`]);
    expect(readdirSync(dir).sort()).toEqual([`${A}.key`, `${A}.pem`, `${B}.key`, `${B}.pem`, 'deployed.json', 'notes.txt'].sort());
  });

  it('refuse a deploy directory that is a symlink', async () => {
    const state = tempDir();
    symlinkSync(tempDir(), path.join(state, 'tls'));
    await expect(
      ensureDeployDir(
        path.join(state, 'tls'),
        filePolicy('x', () => null),
      ),
    ).rejects.toThrow('refusing to deploy through a symlink');
  });

  it('give the files to the service user’s group when that user exists', () => {
    const passwd = path.join(tempDir(), 'passwd');
    writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\nmailproxy:x:998:997::/var/lib/mailproxy:/usr/sbin/nologin\n');
    expect(lookupUser('mailproxy', passwd)).toEqual({ uid: 998, gid: 997 });
    expect(lookupUser('nobody-here', passwd)).toBeNull();
    expect(filePolicy('mailproxy', (name) => lookupUser(name, passwd)).group).toBe(997);
  });

  it('keep two deploys apart with a lock, and take over the lock of a dead process', async () => {
    const dir = tempDir();
    const release = await acquireLock(dir);
    await expect(acquireLock(dir)).rejects.toThrow(`another certificate deploy (pid ${process.pid}) is running`);
    await release();
    writeFileSync(path.join(dir, '.deploy.lock'), '999999999\n');
    const again = await acquireLock(dir);
    expect(readFileSync(path.join(dir, '.deploy.lock'), 'utf8')).toBe(`${process.pid}\n`);
    await again();
  });
});

describe('check: the certificate tls.ini names', () => {
  it('warns about a missing file, and about one that expires soon or names another host', () => {
    const state = tempDir();
    expect(tlsCheckLines(config(state, { key: path.join(state, 'none.key'), cert: path.join(state, 'none.pem') }))).toEqual([
      `warning: tls.key: ${path.join(state, 'none.key')} does not exist yet; haraka-in offers no STARTTLS without it, and picks up one created later only when restarted (or installed with \`mailproxy cert deploy\`)`,
      `warning: tls.cert: ${path.join(state, 'none.pem')} does not exist yet; haraka-in offers no STARTTLS without it, and picks up one created later only when restarted (or installed with \`mailproxy cert deploy\`)`,
    ]);
    const ca = makeCa(path.join(state, 'ca'));
    const soon = ca.issue({ names: ['other.demo.test'], notAfter: new Date(Date.now() + 5 * 86_400_000 + 3_600_000) });
    const lines = tlsCheckLines(config(state, { key: soon.keyPath, cert: soon.certPath }));
    expect(lines).toEqual([
      expect.stringMatching(new RegExp(`^warning: tls\\.cert: ${soon.certPath}: the certificate expires in 5 days \\(.*\\), under 14: renew it$`)),
      `warning: tls.cert: ${soon.certPath}: the certificate's names (other.demo.test) do not cover hostname mx.demo.test`,
    ]);
    const good = ca.issue({ names: ['mx.demo.test'] });
    expect(tlsCheckLines(config(state, { key: good.keyPath, cert: good.certPath }))).toEqual([]);
  });
});

describe('restarting haraka-out', () => {
  const stub = (script: string) => {
    const bin = tempDir();
    writeFileSync(path.join(bin, 'systemctl'), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    return { PATH: bin };
  };

  it('is skipped with a line saying so when systemd does not run', async () => {
    const line = await systemdRestarter(stub('exit 0'), path.join(tempDir(), 'no-systemd'))();
    expect(line).toMatch(/^systemd is not running here: not restarting mailproxy-haraka-out\.service/);
  });

  it('is `systemctl try-restart mailproxy-haraka-out.service` under systemd; a unit that is not installed is no error, a failure is', async () => {
    const systemd = tempDir();
    const calls = path.join(tempDir(), 'calls');
    expect(await systemdRestarter(stub(`echo "$@" >> ${calls}`), systemd)()).toMatch(/^restarted mailproxy-haraka-out\.service/);
    expect(readFileSync(calls, 'utf8')).toBe('try-restart mailproxy-haraka-out.service\n');
    expect(await systemdRestarter(stub('echo "Failed to try-restart x: Unit mailproxy-haraka-out.service not found." >&2; exit 5'), systemd)()).toMatch(
      /is not installed: nothing to restart/,
    );
    await expect(systemdRestarter(stub('echo "Job failed" >&2; exit 1'), systemd)()).rejects.toThrow('systemctl try-restart mailproxy-haraka-out.service failed: Job failed');
  });
});
