// `npm run bench`: throughput, latency and memory of haraka-in's forwarding, against a baseline measured
// in the same run. A script that prints figures, never a test.
//
//   direct      load generator -> the XCLIENT sink                  (the ceiling)
//   mailproxy   load generator -> haraka-in (mailproxy-forward, XCLIENT every session) -> the sink
//   rendered    the same haraka-in as installed: edge checks, limits, log level info
//   reuse       rendered, with backend.reuse_sessions (the sink takes every XCLIENT, as Postfix with static:all)
//   stock       load generator -> haraka-in (queue/smtp_forward) -> the sink
//   discard     load generator -> haraka-in (queue/discard): our haraka-in without forwarding
//   bare        load generator -> Haraka with only mailproxy-dns, rcpt_to.in_host_list and queue/discard: its floor
// (bench-variants.ts builds them; the sink, xclient-sink.ts, advertises XCLIENT with ADDR as Postfix does).
//
// Every haraka-in is pinned to CPU 0 with taskset (one is under load at a time); the load generator and
// the sink share the other CPU. All of them run at once and the rounds alternate between them, so a
// slow spell of this shared machine hits every variant alike; each variant is warmed up first (a
// long-running MX is warm) and the median round is reported. The rate is measured twice: one message per
// connection (as MTAs mostly send), and with connection reuse (smtp-source -d, message after message).
// Options (env): BENCH_MESSAGES (default 2000), BENCH_CONCURRENCY (50), BENCH_SIZE (4096 bytes),
// BENCH_SERIAL (100 messages over one connection per round), BENCH_ROUNDS (3), BENCH_SERIAL_ROUNDS (9).
// Last, haraka-out relays BENCH_MESSAGES messages from the backend's address to a loopback MX (rate and
// peak RSS), then BENCH_OUT_SERIAL (200) messages one after another over one connection from the backend's
// address (ms per message, and the kernel's TcpExt DelayedACKs during that run, per message), once one
// command at a time and once with MAIL, RCPT and DATA pipelined as Postfix sends them.
// BENCH_OUTBOUND_ONLY=1 runs only the two haraka-out measurements (a minute).
import { percentile } from './percentile';
import { EDGE_VARIANTS, freshAddress, LABELS, startHarakaIn, type Variant } from './bench-variants';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LOOPBACK, type Topology } from '../src/demo/topology';
import { cpuSeconds, expectCode, loadOptions, messageOfSize, oneMessage, peakRssMb, randomBasePort } from './bench-setup';
import { compareRelays } from './bench-relays';
import { waitForBanner } from '../src/haraka/process';
import { dataPayload, SmtpScript } from '../src/smtp/script';

const { messages: MESSAGES, concurrency: CONCURRENCY, size: SIZE } = loadOptions('BENCH', { messages: 2000, concurrency: 50, size: 4096 });
const SERIAL = Number(process.env.BENCH_SERIAL ?? 100);
// Short, many and alternating: one connection is latency-bound, and this machine's slow spells last seconds.
const SERIAL_ROUNDS = Number(process.env.BENCH_SERIAL_ROUNDS ?? 9);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const OUT_SERIAL = Number(process.env.BENCH_OUT_SERIAL ?? 200);
const RELAY_LOAD = { messages: MESSAGES, concurrency: CONCURRENCY, size: SIZE, serial: OUT_SERIAL };
const WARMUP = 500;
const BASE_PORT = randomBasePort();

