// `npm run bench:store`: the backup MX (inbound.store_and_forward) with thousands of messages stored: how
// fast haraka-in stores them while the backend is down, what it costs in memory and CPU while they wait, how
// fast the drain hands them on when the backend is back, and what the drain does to live mail. A script that
// prints figures, never a test (docs/BENCHMARKS.md, "Backup MX").
//
// haraka-in runs through the loopback topology (the rendered config, store_and_forward on with its defaults:
// probe every 5 s, 2 drain sessions), pinned to CPU 0, logging at notice (the store, drain and hold
// decision lines). The backend stand-in (smtp-server with XCLIENT, in this process) learns haraka-in one
// recipient live and is then stopped. smtp-server waits 100 ms before its banner (its early-talker check,
// not configurable), so every backend session, live or drain, starts 100 ms late: with one session per
// stored message, that bounds the drain at drain_sessions × 10 msg/s; the CPU figures say what haraka-in
// itself spends. Rounds:
//
//   store    STORE_MESSAGES messages of STORE_SIZE bytes, one per connection, STORE_CONCURRENCY at a
//            time, each with its own envelope sender (store-<n>@example.net): every one must get 250 (kept)
//   waiting  the backend stays down for STORE_IDLE_S seconds with everything stored: haraka-in's CPU while
//            it probes (each probe lists the spool; once a minute the drain counts the spool's files again)
//   drain    the backend stand-in starts; time until every stored message arrived, and a count per sender
//            after two more probe intervals: each exactly once, none missing
//   again    the backend stops, the same number is stored again, and the backend starts with
//            STORE_LIVE_CLIENTS clients sending live mail (one message per connection, back to back) for as
//            long as the drain takes: their latency and rate, against the same clients for as long with
//            nothing to drain (as long as the drain took, at most a minute)
//
// Options (env): STORE_MESSAGES (5000), STORE_CONCURRENCY (50), STORE_SIZE (4096 bytes), STORE_IDLE_S (60),
// STORE_LIVE_CLIENTS (4), STORE_DRAIN_SESSIONS (drain_sessions; the default when unset), STORE_DEADLINE_MS.
//
// haraka-in's memory is read from /proc/PID/status: VmRSS sampled every 50 ms, and VmHWM, the kernel's
// high-water mark, reset at the start of each round by writing 5 to /proc/PID/clear_refs (root only;
// otherwise it is the peak since the start, and says so). Bounded: each wait gives up after
// STORE_DEADLINE_MS (default 900000), and the script exits 1 when a count is off.
import { percentile } from './percentile';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LOOPBACK, type Topology } from '../src/demo/topology';
import { HARAKA_NODE_ARGS } from '../src/haraka/process';
import { storePathsFor } from '../src/plugins/store-forward/store-dir';
import { dataPayload, SmtpScript, type Reply } from '../src/smtp/script';
import { startSmtpSink, type SmtpSink } from '../src/testpeers/smtp-sink';
import { cpuSeconds, loadOptions, messageOfSize as plainMessage, portsFrom, randomBasePort, startPinnedHarakaIn } from './bench-setup';

const { messages: MESSAGES, concurrency: CONCURRENCY, size: SIZE } = loadOptions('STORE', { messages: 5000, concurrency: 50, size: 4096 });
const LIVE_CLIENTS = Number(process.env.STORE_LIVE_CLIENTS ?? 4);
const IDLE_S = Number(process.env.STORE_IDLE_S ?? 60);
const DEADLINE_MS = Number(process.env.STORE_DEADLINE_MS ?? 900_000);
/** drain_sessions: the default (2) unless set. */
const DRAIN_SESSIONS = process.env.STORE_DRAIN_SESSIONS ? Number(process.env.STORE_DRAIN_SESSIONS) : undefined;
/** The live clients' run with nothing to drain lasts as long as the drain did, at most this long. */
const BASELINE_MAX_S = 60;
const PROBE_INTERVAL_S = 5; // the default probe_interval: the configuration an operator gets
const SAMPLE_MS = 50;
const BASE_PORT = randomBasePort();
/** The recipient of every message (the one messageOfSize's To: names). */
const RCPT = 'alice@demo.test';

