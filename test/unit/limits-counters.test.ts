// The counters behind mailproxy-limits, with a fake clock: what each limit admits and refuses.
import { describe, expect, it } from 'vitest';
import { addressKey, ConnectionCounters, parseExempt, type ConnectionLimits } from '../../src/plugins/limits/counters';
import { backendSessions } from '../../src/plugins/limits/backend-sessions';

function limits(overrides: Partial<ConnectionLimits> = {}): ConnectionLimits {
  return { maxClients: 100, maxClientsPerIp: 0, connectRatePerIp: 0, exempt: [], ...overrides };
}

describe('ConnectionCounters', () => {
  it('counts an IPv4 address alone and an IPv6 client by its /64', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('2001:db8:1:2::25')).toBe(addressKey('2001:db8:1:2:ffff::1'));
    expect(addressKey('2001:db8:1:2::25')).not.toBe(addressKey('2001:db8:1:3::25'));
  });

  it('max_clients and max_clients_per_ip: refuses over them, admits again after a release (once)', () => {
    const counters = new ConnectionCounters(limits({ maxClients: 3, maxClientsPerIp: 2 }));
    const a1 = counters.admit('192.0.2.1');
    const a2 = counters.admit('192.0.2.1');
    expect(counters.admit('192.0.2.1')).toEqual({ admitted: false, reason: 'max_clients_per_ip', limit: 2 });
    const b1 = counters.admit('192.0.2.2');
    expect(counters.admit('192.0.2.3')).toEqual({ admitted: false, reason: 'max_clients', limit: 3 });
    expect(a1.admitted && a2.admitted && b1.admitted).toBe(true);
    if (!a1.admitted) return;
    counters.release(a1.ticket);
    counters.release(a1.ticket);
    expect(counters.clients).toBe(2);
    expect(counters.clientsFrom('192.0.2.1')).toBe(1);
    expect(counters.admit('192.0.2.1').admitted).toBe(true);
  });

  it('max_connect_rate_per_ip: a burst of the rate, then one every 60/rate seconds; a refusal costs nothing', () => {
    let now = 1_000_000;
    const counters = new ConnectionCounters(limits({ connectRatePerIp: 6 }), () => now);
    for (let i = 0; i < 6; i++) {
      const admitted = counters.admit('192.0.2.9');
      if (admitted.admitted) counters.release(admitted.ticket);
    }
    expect(counters.admit('192.0.2.9')).toMatchObject({ admitted: false, reason: 'max_connect_rate_per_ip' });
    expect(counters.admit('192.0.2.10').admitted).toBe(true);
    now += 9_000;
    expect(counters.admit('192.0.2.9').admitted).toBe(false);
    now += 1_000;
    expect(counters.admit('192.0.2.9').admitted).toBe(true);
    expect(counters.admit('192.0.2.9').admitted).toBe(false);
    // Untouched for a minute, an address is forgotten: it has its whole burst again.
    now += 60_000;
    counters.admit('192.0.2.11');
    expect(counters.rateEntries).toBe(1);
  });

  it('exempt addresses skip the per-address limits but count towards max_clients', () => {
    const counters = new ConnectionCounters(limits({ maxClients: 3, maxClientsPerIp: 1, connectRatePerIp: 1, exempt: parseExempt(['192.0.2.0/28', '2001:db8::1']) }));
    expect([1, 2, 3].map(() => counters.admit('192.0.2.5').admitted)).toEqual([true, true, true]);
    expect(counters.admit('192.0.2.5')).toMatchObject({ admitted: false, reason: 'max_clients' });
  });
});

describe('backendSessions', () => {
  const ok = (result: { ok: boolean }) => result.ok;

  it('one slot per holder, none past the cap, released once', () => {
    backendSessions.configure(2);
    const [a, b, c] = [{}, {}, {}];
    expect(
      [backendSessions.acquire(a, '192.0.2.1'), backendSessions.acquire(a, '192.0.2.1'), backendSessions.acquire(b, '198.51.100.1'), backendSessions.acquire(c, '203.0.113.1')].map(
        ok,
      ),
    ).toEqual([true, true, true, false]);
    expect(backendSessions.acquire(c, '203.0.113.1')).toEqual({ ok: false, reason: 'max_backend_sessions', limit: 2 });
    backendSessions.release(a);
    backendSessions.release(a);
    expect(backendSessions.inUse).toBe(1);
    expect(ok(backendSessions.acquire(c, '203.0.113.1'))).toBe(true);
    backendSessions.release(b);
    backendSessions.release(c);
    backendSessions.configure(0);
    expect(backendSessions.limit).toBe(Number.POSITIVE_INFINITY);
  });

  it('gives one client network (IPv4 /24, IPv6 /48) at most its share', () => {
    backendSessions.configure(50, 2);
    const holders = Array.from({ length: 6 }, () => ({}));
    const [a, b, c, d, e, f] = holders as [object, object, object, object, object, object];
    expect([backendSessions.acquire(a, '192.0.2.1'), backendSessions.acquire(b, '192.0.2.200'), backendSessions.acquire(c, '192.0.2.77')].map(ok)).toEqual([true, true, false]);
    expect(backendSessions.acquire(c, '192.0.2.77')).toEqual({ ok: false, reason: 'max_backend_sessions_per_network', limit: 2 });
    // Another /24, and IPv6 by its /48.
    expect(ok(backendSessions.acquire(c, '192.0.3.1'))).toBe(true);
    expect([backendSessions.acquire(d, '2001:db8:1:1::1'), backendSessions.acquire(e, '2001:db8:1:ffff::2'), backendSessions.acquire(f, '2001:db8:1::3')].map(ok)).toEqual([
      true,
      true,
      false,
    ]);
    expect(backendSessions.inUseBy('192.0.2.9')).toBe(2);
    backendSessions.release(a);
    expect(ok(backendSessions.acquire(f, '192.0.2.9'))).toBe(true);
    for (const holder of holders) backendSessions.release(holder);
    expect(backendSessions.inUse).toBe(0);
    backendSessions.configure(0);
  });
});
