/**
 * Proves the real-Postfix test peer (test/fixtures/postfix.ts) works:
 * XCLIENT from an authorized host is honoured and visible in the log and the
 * delivered message, unknown users get 550 at RCPT, and XCLIENT can be turned off.
 *
 * Needs root + /usr/sbin/postfix + /usr/bin/swaks. Skipped (loudly) when they
 * are missing locally; FAILS when CI=true.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostfixInstance, postfixUnavailableReason, startPostfix } from '../fixtures/postfix';
import { missingPeers, requirePeers } from '../helpers/peers';

const SWAKS = '/usr/bin/swaks';
const DOMAIN = 'example.test';
const LISTEN = '127.0.0.2';
const FORWARDER = '127.0.0.3'; // the "mailproxy" source address, authorized for XCLIENT

const runnable = requirePeers('the real-Postfix test peer', missingPeers([SWAKS], [postfixUnavailableReason()]));

interface SwaksResult {
  code: number;
  output: string;
}

function swaks(pf: PostfixInstance, args: string[]): Promise<SwaksResult> {
  return new Promise((resolve) => {
    execFile(
      SWAKS,
      ['--server', pf.host, '--port', String(pf.port), '--local-interface', FORWARDER, '--timeout', '15', ...args],
      { timeout: 30_000, encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, output: `${stdout}${stderr}` });
      },
    );
  });
}

/** swaks as the forwarder: from sender@origin.example, EHLO mailproxy.test, XCLIENT for client.example [127.0.0.9] with HELO evil.example. */
function swaksXclient(pf: PostfixInstance, to: string, extra: string[] = []): Promise<SwaksResult> {
  return swaks(pf, [
    '--to',
    to,
    '--from',
    'sender@origin.example',
    '--helo',
    'mailproxy.test',
    ...extra,
    '--xclient-addr',
    '127.0.0.9',
    '--xclient-name',
    'client.example',
    '--xclient-helo',
    'evil.example',
  ]);
}

/** Minimal raw SMTP dialog from FORWARDER: returns every server reply (multi-line replies joined). */
function smtpDialog(pf: PostfixInstance, commands: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const replies: string[] = [];
    let buf = '';
    let cur: string[] = [];
    const pending = [...commands];
    const sock = net.connect({ host: pf.host, port: pf.port, localAddress: FORWARDER });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`SMTP dialog timed out; replies so far: ${JSON.stringify(replies)}`));
    }, 15_000);
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        cur.push(line);
        if (/^\d{3} /.test(line) || !/^\d{3}-/.test(line)) {
          replies.push(cur.join('\n'));
          cur = [];
          const next = pending.shift();
          if (next === undefined) {
            sock.end();
          } else {
            sock.write(`${next}\r\n`);
          }
        }
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(replies);
    });
  });
}

