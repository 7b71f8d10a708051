// `mailproxy selftest` against real listeners on loopback: the real appliance (haraka-in, haraka-out, the
// backend stand-in that knows its users) for the correct setup, and small SMTP stand-ins on their own
// loopback addresses for each broken case (a wrong banner, an unconfirmed or generic PTR, no STARTTLS, an
// expired or wrong-name certificate, TLS 1.0, an open relay, a slow banner). Every name is answered by the
// DNS server the topology starts on loopback; nothing asks the system resolver.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { ConfigInput } from '../../src/config/schema';
import type { Topology } from '../../src/demo/topology';
import { runCli } from '../helpers/cli';
import { useTempDirs } from '../helpers/tmp';
import { useTopology } from '../helpers/topology';

const USERS = ['alice@demo.test', 'postmaster@demo.test'];
const topology = useTopology({
  backend: { rejectRecipient: (address) => (USERS.includes(address.toLowerCase()) ? null : '550 5.1.1 no such user here') },
});
const tempDir = useTempDirs('mailproxy-selftest-');

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface StandInOptions {
  host: string;
  /** The name in the banner (`220 NAME ESMTP`). */
  name: string;
  /** STARTTLS with this key and certificate; none: not offered. */
  tls?: { key: string; cert: string; legacy?: boolean };
  /** Accept every recipient (an open relay). */
  openRelay?: boolean;
  /** Wait this long before the banner. */
  bannerDelayMs?: number;
  /** Wait this long before the banner to an address not seen before (a banner that waits for a reverse lookup). */
  coldBannerDelayMs?: number;
}

/** A small SMTP server: banner, EHLO (with STARTTLS when it has a certificate), MAIL/RCPT/RSET/QUIT, never DATA. */
async function standIn(options: StandInOptions): Promise<string> {
  const context = options.tls
    ? tls.createSecureContext({
        key: options.tls.key,
        cert: options.tls.cert,
        ...(options.tls.legacy ? { minVersion: 'TLSv1' as const, ciphers: 'DEFAULT@SECLEVEL=0' } : {}),
      })
    : null;
  const serve = (stream: net.Socket | tls.TLSSocket, secure: boolean) => {
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      for (let end = buffer.indexOf('\r\n'); end !== -1; end = buffer.indexOf('\r\n')) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const verb = line.split(' ')[0]!.toUpperCase();
        if (verb === 'EHLO') stream.write(`250-${options.name}\r\n${context && !secure ? '250-STARTTLS\r\n' : ''}250 8BITMIME\r\n`);
        else if (verb === 'STARTTLS' && context && !secure) {
          stream.off('data', onData);
          stream.write('220 2.0.0 go ahead\r\n', () => {
            const upgraded = new tls.TLSSocket(stream as net.Socket, { isServer: true, secureContext: context });
            upgraded.on('error', () => undefined);
            serve(upgraded, true);
          });
          return;
        } else if (verb === 'MAIL' || verb === 'RSET' || verb === 'NOOP') stream.write('250 2.0.0 ok\r\n');
        else if (verb === 'RCPT') stream.write(options.openRelay ? '250 2.1.5 ok, will relay\r\n' : '550 5.7.1 relaying denied\r\n');
        else if (verb === 'QUIT') stream.end('221 2.0.0 bye\r\n');
        else stream.write('502 5.5.2 not here\r\n');
      }
    };
    stream.on('data', onData);
  };
  const seen = new Set<string>();
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    const greet = () => !socket.destroyed && socket.write(`220 ${options.name} ESMTP stand-in\r\n`);
    const cold = !seen.has(socket.remoteAddress ?? '');
    seen.add(socket.remoteAddress ?? '');
    const delay = (options.bannerDelayMs ?? 0) + (cold ? (options.coldBannerDelayMs ?? 0) : 0);
    if (delay) setTimeout(greet, delay);
    else greet();
    serve(socket, false);
  });
  await new Promise<void>((resolve) => server.listen(0, options.host, resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return `${options.host}:${(server.address() as net.AddressInfo).port}`;
}

/** A self-signed certificate (openssl), expired when days is negative. */
function certificate(name: string, days: number): { key: string; cert: string; certPath: string } {
  const dir = tempDir();
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-subj',
    `/CN=${name}`,
    '-addext',
    `subjectAltName=DNS:${name}`,
    '-keyout',
    'key.pem',
    '-out',
    'req.csr',
  ]);
  run(['x509', '-req', '-in', 'req.csr', '-signkey', 'key.pem', '-days', String(days), '-copy_extensions', 'copy', '-out', 'cert.pem']);
  return { key: readFileSync(path.join(dir, 'key.pem'), 'utf8'), cert: readFileSync(path.join(dir, 'cert.pem'), 'utf8'), certPath: path.join(dir, 'cert.pem') };
}

