// sending-mta-ip in a TLS report row: the address the receiving MX saw. A VPS behind NAT has a private
// address on its socket; the report then names the public address of the connection's family.
import { describe, expect, it } from 'vitest';
import { sendingMtaIp } from '../../src/plugins/outbound/tls-sessions';

const PUBLIC = { sending_ip: '198.51.100.7', sending_ipv6: '2a01:4f8::7' };

describe('sending-mta-ip', () => {
  it.each([
    ['a public IPv4 socket address as it is', '93.184.215.14', PUBLIC, '93.184.215.14'],
    ['an IPv4-mapped public address as IPv4', '::ffff:93.184.215.14', PUBLIC, '93.184.215.14'],
    ['a public IPv6 socket address as it is', '2a00:1450:4001:80b::200e', PUBLIC, '2a00:1450:4001:80b::200e'],
    ['behind NAT (10/8): public_ipv4', '10.1.2.3', PUBLIC, '198.51.100.7'],
    ['behind NAT (CGNAT): public_ipv4', '100.64.3.4', PUBLIC, '198.51.100.7'],
    ['a ULA over IPv6: public_ipv6', 'fd00::5', PUBLIC, '2a01:4f8::7'],
    ['a ULA without public_ipv6: public_ipv4', 'fd00::5', { sending_ip: '198.51.100.7', sending_ipv6: '' }, '198.51.100.7'],
    ['no socket: public_ipv4', undefined, PUBLIC, '198.51.100.7'],
    ['a private address and nothing configured: the address itself', '10.1.2.3', { sending_ip: '', sending_ipv6: '' }, '10.1.2.3'],
  ])('%s', (_what, local, addresses, expected) => {
    expect(sendingMtaIp(local, addresses)).toBe(expected);
  });
});
