// `npm start` runs `mailproxy demo`: this runs the real command and sends through it like a user would.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { eventually } from '../helpers/poll';

const root = path.resolve(__dirname, '../..');
const bin = path.join(root, 'bin/mailproxy.js');
const run = promisify(execFile);

async function waitForOutput(read: () => string, pattern: RegExp, timeoutMs: number): Promise<void> {
  await eventually(`demo output matching ${pattern}`, () => pattern.test(read()), { timeoutMs, context: read });
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** `node bin/mailproxy.js ARGS` from `cwd`, its exit code and output whatever the code; killed after 60 s. */
function mailproxy(args: string[], cwd: string): Promise<Ran> {
  return run(process.execPath, [bin, ...args], { cwd, timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
  );
}

/**
 * Runs `body` against a `mailproxy demo` started in a new directory (as `npm start` runs it), then stops the
 * demo with Ctrl-C and removes the directory, also when `body` throws: the demo must exit 0 and leave no
 * process behind.
 */
async function withDemo(body: (demo: { cwd: string; output: () => string }) => Promise<void>): Promise<void> {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-demo-'));
  const demo = spawn(process.execPath, [bin, 'demo'], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: '' } });
  let output = '';
  demo.stdout.on('data', (chunk) => (output += chunk));
  demo.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
  let failure: unknown = null;
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  try {
    // Ready, or gone (another demo holds the ports: it says which): never a silent wait for the timeout.
    await eventually('the demo ready', () => /Press Ctrl-C to stop/.test(output) || exitCode !== undefined, { timeoutMs: 60_000, context: () => output });
    if (exitCode !== undefined) throw new Error(`the demo exited with ${exitCode} before it was ready:\n${output}`);
    await body({ cwd, output: () => output });
  } catch (err) {
    failure = err;
  }
  demo.kill('SIGINT');
  const code = await exited;
  const leftovers = await run('pgrep', ['-f', cwd]).then(
    (result) => result.stdout.trim(),
    () => '',
  );
  rmSync(cwd, { recursive: true, force: true });
  // The body's own failure first: what the demo did on the way out is secondary.
  if (failure) throw failure;
  expect(code, output).toBe(0);
  expect(leftovers, 'processes left behind by the demo').toBe('');
}

