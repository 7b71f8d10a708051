// `npm start` runs `mailproxy demo`: this runs the real command and sends through it like a user would.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { eventually } from '../helpers/poll';

const root = path.resolve(__dirname, '../..');
const bin = path.join(root, 'bin/mailproxy.js');
const run = promisify(execFile);

async function waitForOutput(read: () => string, pattern: RegExp, timeoutMs: number): Promise<void> {
  await eventually(`demo output matching ${pattern}`, () => pattern.test(read()), { timeoutMs, context: read });
}

describe('the demo', () => {
  it('carries a message in to the backend stand-in and one out to the internet sink, then stops cleanly on Ctrl-C', async () => {
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-demo-'));
    const demo = spawn(process.execPath, [bin, 'demo'], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: '' } });
    let output = '';
    demo.stdout.on('data', (chunk) => (output += chunk));
    demo.stderr.on('data', (chunk) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
    try {
      await waitForOutput(() => output, /Press Ctrl-C to stop/, 60_000);
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
        bin, 'send', '--server', '127.0.0.3:2526', '--local-address', '127.0.0.2', '--from', 'alice@demo.test', '--to', 'bob@example.net', '--subject', 'demo out',
      ]);
      expect(sendOut.stdout).toContain('accepted: bob@example.net');
      await waitForOutput(() => output, /backend stand-in[^\n]*\n[^\n]*RCPT TO:<alice@demo.test>\n\s+XCLIENT: [^\n]*ADDR=127\.0\.0\.1[^\n]*\n\s+Subject: demo in/, 20_000);
      await waitForOutput(() => output, /internet MX[^\n]*\n[^\n]*RCPT TO:<bob@example.net>\n[^\n]*\n\s+Subject: demo out/, 20_000);
    } finally {
      demo.kill('SIGINT');
      const code = await exited;
      const leftovers = await run('pgrep', ['-f', cwd]).then(
        (result) => result.stdout.trim(),
        () => '',
      );
      rmSync(cwd, { recursive: true, force: true });
      expect(code).toBe(0);
      expect(leftovers, 'processes left behind by the demo').toBe('');
    }
    expect(output).toContain('stopped.');
  });
});
