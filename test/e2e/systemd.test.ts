// The units under a real systemd: a container (systemd-nspawn, this machine's own root on a throwaway
// overlay, its own network namespace) where scripts/install.sh runs as the README says, and systemd's own
// state shows readiness (Type=notify), the watchdog, the SIGINT stop with haraka-out's queue kept, the
// try-restart by `cert deploy`, both timers, haraka-out waiting for the WireGuard address, and the
// sandbox letting each instance do its job; then the README's `mailproxy …` command lines for the VPS run
// there as written (README_VPS), each checked for doing its job; last, the MTA-STS policy service turned
// on, serving, taking a new certificate and policy without a restart, and turned off again. Every address below exists only inside
// the container, nothing leaves its network namespace, and DNS answers come from stand-ins inside it.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCa, type Issued } from '../helpers/cert-fixtures';
import { readmeCommands } from '../helpers/readme-commands';
import { missingPeers, requirePeers } from '../helpers/peers';
import { bootContainer, CONTAINER_NODE, nspawnUnavailableReason, type Container, type RunResult } from '../helpers/nspawn';
import { startPeers, storedMessages } from '../helpers/nspawn-peers';
import { describeSamples, sampleUnit, watchUnit, type UnitSample } from '../helpers/nspawn-units';
import type { Zone } from '../../src/testpeers/dns-server';

const REPO = path.resolve(__dirname, '../..');
const DIST = path.join(REPO, 'dist');
// The first install run renders the example config (outbound.dane: true): the installer sets up unbound,
// which must be installed already, since the container has no network to download it.
const runnable = requirePeers(
  'systemd units in a container (systemd-nspawn)',
  missingPeers(
    ['/usr/bin/swaks', '/usr/sbin/unbound', '/usr/sbin/unbound-anchor'],
    [
      nspawnUnavailableReason(),
      existsSync(path.join(DIST, 'src/cli.js')) ? null : 'dist/ is not built (npm run build)',
      // install.sh runs npm ci inside the container, from the host's npm cache (the container has no network).
      ['/usr/bin/npm', '/usr/local/bin/npm'].some((file) => existsSync(file)) ? null : 'npm is not in /usr/bin or /usr/local/bin, where the container finds it',
      existsSync(npmCache()) ? null : `npm's cache ${npmCache()} does not exist (npm ci in the checkout fills it)`,
    ],
  ),
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
  // A sender in a network namespace of its own (INTERNET_NS): Haraka counts the VPS's own addresses,
  // client above included, as local, and the edge checks leave those alone.
  internet: '198.18.1.9',
  wireguard: '10.0.0.1', // the VPS's WireGuard address, on the stand-in wg0
  backend: '10.0.0.2', // the backend stand-in (XCLIENT sink) and the relay ACL
  mx: '198.18.7.25', // the MX of later.test, down until the queue test brings it up
  down: '198.18.7.26', // the MX of down.test, which never answers (connection refused)
  daneMx: '198.18.7.27', // the MX of example.org in the DNSSEC-signed test zones (only looked up)
  dns: '127.0.0.53', // dns.servers: the stand-in DNS server
};
const INTERNET_NS = 'internet';
const BACKEND_PORT = 10029;
const LATER = 'later.test';
const DOWN = 'down.test';
// The backend stand-in's mailboxes: other local parts at DOMAIN are unknown users, as at a real backend.
const MAILBOXES = ['alice', 'bob', 'postmaster'];
const QUEUE = '/var/lib/mailproxy/haraka-out/queue';
const PEERS = { backend: '/run/mailproxy-test/backend', mx: '/run/mailproxy-test/mx', certs: '/run/mailproxy-test/certs' };
// Everything the file waits for together, so that a hang cannot hold CI (a run takes about 250 s).
const BUDGET_MS = 330_000;

// The README's command lines for the VPS, each run in the container exactly as written (no --config: the
// installed /usr/local/bin/mailproxy reads /etc/mailproxy/mailproxy.yaml), with the README section it comes
// from. `run` replaces a line only where it cannot run as written here, saying why. The test below fails
// when one stops working; the check after the suite fails when the README changes a line, or shows a
// `mailproxy` command line that neither this list nor NOT_RUN_HERE names.
const README_VPS = {
  version: { line: 'mailproxy --version' }, // Commands
  configDocs: { line: 'mailproxy config docs' }, // Commands
  check: { line: 'mailproxy check' }, // Deploy on a VPS, step 3
  notes: { line: 'mailproxy notes' }, // Deploy on a VPS, step 4
  health: { line: 'mailproxy health' }, // Deploy on a VPS, step 5
  // Deploy on a VPS, step 5, and Verify from outside: the config's dns.servers is the stand-in DNS server
  // inside the container (doctor and selftest never ask the system resolver; the container's network
  // namespace has no way out anyway).
  doctor: { line: 'mailproxy doctor' },
  selftest: { line: 'mailproxy selftest' },
  selftestTarget: {
    line: 'mailproxy selftest --target mx.example.com:25 --resolver 127.0.0.53', // Verify from outside
    // The certificate comes from the test's CA, which only --ca (the README's flag for a test CA) trusts;
    // 127.0.0.53 is the stand-in DNS server here, which publishes mx.example.com.
    run: `mailproxy selftest --target mx.example.com:25 --resolver 127.0.0.53 --ca ${PEERS.certs}/ca.pem`,
  },
  configGet: { line: 'mailproxy config get system.node' }, // Deploy on a VPS
  daneResolver: { line: 'mailproxy dane resolver' }, // Deploy on a VPS, step 2; DNS you must set
  daneCheck: { line: 'mailproxy dane check example.org' }, // DNS you must set
  queueLog: { line: 'journalctl -u mailproxy-haraka-out -o cat | mailproxy queue list --log -' }, // Commands
  statsDay: { line: 'journalctl -u mailproxy-haraka-in -o cat | mailproxy stats --since 24h' }, // Commands
  statsChart: { line: 'journalctl -u mailproxy-haraka-in -o cat --since -2d | mailproxy stats --since 24h --svg /tmp/refused.svg' }, // Edge checks
  render: { line: 'mailproxy render' }, // Certificates
  certRenew: { line: 'mailproxy cert renew' }, // Deploy on a VPS (the renewal timer); Native ACME
} satisfies Record<string, { line: string; run?: string }>;

