// The pure side of `mailproxy health`: each check's decision from measured facts, how checks combine into
// one exit code, the three output formats, and the config's `health` section.
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load';
import {
  judgeBackend,
  judgeBanner,
  judgeDisk,
  judgeQueue,
  judgeTls,
  judgeUnit,
  judgeWireguard,
  parseAllowedIps,
  parseLatestHandshakes,
  peerFor,
  xclientAttributes,
  type BackendFacts,
  type CommandOutcome,
  type TlsFacts,
  type WireguardFacts,
} from '../../src/health/checks';
import { formatHuman, formatJson, formatPrometheus } from '../../src/health/format';
import { probeTarget } from '../../src/health/run';
import { STATUS_CODE, worst } from '../../src/report/status';
import { report, type CheckResult } from '../../src/health/status';
import type { QueueEntry } from '../../src/queue/qfile';
import type { QueueListing } from '../../src/queue/tools';

const now = new Date('2026-03-01T12:00:00Z');
const unixNow = now.getTime() / 1000;
const ran = (stdout: string, code = 0, stderr = ''): CommandOutcome => ({ kind: 'ran', code, stdout, stderr });
const DAY = 86_400_000;

describe('combining checks', () => {
  it('ranks CRITICAL > WARNING > UNKNOWN > OK (monitoring-plugins max_state_alt)', () => {
    expect(worst([])).toBe('OK');
    expect(worst(['OK', 'UNKNOWN'])).toBe('UNKNOWN');
    expect(worst(['UNKNOWN', 'WARNING', 'OK'])).toBe('WARNING');
    expect(worst(['WARNING', 'CRITICAL', 'UNKNOWN'])).toBe('CRITICAL');
  });

  it('maps states to the Nagios exit codes', () => {
    expect(STATUS_CODE).toEqual({ OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 });
  });
});

describe('units: systemctl is-active', () => {
  const unit = 'mailproxy-haraka-in.service';

  it('is OK when active', () => {
    expect(judgeUnit(unit, ran('active\n'))).toMatchObject({ status: 'OK', detail: `${unit} is active` });
  });

  it('is CRITICAL when failed or inactive (a unit that does not exist reads inactive)', () => {
    expect(judgeUnit(unit, ran('failed\n', 3))).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining(`journalctl -u ${unit}`) });
    expect(judgeUnit(unit, ran('inactive\n', 3)).status).toBe('CRITICAL');
  });

  it('is WARNING while it (re)starts', () => {
    expect(judgeUnit(unit, ran('activating\n', 3)).status).toBe('WARNING');
  });

  it('is UNKNOWN, saying why, without systemctl or without systemd', () => {
    expect(judgeUnit(unit, { kind: 'missing' })).toEqual({ status: 'UNKNOWN', detail: `systemctl not found on PATH: cannot tell whether ${unit} runs` });
    const booted = judgeUnit(unit, ran('', 1, "System has not been booted with systemd as init system (PID 1). Can't operate.\nFailed to connect to bus: Host is down\n"));
    expect(booted).toMatchObject({ status: 'UNKNOWN', detail: expect.stringMatching(/^systemd is not running here \(System has not been booted/) });
    expect(judgeUnit(unit, { kind: 'failed', error: 'no answer within 10 s' }).status).toBe('UNKNOWN');
  });
});

describe('banners', () => {
  const banner = (line: string, ms = 12) => ({ address: '127.0.0.1:25', banner: { code: Number(line.slice(0, 3)), lines: [line] }, error: null, ms });

  it('is OK when every address greets with 220 <hostname>', () => {
    const verdict = judgeBanner('mx.example.com', [banner('220 MX.example.com ESMTP Haraka/3.3.4 ready'), { ...banner('220 mx.example.com ESMTP', 30), address: '[::1]:25' }]);
    expect(verdict.status).toBe('OK');
    expect(verdict.metrics).toEqual({ smtp_banner_seconds: 0.03 });
  });

  it('is CRITICAL for another name, a refusal, or no banner in time', () => {
    expect(judgeBanner('mx.example.com', [banner('220 localhost ESMTP')])).toMatchObject({
      status: 'CRITICAL',
      detail: expect.stringContaining('announces localhost, expected hostname mx.example.com'),
    });
    expect(judgeBanner('mx.example.com', [banner('554 5.3.2 go away')]).status).toBe('CRITICAL');
    const silent = { address: '127.0.0.1:25', banner: null, error: 'no banner within 5 s', ms: 5000 };
    expect(judgeBanner('mx.example.com', [banner('220 mx.example.com'), silent])).toEqual({
      status: 'CRITICAL',
      detail: '127.0.0.1:25: no banner within 5 s',
      metrics: { smtp_banner_seconds: 0.012 },
    });
    expect(judgeBanner('mx.example.com', [silent]).metrics).toBeUndefined();
  });
});

