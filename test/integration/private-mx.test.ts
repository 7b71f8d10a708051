// haraka-out never delivers behind the tunnel by MX: an outside domain whose MX resolves into private
// space (here the "internet" MX of the rig, inside its wireguard.network 127.0.0.0/8, with
// outbound.allow_private_mx off) stays queued with
// the reason, and the MX never sees a connection.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { INTERNET_DOMAIN } from '../../src/demo/topology';
import { eventually } from '../helpers/poll';
import { relayOut } from '../helpers/send';
import { useTopology } from '../helpers/topology';

describe('haraka-out and MX hosts in private space', () => {
  const topology = useTopology({
    instances: ['haraka-out'],
    backend: false,
    tweak: (config) => {
      config.outbound = { ...config.outbound, allow_private_mx: false };
    },
  });

  it('defers a domain whose every MX address is private, naming it, and connects to none', async () => {
    const t = topology();
    await relayOut(t, `bob@${INTERNET_DOMAIN}`, 'to a private MX');
    const output = () => t.haraka['haraka-out']?.output() ?? '';
    await eventually(
      'the deferral',
      () => /every MX address of example\.net lies where haraka-out never delivers by MX \(mx\.example\.net 127\.0\.0\.4: inside wireguard\.network\)/.test(output()),
      { context: () => output().slice(-3000) },
    );
    expect(output()).toMatch(/MX mx\.example\.net of example\.net at 127\.0\.0\.4 is inside wireguard\.network: skipped/);
    expect(t.internet?.messages).toHaveLength(0);
    const dir = path.join(t.config.state_dir, 'haraka-out', 'queue');
    const queue = readdirSync(dir).filter((name) => !name.startsWith('.') && name !== 'tmp');
    expect(queue).toHaveLength(1);
    // The queue file holds the envelope and the message, nothing of mailproxy's in-memory copy of it.
    const file = readFileSync(path.join(dir, queue[0] as string));
    expect(file.length).toBeLessThan(8192);
    expect(file.toString('latin1')).not.toContain('"type":"Buffer"');
  });
});
