// mailproxy-notify in a real Haraka: NOTIFY_SOCKET points at a datagram socket a python3 listener holds
// (Node has no unix datagram sockets), and the real systemd-notify binary sends. The listener plays
// systemd's part: it takes the sender's credentials, closes the BARRIER=1 pipe systemd-notify waits on,
// and, the moment READY=1 arrives, connects to the instance's port itself, so "ready" is checked against
// what the port does at that instant.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { INTERNET_DOMAIN, LOOPBACK, startTopology, type Topology, type TopologyOptions } from '../../src/demo/topology';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { missingPeers, requirePeers } from '../helpers/peers';
import { eventually } from '../helpers/poll';
import { loopbackPorts } from '../helpers/topology';

/** Debian's python3 first (CI installs python3-minimal); a developer's own python3 otherwise. */
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find(isExecutable) ?? '/usr/bin/python3';
const SYSTEMD_NOTIFY = '/usr/bin/systemd-notify';
const runnable = requirePeers('mailproxy-notify against systemd-notify', missingPeers([PYTHON, SYSTEMD_NOTIFY]));

/** 1 s between pings: the plugin pings at half of WATCHDOG_USEC. */
const WATCHDOG_USEC = 2_000_000;

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const LISTENER = String.raw`
import json, os, socket, struct, sys, time
path = sys.argv[1]
probe = (sys.argv[2], int(sys.argv[3])) if len(sys.argv) > 3 else None
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"listening": path}), flush=True)

def banner():
    try:
        c = socket.create_connection(probe, timeout=5)
        data = b""
        while b"\r\n" not in data:
            chunk = c.recv(512)
            if not chunk:
                break
            data += chunk
        c.sendall(b"QUIT\r\n")
        c.close()
        return data.split(b"\r\n")[0].decode("latin-1")
    except OSError as e:
        return "error: %s" % e

while True:
    data, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(64) + socket.CMSG_SPACE(12))
    t = time.time()
    pid = None
    for level, kind, cdata in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", cdata[:12])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for fd in struct.unpack("%di" % (len(cdata) // 4), cdata[: len(cdata) // 4 * 4]):
                os.close(fd)
    text = data.decode("utf-8", "replace")
    record = {"t": t, "pid": pid, "text": text}
    if probe and "READY=1" in text.split("\n"):
        record["probe"] = banner()
    print(json.dumps(record), flush=True)
`;

interface Notification {
  /** Wall-clock ms when the listener received it. */
  t: number;
  /** The sender's PID from SCM_CREDENTIALS. */
  pid: number | null;
  fields: Map<string, string>;
  text: string;
  /** The first line the instance's port answered with when READY=1 arrived. */
  probe?: string;
}

interface NotifyListener {
  socketPath: string;
  notifications: Notification[];
  /** The notifications whose MAINPID= is this process. */
  from(pid: number): Notification[];
  waitFor(what: string, pick: () => Notification | undefined, timeoutMs?: number): Promise<Notification>;
  close(): void;
}

async function startListener(dir: string, probe?: { host: string; port: number }): Promise<NotifyListener> {
  const socketPath = path.join(dir, 'notify.sock');
  const child: ChildProcess = spawn(PYTHON, ['-c', LISTENER, socketPath, ...(probe ? [probe.host, String(probe.port)] : [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const notifications: Notification[] = [];
  let stderr = '';
  let pending = '';
  let listening: (() => void) | null = null;
  child.stderr?.on('data', (chunk: Buffer) => void (stderr += chunk.toString('utf8')));
  child.stdout?.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const record = JSON.parse(line) as { listening?: string; t: number; pid: number | null; text: string; probe?: string };
      if (record.listening) {
        listening?.();
        continue;
      }
      const fields = new Map<string, string>();
      for (const field of record.text.split('\n')) {
        const at = field.indexOf('=');
        if (at > 0) fields.set(field.slice(0, at), field.slice(at + 1));
      }
      notifications.push({ t: record.t * 1000, pid: record.pid, fields, text: record.text, ...(record.probe ? { probe: record.probe } : {}) });
    }
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`python3 listener did not start: ${stderr}`)), 10_000);
    listening = () => {
      clearTimeout(timer);
      resolve();
    };
    child.once('exit', (code) => reject(new Error(`python3 listener exited with ${code}: ${stderr}`)));
  });
  const dump = () => notifications.map((n) => `${new Date(n.t).toISOString()} pid=${n.pid} ${JSON.stringify(n.text)}${n.probe ? ` probe=${n.probe}` : ''}`).join('\n');
  return {
    socketPath,
    notifications,
    from: (pid) => notifications.filter((n) => n.fields.get('MAINPID') === String(pid)),
    waitFor: (what, pick, timeoutMs = 20_000) => eventually(what, pick, { timeoutMs, context: () => `notifications so far:\n${dump()}` }),
    close: () => void child.kill('SIGKILL'),
  };
}

