// `npm run soak -- [--minutes N] [--rate R] [--fault-every S] [--seed X]`: a bounded soak of the whole
// appliance on loopback (issue 14 item 5). A script that prints a report, never a CI test.
//
//   clients ──▶ haraka-in ──▶ tunnel (a TCP proxy: drops, outages) ──▶ backend stand-in (restarts)
//   "backend" 127.0.0.2 ──▶ haraka-out (kill -9) ──▶ "internet" MX for example.net
//
// Mixed traffic arrives at --rate messages a second (default 4): good mail in and out, unknown recipients,
// relay attempts on both instances, SMTP smuggling attempts, malformed commands, slow clients and idle ones.
// Every --fault-every seconds (default 30) one fault, in turn: the backend restarts, the tunnel drops every
// connection and blackholes new ones for a few seconds, haraka-out is killed with SIGKILL and started again.
// Senders retry a temporary failure like an MTA would (5 times, 3 s apart). At the end the report counts
// what was offered, accepted (told 250), delivered, refused (by reply code), lost (told 250, never
// delivered: must be 0), duplicated (delivered twice: must be 0), smuggled messages delivered (must be
// 0), bad inputs by kind, peak RSS of each Haraka and latency percentiles. Exit status 1 when lost,
// duplicated or smuggled is not 0.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { INTERNET_DOMAIN, LOOPBACK, startTopology, type Topology, type TopologyPorts } from '../src/demo/topology';
import { RawSmtp } from '../src/smtp/raw';
import { freePort } from '../src/testpeers/ports';
import { startSmtpSink, type ReceivedMessage, type SmtpSink } from '../src/testpeers/smtp-sink';

// ---------------------------------------------------------------------------------------------- options

interface Options {
  minutes: number;
  rate: number;
  faultEvery: number;
  seed: number;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { minutes: 10, rate: 4, faultEvery: 30, seed: Date.now() % 100_000 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    const value = Number(inline ?? argv[++i]);
    const key = ({ '--minutes': 'minutes', '--rate': 'rate', '--fault-every': 'faultEvery', '--seed': 'seed' } as const)[flag];
    if (!key || !Number.isFinite(value) || value <= 0) {
      process.stderr.write(`usage: npm run soak -- [--minutes N] [--rate R] [--fault-every S] [--seed X]\n(bad ${argv[i - (inline ? 0 : 1)]})\n`);
      process.exit(2);
    }
    options[key] = value;
  }
  return options;
}

// A small seeded PRNG (mulberry32): a run is repeatable in its traffic mix.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------------------------------ raw client

interface Reply {
  code: number;
  text: string;
}

/** The soak's view of src/smtp/raw.ts's client: a reply is code 0 when the server closed first or nothing
 * came in time. */
class Client {
  private constructor(private readonly raw: RawSmtp) {}

  static async connect(host: string, port: number, localAddress?: string): Promise<Client> {
    return new Client(await RawSmtp.connect(host, port, localAddress ? { localAddress } : {}));
  }

  write(data: string): void {
    this.raw.write(data);
  }

  async reply(timeoutMs = 30_000): Promise<Reply> {
    return (await this.raw.reply(timeoutMs)) ?? { code: 0, text: this.raw.closed ? 'closed' : 'timeout' };
  }

  async command(line: string, timeoutMs?: number): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  close(): void {
    this.raw.close();
  }
}

// --------------------------------------------------------------------------------------- the tunnel

/** A TCP proxy standing for the WireGuard tunnel: it can drop every connection, or blackhole new ones. */
class Tunnel {
  private pairs = new Set<[net.Socket, net.Socket]>();
  private server: net.Server;
  blackhole = false;

  private constructor(server: net.Server) {
    this.server = server;
  }

  static async start(listenHost: string, listenPort: number, targetHost: string, targetPort: () => number): Promise<Tunnel> {
    const server = net.createServer();
    const tunnel = new Tunnel(server);
    server.on('connection', (client) => {
      client.on('error', () => undefined);
      if (tunnel.blackhole) {
        // Packets go nowhere: the forwarder's connect/banner timeout must answer its client.
        setTimeout(() => client.destroy(), 8000).unref();
        return;
      }
      const upstream = net.connect({ host: targetHost, port: targetPort() });
      upstream.on('error', () => client.destroy());
      const pair: [net.Socket, net.Socket] = [client, upstream];
      tunnel.pairs.add(pair);
      const end = () => {
        tunnel.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('close', end);
      upstream.on('close', end);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenPort, listenHost, () => resolve());
    });
    return tunnel;
  }

