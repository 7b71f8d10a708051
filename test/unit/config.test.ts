import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { formatConfigError, loadConfigText, type ConfigError } from '../../src/config/load';
import { DEMO_PORTS, loopbackConfig } from '../../src/demo/topology';

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
    expect(result.config.backend).toMatchObject({ host: '10.0.0.2', port: 10029 });
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
    {
      name: 'relay ACL outside the WireGuard network',
      from: '- 10.0.0.2/32',
      to: '- 192.168.1.0/24',
      key: 'outbound.relay_acl[0]',
      expected: /inside wireguard.network 10.0.0.0\/24/,
    },
    {
      name: 'relay ACL covering the WireGuard address',
      from: '- 10.0.0.2/32',
      to: '- 10.0.0.0/24',
      key: 'outbound.relay_acl[0]',
      expected: /without wireguard.address 10.0.0.1: every process on the VPS/,
    },
    { name: 'relay ACL of the WireGuard address alone', from: '- 10.0.0.2/32', to: '- 10.0.0.1/32', key: 'outbound.relay_acl[0]', expected: /without wireguard.address 10.0.0.1/ },
    { name: 'accepted domain that is not an FQDN', from: '- example.com', to: '- localhost', key: 'domains[0]', expected: /fully qualified domain name/ },
    { name: 'domain with a bad character', from: '- example.com', to: '- exa_mple.com', key: 'domains[0]', expected: /fully qualified domain name/ },
    { name: 'backend outside the WireGuard network', from: 'host: 10.0.0.2', to: 'host: 192.168.1.10', key: 'backend.host', expected: /inside wireguard.network/ },
    { name: 'hostname not an FQDN', from: 'hostname: mx.example.com', to: 'hostname: mx', key: 'hostname', expected: /fully qualified domain name/ },
    {
      name: 'public_ipv4 inside the WireGuard network',
      from: 'public_ipv4: 203.0.113.25',
      to: 'public_ipv4: 10.0.0.5',
      key: 'public_ipv4',
      expected: /not one inside wireguard.network 10.0.0.0\/24: .*internet/,
    },
    {
      name: 'public_ipv4 in a private range',
      from: 'public_ipv4: 203.0.113.25',
      to: 'public_ipv4: 192.168.1.10',
      key: 'public_ipv4',
      expected: /not one in a private range \(192.168.0.0\/16\): .*internet/,
    },
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
    const text = replaceLine(example, '- 10.0.0.2/32', '- 198.51.100.0/24').replace('allow_public_relay_acl: false', 'allow_public_relay_acl: true');
    expect(loadConfigText(text).ok).toBe(true);
  });

  describe('relay ACL: hosts behind the tunnel, never the VPS itself', () => {
    const publicAllowed = (entry: string) => replaceLine(example, '- 10.0.0.2/32', `- ${entry}`).replace('allow_public_relay_acl: false', 'allow_public_relay_acl: true');

    it('refuses loopback and the public address even with allow_public_relay_acl', () => {
      for (const [entry, expected] of [
        ['127.0.0.1/32', /without loopback address 127.0.0.1/],
        ['127.0.0.5/32', /outside loopback \(127.0.0.0\/8, ::1\): every process on the VPS/],
        ['203.0.113.0/24', /without public_ipv4 203.0.113.25/],
        ['0.0.0.0/0', /without wireguard.address 10.0.0.1/],
      ] as const) {
        const errors = errorsFor(publicAllowed(entry));
        expect(errors, entry).toEqual([expect.objectContaining({ key: 'outbound.relay_acl[0]', value: entry, message: expect.stringMatching(expected) })]);
        expect(errors[0]?.message).toContain('outbound.allow_local_relay_acl: true');
      }
    });

    it('accepts the VPS itself only when explicitly overridden', () => {
      const text = replaceLine(example, '- 10.0.0.2/32', '- 10.0.0.0/24').replace('allow_local_relay_acl: false', 'allow_local_relay_acl: true');
      expect(loadConfigText(text).ok).toBe(true);
    });

    it('keeps the loopback test rig valid, with a warning, and still refuses 127.0.0.1 and wireguard.address there', () => {
      const rig = loopbackConfig('/tmp/rig', DEMO_PORTS, { key: '/tmp/rig/key.pem', cert: '/tmp/rig/cert.pem' });
      const result = loadConfigText(stringify(rig));
      expect(result.ok).toBe(true);
      if (result.ok) expect(result.warnings.map((warning) => warning.key)).toEqual(['wireguard.network']);
      for (const [entry, expected] of [
        ['127.0.0.0/31', /without loopback address 127.0.0.1/],
        ['127.0.0.3/32', /without wireguard.address 127.0.0.3/],
      ] as const) {
        const errors = errorsFor(stringify({ ...rig, outbound: { ...rig.outbound, relay_acl: [entry] } }));
        expect(errors, entry).toEqual([expect.objectContaining({ key: 'outbound.relay_acl[0]', message: expect.stringMatching(expected) })]);
      }
    });

    it('warns, with the line, about an entry wider than one address', () => {
      const example_ = loadConfigText(example);
      expect(example_.ok && example_.warnings).toEqual([]);
      const text = replaceLine(example, '- 10.0.0.2/32', '- 10.0.0.128/25');
      const result = loadConfigText(text);
      expect(result.ok).toBe(true);
      if (!result.ok) return;
      expect(result.warnings).toEqual([
        { key: 'outbound.relay_acl[0]', value: '10.0.0.128/25', line: lineOf(text, '10.0.0.128/25'), message: expect.stringMatching(/^covers 128 addresses/) },
      ]);
      expect(formatConfigError('mailproxy.yaml', result.warnings[0] as ConfigError)).toMatch(/^mailproxy.yaml:\d+: outbound.relay_acl\[0\]: "10.0.0.128\/25": covers 128/);
    });
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

  it('names a missing required key, without pointing at an unrelated line', () => {
    const errors = errorsFor('version: 1\npublic_ipv4: 198.51.100.7\ndomains: [example.org]\n');
    expect(errors.map((error) => error.key)).toEqual(['hostname']);
    expect(errors[0]?.line).toBeNull();
    expect(formatConfigError('x.yaml', errors[0] as ConfigError)).toBe('x.yaml: hostname: missing (not in the file): expected string');

    // The example without its domains: not reported at `version: 1`'s line (the first key of the file).
    const text = example.replace(/^domains:\n(?: {2}- .*\n)+/m, '');
    expect(text).not.toMatch(/^domains:/m);
    const [domains] = errorsFor(text);
    expect(domains).toMatchObject({ key: 'domains', value: undefined, line: null });
    expect(formatConfigError('mailproxy.yaml', domains as ConfigError)).toMatch(/^mailproxy\.yaml: domains: missing \(not in the file\): /);
  });

  it('points a missing nested key at the line of its parent mapping', () => {
    const text = 'version: 1\nhostname: mx.example.org\npublic_ipv4: 198.51.100.7\ndomains: [example.org]\nedge:\n  dnsbl:\n    zones:\n      - weight: 2\n';
    const errors = errorsFor(text);
    expect(errors).toEqual([expect.objectContaining({ key: 'edge.dnsbl.zones[0].zone', value: undefined, line: lineOf(text, '- weight: 2') })]);
    expect(formatConfigError('x.yaml', errors[0] as ConfigError)).toBe(`x.yaml:${lineOf(text, '- weight: 2')}: edge.dnsbl.zones[0].zone: missing: expected string`);
  });

  it('says a default a rule refuses is not in the file, at its parent’s line or none', () => {
    // backend.host defaults to 10.0.0.2, outside this wireguard.network.
    const base =
      'version: 1\nhostname: mx.example.org\npublic_ipv4: 198.51.100.7\ndomains: [example.org]\nwireguard:\n  network: 10.9.0.0/24\n  address: 10.9.0.1\noutbound:\n  listen: 10.9.0.1:2526\n  relay_acl: [10.9.0.2/32]\n';
    const nested = `${base}backend:\n  port: 25\n`;
    const [underParent] = errorsFor(nested);
    expect(underParent).toMatchObject({ key: 'backend.host', value: '10.0.0.2', line: lineOf(nested, 'backend:') });
    expect(formatConfigError('x.yaml', underParent as ConfigError)).toMatch(
      new RegExp(`^x\\.yaml:${lineOf(nested, 'backend:')}: backend\\.host: "10\\.0\\.0\\.2" \\(the default: not in the file\\): expected an address inside`),
    );
    const [noParent] = errorsFor(base);
    expect(noParent).toMatchObject({ key: 'backend.host', value: '10.0.0.2', line: null });
    expect(formatConfigError('x.yaml', noParent as ConfigError)).toMatch(/^x\.yaml: backend\.host: "10\.0\.0\.2" \(the default: not in the file\): /);
  });

  it('points a value that is wrong at its key’s line, a mapping too (not at its first entry)', () => {
    const text = 'version: 1\nhostname: mx.example.org\npublic_ipv4: 198.51.100.7\ndomains: [example.org]\nbackend:\n  - 10.0.0.2\n';
    expect(errorsFor(text)).toEqual([expect.objectContaining({ key: 'backend', line: lineOf(text, 'backend:') })]);
  });

  it('reports YAML syntax errors at the line and column where the problem starts', () => {
    // An unclosed bracket: at the bracket, not on the line after it where the parser gave up.
    const errors = errorsFor('version: 1\nhostname: [unclosed\n');
    expect(errors).toEqual([expect.objectContaining({ key: '(yaml)', line: 2, column: 11 })]);
    expect(formatConfigError('x.yaml', errors[0] as ConfigError)).toMatch(/^x\.yaml:2:11: YAML syntax error: Flow sequence in block collection/);

    // An unclosed quote: at the quote, not where the quoted text ends (the end of the file, lines later).
    for (const quote of ['"', "'"]) {
      const text = replaceLine(example, 'hostname: mx.example.com\n', `hostname: ${quote}mx.example.com\n`);
      const [error] = errorsFor(text);
      expect(error, quote).toMatchObject({ key: '(yaml)', line: lineOf(text, `hostname: ${quote}`), column: 11 });
      expect(error?.message, quote).toBe(`Missing closing ${quote}quote`);
    }

    // A bracket left open inside another: at the inner one.
    const nested = 'version: 1\nhostname: mx.example.org\ndomains: [example.org]\nbackend: {port: 25, host: [1}\n';
    expect(errorsFor(nested)).toEqual([expect.objectContaining({ key: '(yaml)', line: 4, column: 27 })]);
  });

  it('reports one bad indent once, with line, column and the YAML library’s message', () => {
    // haraka's `host` one column too deep: the yaml library reports each later sibling as misaligned.
    const text = replaceLine(example, '  host: 10.0.0.2\n', '   host: 10.0.0.2\n');
    const errors = errorsFor(text);
    expect(errors).toHaveLength(1);
    const lines = text.split('\n');
    const hostLine = lineOf(text, '   host: 10.0.0.2');
    const line = lines.findIndex((l, index) => index >= hostLine && /^ *[a-z_]+:/.test(l)) + 1; // the next key of backend
    expect(errors[0]).toMatchObject({ key: '(yaml)', line, column: 3, message: 'All mapping items must start at the same column' });
    const formatted = formatConfigError('mailproxy.yaml', errors[0] as ConfigError);
    expect(formatted).toBe(`mailproxy.yaml:${line}:3: YAML syntax error: All mapping items must start at the same column`);
    expect(formatted).not.toContain('missing');
  });

  it('suggests the nearest key for a misspelt one and does not also report the real key as missing', () => {
    const text = replaceLine(example, 'hostname: mx.example.com', 'hostnme: mx.example.com');
    const errors = errorsFor(text);
    expect(errors).toEqual([expect.objectContaining({ key: 'hostnme', line: lineOf(text, 'hostnme:') })]);
    expect(errors[0]?.message).toMatch(/^unsupported key 'hostnme'; did you mean 'hostname'\?/);

    const nested = errorsFor(replaceLine(example, '  port: 10029\n', '  prot: 10029\n'));
    expect(nested).toEqual([expect.objectContaining({ key: 'backend.prot', message: expect.stringContaining("did you mean 'port'?") })]);

    const far = errorsFor(example.replace('backend:\n', 'backend:\n  colour: blue\n'));
    expect(far[0]?.message).not.toContain('did you mean');
  });

  it('says a quoted number or boolean is a string', () => {
    const text = replaceLine(example, '  port: 10029\n', '  port: "10029"\n');
    const errors = errorsFor(text);
    expect(errors).toEqual([expect.objectContaining({ key: 'backend.port', value: '10029', line: lineOf(text, 'port: "10029"') })]);
    expect(errors[0]?.message).toMatch(/^expected a number; the quotes make "10029" a string: write 10029 without them$/);

    const [flag] = errorsFor('version: 1\nhostname: mx.example.org\npublic_ipv4: 198.51.100.7\ndomains: [example.org]\nbackend:\n  starttls: "true"\n');
    expect(flag).toMatchObject({ key: 'backend.starttls', value: 'true' });
    expect(flag?.message).toMatch(/^expected true or false; the quotes make "true" a string/);
  });

  it('refuses a private or loopback public_ipv6 with the reason', () => {
    const base = 'version: 1\nhostname: mx.example.org\npublic_ipv4: 198.51.100.7\ndomains: [example.org]\n';
    for (const ip of ['fd00::25', '::1', 'fe80::1']) {
      const errors = errorsFor(`${base}public_ipv6: "${ip}"\n`);
      expect(errors, ip).toEqual([expect.objectContaining({ key: 'public_ipv6', value: ip, line: 5, message: expect.stringMatching(/internet/) })]);
    }
    expect(loadConfigText(`${base}public_ipv6: "2001:db8::25"\n`).ok).toBe(true);
    for (const ip of ['127.0.0.1', '100.64.1.1', '172.16.0.1', '169.254.1.1', '0.0.0.0']) {
      const errors = errorsFor(base.replace('198.51.100.7', ip));
      expect(errors, ip).toEqual([expect.objectContaining({ key: 'public_ipv4', value: ip })]);
    }
  });

  it('rejects a duplicate domain and a WireGuard address outside its network', () => {
    const text = example.replace('  - example.com\n', '  - example.com\n  - EXAMPLE.com\n').replace('address: 10.0.0.1', 'address: 10.9.0.1');
    const keys = errorsFor(text).map((error) => error.key);
    expect(keys).toEqual(expect.arrayContaining(['domains[1]', 'wireguard.address']));
  });
});