/**
 * A test-only Haraka plugin that holds every listener back for 1.5 s before it binds. Haraka binds within
 * milliseconds of loading its plugins, less than one systemd-notify run takes, so without the delay a
 * READY=1 sent too early (at plugin load) would still find the port open by the time it arrived.
 */
const SLOW_BIND = `// test only (test/integration/notify.test.ts): bind each listener 1.5 s late.
const { Endpoint } = require('haraka-net-utils')
exports.register = function () {
  const bind = Endpoint.prototype.bind
  Endpoint.prototype.bind = async function (...args) {
    await new Promise((resolve) => setTimeout(resolve, 1500))
    return bind.apply(this, args)
  }
}
`;

function withSlowBind(files: Map<string, string>): void {
  files.set('haraka-in/plugins/test_slow_bind.js', SLOW_BIND);
  files.set('haraka-in/config/plugins', `${files.get('haraka-in/config/plugins') ?? ''}test_slow_bind\n`);
}

/** A topology on ports the test knows before Haraka starts (the listener probes them). */
async function withNotifyTopology<T>(
  dir: string,
  options: Omit<TopologyOptions, 'stateDir' | 'ports'>,
  body: (t: Topology, ports: Awaited<ReturnType<typeof loopbackPorts>>) => Promise<T>,
  ports?: Awaited<ReturnType<typeof loopbackPorts>>,
): Promise<T> {
  const chosen = ports ?? (await loopbackPorts());
  const topology = await startTopology({ ...options, stateDir: path.join(dir, 'topology'), ports: chosen });
  try {
    return await body(topology, chosen);
  } finally {
    await topology.stop();
  }
}

