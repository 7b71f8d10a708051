// The systemd units: rendered from the config by a pure renderer, committed in deploy/systemd, checked by
// systemd's own analyzer (verify: no errors and nothing on stderr; security: exposure 2.0 or lower).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load';
import { renderInstances } from '../../src/render/haraka';
import { renderUnits, UNIT_NAMES } from '../../src/render/systemd';
import { MANIFEST } from '../../src/render/write';
import { runCli } from '../helpers/cli';
import { missingPeers, requirePeers } from '../helpers/peers';
import { useTempDirs } from '../helpers/tmp';
import { unitEntries } from '../helpers/unit-file';

const root = path.resolve(__dirname, '../..');
const exampleText = readFileSync(path.join(root, 'mailproxy.example.yaml'), 'utf8');
const example = parseConfig(exampleText, 'mailproxy.example.yaml');
const units = renderUnits(example, { source: 'mailproxy.example.yaml' });
// The MTA-STS policy service's unit exists only with inbound.mta_sts on: analyzed from such a render.
const hosting = renderUnits({ ...example, inbound: { ...example.inbound, mta_sts: { ...example.inbound.mta_sts, enabled: true } } }, { source: 'mailproxy.example.yaml' });
// The TLS report timer and its service exist only with outbound.tls_rpt on.
const reporting = renderUnits({ ...example, outbound: { ...example.outbound, tls_rpt: { ...example.outbound.tls_rpt, enabled: true } } }, { source: 'mailproxy.example.yaml' });
const TLS_REPORT = [`${UNIT_NAMES.tlsReport}.service`, `${UNIT_NAMES.tlsReport}.timer`];
const analyzed = new Map([...units, [UNIT_NAMES.mtaSts, hosting.get(UNIT_NAMES.mtaSts)!], ...TLS_REPORT.map((name): [string, string] => [name, reporting.get(name)!])]);
const tempDir = useTempDirs('mailproxy-units-');

/** key -> every value it has in the unit (a key may repeat). */
const entries = unitEntries;

const haraka = (role: 'haraka-in' | 'haraka-out') => entries(units.get(UNIT_NAMES[role])!);