describe('STARTTLS and the certificate', () => {
  const facts = (validFrom: Date, validTo: Date, namesHost = true): TlsFacts => ({
    address: '127.0.0.1:25',
    error: null,
    protocol: 'TLSv1.3',
    cert: { subject: 'CN=mx.example.com', issuer: 'CN=R11', validFrom, validTo, namesHost },
  });
  const judge = (f: TlsFacts) => judgeTls('mx.example.com', f, now, 14);

  it('is OK with more than cert_warning_days left', () => {
    const verdict = judge(facts(new Date(now.getTime() - DAY), new Date(now.getTime() + 60 * DAY)));
    expect(verdict).toMatchObject({ status: 'OK', metrics: { cert_expiry_seconds: 60 * 86400 } });
    expect(verdict.detail).toContain('60 days left');
  });

  it('is WARNING under cert_warning_days, or when the certificate does not name hostname', () => {
    expect(judge(facts(new Date(now.getTime() - DAY), new Date(now.getTime() + 13 * DAY))).status).toBe('WARNING');
    expect(judge(facts(new Date(now.getTime() - DAY), new Date(now.getTime() + 60 * DAY), false))).toMatchObject({
      status: 'WARNING',
      detail: expect.stringContaining('does not name hostname mx.example.com'),
    });
  });

  it('is CRITICAL when expired, not yet valid, or STARTTLS fails', () => {
    expect(judge(facts(new Date(now.getTime() - 90 * DAY), new Date(now.getTime() - 1000)))).toMatchObject({
      status: 'CRITICAL',
      detail: expect.stringContaining('expired on'),
      metrics: { cert_expiry_seconds: -1 },
    });
    expect(judge(facts(new Date(now.getTime() + DAY), new Date(now.getTime() + 90 * DAY)))).toMatchObject({
      status: 'CRITICAL',
      detail: expect.stringContaining('not valid before'),
    });
    expect(judge({ address: '127.0.0.1:25', error: 'STARTTLS is not offered after EHLO', protocol: null, cert: null }).status).toBe('CRITICAL');
  });
});

describe('the backend', () => {
  const ehlo = (...extensions: string[]) => ({ code: 250, lines: ['250-backend.test', ...extensions.map((e, i) => `250${i === extensions.length - 1 ? ' ' : '-'}${e}`)] });
  const facts = (over: Partial<BackendFacts>): BackendFacts => ({
    from: '10.0.0.1',
    to: '10.0.0.2:25',
    error: null,
    errorCode: null,
    banner: { code: 220, lines: ['220 backend.test ESMTP Postfix'] },
    ehlo: ehlo('PIPELINING', 'XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT'),
    starttls: null,
    ...over,
  });
  const plain = (requireXclient: boolean) => ({ port: 10029, requireXclient, starttls: false });

  it('reads XCLIENT attributes from EHLO', () => {
    expect(xclientAttributes(ehlo('SIZE 100', 'xclient name addr'))).toEqual(['NAME', 'ADDR']);
    expect(xclientAttributes(ehlo('SIZE 100'))).toBeNull();
  });

  it('is OK when the backend offers XCLIENT with ADDR', () => {
    expect(judgeBackend(facts({}), plain(true))).toMatchObject({ status: 'OK', detail: expect.stringContaining('XCLIENT NAME ADDR') });
  });

  it('is CRITICAL without XCLIENT under require_xclient, WARNING without it', () => {
    expect(judgeBackend(facts({ ehlo: ehlo('PIPELINING') }), plain(true))).toMatchObject({
      status: 'CRITICAL',
      detail: expect.stringContaining('smtpd_authorized_xclient_hosts = 10.0.0.1'),
    });
    expect(judgeBackend(facts({ ehlo: ehlo('XCLIENT NAME HELO') }), plain(true)).status).toBe('CRITICAL');
    expect(judgeBackend(facts({ ehlo: ehlo('PIPELINING') }), plain(false)).status).toBe('WARNING');
  });

  it('is CRITICAL when it cannot connect, explaining a missing WireGuard address', () => {
    expect(
      judgeBackend(facts({ error: 'connect EADDRNOTAVAIL 10.0.0.2:25 - Local (10.0.0.1:0)', errorCode: 'EADDRNOTAVAIL', banner: null, ehlo: null }), plain(true)),
    ).toMatchObject({
      status: 'CRITICAL',
      detail: expect.stringContaining('is the WireGuard interface up?'),
    });
    expect(judgeBackend(facts({ banner: { code: 421, lines: ['421 4.3.2 shutting down'] }, ehlo: null }), plain(true)).status).toBe('CRITICAL');
  });

  it('with backend.starttls, is CRITICAL when STARTTLS is not offered or fails, and OK after it', () => {
    const tlsOn = { port: 10029, requireXclient: true, starttls: true };
    expect(judgeBackend(facts({ starttls: 'not offered' }), tlsOn)).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('does not offer STARTTLS') });
    expect(judgeBackend(facts({ starttls: 'refused: 454 4.7.0 TLS not available' }), tlsOn)).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('454 4.7.0') });
    expect(judgeBackend(facts({ starttls: 'ok' }), tlsOn)).toMatchObject({ status: 'OK', detail: expect.stringContaining('; STARTTLS; XCLIENT') });
  });

  it('names the wrong service: Mailcow’s postscreen on 25, a PROXY-protocol postscreen that never greets', () => {
    const onPort = (port: number) => ({ port, requireXclient: true, starttls: false });
    expect(judgeBackend(facts({ ehlo: ehlo('PIPELINING') }), onPort(25)).detail).toContain('port 25 is postscreen');
    const silent = facts({ error: 'no banner within 10 s', errorCode: 'ETIMEDOUT', banner: null, ehlo: null });
    expect(judgeBackend(silent, onPort(10025)).detail).toContain('PROXY header');
  });
});

