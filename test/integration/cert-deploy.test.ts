// `mailproxy cert deploy` against a running haraka-in: a deploy is served within the deadline; the same
// certificate again changes nothing; every validation failure is refused with nothing changed and the
// old certificate still served; a listener that never picks the new certificate up causes a rollback and
// a non-zero exit; `render` after a deploy keeps the deployed files.
import { cpSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { deployCertificate } from '../../src/certs/deploy/deploy';
import { probeServedCertificate } from '../../src/certs/deploy/probe';
import { readTlsPair } from '../../src/certs/deploy/tlsini';
import { loadConfigText } from '../../src/config/load';
import { makeCa, type Ca, type Issued } from '../helpers/cert-fixtures';
import { runCli } from '../helpers/cli';
import { freePort } from '../helpers/ports';
import { useTempDirs } from '../helpers/tmp';
import { useTopology } from '../helpers/topology';

const DAY = 86_400_000;
const tempDir = useTempDirs('mailproxy-cert-deploy-');

describe('mailproxy cert deploy', () => {
  const topology = useTopology({ instances: ['haraka-in'] });
  let ca: Ca;
  let other: Ca;
  let first: Issued;
  let dir = '';

  beforeAll(() => {
    dir = path.join(topology().config.state_dir, '..', 'certs');
    ca = makeCa(path.join(dir, 'ca'), 'deploy test root').intermediate('deploy test intermediate');
    other = makeCa(path.join(dir, 'other'), 'an unrelated CA');
    first = ca.issue({ names: ['mx.demo.test'], fullchain: true });
  });

  const served = async () => {
    const t = topology();
    return (await probeServedCertificate(t.inbound, t.config.hostname, 5000)).fingerprint;
  };
  const tlsIni = (role: 'haraka-in' | 'haraka-out') => readFileSync(path.join(topology().instancesDir, role, 'config', 'tls.ini'), 'utf8');
  const deployDirListing = () => readdirSync(path.join(topology().config.state_dir, 'tls')).sort();
  const rootPath = () => path.join(dir, 'ca', 'ca.pem');
  const deploy = (...extra: string[]) => runCli(['cert', 'deploy', '--config', topology().configPath, '--instances', topology().instancesDir, ...extra]);

  it('installs versioned files, switches both tls.ini, and verifies that haraka-in serves the new certificate', async () => {
    const t = topology();
    const lines: string[] = [];
    let restarts = 0;
    const outcome = await deployCertificate({
      config: t.config,
      keyFile: first.keyPath,
      certFile: first.certPath,
      chainFile: rootPath(),
      instancesDir: t.instancesDir,
      log: (line) => lines.push(line),
      restartHarakaOut: async () => (restarts++, 'restart recorded by the test'),
    });
    expect(outcome.changed).toBe(true);
    expect(outcome.fingerprint).toBe(first.fingerprint);
    expect(outcome.daysLeft).toBe(29);
    expect(lines.join('\n')).toMatch(/valid \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d: 29 days left/);
    expect(lines.join('\n')).toMatch(/serves .* \(after \d+\.\d s\)/);
    expect(await served()).toBe(first.fingerprint);
    // Both instances name the versioned files under state_dir/tls; haraka-out was restarted once.
    const stem = first.fingerprint.replace(/:/g, '').toLowerCase();
    for (const role of ['haraka-in', 'haraka-out'] as const) {
      expect(readTlsPair(tlsIni(role))?.cert).toMatch(new RegExp(`/tls/${stem}-[0-9a-f]{12}\\.pem$`));
    }
    expect(restarts).toBe(1);
    expect(outcome.keyPath && statSync(outcome.keyPath).mode & 0o777).toBe(0o640);
    expect(outcome.certPath && statSync(outcome.certPath).mode & 0o777).toBe(0o644);
    expect(readFileSync(outcome.certPath as string, 'utf8').match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(t.haraka['haraka-in']?.child.exitCode).toBeNull();
  });

  it('says so and changes nothing when the same certificate is deployed again', async () => {
    const before = { ini: tlsIni('haraka-in'), mtime: statSync(path.join(topology().instancesDir, 'haraka-in/config/tls.ini')).mtimeMs, listing: deployDirListing() };
    const result = await deploy('--key', first.keyPath, '--cert', first.certPath, '--chain', rootPath());
    expect(result.err).toBe('');
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/29 days left/);
    expect(result.out).toMatch(/is already deployed \(both instances' tls\.ini name .*\): nothing changed/);
    expect(result.out).not.toMatch(/restart/);
    expect(tlsIni('haraka-in')).toBe(before.ini);
    expect(statSync(path.join(topology().instancesDir, 'haraka-in/config/tls.ini')).mtimeMs).toBe(before.mtime);
    expect(deployDirListing()).toEqual(before.listing);
  });

  it('refuses every validation failure with the reason, changes nothing, and the old certificate stays served', async () => {
    const before = { in: tlsIni('haraka-in'), out: tlsIni('haraka-out'), listing: deployDirListing() };
    const stranger = ca.issue({ names: ['mx.demo.test'], fullchain: true });
    const expired = ca.issue({ names: ['mx.demo.test'], fullchain: true, notBefore: new Date(Date.now() - 90 * DAY), notAfter: new Date(Date.now() - DAY) });
    const early = ca.issue({ names: ['mx.demo.test'], fullchain: true, notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 90 * DAY) });
    const elsewhere = ca.issue({ names: ['mail.elsewhere.test'], fullchain: true });
    const foreign = other.issue({ names: ['mx.demo.test'] });
    const cases: [string, string[], RegExp][] = [
      [
        'key of another certificate',
        ['--key', stranger.keyPath, '--cert', first.certPath, '--chain', rootPath()],
        /the private key does not belong to the certificate CN=mx\.demo\.test/,
      ],
      ['expired', ['--key', expired.keyPath, '--cert', expired.certPath, '--chain', rootPath()], /the certificate CN=mx\.demo\.test expired on /],
      ['not yet valid', ['--key', early.keyPath, '--cert', early.certPath, '--chain', rootPath()], /the certificate CN=mx\.demo\.test is not valid yet/],
      [
        'name not covering hostname',
        ['--key', elsewhere.keyPath, '--cert', elsewhere.certPath, '--chain', rootPath()],
        /names \(mail\.elsewhere\.test\) do not cover hostname mx\.demo\.test/,
      ],
      [
        'broken chain',
        ['--key', foreign.keyPath, '--cert', foreign.certPath, '--chain', rootPath()],
        /the chain does not verify: no issuer of the certificate \(issued by CN=an unrelated CA\)/,
      ],
      ['no chain to a system root', ['--key', foreign.keyPath, '--cert', foreign.certPath], /does not chain to a system root/],
      ['unreadable key file', ['--key', path.join(dir, 'missing.pem'), '--cert', first.certPath], /cannot read the key .*missing\.pem: ENOENT/],
    ];
    for (const [name, args, reason] of cases) {
      const result = await deploy(...args);
      expect(result.code, name).toBe(1);
      expect(result.err, name).toMatch(/^mailproxy cert deploy: refused, nothing was changed: /);
      expect(result.err, name).toMatch(reason);
      expect(tlsIni('haraka-in'), name).toBe(before.in);
      expect(tlsIni('haraka-out'), name).toBe(before.out);
      expect(deployDirListing(), name).toEqual(before.listing);
    }
    // Past Haraka's reload delay: had anything changed, haraka-in would have reloaded by now.
    await new Promise((resolve) => setTimeout(resolve, 6000));
    expect(await served()).toBe(first.fingerprint);
    expect(topology().haraka['haraka-in']?.child.exitCode).toBeNull();
  });

  it('rolls back and exits non-zero when a listener does not pick up the new certificate', async () => {
    const t = topology();
    // The stale listener: a second haraka-in address in the config, answered by an SMTP server that keeps
    // serving the old certificate whatever tls.ini says.
    const stalePort = await freePort('127.0.0.1');
    const stale = new SMTPServer({ key: readFileSync(first.keyPath), cert: readFileSync(first.certPath), authOptional: true, logger: false });
    await new Promise<void>((resolve) => stale.listen(stalePort, '127.0.0.1', resolve));
    try {
      const configPath = path.join(tempDir(), 'mailproxy.yaml');
      const input = parse(readFileSync(t.configPath, 'utf8')) as { inbound: { listen: string[] } };
      input.inbound.listen = [...input.inbound.listen, `127.0.0.1:${stalePort}`];
      writeFileSync(configPath, stringify(input));
      const before = { in: tlsIni('haraka-in'), out: tlsIni('haraka-out'), listing: deployDirListing() };
      const next = ca.issue({ names: ['mx.demo.test'], fullchain: true });
      const result = await runCli([
        'cert',
        'deploy',
        '--config',
        configPath,
        '--instances',
        t.instancesDir,
        '--key',
        next.keyPath,
        '--cert',
        next.certPath,
        '--chain',
        rootPath(),
        '--verify-timeout',
        '12',
      ]);
      expect(result.code).toBe(1);
      expect(result.err).toMatch(
        new RegExp(`^mailproxy cert deploy: failed and rolled back: 127\\.0\\.0\\.1:${stalePort} did not serve [0-9A-F:]+… within 12 s: it serves [0-9A-F:]+…`),
      );
      expect(result.err).toMatch(/Rolled back: every listener serves the previous certificate again/);
      expect(result.out).toMatch(/rolling back to the previous certificate/);
      // The real listener had switched, and is back on the old certificate; the files are as they were.
      expect(result.out).toMatch(new RegExp(`${t.inbound.host}:${t.inbound.port} serves`));
      expect(await served()).toBe(first.fingerprint);
      expect(tlsIni('haraka-in')).toBe(before.in);
      expect(tlsIni('haraka-out')).toBe(before.out);
      expect(deployDirListing()).toEqual(before.listing);
      expect(t.haraka['haraka-in']?.child.exitCode).toBeNull();
    } finally {
      await new Promise<void>((resolve) => stale.close(() => resolve()));
    }
  });

  it('render after a deploy keeps naming the deployed files', async () => {
    const t = topology();
    const pair = readTlsPair(tlsIni('haraka-in'));
    const out = tempDir();
    const result = await runCli(['render', '--config', t.configPath, '--out', out]);
    expect(result.code).toBe(0);
    expect(result.out).toContain('tls.ini: key and certificate of the last cert deploy');
    expect(readTlsPair(readFileSync(path.join(out, 'haraka-in/config/tls.ini'), 'utf8'))).toEqual(pair);
    expect(readTlsPair(readFileSync(path.join(out, 'haraka-out/config/tls.ini'), 'utf8'))).toEqual(pair);
  });

  it('installs without verifying when haraka-in is not running, and says so', async () => {
    const t = topology();
    const root = tempDir();
    cpSync(t.instancesDir, path.join(root, 'instances'), { recursive: true });
    const input = parse(readFileSync(t.configPath, 'utf8')) as { inbound: { listen: string[] }; state_dir: string };
    input.inbound.listen = [`127.0.0.1:${await freePort('127.0.0.1')}`];
    input.state_dir = path.join(root, 'state');
    const loaded = loadConfigText(stringify(input));
    if (!loaded.ok) throw new Error('config');
    const lines: string[] = [];
    const outcome = await deployCertificate({
      config: loaded.config,
      keyFile: first.keyPath,
      certFile: first.certPath,
      chainFile: rootPath(),
      instancesDir: path.join(root, 'instances'),
      log: (line) => lines.push(line),
      restartHarakaOut: async () => 'restart recorded by the test',
    });
    expect(outcome.changed).toBe(true);
    expect(lines.join('\n')).toMatch(/is not running \(connection refused\): not verified/);
    expect(lines.join('\n')).toMatch(/haraka-in is not running: nothing to verify; it reads the new certificate when it starts/);
  });
});