  /** Every connection through the tunnel is reset at once. */
  drop(): number {
    const count = this.pairs.size;
    for (const [client, upstream] of [...this.pairs]) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.pairs.clear();
    return count;
  }

  close(): Promise<void> {
    this.drop();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// ------------------------------------------------------------------------------------------- ledger

type Direction = 'in' | 'out';

interface Tracked {
  id: string;
  direction: Direction;
  kind: string;
  acceptedAt: number | null;
  attempts: number;
  finalCode: number;
  latencyMs: number | null;
}

const USERS = ['alice', 'bob', 'carol'];
const SMUGGLING_ENDINGS: [string, string][] = [
  ['LF.LF', '\n.\n'],
  ['CR.CR', '\r.\r'],
  ['CRLF.CRCRLF', '\r\n.\r\r\n'],
  ['CRLF NUL.CRLF', '\r\n\x00.\r\n'],
  ['LF.CRLF', '\n.\r\n'],
  ['CRLF.LF', '\r\n.\n'],
  ['pipelined after CRLF.CRLF', '\r\n.\r\n'],
];
/** [kind, command line(s) after EHLO, reply codes that are right]. */
const MALFORMED: [string, string, number[]][] = [
  ['command over 512 octets', `MAIL FROM:<${'a'.repeat(600)}@example.net>\r\n`, [521]],
  ['NUL in a command', 'MAIL FROM:<a\0b@example.net>\r\n', [501]],
  ['bare CR in a command', 'NOOP\rMAIL FROM:<x@example.net>\r\n', [500]],
  ['invalid address', 'MAIL FROM:<a@b@c>\r\n', [501]],
  ['RCPT before MAIL', 'RCPT TO:<alice@demo.test>\r\n', [503]],
  ['DATA before MAIL', 'DATA\r\n', [503]],
  ['unknown command', 'FROBNICATE\r\n', [500]],
  ['XCLIENT to haraka-in', 'XCLIENT ADDR=6.6.6.6 NAME=spoofed.example\r\n', [500, 502, 550]],
  ['invalid UTF-8 in an address', 'MAIL FROM:<ok@example.net>\r\nRCPT TO:<\xe9@demo.test>\r\n', [250]],
];

class Ledger {
  tracked = new Map<string, Tracked>();
  refused = new Map<string, number>();
  badInputs = new Map<string, { tried: number; expected: number }>();
  faults = new Map<string, number>();
  unexpected: string[] = [];
  counter = 0;

  nextId(prefix: string): string {
    this.counter += 1;
    return `${prefix}${this.counter}`;
  }

  refuse(code: number, what: string): void {
    const key = `${code || 'none'} ${what}`;
    this.refused.set(key, (this.refused.get(key) ?? 0) + 1);
  }

  bad(kind: string, ok: boolean): void {
    const entry = this.badInputs.get(kind) ?? { tried: 0, expected: 0 };
    entry.tried += 1;
    if (ok) entry.expected += 1;
    this.badInputs.set(kind, entry);
  }

  fault(kind: string): void {
    this.faults.set(kind, (this.faults.get(kind) ?? 0) + 1);
  }
}

// ---------------------------------------------------------------------------------------- scenarios

interface Soak {
  t: Topology;
  ledger: Ledger;
  random: () => number;
  backendMessages: ReceivedMessage[];
  mxMessages: ReceivedMessage[];
}

const pick = <T>(random: () => number, list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
const clientAddress = (random: () => number) => `127.0.0.${10 + Math.floor(random() * 50)}`;

function body(id: string, to: string, extra = ''): string {
  return `From: sender@example.net\r\nTo: ${to}\r\nSubject: ${id}\r\nMessage-ID: <${id}@soak.example.net>\r\n\r\nsoak message ${id}\r\n${extra}${'soak body line\r\n'.repeat(12)}`;
}

/** One attempt at one message; the final code (0: the connection broke). Slow: pauses between steps. */
async function attempt(host: string, port: number, from: string, localAddress: string, rcpt: string, data: string, slowMs = 0): Promise<number> {
  let client: Client | null = null;
  try {
    client = await Client.connect(host, port, localAddress);
    if ((await client.reply()).code !== 220) return 0;
    const step = async (line: string) => {
      if (slowMs) await sleep(slowMs);
      return (await client!.command(line)).code;
    };
    if ((await step('EHLO client.soak.example.net')) !== 250) return 0;
    const mail = await step(`MAIL FROM:<${from}>`);
    if (mail !== 250) return mail;
    const rcptCode = await step(`RCPT TO:<${rcpt}>`);
    if (rcptCode !== 250) return rcptCode;
    const dataCode = await step('DATA');
    if (dataCode !== 354) return dataCode;
    if (slowMs) {
      const half = Math.floor(data.length / 2);
      client.write(data.slice(0, half));
      await sleep(slowMs);
      client.write(`${data.slice(half)}.\r\n`);
    } else client.write(`${data}.\r\n`);
    const final = (await client.reply(120_000)).code;
    client.write('QUIT\r\n');
    return final;
  } catch {
    return 0;
  } finally {
    client?.close();
  }
}

/** A message that must be delivered: retried on 4xx or a broken connection, like an MTA. */
async function deliverable(soak: Soak, direction: Direction, kind: string, slowMs = 0): Promise<void> {
  const { t, ledger, random } = soak;
  const id = ledger.nextId(direction === 'in' ? 'in' : 'out');
  const rcpt = direction === 'in' ? `${pick(random, USERS)}@demo.test` : `${id}@${INTERNET_DOMAIN}`;
  const entry: Tracked = { id, direction, kind, acceptedAt: null, attempts: 0, finalCode: 0, latencyMs: null };
  ledger.tracked.set(id, entry);
  for (let tries = 0; tries < 6; tries++) {
    entry.attempts += 1;
    const started = Date.now();
    const code =
      direction === 'in'
        ? await attempt(t.inbound.host, t.inbound.port, 'sender@example.net', clientAddress(random), rcpt, body(id, rcpt), slowMs)
        : await attempt(t.outbound.host, t.outbound.port, 'alice@demo.test', LOOPBACK.backend, rcpt, body(id, rcpt));
    entry.finalCode = code;
    if (code === 250) {
      entry.acceptedAt = Date.now();
      entry.latencyMs = Date.now() - started;
      return;
    }
    if (code >= 500) break;
    await sleep(3000);
  }
  ledger.refuse(entry.finalCode, `${kind} (after ${entry.attempts} attempts)`);
}

async function unknownRecipient(soak: Soak): Promise<void> {
  const code = await attempt(soak.t.inbound.host, soak.t.inbound.port, 'sender@example.net', clientAddress(soak.random), `nobody${soak.ledger.counter}@demo.test`, body('unknown', 'nobody'));
  soak.ledger.refuse(code, 'unknown recipient');
  if (code !== 550 && code !== 451 && code !== 0) soak.ledger.unexpected.push(`unknown recipient got ${code}`);
}

async function relayAttempt(soak: Soak): Promise<void> {
  const inbound = soak.random() < 0.5;
  const code = inbound
    ? await attempt(soak.t.inbound.host, soak.t.inbound.port, 'spammer@example.org', clientAddress(soak.random), `victim@${INTERNET_DOMAIN}`, body('relay', 'victim'))
    : await attempt(soak.t.outbound.host, soak.t.outbound.port, 'spammer@example.org', '127.0.0.9', `victim@${INTERNET_DOMAIN}`, body('relay', 'victim'));
  soak.ledger.refuse(code, inbound ? 'relay via haraka-in' : 'relay via haraka-out from outside the ACL');
  if (code === 250) soak.ledger.unexpected.push(`relay attempt (${inbound ? 'in' : 'out'}) accepted`);
}

async function smuggling(soak: Soak): Promise<void> {
  const { t, ledger, random } = soak;
  const [name, ending] = pick(random, SMUGGLING_ENDINGS);
  const id = ledger.nextId('carrier');
  const smuggledFrom = `smuggled-${id}@evil.example`;
  let client: Client | null = null;
  let code = 0;
  try {
    client = await Client.connect(t.inbound.host, t.inbound.port, clientAddress(random));
    await client.reply();
    await client.command('EHLO client.soak.example.net');
    const steps = [await client.command('MAIL FROM:<sender@example.net>'), await client.command('RCPT TO:<alice@demo.test>'), await client.command('DATA')];
    if (steps[2]!.code === 354) {
      client.write(`${body(id, 'alice@demo.test')}end${ending}MAIL FROM:<${smuggledFrom}>\r\nRCPT TO:<bob@demo.test>\r\nDATA\r\nSubject: smuggled ${id}\r\n\r\nsmuggled\r\n.\r\n`);
      code = (await client.reply(60_000)).code;
    } else code = steps.find((s) => s.code !== 250 && s.code !== 354)?.code ?? 0;
  } catch {
    code = 0;
  } finally {
    client?.close();
  }
  ledger.bad(`smuggling ${name}`, code === 451 || code === 250);
  // A carrier told 250 must be delivered (once), like any message.
  if (code === 250) ledger.tracked.set(id, { id, direction: 'in', kind: 'smuggling carrier', acceptedAt: Date.now(), attempts: 1, finalCode: 250, latencyMs: null });
  else ledger.refuse(code, `smuggling carrier ${name}`);
}

async function malformed(soak: Soak): Promise<void> {
  const [kind, lines, expected] = pick(soak.random, MALFORMED);
  let code = 0;
  let client: Client | null = null;
  try {
    client = await Client.connect(soak.t.inbound.host, soak.t.inbound.port, clientAddress(soak.random));
    await client.reply();
    await client.command('EHLO client.soak.example.net');
    client.write(lines);
    code = (await client.reply()).code;
  } catch {
    code = 0;
  } finally {
    client?.close();
  }
  soak.ledger.bad(kind, expected.includes(code));
}

async function idleClient(soak: Soak): Promise<void> {
  let code = 0;
  let client: Client | null = null;
  try {
    client = await Client.connect(soak.t.inbound.host, soak.t.inbound.port, clientAddress(soak.random));
    await client.reply();
    code = (await client.reply(60_000)).code;
  } catch {
    code = 0;
  } finally {
    client?.close();
  }
  soak.ledger.bad('silent client (inactivity timeout)', code === 421);
}

const SCENARIOS: [number, string, (soak: Soak) => Promise<void>][] = [
  [40, 'good mail in', (soak) => deliverable(soak, 'in', 'good mail in')],
  [20, 'good mail out', (soak) => deliverable(soak, 'out', 'good mail out')],
  [8, 'unknown recipient', unknownRecipient],
  [6, 'relay attempt', relayAttempt],
  [8, 'smuggling attempt', smuggling],
  [8, 'malformed command', malformed],
  [7, 'slow client', (soak) => deliverable(soak, 'in', 'slow client', 1000 + Math.floor(soak.random() * 1500))],
  [3, 'silent client', idleClient],
];

// ------------------------------------------------------------------------------------------ the run

function rssKb(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const random = prng(options.seed);
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-soak-'));
  const ports: TopologyPorts = {
    inbound: await freePort(LOOPBACK.inbound),
    outbound: await freePort(LOOPBACK.wireguard),
    backend: await freePort(LOOPBACK.backend),
    internetMx: await freePort(LOOPBACK.internet),
    dns: await freePort(LOOPBACK.dns),
  };
  const sinkPort = await freePort(LOOPBACK.backend);
  const backendMessages: ReceivedMessage[] = [];
  const mxMessages: ReceivedMessage[] = [];
  const startBackend = () =>
    startSmtpSink({
      host: LOOPBACK.backend,
      port: sinkPort,
      name: 'backend.test',
      xclient: true,
      rejectRecipient: (address) => (USERS.includes(address.split('@')[0]!.toLowerCase()) && address.toLowerCase().endsWith('@demo.test') ? null : `550 5.1.1 <${address}>: user unknown`),
      onMessage: (message) => backendMessages.push(message),
    });
  let backend: SmtpSink = await startBackend();
  const tunnel = await Tunnel.start(LOOPBACK.backend, ports.backend, LOOPBACK.backend, () => sinkPort);
  const mx = await startSmtpSink({ host: LOOPBACK.internet, port: ports.internetMx, name: `mx.${INTERNET_DOMAIN}`, onMessage: (message) => mxMessages.push(message) });
  const t = await startTopology({
    stateDir,
    ports,
    backend: false,
    internet: false,
    tweak: (config) => {
      config.log_level = 'warn';
      config.inbound = { ...config.inbound, inactivity_timeout: 10 };
      config.outbound = { ...config.outbound, retry_intervals: [5], max_queue_lifetime: 3600 };
    },
  });
  const ledger = new Ledger();
  const soak: Soak = { t, ledger, random, backendMessages, mxMessages };
  const peak = { 'haraka-in': 0, 'haraka-out': 0 };
  const sampler = setInterval(() => {
    for (const name of ['haraka-in', 'haraka-out'] as const) peak[name] = Math.max(peak[name], rssKb(t.haraka[name]?.child.pid));
  }, 1000);

  const started = Date.now();
  const deadline = started + options.minutes * 60_000;
  const running = new Set<Promise<void>>();
  const totalWeight = SCENARIOS.reduce((sum, [weight]) => sum + weight, 0);
  const offered = new Map<string, number>();
  process.stderr.write(`soak: ${options.minutes} min at ${options.rate}/s, a fault every ${options.faultEvery} s, seed ${options.seed}\n`);

  // Faults, in turn.
  const faultKinds = ['backend restart', 'tunnel drop', 'haraka-out kill -9'] as const;
  let faultIndex = 0;
  const faults = (async () => {
    for (;;) {
      await sleep(options.faultEvery * 1000);
      if (Date.now() > deadline - 10_000) return;
      const kind = faultKinds[faultIndex++ % faultKinds.length]!;
      ledger.fault(kind);
      process.stderr.write(`soak: ${Math.round((Date.now() - started) / 1000)} s: ${kind}\n`);
      if (kind === 'backend restart') {
        tunnel.blackhole = true;
        tunnel.drop();
        await backend.close();
        await sleep(2000);
        backend = await startBackend();
        tunnel.blackhole = false;
      } else if (kind === 'tunnel drop') {
        tunnel.blackhole = true;
        tunnel.drop();
        await sleep(3000);
        tunnel.blackhole = false;
      } else {
        await t.restart('haraka-out', 'SIGKILL');
      }
    }
  })();

  // Arrivals: Poisson at --rate a second, at most 60 scenarios at once.
  while (Date.now() < deadline) {
    await sleep(-Math.log(1 - random()) * (1000 / options.rate));
    if (running.size >= 60) continue;
    let roll = random() * totalWeight;
    const scenario = SCENARIOS.find(([weight]) => (roll -= weight) < 0) ?? SCENARIOS[0]!;
    offered.set(scenario[1], (offered.get(scenario[1]) ?? 0) + 1);
    const run = scenario[2](soak).catch((err: Error) => void ledger.unexpected.push(`${scenario[1]}: ${err.message}`));
    running.add(run);
    void run.finally(() => running.delete(run));
  }
  process.stderr.write(`soak: traffic stopped; waiting for ${running.size} clients and the queues\n`);
  await Promise.all(running);
  await faults;

  // Everything accepted must arrive: haraka-out retries every 5 s.
  const accepted = [...ledger.tracked.values()].filter((entry) => entry.acceptedAt !== null);
  const deliveredIds = (direction: Direction) => {
    const counts = new Map<string, number>();
    for (const message of direction === 'in' ? backendMessages : mxMessages) counts.set(message.subject, (counts.get(message.subject) ?? 0) + 1);
    return counts;
  };
  const settleDeadline = Date.now() + 90_000;
  while (Date.now() < settleDeadline && accepted.some((entry) => !deliveredIds(entry.direction).has(entry.id))) await sleep(1000);
  await sleep(2000);
  clearInterval(sampler);

  // ------------------------------------------------------------------------------------------ report
  const lines: string[] = [];
  const counts = { in: deliveredIds('in'), out: deliveredIds('out') };
  let lostTotal = 0;
  let duplicatedTotal = 0;
  for (const direction of ['in', 'out'] as const) {
    const mine = [...ledger.tracked.values()].filter((entry) => entry.direction === direction);
    const acc = mine.filter((entry) => entry.acceptedAt !== null);
    const delivered = mine.filter((entry) => counts[direction].has(entry.id));
    const lost = acc.filter((entry) => !counts[direction].has(entry.id));
    const duplicated = mine.filter((entry) => (counts[direction].get(entry.id) ?? 0) > 1);
    const withoutAccept = delivered.filter((entry) => entry.acceptedAt === null);
    const retried = acc.filter((entry) => entry.attempts > 1).length;
    lostTotal += lost.length;
    duplicatedTotal += duplicated.length;
    // Good mail only: slow clients pause on purpose, and carriers are not timed.
    const latencies = acc
      .filter((entry) => entry.kind.startsWith('good mail'))
      .map((entry) => entry.latencyMs)
      .filter((ms): ms is number => ms !== null)
      .sort((a, b) => a - b);
    lines.push(
      `${direction === 'in' ? 'inbound  (client → haraka-in → backend)' : 'outbound (backend → haraka-out → MX)   '}: offered ${mine.length}, accepted ${acc.length} (${retried} after a retry), delivered ${delivered.length}, lost ${lost.length}, duplicated ${duplicated.length}, delivered but never accepted ${withoutAccept.length}`,
      `  latency of good mail accepted (connect to 250 of the attempt that got it): p50 ${percentile(latencies, 50)} ms, p90 ${percentile(latencies, 90)} ms, p99 ${percentile(latencies, 99)} ms, max ${latencies.at(-1) ?? NaN} ms`,
    );
    for (const entry of lost.slice(0, 10)) lines.push(`  LOST ${entry.id} (${entry.kind}, accepted after ${entry.attempts} attempts)`);
    for (const entry of duplicated.slice(0, 10)) lines.push(`  DUPLICATED ${entry.id} (${entry.kind}, ${counts[direction].get(entry.id)} copies, ${entry.attempts} attempts)`);
  }
  const smuggled = backendMessages.filter((message) => /^smuggled-/.test(message.mailFrom) || /^smuggled /.test(message.subject)).length;
  const report = [
    `mailproxy soak: ${options.minutes} min, ${options.rate} arrivals/s, a fault every ${options.faultEvery} s, seed ${options.seed} (node ${process.version}, ${os.cpus().length} CPUs)`,
    `traffic offered: ${[...offered].map(([kind, n]) => `${kind} ${n}`).join(', ')}`,
    `faults injected: ${[...ledger.faults].map(([kind, n]) => `${kind} ${n}`).join(', ') || 'none'}`,
    ...lines,
    `lost ${lostTotal} (must be 0), duplicated ${duplicatedTotal} (must be 0), smuggled messages delivered ${smuggled} (must be 0)`,
    `refused, by reply code (0: connection broken or no reply):`,
    ...[...ledger.refused].sort(([a], [b]) => a.localeCompare(b)).map(([key, n]) => `  ${key}: ${n}`),
    `bad inputs tried, by kind (answered as expected / tried):`,
    ...[...ledger.badInputs].sort(([a], [b]) => a.localeCompare(b)).map(([kind, { tried, expected }]) => `  ${kind}: ${expected}/${tried}`),
    `peak RSS: haraka-in ${(peak['haraka-in'] / 1024).toFixed(1)} MB, haraka-out ${(peak['haraka-out'] / 1024).toFixed(1)} MB`,
    ...(ledger.unexpected.length ? [`unexpected: ${ledger.unexpected.length}`, ...ledger.unexpected.slice(0, 20).map((line) => `  ${line}`)] : []),
  ];
  process.stdout.write(`${report.join('\n')}\n`);

  await t.stop();
  await tunnel.close();
  await backend.close();
  await mx.close();
  rmSync(stateDir, { recursive: true, force: true });
  return lostTotal === 0 && duplicatedTotal === 0 && smuggled === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`soak failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
