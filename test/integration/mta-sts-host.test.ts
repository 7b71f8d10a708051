// MTA-STS policy hosting with the real service on loopback: `mailproxy mta-sts serve` in a process of its
// own, a CA made for this run, a DNS server on loopback holding the records `mailproxy notes` prints.
// Real clients fetch the policy of two domains (haraka-out's own MTA-STS fetcher, curl, node:https);
// anything else gets 404; TLS below 1.2 and slow clients are refused; certificates deployed with
// `mailproxy cert deploy` while clients fetch without pause are presented without a restart and without a
// failed fetch; SIGHUP reads a new policy; `doctor` checks it all end to end and `health` sees it answer;
// `check` refuses enforce while the STARTTLS certificate does not cover hostname.
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { fetchPolicyText } from '../../src/mtasts/fetch';
import { parsePolicy } from '../../src/mtasts/policy';
import { hostedPolicy, policyId } from '../../src/mtasts-host/policy';
import { startPolicyServer } from '../../src/mtasts-host/server';
import { parseConfig } from '../../src/config/load';
import { startDnsServer, type DnsServer, type Zone } from '../../src/testpeers/dns-server';
import { makeCa, type Ca, type Issued } from '../helpers/cert-fixtures';
import { runCli } from '../helpers/cli';
import { eventually } from '../helpers/poll';
import { freePort } from '../helpers/ports';
import { useTempDirs } from '../helpers/tmp';
import { spawnTs } from '../helpers/ts-child';

const REPO = path.resolve(__dirname, '../..');
const SERVE_CHILD = path.join(REPO, 'test/fixtures/mta-sts/serve-child.ts');
const HOSTNAME = 'mx.sts-one.test';
const DOMAINS = ['sts-one.test', 'sts-two.test'];
const PUBLIC_IP = '198.18.7.25';
const SERVICE_IP = '127.0.0.37';
const POLICY_PATH = '/.well-known/mta-sts.txt';
const tempDir = useTempDirs('mailproxy-sts-');

interface Fetched {
  status: number;
  type: string | undefined;
  body: string;
  fingerprint: string | undefined;
}