describe('WireGuard', () => {
  const A = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
  const B = 'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB=';
  const limits = { warning: 300, critical: 900 };
  const facts = (handshakes: CommandOutcome, allowedIps: CommandOutcome = ran(`${A}\t10.0.0.2/32\n${B}\t10.0.0.0/24 fd00::/64\n`)): WireguardFacts => ({
    interface: 'wg0',
    handshakes,
    allowedIps,
  });
  const judge = (f: WireguardFacts) => judgeWireguard(f, '10.0.0.2', now, limits);

  it('parses wg show output', () => {
    expect(parseLatestHandshakes(`${A}\t1700000000\n${B}\t0\n`)).toEqual(
      new Map([
        [A, 1700000000],
        [B, 0],
      ]),
    );
    expect(parseAllowedIps(`${A}\t10.0.0.2/32\n${B}\t(none)\n`)).toEqual(
      new Map([
        [A, ['10.0.0.2/32']],
        [B, []],
      ]),
    );
    // The longest prefix wins, as in WireGuard's own routing.
    expect(
      peerFor(
        '10.0.0.2',
        new Map([
          [B, ['10.0.0.0/24']],
          [A, ['10.0.0.2/32']],
        ]),
      ),
    ).toBe(A);
    expect(peerFor('10.0.0.9', new Map([[A, ['10.0.0.2/32']]]))).toBeNull();
  });

  it("judges the backend's peer: OK when recent, WARNING and CRITICAL as it ages, CRITICAL never", () => {
    const at = (age: number) => ran(`${A}\t${age < 0 ? 0 : unixNow - age}\n${B}\t${unixNow}\n`);
    expect(judge(facts(at(42)))).toMatchObject({ status: 'OK', metrics: { wireguard_handshake_age_seconds: 42 } });
    expect(judge(facts(at(400))).status).toBe('WARNING');
    expect(judge(facts(at(1000))).status).toBe('CRITICAL');
    expect(judge(facts(at(-1)))).toMatchObject({ status: 'CRITICAL', detail: expect.stringContaining('never completed a handshake') });
  });

  it('is CRITICAL when no peer routes backend.host, or the interface is missing', () => {
    expect(judge(facts(ran(`${A}\t${unixNow}\n`), ran(`${A}\t10.9.0.0/24\n`))).detail).toContain('no peer of wg0 has backend.host 10.0.0.2');
    expect(judge(facts(ran('', 1, 'Unable to access interface: No such device\n')))).toMatchObject({
      status: 'CRITICAL',
      detail: expect.stringContaining('is wg-quick@wg0 up?'),
    });
    expect(judge(facts(ran('')))).toMatchObject({ status: 'CRITICAL', detail: 'wg0 has no peers: the backend cannot be reached' });
  });

  it('is UNKNOWN without wg or without permission', () => {
    expect(judge(facts({ kind: 'missing' }))).toMatchObject({ status: 'UNKNOWN', detail: expect.stringContaining('wg not found on PATH') });
    expect(judge(facts(ran('', 1, 'Unable to access interface: Operation not permitted\n'))).status).toBe('UNKNOWN');
  });

  it('judges every peer (the freshest) when allowed-ips cannot be read', () => {
    expect(judge(facts(ran(`${A}\t0\n${B}\t${unixNow - 10}\n`), { kind: 'failed', error: 'not asked' })).status).toBe('OK');
  });
});

