// `mailproxy health` against the real appliance on loopback: both Haraka instances, the backend stand-in
// (XCLIENT), stand-in listeners for what must fail (wrong name, no STARTTLS, an expired certificate, a
// backend without XCLIENT, nothing listening) and stand-in `systemctl` and `wg` scripts on the PATH the
// command runs its tools with. Every check passes once and fails at least once, and every exit code
// (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) is reached.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { main } from '../../src/cli';
import type { ConfigInput } from '../../src/config/schema';
import { INTERNET_DOMAIN, LOOPBACK, type Topology } from '../../src/demo/topology';
import { listQueue } from '../../src/queue/tools';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { startSmtpSink, type SinkOptions } from '../../src/testpeers/smtp-sink';
import { eventually } from '../helpers/poll';
import { freePort } from '../helpers/ports';
import { useTempDirs } from '../helpers/tmp';
import { useTopology } from '../helpers/topology';

const IN_UNIT = 'mailproxy-haraka-in.service';
const OUT_UNIT = 'mailproxy-haraka-out.service';
const WG_KEY = 'bWFpbHByb3h5LWhlYWx0aC10ZXN0LXBlZXIta2V5MDA=';

// Deferred messages stay queued: nothing retries by itself during the test.
const tweak = (config: ConfigInput) => {
  if (config.outbound) Object.assign(config.outbound, { retry_intervals: [3600], max_queue_lifetime: 3 * 3600 });
};
const topology = useTopology({
  tweak,
  internet: { rejectRecipient: (address) => (address.startsWith('later@') ? '451 4.3.0 try again later' : null) },
});
const tempDir = useTempDirs('mailproxy-health-');

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface StandIns {
  /** `systemctl is-active` answers per unit, or 'no-systemd' (a container), or null: no systemctl at all. */
  units?: Record<string, 'active' | 'failed' | 'activating' | 'inactive'> | 'no-systemd' | null;
  /** The peer's latest handshake (Unix time, 0 = never), 'no-device' (no wg0), or null: no wg at all. */
  handshake?: number | 'no-device' | null;
}

/** A directory holding stand-in `systemctl` and `wg` scripts: the whole PATH the command runs its tools with. */
function standIns(options: StandIns = {}): NodeJS.ProcessEnv {
  const dir = path.join(tempDir(), 'bin');
  mkdirSync(dir);
  const script = (name: string, body: string) => {
    writeFileSync(path.join(dir, name), `#!/bin/sh\n# stand-in ${name} for mailproxy health tests\n${body}\n`);
    chmodSync(path.join(dir, name), 0o755);
  };
  const units = options.units === undefined ? { [IN_UNIT]: 'active', [OUT_UNIT]: 'active' } : options.units;
  if (units === 'no-systemd') {
    script('systemctl', `echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2\necho "Failed to connect to bus: Host is down" >&2\nexit 1`);
  } else if (units) {
    const cases = Object.entries(units).map(([unit, state]) => `  ${unit}) echo ${state}; exit ${state === 'active' ? 0 : 3} ;;`);
    script('systemctl', ['[ "$1" = is-active ] || { echo "unexpected: $*" >&2; exit 64; }', 'case "$2" in', ...cases, '  *) echo inactive; exit 3 ;;', 'esac'].join('\n'));
  }
  const handshake = options.handshake === undefined ? Math.floor(Date.now() / 1000) - 30 : options.handshake;
  if (handshake === 'no-device') {
    script('wg', 'echo "Unable to access interface: No such device" >&2\nexit 1');
  } else if (handshake !== null) {
    script(
      'wg',
      [
        '[ "$1 $2" = "show wg0" ] || { echo "Unable to access interface: No such device" >&2; exit 1; }',
        'case "$3" in',
        `  latest-handshakes) printf '%s\\t%s\\n' '${WG_KEY}' ${handshake} ;;`,
        `  allowed-ips) printf '%s\\t%s\\n' '${WG_KEY}' '${LOOPBACK.backend}/32' ;;`,
        '  *) exit 64 ;;',
        'esac',
      ].join('\n'),
    );
  }
  return { PATH: dir };
}