/** One GET as a sender makes it: SNI and Host the policy host, the certificate verified against `ca`. */
function fetchFrom(
  port: number,
  host: string,
  ca: string,
  options: { path?: string; agent?: https.Agent; minVersion?: tls.SecureVersion; maxVersion?: tls.SecureVersion } = {},
): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const request = https.get(
      {
        host: SERVICE_IP,
        port,
        path: options.path ?? POLICY_PATH,
        servername: host,
        headers: { host },
        ca,
        agent: options.agent ?? false,
        ...(options.maxVersion ? { maxVersion: options.maxVersion, minVersion: options.minVersion, ciphers: 'DEFAULT@SECLEVEL=0' } : {}),
        timeout: 5_000,
      },
      (response) => {
        const fingerprint = (response.socket as tls.TLSSocket).getPeerX509Certificate()?.fingerprint256;
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, type: response.headers['content-type'], body, fingerprint }));
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
  });
}

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('/usr/bin/curl', ['--silent', '--show-error', '--max-time', '5', ...args], { encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as NodeJS.ErrnoException).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

interface Service {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startService(configFile: string): Promise<Service> {
  const child = spawnTs(SERVE_CHILD, ['mta-sts', 'serve', '--config', configFile], REPO);
  let text = '';
  child.stdout!.on('data', (chunk) => (text += chunk));
  child.stderr!.on('data', (chunk) => (text += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const service = { child, output: () => text, exited };
  return eventually('the policy service to listen', () => /^serving policy id /m.test(text) && service, { timeoutMs: 30_000, context: () => text });
}

describe('MTA-STS policy hosting, with the real service on loopback', () => {
  let dir = '';
  let configFile = '';
  let instancesDir = '';
  let ca: Ca;
  let first: Issued;
  let port = 0;
  let dns: DnsServer;
  let service: Service;
  let settings: Record<string, unknown>;

  const writeSettings = (change: (value: Record<string, unknown>) => void = () => {}) => {
    change(settings);
    writeFileSync(configFile, stringify(settings));
  };
  const loadedConfig = () => parseConfig(readFileSync(configFile, 'utf8'), 'mailproxy.yaml');
  /** `mailproxy cert deploy` of `issued`, with the test CA as --chain, into the rendered instances. */
  const deployCert = (issued: Issued) =>
    runCli(['cert', 'deploy', '--config', configFile, '--key', issued.keyPath, '--cert', issued.certPath, '--chain', ca.certPath, '--instances', instancesDir]);
  /** The checks of `mailproxy doctor --json`, trusting the test CA and asking only the test DNSBL. */
  const doctorChecks = async () => {
    const result = await runCli(['doctor', '--config', configFile, '--ca', ca.certPath, '--dnsbl', 'bl.sts-one.test', '--json']);
    return (JSON.parse(result.out) as { checks: { name: string; status: string; detail: string; fix: string | null }[] }).checks;
  };
  /** Waits (10 s at most) until a fresh connection to the first domain's policy host is presented `issued`. */
  const untilPresented = (what: string, issued: Issued, context?: () => string) =>
    eventually(what, async () => (await fetchFrom(port, `mta-sts.${DOMAINS[0]}`, ca.certPem)).fingerprint === issued.fingerprint, {
      timeoutMs: 10_000,
      ...(context ? { context } : {}),
    });

  /** The records `mailproxy notes` prints for MTA-STS, as name -> value, for the DNS server. */
  async function notesRecords(): Promise<Map<string, string>> {
    const notes = await runCli(['notes', '--config', configFile]);
    expect(notes.code).toBe(0);
    const records = new Map<string, string>();
    for (const match of notes.out.matchAll(/^ {2}(_mta-sts\.\S+|_smtp\._tls\.\S+)\.\s+TXT\s+"([^"]+)"$/gm)) records.set(match[1]!, match[2]!);
    return records;
  }

  /** The zone of a correct setup: MX, the TXT records notes prints, the policy hosts at the service. */
  async function publish(): Promise<void> {
    const records = await notesRecords();
    const zone: Zone = {
      MX: Object.fromEntries(DOMAINS.map((domain) => [domain, [{ exchange: HOSTNAME, preference: 10 }]])),
      A: { [HOSTNAME]: [PUBLIC_IP], ...Object.fromEntries(DOMAINS.map((domain) => [`mta-sts.${domain}`, [SERVICE_IP]])) },
      TXT: Object.fromEntries([...records].map(([name, value]) => [name, [value]])),
    };
    for (const key of Object.keys(dns.zone) as (keyof Zone)[]) delete dns.zone[key];
    Object.assign(dns.zone, zone);
  }

  beforeAll(async () => {
    // The file's tests share it (useTempDirs removes its dirs after each test).
    dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-sts-'));
    ca = makeCa(path.join(dir, 'ca'));
    first = ca.issue({ names: [HOSTNAME, ...DOMAINS.map((domain) => `mta-sts.${domain}`)] });
    port = await freePort(SERVICE_IP);
    dns = await startDnsServer({});
    configFile = path.join(dir, 'mailproxy.yaml');
    instancesDir = path.join(dir, 'instances');
    settings = {
      version: 1,
      hostname: HOSTNAME,
      public_ipv4: PUBLIC_IP,
      domains: DOMAINS,
      // haraka-in does not run here: cert deploy finds its listener closed and says so.
      inbound: { listen: [`127.0.0.1:${await freePort()}`], mta_sts: { enabled: true, listen: [`${SERVICE_IP}:${port}`], tls_rpt_rua: 'tls-reports@sts-one.test' } },
      outbound: { mta_sts_port: port, dane: false },
      tls: { key: first.keyPath, cert: first.certPath },
      dns: { servers: [dns.address] },
      health: { smtp_timeout: 1 },
      state_dir: path.join(dir, 'state'),
    };
    writeSettings();
    expect((await runCli(['render', '--config', configFile, '--out', instancesDir])).code).toBe(0);
    await publish();
    service = await startService(configFile);
  }, 60_000);

  afterAll(async () => {
    if (service && service.child.exitCode === null) {
      service.child.kill('SIGTERM');
      await service.exited;
    }
    await dns?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves the config’s policy for both domains to real clients that trust the test CA, with the id notes prints', async () => {
    const policy = hostedPolicy(loadedConfig());
    const records = await notesRecords();
    for (const domain of DOMAINS) {
      // haraka-out's own fetcher: mta-sts.<domain> resolved through the DNS server, certificate verified, text/plain, no redirect.
      const text = await fetchPolicyText(domain, { servers: [dns.address], port, ca: ca.certPem, timeoutMs: 5_000 });
      expect(text).toBe(policy.text);
      expect(parsePolicy(text)).toMatchObject({ ok: true, policy: { mode: 'testing', mx: [HOSTNAME], maxAge: 604_800 } });
      expect(records.get(`_mta-sts.${domain}`)).toBe(`v=STSv1; id=${policyId(text)}`);
      expect(records.get(`_smtp._tls.${domain}`)).toBe('v=TLSRPTv1; rua=mailto:tls-reports@sts-one.test');
      const viaCurl = await curl([
        '--cacert',
        ca.certPath,
        '--resolve',
        `mta-sts.${domain}:${port}:${SERVICE_IP}`,
        '--write-out',
        '\n%{http_code} %{content_type} %{redirect_url}|',
        `https://mta-sts.${domain}:${port}${POLICY_PATH}`,
      ]);
      expect(viaCurl.stderr).toBe('');
      expect(viaCurl.stdout).toBe(`${policy.text}\n200 text/plain |`);
    }
  });

  it('answers 404 to every other path, host and method, and never redirects', async () => {
    const host = `mta-sts.${DOMAINS[0]}`;
    for (const other of ['/', '/.well-known/', '/.well-known/mta-sts.txt?x', '/.well-known/mta-sts.txt/', '/index.html', '/../.well-known/mta-sts.txt']) {
      const answer = await fetchFrom(port, host, ca.certPem, { path: other });
      expect(answer.status, other).toBe(404);
      expect(answer.body).not.toContain('STSv1');
    }
    // A name the certificate covers, asked as a Host the service does not serve.
    const wrongHost = await curl([
      '--cacert',
      ca.certPath,
      '--resolve',
      `mta-sts.${DOMAINS[0]}:${port}:${SERVICE_IP}`,
      '-H',
      'Host: mta-sts.other.test',
      '--write-out',
      '%{http_code}',
      '--output',
      '/dev/null',
      `https://mta-sts.${DOMAINS[0]}:${port}${POLICY_PATH}`,
    ]);
    expect(wrongHost.stdout).toBe('404');
    const post = await curl([
      '--cacert',
      ca.certPath,
      '--resolve',
      `${host}:${port}:${SERVICE_IP}`,
      '-X',
      'POST',
      '--data',
      'x',
      '--write-out',
      '%{http_code}',
      '--output',
      '/dev/null',
      `https://${host}:${port}${POLICY_PATH}`,
    ]);
    expect(post.stdout).toBe('404');
    const plain = await curl(['--write-out', '%{http_code}', '--output', '/dev/null', `http://${SERVICE_IP}:${port}${POLICY_PATH}`]);
    expect(plain.stdout).not.toBe('200');
  });

  it('refuses TLS 1.0 and 1.1, takes 1.2 and 1.3', async () => {
    const host = `mta-sts.${DOMAINS[1]}`;
    for (const version of ['TLSv1', 'TLSv1.1'] as const) {
      await expect(fetchFrom(port, host, ca.certPem, { minVersion: version, maxVersion: version }), version).rejects.toThrow(/protocol|version|alert/i);
    }
    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      expect((await fetchFrom(port, host, ca.certPem, { minVersion: version, maxVersion: version })).status, version).toBe(200);
    }
  });

  it('presents certificates deployed with `cert deploy` while clients fetch without pause: no fetch fails, no restart', async () => {
    const names = [HOSTNAME, ...DOMAINS.map((domain) => `mta-sts.${domain}`)];
    const next = [ca.issue({ names }), ca.issue({ names }), ca.issue({ names })];
    const pid = service.child.pid;
    let running = true;
    const failures: string[] = [];
    const seen = new Map<string, number>();
    let fetches = 0;
    const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const worker = async (index: number) => {
      const host = `mta-sts.${DOMAINS[index % 2]}`;
      while (running) {
        try {
          const answer = await fetchFrom(port, host, ca.certPem, index === 0 ? { agent: keepAlive } : {});
          if (answer.status !== 200 || !answer.body.startsWith('version: STSv1')) throw new Error(`HTTP ${answer.status}`);
          fetches += 1;
          if (answer.fingerprint) seen.set(answer.fingerprint, (seen.get(answer.fingerprint) ?? 0) + 1);
        } catch (err) {
          failures.push(`worker ${index}: ${(err as Error).message}`);
        }
      }
    };
    const workers = [0, 1, 2, 3, 4].map(worker);
    try {
      for (const issued of next) {
        const deploy = await deployCert(issued);
        expect(deploy.code, deploy.text).toBe(0);
        expect(deploy.out).toContain('mailproxy-mta-sts.service presents it within a few seconds');
        expect(deploy.out).not.toContain('does not cover mta-sts');
        // Fresh connections get the new certificate within a few seconds of the deploy.
        await untilPresented(`the service to present ${issued.fingerprint}`, issued, service.output);
        const before = fetches;
        await eventually('more fetches with the new certificate', () => fetches > before + 20, { timeoutMs: 10_000 });
      }
    } finally {
      running = false;
      await Promise.all(workers);
      keepAlive.destroy();
    }
    expect(failures).toEqual([]);
    expect(fetches).toBeGreaterThan(100);
    for (const issued of next) expect(seen.get(issued.fingerprint) ?? 0, issued.fingerprint).toBeGreaterThan(0);
    expect(service.child.pid).toBe(pid);
    expect(service.child.exitCode).toBeNull();
    for (const issued of next) expect(service.output()).toContain(`presenting certificate ${issued.fingerprint}`);
  }, 120_000);

  it('takes a new policy on SIGHUP: a new mode, a new id, the same process, the listeners never closed', async () => {
    const before = hostedPolicy(loadedConfig());
    writeSettings((value) => {
      (value.inbound as { mta_sts: Record<string, unknown> }).mta_sts.mx = ['*.backup.sts-one.test'];
    });
    const after = hostedPolicy(loadedConfig());
    expect(after.id).not.toBe(before.id);
    service.child.kill('SIGHUP');
    await eventually('the new policy to be served', async () => (await fetchFrom(port, `mta-sts.${DOMAINS[1]}`, ca.certPem)).body === after.text, { context: service.output });
    // The service's output is another pipe than its HTTPS answers: its lines may arrive here a moment later.
    await eventually('the reload logged', () => service.output().includes(`reloaded: policy id ${after.id}`), { context: service.output });
    expect(service.output()).toContain(`reloaded: policy id ${after.id}`);
    expect(service.child.exitCode).toBeNull();
  });

  it('is checked end to end by doctor through the given resolver: record published, id of the policy served, mx covering every MX, certificate for the name', async () => {
    const doctor = async () => {
      const checks = await doctorChecks();
      return (name: string) => checks.find((check) => check.name === name)!;
    };
    const { id } = hostedPolicy(loadedConfig());
    await publish();
    let check = await doctor();
    for (const domain of DOMAINS) {
      expect(check(`mta-sts@${domain}`), domain).toMatchObject({ status: 'OK', detail: expect.stringContaining(`(id ${id})`) });
      expect(check(`tls-rpt@${domain}`).status, domain).toBe('OK');
    }

    // The record still names the id of an earlier policy: senders keep their cached copy.
    dns.zone.TXT![`_mta-sts.${DOMAINS[1]}`] = ['v=STSv1; id=20260101'];
    check = await doctor();
    expect(check(`mta-sts@${DOMAINS[0]}`).status).toBe('OK');
    expect(check(`mta-sts@${DOMAINS[1]}`)).toMatchObject({ status: 'WARNING', fix: `publish _mta-sts.${DOMAINS[1]}. TXT "v=STSv1; id=${id}" in place of the old record` });

    // An MX the policy does not name.
    await publish();
    dns.zone.MX![DOMAINS[0]]!.push({ exchange: 'mx.elsewhere.test', preference: 20 });
    check = await doctor();
    expect(check(`mta-sts@${DOMAINS[0]}`)).toMatchObject({ status: 'WARNING', detail: expect.stringContaining('no mx: line matches mx.elsewhere.test') });

    // The policy host's name points somewhere that does not answer.
    await publish();
    dns.zone.A![`mta-sts.${DOMAINS[1]}`] = ['127.0.0.38'];
    check = await doctor();
    expect(check(`mta-sts@${DOMAINS[1]}`)).toMatchObject({ status: 'CRITICAL', fix: expect.stringContaining('mailproxy-mta-sts.service must run') });
    await publish();
  }, 60_000);

  it('warns on a deploy whose certificate lacks a policy host name, and doctor then finds the certificate not valid for it', async () => {
    const partial = ca.issue({ names: [HOSTNAME, `mta-sts.${DOMAINS[0]}`] });
    const deploy = await deployCert(partial);
    expect(deploy.code, deploy.text).toBe(0);
    expect(deploy.out).toContain(`warning: inbound.mta_sts is on, but the certificate does not cover mta-sts.${DOMAINS[1]}: senders cannot fetch the MTA-STS policy there`);
    await untilPresented('the partial certificate to be presented', partial);
    const checks = await doctorChecks();
    expect(checks.find((check) => check.name === `mta-sts@${DOMAINS[0]}`)?.status).toBe('OK');
    expect(checks.find((check) => check.name === `mta-sts@${DOMAINS[1]}`)).toMatchObject({ status: 'CRITICAL', detail: expect.stringMatching(/altnames|certificate/i) });
    const health = await runCli(['health', '--config', configFile, '--json']);
    const https = (JSON.parse(health.out) as { checks: { name: string; status: string; detail: string }[] }).checks.find((check) => check.name === 'mta-sts.https');
    expect(https).toMatchObject({ status: 'WARNING', detail: expect.stringContaining(`the certificate does not cover mta-sts.${DOMAINS[1]}`) });
    const full = ca.issue({ names: [HOSTNAME, ...DOMAINS.map((domain) => `mta-sts.${domain}`)] });
    expect((await deployCert(full)).code).toBe(0);
    await untilPresented('the full certificate to be presented', full);
    expect((await fetchFrom(port, `mta-sts.${DOMAINS[1]}`, ca.certPem)).status).toBe(200);
  }, 60_000);

  it('is seen answering by health, and not once it stopped (SIGTERM: exit 0)', async () => {
    const healthCheck = async () => {
      const result = await runCli(['health', '--config', configFile, '--json']);
      return (JSON.parse(result.out) as { checks: { name: string; status: string; detail: string }[] }).checks.find((check) => check.name === 'mta-sts.https')!;
    };
    expect(await healthCheck()).toMatchObject({
      status: 'OK',
      detail: expect.stringContaining(`served for mta-sts.${DOMAINS[0]}, mta-sts.${DOMAINS[1]} on ${SERVICE_IP}:${port}`),
    });
    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);
    // The process can be seen gone before the last of its output has been read.
    await eventually('the stop logged', () => service.output().includes('stopped (SIGTERM)'), { context: service.output });
    expect(service.output()).toContain('stopped (SIGTERM)');
    expect(await healthCheck()).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('ECONNREFUSED') });
  }, 60_000);
});

