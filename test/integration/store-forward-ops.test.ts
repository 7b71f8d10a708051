// The backup MX seen and handled by its operator, with the real CLI (`node bin/mailproxy.js`, a process of its
// own, as on a VPS) against the spool a real haraka-in made and keeps using: `queue --instance in` lists a
// kept message; messages the backend refuses are held and listed; one is released and the running
// haraka-in hands it on at its next probe; another is deleted; `health` counts kept and held mail (WARNING
// with a held message) into its report and the Prometheus textfile; `stats` counts the store, drain and
// hold lines of haraka-in's log.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSession } from '../../src/smtp/script';
import { eventually } from '../helpers/poll';
import { sendVia } from '../helpers/send';
import { useTempDirs } from '../helpers/tmp';
import { useKeptMail } from '../helpers/kept-mail';
import { useTopology } from '../helpers/topology';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'bin/mailproxy.js');
const tempDir = useTempDirs('mailproxy-sf-ops-');

interface Ran {
  code: number | null;
  out: string;
  err: string;
}

/** `node bin/mailproxy.js ARGS` as its own process, with `input` on stdin; PATH holds no systemctl or wg. */
function mailproxy(args: string[], input = ''): Promise<Ran> {
  const bin = path.join(tempDir(), 'bin');
  mkdirSync(bin);
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, PATH: bin } });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  child.stderr.on('data', (chunk) => (err += chunk));
  child.stdin.end(input);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, out, err }));
  });
}

interface HealthJson {
  checks: { name: string; status: string; detail: string; metrics: Record<string, number> }[];
}