// Command lines the README shows that this file does not run as written, and why. A line that begins
// another one run here (`mailproxy stats`, `mailproxy dane`) counts as run.
const NOT_RUN_HERE: Record<string, string> = {
  'mailproxy cert deploy': 'the `cert deploy` test in this file runs it, with --key, --cert and --chain',
  'mailproxy cert issue': 'orders a certificate from an ACME CA on the internet (test/integration/cert-acme.test.ts runs it against pebble)',
  'mailproxy cert issue --no-deploy': 'as `mailproxy cert issue`',
  'mailproxy demo': 'the demo, from a checkout (npm start), not the VPS',
  'mailproxy send': "names the demo's test sender (test/integration runs it)",
  'mailproxy tls-report key': 'makes a key in the TLS reports store (test/integration/tls-report.test.ts runs it, publishes its record and verifies the signed reports)',
  'mailproxy tls-report send': 'needs a day of TLS sessions and domains that publish _smtp._tls (test/integration/tls-report.test.ts runs it against a running haraka-out)',
};

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

// What dns.servers answers: the records of README "DNS you must set" as `mailproxy notes` prints them, with
// DMARC and TLS-RPT (what `mailproxy doctor` checks); mx.example.com for the README's `selftest --target`
// line; and the MX hosts of the "internet" domains haraka-out delivers to.
const ZONE: Zone = {
  MX: {
    [DOMAIN]: [{ exchange: HOSTNAME, preference: 10 }],
    [LATER]: [{ exchange: `mx.${LATER}`, preference: 10 }],
    [DOWN]: [{ exchange: `mx.${DOWN}`, preference: 10 }],
  },
  A: { [HOSTNAME]: [NET.public], 'mx.example.com': [NET.public], [`mx.${LATER}`]: [NET.mx], [`mx.${DOWN}`]: [NET.down] },
  PTR: { [`${NET.public.split('.').reverse().join('.')}.in-addr.arpa`]: [HOSTNAME] },
  TXT: {
    [DOMAIN]: [`v=spf1 ip4:${NET.public} -all`],
    [`_dmarc.${DOMAIN}`]: [`v=DMARC1; p=reject; rua=mailto:postmaster@${DOMAIN}`],
    [`_smtp._tls.${DOMAIN}`]: [`v=TLSRPTv1; rua=mailto:postmaster@${DOMAIN}`],
  },
};

/** A link named `name` with `address`: a dummy interface, or a veth pair where the kernel has no dummy. */
function addLinkScript(name: string, address: string): string {
  return `(ip link add ${name} type dummy 2>/dev/null || ip link add ${name} type veth peer name ${name}-peer) && ip addr add ${address} dev ${name} && ip link set ${name} up && (ip link set ${name}-peer up 2>/dev/null || true)`;
}

/** The network namespace INTERNET_NS with NET.internet, linked to the container's by a veth pair. */
const INTERNET_SCRIPT = [
  `ip netns add ${INTERNET_NS}`,
  `ip link add inet0 type veth peer name inet1 netns ${INTERNET_NS}`,
  'ip link set inet0 up',
  `ip route add ${NET.internet}/32 dev inet0`,
  `ip -n ${INTERNET_NS} link set lo up`,
  `ip -n ${INTERNET_NS} link set inet1 up`,
  `ip -n ${INTERNET_NS} addr add ${NET.internet}/32 dev inet1`,
  `ip -n ${INTERNET_NS} route add default dev inet1`,
].join(' && ');

/** A field of /proc/PID/status ("CapEff:\t0000000000000400"). */
function statusField(status: string, key: string): string | undefined {
  return new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim();
}