describe('mailproxy mta-sts serve, wrongly asked', () => {
  it('refuses to run with hosting off, and answers usage errors like every command', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'mailproxy.yaml');
    writeFileSync(file, stringify({ version: 1, hostname: HOSTNAME, public_ipv4: PUBLIC_IP, domains: DOMAINS }));
    const off = await runCli(['mta-sts', 'serve', '--config', file]);
    expect(off).toMatchObject({ code: 1, err: 'mailproxy mta-sts serve: inbound.mta_sts.enabled is false in mailproxy.yaml: there is no policy to serve\n' });
    const unknown = await runCli(['mta-sts', 'serve', '--config', file, '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.err.split('\n')[0]).toBe("mailproxy: Unknown option '--bogus'");
    expect((await runCli(['mta-sts'])).code).toBe(2);
    const help = await runCli(['mta-sts', '--help']);
    expect(help).toMatchObject({ code: 0, out: expect.stringMatching(/^usage:\n {2}mailproxy mta-sts serve \[--config FILE\]/) });
  });
});

describe('the policy service against slow clients', () => {
  it('drops a client that does not finish its TLS handshake, and one that trickles its request, within the timeouts', async () => {
    const dir = tempDir();
    const ca = makeCa(path.join(dir, 'ca'));
    const issued = ca.issue({ names: ['mta-sts.sts-one.test'] });
    const server = await startPolicyServer({
      listen: [{ host: SERVICE_IP, port: 0 }],
      content: { hosts: ['mta-sts.sts-one.test'], text: 'version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n' },
      certificate: { key: issued.keyPem, cert: issued.certPem },
      timeouts: { handshakeMs: 500, headersMs: 800, requestMs: 1_500, keepAliveMs: 500, checkIntervalMs: 100 },
    });
    const { port } = server.addresses[0]!;
    try {
      const closedAfter = (socket: net.Socket) => {
        const started = Date.now();
        return new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now() - started)));
      };
      // Connects and never says a word.
      const silent = net.connect(port, SERVICE_IP);
      silent.on('error', () => {});
      expect(await closedAfter(silent)).toBeLessThan(3_000);

      // Completes the handshake, then sends its request a byte every 150 ms: closed (408), never answered 200.
      const slow = tls.connect({ host: SERVICE_IP, port, servername: 'mta-sts.sts-one.test', ca: ca.certPem });
      slow.on('error', () => {});
      let said = '';
      slow.on('data', (chunk) => (said += chunk));
      await new Promise((resolve) => slow.once('secureConnect', resolve));
      const closed = closedAfter(slow);
      const request = `GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.sts-one.test\r\nX-Padding: ${'x'.repeat(200)}\r\n\r\n`;
      let sent = 0;
      const drip = setInterval(() => {
        if (!slow.destroyed && sent < request.length) slow.write(request[sent++]!);
      }, 150);
      const ms = await closed;
      clearInterval(drip);
      expect(ms).toBeLessThan(3_000);
      expect(said).not.toContain('200 OK');
      expect(said).toMatch(/^HTTP\/1\.1 408 /);

      // A keep-alive connection left idle after its answer is closed too.
      const idle = tls.connect({ host: SERVICE_IP, port, servername: 'mta-sts.sts-one.test', ca: ca.certPem });
      idle.on('error', () => {});
      let answered = '';
      idle.on('data', (chunk) => (answered += chunk));
      await new Promise((resolve) => idle.once('secureConnect', resolve));
      const idleClosed = closedAfter(idle);
      idle.write('GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.sts-one.test\r\n\r\n');
      expect(await idleClosed).toBeLessThan(3_000);
      expect(answered).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    } finally {
      await server.close();
    }
  });
});