describe('the operator’s view of mail haraka-in keeps', () => {
  const topology = useTopology({
    instances: ['haraka-in'],
    tweak: (config) => {
      config.inbound = { ...config.inbound, store_and_forward: { enabled: true, probe_interval: 1 } };
    },
  });
  const { sinks, spoolDir: spool, count, backendBack } = useKeptMail(topology);
  const queue = (...args: string[]) => mailproxy(['queue', ...args, '--config', topology().configPath]);
  const send = async (rcpts: string[], subject: string) => {
    const client = await openSession(topology().inbound.host, topology().inbound.port, { localAddress: '127.0.0.9', helo: 'client9.example.net' });
    try {
      return await sendVia(client, rcpts, subject);
    } finally {
      client.close();
    }
  };
  const health = async () => {
    const prom = path.join(tempDir(), 'mailproxy.prom');
    const ran = await mailproxy(['health', '--config', topology().configPath, '--json', '--prometheus', prom]);
    const json = JSON.parse(ran.out) as HealthJson;
    return { ran, prom: readFileSync(prom, 'utf8'), check: (name: string) => json.checks.find((check) => check.name === name) };
  };

  it('lists kept and held mail, releases one for the running haraka-in to hand on, deletes another, and counts them in health and stats', async () => {
    const t = topology();
    // The cache learns alice from a live delivery; then the backend goes away.
    expect((await send(['alice@demo.test'], 'live')).final?.code).toBe(250);
    await t.backend!.waitForMessages(1);
    await t.backend!.close();

    for (const subject of ['kept while away', 'refuse me one', 'refuse me two']) {
      expect((await send(['alice@demo.test'], subject)).final?.text).toContain('Kept for the mail server');
    }
    expect((await send(['carol@demo.test'], 'unknown')).replies[0]?.code).toBe(450);
    const listed = await queue('list', '--instance', 'in');
    expect(listed.code).toBe(0);
    expect(listed.out).toContain('ready, waiting for the backend: 3');
    expect(listed.out).toMatch(/\d{14}-\d{6}-[0-9a-f]{8} +\d+s +sender@example\.net +alice@demo\.test +0 +when it answers/);
    expect((await queue('count', '--instance', 'in')).out).toMatch(/^ready 3 \(oldest \d+s\)\nheld 0\n/);

    const kept = await health();
    expect(kept.check('haraka-in.kept')).toMatchObject({ status: 'OK', detail: expect.stringMatching(/^3 kept for the backend, oldest \d+s, 0 held, 1 of 1024 MB$/) });
    expect(kept.prom).toContain('mailproxy_kept_messages{check="haraka-in.kept"} 3\n');
    await eventually('the recipient cache saved', async () => (await health()).check('haraka-in.recipients')?.metrics.recipient_cache_accepted_entries === 1, {
      timeoutMs: 20_000,
    });

    // Back, but refusing two of them: those are held, the other is handed on.
    const strict = await backendBack({ rejectMessage: (raw) => (raw.toString().includes('Subject: refuse me') ? '554 5.7.1 Refused by content filter' : null) });
    await strict.waitForMessages(1, 20_000);
    await eventually('both refused messages held', () => count('held') === 2 && count('ready') === 0, { timeoutMs: 20_000 });
    const held = JSON.parse((await queue('held', '--json')).out) as { held: { id: string; held: { reason: string }; envelope: { rcptTo: string[] } }[] };
    expect(held.held.map((meta) => meta.held.reason)).toEqual([
      expect.stringMatching(/^refused by the backend: 554 5\.7\.1 Refused by content filter/),
      expect.stringMatching(/^refused by the backend: 554 5\.7\.1 Refused by content filter/),
    ]);
    const [first, second] = held.held.map((meta) => meta.id);
    const heldText = (await queue('held')).out;
    expect(heldText).toContain(`${first}`);
    expect(heldText).toContain('refused by the backend: 554 5.7.1');

    const warned = await health();
    expect(warned.check('haraka-in.kept')).toMatchObject({ status: 'WARNING', detail: expect.stringContaining('2 held (health.held_warning: 1)') });
    expect(warned.ran.code).not.toBe(0);
    expect(warned.prom).toContain('mailproxy_kept_held_messages{check="haraka-in.kept"} 2\n');
    expect(warned.prom).toMatch(/mailproxy_health_check_status\{check="haraka-in\.kept"\} 1\n/);

    // The backend takes everything again: a released message goes at haraka-in's next probe.
    await strict.close();
    sinks.splice(0);
    const sink = await backendBack();
    const released = await queue('release', first!);
    expect(released.code).toBe(0);
    expect(released.out).toMatch(new RegExp(`^released ${first} `));
    const [arrived] = await sink.waitForMessages(1, 20_000);
    expect(arrived?.subject).toBe('refuse me one');
    expect(arrived?.xclient).toMatchObject({ ADDR: '127.0.0.9', HELO: 'client9.example.net' });
    await eventually('the released message handed on and removed', () => count('ready') === 0, { timeoutMs: 10_000 });

    const deleted = await queue('delete', second!, '--instance', 'in');
    expect([deleted.code, deleted.out.trim()]).toEqual([0, `deleted held message ${second} (from sender@example.net to 1 recipient)`]);
    expect([count('ready'), count('held'), readdirSync(spool('msg'))]).toEqual([0, 0, []]);
    expect((await queue('held')).out.trim()).toBe('held for you (mailproxy queue release ID, or delete ID --instance in): 0');
    expect((await health()).check('haraka-in.kept')?.status).toBe('OK');
    expect(sink.messages.map((message) => message.subject)).toEqual(['refuse me one']);

    const stats = await mailproxy(['stats', '-'], t.haraka['haraka-in']!.output());
    expect(stats.code).toBe(0);
    const lines = stats.out.split('\n');
    const row = (label: string) =>
      lines
        .find((line) => line.trimStart().startsWith(`${label} `))
        ?.trim()
        .split(/ {2,}/);
    expect(row('stored')).toEqual(['stored', '3', '3 recipients']);
    expect(row('handed on to the backend')).toEqual(['handed on to the backend', '2']);
    expect(row('held for the operator')).toEqual(['held for the operator', '2', 'see `mailproxy queue held`']);
    expect(row('backend_refused')).toEqual(['backend_refused', '2']);
    expect(row('not_verified')).toEqual(['not_verified', '1']);
  });
});