describe('rendered systemd units', () => {
  it('names every unit one way: mailproxy-haraka-in/out services, health and cert-renew service + timer pairs', () => {
    expect([...units.keys()].sort()).toEqual([
      'mailproxy-cert-renew.service',
      'mailproxy-cert-renew.timer',
      'mailproxy-haraka-in.service',
      'mailproxy-haraka-out.service',
      'mailproxy-health.service',
      'mailproxy-health.timer',
    ]);
  });

  it('run Haraka from the install paths with the V8 flags the tests use, never this machine’s node', () => {
    for (const role of ['haraka-in', 'haraka-out'] as const) {
      const [execStart] = haraka(role).get('ExecStart')!;
      expect(execStart).toBe(`/usr/bin/node --max-semi-space-size=4 --max-old-space-size=128 /opt/mailproxy/node_modules/haraka/bin/haraka -c /etc/mailproxy/instances/${role}`);
      if (process.execPath !== '/usr/bin/node') expect(units.get(UNIT_NAMES[role])).not.toContain(process.execPath);
    }
  });

  it('stop Haraka with SIGINT and wait longer than its forced shutdown', () => {
    const smtpIni = renderInstances(example, { source: 'x' }).get('haraka-in/config/smtp.ini')!;
    const forceShutdown = Number(/^force_shutdown_timeout=(\d+)$/m.exec(smtpIni)![1]);
    for (const role of ['haraka-in', 'haraka-out'] as const) {
      const unit = haraka(role);
      expect(unit.get('KillSignal')).toEqual(['SIGINT']);
      expect(Number(unit.get('TimeoutStopSec')![0])).toBeGreaterThan(forceShutdown);
      expect(unit.get('Restart')).toEqual(['on-failure']);
      expect(Number(unit.get('StartLimitBurst')![0])).toBeGreaterThan(0);
      expect(unit.get('User')).toEqual(['mailproxy']);
      expect(unit.get('Type')).toEqual(['notify']);
      expect(unit.get('NotifyAccess')).toEqual(['all']);
      expect(unit.get('MemoryDenyWriteExecute')).toEqual(['no']);
      expect(unit.get('LimitNOFILE')).toEqual(['16384']);
    }
  });

  it('give port 25 to haraka-in alone, as an ambient capability', () => {
    expect(haraka('haraka-in').get('AmbientCapabilities')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(haraka('haraka-in').get('CapabilityBoundingSet')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(haraka('haraka-out').get('AmbientCapabilities')).toBeUndefined();
    expect(haraka('haraka-out').get('CapabilityBoundingSet')).toEqual(['']);
    for (const text of units.values()) expect(text).not.toMatch(/setcap|authbind/);
  });

  it('start haraka-out after the WireGuard unit and with it', () => {
    const out = haraka('haraka-out');
    expect(out.get('After')![0]).toContain('wg-quick@wg0.service');
    expect(out.get('Wants')![0]).toContain('wg-quick@wg0.service');
    expect(out.get('PartOf')).toEqual(['wg-quick@wg0.service']);
    const other = renderUnits({ ...example, wireguard: { ...example.wireguard, interface: 'wgmail' } }, { source: 'x' });
    expect(other.get(UNIT_NAMES['haraka-out'])).toContain('After=network-online.target wg-quick@wgmail.service');
  });

  it('make only the state directory writable: StateDirectory under /var/lib, ReadWritePaths elsewhere', () => {
    expect(haraka('haraka-in').get('StateDirectory')).toEqual(['mailproxy/haraka-in']);
    expect(haraka('haraka-in').get('ProtectSystem')).toEqual(['strict']);
    const elsewhere = renderUnits({ ...example, state_dir: '/srv/mail' }, { source: 'x' });
    const out = entries(elsewhere.get(UNIT_NAMES['haraka-out'])!);
    expect(out.get('StateDirectory')).toBeUndefined();
    expect(out.get('ReadWritePaths')).toEqual(['-/srv/mail/haraka-out']);
  });

  it('let haraka-in write haraka-out’s pickup directory (the backup MX’s DSNs) only with store-and-forward on', () => {
    const storing = { ...example, inbound: { ...example.inbound, store_and_forward: { ...example.inbound.store_and_forward, enabled: true } } };
    const inbound = entries(renderUnits(storing, { source: 'x' }).get(UNIT_NAMES['haraka-in'])!);
    expect(inbound.get('StateDirectory')).toEqual(['mailproxy/haraka-in mailproxy/haraka-out/pickup']);
    expect(entries(renderUnits(storing, { source: 'x' }).get(UNIT_NAMES['haraka-out'])!).get('StateDirectory')).toEqual(['mailproxy/haraka-out']);
    const elsewhere = entries(renderUnits({ ...storing, state_dir: '/srv/mail' }, { source: 'x' }).get(UNIT_NAMES['haraka-in'])!);
    expect(elsewhere.get('ReadWritePaths')).toEqual(['-/srv/mail/haraka-in -/srv/mail/haraka-out/pickup']);
  });

  it('send the TLS reports hourly as the service user, writing only the report marks and haraka-out’s pickup, only with outbound.tls_rpt on', () => {
    for (const name of TLS_REPORT) expect(units.has(name), name).toBe(false);
    const service = entries(reporting.get(`${UNIT_NAMES.tlsReport}.service`)!);
    expect(service.get('User')).toEqual([example.system.user]);
    expect(service.get('ExecStart')?.[0]).toMatch(/bin\/mailproxy\.js tls-report send --config \/etc\/mailproxy\/mailproxy\.yaml$/);
    expect(service.get('ReadWritePaths')).toEqual(['-/var/lib/mailproxy/haraka-out/tls-rpt -/var/lib/mailproxy/haraka-out/pickup']);
    expect(entries(reporting.get(`${UNIT_NAMES.tlsReport}.timer`)!).get('OnCalendar')).toEqual(['hourly']);
    // The DKIM key that signs the reports is out of both Haraka processes' reach.
    for (const role of ['haraka-in', 'haraka-out'] as const) {
      expect(entries(reporting.get(UNIT_NAMES[role])!).get('InaccessiblePaths'), role).toEqual(['-/var/lib/mailproxy/haraka-out/tls-rpt/dkim-tlsrpt.pem']);
      expect(entries(units.get(UNIT_NAMES[role])!).get('InaccessiblePaths'), role).toBeUndefined();
    }
  });

  it('let the renewal unit write the webroot’s challenge directory in webroot mode, and nothing else outside its paths', () => {
    const renew = (config: typeof example) => entries(renderUnits(config, { source: 'x' }).get('mailproxy-cert-renew.service')!).get('ReadWritePaths')![0]!;
    expect(renew(example)).not.toContain('acme-challenge');
    const webroot = { ...example, acme: { ...example.acme, http_01: { ...example.acme.http_01, mode: 'webroot' as const, webroot: '/srv/www' } } };
    expect(renew(webroot).split(' ')).toContain('-/srv/www/.well-known/acme-challenge');
  });

  it('cap each instance’s memory so both fit a 1 GB VPS with the tunnel and sshd', () => {
    const total = [haraka('haraka-in'), haraka('haraka-out')].reduce((sum, unit) => sum + Number(/^(\d+)M$/.exec(unit.get('MemoryMax')![0])![1]), 0);
    expect(total).toBeLessThanOrEqual(640);
  });
});

describe('committed units equal a fresh render (no drift)', () => {
  it('deploy/systemd is the render of mailproxy.example.yaml', () => {
    const dir = path.join(root, 'deploy/systemd');
    const committed = readdirSync(dir)
      .filter((file) => file !== MANIFEST)
      .sort();
    expect(committed).toEqual([...units.keys()].sort());
    for (const [file, text] of units) expect(readFileSync(path.join(dir, file), 'utf8'), file).toBe(text);
  });

  it('say in their header how to render them again, with every argument that takes', () => {
    for (const [file, text] of units) {
      expect(text.split('\n')[0], file).toBe(
        '# generated by mailproxy from mailproxy.example.yaml; edit that file and run `mailproxy render --system` (or `--units DIR`) instead.',
      );
    }
  });

  it('`mailproxy render --units DIR` writes them', async () => {
    const out = tempDir();
    const result = await runCli(['render', '--config', path.join(root, 'mailproxy.example.yaml'), '--out', path.join(out, 'instances'), '--units', path.join(out, 'units')]);
    expect(result.code).toBe(0);
    for (const [file, text] of units) expect(readFileSync(path.join(out, 'units', file), 'utf8')).toBe(text);
  });
});

describe('systemd-analyze on every rendered unit', () => {
  const analyze = '/usr/bin/systemd-analyze';
  if (!requirePeers('systemd-analyze', missingPeers([analyze, '/usr/bin/node']))) return;

  it('verify: no errors and nothing on stderr', () => {
    const dir = tempDir();
    mkdirSync(dir, { recursive: true });
    for (const [file, text] of analyzed) writeFileSync(path.join(dir, file), text);
    for (const file of analyzed.keys()) {
      const result = spawnSync(analyze, ['verify', '--man=no', path.join(dir, file)], { encoding: 'utf8' });
      expect(`${result.status} ${result.stderr}`, file).toBe('0 ');
    }
  });

  it('security: each Haraka unit and the MTA-STS service have an exposure of 2.0 or lower', () => {
    const dir = tempDir();
    for (const name of [UNIT_NAMES['haraka-in'], UNIT_NAMES['haraka-out'], UNIT_NAMES.mtaSts]) {
      const file = path.join(dir, name);
      writeFileSync(file, analyzed.get(name)!);
      const output = execFileSync(analyze, ['security', '--offline=yes', file], { encoding: 'utf8' });
      const exposure = Number(/Overall exposure level for \S+: (\d+\.\d)/.exec(output)![1]);
      console.info(`${name}: exposure ${exposure}`);
      expect(exposure, name).toBeLessThanOrEqual(2.0);
    }
  });
});