/** The topology's config with changes, written to a new file. */
function configWith(t: Topology, change: (config: ConfigInput & { health?: Record<string, number> }) => void): string {
  const input = parse(readFileSync(t.configPath, 'utf8')) as ConfigInput & { health?: Record<string, number> };
  change(input);
  const file = path.join(tempDir(), 'mailproxy.yaml');
  writeFileSync(file, stringify(input));
  return file;
}

async function health(argv: string[], env: NodeJS.ProcessEnv = standIns()): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk) => (out += chunk));
  stderr.on('data', (chunk) => (err += chunk));
  const code = await main(['health', ...argv], { stdout, stderr, env });
  return { code, out, err };
}

interface JsonCheck {
  name: string;
  status: string;
  detail: string;
  metrics: Record<string, number>;
}

/** Runs `health --json` and returns the checks by name. */
async function checks(config: string, env?: NodeJS.ProcessEnv): Promise<{ code: number; by: Record<string, JsonCheck> }> {
  const result = await health(['--config', config, '--json'], env);
  expect(result.err).toBe('');
  const json = JSON.parse(result.out) as { exit_code: number; checks: JsonCheck[] };
  expect(json.exit_code).toBe(result.code);
  return { code: result.code, by: Object.fromEntries(json.checks.map((check) => [check.name, check])) };
}

const ALL = ['haraka-in.unit', 'haraka-out.unit', 'haraka-in.banner', 'haraka-in.tls', 'haraka-out.banner', 'backend', 'wireguard', 'haraka-out.queue', 'node', 'disk'];

async function sink(options: Partial<SinkOptions> & { host: string }) {
  const started = await startSmtpSink(options);
  cleanups.push(() => started.close());
  return `${started.host}:${started.port}`;
}

