// Where haraka-out never delivers by MX: the WireGuard network and private space.
import { describe, expect, it } from 'vitest';
import { parseCidr } from '../../src/config/net';
import { privateMxReason, splitPrivateMx } from '../../src/plugins/outbound/private-mx';

describe('private MX addresses', () => {
  const tunnel = parseCidr('10.0.0.0/24');

  it('names why an address is skipped', () => {
    expect(privateMxReason('10.0.0.2', tunnel)).toBe('inside wireguard.network');
    expect(privateMxReason('10.1.2.3', tunnel)).toBe('private (RFC 1918)');
    expect(privateMxReason('192.168.1.10', tunnel)).toBe('private (RFC 1918)');
    expect(privateMxReason('127.0.0.4', tunnel)).toBe('loopback');
    expect(privateMxReason('::1', tunnel)).toBe('loopback');
    expect(privateMxReason('169.254.1.1', tunnel)).toBe('link-local');
    expect(privateMxReason('fe80::1', tunnel)).toBe('link-local');
    expect(privateMxReason('fd00::25', tunnel)).toBe('unique local (ULA)');
    expect(privateMxReason('100.64.1.1', tunnel)).toBe('carrier-grade NAT');
    expect(privateMxReason('::ffff:10.0.0.2', tunnel)).toBe('inside wireguard.network');
    expect(privateMxReason('0.0.0.0', tunnel)).toBe('unspecified');
    for (const address of ['198.18.0.25', '2a01:4f8::25', '93.184.216.34']) expect(privateMxReason(address, tunnel)).toBeNull();
  });

  it('a WireGuard network in public space is skipped too', () => {
    expect(privateMxReason('198.18.7.2', parseCidr('198.18.7.0/24'))).toBe('inside wireguard.network');
  });

  it('keeps the usable addresses of a domain and lists the others with their reasons', () => {
    const mxs = [
      { exchange: '10.0.0.2', from_dns: 'mx1.example.org' },
      { exchange: '198.18.0.25', from_dns: 'mx2.example.org' },
    ];
    expect(splitPrivateMx(mxs, tunnel)).toEqual({ usable: [mxs[1]], skipped: [{ mx: mxs[0], reason: 'inside wireguard.network' }] });
  });
});
