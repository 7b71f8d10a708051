// The MTA-STS policy service's unit (inbound.mta_sts): rendered only when hosting is on, run as the service
// user with port 443 by ambient capability, its own memory cap, reload by SIGHUP, and as hardened as the
// Haraka units by systemd's own analyzer (verify clean; security exposure 2.0 or lower).
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load';
import { renderUnits, UNIT_NAMES } from '../../src/render/systemd';
import { missingPeers, requirePeers } from '../helpers/peers';
import { useTempDirs } from '../helpers/tmp';

const root = path.resolve(__dirname, '../..');
const exampleText = readFileSync(path.join(root, 'mailproxy.example.yaml'), 'utf8');
const example = parseConfig(exampleText, 'mailproxy.example.yaml');
const hosting = { ...example, inbound: { ...example.inbound, mta_sts: { ...example.inbound.mta_sts, enabled: true } } };
const units = renderUnits(hosting, { source: 'mailproxy.example.yaml' });
const unit = units.get(UNIT_NAMES.mtaSts)!;
const tempDir = useTempDirs('mailproxy-sts-unit-');

function entries(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match) map.set(match[1]!, [...(map.get(match[1]!) ?? []), match[2]!]);
  }
  return map;
}

describe('mailproxy-mta-sts.service', () => {
  it('is rendered only when inbound.mta_sts.enabled is true', () => {
    expect(renderUnits(example, { source: 'x' }).has(UNIT_NAMES.mtaSts)).toBe(false);
    expect(unit).toBeDefined();
    expect([...units.keys()].sort()).toEqual([...renderUnits(example, { source: 'x' }).keys(), UNIT_NAMES.mtaSts].sort());
  });

  it('runs `mailproxy mta-sts serve` of the installed app on system.node with the installed config, as the service user', () => {
    const service = entries(unit);
    expect(service.get('ExecStart')).toEqual([
      '/usr/bin/node --max-semi-space-size=1 --max-old-space-size=48 /opt/mailproxy/bin/mailproxy.js mta-sts serve --config /etc/mailproxy/mailproxy.yaml',
    ]);
    expect(service.get('User')).toEqual(['mailproxy']);
    expect(service.get('Type')).toEqual(['exec']);
    expect(service.get('ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
    expect(service.get('Restart')).toEqual(['on-failure']);
    expect(service.get('WantedBy')).toEqual(['multi-user.target']);
  });

  it('gets port 443 by an ambient capability (never setcap), no state directory and its own memory cap', () => {
    const service = entries(unit);
    expect(service.get('AmbientCapabilities')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(service.get('CapabilityBoundingSet')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(service.get('ProtectSystem')).toEqual(['strict']);
    expect(service.get('StateDirectory')).toBeUndefined();
    expect(service.get('ReadWritePaths')).toBeUndefined();
    expect(service.get('MemoryMax')).toEqual(['128M']);
    const smaller = renderUnits({ ...hosting, system: { ...hosting.system, memory_max_mta_sts: 96 } }, { source: 'x' });
    expect(entries(smaller.get(UNIT_NAMES.mtaSts)!).get('MemoryMax')).toEqual(['96M']);
    expect(unit).not.toMatch(/setcap|authbind|AF_NETLINK/);
  });

  describe('under systemd-analyze', () => {
    const analyze = '/usr/bin/systemd-analyze';
    if (!requirePeers('systemd-analyze', missingPeers([analyze, '/usr/bin/node']))) return;

    it('verify: no errors and nothing on stderr', () => {
      const file = path.join(tempDir(), UNIT_NAMES.mtaSts);
      writeFileSync(file, unit);
      const result = spawnSync(analyze, ['verify', '--man=no', file], { encoding: 'utf8' });
      expect(`${result.status} ${result.stderr}`).toBe('0 ');
    });

    it('security: an exposure of 2.0 or lower', () => {
      const file = path.join(tempDir(), UNIT_NAMES.mtaSts);
      writeFileSync(file, unit);
      const output = execFileSync(analyze, ['security', '--offline=yes', file], { encoding: 'utf8' });
      const exposure = Number(/Overall exposure level for \S+: (\d+\.\d)/.exec(output)![1]);
      console.info(`${UNIT_NAMES.mtaSts}: exposure ${exposure}`);
      expect(exposure).toBeLessThanOrEqual(2.0);
    });
  });
});
