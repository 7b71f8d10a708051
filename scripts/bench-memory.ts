// `npm run bench:memory`: haraka-in's peak RSS while it holds many large messages at once. A script that
// prints figures, never a test (docs/BENCHMARKS.md, "Memory").
//
// haraka-in is started through the loopback topology (the rendered config, HARAKA_NODE_ARGS: the V8 flags
// the systemd units use), pinned to CPU 0 (one vCPU, like the VPS), in front of a backend sink in this
// process. MEMORY_CONNECTIONS clients connect at once, each gets to DATA's 354, and then all of them send
// one message of MEMORY_SIZE bytes at the same moment. Haraka keeps a message until the backend answers
// its end of data, so by default the sink withholds every end-of-data reply until all messages have
// reached it: every message is then held by haraka-in at the same time (the worst case). haraka-in's RSS
// is read from /proc/PID/status every 50 ms; VmHWM (the kernel's high-water mark) catches a peak between
// two samples. Haraka runs on the Node that runs this script (`npm run bench:memory` uses the `node` on PATH;
// run dist/scripts/bench-memory.js with another binary to measure that one).
//
// Options (env):
//   MEMORY_CONNECTIONS  clients at once, one message each (default 200)
//   MEMORY_SIZE         message size in bytes; a comma list runs each size against a fresh haraka-in
//                       (default 921600, 900 KB)
//   MEMORY_BACKEND      'hold' (default): end-of-data replies wait until every message has arrived (at most
//                       MEMORY_HOLD_MAX_MS, default 30000); or a number of ms each reply is delayed (0: at once)
//   MEMORY_SPOOL_AFTER  replaces the rendered connection.ini spool_after (to compare values without a rebuild)
//   MEMORY_LINE_LENGTH  bytes per body line, CRLF included (default 78; 2: empty lines, the most lines per byte)
//   MEMORY_CLIENT_RATE  KB/s each client sends its message at, in 8 KB writes; 0: all of it at once. A comma
//                       list runs each rate (default '0,100'). Unpaced over loopback the data arrives faster than
//                       haraka-in can write it to its spool files, so spool_after cannot bound that case.
// Bounded: a run gives up after MEMORY_DEADLINE_MS (default 180000) and the script exits 1 when the count
// delivered differs from the count sent.
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { LOOPBACK } from '../src/demo/topology';
import { HARAKA_NODE_ARGS } from '../src/haraka/process';
import { SmtpScript, type Reply } from '../src/smtp/script';
import { portsFrom, randomBasePort, startPinnedHarakaIn } from './bench-setup';

const CONNECTIONS = Number(process.env.MEMORY_CONNECTIONS ?? 200);
const SIZES = (process.env.MEMORY_SIZE ?? '921600').split(',').map((size) => Number(size.trim()));
const BACKEND = process.env.MEMORY_BACKEND ?? 'hold';
const HOLD_MAX_MS = Number(process.env.MEMORY_HOLD_MAX_MS ?? 30_000);
const SPOOL_AFTER = process.env.MEMORY_SPOOL_AFTER;
const DEADLINE_MS = Number(process.env.MEMORY_DEADLINE_MS ?? 180_000);
const LINE_LENGTH = Math.max(2, Number(process.env.MEMORY_LINE_LENGTH ?? 78));
const CLIENT_RATES = (process.env.MEMORY_CLIENT_RATE ?? '0,100').split(',').map((rate) => Number(rate.trim()));
const PACED_WRITE = 8 * 1024;
const SAMPLE_MS = 50;
const BASE_PORT = randomBasePort();

function messageOfSize(bytes: number): Buffer {
  const header = 'From: load@example.net\r\nTo: alice@demo.test\r\nSubject: memory bench\r\n\r\n';
  const line = `${'x'.repeat(LINE_LENGTH - 2)}\r\n`;
  const body = line.repeat(Math.max(1, Math.floor((bytes - header.length) / line.length)));
  // No line starts with a dot: the message is its own DATA payload.
  return Buffer.from(`${header}${body}.\r\n`, 'latin1');
}

interface Memory {
  rssKb: number;
  hwmKb: number;
}

function memoryOf(pid: number): Memory | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+) kB/.exec(status);
    const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
    return rss && hwm ? { rssKb: Number(rss[1]), hwmKb: Number(hwm[1]) } : null;
  } catch {
    return null;
  }
}

const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;

/** The backend stand-in: advertises XCLIENT, accepts everything, counts messages, keeps no body. */
interface Backend {
  delivered: number;
  bytes: number;
  /** messages whose end-of-data reply is being withheld right now, and the most at once */
  held: number;
  maxHeld: number;
  close(): Promise<void>;
}

