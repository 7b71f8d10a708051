import { describe, expect, it } from 'vitest';
import { MAX_XCLIENT_LINE, xclientAddr, xclientAttributes, xclientCommands, xtext, type ClientFacts } from '../../src/plugins/forward/xclient';

const ALL = new Set(['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO', 'LOGIN', 'DESTADDR', 'DESTPORT']);
const facts: ClientFacts = {
  name: 'mail.example.net',
  ip: '192.0.2.9',
  port: 40123,
  helo: 'mail.example.net',
  esmtp: true,
  login: null,
  destAddr: '203.0.113.25',
  destPort: 25,
};

describe('xtext', () => {
  it('keeps printable ASCII and encodes +, =, space, controls and UTF-8 bytes', () => {
    expect(xtext('mx.example.com')).toBe('mx.example.com');
    expect(xtext('a b=c+d')).toBe('a+20b+3Dc+2Bd');
    expect(xtext('x\r\nRCPT TO:<y>')).toBe('x+0D+0ARCPT+20TO:<y>');
    expect(xtext('é')).toBe('+C3+A9');
  });
});

describe('XCLIENT attributes', () => {
  it('sends every attribute the backend advertises, ADDR last, LOGIN only after AUTH', () => {
    const pairs = xclientAttributes(facts, ALL);
    expect(pairs.map(([key]) => key)).toEqual(['NAME', 'HELO', 'PROTO', 'DESTADDR', 'DESTPORT', 'PORT', 'ADDR']);
    expect(Object.fromEntries(pairs)).toMatchObject({ NAME: 'mail.example.net', ADDR: '192.0.2.9', PROTO: 'ESMTP', PORT: '40123' });
    expect(xclientAttributes({ ...facts, login: 'bob' }, ALL).map(([key]) => key)).toContain('LOGIN');
  });

  it('sends only what the backend advertises', () => {
    expect(xclientAttributes(facts, new Set(['ADDR', 'NAME'])).map(([key]) => key)).toEqual(['NAME', 'ADDR']);
  });

  it('prefixes IPv6 with IPV6: and unwraps IPv4-mapped addresses', () => {
    expect(xclientAddr('2001:db8::9')).toBe('IPV6:2001:db8::9');
    expect(xclientAddr('::1')).toBe('IPV6:::1');
    expect(xclientAddr('::ffff:192.0.2.9')).toBe('192.0.2.9');
  });

  it('sends [UNAVAILABLE] for a NAME or HELO longer than Postfix takes (255)', () => {
    const pairs = Object.fromEntries(xclientAttributes({ ...facts, helo: 'h'.repeat(256), name: 'n'.repeat(256) }, ALL));
    expect(pairs).toMatchObject({ HELO: '[UNAVAILABLE]', NAME: '[UNAVAILABLE]' });
    expect(Object.fromEntries(xclientAttributes({ ...facts, helo: 'h'.repeat(255) }, ALL)).HELO).toHaveLength(255);
  });

  it('counts the 255 in bytes of the encoded value, as Postfix does', () => {
    // 100 characters that xtext sends as +HH (300 bytes), and 200 UTF-8 bytes sent as 600.
    const pairs = Object.fromEntries(xclientAttributes({ ...facts, helo: '+'.repeat(100), name: 'é'.repeat(100) }, ALL));
    expect(pairs).toMatchObject({ HELO: '[UNAVAILABLE]', NAME: '[UNAVAILABLE]' });
    const fits = Object.fromEntries(xclientAttributes({ ...facts, helo: `${'h'.repeat(252)}=` }, ALL)).HELO;
    expect(fits).toBe(`${'h'.repeat(252)}+3D`);
  });

  it('uses [UNAVAILABLE] for a missing HELO and SMTP for HELO clients', () => {
    const pairs = Object.fromEntries(xclientAttributes({ ...facts, helo: null, esmtp: false }, ALL));
    expect(pairs.HELO).toBe('[UNAVAILABLE]');
    expect(pairs.PROTO).toBe('SMTP');
  });

  it('cannot be made to inject attributes or commands through HELO or NAME', () => {
    const hostile = { ...facts, helo: 'evil ADDR=6.6.6.6\r\nRCPT TO:<x@y>', name: 'a=b c' };
    const [command, ...rest] = xclientCommands(xclientAttributes(hostile, ALL));
    expect(rest).toEqual([]);
    expect(command).not.toMatch(/[\r\n]/);
    expect(command?.match(/ ADDR=/g)).toHaveLength(1);
    expect(command).toContain(' HELO=evil+20ADDR+3D6.6.6.6+0D+0ARCPT+20TO:<x@y> ');
    // A name Postfix's valid_hostname() refuses goes as [UNAVAILABLE] (Postfix: 501 Bad NAME syntax).
    expect(command).toContain(' NAME=[UNAVAILABLE] ');
  });

  it('sends as NAME only what Postfix takes as a hostname, [UNAVAILABLE] for the rest', () => {
    const name = (value: string) => Object.fromEntries(xclientAttributes({ ...facts, name: value }, ALL)).NAME;
    for (const good of ['mail.example.net', 'a_b.example.net', 'x-1.example.net', '1.example.net', `${'a'.repeat(63)}.net`, '[TEMPUNAVAIL]']) expect(name(good), good).toBe(good);
    for (const bad of [
      'a/b.example.net',
      'a*b.example.net',
      'a\\.b.example.net',
      'a b.example.net',
      '-a.example.net',
      'a-.example.net',
      'a..b',
      '1.2.3.4',
      `${'a'.repeat(64)}.net`,
      'hé.example.net',
      '',
    ]) {
      expect(name(bad), bad).toBe('[UNAVAILABLE]');
    }
  });

  it('splits into several commands when one would be too long, ADDR in the last', () => {
    const commands = xclientCommands(xclientAttributes({ ...facts, helo: 'h'.repeat(250), name: `${['n', 'm', 'o', 'p'].map((c) => c.repeat(60)).join('.')}.example` }, ALL));
    expect(commands.length).toBeGreaterThan(1);
    for (const command of commands) expect(command.length).toBeLessThanOrEqual(MAX_XCLIENT_LINE);
    expect(commands.at(-1)).toMatch(/ ADDR=192\.0\.2\.9$/);
    expect(commands.every((command) => command.startsWith('XCLIENT '))).toBe(true);
  });
});
