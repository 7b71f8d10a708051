import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatConfigError, loadConfigText, type ConfigError } from '../../src/config/load';

const example = readFileSync(new URL('../../mailproxy.example.yaml', `file://${__filename}`), 'utf8');

function errorsFor(text: string): ConfigError[] {
  const result = loadConfigText(text);
  if (result.ok) throw new Error('expected the config to be rejected');
  return result.errors;
}

function replaceLine(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`example config has no ${from}`);
  return text.replace(from, to);
}

function lineOf(text: string, needle: string): number {
  return text.split('\n').findIndex((line) => line.includes(needle)) + 1;
}

describe('config validation', () => {
  it('accepts the example config with its production defaults', () => {
    const result = loadConfigText(example);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.backend).toMatchObject({ host: '10.0.0.2', port: 25 });
    expect(result.config.outbound).toMatchObject({ listen: '10.0.0.1:2526', relay_acl: ['10.0.0.2/32'] });
    expect(result.config.wireguard.address).toBe('10.0.0.1');
  });

  it('fills defaults for a minimal config', () => {
    const result = loadConfigText('version: 1\nhostname: mx.example.org\npublic_ipv4: 198.51.100.7\ndomains: [example.org]\n');
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.config.inbound.max_message_size).toBe(26214400);
  });

  const footguns: { name: string; from: string; to: string; key: string; expected: RegExp }[] = [
    { name: 'haraka-out on a wildcard address', from: 'listen: 10.0.0.1:2526', to: 'listen: 0.0.0.0:2526', key: 'outbound.listen', expected: /not a wildcard/ },
    { name: 'haraka-out on a public address', from: 'listen: 10.0.0.1:2526', to: 'listen: 203.0.113.25:2526', key: 'outbound.listen', expected: /not a public one/ },
    { name: 'relay ACL of the whole internet', from: '- 10.0.0.2/32', to: '- 0.0.0.0/0', key: 'outbound.relay_acl[0]', expected: /open relay/ },
    { name: 'relay ACL with a public range', from: '- 10.0.0.2/32', to: '- 198.51.100.0/24', key: 'outbound.relay_acl[0]', expected: /open relay/ },
    { name: 'accepted domain that is not an FQDN', from: '- example.com', to: '- localhost', key: 'domains[0]', expected: /fully qualified domain name/ },
    { name: 'domain with a bad character', from: '- example.com', to: '- exa_mple.com', key: 'domains[0]', expected: /fully qualified domain name/ },
    { name: 'backend outside the WireGuard network', from: 'host: 10.0.0.2', to: 'host: 192.168.1.10', key: 'backend.host', expected: /inside wireguard.network/ },
    { name: 'hostname not an FQDN', from: 'hostname: mx.example.com', to: 'hostname: mx', key: 'hostname', expected: /fully qualified domain name/ },
  ];

  for (const footgun of footguns) {
    it(`rejects ${footgun.name}, naming key, value, expectation and line`, () => {
      const text = replaceLine(example, footgun.from, footgun.to);
      const errors = errorsFor(text);
      const error = errors.find((candidate) => candidate.key === footgun.key);
      expect(error, JSON.stringify(errors)).toBeDefined();
      expect(error?.message).toMatch(footgun.expected);
      expect(error?.line).toBe(lineOf(text, footgun.to));
      const formatted = formatConfigError('mailproxy.yaml', error as ConfigError);
      expect(formatted).toContain(`mailproxy.yaml:${lineOf(text, footgun.to)}: ${footgun.key}: `);
      expect(formatted).toContain(JSON.stringify(footgun.to.split(': ').pop()?.replace(/^- /, '')));
    });
  }

  it('accepts a public relay ACL only when explicitly overridden', () => {
    const text = replaceLine(example, '- 10.0.0.2/32', '- 198.51.100.0/24').replace('outbound:\n', 'outbound:\n  allow_public_relay_acl: true\n');
    expect(loadConfigText(text).ok).toBe(true);
  });

  it('names an unknown key and its line', () => {
    const text = example.replace('backend:\n', 'backend:\n  hots: 10.0.0.2\n');
    const [error] = errorsFor(text);
    expect(error).toMatchObject({ key: 'backend.hots', line: lineOf(text, 'hots:') });
    expect(error?.message).toContain("unsupported key 'hots' in 'backend'");
  });

  it('names a wrong type with what was expected', () => {
    const text = example.replace('max_message_size: 26214400', 'max_message_size: lots');
    const [error] = errorsFor(text);
    expect(error).toMatchObject({ key: 'inbound.max_message_size', value: 'lots', line: lineOf(text, 'lots') });
    expect(error?.message).toBe('expected number');
  });

  it('names a missing required key', () => {
    const errors = errorsFor('version: 1\npublic_ipv4: 198.51.100.7\ndomains: [example.org]\n');
    expect(errors.map((error) => error.key)).toEqual(['hostname']);
    expect(formatConfigError('x.yaml', errors[0] as ConfigError)).toContain('x.yaml:1: hostname: missing: expected string');
  });

  it('reports YAML syntax errors with their line', () => {
    const [error] = errorsFor('version: 1\nhostname: [unclosed\n');
    expect(error?.key).toBe('(yaml)');
    expect(error?.line).toBeGreaterThan(0);
  });

  it('rejects a duplicate domain and a WireGuard address outside its network', () => {
    const text = example.replace('  - example.com\n', '  - example.com\n  - EXAMPLE.com\n').replace('address: 10.0.0.1', 'address: 10.9.0.1');
    const keys = errorsFor(text).map((error) => error.key);
    expect(keys).toEqual(expect.arrayContaining(['domains[1]', 'wireguard.address']));
  });
});
