// `mailproxy check` on what a VPS gets wrong beyond the file's syntax: a key and certificate Haraka cannot
// load, the Node the units run, the example's placeholder values; and `config get|set`, which the
// installer uses for system.node.
import { chmodSync, chownSync, existsSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { makeSelfSigned } from '../../src/certs/selfsigned';
import { runCli } from '../helpers/cli';
import { useTempDirs } from '../helpers/tmp';

const root = path.resolve(__dirname, '../..');
const example = path.join(root, 'mailproxy.example.yaml');
const tempDir = useTempDirs('mailproxy-check-');

/** A config of a VPS that was set up, with the given key and certificate and this test's Node (at a path
 * outside /root, as the units need it). */
function writeConfig(dir: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(dir, 'mailproxy.yaml');
  const node = path.join(dir, 'node');
  if (!existsSync(node)) symlinkSync(process.execPath, node);
  writeFileSync(
    file,
    stringify({
      version: 1,
      hostname: 'mx.mailproxy-test.net',
      public_ipv4: '198.18.7.25',
      domains: ['mailproxy-test.net'],
      state_dir: path.join(dir, 'state'),
      system: { node },
      ...extra,
    }),
  );
  return file;
}

describe('mailproxy check', () => {
  it('names a key that does not belong to the certificate once, as an error, without a stack trace', async () => {
    const dir = tempDir();
    const mine = makeSelfSigned(path.join(dir, 'a'), 'mx.mailproxy-test.net');
    const other = makeSelfSigned(path.join(dir, 'b'), 'mx.mailproxy-test.net');
    const config = writeConfig(dir, { tls: { key: other.keyPath, cert: mine.certPath } });
    const result = await runCli(['check', '--config', config]);
    expect(result.code).toBe(1);
    expect(result.text).not.toContain('config is valid');
    expect(result.text).not.toMatch(/\n\s+at /);
    expect(result.text.match(/does not belong to the certificate/g)).toHaveLength(1);
    expect(result.err).toContain(`error: tls.key ${other.keyPath} and tls.cert ${mine.certPath}: Haraka cannot load them (the key does not belong to the certificate)`);
    expect(result.text).not.toContain('Haraka loaded plugins');
  });

  it('calls a certificate file that is not PEM an error', async () => {
    const dir = tempDir();
    const mine = makeSelfSigned(path.join(dir, 'a'), 'mx.mailproxy-test.net');
    const junk = path.join(dir, 'junk.pem');
    writeFileSync(junk, 'this is not a certificate\n');
    const result = await runCli(['check', '--config', writeConfig(dir, { tls: { key: mine.keyPath, cert: junk } })]);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/error: tls\.key .* and tls\.cert .*junk\.pem: Haraka cannot load them/);
    expect(result.text).not.toMatch(/\n\s+at /);
  });

  it('passes a matching pair and this Node without a warning about either', async () => {
    const dir = tempDir();
    const mine = makeSelfSigned(path.join(dir, 'a'), 'mx.mailproxy-test.net');
    const result = await runCli(['check', '--config', writeConfig(dir, { tls: { key: mine.keyPath, cert: mine.certPath } })]);
    expect(result.err).toBe('');
    expect(result.code).toBe(0);
    expect(result.out).toContain('config is valid');
    expect(result.out).not.toContain('warning:');
  });

  it('warns about a system.node that is missing or older than 22', async () => {
    const dir = tempDir();
    const missing = await runCli(['check', '--config', writeConfig(dir, { system: { node: '/nonexistent/node' } })]);
    expect(missing.out).toContain('warning: system.node /nonexistent/node does not exist: the units cannot start Haraka');
    const old = path.join(dir, 'node20');
    writeFileSync(old, '#!/bin/sh\necho v20.19.0\n');
    chmodSync(old, 0o755);
    const older = await runCli(['check', '--config', writeConfig(dir, { system: { node: old } })]);
    expect(older.out).toContain(`warning: system.node ${old} is v20.19.0; Haraka 3.3.4 needs Node.js 22 or newer`);
    const hidden = await runCli(['check', '--config', writeConfig(dir, { system: { node: '/root/node22/bin/node' } })]);
    expect(hidden.out).toContain('warning: system.node /root/node22/bin/node does not exist');
  });

  it('warns that the example’s placeholders are still there', async () => {
    const result = await runCli(['check', '--config', example]);
    expect(result.out).toContain("warning: hostname mx.example.com, public_ipv4 203.0.113.25, domains[0] example.com: still the example's documentation values");
    const notes = await runCli(['notes', '--config', example]);
    expect(notes.out).toMatch(/^Not printed: hostname mx\.example\.com/);
    expect(notes.out).not.toContain('MX 10');
    const dir = tempDir();
    const real = await runCli(['notes', '--config', writeConfig(dir)]);
    expect(real.out).toContain('mailproxy-test.net.  MX 10  mx.mailproxy-test.net.');
  });
});

describe('mailproxy config get|set', () => {
  it('reads a key with its default, and sets one keeping the comments and the file mode', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'mailproxy.yaml');
    writeFileSync(file, readFileSync(example, 'utf8'));
    chmodSync(file, 0o640);
    expect((await runCli(['config', 'get', 'system.node', '--config', file])).out).toBe('/usr/bin/node\n');
    expect((await runCli(['config', 'get', 'backend.port', '--config', file])).out).toBe('10029\n');
    expect((await runCli(['config', 'get', 'domains', '--config', file])).out).toBe('["example.com"]\n');
    const set = await runCli(['config', 'set', 'system.node', '/opt/node22/bin/node', '--config', file]);
    expect(set).toMatchObject({ code: 0, err: '' });
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('  node: /opt/node22/bin/node\n');
    expect(text).toContain("# The VPS's public name.");
    expect(text.replace('/opt/node22/bin/node', '/usr/bin/node')).toBe(readFileSync(example, 'utf8'));
    expect(statSync(file).mode & 0o777).toBe(0o640);
  });

  // The installer gives the file to root:mailproxy; a change replaces the file (write and rename), which
  // must not hand it to root's group.
  it.runIf(process.getuid?.() === 0)('keeps the group of the file it changes', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'mailproxy.yaml');
    writeFileSync(file, readFileSync(example, 'utf8'), { mode: 0o640 });
    const group = 54_321; // any group but root's: root may give a file to any gid
    chownSync(file, 0, group);
    const set = await runCli(['config', 'set', 'backend.port', '10030', '--config', file]);
    expect(set).toMatchObject({ code: 0, err: '' });
    expect(readFileSync(file, 'utf8')).toContain('  port: 10030');
    expect(statSync(file)).toMatchObject({ uid: 0, gid: group });
    expect(statSync(file).mode & 0o777).toBe(0o640);
  });

  it('refuses a change that would make the file invalid, and an unknown key, changing nothing', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'mailproxy.yaml');
    writeFileSync(file, readFileSync(example, 'utf8'));
    const bad = await runCli(['config', 'set', 'backend.port', '70000', '--config', file]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('backend.port');
    expect(readFileSync(file, 'utf8')).toBe(readFileSync(example, 'utf8'));
    const unknown = await runCli(['config', 'get', 'backend.prot', '--config', file]);
    expect(unknown).toMatchObject({ code: 1, err: expect.stringContaining('no key backend.prot') });
    expect((await runCli(['config', 'frobnicate'])).code).toBe(2);
  });
});