describe.runIf(runnable)('the units under a real systemd (systemd-nspawn)', () => {
  let container: Container | undefined;
  let certDir = '';
  let nextCert: Issued;
  let stsCerts: Issued[] = [];
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

  /** `argv` as run from NET.internet (in its network namespace), else in the container's. */
  const from = (address: string, argv: string[]) => (address === NET.internet ? ['ip', 'netns', 'exec', INTERNET_NS, ...argv] : argv);

  function swaks(source: string, server: string, port: number, args: string[]): Promise<RunResult> {
    return c().run(from(source, ['swaks', '--server', server, '--port', String(port), '--local-interface', source, '--timeout', '15', ...args]), { timeoutMs: left(30_000) });
  }

  /** One of the README's lines (README_VPS), run in the container as written, or as its `run` says. */
  function vps(name: keyof typeof README_VPS, timeoutMs = 60_000): Promise<RunResult> {
    const entry: { line: string; run?: string } = README_VPS[name];
    return c().run(['bash', '-o', 'pipefail', '-c', entry.run ?? entry.line], { timeoutMs: left(timeoutMs) });
  }

  /** `mailproxy ARGS` in the container: a form the README gives (`queue list|count`, `config set KEY VALUE`) filled in. */
  function mailproxy(args: string[], timeoutMs = 60_000): Promise<RunResult> {
    return c().run(['mailproxy', ...args], { timeoutMs: left(timeoutMs) });
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
    // For the MTA-STS policy service: hostname and the policy host of DOMAIN.
    stsCerts = [0, 1].map(() => ca.issue({ names: [HOSTNAME, `mta-sts.${DOMAIN}`], fullchain: true }));
    container = await timed('boot the container', () => bootContainer({ name: `mailproxy-test-${process.pid}`, bindReadOnly: [REPO], overlay: [npmCache()] }));
    c().setDeadline(deadline);
    await timed('addresses and stand-ins', async () => {
      const addresses = [NET.public, NET.client, NET.backend, NET.mx, NET.down].map((ip) => `ip addr add ${ip}/32 dev lo`).join(' && ');
      await c().ok(['sh', '-c', `${addresses} && ${addLinkScript('wg0', `${NET.wireguard}/24`)} && ${INTERNET_SCRIPT}`]);
      await startPeers(
        c(),
        'mailproxy-test-backend',
        {
          dns: { host: NET.dns, port: 53, zone: ZONE },
          sinks: [{ host: NET.backend, port: BACKEND_PORT, xclient: true, name: 'backend.test', dir: PEERS.backend, recipients: { domains: [DOMAIN], mailboxes: MAILBOXES } }],
        },
        DIST,
      );
    });
    c().writeFile(path.posix.join(PEERS.certs, 'first.key'), firstCert.keyPem, 0o600);
    c().writeFile(path.posix.join(PEERS.certs, 'first.pem'), firstCert.certPem);
    c().writeFile(path.posix.join(PEERS.certs, 'next.key'), nextCert.keyPem, 0o600);
    c().writeFile(path.posix.join(PEERS.certs, 'next.pem'), nextCert.certPem);
    c().writeFile(path.posix.join(PEERS.certs, 'ca.pem'), ca.certPem);
    stsCerts.forEach((issued, index) => {
      c().writeFile(path.posix.join(PEERS.certs, `sts-${index}.key`), issued.keyPem, 0o600);
      c().writeFile(path.posix.join(PEERS.certs, `sts-${index}.pem`), issued.certPem);
    });
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
    await c().ok([
      'sh',
      '-c',
      `install -m 0640 -g mailproxy ${PEERS.certs}/first.key /etc/mailproxy/tls/privkey.pem && install -m 0644 ${PEERS.certs}/first.pem /etc/mailproxy/tls/fullchain.pem`,
    ]);
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
    const sent = await timed('send through haraka-in', () =>
      swaks(NET.client, NET.public, 25, ['--from', 'alice@sender.test', '--to', `bob@${DOMAIN}`, '--header', `Subject: ${subject}`]),
    );
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
    const before = await until(
      'a failed delivery attempt on the queued message',
      async () => queued(subject).find((file) => file.attempts >= 1),
      15_000,
      () => journal(OUT),
    );
    expect(before.name).toMatch(/^\d+_\d+_\d+_/);

    const { InvocationID: running } = await c().show(OUT, ['InvocationID']);
    const stop = await timed('systemctl stop haraka-out', () => c().run(['systemctl', 'stop', OUT]));
    expect(stop.code, stop.stderr).toBe(0);
    expect(await c().show(OUT, ['ActiveState', 'Result', 'ExecMainCode', 'ExecMainStatus'])).toEqual({
      ActiveState: 'inactive',
      Result: 'success',
      ExecMainCode: '1',
      ExecMainStatus: '0',
    });
    expect(stop.ms).toBeLessThan(15_000);
    await until(
      "Haraka's log of the SIGINT",
      async () => (await invocationLog(running)).includes('SIGINT received'),
      5_000,
      () => invocationLog(running),
    );
    const kept = queued(subject);
    expect(kept, 'the queue file after the stop').toHaveLength(1);
    // Same message: arrival time and unique id of the name survive the retries' renames.
    const [arrival, , , , unique] = before.name.split('_');
    expect(kept[0]?.name.split('_')[0]).toBe(arrival);
    expect(kept[0]?.name.split('_')[4]).toBe(unique);

    await startPeers(c(), 'mailproxy-test-mx', { sinks: [{ host: NET.mx, port: 25, xclient: false, name: `mx.${LATER}`, dir: PEERS.mx }] }, DIST);
    await timed('systemctl start haraka-out', () => c().ok(['systemctl', 'start', OUT]));
    const delivered = await timed('deliver the kept message', () =>
      until(
        'the MX of later.test to receive the kept message',
        async () => storedMessages(c(), PEERS.mx).find((m) => m.subject === subject),
        20_000,
        () => journal(OUT),
      ),
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
      expect(
        mine.some((s) => s.ActiveState === 'activating' && s.SubState === 'start' && s.MainPID !== '0' && s.listening === false),
        report,
      ).toBe(true);
      // Active only with the listener up: READY=1 comes after the listen.
      expect(
        mine.filter((s) => s.ActiveState === 'active').every((s) => s.listening),
        report,
      ).toBe(true);
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
      c().run(['mailproxy', 'cert', 'deploy', '--key', `${PEERS.certs}/next.key`, '--cert', `${PEERS.certs}/next.pem`, '--chain', `${PEERS.certs}/ca.pem`], {
        timeoutMs: left(60_000),
      }),
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
      return BigInt(state.ExecMainStartTimestampMonotonic || '0') > since && BigInt(state.ExecMainExitTimestampMonotonic || '0') > since && state.ActiveState !== 'activating'
        ? state
        : null;
    };
    const [health, renew] = await timed('both timers fire their services', () =>
      Promise.all([
        until('mailproxy-health.service to run', ran('mailproxy-health.service'), 30_000),
        until('mailproxy-cert-renew.service to run', ran('mailproxy-cert-renew.service'), 30_000),
      ]),
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
    await until(
      'a WATCHDOG=1 ping',
      async () => Number((await c().show(IN, ['WatchdogTimestampMonotonic'])).WatchdogTimestampMonotonic) > Number(armed.WatchdogTimestampMonotonic),
      5_000,
    );

    const before = await sampleUnit(c(), IN);
    const stopped = process.hrtime.bigint() / 1000n; // CLOCK_MONOTONIC µs, the clock of the journal's __MONOTONIC_TIMESTAMP
    await c().ok(['kill', '-STOP', before.MainPID]);
    const samples = await timed('watchdog kill and restart', () =>
      watchUnit(c(), IN, { timeoutMs: left(30_000), intervalMs: 100, until: (s) => s.InvocationID !== before.InvocationID && s.ActiveState === 'active' }),
    );
    const report = describeSamples([before, ...samples]);
    expect(
      samples.some((s) => s.Result === 'watchdog' && s.SubState === 'auto-restart'),
      report,
    ).toBe(true);
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
    expect(
      missing.some((s) => s.ActiveState === 'active'),
      report,
    ).toBe(false);
    await until(
      'EADDRNOTAVAIL in the failed start',
      async () => (await invocationLog(failedInvocation)).includes('EADDRNOTAVAIL'),
      5_000,
      () => invocationLog(failedInvocation),
    );
    const up = samples[samples.length - 1] as UnitSample;
    expect(Number(up.NRestarts), report).toBe(Number(restartsBefore) + 1);
    // RestartSec=10: the retry waits, it does not spin.
    expect(up.at - failedAt, report).toBeGreaterThan(8_000);
    expect(up.listening, report).toBe(true);
  });

  it("runs the README's VPS commands as written, and each does its job", async (ctx) => {
    if (!installed) ctx.skip();
    const configFile = '/etc/mailproxy/mailproxy.yaml';
    const original = c().readFile(configFile) ?? '';
    const owner = async () => (await c().ok(['stat', '-c', '%U:%G %a', configFile])).trim();
    const installedOwner = await owner();
    const listener = `${NET.public}:25`;
    try {
      // Commands: the installed app's version, and the config reference.
      const version = await vps('version');
      const { version: packageVersion } = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
      expect(version, said(version)).toMatchObject({ code: 0, stdout: `mailproxy ${packageVersion}\n` });
      const docs = await vps('configDocs');
      expect(docs.code, said(docs)).toBe(0);
      expect(docs.stdout).toMatch(/^# mailproxy config reference\n[\s\S]*\n\| `system\.node` \|/);

      // Deploy on a VPS: the key the installer set from --node.
      const node = await vps('configGet');
      expect(node, said(node)).toMatchObject({ code: 0, stdout: `${INSTALLER.node}\n` });

      // Step 3: the config is valid and Haraka loads both instances' plugins, with nothing to warn about.
      const check = await timed('mailproxy check', () => vps('check', 90_000));
      expect(check.code, said(check)).toBe(0);
      expect(check.stdout).toMatch(/^haraka-in: Haraka loaded plugins /m);
      expect(check.stdout).toMatch(/^haraka-out: Haraka loaded plugins /m);
      expect(`${check.stdout}${check.stderr}`).not.toMatch(/^(warning|error)/m);

      // Step 4: the DNS records notes prints are the ones the stand-in DNS server publishes (ZONE).
      const notes = await vps('notes');
      expect(notes.code, said(notes)).toBe(0);
      for (const record of [
        [`${HOSTNAME}.`, 'A', NET.public],
        [`PTR of ${NET.public} ->`, `${HOSTNAME}.`],
        [`${DOMAIN}.`, 'MX 10', `${HOSTNAME}.`],
        [`${DOMAIN}.`, 'TXT', `"${ZONE.TXT?.[DOMAIN]?.[0]}"`],
      ]) {
        expect(notes.stdout).toMatch(new RegExp(`^\\s+${record.map(escapeRegex).join('\\s+')}`, 'm'));
      }
      expect(notes.stdout).toContain(`smtpd_authorized_xclient_hosts=${NET.wireguard}`);

      // Step 5: every check passes but the WireGuard handshake, which needs `wg` (there is no WireGuard in
      // the container): UNKNOWN, the worst here, so exit 3.
      const health = await timed('mailproxy health', () => vps('health'));
      const checks = verdicts(health.stdout);
      expect(health.code, said(health)).toBe(3);
      expect(checks).toMatchObject({
        'haraka-in.unit': 'OK',
        'haraka-out.unit': 'OK',
        'haraka-in.banner': 'OK',
        'haraka-in.tls': 'OK',
        'haraka-out.banner': 'OK',
        'haraka-out.queue': 'OK',
        backend: 'OK',
        disk: 'OK',
      });
      expect(
        Object.entries(checks).filter(([name, status]) => status !== 'OK' && name !== 'wireguard'),
        health.stdout,
      ).toEqual([]);
      expect(health.stdout).toMatch(/^UNKNOWN\s+wireguard\s+wg not found on PATH/m);
      // Commands: --json and --prometheus (the health timer's textfile) say the same.
      const prom = '/tmp/health.prom';
      const json = await mailproxy(['health', '--json', '--prometheus', prom]);
      expect(json.code, said(json)).toBe(3);
      const report = JSON.parse(json.stdout) as { status: string; checks: { name: string; status: string }[] };
      expect(report.status).toBe('UNKNOWN');
      expect(Object.fromEntries(report.checks.map((check) => [check.name, check.status]))).toEqual(checks);
      const textfile = c().readFile(prom) ?? '';
      for (const [name, status] of Object.entries(checks)) expect(textfile).toContain(`mailproxy_health_check_status{check="${name}"} ${NAGIOS[status]}\n`);

      // Verify from outside: the DNS is done (ZONE), so doctor passes every check, blacklists included
      // (the stand-in answers NXDOMAIN for them: not listed).
      const doctor = await timed('mailproxy doctor', () => vps('doctor'));
      expect(doctor.code, said(doctor)).toBe(0);
      const dns = verdicts(doctor.stdout);
      expect(dns).toMatchObject({
        [`address@${HOSTNAME}`]: 'PASS',
        [`ptr@${NET.public}`]: 'PASS',
        [`mx@${DOMAIN}`]: 'PASS',
        [`spf@${DOMAIN}`]: 'PASS',
        [`spf.ip@${DOMAIN}`]: 'PASS',
        [`dmarc@${DOMAIN}`]: 'PASS',
        'dnsbl@zen.spamhaus.org': 'PASS',
      });
      expect(Object.entries(dns).filter(([, status]) => status !== 'PASS')).toEqual([]);

      // selftest as written: all passes but the certificate chain, which ends at the test's CA, not a
      // system root (MXToolbox would say the same).
      const selftest = await timed('mailproxy selftest', () => vps('selftest'));
      const smtp = verdicts(selftest.stdout);
      expect(selftest.code, said(selftest)).toBe(2);
      expect(smtp).toMatchObject({
        [`banner@${listener}`]: 'PASS',
        [`rdns@${NET.public}`]: 'PASS',
        [`hostname@${NET.public}`]: 'PASS',
        [`connect.cold@${listener}`]: 'PASS',
        [`transaction.warm@${listener}`]: 'PASS',
        [`relay@${listener}`]: 'PASS',
        [`haraka-out.relay@${NET.wireguard}:2526`]: 'PASS',
        [`tls@${listener}`]: 'FAIL',
      });
      expect(Object.entries(smtp).filter(([name, status]) => status !== 'PASS' && name !== `tls@${listener}`)).toEqual([]);
      expect(selftest.stdout).toMatch(new RegExp(`^FAIL\\s+tls@${escapeRegex(listener)}\\s.*the chain does not verify \\(.+\\n\\s+fix: .*pass it with --ca`, 'm'));
      // With the test CA trusted (--ca), the README's --target line passes everything.
      const targeted = await timed('mailproxy selftest --target', () => vps('selftestTarget'));
      expect(targeted.code, said(targeted)).toBe(0);
      const targetedChecks = verdicts(targeted.stdout);
      expect(targetedChecks).toMatchObject({ 'target@mx.example.com': 'PASS', [`banner@${listener}`]: 'PASS', [`tls@${listener}`]: 'PASS', [`relay@${listener}`]: 'PASS' });
      expect(Object.entries(targetedChecks).filter(([, status]) => status !== 'PASS')).toEqual([]);

      // Edge protection: a sender on the internet that opens one session more than limits.max_clients_per_ip
      // allows (refused), and one whose HELO name is a bare address (the edge's helo check only logs it by
      // default); stats counts both from haraka-in's journal.
      const perIp = Number((await mailproxy(['config', 'get', 'limits.max_clients_per_ip'])).stdout);
      expect(perIp).toBeGreaterThan(0);
      c().writeFile('/run/mailproxy-test/sessions.cjs', SESSIONS);
      const sessions = await c().run(from(NET.internet, [CONTAINER_NODE, '/run/mailproxy-test/sessions.cjs', NET.public, '25', NET.internet, String(perIp + 1)]), {
        timeoutMs: left(30_000),
      });
      const greetings = sessions.stdout.trimEnd().split('\n');
      expect(
        greetings.slice(0, perIp).every((line) => line.startsWith('220 ')),
        said(sessions),
      ).toBe(true);
      expect(greetings[perIp], said(sessions)).toMatch(/^421 4\.7\.0 /);
      const helo = await swaks(NET.internet, NET.public, 25, ['--helo', '192.0.2.7', '--quit-after', 'helo']);
      expect(helo.code, helo.stdout).toBe(0);
      await until(
        "both decisions in haraka-in's journal",
        async () => {
          const log = await journal(IN, 300);
          return log.includes(`ip=${NET.internet} check=limits`) && log.includes(`ip=${NET.internet} check=helo reason=bare_ip`);
        },
        10_000,
        () => journal(IN, 30),
      );
      for (const name of ['statsDay', 'statsChart'] as const) {
        const stats = await vps(name);
        expect(stats.code, said(stats)).toBe(0);
        const [summary = '', refused = '', logged = ''] = stats.stdout.split(
          /\nrefused, by check and reason:\n|\nwould have been refused \(checks in log mode\), by check and reason:\n/,
        );
        expect(summary, stats.stdout).toMatch(/^ {2}refused\s+[1-9]/m);
        expect(refused, stats.stdout).toMatch(/^ {2}limits\s+[1-9]/m);
        expect(logged, stats.stdout).toMatch(/^ {2}helo\s+[1-9]\d*\n {4}bare_ip\s+[1-9]/m);
      }
      const chart = c().readFile('/tmp/refused.svg') ?? '';
      expect(chart).toMatch(/^(<\?xml [^>]*\?>\n)?<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
      expect(chart).toMatch(/<g class="series" data-series="limits: [^"]+" data-total="[1-9]\d*">/);

      // Commands, queue: a message for down.test, whose MX refuses connections, waits in haraka-out's queue.
      const subject = `deferred ${Date.now()}`;
      const relayed = await swaks(NET.backend, NET.wireguard, 2526, ['--from', `alice@${DOMAIN}`, '--to', `dave@${DOWN}`, '--header', `Subject: ${subject}`]);
      expect(relayed.code, relayed.stdout).toBe(0);
      await until(
        'a failed delivery attempt to down.test',
        async () => queued(subject).some((file) => file.attempts >= 1),
        15_000,
        () => journal(OUT),
      );
      const count = await mailproxy(['queue', 'count']);
      expect(count.code, said(count)).toBe(0);
      expect(count.stdout).toMatch(/^total 1$/m);
      expect(count.stdout).toMatch(new RegExp(`^1\\s+${escapeRegex(DOWN)}$`, 'm'));
      const list = await mailproxy(['queue', 'list']);
      expect(list.code, said(list)).toBe(0);
      expect(list.stdout).toMatch(new RegExp(`\\s${escapeRegex(DOWN)}\\s+dave@${escapeRegex(DOWN)}\\s+alice@${escapeRegex(DOMAIN)}\\s`));
      expect(list.stdout).toContain(`1 message in ${QUEUE}`);
      // With haraka-out's log: the cause, which Haraka itself reduces to "Tried all MXs".
      const withLog = await vps('queueLog');
      expect(withLog.code, said(withLog)).toBe(0);
      expect(withLog.stdout).toMatch(new RegExp(`\\s${escapeRegex(DOWN)}\\s.*connect ECONNREFUSED ${escapeRegex(NET.down)}:25`));
      const [entry] = (JSON.parse((await mailproxy(['queue', 'list', '--json'])).stdout) as { entries: { id: string }[] }).entries;
      expect(entry?.id).toMatch(/\S/);
      // flush: SIGHUP to the haraka-out systemd runs, which logs it and keeps running.
      const running = await c().show(OUT, ['MainPID', 'InvocationID']);
      const flush = await mailproxy(['queue', 'flush']);
      expect(flush.code, said(flush)).toBe(0);
      expect(flush.stdout).toContain(`asked haraka-out (pid ${running.MainPID})`);
      await until("haraka-out's log of the flush", async () => (await invocationLog(running.InvocationID ?? '')).includes('Flushing the temp fail queue'), 5_000);
      expect(await c().show(OUT, ['MainPID', 'ActiveState'])).toEqual({ MainPID: running.MainPID, ActiveState: 'active' });
      // delete: retried every 5 s here, the message is always due within 5 s, so only --force removes it
      // while haraka-out runs.
      const guarded = await mailproxy(['queue', 'delete', entry?.id ?? '']);
      expect(guarded.code, said(guarded)).toBe(1);
      expect(guarded.stdout).toMatch(/^not deleted .*: due now/m);
      const deleted = await mailproxy(['queue', 'delete', entry?.id ?? '', '--force']);
      expect(deleted.code, said(deleted)).toBe(0);
      expect(deleted.stdout).toMatch(/^deleted /m);
      expect((await mailproxy(['queue', 'count'])).stdout).toMatch(/^total 0$/m);
      expect(queued(subject)).toEqual([]);

      // DNS you must set, DANE: off in this config, so dane resolver probes nothing.
      const off = await vps('daneResolver');
      expect(off.code, said(off)).toBe(0);
      expect(off.stdout).toContain('DANE is off (outbound.dane: false in mailproxy.yaml)');
      // A validating resolver over a signed test root and a signed example.org (the real root is out of
      // reach), turned on with `mailproxy config set KEY VALUE` (Deploy on a VPS).
      const tlsa = createHash('sha256').update('the TLSA record of mx.example.org').digest('hex');
      const started = await timed('DNSSEC test zones', () =>
        startPeers(
          c(),
          'mailproxy-test-dnssec',
          {
            dnssec: {
              dir: '/run/mailproxy-test/dnssec',
              zones: [
                { name: '.', records: [] },
                { name: 'example.org', records: ['@ IN MX 10 mx', `mx IN A ${NET.daneMx}`, `_25._tcp.mx IN TLSA 3 1 1 ${tlsa}`] },
              ],
            },
          },
          DIST,
        ),
      );
      const resolver = `${started.dnssec?.resolver.host}:${started.dnssec?.resolver.port}`;
      for (const [key, value] of [
        ['outbound.dane', 'true'],
        ['outbound.dane_resolver', resolver],
      ] as const) {
        const set = await mailproxy(['config', 'set', key, value]);
        expect(set, said(set)).toMatchObject({ code: 0, stdout: `mailproxy.yaml: ${key} = ${value}\n` });
      }
      expect((await mailproxy(['config', 'get', 'outbound.dane', 'outbound.dane_resolver'])).stdout).toBe(`true\n${resolver}\n`);
      const edited = c().readFile(configFile) ?? '';
      expect(edited).toContain('# written by test/e2e/systemd.test.ts\n');
      expect(edited).toContain('  # The container has no way out');
      expect(await owner()).toBe(installedOwner);
      // ... and refused when the result would be invalid, the file left as it was.
      const invalid = await mailproxy(['config', 'set', 'outbound.dane_resolver', '192.0.2.53:53']);
      expect(invalid.code, said(invalid)).toBe(1);
      expect(invalid.stderr).toContain('outbound.dane_resolver: "192.0.2.53:53": expected a loopback ADDRESS:PORT');
      expect(c().readFile(configFile)).toBe(edited);
      const validates = await vps('daneResolver');
      expect(validates, said(validates)).toMatchObject({ code: 0, stdout: `${resolver}: the resolver validates DNSSEC (the root SOA came with the AD bit)\n` });
      const dane = await vps('daneCheck');
      expect(dane.code, said(dane)).toBe(0);
      expect(dane.stdout).toMatch(
        new RegExp(
          `^example\\.org: DANE applies .*\\n {2}mx\\.example\\.org \\(preference 10; ${escapeRegex(NET.daneMx)}\\): dane: STARTTLS required, the certificate must match TLSA 3 1 1 ${tlsa.slice(0, 16)}…$`,
          'm',
        ),
      );
      // And back.
      for (const [key, value] of [
        ['outbound.dane', 'false'],
        ['outbound.dane_resolver', '127.0.0.1:53'],
      ] as const) {
        const set = await mailproxy(['config', 'set', key, value]);
        expect(set, said(set)).toMatchObject({ code: 0, stdout: `mailproxy.yaml: ${key} = ${value}\n` });
      }
      expect((await mailproxy(['config', 'get', 'outbound.dane', 'outbound.dane_resolver'])).stdout).toBe('false\n127.0.0.1:53\n');
      expect(await owner()).toBe(installedOwner);

      // Certificates: render keeps the pair the last cert deploy installed, and rewrites nothing.
      const render = await vps('render');
      expect(render.code, said(render)).toBe(0);
      expect(render.stdout).toMatch(/^\/etc\/mailproxy\/instances: 0 written, 0 removed, [1-9]\d* unchanged$/m);
      if (c().exists('/var/lib/mailproxy/tls/deployed.json')) expect(render.stdout).toContain('tls.ini: key and certificate of the last cert deploy (');
      // The renewal timer's command: native ACME is off here (acme.enabled: false), so it does nothing.
      const renew = await vps('certRenew');
      expect(renew, said(renew)).toMatchObject({ code: 0 });
      expect(renew.stdout).toContain('acme.enabled is false: native ACME is off, nothing to renew');
    } finally {
      if (c().readFile(configFile) !== original) {
        c().writeFile(configFile, original);
        await c().run(['chown', installedOwner.split(' ')[0] ?? 'root', configFile]);
      }
    }
  }, 180_000);

  it('with inbound.mta_sts on, the installer starts mailproxy-mta-sts.service: port 443 as mailproxy with CAP_NET_BIND_SERVICE only, the policy over HTTPS, a new certificate without a restart, a new policy on reload; off again, it is stopped and gone', async (ctx) => {
    if (!installed) ctx.skip();
    const STS = 'mailproxy-mta-sts.service';
    const deploy = (index: number) =>
      c().run(['mailproxy', 'cert', 'deploy', '--key', `${PEERS.certs}/sts-${index}.key`, '--cert', `${PEERS.certs}/sts-${index}.pem`, '--chain', `${PEERS.certs}/ca.pem`], {
        timeoutMs: left(60_000),
      });
    const first = await timed('cert deploy with the policy host', () => deploy(0));
    expect(first.code, said(first)).toBe(0);
    expect((await mailproxy(['config', 'set', 'inbound.mta_sts.enabled', 'true'])).code).toBe(0);
    const on = await timed('install.sh with inbound.mta_sts', installer);
    expect(on.code, `${said(on)}\n${await journal(STS)}`).toBe(0);
    const state = await c().show(STS, ['ActiveState', 'SubState', 'UnitFileState', 'MainPID', 'InvocationID']);
    expect(state, await journal(STS)).toMatchObject({ ActiveState: 'active', SubState: 'running', UnitFileState: 'enabled' });
    const uid = (await c().ok(['id', '-u', 'mailproxy'])).trim();
    const status = c().readFile(`/proc/${state.MainPID}/status`) ?? '';
    expect(statusField(status, 'Uid')?.split(/\s+/)).toEqual([uid, uid, uid, uid]);
    expect(statusField(status, 'CapEff')).toBe('0000000000000400');

    const policyHost = `mta-sts.${DOMAIN}`;
    const fetch = () =>
      c().run([
        'curl',
        '--silent',
        '--show-error',
        '--max-time',
        '5',
        '--cacert',
        `${PEERS.certs}/ca.pem`,
        '--resolve',
        `${policyHost}:443:${NET.public}`,
        `https://${policyHost}/.well-known/mta-sts.txt`,
      ]);
    const policy = (mode: string) => `version: STSv1\r\nmode: ${mode}\r\nmx: ${HOSTNAME}\r\nmax_age: 604800\r\n`;
    const served = (mode: string) => async () => (await fetch()).stdout === policy(mode);
    await until('the policy over HTTPS on port 443', served('testing'), 20_000, () => journal(STS));
    const presented = async () =>
      (
        await c().run(['sh', '-c', `openssl s_client -connect ${NET.public}:443 -servername ${policyHost} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`])
      ).stdout
        .split('=')[1]
        ?.trim()
        .toUpperCase();
    expect(await presented()).toBe(stsCerts[0]!.fingerprint);

    // A newly deployed certificate: presented within seconds by the same process.
    const second = await timed('cert deploy to the running policy service', () => deploy(1));
    expect(second.code, said(second)).toBe(0);
    await until(
      'the new certificate on port 443',
      async () => (await presented()) === stsCerts[1]!.fingerprint,
      20_000,
      () => journal(STS),
    );
    // A new policy: systemctl reload (SIGHUP), the same process again.
    expect((await mailproxy(['config', 'set', 'inbound.mta_sts.mode', 'none'])).code).toBe(0);
    await c().ok(['systemctl', 'reload', STS]);
    await until('the new policy', served('none'), 20_000, () => journal(STS));
    expect(await c().show(STS, ['MainPID', 'InvocationID'])).toEqual({ MainPID: state.MainPID, InvocationID: state.InvocationID });

    // Off: the installer stops the service, and render removed its unit.
    expect((await mailproxy(['config', 'set', 'inbound.mta_sts.enabled', 'false'])).code).toBe(0);
    const off = await timed('install.sh without inbound.mta_sts', installer);
    expect(off.code, said(off)).toBe(0);
    expect(await c().show(STS, ['ActiveState'])).toMatchObject({ ActiveState: 'inactive' });
    expect(c().exists(`/etc/systemd/system/${STS}`)).toBe(false);
    expect((await fetch()).code).not.toBe(0);
  }, 240_000);

  it('with outbound.tls_rpt on, the installer makes the DKIM key for the service user and enables the report timer, whose service runs; notes prints the record; off again, the timer is disabled', async (ctx) => {
    if (!installed) ctx.skip();
    const TIMER = 'mailproxy-tls-report.timer';
    const store = '/var/lib/mailproxy/haraka-out/tls-rpt';
    expect((await mailproxy(['config', 'set', 'outbound.tls_rpt.enabled', 'true'])).code).toBe(0);
    const on = await timed('install.sh with outbound.tls_rpt', installer);
    expect(on.code, said(on)).toBe(0);
    expect(await c().show(TIMER, ['ActiveState', 'UnitFileState'])).toEqual({ ActiveState: 'active', UnitFileState: 'enabled' });
    // Made by root, owned by the service user that signs with it; its directory still haraka-out's to write.
    expect((await c().ok(['stat', '-c', '%U:%G %a', `${store}/dkim-tlsrpt.pem`])).trim()).toBe('mailproxy:mailproxy 600');
    expect((await c().ok(['stat', '-c', '%U:%G', store])).trim()).toBe('mailproxy:mailproxy');
    // Made before the Haraka units restarted: neither sees it.
    for (const unit of ['mailproxy-haraka-in.service', 'mailproxy-haraka-out.service']) {
      const { MainPID } = await c().show(unit, ['MainPID']);
      // In its mount namespace the path is systemd's inaccessible node: empty, and mode 0000 (nsenter's root reads it anyway).
      const read = await c().run(['nsenter', '-t', String(MainPID), '-m', '--', 'cat', `${store}/dkim-tlsrpt.pem`]);
      expect(read.stdout, `${unit}: ${said(read)}`).not.toContain('PRIVATE KEY');
    }
    // The installer's notes (and `mailproxy notes`) print the record to publish.
    expect(on.stdout).toMatch(new RegExp(`^ {2}tlsrpt\\._domainkey\\.${escapeRegex(DOMAIN)}\\. {2}TXT {2}"v=DKIM1; k=rsa; p=`, 'm'));
    // The service user reads the key the installer made (it does not make another).
    const asService = await c().run(['runuser', '-u', 'mailproxy', '--', 'mailproxy', 'tls-report', 'key', '--config', '/etc/mailproxy/mailproxy.yaml']);
    expect(asService.code, said(asService)).toBe(0);
    expect(asService.stdout).toMatch(/^the DKIM key of TLS reports/);
    // The timer's service runs as the service user: no day has ended yet, so there is nothing to report.
    await c().ok(['systemctl', 'start', 'mailproxy-tls-report.service']);
    expect(await c().show('mailproxy-tls-report.service', ['Result']), await journal('mailproxy-tls-report.service')).toEqual({ Result: 'success' });

    expect((await mailproxy(['config', 'set', 'outbound.tls_rpt.enabled', 'false'])).code).toBe(0);
    const off = await timed('install.sh without outbound.tls_rpt', installer);
    expect(off.code, said(off)).toBe(0);
    expect((await c().show(TIMER, ['ActiveState'])).ActiveState).toBe('inactive');
  }, 240_000);
});

const said = (result: RunResult) => `exit ${result.code}\n${result.stdout}\n${result.stderr}`;
const escapeRegex = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const NAGIOS: Record<string, number> = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 };

/** Check name → status of the lines of `health` (OK, WARNING, …) and `selftest`/`doctor` (PASS, WARN, FAIL, …). */
function verdicts(output: string): Record<string, string> {
  return Object.fromEntries([...output.matchAll(/^(OK|WARNING|CRITICAL|UNKNOWN|PASS|WARN|FAIL)\s+(\S+)\s/gm)].map((match) => [match[2], match[1]]));
}

// One client holding COUNT sessions at once: connects from FROM one at a time, prints each greeting's first
// line, then QUITs them all.
const SESSIONS = `'use strict';
const net = require('node:net');
const [host, port, from, count] = process.argv.slice(2);
const sockets = [];
const greeting = () => new Promise((resolve) => {
  const socket = net.connect({ host, port: Number(port), localAddress: from });
  sockets.push(socket);
  let said = '';
  socket.on('data', (chunk) => { said += chunk; if (said.includes('\\r\\n')) resolve(said.split('\\r\\n')[0]); });
  socket.on('error', (err) => resolve(String(err)));
  socket.on('close', () => resolve(said.split('\\r\\n')[0] || 'closed without a word'));
});
(async () => {
  const lines = [];
  for (let i = 0; i < Number(count); i++) lines.push(await greeting());
  process.stdout.write(lines.join('\\n') + '\\n');
  for (const socket of sockets) socket.end('QUIT\\r\\n');
})();
`;

describe('README: the `mailproxy` command lines the systemd test runs', () => {
  const shown = readmeCommands(readFileSync(path.join(REPO, 'README.md'), 'utf8')).filter((command) => command.concrete);
  const texts = new Set(shown.map((command) => command.text));
  const run = Object.values(README_VPS).map((entry) => entry.line);

  it('are in README.md as written', () => {
    expect(run.filter((line) => !texts.has(line))).toEqual([]);
    expect(Object.keys(NOT_RUN_HERE).filter((line) => !texts.has(line))).toEqual([]);
  });

  it('cover every command line README.md shows (or it says why not)', () => {
    // The words of the mailproxy command itself, after any pipe into it.
    const words = (line: string) => (line.split(' | ').pop() ?? '').split(' ');
    const covered = (text: string) =>
      text in NOT_RUN_HERE || run.some((line) => line === text || (!text.includes(' | ') && words(text).every((word, at) => words(line)[at] === word)));
    expect(shown.filter((command) => !covered(command.text)).map((command) => `README.md:${command.line}: ${command.text}`)).toEqual([]);
  });
});

function npmCache(): string {
  return process.env.npm_config_cache || path.join(os.homedir(), '.npm');
}
