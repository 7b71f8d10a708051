// `npm run bench:edge`: haraka-in at the edge, with the rendered defaults (limits included). A script that
// prints figures, never a test.
//
//   1. time to banner for never-seen client addresses whose reverse DNS is slow: PTR answers held back
//      BENCH_PTR_DELAY ms (default 500), and PTR queries never answered (backend.rdns_timeout: 3 s)
//   2. BENCH_IDLE (default 1000) idle client connections held open (banner and EHLO, then nothing), from
//      BENCH_IDLE / 5 addresses (5 each, under the per-address limits); haraka-in's RSS then
//   3. while they are held: new clients from never-seen addresses, each timed to its banner and sending one
//      message through to the backend
//   4. while they are held: a flood of BENCH_FLOOD (default 300) connections at once from one address, and
//      meanwhile a client from another address, timed to its banner and sending one message
//
// haraka-in runs pinned to CPU 0 with the V8 flags of the units (HARAKA_NODE_ARGS); this script and the
// backend stand-in share CPU 1. Connections come from 127.0.x.y addresses (the whole of 127/8 is loopback).
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { startTopology, type Topology } from '../src/demo/topology';
import { HARAKA_NODE_ARGS } from '../src/haraka/node-args';
import { dataPayload, message, SmtpScript } from '../src/smtp/script';
import { startDelayedDns, type DelayedDns } from '../src/testpeers/delayed-dns';

const PTR_DELAY = Number(process.env.BENCH_PTR_DELAY ?? 500);
const IDLE = Number(process.env.BENCH_IDLE ?? 1000);
const FLOOD = Number(process.env.BENCH_FLOOD ?? 300);
const NEW_CLIENTS = Number(process.env.BENCH_NEW_CLIENTS ?? 20);
/** 1: the idle connections say STARTTLS first (as most MTAs do), which costs haraka-in more memory each. */
const IDLE_TLS = process.env.BENCH_IDLE_TLS === '1';
/** Replaces limits.max_clients (to hold more than the default allows, for a memory figure). */
const MAX_CLIENTS = process.env.BENCH_MAX_CLIENTS;
const PER_ADDRESS = 5;
const BASE_PORT = 20000 + Math.floor(Math.random() * 20000);

function rssMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function summary(values: number[]): string {
  if (values.length === 0) return 'no samples';
  return `p50 ${percentile(values, 50).toFixed(0)} ms, max ${Math.max(...values).toFixed(0)} ms (${values.length} clients)`;
}

/** Connects from `address` and waits for the banner: the milliseconds it took, and the open session. */
async function timedBanner(topology: Topology, address: string): Promise<{ ms: number; code: number; session: SmtpScript }> {
  const started = process.hrtime.bigint();
  const session = await SmtpScript.connect(topology.inbound.host, topology.inbound.port, address);
  const banner = await session.reply(30_000);
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, code: banner.code, session };
}

async function sendOne(session: SmtpScript, subject: string): Promise<number> {
  const steps = ['EHLO bench.example.net', 'MAIL FROM:<bench@example.net>', 'RCPT TO:<alice@demo.test>', 'DATA'];
  const wanted = [250, 250, 250, 354];
  for (const [index, line] of steps.entries()) {
    const reply = await session.command(line, 30_000);
    if (reply.code !== wanted[index]) return reply.code;
  }
  session.write(dataPayload(message(subject, 'bench')));
  return (await session.reply(30_000)).code;
}

/** Reads from the socket until a final reply line (`NNN `) arrives; its code. */
function finalReply(socket: net.Socket | tls.TLSSocket): Promise<number> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      const final = /(?:^|\r\n)(\d{3}) [^\r\n]*\r\n$/.exec(buffer);
      if (!final) return;
      socket.off('data', onData);
      resolve(Number(final[1]));
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}

/** An idle client that said EHLO, STARTTLS and EHLO again over TLS, then nothing; null when refused. */
async function idleTlsClient(host: string, port: number, localAddress: string): Promise<{ close(): void } | null> {
  const plain = net.connect({ host, port, localAddress });
  plain.on('error', () => undefined);
  if ((await finalReply(plain)) !== 220) {
    plain.destroy();
    return null;
  }
  plain.write('EHLO idle.example.net\r\n');
  if ((await finalReply(plain)) !== 250) throw new Error('EHLO refused');
  plain.write('STARTTLS\r\n');
  if ((await finalReply(plain)) !== 220) throw new Error('STARTTLS refused');
  const secure = tls.connect({ socket: plain, rejectUnauthorized: false, servername: 'mx.demo.test' });
  secure.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', () => resolve());
    secure.once('error', reject);
  });
  secure.write('EHLO idle.example.net\r\n');
  if ((await finalReply(secure)) !== 250) throw new Error('EHLO over TLS refused');
  return { close: () => secure.destroy() };
}

/** Never-seen addresses: a fresh 127.a.b.c for every client, so that no cache knows its name. */
let nextFresh = 0;
function freshAddress(): string {
  nextFresh += 1;
  return `127.10.${Math.floor(nextFresh / 250)}.${(nextFresh % 250) + 1}`;
}