/** A certificate for `name` that expired yesterday (openssl: notAfter one day before notBefore). */
function expiredCertificate(name: string): { key: string; cert: string } {
  const dir = tempDir();
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`, '-keyout', 'key.pem', '-out', 'req.csr']);
  run(['x509', '-req', '-in', 'req.csr', '-signkey', 'key.pem', '-days', '-1', '-out', 'cert.pem']);
  return { key: readFileSync(path.join(dir, 'key.pem'), 'utf8'), cert: readFileSync(path.join(dir, 'cert.pem'), 'utf8') };
}

/** A backend stand-in that greets and answers EHLO without XCLIENT, and records where connections come from. */
async function backendWithoutXclient(): Promise<{ port: number; peers: string[] }> {
  const peers: string[] = [];
  const server = net.createServer((socket) => {
    peers.push(socket.remoteAddress ?? '');
    socket.on('error', () => undefined);
    socket.write('220 backend.test ESMTP no-xclient stand-in\r\n');
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString('latin1');
      for (let end = buffer.indexOf('\r\n'); end !== -1; end = buffer.indexOf('\r\n')) {
        const verb = buffer.slice(0, end).split(' ')[0]?.toUpperCase();
        buffer = buffer.slice(end + 2);
        if (verb === 'EHLO') socket.write('250-backend.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
        else if (verb === 'QUIT') socket.end('221 2.0.0 bye\r\n');
        else socket.write('502 5.5.2 not here\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK.backend, resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return { port: (server.address() as net.AddressInfo).port, peers };
}

describe('mailproxy health on a running appliance', () => {
  it('exit 0: every check OK, one line per check, JSON, and an atomic Prometheus textfile', async () => {
    const t = topology();
    const human = await health(['--config', t.configPath]);
    expect(human.err).toBe('');
    expect(human.code).toBe(0);
    const lines = human.out.trimEnd().split('\n');
    expect(lines[0]).toBe('mailproxy health OK: 10 OK');
    expect(lines.slice(1).map((line) => line.split(/\s+/).slice(0, 2).join(' '))).toEqual(ALL.map((name) => `OK ${name}`));
    expect(human.out).toContain(`${IN_UNIT} is active`);
    expect(human.out).toMatch(/haraka-in\.banner\s+127\.0\.0\.1:\d+ greets as mx\.demo\.test in \d+ ms/);
    expect(human.out).toMatch(/haraka-out\.banner\s+127\.0\.0\.3:\d+ greets as mx\.demo\.test/);
    expect(human.out).toMatch(/backend\s+127\.0\.0\.2:\d+ from 127\.0\.0\.3: 220 .*; XCLIENT .*ADDR/);
    expect(human.out).toMatch(/wireguard\s+peer bWFpbHBy… on wg0: latest handshake \d+s ago/);
    expect(human.out).toMatch(/haraka-out\.queue\s+0 messages \(0 deferred\)\n/);

    const dir = tempDir();
    const file = path.join(dir, 'mailproxy.prom');
    const json = await health(['--config', t.configPath, '--json', '--prometheus', file]);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.out) as { status: string; checks: JsonCheck[] };
    expect(parsed.status).toBe('OK');
    const tls = parsed.checks.find((check) => check.name === 'haraka-in.tls')!;
    // makeSelfSigned: a 30-day certificate, made when the topology started.
    expect(tls.metrics.cert_expiry_seconds).toBeGreaterThan(29 * 86400);
    expect(tls.detail).toMatch(/^TLSv1\.[23], certificate CN=mx\.demo\.test .*29 days left$/);
    expect(readdirSync(dir)).toEqual(['mailproxy.prom']);
    const prom = readFileSync(file, 'utf8');
    expect(prom).toContain('# TYPE mailproxy_health_status gauge\nmailproxy_health_status 0\n');
    for (const name of ALL) expect(prom).toContain(`mailproxy_health_check_status{check="${name}"} 0\n`);
    expect(prom).toContain('mailproxy_queue_messages{check="haraka-out.queue"} 0\n');
    expect(prom).toMatch(/^mailproxy_disk_free_bytes\{check="disk"\} \d+$/m);
  });

  it('exit 1: a certificate with fewer than cert_warning_days left is a WARNING', async () => {
    const t = topology();
    const { code, by } = await checks(configWith(t, (c) => (c.health = { cert_warning_days: 60 })));
    expect(by['haraka-in.tls']).toMatchObject({ status: 'WARNING', detail: expect.stringContaining('under health.cert_warning_days (60)') });
    expect(
      Object.values(by)
        .filter((check) => check.status !== 'OK')
        .map((check) => check.name),
    ).toEqual(['haraka-in.tls']);
    expect(code).toBe(1);
  });

  it('exit 3: without systemctl and wg nothing is wrong, but not everything is known', async () => {
    const t = topology();
    const empty = tempDir();
    const { code, by } = await checks(t.configPath, { PATH: empty });
    expect(by['haraka-in.unit']).toMatchObject({ status: 'UNKNOWN', detail: `systemctl not found on PATH: cannot tell whether ${IN_UNIT} runs` });
    expect(by['haraka-out.unit']?.status).toBe('UNKNOWN');
    expect(by.wireguard).toMatchObject({ status: 'UNKNOWN', detail: expect.stringContaining('wg not found on PATH') });
    expect(code).toBe(3);
  });

  it('exit 3: a usage error, a missing config, or a textfile it cannot write is UNKNOWN (never 2)', async () => {
    const t = topology();
    const flag = await health(['--config', t.configPath, '--bogus']);
    expect(flag.code).toBe(3);
    expect(flag.err).toContain("mailproxy health: Unknown option '--bogus'");
    expect(flag.err).toContain('usage: mailproxy health --config FILE');
    expect((await health([])).code).toBe(3);
    expect((await health(['--config', path.join(tempDir(), 'missing.yaml')])).code).toBe(3);
    const unwritable = await health(['--config', t.configPath, '--prometheus', path.join(tempDir(), 'no/such/dir/x.prom')]);
    expect(unwritable.err).toContain('cannot write');
    expect(unwritable.code).toBe(3);
  });

  it('exit 2: CRITICAL wins over WARNING and UNKNOWN', async () => {
    const t = topology();
    const config = configWith(t, (c) => (c.health = { cert_warning_days: 60 }));
    const { code, by } = await checks(config, standIns({ units: { [IN_UNIT]: 'active', [OUT_UNIT]: 'failed' }, handshake: null }));
    expect(by['haraka-in.tls']?.status).toBe('WARNING');
    expect(by.wireguard?.status).toBe('UNKNOWN');
    expect(by['haraka-out.unit']).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining(`${OUT_UNIT} is failed`) });
    expect(code).toBe(2);
  });
});

describe('each check fails', () => {
  it('units: failed or starting units, and a machine without systemd', async () => {
    const t = topology();
    const failed = await checks(t.configPath, standIns({ units: { [IN_UNIT]: 'activating', [OUT_UNIT]: 'inactive' } }));
    expect(failed.by['haraka-in.unit']?.status).toBe('WARNING');
    expect(failed.by['haraka-out.unit']?.status).toBe('CRITICAL');
    const container = await checks(t.configPath, standIns({ units: 'no-systemd' }));
    expect(container.by['haraka-in.unit']).toMatchObject({ status: 'UNKNOWN', detail: expect.stringMatching(/^systemd is not running here/) });
  });

  it('banners: nothing listening, a listener that never greets, and one announcing another name (with no STARTTLS)', async () => {
    const t = topology();
    const closed = `${LOOPBACK.wireguard}:${await freePort(LOOPBACK.wireguard)}`;
    const silent = await sink({ host: LOOPBACK.inbound, name: 'mx.demo.test', silent: true });
    const down = await checks(configWith(t, (c) => ((c.outbound!.listen = closed), (c.inbound = { listen: [silent] }), (c.health = { smtp_timeout: 0.5 }))));
    expect(down.by['haraka-out.banner']).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining(`${closed}: connect ECONNREFUSED`) });
    expect(down.by['haraka-in.banner']).toMatchObject({ status: 'CRITICAL', detail: `${silent}: no banner within 0.5 s` });
    expect(down.code).toBe(2);

    const other = await sink({ host: LOOPBACK.inbound, name: 'other.test' });
    const wrong = await checks(configWith(t, (c) => (c.inbound = { listen: [other] })));
    expect(wrong.by['haraka-in.banner']).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('announces other.test, expected hostname mx.demo.test') });
    expect(wrong.by['haraka-in.tls']).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('STARTTLS is not offered') });
  });

  it('STARTTLS: an expired certificate is CRITICAL', async () => {
    const t = topology();
    const expired = await sink({ host: LOOPBACK.inbound, name: 'mx.demo.test', tls: expiredCertificate('mx.demo.test') });
    const { code, by } = await checks(configWith(t, (c) => (c.inbound = { listen: [expired] })));
    expect(by['haraka-in.banner']?.status).toBe('OK');
    expect(by['haraka-in.tls']).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('certificate CN=mx.demo.test expired on') });
    expect(by['haraka-in.tls']?.metrics.cert_expiry_seconds).toBeLessThan(0);
    expect(code).toBe(2);
  });

  it('backend: nothing listening, and a backend that does not offer XCLIENT to wireguard.address', async () => {
    const t = topology();
    const closed = await freePort(LOOPBACK.backend);
    const down = await checks(configWith(t, (c) => (c.backend!.port = closed)));
    expect(down.by.backend).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('nothing listens there') });

    const plain = await backendWithoutXclient();
    const refused = await checks(configWith(t, (c) => (c.backend!.port = plain.port)));
    expect(refused.by.backend).toMatchObject({
      status: 'CRITICAL',
      detail: expect.stringContaining(`does not offer XCLIENT to ${LOOPBACK.wireguard}`),
    });
    // The probe comes from wireguard.address, where the backend's trust is.
    expect(plain.peers).toEqual([LOOPBACK.wireguard]);
    const degraded = await checks(configWith(t, (c) => Object.assign(c.backend!, { port: plain.port, require_xclient: false })));
    expect(degraded.by.backend?.status).toBe('WARNING');
  });

  it('wireguard: a stale handshake, none ever, and no interface', async () => {
    const t = topology();
    const stale = await checks(t.configPath, standIns({ handshake: Math.floor(Date.now() / 1000) - 400 }));
    expect(stale.by.wireguard).toMatchObject({ status: 'WARNING', detail: expect.stringContaining('(health.handshake_warning: 300 s)') });
    expect(stale.by.wireguard?.metrics.wireguard_handshake_age_seconds).toBeGreaterThanOrEqual(400);
    expect(stale.code).toBe(1);
    const dead = await checks(t.configPath, standIns({ handshake: Math.floor(Date.now() / 1000) - 1000 }));
    expect(dead.by.wireguard?.status).toBe('CRITICAL');
    const never = await checks(t.configPath, standIns({ handshake: 0 }));
    expect(never.by.wireguard).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('never completed a handshake') });
    const gone = await checks(t.configPath, standIns({ handshake: 'no-device' }));
    expect(gone.by.wireguard).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('interface wg0 does not exist') });
  });

  it("queue: a deferred message in haraka-out's queue against the size thresholds", async () => {
    const t = topology();
    const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend });
    expect((await session.command('MAIL FROM:<alice@demo.test>')).code).toBe(250);
    expect((await session.command(`RCPT TO:<later@${INTERNET_DOMAIN}>`)).code).toBe(250);
    expect((await session.command('DATA')).code).toBe(354);
    session.write(dataPayload(message('health', 'deferred by the MX')));
    expect((await session.reply()).code).toBe(250);
    session.close();
    const queueDir = path.join(t.config.state_dir, 'haraka-out', 'queue');
    await eventually('a deferred message', async () => (await listQueue(queueDir)).entries.some((entry) => entry.attempts >= 1), {
      context: () => t.haraka['haraka-out']!.output().slice(-3000),
    });

    const ok = await checks(t.configPath);
    expect(ok.by['haraka-out.queue']).toMatchObject({ status: 'OK', metrics: { queue_messages: 1, queue_deferred_messages: 1 } });
    const warning = await checks(configWith(t, (c) => (c.health = { queue_warning: 1, queue_critical: 2 })));
    expect(warning.by['haraka-out.queue']).toMatchObject({
      status: 'WARNING',
      detail: expect.stringMatching(/^1 message \(1 deferred\), health\.queue_warning is 1, oldest \d+s/),
    });
    const critical = await checks(configWith(t, (c) => (c.health = { queue_warning: 1, queue_critical: 1 })));
    expect(critical.by['haraka-out.queue']?.status).toBe('CRITICAL');
    expect(critical.code).toBe(2);
  });

  it('disk: less free space than the thresholds, and a state_dir that does not exist', async () => {
    const t = topology();
    const stats = statfsSync(t.config.state_dir);
    const freeMb = Math.floor((stats.bavail * stats.bsize) / (1024 * 1024));
    const warning = await checks(configWith(t, (c) => (c.health = { disk_warning_mb: freeMb + 1000, disk_critical_mb: 1 })));
    expect(warning.by.disk).toMatchObject({ status: 'WARNING', detail: expect.stringContaining(`(health.disk_warning_mb: ${freeMb + 1000})`) });
    const critical = await checks(configWith(t, (c) => (c.health = { disk_warning_mb: freeMb + 2000, disk_critical_mb: freeMb + 1000 })));
    expect(critical.by.disk?.status).toBe('CRITICAL');
    const missing = await checks(configWith(t, (c) => (c.state_dir = path.join(tempDir(), 'nowhere'))));
    expect(missing.by.disk).toMatchObject({ status: 'UNKNOWN', detail: expect.stringContaining('ENOENT') });
    expect(missing.by['haraka-out.queue']).toMatchObject({ status: 'UNKNOWN', detail: expect.stringContaining('does not exist') });
  });
});