describe("haraka-out's queue", () => {
  const limits = { queueWarning: 3, queueCritical: 5, oldestWarning: 3600, oldestCritical: 86400 };
  const entry = (ageSeconds: number, attempts: number): QueueEntry => ({
    file: `f${ageSeconds}`,
    id: `id${ageSeconds}`,
    uuid: null,
    domain: 'example.net',
    mailFrom: 'a@example.com',
    recipients: ['b@example.net'],
    queuedAt: new Date(now.getTime() - ageSeconds * 1000),
    nextAttempt: null,
    attempts,
    lastError: null,
    lastErrorSource: null,
    size: 100,
    pid: 1,
  });
  const listing = (entries: QueueEntry[], over: Partial<QueueListing> = {}): { listing: QueueListing } => ({
    listing: { dir: '/q', entries, problems: [], errorFiles: [], inProgress: 0, ...over },
  });

  it('is OK for a small, young queue, and measures size, deferred and the oldest age', () => {
    expect(judgeQueue(listing([]), now, limits)).toMatchObject({ status: 'OK', detail: '0 messages (0 deferred)' });
    expect(judgeQueue(listing([entry(60, 0), entry(600, 2)]), now, limits)).toEqual({
      status: 'OK',
      detail: '2 messages (1 deferred), oldest 10m',
      metrics: { queue_messages: 2, queue_deferred_messages: 1, queue_oldest_seconds: 600, queue_error_files: 0 },
    });
  });

  it('is WARNING and CRITICAL by size and by the oldest age', () => {
    expect(judgeQueue(listing([entry(1, 0), entry(2, 0), entry(3, 0)]), now, limits).status).toBe('WARNING');
    expect(judgeQueue(listing([1, 2, 3, 4, 5].map((age) => entry(age, 0))), now, limits).status).toBe('CRITICAL');
    expect(judgeQueue(listing([entry(7200, 3)]), now, limits)).toMatchObject({ status: 'WARNING', detail: expect.stringContaining('see `mailproxy queue list`') });
    expect(judgeQueue(listing([entry(90000, 9)]), now, limits).status).toBe('CRITICAL');
  });

  it('warns about files Haraka never delivers, and is UNKNOWN when the directory cannot be read', () => {
    const errorFile = { file: 'error.x', size: 1, entry: null, error: 'bad' };
    expect(judgeQueue(listing([], { errorFiles: [errorFile] }), now, limits).status).toBe('WARNING');
    expect(judgeQueue({ error: 'cannot read queue directory /q: permission denied' }, now, limits).status).toBe('UNKNOWN');
  });
});

describe('disk', () => {
  const MB = 1024 * 1024;
  const limits = { warningMb: 1024, criticalMb: 256 };
  it('compares free space with the thresholds', () => {
    expect(judgeDisk({ path: '/var/lib/mailproxy', freeBytes: 2048 * MB, totalBytes: 10240 * MB }, limits)).toEqual({
      status: 'OK',
      detail: '2048 MB free of 10240 MB under /var/lib/mailproxy',
      metrics: { disk_free_bytes: 2048 * MB, disk_size_bytes: 10240 * MB },
    });
    expect(judgeDisk({ path: '/s', freeBytes: 1000 * MB, totalBytes: 10240 * MB }, limits).status).toBe('WARNING');
    expect(judgeDisk({ path: '/s', freeBytes: 100 * MB, totalBytes: 10240 * MB }, limits).status).toBe('CRITICAL');
    expect(judgeDisk({ path: '/s', error: "ENOENT: no such file or directory, statfs '/s'" }, limits).status).toBe('UNKNOWN');
  });
});

describe('probe targets', () => {
  it('reaches a wildcard listener on loopback', () => {
    expect(probeTarget('0.0.0.0:25')).toEqual({ host: '127.0.0.1', port: 25 });
    expect(probeTarget('[::]:25')).toEqual({ host: '::1', port: 25 });
    expect(probeTarget('203.0.113.25:25')).toEqual({ host: '203.0.113.25', port: 25 });
  });
});

