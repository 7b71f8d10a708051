// The mailproxy command, called in-process through main() with captured output.
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { resolveConfigPath } from '../../src/cli-support';
import { checkPluginOrder, harakaBin } from '../../src/haraka/process';
import { runCli } from '../helpers/cli';
import { useTempDirs } from '../helpers/tmp';

const root = path.resolve(__dirname, '../..');
const example = path.join(root, 'mailproxy.example.yaml');

const run = (...argv: string[]) => runCli(argv);
const tempDir = useTempDirs('mailproxy-cli-');

describe('mailproxy check', () => {
  it('validates the example config and has Haraka load both instances', async () => {
    const result = await run('check', '--config', example);
    expect(result.err).toBe('');
    expect(result.code).toBe(0);
    expect(result.out).toContain('haraka-in: Haraka loaded plugins');
    expect(result.out).toContain('haraka-out: Haraka loaded plugins');
    expect(result.out).toContain('warning: tls.cert: /etc/mailproxy/tls/fullchain.pem does not exist yet');
  });

  it('exits non-zero naming the key, the value, the expectation and the line', async () => {
    const bad = path.join(tempDir(), 'bad.yaml');
    const text = readFileSync(example, 'utf8').replace('listen: 10.0.0.1:2526', 'listen: 0.0.0.0:2526');
    writeFileSync(bad, text);
    const line = text.split('\n').findIndex((l) => l.includes('0.0.0.0:2526')) + 1;
    const result = await run('check', '--config', bad);
    expect(result.code).toBe(1);
    expect(result.err).toContain(`bad.yaml:${line}: outbound.listen: "0.0.0.0:2526": expected the WireGuard address, not a wildcard`);
  });

  it('catches a plugin Haraka cannot resolve', () => {
    const dir = tempDir();
    const config = path.join(dir, 'config');
    mkdirSync(config);
    writeFileSync(path.join(config, 'plugins'), 'no-such-plugin\n');
    writeFileSync(path.join(config, 'smtp.ini'), '[main]\nnodes=0\n');
    symlinkSync(path.join(path.dirname(harakaBin()), '..', 'docs'), path.join(dir, 'docs'));
    const result = checkPluginOrder(dir);
    expect(result.ok).toBe(false);
    expect(result.output).toContain('no-such-plugin');
  });
});

describe('mailproxy render', () => {
  it('writes both instances and reports what changed', async () => {
    const out = tempDir();
    const first = await run('render', '--config', example, '--out', out);
    expect(first.code).toBe(0);
    expect(first.out).toContain(`wrote ${path.join(out, 'haraka-in/config/smtp.ini')}`);
    const second = await run('render', '--config', example, '--out', out);
    expect(second.out).toMatch(/: 0 written, 0 removed, \d+ unchanged$/m);
  });

  it('refuses an invalid config and writes nothing', async () => {
    const dir = tempDir();
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, 'version: 2\n');
    const result = await run('render', '--config', bad, '--out', path.join(dir, 'out'));
    expect(result.code).toBe(1);
    expect(result.err).toContain('bad.yaml:1: version: 2: expected one of 1');
  });

  it('prints usage for an unknown command', async () => {
    const result = await run('frobnicate');
    expect(result.code).toBe(2);
    expect(result.err).toContain('unknown command: frobnicate');
  });
});

describe('mailproxy conventions (issue 15)', () => {
  const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;

  it('prints its version', async () => {
    const result = await run('--version');
    expect(result).toMatchObject({ code: 0, out: `mailproxy ${version}\n`, err: '' });
  });

  it('prints usage and exits 2 when run bare, and 0 when asked for help', async () => {
    const bare = await run();
    expect(bare.code).toBe(2);
    expect(bare.out).toBe('');
    expect(bare.err).toContain('usage: mailproxy <command> [options]');
    for (const ask of ['help', '--help', '-h']) {
      const result = await run(ask);
      expect(result, ask).toMatchObject({ code: 0, err: '' });
      expect(result.out, ask).toContain('usage: mailproxy <command> [options]');
      expect(result.out, ask).toContain('exit codes:');
    }
  });

  it('prints each command’s usage with --help, exit 0, without running it', async () => {
    for (const command of ['check', 'render', 'notes', 'send', 'queue', 'health', 'demo', 'config']) {
      for (const argv of [[command, '--help'], [command, '-h'], ['help', command]]) {
        const result = await run(...argv);
        expect(result.err, argv.join(' ')).toBe('');
        expect(result.code, argv.join(' ')).toBe(0);
        expect(result.out, argv.join(' ')).toMatch(new RegExp(`^usage:\\n  mailproxy ${command} `));
        expect(result.out, argv.join(' ')).not.toContain('usage: mailproxy <command>');
      }
    }
    const queue = await run('queue', 'delete', '--help');
    expect(queue.out).toContain('mailproxy queue delete ID');
    expect(queue.out).toContain('mailproxy queue list|count');
    const check = await run('check', '--config', example, '--help');
    expect(check.out).toContain('$MAILPROXY_CONFIG');
    expect(check.out).not.toContain('Haraka loaded plugins');
    const unknown = await run('frobnicate', '--help');
    expect(unknown.code).toBe(2);
  });

  it('keeps health’s own exit code 3 for its usage errors', async () => {
    const result = await run('health', '--frobnicate');
    expect(result.code).toBe(3);
  });

  it('reads the config from $MAILPROXY_CONFIG, then /etc/mailproxy/mailproxy.yaml', async () => {
    expect(resolveConfigPath(undefined, {})).toEqual({ file: '/etc/mailproxy/mailproxy.yaml', from: 'default' });
    expect(resolveConfigPath(undefined, { MAILPROXY_CONFIG: '/srv/m.yaml' })).toEqual({ file: '/srv/m.yaml', from: 'MAILPROXY_CONFIG' });
    expect(resolveConfigPath('x.yaml', { MAILPROXY_CONFIG: '/srv/m.yaml' })).toEqual({ file: 'x.yaml', from: '--config' });
    vi.stubEnv('MAILPROXY_CONFIG', example);
    try {
      const notes = await run('notes');
      expect(notes.err).toBe('');
      expect(notes.code).toBe(0);
      expect(notes.out).toContain('mx.example.com');
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('says in one line that a config file is missing or not a file', async () => {
    const dir = tempDir();
    const missing = path.join(dir, 'nope.yaml');
    for (const argv of [['check', '--config', missing], ['notes', '--config', missing], ['render', '--config', missing, '--out', dir]]) {
      const result = await run(...argv);
      expect(result.code, argv[0]).toBe(1);
      expect(result.err, argv[0]).toBe(`mailproxy: config file ${missing} does not exist\n`);
    }
    const isDir = await run('check', '--config', dir);
    expect(isDir.code).toBe(1);
    expect(isDir.err).toBe(`mailproxy: cannot read config file ${dir}: it is a directory\n`);
    vi.stubEnv('MAILPROXY_CONFIG', '');
    try {
      const fallback = resolveConfigPath(undefined);
      expect(fallback.file).toBe('/etc/mailproxy/mailproxy.yaml');
    } finally {
      vi.unstubAllEnvs();
    }
  });
});
