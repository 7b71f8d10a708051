// The units under a real systemd: a container (systemd-nspawn, this machine's own root on a throwaway
// overlay, its own network namespace) where scripts/install.sh runs as the README says, and systemd's own
// state shows readiness (Type=notify), the watchdog, the SIGINT stop with haraka-out's queue kept, the
// try-restart by `cert deploy`, both timers, haraka-out waiting for the WireGuard address, and the
// sandbox letting each instance do its job. Every address below exists only inside the container.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCa, type Issued } from '../helpers/cert-fixtures';
import { missingPeers, requirePeers } from '../helpers/peers';
import { bootContainer, CONTAINER_NODE, nspawnUnavailableReason, type Container, type RunResult } from '../helpers/nspawn';
import { startPeers, storedMessages } from '../helpers/nspawn-peers';
import { describeSamples, sampleUnit, watchUnit, type UnitSample } from '../helpers/nspawn-units';

const REPO = path.resolve(__dirname, '../..');
const DIST = path.join(REPO, 'dist');
// The first install run renders the example config (outbound.dane: true): the installer sets up unbound,
// which must be installed already, since the container has no network to download it.
const runnable = requirePeers(
  'systemd units in a container (systemd-nspawn)',
  missingPeers(['/usr/bin/swaks', '/usr/sbin/unbound', '/usr/sbin/unbound-anchor'], [
    nspawnUnavailableReason(),
    existsSync(path.join(DIST, 'src/cli.js')) ? null : 'dist/ is not built (npm run build)',
    // install.sh runs npm ci inside the container, from the host's npm cache (the container has no network).
    ['/usr/bin/npm', '/usr/local/bin/npm'].some((file) => existsSync(file)) ? null : 'npm is not in /usr/bin or /usr/local/bin, where the container finds it',
    existsSync(npmCache()) ? null : `npm's cache ${npmCache()} does not exist (npm ci in the checkout fills it)`,
  ]),
);

// What the test expects of scripts/install.sh: --node becomes system.node, which the units run, and the
// `mailproxy` command on PATH. Adjust here when the installer changes.
const INSTALLER = { node: CONTAINER_NODE, command: '/usr/local/bin/mailproxy' };
const IN = 'mailproxy-haraka-in.service';
const OUT = 'mailproxy-haraka-out.service';
const HOSTNAME = 'mx.mailproxy.test';
const DOMAIN = 'mailproxy.test';
const NET = {
  public: '198.18.0.25', // public_ipv4: haraka-in on port 25
  client: '198.18.0.9', // a sender on the internet
  wireguard: '10.0.0.1', // the VPS's WireGuard address, on the stand-in wg0
  backend: '10.0.0.2', // the backend stand-in (XCLIENT sink) and the relay ACL
  mx: '198.18.7.25', // the MX of later.test, down until the queue test brings it up
  dns: '127.0.0.53', // dns.servers: the stand-in DNS server
};
const BACKEND_PORT = 10029;
const LATER = 'later.test';
const QUEUE = '/var/lib/mailproxy/haraka-out/queue';
const PEERS = { backend: '/run/mailproxy-test/backend', mx: '/run/mailproxy-test/mx', certs: '/run/mailproxy-test/certs' };
// Everything the file waits for together, so that a hang cannot hold CI.
const BUDGET_MS = 240_000;

const TEST_CONFIG = `# written by test/e2e/systemd.test.ts
version: 1
hostname: ${HOSTNAME}
public_ipv4: ${NET.public}
domains: [${DOMAIN}]
backend: { host: ${NET.backend}, port: ${BACKEND_PORT}, starttls: false }
wireguard: { address: ${NET.wireguard}, network: 10.0.0.0/24, interface: wg0 }
outbound:
  listen: ${NET.wireguard}:2526
  relay_acl: [${NET.backend}/32]
  # The container has no way out: the unbound the first run set up cannot reach the root servers.
  dane: false
  # The "internet" MX is an address of the container itself; retry a deferred message every 5 s.
  allow_local_mx: true
  retry_intervals: [5]
dns: { servers: [${NET.dns}] }
`;

/** A link named `name` with `address`: a dummy interface, or a veth pair where the kernel has no dummy. */
function addLinkScript(name: string, address: string): string {
  return `(ip link add ${name} type dummy 2>/dev/null || ip link add ${name} type veth peer name ${name}-peer) && ip addr add ${address} dev ${name} && ip link set ${name} up && (ip link set ${name}-peer up 2>/dev/null || true)`;
}