describe('output', () => {
  const checks: CheckResult[] = [
    { name: 'haraka-in.tls', status: 'WARNING', detail: 'TLSv1.3, 3 days left', ms: 20, metrics: { cert_expiry_seconds: 259200 } },
    { name: 'haraka-in.banner', status: 'OK', detail: 'greets', ms: 3, metrics: { smtp_banner_seconds: 0.003 } },
    { name: 'haraka-out.banner', status: 'OK', detail: 'greets', ms: 4, metrics: { smtp_banner_seconds: 0.004 } },
    { name: 'haraka-in.unit', status: 'UNKNOWN', detail: 'systemctl not found on PATH', ms: 1, metrics: {} },
  ];
  const result = report(checks, now);

  it('prints a status line, then one line per check', () => {
    expect(formatHuman(result)).toBe(
      [
        'mailproxy health WARNING: 2 OK, 1 WARNING, 1 UNKNOWN',
        'WARNING   haraka-in.tls      TLSv1.3, 3 days left',
        'OK        haraka-in.banner   greets',
        'OK        haraka-out.banner  greets',
        'UNKNOWN   haraka-in.unit     systemctl not found on PATH',
        '',
      ].join('\n'),
    );
  });

  it('prints JSON with the exit code', () => {
    const json = JSON.parse(formatJson(result));
    expect(json).toMatchObject({ status: 'WARNING', exit_code: 1, checked_at: now.toISOString() });
    expect(json.checks[0]).toEqual({ name: 'haraka-in.tls', status: 'WARNING', detail: 'TLSv1.3, 3 days left', ms: 20, metrics: { cert_expiry_seconds: 259200 } });
  });

  it('writes the Prometheus text format with HELP and TYPE for every family', () => {
    const text = formatPrometheus(result);
    expect(text).toContain('# TYPE mailproxy_health_status gauge\nmailproxy_health_status 1\n');
    expect(text).toContain('mailproxy_health_check_status{check="haraka-in.unit"} 3\n');
    expect(text).toContain('mailproxy_health_check_duration_seconds{check="haraka-in.tls"} 0.02\n');
    expect(text).toContain(`mailproxy_health_last_run_timestamp_seconds ${unixNow}\n`);
    expect(text).toContain('mailproxy_cert_expiry_seconds{check="haraka-in.tls"} 259200\n');
    expect(text).toContain('mailproxy_smtp_banner_seconds{check="haraka-in.banner"} 0.003\nmailproxy_smtp_banner_seconds{check="haraka-out.banner"} 0.004\n');
    const families = [...text.matchAll(/^# TYPE (\S+) gauge$/gm)].map((match) => match[1]);
    const helps = [...text.matchAll(/^# HELP (\S+) /gm)].map((match) => match[1]);
    expect(helps).toEqual(families);
    for (const line of text
      .trimEnd()
      .split('\n')
      .filter((l) => !l.startsWith('#'))) {
      expect(
        families.some((family) => line.startsWith(`${family} `) || line.startsWith(`${family}{`)),
        line,
      ).toBe(true);
    }
  });
});

describe('config: the health section', () => {
  const base = 'version: 1\nhostname: mx.example.org\npublic_ipv4: 198.51.100.7\ndomains: [example.org]\n';

  it('has documented defaults', () => {
    const result = loadConfigText(base);
    expect(result.ok && result.config.health).toEqual({
      smtp_timeout: 5,
      cert_warning_days: 14,
      queue_warning: 50,
      queue_critical: 500,
      oldest_warning: 21600,
      oldest_critical: 86400,
      handshake_warning: 300,
      handshake_critical: 900,
      disk_warning_mb: 1024,
      disk_critical_mb: 256,
      kept_warning: 100,
      kept_critical: 1000,
      kept_oldest_warning: 3600,
      kept_oldest_critical: 86400,
      held_warning: 1,
      held_critical: 20,
    });
    expect(result.ok && result.config.wireguard.interface).toBe('wg0');
  });

  it('refuses a warning threshold beyond its critical one, with the line', () => {
    const result = loadConfigText(`${base}health:\n  queue_warning: 600\n  disk_warning_mb: 100\n`);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual([
      { key: 'health.queue_warning', value: 600, line: 6, message: 'expected at most health.queue_critical (500): the warning comes before the critical threshold' },
      { key: 'health.disk_warning_mb', value: 100, line: 7, message: 'expected at least health.disk_critical_mb (256): the warning comes before the critical threshold' },
    ]);
  });
});