describe('mailproxy check with an enforce policy', () => {
  it('refuses enforce while the STARTTLS certificate does not cover hostname, and takes it once it does', async () => {
    const dir = tempDir();
    const ca = makeCa(path.join(dir, 'ca'));
    const node = path.join(dir, 'node');
    if (!existsSync(node)) symlinkSync(process.execPath, node);
    const write = (issued: Issued, mode: string) => {
      const file = path.join(dir, 'mailproxy.yaml');
      writeFileSync(
        file,
        stringify({
          version: 1,
          hostname: HOSTNAME,
          public_ipv4: PUBLIC_IP,
          domains: DOMAINS,
          inbound: { mta_sts: { enabled: true, mode } },
          tls: { key: issued.keyPath, cert: issued.certPath },
          state_dir: path.join(dir, 'state'),
          system: { node },
        }),
      );
      return file;
    };
    const wrong = ca.issue({ names: ['other.sts-one.test', ...DOMAINS.map((domain) => `mta-sts.${domain}`)] });
    const refused = await runCli(['check', '--config', write(wrong, 'enforce')]);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('mailproxy.yaml: the config parses, but it is refused:');
    expect(refused.err).toContain(
      `error: inbound.mta_sts.mode is enforce, but the STARTTLS certificate's names (other.sts-one.test, mta-sts.sts-one.test, mta-sts.sts-two.test) do not cover hostname ${HOSTNAME}: senders that honour the policy would stop delivering to haraka-in`,
    );
    const testing = await runCli(['check', '--config', write(wrong, 'testing')]);
    expect(testing.text).not.toContain('error: inbound.mta_sts');
    const right = ca.issue({ names: [HOSTNAME, ...DOMAINS.map((domain) => `mta-sts.${domain}`)] });
    const taken = await runCli(['check', '--config', write(right, 'enforce')]);
    expect(taken.text).not.toContain('inbound.mta_sts');
    expect(taken.out).toContain('mailproxy.yaml: config is valid');
    expect(taken.code, taken.text).toBe(0);
  }, 120_000);
});
