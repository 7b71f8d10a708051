// The mailproxy command, called in-process through main() with captured output.
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
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
    expect(second.out).toMatch(/^0 written, 0 removed, \d+ unchanged$/m);
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