function pidOf(t: Topology, name: 'haraka-in' | 'haraka-out'): number {
  const pid = t.haraka[name]?.child.pid;
  if (!pid) throw new Error(`${name} has no pid`);
  return pid;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.runIf(runnable)('mailproxy-notify: systemd readiness, watchdog, status and stopping from inside Haraka', () => {
  it('haraka-in: READY=1 once the port answers, WATCHDOG=1 every second with live STATUS=, none while stopped, STOPPING=1 on SIGINT', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-notify-'));
    const ports = await loopbackPorts();
    const listener = await startListener(dir, { host: LOOPBACK.inbound, port: ports.inbound });
    try {
      await withNotifyTopology(
        dir,
        {
          instances: ['haraka-in'],
          harakaEnv: { NOTIFY_SOCKET: listener.socketPath, WATCHDOG_USEC: String(WATCHDOG_USEC) },
          transformFiles: withSlowBind,
        },
        async (t) => {
          const haraka = t.haraka['haraka-in']!;
          const pid = pidOf(t, 'haraka-in');
          const log = () => haraka.output().slice(-3000);

          expect(haraka.output(), 'the slow-bind test plugin ran').toMatch(/loading test_slow_bind/);
          // READY=1: the port answered with its banner at the moment READY=1 arrived.
          const ready = await listener.waitFor('READY=1', () => listener.from(pid).find((n) => n.fields.get('READY') === '1'));
          expect(ready.probe, log()).toMatch(/^220 mx\.demo\.test /);
          expect(ready.fields.get('STATUS')).toMatch(/^\d+ connections?, queue 0 \(0 due, 0 deferred\)$/);
          expect(listener.from(pid).indexOf(ready), 'nothing before READY=1').toBe(0);

          // WATCHDOG=1 keeps arriving, each well inside WATCHDOG_USEC of the last, each with STATUS=.
          await listener.waitFor('four WATCHDOG=1', () => listener.from(pid).filter((n) => n.fields.get('WATCHDOG') === '1')[3]);
          const pings = listener.from(pid).filter((n) => n.fields.get('WATCHDOG') === '1');
          const times = [ready.t, ...pings.map((n) => n.t)];
          for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!, 'gap between pings (ms)').toBeLessThan(WATCHDOG_USEC / 1000);
          for (const ping of pings) expect(ping.fields.get('STATUS')).toMatch(/connection/);

          // STATUS= is live: an open SMTP session shows up as one connection.
          const session = await openSession(t.inbound.host, t.inbound.port);
          const since = Date.now();
          await listener.waitFor('STATUS= with 1 connection', () => listener.from(pid).find((n) => n.t > since && n.fields.get('STATUS')?.startsWith('1 connection,')));

          // Only while the process runs: a stopped Haraka sends nothing, and pings resume when it continues.
          process.kill(pid, 'SIGSTOP');
          const stoppedAt = Date.now();
          await sleep(2_500);
          process.kill(pid, 'SIGCONT');
          const continuedAt = Date.now();
          // A systemd-notify already started may still land just after the stop.
          expect(listener.from(pid).filter((n) => n.t > stoppedAt + 500 && n.t < continuedAt)).toEqual([]);
          await listener.waitFor('WATCHDOG=1 after SIGCONT', () => listener.from(pid).find((n) => n.t > continuedAt && n.fields.get('WATCHDOG') === '1'));
          await eventually('the late tick to be logged', () => /event loop was blocked: watchdog tick \d+ ms late/.test(haraka.output()), { context: log });

          // STOPPING=1 on SIGINT, at the start of the graceful shutdown: the open session still holds Haraka up.
          haraka.child.kill('SIGINT');
          const stopping = await listener.waitFor('STOPPING=1', () => listener.from(pid).find((n) => n.fields.get('STOPPING') === '1'));
          expect(haraka.child.exitCode, 'Haraka still drains its session').toBeNull();
          expect(stopping.fields.get('STATUS')).toMatch(/^stopping/);
          session.close();
          expect(await haraka.exited).toBe(0);
          expect(haraka.output()).not.toMatch(/systemd-notify .* failed/);
        },
        ports,
      );
    } finally {
      listener.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('haraka-out: READY=1 only once its queue is loaded (STATUS= already counts the deferred message)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-notify-'));
    const ports = await loopbackPorts();
    const listener = await startListener(dir, { host: LOOPBACK.wireguard, port: ports.outbound });
    try {
      await withNotifyTopology(
        dir,
        { instances: ['haraka-out'], internet: false, harakaEnv: { NOTIFY_SOCKET: listener.socketPath, WATCHDOG_USEC: String(WATCHDOG_USEC) } },
        async (t) => {
          const first = pidOf(t, 'haraka-out');
          const firstReady = await listener.waitFor('READY=1', () => listener.from(first).find((n) => n.fields.get('READY') === '1'));
          expect(firstReady.probe).toMatch(/^220 /);
          expect(firstReady.fields.get('STATUS')).toMatch(/queue 0 \(0 due, 0 deferred\)$/);

          // One message the MX (down) defers: it waits 60 s in the queue for its retry.
          const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend });
          expect((await session.command('MAIL FROM:<alice@demo.test>')).code).toBe(250);
          expect((await session.command(`RCPT TO:<bob@${INTERNET_DOMAIN}>`)).code).toBe(250);
          expect((await session.command('DATA')).code).toBe(354);
          session.write(dataPayload(message('deferred', 'body')));
          expect((await session.reply()).code).toBe(250);
          session.close();
          const out = () => t.haraka['haraka-out']?.output() ?? '';
          await eventually('the delivery to be deferred', () => /Temp failing/.test(out()), { context: () => out().slice(-3000) });
          await listener.waitFor('STATUS= with the deferred message', () => listener.from(first).find((n) => n.fields.get('STATUS')?.endsWith('queue 1 (0 due, 1 deferred)')));

          // Restart: the new process reads the message back from disk before it says READY=1.
          await t.restart('haraka-out', 'SIGINT');
          await listener.waitFor('STOPPING=1 of the first haraka-out', () => listener.from(first).find((n) => n.fields.get('STOPPING') === '1'));
          const second = pidOf(t, 'haraka-out');
          const ready = await listener.waitFor('READY=1 of the restarted haraka-out', () => listener.from(second).find((n) => n.fields.get('READY') === '1'));
          expect(ready.probe).toMatch(/^220 /);
          expect(ready.fields.get('STATUS')).toMatch(/^\d+ connections?, queue 1 \(0 due, 1 deferred\)$/);
          // The log is another pipe than the notifications: its lines may arrive here a moment after them.
          await eventually('the loaded queue logged', () => /1 files in my temp fail queue/.test(out()), { context: () => out().slice(-3000) });
          expect(t.haraka['haraka-out']!.output()).toMatch(/1 files in my temp fail queue/);
        },
        ports,
      );
    } finally {
      listener.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('without NOTIFY_SOCKET nothing is sent (no systemd-notify runs) and mail still flows both ways', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-notify-'));
    // A systemd-notify first on PATH that only records that it ran.
    const fakeBin = path.join(dir, 'bin');
    const calls = path.join(dir, 'calls');
    mkdirSync(fakeBin);
    writeFileSync(path.join(fakeBin, 'systemd-notify'), `#!/bin/sh\necho "$*" >> '${calls}'\n`);
    chmodSync(path.join(fakeBin, 'systemd-notify'), 0o755);
    const PATH = `${fakeBin}:${process.env.PATH ?? ''}`;
    try {
      await withNotifyTopology(dir, { harakaEnv: { NOTIFY_SOCKET: undefined, WATCHDOG_USEC: String(WATCHDOG_USEC), PATH } }, async (t) => {
        const inbound = await openSession(t.inbound.host, t.inbound.port);
        expect((await inbound.command('MAIL FROM:<sender@example.net>')).code).toBe(250);
        expect((await inbound.command('RCPT TO:<alice@demo.test>')).code).toBe(250);
        expect((await inbound.command('DATA')).code).toBe(354);
        inbound.write(dataPayload(message('in without systemd', 'body')));
        expect((await inbound.reply()).code).toBe(250);
        inbound.close();
        const outbound = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend });
        expect((await outbound.command('MAIL FROM:<alice@demo.test>')).code).toBe(250);
        expect((await outbound.command(`RCPT TO:<bob@${INTERNET_DOMAIN}>`)).code).toBe(250);
        expect((await outbound.command('DATA')).code).toBe(354);
        outbound.write(dataPayload(message('out without systemd', 'body')));
        expect((await outbound.reply()).code).toBe(250);
        outbound.close();
        expect((await t.backend!.waitForMessages(1))[0]?.subject).toBe('in without systemd');
        expect((await t.internet!.waitForMessages(1))[0]?.subject).toBe('out without systemd');
        // Three ping intervals: a plugin that ignored the missing NOTIFY_SOCKET would have run the binary.
        await sleep(3 * (WATCHDOG_USEC / 2000));
        for (const name of ['haraka-in', 'haraka-out'] as const) {
          expect(t.haraka[name]!.output()).not.toMatch(/mailproxy-notify.*(systemd|READY)/);
        }
      });
      expect(existsSync(calls) ? readFileSync(calls, 'utf8') : 'never ran').toBe('never ran');

      // The same fake binary with NOTIFY_SOCKET set does run: the check above could have seen a call.
      await withNotifyTopology(
        dir,
        { instances: ['haraka-in'], backend: false, internet: false, harakaEnv: { NOTIFY_SOCKET: path.join(dir, 'nobody-listens.sock'), PATH } },
        async () => {
          await eventually('the fake systemd-notify to run', () => existsSync(calls) && /READY=1/.test(readFileSync(calls, 'utf8')));
        },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('with NOTIFY_SOCKET but no systemd-notify on PATH: one error line, and Haraka serves as usual', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-notify-'));
    try {
      await withNotifyTopology(
        dir,
        { instances: ['haraka-in'], backend: false, internet: false, harakaEnv: { NOTIFY_SOCKET: path.join(dir, 'notify.sock'), WATCHDOG_USEC: '2000000', PATH: dir } },
        async (t) => {
          const session = await openSession(t.inbound.host, t.inbound.port);
          expect((await session.command('EHLO client.example.net')).code).toBe(250);
          session.close();
          const output = t.haraka['haraka-in']!.output();
          expect(output.match(/systemd-notify is not on PATH/g)).toHaveLength(1);
        },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