/** A field of /proc/PID/status ("CapEff:\t0000000000000400"). */
function statusField(status: string, key: string): string | undefined {
  return new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim();
}

describe.runIf(runnable)('the units under a real systemd (systemd-nspawn)', () => {
  let container: Container | undefined;
  let certDir = '';
  let nextCert: Issued;
  let installed = false;
  let deadline = 0;
  const timings: [string, number][] = [];
  const left = (ms: number) => Math.max(1_000, Math.min(ms, deadline - Date.now()));
  const c = () => container as Container;

  async function timed<T>(label: string, body: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      return await body();
    } finally {
      timings.push([label, Date.now() - started]);
    }
  }

  async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs: number, context?: () => Promise<string>): Promise<T> {
    const end = Date.now() + left(timeoutMs);
    for (;;) {
      const value = await probe();
      if (value) return value;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}${context ? `\n${await context()}` : ''}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  const journal = async (unit: string, lines = 40) => (await c().run(['journalctl', '-u', unit, '-o', 'cat', '--no-pager', '-n', String(lines)])).stdout;
  const invocationLog = async (id: string) => (await c().run(['journalctl', `_SYSTEMD_INVOCATION_ID=${id}`, '-o', 'cat', '--no-pager'])).stdout;

  function installer(): Promise<RunResult> {
    // The container has no network: npm ci installs from the host's npm cache (overlaid, so the host's
    // copy is never written).
    return c().run(['bash', path.join(REPO, 'scripts/install.sh'), '--node', INSTALLER.node], {
      env: { npm_config_offline: 'true', npm_config_cache: npmCache(), npm_config_update_notifier: 'false' },
      timeoutMs: left(150_000),
    });
  }

  function swaks(from: string, server: string, port: number, args: string[]): Promise<RunResult> {
    return c().run(['swaks', '--server', server, '--port', String(port), '--local-interface', from, '--timeout', '15', ...args], { timeoutMs: left(30_000) });
  }

  /** The queue files of haraka-out that hold `subject`, with the attempts their name records. */
  function queued(subject: string): { name: string; attempts: number }[] {
    return c()
      .list(QUEUE)
      .filter((name) => c().readFile(path.posix.join(QUEUE, name))?.includes(subject))
      .map((name) => ({ name, attempts: Number(name.split('_')[2]) }));
  }

  beforeAll(async () => {
    deadline = Date.now() + BUDGET_MS;
    certDir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-nspawn-certs-'));
    const ca = makeCa(certDir, 'mailproxy nspawn test CA');
    const firstCert = ca.issue({ names: [HOSTNAME], fullchain: true });
    nextCert = ca.issue({ names: [HOSTNAME], fullchain: true });
    container = await timed('boot the container', () =>
      bootContainer({ name: `mailproxy-test-${process.pid}`, bindReadOnly: [REPO], overlay: [npmCache()] }),
    );
    c().setDeadline(deadline);
    await timed('addresses and stand-ins', async () => {
      const addresses = [NET.public, NET.client, NET.backend, NET.mx].map((ip) => `ip addr add ${ip}/32 dev lo`).join(' && ');
      await c().ok(['sh', '-c', `${addresses} && ${addLinkScript('wg0', `${NET.wireguard}/24`)}`]);
      await startPeers(
        c(),
        'mailproxy-test-backend',
        {
          dns: { host: NET.dns, port: 53, zone: { MX: { [LATER]: [{ exchange: `mx.${LATER}`, preference: 10 }] }, A: { [`mx.${LATER}`]: [NET.mx] } } },
          sinks: [{ host: NET.backend, port: BACKEND_PORT, xclient: true, name: 'backend.test', dir: PEERS.backend }],
        },
        DIST,
      );
    });
    c().writeFile(path.posix.join(PEERS.certs, 'first.key'), firstCert.keyPem, 0o600);
    c().writeFile(path.posix.join(PEERS.certs, 'first.pem'), firstCert.certPem);
    c().writeFile(path.posix.join(PEERS.certs, 'next.key'), nextCert.keyPem, 0o600);
    c().writeFile(path.posix.join(PEERS.certs, 'next.pem'), nextCert.certPem);
    c().writeFile(path.posix.join(PEERS.certs, 'ca.pem'), ca.certPem);
  }, 90_000);

  afterAll(async () => {
    await timed('stop the container', async () => container?.stop());
    if (certDir) rmSync(certDir, { recursive: true, force: true });
    console.log(`systemd.test.ts step times (ms): ${timings.map(([label, ms]) => `${label} ${ms}`).join('; ')}`);
  }, 60_000);

  it('installs as the README says: the first run writes the config and starts nothing, the second starts the units and timers', async () => {
    const first = await timed('install.sh, first run', installer);
    expect(first.code, `${first.stdout}\n${first.stderr}`).toBe(0);
    expect(first.stdout).toContain('wrote /etc/mailproxy/mailproxy.yaml from the example');
    expect(first.stdout).toContain('not starting yet');
    for (const unit of [IN, OUT]) {
      expect(await c().show(unit, ['LoadState', 'ActiveState', 'UnitFileState'])).toMatchObject({ LoadState: 'loaded', ActiveState: 'inactive', UnitFileState: 'disabled' });
    }
    expect(c().readFile('/etc/mailproxy/mailproxy.yaml')).toContain(`node: ${INSTALLER.node}`);

    // Edit the config (here: replace it) and put the certificate where tls.key/tls.cert say, the key
    // readable by group mailproxy; then run the installer again.
    c().writeFile('/etc/mailproxy/mailproxy.yaml', TEST_CONFIG, 0o640);
    await c().ok(['sh', '-c', `install -m 0640 -g mailproxy ${PEERS.certs}/first.key /etc/mailproxy/tls/privkey.pem && install -m 0644 ${PEERS.certs}/first.pem /etc/mailproxy/tls/fullchain.pem`]);
    const second = await timed('install.sh, second run', installer);
    expect(second.code, `${second.stdout}\n${second.stderr}\n${await journal(IN, 30)}\n${await journal(OUT, 30)}`).toBe(0);

    for (const unit of [IN, OUT]) {
      const state = await c().show(unit, ['ActiveState', 'SubState', 'UnitFileState', 'Type', 'ExecStart']);
      expect(state, unit).toMatchObject({ ActiveState: 'active', SubState: 'running', UnitFileState: 'enabled', Type: 'notify' });
      expect(state.ExecStart).toContain(`path=${INSTALLER.node} ;`);
    }
    for (const timer of ['mailproxy-health.timer', 'mailproxy-cert-renew.timer']) {
      expect(await c().show(timer, ['ActiveState', 'UnitFileState']), timer).toEqual({ ActiveState: 'active', UnitFileState: 'enabled' });
      expect((await c().show(timer.replace('.timer', '.service'), ['ExecStart'])).ExecStart).toContain(`path=${INSTALLER.node} ;`);
    }
    expect((await c().ok(['sh', '-c', 'command -v mailproxy'])).trim()).toBe(INSTALLER.command);
    installed = true;
  }, 300_000);

  it('haraka-in binds port 25 as user mailproxy with CAP_NET_BIND_SERVICE only, writes its state directory and forwards to the backend with XCLIENT', async (ctx) => {
    if (!installed) ctx.skip();
    const { MainPID: pid } = await c().show(IN, ['MainPID']);
    const status = await c().ok(['cat', `/proc/${pid}/status`]);
    const uid = (await c().ok(['id', '-u', 'mailproxy'])).trim();
    expect(statusField(status, 'Uid')?.split(/\s+/)).toEqual([uid, uid, uid, uid]);
    for (const set of ['CapEff', 'CapPrm', 'CapBnd', 'CapAmb']) expect(statusField(status, set), set).toBe('0000000000000400'); // bit 10: cap_net_bind_service
    expect(statusField(status, 'NoNewPrivs')).toBe('1');
    expect(await c().ok(['ss', '-Htlnp', `src ${NET.public}:25`])).toContain(`pid=${pid},`);
    // systemd made the state directory for the user (StateDirectory=), and Haraka wrote its queue dir in it.
    expect((await c().ok(['stat', '-c', '%U %a', '/var/lib/mailproxy/haraka-in', '/var/lib/mailproxy/haraka-in/queue'])).trim().split('\n')).toEqual([
      'mailproxy 750',
      'mailproxy 750',
    ]);

    const subject = `inbound ${Date.now()}`;
    const sent = await timed('send through haraka-in', () => swaks(NET.client, NET.public, 25, ['--from', 'alice@sender.test', '--to', `bob@${DOMAIN}`, '--header', `Subject: ${subject}`]));
    expect(sent.code, sent.stdout).toBe(0);
    const message = await until('the backend stand-in to receive the message', async () => storedMessages(c(), PEERS.backend).find((m) => m.subject === subject), 10_000);
    expect(message.rcptTo).toEqual([`bob@${DOMAIN}`]);
    expect(message.xclient.ADDR).toBe(NET.client);
  });

  it('haraka-out relays for the ACL address only; SIGINT stops it with its queue kept, and the queued message goes out after the start', async (ctx) => {
    if (!installed) ctx.skip();
    const refused = await swaks(NET.wireguard, NET.wireguard, 2526, ['--from', `alice@${DOMAIN}`, '--to', `carol@${LATER}`]);
    expect(refused.code, refused.stdout).not.toBe(0);
    expect(refused.stdout).toMatch(/<\*\* +550 /);

    const subject = `outbound ${Date.now()}`;
    const relayed = await swaks(NET.backend, NET.wireguard, 2526, ['--from', `alice@${DOMAIN}`, '--to', `carol@${LATER}`, '--header', `Subject: ${subject}`]);
    expect(relayed.code, relayed.stdout).toBe(0);
    // The MX of later.test refuses connections: the message is deferred and stays in the queue.
    const before = await until('a failed delivery attempt on the queued message', async () => queued(subject).find((file) => file.attempts >= 1), 15_000, () => journal(OUT));
    expect(before.name).toMatch(/^\d+_\d+_\d+_/);

    const { InvocationID: running } = await c().show(OUT, ['InvocationID']);
    const stop = await timed('systemctl stop haraka-out', () => c().run(['systemctl', 'stop', OUT]));
    expect(stop.code, stop.stderr).toBe(0);
    expect(await c().show(OUT, ['ActiveState', 'Result', 'ExecMainCode', 'ExecMainStatus'])).toEqual({ ActiveState: 'inactive', Result: 'success', ExecMainCode: '1', ExecMainStatus: '0' });
    expect(stop.ms).toBeLessThan(15_000);
    await until("Haraka's log of the SIGINT", async () => (await invocationLog(running)).includes('SIGINT received'), 5_000, () => invocationLog(running));
    const kept = queued(subject);
    expect(kept, 'the queue file after the stop').toHaveLength(1);
    // Same message: arrival time and unique id of the name survive the retries' renames.
    const [arrival, , , , unique] = before.name.split('_');
    expect(kept[0]?.name.split('_')[0]).toBe(arrival);
    expect(kept[0]?.name.split('_')[4]).toBe(unique);

    await startPeers(c(), 'mailproxy-test-mx', { sinks: [{ host: NET.mx, port: 25, xclient: false, name: `mx.${LATER}`, dir: PEERS.mx }] }, DIST);
    await timed('systemctl start haraka-out', () => c().ok(['systemctl', 'start', OUT]));
    const delivered = await timed('deliver the kept message', () =>
      until('the MX of later.test to receive the kept message', async () => storedMessages(c(), PEERS.mx).find((m) => m.subject === subject), 20_000, () => journal(OUT)),
    );
    expect(delivered.rcptTo).toEqual([`carol@${LATER}`]);
    await until('the queue to be empty', async () => queued(subject).length === 0, 5_000);
  });

  it('each Haraka is activating until it sends READY=1 and active only once it answers', async (ctx) => {
    if (!installed) ctx.skip();
    for (const [unit, listen] of [
      [IN, `${NET.public}:25`],
      [OUT, `${NET.wireguard}:2526`],
    ] as const) {
      const { InvocationID: previous } = await c().show(unit, ['InvocationID']);
      await c().ok(['systemctl', 'restart', '--no-block', unit]);
      const samples = await timed(`restart ${unit} until active`, () =>
        watchUnit(c(), unit, {
          listen,
          timeoutMs: left(30_000),
          intervalMs: 20,
          until: (s) => s.InvocationID !== previous && s.ActiveState === 'active',
        }),
      );
      const mine = samples.filter((s) => s.InvocationID !== previous);
      const report = `${unit}:\n${describeSamples(mine)}`;
      // Started, not yet listening, and systemd still says activating: Type=notify waits for READY=1.
      expect(mine.some((s) => s.ActiveState === 'activating' && s.SubState === 'start' && s.MainPID !== '0' && s.listening === false), report).toBe(true);
      // Active only with the listener up: READY=1 comes after the listen.
      expect(mine.filter((s) => s.ActiveState === 'active').every((s) => s.listening), report).toBe(true);
      const times = await c().show(unit, ['ExecMainStartTimestampMonotonic', 'ActiveEnterTimestampMonotonic', 'StatusText']);
      expect(Number(times.ActiveEnterTimestampMonotonic) - Number(times.ExecMainStartTimestampMonotonic), report).toBeGreaterThan(100_000);
      expect(times.StatusText).toMatch(/connections/);
      const banner = await c().run(['timeout', '5', 'bash', '-c', `exec 3<>/dev/tcp/${listen.replace(':', '/')}; head -c 4 <&3`]);
      expect(banner.stdout).toBe('220 ');
    }
  });

  it('`mailproxy cert deploy` try-restarts haraka-out and leaves haraka-in running (it reloads the certificate itself)', async (ctx) => {
    if (!installed) ctx.skip();
    const inBefore = await c().show(IN, ['InvocationID', 'MainPID']);
    const outBefore = await c().show(OUT, ['InvocationID', 'MainPID']);
    const deploy = await timed('mailproxy cert deploy', () =>
      c().run(['mailproxy', 'cert', 'deploy', '--key', `${PEERS.certs}/next.key`, '--cert', `${PEERS.certs}/next.pem`, '--chain', `${PEERS.certs}/ca.pem`], { timeoutMs: left(60_000) }),
    );
    expect(deploy.code, `${deploy.stdout}\n${deploy.stderr}`).toBe(0);
    const outAfter = await c().show(OUT, ['InvocationID', 'MainPID', 'ActiveState', 'SubState']);
    expect(outAfter.InvocationID).not.toBe(outBefore.InvocationID);
    expect(outAfter.MainPID).not.toBe(outBefore.MainPID);
    expect(outAfter).toMatchObject({ ActiveState: 'active', SubState: 'running' });
    expect(await c().show(IN, ['InvocationID', 'MainPID'])).toEqual(inBefore);
    expect(c().readFile('/etc/mailproxy/instances/haraka-out/config/tls.ini')).toContain(nextCert.fingerprint.replace(/:/g, '').toLowerCase().slice(0, 16));
  });

  it('the health and renewal timers start their services', async (ctx) => {
    if (!installed) ctx.skip();
    // Both timers' real schedules are minutes to hours away: a drop-in makes each fire 1 s after it starts.
    for (const timer of ['mailproxy-health.timer', 'mailproxy-cert-renew.timer']) {
      c().writeFile(`/run/systemd/system/${timer}.d/test.conf`, '[Timer]\nOnActiveSec=1s\nAccuracySec=1ms\nRandomizedDelaySec=0\n');
    }
    await c().ok(['systemctl', 'daemon-reload']);
    const since = process.hrtime.bigint() / 1000n; // CLOCK_MONOTONIC, as systemd's *Monotonic values
    const sinceSeconds = Math.floor(Date.now() / 1000);
    await c().ok(['systemctl', 'restart', 'mailproxy-health.timer', 'mailproxy-cert-renew.timer']);
    const ran = (service: string) => async () => {
      const state = await c().show(service, ['ExecMainStartTimestampMonotonic', 'ExecMainExitTimestampMonotonic', 'ActiveState', 'Result', 'ExecMainStatus']);
      return BigInt(state.ExecMainStartTimestampMonotonic || '0') > since && BigInt(state.ExecMainExitTimestampMonotonic || '0') > since && state.ActiveState !== 'activating' ? state : null;
    };
    const [health, renew] = await timed('both timers fire their services', () =>
      Promise.all([until('mailproxy-health.service to run', ran('mailproxy-health.service'), 30_000), until('mailproxy-cert-renew.service to run', ran('mailproxy-cert-renew.service'), 30_000)]),
    );
    // acme.enabled is false: renew does nothing and says so.
    expect(renew).toMatchObject({ Result: 'success', ExecMainStatus: '0' });
    // health exits 0-3 (Nagios); here UNKNOWN for the tunnel at least (no `wg` in the container).
    expect(['0', '1', '2', '3']).toContain(health.ExecMainStatus);
    const prom = c().readFile('/var/lib/mailproxy/health.prom') ?? '';
    expect(Number(/^mailproxy_health_last_run_timestamp_seconds (\d+)$/m.exec(prom)?.[1])).toBeGreaterThanOrEqual(sinceSeconds);
    for (const check of ['haraka-in.unit', 'haraka-out.unit', 'haraka-in.banner', 'haraka-in.tls', 'haraka-out.banner', 'backend']) {
      expect(prom, check).toContain(`mailproxy_health_check_status{check="${check}"} 0\n`);
    }
  });

  it('the watchdog kills a haraka-in that stops pinging (SIGSTOP) and Restart= brings it back', async (ctx) => {
    if (!installed) ctx.skip();
    c().writeFile(`/run/systemd/system/${IN}.d/test-watchdog.conf`, '[Service]\nWatchdogSec=3\n');
    await c().ok(['systemctl', 'daemon-reload']);
    await timed('restart haraka-in with WatchdogSec=3', () => c().ok(['systemctl', 'restart', IN]));
    const armed = await c().show(IN, ['WatchdogUSec', 'WatchdogTimestampMonotonic']);
    expect(armed.WatchdogUSec).toBe('3s');
    // The plugin pings every 1.5 s: systemd's record of the last ping moves on.
    await until('a WATCHDOG=1 ping', async () => Number((await c().show(IN, ['WatchdogTimestampMonotonic'])).WatchdogTimestampMonotonic) > Number(armed.WatchdogTimestampMonotonic), 5_000);

    const before = await sampleUnit(c(), IN);
    const stopped = process.hrtime.bigint() / 1000n; // CLOCK_MONOTONIC µs, the clock of the journal's __MONOTONIC_TIMESTAMP
    await c().ok(['kill', '-STOP', before.MainPID]);
    const samples = await timed('watchdog kill and restart', () =>
      watchUnit(c(), IN, { timeoutMs: left(30_000), intervalMs: 100, until: (s) => s.InvocationID !== before.InvocationID && s.ActiveState === 'active' }),
    );
    const report = describeSamples([before, ...samples]);
    expect(samples.some((s) => s.Result === 'watchdog' && s.SubState === 'auto-restart'), report).toBe(true);
    const last = samples[samples.length - 1] as UnitSample;
    expect(Number(last.NRestarts), report).toBe(Number(before.NRestarts) + 1);
    expect(last.MainPID).not.toBe(before.MainPID);
    // systemd's own record of when it gave up: within WatchdogSec (3 s) of the last ping before the stop.
    const entries = (await c().ok(['journalctl', '-u', IN, '_PID=1', '-o', 'json', '--no-pager'])).split('\n').filter(Boolean);
    const timeout = entries
      .map((line) => JSON.parse(line) as { MESSAGE?: unknown; __MONOTONIC_TIMESTAMP: string })
      .find((entry) => String(entry.MESSAGE).includes('Watchdog timeout (limit 3s)') && BigInt(entry.__MONOTONIC_TIMESTAMP) > stopped);
    expect(timeout, report).toBeDefined();
    expect(Number(BigInt(timeout?.__MONOTONIC_TIMESTAMP ?? '0') - stopped) / 1000, report).toBeLessThan(4_000);
  });

  it('haraka-out fails and is restarted while the WireGuard address is missing, and comes up once it exists', async (ctx) => {
    if (!installed) ctx.skip();
    await c().ok(['systemctl', 'stop', OUT]);
    await c().ok(['ip', 'link', 'del', 'wg0']);
    const { NRestarts: restartsBefore } = await c().show(OUT, ['NRestarts']);
    await c().ok(['systemctl', 'start', '--no-block', OUT]);
    let failedAt = 0;
    let failedInvocation = '';
    const samples = await timed('haraka-out without, then with, the WireGuard address', () =>
      watchUnit(c(), OUT, {
        listen: `${NET.wireguard}:2526`,
        timeoutMs: left(45_000),
        intervalMs: 100,
        until: (s) => failedAt > 0 && s.ActiveState === 'active',
        onSample: async (s) => {
          // The first failed start: the address comes back while systemd waits RestartSec= to retry.
          if (!failedAt && s.SubState === 'auto-restart' && s.Result === 'exit-code') {
            failedAt = s.at;
            failedInvocation = s.InvocationID;
            await c().ok(['sh', '-c', addLinkScript('wg0', `${NET.wireguard}/24`)]);
          }
        },
      }),
    );
    const report = describeSamples(samples);
    const missing = samples.filter((s) => s.at <= failedAt);
    expect(missing.some((s) => s.ActiveState === 'active'), report).toBe(false);
    await until('EADDRNOTAVAIL in the failed start', async () => (await invocationLog(failedInvocation)).includes('EADDRNOTAVAIL'), 5_000, () => invocationLog(failedInvocation));
    const up = samples[samples.length - 1] as UnitSample;
    expect(Number(up.NRestarts), report).toBe(Number(restartsBefore) + 1);
    // RestartSec=10: the retry waits, it does not spin.
    expect(up.at - failedAt, report).toBeGreaterThan(8_000);
    expect(up.listening, report).toBe(true);
  });
});

function npmCache(): string {
  return process.env.npm_config_cache || path.join(os.homedir(), '.npm');
}