const messageOfSize = (bytes: number, subject: string) => dataPayload(plainMessage(bytes, subject));

// ---------------------------------------------------------------------------------------------------------
// haraka-in's memory and CPU

interface Memory {
  rssKb: number;
  hwmKb: number;
}

function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rssKb: Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]), hwmKb: Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) };
}

/** Follows one round's memory: the highest VmRSS sampled, and VmHWM from a reset at the round's start. */
class Round {
  private peakRssKb = 0;
  private readonly timer: NodeJS.Timeout;
  readonly hwmReset: boolean;
  private readonly cpuAtStart: number;
  private readonly startedAt = process.hrtime.bigint();

  constructor(private readonly pid: number) {
    let reset = true;
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      reset = false;
    }
    this.hwmReset = reset;
    this.cpuAtStart = cpuSeconds(pid);
    this.peakRssKb = memoryOf(pid).rssKb;
    this.timer = setInterval(() => (this.peakRssKb = Math.max(this.peakRssKb, memoryOf(this.pid).rssKb)), SAMPLE_MS);
  }

  end(): { peakRssKb: number; hwmKb: number; rssKb: number; cpu: number; seconds: number } {
    clearInterval(this.timer);
    const memory = memoryOf(this.pid);
    return {
      peakRssKb: Math.max(this.peakRssKb, memory.rssKb),
      hwmKb: memory.hwmKb,
      rssKb: memory.rssKb,
      cpu: cpuSeconds(this.pid) - this.cpuAtStart,
      seconds: Number(process.hrtime.bigint() - this.startedAt) / 1e9,
    };
  }
}

const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;

// ---------------------------------------------------------------------------------------------------------
// The backend stand-in: counts what arrives per envelope sender, keeps no body.

interface Backend {
  sink: SmtpSink;
  /** Arrivals per stored message's sequence number. */
  stored: Map<number, number>;
  storedArrivals: number;
  /** Stored messages that arrived without XCLIENT ADDR=127.0.0.9 (the original client). */
  wrongClient: number;
  live: number;
  firstArrival: number | null;
  lastArrival: number | null;
}

async function startBackend(port: number): Promise<Backend> {
  const backend: Backend = { sink: null as unknown as SmtpSink, stored: new Map(), storedArrivals: 0, wrongClient: 0, live: 0, firstArrival: null, lastArrival: null };
  backend.sink = await startSmtpSink({
    host: LOOPBACK.backend,
    port,
    name: 'backend.test',
    xclient: true,
    reverseLookup: false,
    onMessage: (message) => {
      const seq = /^store-(\d+)@/.exec(message.mailFrom)?.[1];
      if (seq !== undefined) {
        backend.stored.set(Number(seq), (backend.stored.get(Number(seq)) ?? 0) + 1);
        backend.storedArrivals += 1;
        if (message.xclient.ADDR !== '127.0.0.9') backend.wrongClient += 1;
        backend.firstArrival ??= Date.now();
        backend.lastArrival = Date.now();
      } else {
        backend.live += 1;
      }
      // Nothing kept: the sink's own list would hold every body.
      backend.sink.messages.length = 0;
    },
  });
  return backend;
}

// ---------------------------------------------------------------------------------------------------------
// Clients

async function expectCode(reply: Promise<Reply>, code: number, what: string): Promise<Reply> {
  const got = await reply;
  if (got.code !== code) throw new Error(`${what}: ${got.code} ${got.text}`);
  return got;
}