interface JsonCheck {
  name: string;
  mxtoolbox: string | null;
  status: string;
  result: string;
  detail: string;
  fix: string | null;
}

async function selftest(args: string[]): Promise<{ code: number; by: Record<string, JsonCheck>; checks: JsonCheck[]; err: string }> {
  const result = await runCli(['selftest', ...args, '--json']);
  const json = JSON.parse(result.out || '{"checks":[]}') as { exit_code: number; checks: JsonCheck[] };
  if (result.out) expect(json.exit_code).toBe(result.code);
  return { code: result.code, by: Object.fromEntries(json.checks.map((check) => [check.name.replace(/@.*/, ''), check])), checks: json.checks, err: result.err };
}

/** The topology's config with changes, in a new file. */
function configWith(t: Topology, change: (config: ConfigInput) => void): string {
  const input = parse(readFileSync(t.configPath, 'utf8')) as ConfigInput;
  change(input);
  const file = path.join(tempDir(), 'mailproxy.yaml');
  writeFileSync(file, stringify(input));
  return file;
}

const ADDRESS_CHECKS = ['banner', 'rdns', 'hostname', 'connect.cold', 'connect.warm', 'transaction.cold', 'transaction.warm'];
const ALL = [...ADDRESS_CHECKS, 'tls', 'relay', 'haraka-out.relay'];

/** Every check but `failing` passed. */
function onlyFailing(by: Record<string, JsonCheck>, failing: string[]): void {
  expect(
    Object.values(by)
      .filter((check) => check.status !== 'OK')
      .map((check) => check.name.replace(/@.*/, ''))
      .sort(),
  ).toEqual([...failing].sort());
}

