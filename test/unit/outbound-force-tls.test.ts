// TLS required per message: Haraka's get_force_tls answers from a process-wide list that another delivery
// to the same domain may change; a message routed under an MTA-STS enforce policy requires TLS whatever
// that list says at the moment it connects.
import { describe, expect, it } from 'vitest';
import type { HMail } from '../../src/plugins/haraka/hmail';
import { stateOf } from '../../src/plugins/outbound/delivery';
import { harakaOutboundTls, installTlsFallback } from '../../src/plugins/haraka/patches/outbound-tls';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const HMailItem = require('haraka/outbound/hmail') as { prototype: object };

function item(domain: string): HMail & { get_force_tls(mx: { exchange: string }): boolean } {
  const hmail = Object.create(HMailItem.prototype) as HMail & { get_force_tls(mx: { exchange: string }): boolean };
  Object.assign(hmail, { todo: { domain }, num_failures: 0, logdebug: () => undefined });
  return hmail;
}

describe('get_force_tls, per message', () => {
  it('is true for a message under enforce even when the shared list no longer names its domain', () => {
    expect(installTlsFallback()).toBe(true);
    const obtls = harakaOutboundTls();
    obtls.cfg = { ...(obtls.cfg ?? {}), force_tls_hosts: [] };
    const enforced = item('enforce.example');
    stateOf(enforced).attempt.enforce = true;
    const opportunistic = item('enforce.example');
    expect(enforced.get_force_tls({ exchange: 'mx.enforce.example' })).toBe(true);
    expect(opportunistic.get_force_tls({ exchange: 'mx.enforce.example' })).toBe(false);
  });
});