describe.runIf(runnable)('real Postfix test peer (test/fixtures/postfix.ts)', () => {
  let pf: PostfixInstance | undefined; // XCLIENT authorized for FORWARDER
  let pfNoX: PostfixInstance | undefined; // XCLIENT disabled
  let startMs = 0;

  beforeAll(async () => {
    const t0 = Date.now();
    // two instances at once, to prove they are independent
    const [a, b] = await Promise.allSettled([
      startPostfix({ listenHost: LISTEN, port: 0, domains: [DOMAIN], users: ['alice'], xclientHosts: [FORWARDER] }),
      startPostfix({
        listenHost: LISTEN,
        port: 0,
        domains: [DOMAIN],
        users: ['alice'],
        xclientHosts: [FORWARDER],
        advertiseXclient: false,
      }),
    ]);
    if (a.status === 'fulfilled') pf = a.value;
    if (b.status === 'fulfilled') pfNoX = b.value;
    if (a.status === 'rejected') throw a.reason;
    if (b.status === 'rejected') throw b.reason;
    startMs = Date.now() - t0;
  }, 60_000);

  afterAll(async () => {
    const dirs = [pf?.dir, pfNoX?.dir].filter((d): d is string => !!d);
    await Promise.all([pf?.stop(), pfNoX?.stop()]);
    if (!process.env.POSTFIX_FIXTURE_KEEP) for (const d of dirs) expect(fs.existsSync(d)).toBe(false);
  }, 60_000);

  it('starts two independent instances quickly and answers with the configured banner', async () => {
    expect(pf!.port).not.toBe(pfNoX!.port);
    expect(pf!.dir).not.toBe(pfNoX!.dir);
    expect(startMs).toBeLessThan(20_000);
    const [banner] = await smtpDialog(pf!, ['QUIT']);
    expect(banner).toBe('220 backend.test ESMTP');
  });

  it('accepts XCLIENT from the authorized host and delivers with the XCLIENT identity', async () => {
    const r = await swaksXclient(pf!, `alice@${DOMAIN}`, ['--header', 'Subject: fixture-xclient']);
    expect(r.output).toMatch(/250-XCLIENT/);
    expect(r.code, r.output).toBe(0);

    const m = await pf!.waitForLog(/smtpd\[\d+\]: ([0-9A-F]+): client=client\.example\[127\.0\.0\.9\]/);
    const queueId = m[1]!;
    await pf!.waitForLog(new RegExp(`${queueId}: to=<alice@example\\.test>, relay=virtual, .*status=sent`));

    const msgs = await pf!.waitForDelivered(1);
    const msg = msgs.find((x) => x.content.includes('Subject: fixture-xclient'));
    expect(msg, JSON.stringify(msgs)).toBeDefined();
    expect(msg!.recipient).toBe(`alice@${DOMAIN}`);
    expect(msg!.content).toMatch(/^Delivered-To: alice@example\.test$/m);
    // Postfix's Received header carries the XCLIENT NAME/ADDR. NOTE: the HELO
    // part is what the client sent in the EHLO that must follow XCLIENT (swaks
    // re-sends --helo), which overrides XCLIENT HELO=evil.example.
    expect(msg!.content).toMatch(
      new RegExp(`^Received: from mailproxy\\.test \\(client\\.example \\[127\\.0\\.0\\.9\\]\\)\\s+by backend\\.test \\(Postfix\\) with ESMTP id ${queueId}`, 'm'),
    );
    // the real peer address is not what Postfix recorded
    expect(await pf!.log()).toMatch(/connect from unknown\[127\.0\.0\.3\]/);
  });

  it('rejects unknown recipients with 550 5.1.1 at RCPT', async () => {
    const r = await swaksXclient(pf!, `nobody@${DOMAIN}`);
    expect(r.output).toMatch(/<\*\* +550 5\.1\.1 <nobody@example\.test>/);
    expect(r.code).not.toBe(0);
    const m = await pf!.waitForLog(/NOQUEUE: reject: RCPT from client\.example\[127\.0\.0\.9\]: 550 5\.1\.1 <nobody@example\.test>.*helo=<([^>]*)>/);
    // helo= is the post-XCLIENT EHLO argument, not XCLIENT HELO=
    expect(m[1]).toBe('mailproxy.test');
  });

  it('does not offer or accept XCLIENT when advertiseXclient is false', async () => {
    const r = await swaks(pfNoX!, ['--quit-after', 'EHLO']);
    expect(r.code, r.output).toBe(0);
    expect(r.output).toMatch(/<- {2}250[- ]/);
    expect(r.output).not.toMatch(/XCLIENT/);

    const replies = await smtpDialog(pfNoX!, ['EHLO mailproxy.test', 'XCLIENT ADDR=127.0.0.9 NAME=client.example', 'QUIT']);
    expect(replies[1]).not.toMatch(/XCLIENT/);
    expect(replies[2]).toMatch(/^550 5\.7\.0 .*insufficient authorization/);
    // and the authorized instance does advertise it to the same client
    const ok = await smtpDialog(pf!, ['EHLO mailproxy.test', 'QUIT']);
    expect(ok[1]).toMatch(/^250-XCLIENT /m);
  });

  it('keeps instances isolated (separate logs and mailboxes)', async () => {
    expect(await pfNoX!.delivered()).toEqual([]);
    expect(await pfNoX!.log()).not.toMatch(/client=client\.example/);
  });

  it('halts (the port refuses connections) and resumes on the same port with its mail and log kept', async () => {
    const delivered = (await pf!.delivered()).length;
    const logged = (await pf!.log()).length;
    expect(delivered).toBeGreaterThan(0);
    await pf!.halt();
    const refused = await new Promise<string>((resolve) => {
      const sock = net.connect({ host: pf!.host, port: pf!.port, localAddress: FORWARDER });
      sock.once('connect', () => {
        sock.destroy();
        resolve('connected');
      });
      sock.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect(refused).toBe('ECONNREFUSED');
    expect(fs.existsSync(pf!.dir)).toBe(true);
    await pf!.resume();
    const [banner] = await smtpDialog(pf!, ['QUIT']);
    expect(banner).toBe('220 backend.test ESMTP');
    expect((await pf!.delivered()).length).toBe(delivered);
    expect((await pf!.log()).length).toBeGreaterThanOrEqual(logged);
  });
});