describe('the demo', () => {
  it('carries a message in to the backend stand-in and one out to the internet sink, then stops cleanly on Ctrl-C', async () => {
    let output = () => '';
    await withDemo(async (demo) => {
      const { cwd } = demo;
      output = demo.output;
      // A second demo says which port is taken, by which role, and starts nothing.
      const second = await run(process.execPath, [bin, 'demo'], { cwd }).then(
        () => ({ code: 0, stderr: '' }),
        (err: { code: number; stderr: string }) => err,
      );
      expect(second.code).toBe(1);
      expect(second.stderr).toContain('127.0.0.1:2525 (the haraka-in) is already in use');
      expect(second.stderr).toContain('Is another demo running?');
      const sendIn = await run(process.execPath, [bin, 'send', '--server', '127.0.0.1:2525', '--from', 'someone@example.net', '--to', 'alice@demo.test', '--subject', 'demo in']);
      expect(sendIn.stdout).toContain('accepted: alice@demo.test');
      const sendOut = await run(process.execPath, [
        bin,
        'send',
        '--server',
        '127.0.0.3:2526',
        '--local-address',
        '127.0.0.2',
        '--from',
        'alice@demo.test',
        '--to',
        'bob@example.net',
        '--subject',
        'demo out',
      ]);
      expect(sendOut.stdout).toContain('accepted: bob@example.net');
      await waitForOutput(output, /backend stand-in[^\n]*\n[^\n]*RCPT TO:<alice@demo.test>\n\s+XCLIENT: [^\n]*ADDR=127\.0\.0\.1[^\n]*\n\s+Subject: demo in/, 20_000);
      await waitForOutput(output, /internet MX[^\n]*\n[^\n]*RCPT TO:<bob@example.net>\n[^\n]*\n\s+Subject: demo out/, 20_000);
    });
    expect(output()).toContain('stopped.');
  });

  // The README says selftest, doctor and stats report on the demo as on a VPS. The commands
  // the demo prints are run as printed (from where it runs), and pass: the backend stand-in refuses what a
  // real backend refuses, the demo's DNS server publishes the records a finished setup has (and NXDOMAIN for
  // the rest, DNSBL names included), and haraka-in's log in .demo/ counts the sessions, loopback ones marked.
  // The tools ask only --resolver, the demo's server: nothing resolves through the system resolver.
  it('passes the selftest, doctor and stats it prints, and they fail for real reasons on a half-done setup', async () => {
    await withDemo(async ({ cwd, output }) => {
      const printed = [...output().matchAll(/^ {2}node bin\/mailproxy\.js ((doctor|selftest|stats) .*)$/gm)].map((match) => match[1]!.split(' '));
      expect(printed.map((args) => args[0])).toEqual(['doctor', 'selftest', 'stats']);
      for (const args of printed.slice(0, 2)) expect(args.join(' ')).toContain('--config .demo/mailproxy.yaml --resolver 127.0.0.1:2553');
      const [doctorArgs, selftestArgs, statsArgs] = printed as [string[], string[], string[]];

      const sendIn = await mailproxy(['send', '--server', '127.0.0.1:2525', '--from', 'someone@example.net', '--to', 'alice@demo.test', '--subject', 'counted'], cwd);
      expect(sendIn.stdout).toContain('accepted: alice@demo.test');
      // A user the backend does not have is refused as a real backend refuses it, through haraka-in.
      const unknown = await mailproxy(['send', '--server', '127.0.0.1:2525', '--from', 'someone@example.net', '--to', 'carol@demo.test'], cwd);
      expect(unknown.code).not.toBe(0);
      expect(unknown.stderr).toContain('550 5.1.1 <carol@demo.test>');

      const doctor = await mailproxy(doctorArgs, cwd);
      expect(doctor.stdout, doctor.stderr).toMatch(/^mailproxy doctor OK: 13 pass\n/);
      for (const name of ['address@mx.demo.test', 'ptr@192.0.2.25', 'mx@demo.test', 'spf@demo.test', 'spf.ip@demo.test', 'dmarc@demo.test', 'dnsbl@zen.spamhaus.org']) {
        expect(doctor.stdout).toMatch(new RegExp(`^PASS +${name.replace(/\./g, '\\.')} `, 'm'));
      }
      expect(doctor.code).toBe(0);

      const selftest = await mailproxy(selftestArgs, cwd);
      expect(selftest.stdout, selftest.stderr).toMatch(/^mailproxy selftest OK: 10 pass\n/);
      expect(selftest.stdout).toMatch(/^PASS +rdns@192\.0\.2\.25 +SMTP Reverse DNS Mismatch +PTR of 192\.0\.2\.25 is mx\.demo\.test, which resolves back to it/m);
      expect(selftest.stdout).toMatch(/^PASS +relay@127\.0\.0\.1:2525 +SMTP Open Relay +127\.0\.0\.1:2525 refused all 39 attempts/m);
      expect(selftest.stdout).toMatch(/^PASS +tls@127\.0\.0\.1:2525 .*chain verified/m);
      expect(selftest.code).toBe(0);

      // Every session haraka-in had: the demo's banner check, the message above, the refused one and
      // selftest's, from loopback, so not checked by the edge, and counted as such.
      const stats = await eventually(
        'stats counting the sessions',
        async () => {
          const ran = await mailproxy(statsArgs, cwd);
          const sessions = Number(/^ {2}total +(\d+)$/m.exec(ran.stdout)?.[1] ?? 0);
          return ran.code === 0 && sessions >= 4 && / 1 messages$/m.test(ran.stdout) && ran;
        },
        { timeoutMs: 10_000 },
      );
      const accepted = /^ {2}accepted +(\d+) +100\.0 %, 1 messages$/m.exec(stats.stdout)?.[1];
      expect(accepted, stats.stdout).toBeDefined();
      expect(stats.stdout).toContain(`\n    not checked (loopback)       ${accepted!.padStart(8)}\n`);
      expect(stats.stdout).toMatch(/^ {2}refused +0 +0\.0 %$/m);

      // Half done: a domain without records, and a public address without its PTR and A record.
      const config = parse(readFileSync(path.join(cwd, '.demo/mailproxy.yaml'), 'utf8')) as { domains: string[]; public_ipv4: string };
      const half = path.join(cwd, 'half.yaml');
      writeFileSync(half, stringify({ ...config, domains: [...config.domains, 'half.test'], public_ipv4: '198.51.100.25' }));
      const halfDoctor = await mailproxy(['doctor', '--config', half, '--resolver', '127.0.0.1:2553'], cwd);
      expect(halfDoctor.code).toBe(2);
      expect(halfDoctor.stdout).toMatch(/^FAIL +mx@half\.test .*\n +fix: publish half\.test\. MX 10 mx\.demo\.test\./m);
      expect(halfDoctor.stdout).toMatch(/^FAIL +ptr@198\.51\.100\.25 .*\n +fix: ask your VPS provider to set the PTR \(reverse DNS\) of 198\.51\.100\.25 to mx\.demo\.test/m);
      expect(halfDoctor.stdout).toMatch(/^FAIL +spf\.ip@demo\.test .*does not authorize 198\.51\.100\.25/m);
      const halfSelftest = await mailproxy(['selftest', '--config', half, '--resolver', '127.0.0.1:2553', '--ca', '.demo/tls/fullchain.pem'], cwd);
      expect(halfSelftest.code).toBe(2);
      expect(halfSelftest.stdout).toMatch(/^FAIL +rdns@198\.51\.100\.25 .*\n +fix: ask your VPS provider to set the PTR \(reverse DNS\) of 198\.51\.100\.25 to mx\.demo\.test/m);
    });
  }, 180_000); // the demo's start and seven commands, on a loaded 2-core runner
});