describe('mailproxy selftest', () => {
  let ca = '';
  beforeAll(() => {
    const t = topology();
    // haraka-in listens on 127.0.0.1, which stands in for the public address 192.0.2.25 as a listen address
    // behind NAT does: the PTR judged is 192.0.2.25's (loopbackZone publishes it: mx.demo.test, which resolves
    // back), and 127.0.0.1 has none. The stand-ins, reached by --target, get theirs below. The topology's
    // self-signed certificate is trusted with --ca.
    ca = t.config.tls.cert;
    t.dns.zone.PTR = {
      ...t.dns.zone.PTR,
      '21.0.0.127.in-addr.arpa': ['mx.demo.test'],
      '22.0.0.127.in-addr.arpa': ['mx.demo.test'],
      '23.0.0.127.in-addr.arpa': ['127-0-0-23.dynamic.example.net'],
      ...Object.fromEntries([20, 24, 25, 26, 27, 28, 29, 30].map((n) => [`${n}.0.0.127.in-addr.arpa`, ['mx.demo.test']])),
    };
    // 127.0.0.22's PTR names mx.demo.test, which does not resolve back to it.
    t.dns.zone.A = {
      ...t.dns.zone.A,
      'mx.demo.test': ['192.0.2.25', ...[20, 21, 24, 25, 26, 27, 28, 29, 30].map((n) => `127.0.0.${n}`)],
      '127-0-0-23.dynamic.example.net': ['127.0.0.23'],
      'standin.demo.test': ['127.0.0.20'],
    };
  });

  it('exit 0: the real appliance passes every check, one line each under MXToolbox’s names', async () => {
    const t = topology();
    const human = await runCli(['selftest', '--config', t.configPath, '--ca', ca]);
    expect(human.err).toBe('');
    const lines = human.out.trimEnd().split('\n');
    expect(lines[0]).toBe(`mailproxy selftest OK: ${ALL.length} pass`);
    expect(lines.slice(1).map((line) => line.split(/\s+/).slice(0, 2).join(' '))).toEqual(
      ALL.map(
        (name) =>
          `PASS ${name}@${name === 'haraka-out.relay' ? `${t.outbound.host}:${t.outbound.port}` : ['rdns', 'hostname'].includes(name) ? '192.0.2.25' : `127.0.0.1:${t.inbound.port}`}`,
      ),
    );
    expect(human.code).toBe(0);
    for (const name of ['SMTP Banner Check', 'SMTP Reverse DNS Mismatch', 'SMTP Valid Hostname', 'SMTP TLS', 'SMTP Open Relay', 'SMTP Connection Time', 'SMTP Transaction Time']) {
      expect(human.out).toContain(name);
    }
    expect(human.out).toMatch(/banner@\S+ +SMTP Banner Check +127\.0\.0\.1:\d+ greets as mx\.demo\.test, the PTR of 192\.0\.2\.25/);
    expect(human.out).toMatch(/rdns@192\.0\.2\.25 +SMTP Reverse DNS Mismatch +PTR of 192\.0\.2\.25 is mx\.demo\.test, which resolves back to it/);
    expect(human.out).toMatch(/connect\.cold@\S+ .*first connection from 127\.\d+\.\d+\.\d+, an address haraka-in had not seen/);
    expect(human.out).toMatch(/relay@\S+ .*refused all 39 attempts from 3 senders \(supertool@mxtoolboxsmtpdiag\.com, <>, postmaster@demo\.test\) with 5xx/);
    expect(human.out).toMatch(
      /haraka-out\.relay@\S+ .*refused all 30 relay attempts from 127\.0\.0\.1 \(this host\) with 5xx; only outbound\.relay_acl \(127\.0\.0\.2\/32\) may relay.*"refused from here"/,
    );
    expect(human.out).toMatch(/tls@\S+ .*STARTTLS TLSv1\.[23], certificate CN=mx\.demo\.test .*chain verified; TLSv1 refused, TLSv1\.1 refused/);
    // Nothing was delivered on the way: the relay probe never says DATA.
    expect(t.backend!.messages).toHaveLength(0);
    expect(t.internet!.messages).toHaveLength(0);

    const { code, checks } = await selftest(['--config', t.configPath, '--ca', ca]);
    expect(code).toBe(0);
    expect(checks.map((check) => [check.result, check.mxtoolbox === null ? null : typeof check.mxtoolbox])).toEqual(ALL.map(() => ['pass', 'string']));
  });

  it('measures cold from an address haraka-in has not seen (its reverse lookup goes out), then warm from the same one', async () => {
    const t = topology();
    const asked = t.dns.queries.length;
    const { code, by } = await selftest(['--config', t.configPath, '--ca', ca]);
    const fresh = /first connection from (127\.\d+\.\d+\.\d+), an address haraka-in had not seen/.exec(by['connect.cold']!.detail)?.[1];
    expect(fresh).toBeDefined();
    expect(fresh).not.toBe('127.0.0.1');
    expect(by['connect.warm']!.detail).toContain(`second connection from ${fresh} `);
    // haraka-in asked the DNS server for the fresh address's name: nothing was cached for it.
    const reverse = `${fresh!.split('.').reverse().join('.')}.in-addr.arpa`;
    expect(t.dns.queries.slice(asked)).toContainEqual({ name: reverse, type: 'PTR' });
    expect(code).toBe(0);
  });

  it('exit 1: a banner that waits for the client’s reverse lookup is slow cold, fast warm', async () => {
    const t = topology();
    const target = await standIn({
      host: '127.0.0.30',
      name: 'mx.demo.test',
      tls: { key: readFileSync(t.config.tls.key, 'utf8'), cert: readFileSync(ca, 'utf8') },
      coldBannerDelayMs: 2100,
    });
    const { code, by } = await selftest(['--config', t.configPath, '--ca', ca, '--target', target]);
    onlyFailing(by, ['connect.cold', 'transaction.cold']);
    expect(by['connect.cold']).toMatchObject({ status: 'WARNING', mxtoolbox: 'SMTP Connection Time', detail: expect.stringMatching(/banner in 2\d{3} ms, over 2 s$/) });
    expect(by['connect.cold']!.fix).toContain('reverse DNS lookup');
    expect(by['connect.warm']!.detail).toMatch(/second connection from 127\.\d+\.\d+\.\d+ .*: banner in \d{1,3} ms$/);
    expect(code).toBe(1);
  });

  it('--target with a host name, resolved through the resolver; an unknown name is a finding', async () => {
    const t = topology();
    const target = await standIn({ host: '127.0.0.20', name: 'mx.demo.test', tls: { key: readFileSync(t.config.tls.key, 'utf8'), cert: readFileSync(ca, 'utf8') } });
    const port = target.split(':')[1];
    const { code, by } = await selftest(['--config', t.configPath, '--ca', ca, '--target', `standin.demo.test:${port}`]);
    expect(by.target).toMatchObject({ status: 'OK', detail: expect.stringContaining('standin.demo.test → A 127.0.0.20') });
    expect(by.banner!.name).toBe(`banner@127.0.0.20:${port}`);
    onlyFailing(by, []);
    expect(code).toBe(0);

    const missing = await selftest(['--config', t.configPath, '--target', `nowhere.demo.test:${port}`]);
    expect(missing.by.target).toMatchObject({ status: 'CRITICAL', fix: expect.stringContaining('publish nowhere.demo.test. A') });
    expect(missing.by.banner).toBeUndefined();
    expect(missing.code).toBe(2);
  });

  describe('each broken case gives its own finding and exit code', () => {
    const goodTls = () => {
      const t = topology();
      return { key: readFileSync(t.config.tls.key, 'utf8'), cert: readFileSync(ca, 'utf8') };
    };
    const run = async (options: StandInOptions, extra: string[] = []) => selftest(['--config', topology().configPath, '--ca', ca, ...extra, '--target', await standIn(options)]);

    it('banner without the PTR name: SMTP Banner Check warns, with the fix', async () => {
      const { code, by } = await run({ host: '127.0.0.21', name: 'other.example.net', tls: goodTls() });
      onlyFailing(by, ['banner']);
      expect(by.banner).toMatchObject({
        status: 'WARNING',
        mxtoolbox: 'SMTP Banner Check',
        detail: expect.stringContaining('greets as other.example.net, but the PTR of 127.0.0.21 is mx.demo.test'),
      });
      expect(by.banner!.fix).toContain('not haraka-in as mailproxy renders it');
      expect(code).toBe(1);
    });

    it('PTR not confirmed: SMTP Reverse DNS Mismatch fails', async () => {
      const { code, by } = await run({ host: '127.0.0.22', name: 'mx.demo.test', tls: goodTls() });
      onlyFailing(by, ['rdns']);
      expect(by.rdns).toMatchObject({ status: 'CRITICAL', mxtoolbox: 'SMTP Reverse DNS Mismatch', detail: expect.stringContaining('does not resolve back to 127.0.0.22') });
      expect(by.rdns!.fix).toBe('publish mx.demo.test. A 127.0.0.22 (the name the PTR gives must resolve back to the address)');
      expect(code).toBe(2);
    });

    it('generic PTR: SMTP Valid Hostname warns', async () => {
      const { code, by } = await run({ host: '127.0.0.23', name: '127-0-0-23.dynamic.example.net', tls: goodTls() });
      onlyFailing(by, ['hostname']);
      expect(by.hostname).toMatchObject({ status: 'WARNING', mxtoolbox: 'SMTP Valid Hostname', detail: expect.stringContaining('a generic name (it contains the address)') });
      expect(by.hostname!.fix).toContain('set the PTR (reverse DNS) of 127.0.0.23 to mx.demo.test');
      expect(code).toBe(1);
    });

    it('no STARTTLS: SMTP TLS fails', async () => {
      const { code, by } = await run({ host: '127.0.0.24', name: 'mx.demo.test' });
      onlyFailing(by, ['tls']);
      expect(by.tls).toMatchObject({ status: 'CRITICAL', mxtoolbox: 'SMTP TLS', detail: expect.stringContaining('does not offer STARTTLS') });
      expect(code).toBe(2);
    });

    it('an expired certificate: SMTP TLS fails', async () => {
      const expired = certificate('mx.demo.test', -1);
      const { code, by } = await run({ host: '127.0.0.25', name: 'mx.demo.test', tls: expired }, ['--ca', expired.certPath]);
      onlyFailing(by, ['tls']);
      expect(by.tls).toMatchObject({ status: 'CRITICAL', detail: expect.stringMatching(/certificate CN=mx\.demo\.test expired on \d{4}-\d\d-\d\d/) });
      expect(by.tls!.fix).toContain('renew');
      expect(code).toBe(2);
    });

    it('a wrong-name certificate: SMTP TLS fails', async () => {
      const wrong = certificate('other.example.net', 30);
      const { code, by } = await run({ host: '127.0.0.26', name: 'mx.demo.test', tls: wrong }, ['--ca', wrong.certPath]);
      onlyFailing(by, ['tls']);
      expect(by.tls).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('certificate CN=other.example.net is not valid for hostname mx.demo.test') });
      expect(by.tls!.fix).toContain('whose names include mx.demo.test');
      expect(code).toBe(2);
    });

    it('TLS 1.0 offered: SMTP TLS warns', async () => {
      const { code, by } = await run({ host: '127.0.0.27', name: 'mx.demo.test', tls: { ...goodTls(), legacy: true } });
      onlyFailing(by, ['tls']);
      expect(by.tls).toMatchObject({ status: 'WARNING', detail: expect.stringContaining('TLSv1 accepted; TLSv1.1 accepted') });
      expect(by.tls!.fix).toContain('minVersion=TLSv1.2');
      expect(code).toBe(1);
    });

    it('relay accepted (an open stand-in): SMTP Open Relay fails', async () => {
      const { code, by } = await run({ host: '127.0.0.28', name: 'mx.demo.test', tls: goodTls(), openRelay: true });
      onlyFailing(by, ['relay']);
      expect(by.relay).toMatchObject({
        status: 'CRITICAL',
        mxtoolbox: 'SMTP Open Relay',
        detail: expect.stringContaining(
          "ACCEPTED 39 of 39 attempts from 3 senders (supertool@mxtoolboxsmtpdiag.com, <>, postmaster@demo.test): MAIL FROM:<supertool@mxtoolboxsmtpdiag.com> RCPT TO:<test@mxtoolboxsmtpdiag.com> (MXToolbox's probe): 250",
        ),
      });
      expect(by.relay!.fix).toContain('accepts mail for other domains');
      expect(by.relay!.fix).toContain('allow_percent_hack = no');
      expect(code).toBe(2);
    });

    it('a slow banner (a stand-in that waits): Connection and Transaction Time warn, cold and warm', async () => {
      const { code, by } = await run({ host: '127.0.0.29', name: 'mx.demo.test', tls: goodTls(), bannerDelayMs: 2100 });
      onlyFailing(by, ['connect.cold', 'connect.warm', 'transaction.cold', 'transaction.warm']);
      expect(by['connect.warm']).toMatchObject({ status: 'WARNING', detail: expect.stringMatching(/banner in 2\d{3} ms, over 2 s$/) });
      expect(code).toBe(1);
    });

    it('haraka-out relaying for this host: fails, and says what only the backend can show', async () => {
      const t = topology();
      const open = await standIn({ host: '127.0.0.3', name: 'mx.demo.test', openRelay: true });
      const config = configWith(t, (c) => (c.outbound = { ...c.outbound, listen: open }));
      const { code, by } = await selftest(['--config', config, '--ca', ca]);
      onlyFailing(by, ['haraka-out.relay']);
      expect(by['haraka-out.relay']).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining(`${open} ACCEPTED 30 of 30 relay attempts from 127.0.0.1`) });
      expect(by['haraka-out.relay']!.fix).toContain('outbound.relay_acl must not cover 127.0.0.1');
      expect(code).toBe(2);
    });
  });

  describe('exit 3 (UNKNOWN): it never asks the system resolver, and says so', () => {
    it('--help prints the usage (exit 0); an unknown option is a usage error (exit 3), for doctor too', async () => {
      for (const command of ['selftest', 'doctor']) {
        const help = await runCli([command, '--help']);
        expect(help).toMatchObject({ code: 0, err: '' });
        expect(help.out).toMatch(new RegExp(`^usage:\\n  mailproxy ${command} \\[--config FILE\\]`));
        const bad = await runCli([command, '--frobnicate']);
        expect(bad.code).toBe(3);
        expect(bad.err).toContain(`usage: mailproxy ${command} [--config FILE]`);
      }
    });

    it('refuses to run without --resolver when dns.servers is empty', async () => {
      const t = topology();
      const config = configWith(t, (c) => (c.dns = { servers: [] }));
      const result = await runCli(['selftest', '--config', config]);
      expect(result.code).toBe(3);
      expect(result.out).toBe('');
      expect(result.err).toContain('this command never asks the system resolver; pass --resolver IP[:PORT]');
    });

    it('takes --resolver instead, and refuses a malformed --target or --resolver', async () => {
      const t = topology();
      const config = configWith(t, (c) => (c.dns = { servers: [] }));
      const ok = await selftest(['--config', config, '--ca', ca, '--resolver', t.dns.address]);
      expect(ok.code).toBe(0);
      expect((await runCli(['selftest', '--config', config, '--resolver', 'dns.example.net'])).code).toBe(3);
      const bad = await runCli(['selftest', '--config', t.configPath, '--target', 'a:b:c']);
      expect(bad.code).toBe(3);
      expect(bad.err).toContain('--target "a:b:c": expected HOST[:PORT]');
    });
  });
});
