// isPublicIp: where a TLS report may be POSTed, and which socket address a report row may name.
import { describe, expect, it } from 'vitest';
import { isPublicIp } from '../../src/config/net';

describe('isPublicIp', () => {
  it.each([
    ['93.184.215.14', true],
    ['2a00:1450:4001:80b::200e', true],
    ['::ffff:93.184.215.14', true],
    ['64:ff9b::93.184.215.14', true],
    ['10.0.0.2', false],
    ['100.64.0.1', false],
    ['127.0.0.1', false],
    ['169.254.169.254', false],
    ['192.0.2.1', false],
    ['0.0.0.0', false],
    ['224.0.0.1', false],
    ['::1', false],
    ['::', false],
    ['fd00::1', false],
    ['fe80::1', false],
    ['2001:db8::1', false],
    ['::ffff:10.0.0.2', false],
    ['64:ff9b::10.0.0.2', false],
    // IPv4-compatible (deprecated): outside 2000::/3, never public.
    ['::7f00:1', false],
    ['not an address', false],
  ])('%s: %s', (ip, expected) => {
    expect(isPublicIp(ip)).toBe(expected);
  });
});