async function bannerTimes(topology: Topology, dns: DelayedDns, delay: number | null, clients: number): Promise<number[]> {
  dns.ptrDelayMs = delay;
  const times: number[] = [];
  for (let i = 0; i < clients; i++) {
    const { ms, session } = await timedBanner(topology, freshAddress());
    times.push(ms);
    session.close();
  }
  return times;
}

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-bench-edge-'));
  const dns = await startDelayedDns('127.0.0.1', { ptrDelayMs: 0 });
  const held: { close(): void }[] = [];
  let topology: Topology | null = null;
  try {
    topology = await startTopology({
      stateDir: root,
      ports: { inbound: BASE_PORT, outbound: BASE_PORT + 1, backend: BASE_PORT + 2, internetMx: BASE_PORT + 3, dns: BASE_PORT + 4 },
      instances: ['haraka-in'],
      internet: false,
      tweak: (config) => {
        config.log_level = 'warn';
        dns.upstream = { host: '127.0.0.1', port: BASE_PORT + 4 };
        config.dns = { servers: [dns.address] };
        // The product's limits: the loopback rig switches the per-address ones off.
        config.limits = MAX_CLIENTS ? { max_clients: Number(MAX_CLIENTS) } : {};
      },
      harakaPrefix: ['taskset', '-c', '0'],
    });
    const t = topology;
    const pid = t.haraka['haraka-in']?.child.pid;
    if (!pid) throw new Error('haraka-in has no pid');
    console.log(`mailproxy bench:edge, haraka-in on CPU 0 with ${HARAKA_NODE_ARGS.join(' ')}; rdns_timeout ${t.config.backend.rdns_timeout} s`);
    console.log(`haraka-in idle: RSS ${rssMb(pid, 'VmRSS').toFixed(0)} MB`);

    console.log('\ntime to banner, never-seen client addresses (connect to 220):');
    console.log(`  PTR answered after ${PTR_DELAY} ms:  ${summary(await bannerTimes(t, dns, PTR_DELAY, 10))}`);
    console.log(`  PTR never answered:       ${summary(await bannerTimes(t, dns, null, 5))}`);

    dns.ptrDelayMs = 0;
    const startedHolding = process.hrtime.bigint();
    let refusedIdle = 0;
    const addresses = Math.ceil(IDLE / PER_ADDRESS);
    const open = async (address: string) => {
      if (IDLE_TLS) {
        const client = await idleTlsClient(t.inbound.host, t.inbound.port, address);
        if (client) held.push(client);
        else refusedIdle += 1;
        return;
      }
      const session = await SmtpScript.connect(t.inbound.host, t.inbound.port, address);
      const banner = await session.reply(60_000);
      if (banner.code !== 220) {
        refusedIdle += 1;
        session.close();
        return;
      }
      if ((await session.command('EHLO idle.example.net', 60_000)).code !== 250) throw new Error('EHLO refused');
      held.push(session);
    };
    for (let batch = 0; batch < IDLE; batch += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, IDLE - batch) }, (_, i) => {
          const n = batch + i;
          return open(`127.20.${Math.floor((n % addresses) / 250)}.${((n % addresses) % 250) + 1}`);
        }),
      );
    }
    const holdSeconds = Number(process.hrtime.bigint() - startedHolding) / 1e9;
    console.log(`\n${held.length} idle ${IDLE_TLS ? 'STARTTLS ' : ''}connections held (${refusedIdle} refused) from ${addresses} addresses, opened in ${holdSeconds.toFixed(1)} s`);
    console.log(`haraka-in with them: RSS ${rssMb(pid, 'VmRSS').toFixed(0)} MB (peak so far ${rssMb(pid, 'VmHWM').toFixed(0)} MB)`);

    dns.ptrDelayMs = PTR_DELAY;
    const newTimes: number[] = [];
    let delivered = 0;
    for (let i = 0; i < NEW_CLIENTS; i++) {
      const { ms, code, session } = await timedBanner(t, freshAddress());
      newTimes.push(ms);
      if (code === 220 && (await sendOne(session, `new client ${i}`)) === 250) delivered += 1;
      session.close();
    }
    console.log(`new clients meanwhile (never-seen, PTR after ${PTR_DELAY} ms): banner ${summary(newTimes)}; messages through ${delivered}/${NEW_CLIENTS}`);

    dns.ptrDelayMs = 0;
    const flood: SmtpScript[] = [];
    const outcomes = { accepted: 0, refused: 0, failed: 0 };
    const flooding = Promise.all(
      Array.from({ length: FLOOD }, async () => {
        try {
          const session = await SmtpScript.connect(t.inbound.host, t.inbound.port, '127.30.0.1');
          flood.push(session);
          const banner = await session.reply(60_000);
          if (banner.code === 220) outcomes.accepted += 1;
          else outcomes.refused += 1;
        } catch {
          outcomes.failed += 1;
        }
      }),
    );
    // The other address connects while the flood is arriving.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const other = await timedBanner(t, '127.30.0.2');
    const otherResult = other.code === 220 ? await sendOne(other.session, 'during the flood') : other.code;
    other.session.close();
    await flooding;
    console.log(
      `flood of ${FLOOD} connections at once from one address: ${outcomes.accepted} greeted, ${outcomes.refused} refused, ${outcomes.failed} failed; ` +
        `another address meanwhile: banner ${other.ms.toFixed(0)} ms, message ${otherResult === 250 ? 'through (250)' : `not through (${otherResult})`}`,
    );
    console.log(`haraka-in after the flood: RSS ${rssMb(pid, 'VmRSS').toFixed(0)} MB (peak ${rssMb(pid, 'VmHWM').toFixed(0)} MB)`);
    for (const session of flood) session.close();
  } finally {
    for (const session of held) session.close();
    await topology?.stop();
    await dns.close();
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
