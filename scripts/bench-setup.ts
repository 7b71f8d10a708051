// What the benchmark scripts share: their load options, the message they send, the loopback ports of a
// topology, and haraka-in started alone and pinned to CPU 0.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { startTopology, type Topology, type TopologyOptions, type TopologyPorts } from '../src/demo/topology';
import type { SmtpScript } from '../src/smtp/script';

export interface LoadOptions {
  messages: number;
  concurrency: number;
  /** Bytes per message. */
  size: number;
}

/** PREFIX_MESSAGES, PREFIX_CONCURRENCY and PREFIX_SIZE from the environment, else `defaults`. */
export function loadOptions(prefix: string, defaults: LoadOptions): LoadOptions {
  const read = (name: string, fallback: number) => Number(process.env[`${prefix}_${name}`] ?? fallback);
  return { messages: read('MESSAGES', defaults.messages), concurrency: read('CONCURRENCY', defaults.concurrency), size: read('SIZE', defaults.size) };
}

/** A port base for one run: random, so that a run next to another (or to a demo) rarely collides. */
export const randomBasePort = () => 20000 + Math.floor(Math.random() * 20000);

/** The five loopback ports of a topology, `first` and the four after it. */
export function portsFrom(first: number): TopologyPorts {
  return { inbound: first, outbound: first + 1, backend: first + 2, internetMx: first + 3, dns: first + 4 };
}

/** A message of at least `bytes` bytes (headers, then 78-byte lines) from load@example.net to alice@demo.test. */
export function messageOfSize(bytes: number, subject = 'bench'): string {
  const header = `From: load@example.net\r\nTo: alice@demo.test\r\nSubject: ${subject}\r\n\r\n`;
  const line = `${'x'.repeat(76)}\r\n`;
  return header + line.repeat(Math.max(1, Math.ceil((bytes - header.length) / line.length)));
}

/** haraka-in alone (no backend or internet stand-in started here), pinned to CPU 0 with taskset. */
export function startPinnedHarakaIn(options: Omit<TopologyOptions, 'instances' | 'backend' | 'internet' | 'harakaPrefix'>): Promise<Topology> {
  return startTopology({ ...options, instances: ['haraka-in'], backend: false, internet: false, harakaPrefix: ['taskset', '-c', '0'] });
}

/** The next reply (to `line`, or to what was written) must have `code`. */
export async function expectCode(session: SmtpScript, line: string | null, code: number): Promise<void> {
  const reply = line === null ? await session.reply() : await session.command(line);
  if (reply.code !== code) throw new Error(`${line ?? '(data)'}: ${reply.code} ${reply.text}`);
}

/** One message in a session past EHLO: MAIL, RCPT, DATA, one reply at a time. */
export async function oneMessage(session: SmtpScript, payload: string, rcpt = 'alice@demo.test'): Promise<void> {
  await expectCode(session, 'MAIL FROM:<load@example.net>', 250);
  await expectCode(session, `RCPT TO:<${rcpt}>`, 250);
  await expectCode(session, 'DATA', 354);
  session.write(payload);
  await expectCode(session, null, 250);
}

/** The most memory a process has held (VmHWM), in MB. */
export function peakRssMb(pid: number | undefined): number {
  if (!pid) return NaN;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) / 1024 : NaN;
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds (user + system) a process has used so far: less at the mercy of a busy machine than a rate. */
export function cpuSeconds(pid: number | undefined): number {
  if (!pid) return NaN;
  // Fields after "pid (comm) ": state is the first, utime the 12th, stime the 13th (proc(5) fields 14 and 15).
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').at(-1)?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Busy seconds of one CPU so far (/proc/stat: user nice system idle iowait irq softirq steal, in clock ticks). */
export function cpuBusySeconds(cpu: number): number {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith(`cpu${cpu} `));
  const [user, nice, system, , , irq, softirq] = (line ?? '').split(/\s+/).slice(1).map(Number);
  return ((user ?? NaN) + (nice ?? NaN) + (system ?? NaN) + (irq ?? NaN) + (softirq ?? NaN)) / CLOCK_TICKS;
}