/** One message over its own connection; resolves with the end-of-data reply. */
async function sendOne(t: Topology, from: string, payload: string): Promise<Reply> {
  const session = await SmtpScript.connect(t.inbound.host, t.inbound.port, '127.0.0.9');
  try {
    await expectCode(session.reply(60_000), 220, 'banner');
    await expectCode(session.command('EHLO load.example.net', 60_000), 250, 'EHLO');
    await expectCode(session.command(`MAIL FROM:<${from}>`, 60_000), 250, 'MAIL');
    await expectCode(session.command(`RCPT TO:<${RCPT}>`, 60_000), 250, 'RCPT');
    await expectCode(session.command('DATA', 60_000), 354, 'DATA');
    session.write(payload);
    const done = await expectCode(session.reply(60_000), 250, 'end of data');
    session.write('QUIT\r\n');
    return done;
  } finally {
    session.close();
  }
}

/** Stores `count` messages (senders store-<first>... ), CONCURRENCY at a time; all must be kept. */
async function storeMany(t: Topology, first: number, count: number): Promise<{ kept: number; failures: string[] }> {
  const payload = messageOfSize(SIZE, 'stored while the backend is away');
  let next = first;
  let kept = 0;
  const failures: string[] = [];
  const worker = async () => {
    while (next < first + count) {
      const seq = next++;
      try {
        const done = await sendOne(t, `store-${seq}@example.net`, payload);
        if (done.text.includes('Kept for the mail server')) kept += 1;
        else failures.push(`not kept: ${done.code} ${done.text}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { kept, failures };
}

interface LiveResult {
  forwarded: number;
  kept: number;
  failures: number;
  seconds: number;
  p50: number;
  p99: number;
}

/** LIVE_CLIENTS clients sending back to back until `until` resolves (or for `seconds`). */
async function liveTraffic(t: Topology, until: Promise<unknown> | number): Promise<LiveResult> {
  const payload = messageOfSize(SIZE, 'live');
  let stop = false;
  if (typeof until === 'number') setTimeout(() => (stop = true), until * 1000);
  else
    until.then(
      () => (stop = true),
      () => (stop = true),
    );
  const latencies: number[] = [];
  const result: LiveResult = { forwarded: 0, kept: 0, failures: 0, seconds: 0, p50: NaN, p99: NaN };
  const started = process.hrtime.bigint();
  let seq = 0;
  const worker = async () => {
    while (!stop) {
      const t0 = process.hrtime.bigint();
      try {
        const done = await sendOne(t, `live-${seq++}@example.net`, payload);
        if (done.text.includes('Queued by backend')) {
          result.forwarded += 1;
          latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        } else {
          result.kept += 1;
        }
      } catch {
        result.failures += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: LIVE_CLIENTS }, worker));
  result.seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  result.p50 = percentile(latencies, 50);
  result.p99 = percentile(latencies, 99);
  return result;
}

// ---------------------------------------------------------------------------------------------------------

async function eventually(what: string, probe: () => boolean, timeoutMs = DEADLINE_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function allArrived(backend: Backend, first: number, count: number): boolean {
  for (let seq = first; seq < first + count; seq++) if (!backend.stored.has(seq)) return false;
  return true;
}

interface DrainResult {
  fromStartS: number;
  firstToLastS: number;
  arrived: number;
  once: number;
  missing: number;
  twice: number;
  wrongClient: number;
  readyLeft: number;
}

/** Waits until stored messages first..first+count-1 all arrived, then two probe intervals more, and counts. */
async function awaitDrain(backend: Backend, startedAt: number, first: number, count: number, readyLeft: () => number): Promise<DrainResult> {
  await eventually(`${count} drained messages`, () => allArrived(backend, first, count));
  const lastArrival = backend.lastArrival as number;
  const firstArrival = backend.firstArrival as number;
  await sleep(2 * PROBE_INTERVAL_S * 1000 + 1000);
  let once = 0;
  let twice = 0;
  let missing = 0;
  for (let seq = first; seq < first + count; seq++) {
    const n = backend.stored.get(seq) ?? 0;
    if (n === 0) missing += 1;
    else if (n === 1) once += 1;
    else twice += 1;
  }
  return {
    fromStartS: (lastArrival - startedAt) / 1000,
    firstToLastS: (lastArrival - firstArrival) / 1000,
    arrived: backend.storedArrivals,
    once,
    missing,
    twice,
    wrongClient: backend.wrongClient,
    readyLeft: readyLeft(),
  };
}

function memoryLine(what: string, round: ReturnType<Round['end']>, hwmReset: boolean): string {
  return `  haraka-in ${what}: VmRSS peak ${mb(round.peakRssKb)} (sampled every ${SAMPLE_MS} ms), VmHWM ${mb(round.hwmKb)}${hwmReset ? '' : ' (since start: clear_refs refused)'}, ${mb(round.rssKb)} at the end; CPU ${round.cpu.toFixed(1)} s in ${round.seconds.toFixed(1)} s`;
}

function drainLine(result: DrainResult, count: number): string {
  const ok = result.once === count && result.missing === 0 && result.twice === 0 && result.wrongClient === 0 && result.readyLeft === 0;
  return (
    `  all ${count} arrived ${result.fromStartS.toFixed(1)} s after the backend started; ${(count / result.firstToLastS).toFixed(0)} msg/s from the first arrival to the last (${result.firstToLastS.toFixed(1)} s); ` +
    `arrived once ${result.once}, twice or more ${result.twice}, missing ${result.missing}, without the original client's XCLIENT ADDR ${result.wrongClient}; ${result.readyLeft} left in ready/${ok ? '' : '  MISMATCH'}`
  );
}

function liveLine(what: string, live: LiveResult): string {
  return `  live mail ${what}: ${(live.forwarded / live.seconds).toFixed(0)} msg/s forwarded over ${live.seconds.toFixed(1)} s, latency (connect to 250) p50 ${live.p50.toFixed(1)} ms p99 ${live.p99.toFixed(1)} ms; kept instead of forwarded ${live.kept}, failed ${live.failures}`;
}

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-bench-store-'));
  const ports = portsFrom(BASE_PORT);
  console.log(
    `mailproxy backup MX bench: ${MESSAGES} messages of ${SIZE} bytes stored by ${CONCURRENCY} clients at a time (one per connection), ` +
      `probe_interval ${PROBE_INTERVAL_S} s, drain_sessions ${DRAIN_SESSIONS ?? '2 (the default)'}; haraka-in on CPU 0 with ${HARAKA_NODE_ARGS.join(' ')} (node ${process.version})`,
  );
  let backend: Backend | null = await startBackend(ports.backend);
  const topology = await startPinnedHarakaIn({
    stateDir: root,
    ports,
    tweak: (config) => {
      config.log_level = 'notice';
      config.inbound = { ...config.inbound, store_and_forward: { enabled: true, ...(DRAIN_SESSIONS ? { drain_sessions: DRAIN_SESSIONS } : {}) } };
    },
  });
  const pid = topology.haraka['haraka-in']?.child.pid;
  if (!pid) throw new Error('haraka-in has no pid');
  const readyDir = path.join(storePathsFor(topology.config).spool, 'ready');
  const readyLeft = () => readdirSync(readyDir).filter((name) => name.endsWith('.json')).length;
  let failed = false;
  try {
    // The recipient cache learns alice from the backend's live 250.
    const learnt = await sendOne(topology, 'learn@example.net', messageOfSize(SIZE, 'learn'));
    if (!learnt.text.includes('Queued by backend')) throw new Error(`live delivery: ${learnt.code} ${learnt.text}`);
    await backend.sink.close();
    backend = null;
    await sleep(1000);
    console.log(`\nharaka-in idle before: ${mb(memoryOf(pid).rssKb)} RSS`);

    // store
    let round = new Round(pid);
    let stored = await storeMany(topology, 0, MESSAGES);
    let memory = round.end();
    failed ||= stored.kept !== MESSAGES || readyLeft() !== MESSAGES;
    console.log(
      `\nstore (backend down): ${stored.kept} of ${MESSAGES} kept (250), ${readyLeft()} in ready/, ${(stored.kept / memory.seconds).toFixed(0)} msg/s (${memory.seconds.toFixed(1)} s), ` +
        `haraka-in CPU ${((memory.cpu / MESSAGES) * 1000).toFixed(1)} ms per message`,
    );
    for (const failure of new Set(stored.failures)) console.log(`  failed: ${failure}`);
    console.log(memoryLine('while storing', memory, round.hwmReset));

    // waiting (after a probe interval to settle: the collection of what storing left is not counted)
    await sleep(PROBE_INTERVAL_S * 1000);
    round = new Round(pid);
    await sleep(IDLE_S * 1000);
    memory = round.end();
    console.log(`\nwaiting (backend down, ${MESSAGES} stored, ${IDLE_S} s = ${Math.round(IDLE_S / PROBE_INTERVAL_S)} probes):`);
    console.log(memoryLine('while waiting', memory, round.hwmReset));
    console.log(`  haraka-in CPU per probe interval: ${((memory.cpu / (IDLE_S / PROBE_INTERVAL_S)) * 1000).toFixed(0)} ms`);

    // drain
    round = new Round(pid);
    let startedAt = Date.now();
    backend = await startBackend(ports.backend);
    let drained = await awaitDrain(backend, startedAt, 0, MESSAGES, readyLeft);
    memory = round.end();
    failed ||= drained.once !== MESSAGES || drained.arrived !== MESSAGES || drained.wrongClient > 0 || drained.readyLeft > 0;
    console.log(`\ndrain (nothing else going on):`);
    console.log(drainLine(drained, MESSAGES));
    console.log(memoryLine('while draining (and two probe intervals after)', memory, round.hwmReset));
    console.log(`  haraka-in CPU per drained message: ${((memory.cpu / MESSAGES) * 1000).toFixed(1)} ms`);

    // again, with live mail during the drain
    await backend.sink.close();
    backend = null;
    round = new Round(pid);
    stored = await storeMany(topology, MESSAGES, MESSAGES);
    memory = round.end();
    failed ||= stored.kept !== MESSAGES;
    console.log(`\nstore again: ${stored.kept} of ${MESSAGES} kept, ${(stored.kept / memory.seconds).toFixed(0)} msg/s`);
    round = new Round(pid);
    startedAt = Date.now();
    backend = await startBackend(ports.backend);
    const current = backend;
    // Live mail from the moment the drain runs (before it, the backend counts as away and mail is kept).
    await eventually('the drain to start', () => current.firstArrival !== null);
    const during = await liveTraffic(
      topology,
      eventually('the drain to end', () => allArrived(current, MESSAGES, MESSAGES)),
    );
    drained = await awaitDrain(current, startedAt, MESSAGES, MESSAGES, readyLeft);
    memory = round.end();
    failed ||= drained.once !== MESSAGES || drained.wrongClient > 0 || drained.readyLeft > 0;
    console.log(`\ndrain with ${LIVE_CLIENTS} live clients sending meanwhile:`);
    console.log(drainLine(drained, MESSAGES));
    console.log(liveLine('during the drain', during));
    console.log(memoryLine('while draining', memory, round.hwmReset));
    const baseline = await liveTraffic(topology, Math.min(BASELINE_MAX_S, Math.max(5, during.seconds)));
    console.log(liveLine('with nothing to drain', baseline));
  } finally {
    await backend?.sink.close();
    await topology.stop();
    rmSync(root, { recursive: true, force: true });
  }
  if (failed) {
    console.log('\nA count is off (see MISMATCH above).');
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