async function startBackend(port: number, expected: number): Promise<Backend> {
  const waiting: (() => void)[] = [];
  const backend: Backend = { delivered: 0, bytes: 0, held: 0, maxHeld: 0, close: async () => undefined };
  let arrived = 0;
  const release = () => {
    for (const answer of waiting.splice(0)) answer();
  };
  const server = new SMTPServer({
    name: 'backend.test',
    banner: 'mailproxy memory bench backend',
    logger: false,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    useXClient: true,
    size: 0,
    onData(stream, _session, callback) {
      let bytes = 0;
      stream.on('data', (chunk: Buffer) => (bytes += chunk.length));
      stream.on('end', () => {
        arrived += 1;
        const answer = () => {
          backend.held -= 1;
          backend.delivered += 1;
          backend.bytes += bytes;
          callback();
        };
        backend.held += 1;
        backend.maxHeld = Math.max(backend.maxHeld, backend.held);
        if (BACKEND === 'hold') {
          waiting.push(answer);
          if (arrived >= expected) release();
        } else {
          setTimeout(answer, Number(BACKEND));
        }
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(port, LOOPBACK.backend, () => resolve());
  });
  // Never hold longer than HOLD_MAX_MS: the run stays bounded when a message never arrives.
  const holdTimer = setInterval(release, HOLD_MAX_MS);
  backend.close = () =>
    new Promise((resolve) => {
      clearInterval(holdTimer);
      release();
      server.close(() => resolve());
    });
  return backend;
}

function lastWords(output: string, child: { exitCode: number | null; signalCode: NodeJS.Signals | null }): string {
  const lines = output.split('\n');
  const fatal = lines.find((line) => line.includes('FATAL')) ?? lines.reverse().find((line) => /error/i.test(line));
  return `${fatal?.trim() ?? 'no error printed'} (exit ${child.exitCode ?? child.signalCode})`;
}

async function expect(reply: Promise<Reply>, code: number, what: string): Promise<void> {
  const got = await reply;
  if (got.code !== code) throw new Error(`${what}: ${got.code} ${got.text}`);
}

interface RunResult {
  size: number;
  spoolAfter: string;
  baseline: Memory;
  peakSampledKb: number;
  hwmKb: number;
  after: Memory | null;
  accepted: number;
  failures: string[];
  delivered: number;
  maxHeld: number;
  seconds: number;
  /** Set when haraka-in exited during the run: its last words (a V8 heap limit, for one). */
  died: string | null;
}

async function run(root: string, size: number, clientRate: number, index: number): Promise<RunResult> {
  const ports = portsFrom(BASE_PORT + 10 * index);
  const backend = await startBackend(ports.backend, CONNECTIONS);
  let spoolAfter = '?';
  const topology = await startPinnedHarakaIn({
    stateDir: path.join(root, `run-${index}`),
    ports,
    tweak: (config) => {
      config.log_level = 'warn';
      // BENCH_DEFAULT_BACKEND_CAP=1: the production backend session cap (limits.max_backend_sessions),
      // which bounds how many messages haraka-in holds at once; the senders still share one address.
      if (process.env.BENCH_DEFAULT_BACKEND_CAP === '1') config.limits = { ...config.limits, max_backend_sessions: 50 };
    },
    transformFiles: (files) => {
      let ini = files.get('haraka-in/config/connection.ini') ?? '';
      if (SPOOL_AFTER !== undefined) ini = ini.replace(/^spool_after=.*$/m, `spool_after=${SPOOL_AFTER}`);
      files.set('haraka-in/config/connection.ini', ini);
      spoolAfter = /^spool_after=(.*)$/m.exec(ini)?.[1] ?? '?';
    },
  });
  const haraka = topology.haraka['haraka-in'];
  const pid = haraka?.child.pid;
  if (!haraka || !pid) throw new Error('haraka-in has no pid');
  let peakSampledKb = 0;
  const sampler = setInterval(() => {
    const memory = memoryOf(pid);
    if (memory) peakSampledKb = Math.max(peakSampledKb, memory.rssKb);
  }, SAMPLE_MS);
  try {
    // Baseline: haraka-in idle after its start (a second of samples).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const baseline = memoryOf(pid);
    if (!baseline) throw new Error('cannot read haraka-in memory');
    peakSampledKb = baseline.rssKb;

    const payload = messageOfSize(size);
    const failures: string[] = [];
    let accepted = 0;
    let ready = 0;
    let go: () => void = () => undefined;
    const allReady = new Promise<void>((resolve) => (go = resolve));
    const started = process.hrtime.bigint();
    const client = async (): Promise<void> => {
      let session: SmtpScript | null = null;
      let counted = false;
      try {
        session = await SmtpScript.connect(topology.inbound.host, topology.inbound.port, '127.0.0.9');
        const s = session;
        await expect(s.reply(60_000), 220, 'banner');
        await expect(s.command('EHLO load.example.net', 60_000), 250, 'EHLO');
        await expect(s.command(`MAIL FROM:<load@example.net> SIZE=${payload.length}`, 60_000), 250, 'MAIL');
        await expect(s.command('RCPT TO:<alice@demo.test>', 60_000), 250, 'RCPT');
        await expect(s.command('DATA', 60_000), 354, 'DATA');
        // Every client sends its message at the same moment.
        counted = true;
        ready += 1;
        if (ready === CONNECTIONS) go();
        await allReady;
        if (clientRate > 0) {
          // PACED_WRITE bytes every PACED_WRITE / rate seconds, so that the client averages clientRate KB/s.
          const pauseMs = (PACED_WRITE / (clientRate * 1024)) * 1000;
          for (let offset = 0; offset < payload.length; offset += PACED_WRITE) {
            s.write(payload.subarray(offset, offset + PACED_WRITE));
            await new Promise((resolve) => setTimeout(resolve, pauseMs));
          }
        } else {
          s.write(payload);
        }
        await expect(s.reply(DEADLINE_MS), 250, 'end of data');
        accepted += 1;
        s.write('QUIT\r\n');
      } catch (err) {
        failures.push((err as Error).message);
        if (!counted) {
          ready += 1;
          if (ready === CONNECTIONS) go();
        }
      } finally {
        session?.close();
      }
    };
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), DEADLINE_MS)));
    const outcome = await Promise.race([Promise.all(Array.from({ length: CONNECTIONS }, client)), deadline]);
    clearTimeout(timer);
    if (outcome === 'deadline') failures.push(`deadline of ${DEADLINE_MS} ms reached`);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const final = memoryOf(pid);
    // A second after the last reply: what haraka-in gives back.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return {
      size: payload.length,
      spoolAfter,
      baseline,
      peakSampledKb: Math.max(peakSampledKb, final?.rssKb ?? 0),
      hwmKb: final?.hwmKb ?? NaN,
      after: memoryOf(pid),
      accepted,
      failures,
      delivered: backend.delivered,
      maxHeld: backend.maxHeld,
      seconds,
      died: haraka.child.exitCode !== null || haraka.child.signalCode !== null ? lastWords(haraka.output(), haraka.child) : null,
    };
  } finally {
    clearInterval(sampler);
    await topology.stop();
    await backend.close();
  }
}

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-bench-memory-'));
  const backendMode =
    BACKEND === 'hold' ? `withholds every end-of-data reply until all ${CONNECTIONS} messages have arrived (at most ${HOLD_MAX_MS} ms)` : `answers end of data after ${BACKEND} ms`;
  console.log(
    `mailproxy memory bench: ${CONNECTIONS} connections at once, one message each (body lines of ${LINE_LENGTH} bytes); haraka-in on CPU 0 with ${HARAKA_NODE_ARGS.join(' ')} (node ${process.version}); the backend ${backendMode}`,
  );
  let failed = false;
  try {
    const runs = CLIENT_RATES.flatMap((rate) => SIZES.map((size) => ({ rate, size })));
    for (const [index, { rate, size }] of runs.entries()) {
      const result = await run(root, size, rate, index);
      const pace = rate > 0 ? `each client sending at ${rate} KB/s` : 'each client sending all of it at once';
      const ok = result.failures.length === 0 && result.accepted === CONNECTIONS && result.delivered === CONNECTIONS;
      failed ||= !ok;
      console.log(
        `\nmessage ${result.size} bytes (${(result.size / 1024).toFixed(0)} KB), ${pace}, spool_after=${result.spoolAfter}: ` +
          `sent ${CONNECTIONS}, 250 after end of data ${result.accepted}, delivered to the backend ${result.delivered}${ok ? '' : '  MISMATCH'}; ` +
          `at most ${result.maxHeld} held by the backend at once; ${result.seconds.toFixed(1)} s`,
      );
      console.log(
        `  haraka-in RSS: baseline ${mb(result.baseline.rssKb)}, peak ${mb(result.peakSampledKb)} (sampled every ${SAMPLE_MS} ms), ` +
          `VmHWM ${result.died ? '?' : mb(result.hwmKb)} (${mb(result.baseline.hwmKb)} before traffic); ${result.after ? mb(result.after.rssKb) : '?'} a second after the last reply`,
      );
      if (result.died) console.log(`  haraka-in DIED during the run: ${result.died}`);
      if (result.failures.length > 0) {
        const counts = new Map<string, number>();
        for (const failure of result.failures) {
          // Without the queue id Haraka appends, so that equal failures are counted together.
          const text = failure.replace(/ \([0-9A-F-]+\.\d+\)$/, '');
          counts.set(text, (counts.get(text) ?? 0) + 1);
        }
        for (const [failure, count] of counts) console.log(`  failed x${count}: ${failure}`);
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  if (failed) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