interface LatencyResult {
  /** messages/s of the Node client that measures latency (slower than smtp-source: only its percentiles matter) */
  clientRate: number;
  p50: number;
  p99: number;
  failures: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/**
 * Postfix's smtp-source: N messages, C sessions at a time, one message per connection or (`keepConnection`,
 * its -d) each session sending message after message until all N are sent; returns messages/s.
 */
function smtpSourceRate(port: number, host: string, messages = MESSAGES, keepConnection = false): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(
      'taskset',
      [
        '-c',
        '1',
        '/usr/sbin/smtp-source',
        ...(keepConnection ? ['-d'] : []),
        '-s',
        String(CONCURRENCY),
        '-m',
        String(messages),
        '-l',
        String(SIZE),
        '-f',
        'load@example.net',
        '-t',
        'alice@demo.test',
        `${host}:${port}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    child.once('exit', (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code === 0) resolve(messages / seconds);
      else reject(new Error(`smtp-source exited ${code}: ${stderr.slice(-500)}`));
    });
  });
}

/** N messages, one per connection, C connections at a time. Latency: connect to the 250 after DATA. */
async function latency(port: number, host: string, source: (i: number) => string = () => '127.0.0.9'): Promise<LatencyResult> {
  const payload = dataPayload(messageOfSize(SIZE));
  const latencies: number[] = [];
  let next = 0;
  let failures = 0;
  const started = process.hrtime.bigint();
  const worker = async () => {
    while (next < MESSAGES) {
      next += 1;
      const from = source(next);
      const t0 = process.hrtime.bigint();
      try {
        const session = await SmtpScript.connect(host, port, from);
        await expectCode(session, null, 220);
        await expectCode(session, 'EHLO load.example.net', 250);
        await oneMessage(session, payload);
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        session.write('QUIT\r\n');
        session.close();
      } catch {
        failures += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  return { clientRate: latencies.length / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99), failures };
}

/** ms per message, SERIAL messages one after another over a single connection. */
async function serial(port: number, host: string): Promise<number> {
  const payload = dataPayload(messageOfSize(SIZE));
  const session = await SmtpScript.connect(host, port, '127.0.0.9');
  await expectCode(session, null, 220);
  await expectCode(session, 'EHLO load.example.net', 250);
  await oneMessage(session, payload); // warm up the backend session
  const started = process.hrtime.bigint();
  for (let i = 0; i < SERIAL; i++) await oneMessage(session, payload);
  const ms = Number(process.hrtime.bigint() - started) / 1e6 / SERIAL;
  session.close();
  return ms;
}

/** The backend stand-in (xclient-sink.ts) on CPU 1, beside the load generator. */
function startSink(port: number): ChildProcess {
  return spawn('taskset', ['-c', '1', process.execPath, path.join(__dirname, 'xclient-sink.js'), LOOPBACK.backend, String(port)], { stdio: 'ignore' });
}

function rateRow(name: string, rates: number[], rss?: number): string {
  const memory = rss === undefined ? '' : `  peak RSS ${rss.toFixed(0)} MB`;
  const all = rates.map((rate) => rate.toFixed(0)).join(' ');
  return `${name.padEnd(38)} ${median(rates).toFixed(0).padStart(6)} msg/s  (rounds: ${all})${memory}`;
}

function latencyRow(name: string, result: LatencyResult): string {
  return `${name.padEnd(38)} p50 ${result.p50.toFixed(1).padStart(6)} ms  p99 ${result.p99.toFixed(1).padStart(6)} ms  (client ${result.clientRate.toFixed(0)} msg/s, failures ${result.failures})`;
}

async function main(): Promise<void> {
  if (process.env.BENCH_OUTBOUND_ONLY) {
    const root = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-bench-'));
    try {
      await compareRelays(root, RELAY_LOAD);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
    return;
  }
  const root = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-bench-'));
  const sinkPort = BASE_PORT;
  const sink = startSink(sinkPort);
  // BENCH_VARIANTS=noedge,edge,edgednsbl runs only those (figures of the others then read NaN).
  const variants = (['mailproxy', 'rendered', 'reuse', 'stock', 'discard', 'bare', 'noedge', 'edge', 'edgednsbl'] as Variant[]).filter(
    (variant) => !process.env.BENCH_VARIANTS || process.env.BENCH_VARIANTS.split(',').includes(variant),
  );
  const running = new Map<Variant, Topology>();
  try {
    await waitForBanner(LOOPBACK.backend, sinkPort);
    for (const [index, variant] of variants.entries()) running.set(variant, await startHarakaIn(root, variant, sinkPort, BASE_PORT + 10 * (index + 1)));
    const targets: [Variant | 'direct', string, number][] = [
      ['direct', LOOPBACK.backend, sinkPort],
      ...variants.map((variant): [Variant, string, number] => [variant, LOOPBACK.inbound, running.get(variant)!.inbound.port]),
    ];
    console.log(
      `mailproxy bench: ${MESSAGES} messages of ${SIZE} bytes, ${CONCURRENCY} connections, one message per connection, ${ROUNDS} alternating rounds after a warm-up; haraka-in on CPU 0`,
    );
    for (const [, host, port] of targets) await smtpSourceRate(port, host, WARMUP);

    const rates = new Map<string, number[]>(targets.map(([name]) => [name, []]));
    const serialMs = new Map<string, number[]>(targets.map(([name]) => [name, []]));
    const pidOf = (name: string) => (name === 'direct' ? undefined : running.get(name as Variant)?.haraka['haraka-in']?.child.pid);
    const cpuBefore = new Map(targets.map(([name]) => [name, cpuSeconds(pidOf(name))]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, host, port] of targets) rates.get(name)!.push(await smtpSourceRate(port, host));
    }
    const cpuPerMessageMs = new Map(targets.map(([name]) => [name, ((cpuSeconds(pidOf(name)) - (cpuBefore.get(name) ?? NaN)) * 1000) / (ROUNDS * MESSAGES)]));
    const keptRates = new Map<string, number[]>(targets.map(([name]) => [name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, host, port] of targets) keptRates.get(name)!.push(await smtpSourceRate(port, host, MESSAGES, true));
    }
    for (let round = 0; round < SERIAL_ROUNDS; round++) {
      for (const [name, host, port] of targets) serialMs.get(name)!.push(await serial(port, host));
    }
    console.log('\nrate (smtp-source, median of the rounds):');
    for (const [name] of targets) {
      const pid = name === 'direct' ? undefined : running.get(name)?.haraka['haraka-in']?.child.pid;
      console.log(rateRow(LABELS[name], rates.get(name)!, pid === undefined ? undefined : peakRssMb(pid)));
    }
    console.log(`\nrate with connection reuse (smtp-source -d: each of the ${CONCURRENCY} sessions sends message after message), median of the rounds:`);
    for (const [name] of targets) console.log(rateRow(LABELS[name], keptRates.get(name)!));
    console.log('\nharaka-in CPU time per message during those rounds (user + system, from /proc):');
    for (const [name] of targets) if (name !== 'direct') console.log(`${LABELS[name].padEnd(38)} ${(cpuPerMessageMs.get(name) ?? NaN).toFixed(2).padStart(6)} ms`);
    // This client greets with EHLO, as MTAs do (smtp-source says HELO, after which no backend session is kept).
    console.log('\nlatency, connect to the 250 after end-of-data (Node client, EHLO, same pattern), and haraka-in CPU per message meanwhile:');
    const ehloCpuMs = new Map<string, number>();
    for (const [name, host, port] of targets) {
      const before = cpuSeconds(pidOf(name));
      const row = latencyRow(LABELS[name], await latency(port, host, EDGE_VARIANTS.has(name) ? freshAddress : undefined));
      ehloCpuMs.set(name, ((cpuSeconds(pidOf(name)) - before) * 1000) / MESSAGES);
      console.log(`${row}${name === 'direct' ? '' : `  CPU ${(ehloCpuMs.get(name) ?? NaN).toFixed(2)} ms/msg`}`);
    }
    console.log(`\nsingle connection, ${SERIAL} messages one after another, ${SERIAL_ROUNDS} alternating rounds (median, best):`);
    for (const [name] of targets) {
      const rounds = serialMs.get(name)!;
      console.log(
        `${LABELS[name].padEnd(38)} ${median(rounds).toFixed(2).padStart(6)} ms/msg  best ${Math.min(...rounds).toFixed(2)}  (rounds: ${rounds.map((ms) => ms.toFixed(2)).join(' ')})`,
      );
    }

    const rate = (name: string) => median(rates.get(name) ?? []);
    const ours = rate('mailproxy');
    const oursRss = peakRssMb(running.get('mailproxy')?.haraka['haraka-in']?.child.pid);
    for (const topology of running.values()) await topology.stop();
    running.clear();
    console.log('');
    await compareRelays(root, RELAY_LOAD);
    console.log('');
    const cpuOf = (name: Variant) => cpuPerMessageMs.get(name) ?? NaN;
    console.log(`ratio mailproxy / stock smtp_forward:  ${(ours / rate('stock')).toFixed(2)}x   (CPU per message ${(cpuOf('mailproxy') / cpuOf('stock')).toFixed(2)}x)`);
    for (const variant of ['rendered', 'reuse'] as const) {
      console.log(
        `ratio ${LABELS[variant]} / stock: ${(rate(variant) / rate('stock')).toFixed(2)}x (target >= 1.5; CPU per message ${(cpuOf(variant) / cpuOf('stock')).toFixed(2)}x, target <= 0.67)`,
      );
    }
    const keptRate = (name: string) => median(keptRates.get(name) ?? []);
    for (const variant of ['mailproxy', 'rendered', 'reuse'] as const) {
      console.log(`ratio ${LABELS[variant]} / stock, with connection reuse: ${(keptRate(variant) / keptRate('stock')).toFixed(2)}x (target >= 2.5)`);
    }
    console.log(`ratio mailproxy / direct to sink:      ${(ours / rate('direct')).toFixed(2)}    (target >= 0.5)`);
    console.log(`ratio mailproxy / haraka-in discard:   ${(ours / rate('discard')).toFixed(2)}    (the same haraka-in, no forwarding at all)`);
    console.log(`ratio bare Haraka / direct to sink:    ${(rate('bare') / rate('direct')).toFixed(2)}    (Haraka's floor: no plugins but rcpt_to and discard)`);
    console.log(`ratio bare Haraka / stock smtp_forward: ${(rate('bare') / rate('stock')).toFixed(2)}x`);
    console.log(`peak RSS haraka-in (mailproxy):        ${oursRss.toFixed(0)} MB (target < 100)`);
    const serialOf = (name: string) => median(serialMs.get(name) ?? []);
    console.log(
      `single connection, mailproxy:          ${serialOf('mailproxy').toFixed(2)} ms/msg (target <= 2; stock ${serialOf('stock').toFixed(2)}, haraka-in discard ${serialOf('discard').toFixed(2)})`,
    );
    if (rates.has('noedge') && rates.has('edge') && rates.has('edgednsbl')) {
      console.log(`edge checks, defaults / without:       ${(rate('edge') / rate('noedge')).toFixed(2)}    (no DNS lookup: early talker, HELO, one decision line per session)`);
      console.log(`edge checks, 1 DNSBL zone / without:   ${(rate('edgednsbl') / rate('noedge')).toFixed(2)}    (smtp-source sends from one address: its answer is cached)`);
      const cpu = (name: Variant) => (cpuPerMessageMs.get(name) ?? NaN).toFixed(2);
      console.log(`edge checks, CPU per message:          ${cpu('edge')} ms defaults, ${cpu('edgednsbl')} ms with 1 DNSBL zone, ${cpu('noedge')} ms without`);
    }
  } finally {
    for (const topology of running.values()) await topology.stop();
    sink.kill();
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
