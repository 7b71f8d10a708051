// The MTA-STS policy service's unit (inbound.mta_sts): rendered only when hosting is on, run as the service
// user with port 443 by ambient capability, its own memory cap, reload by SIGHUP. systemd-analyze's verify
// and security checks of it run with the other units' (systemd.test.ts).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load';
import { renderUnits, UNIT_NAMES } from '../../src/render/systemd';
import { unitEntries } from '../helpers/unit-file';

const root = path.resolve(__dirname, '../..');
const example = parseConfig(readFileSync(path.join(root, 'mailproxy.example.yaml'), 'utf8'), 'mailproxy.example.yaml');
const hosting = { ...example, inbound: { ...example.inbound, mta_sts: { ...example.inbound.mta_sts, enabled: true } } };
const units = renderUnits(hosting, { source: 'mailproxy.example.yaml' });
const unit = units.get(UNIT_NAMES.mtaSts)!;

describe('mailproxy-mta-sts.service', () => {
  it('is rendered only when inbound.mta_sts.enabled is true', () => {
    expect(renderUnits(example, { source: 'x' }).has(UNIT_NAMES.mtaSts)).toBe(false);
    expect(unit).toBeDefined();
    expect([...units.keys()].sort()).toEqual([...renderUnits(example, { source: 'x' }).keys(), UNIT_NAMES.mtaSts].sort());
  });

  it('runs `mailproxy mta-sts serve` of the installed app on system.node with the installed config, as the service user', () => {
    const service = unitEntries(unit);
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
    const service = unitEntries(unit);
    expect(service.get('AmbientCapabilities')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(service.get('CapabilityBoundingSet')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(service.get('ProtectSystem')).toEqual(['strict']);
    expect(service.get('StateDirectory')).toBeUndefined();
    expect(service.get('ReadWritePaths')).toBeUndefined();
    expect(service.get('MemoryMax')).toEqual(['128M']);
    const smaller = renderUnits({ ...hosting, system: { ...hosting.system, memory_max_mta_sts: 96 } }, { source: 'x' });
    expect(unitEntries(smaller.get(UNIT_NAMES.mtaSts)!).get('MemoryMax')).toEqual(['96M']);
    expect(unit).not.toMatch(/setcap|authbind|AF_NETLINK/);
  });
});
