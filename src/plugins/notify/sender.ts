// Sends sd_notify(3) messages by running the systemd-notify binary: Node has no unix datagram sockets, and
// the systemd-notify npm package cannot send WATCHDOG=1 (DESIGN.md, "systemd notify", has the choice and
// its measured cost). One child at a time, started asynchronously, so nothing here blocks Haraka's event
// loop; a failure is logged, never thrown.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** What the service manager put in the environment (sd_notify(3), sd_watchdog_enabled(3)). */
export interface SystemdEnv {
  socket: string;
  /** WATCHDOG_USEC in milliseconds; null when the unit has no watchdog (or it is for another PID). */
  watchdogMs: number | null;
}

/** Null when NOTIFY_SOCKET is unset or empty: then nothing is ever sent. */
export function systemdEnv(env: NodeJS.ProcessEnv, pid: number): SystemdEnv | null {
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return null;
  const usec = Number(env.WATCHDOG_USEC);
  // sd_watchdog_enabled(3): WATCHDOG_PID, when set, names the one process the watchdog is meant for.
  const forUs = !env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === pid;
  const watchdogMs = forUs && Number.isSafeInteger(usec) && usec > 0 ? usec / 1000 : null;
  return { socket, watchdogMs };
}

/** systemd's default PATH for services, used when the environment has none. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function findExecutable(name: string, searchPath: string | undefined): string | null {
  for (const dir of (searchPath || DEFAULT_PATH).split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Whether this systemd-notify takes `--pid=` (systemd 252 does). Run once at start, before Haraka listens:
 * a synchronous spawn of a few milliseconds there costs no client anything.
 */
export function supportsPidOption(binary: string): boolean {
  const help = spawnSync(binary, ['--help'], { encoding: 'utf8', timeout: 2_000 });
  return /--pid\b/.test(`${help.stdout ?? ''}`);
}

export type MessageKind = 'ready' | 'watchdog' | 'status' | 'stopping';

export interface SenderLog {
  info(message: string): void;
  warn(message: string): void;
}

export interface SenderOptions {
  binary: string;
  /** Passed as `--pid=`: systemd-notify then names Haraka as the main PID, and sends with Haraka's PID as
   * its credentials where it is allowed to (as root); otherwise it falls back to its own PID, which is why
   * the unit needs NotifyAccess=all. */
  mainPid: number | null;
  log: SenderLog;
  /**
   * systemd-notify waits (up to 5 s) until the manager has processed the message (BARRIER=1), so the
   * manager can still attribute it to the unit: a sender that has exited cannot be (systemd-notify(1)).
   * A child that outlives this is killed.
   */
  childTimeoutMs?: number;
}

interface Message {
  kind: MessageKind;
  fields: string[];
}

const CHILD_TIMEOUT_MS = 10_000;

export class Sender {
  private readonly queue: Message[] = [];
  private busy = false;
  /** Failed messages in a row: the first is logged, then the recovery. */
  private failing = 0;

  constructor(private readonly options: SenderOptions) {}

  /**
   * Queues one message (its fields go out as one datagram, in order, after the one in flight). A watchdog
   * or status message replaces one of its kind still waiting, so a slow manager never piles up children;
   * STOPPING=1 replaces everything still waiting (a READY=1 after it would only confuse systemd).
   */
  send(kind: MessageKind, fields: string[]): void {
    if (kind === 'stopping') this.queue.length = 0;
    const waiting = kind === 'watchdog' || kind === 'status' ? this.queue.find((message) => message.kind === kind) : undefined;
    if (waiting) waiting.fields = fields;
    else this.queue.push({ kind, fields });
    this.pump();
  }

  private pump(): void {
    if (this.busy) return;
    const message = this.queue.shift();
    if (!message) return;
    this.busy = true;
    this.run(message, () => {
      this.busy = false;
      this.pump();
    });
  }

  private run(message: Message, done: () => void): void {
    const { binary, mainPid, log } = this.options;
    const args = [...(mainPid ? [`--pid=${mainPid}`] : []), ...message.fields];
    const timeoutMs = this.options.childTimeoutMs ?? CHILD_TIMEOUT_MS;
    let stderr = '';
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (error: string | null) => {
      if (finished) return;
      finished = true;
      if (timer) clearTimeout(timer);
      if (error) {
        // Logged once per run of failures, then again when it recovers: a missing socket must not flood the log.
        if (this.failing++ === 0) log.warn(`systemd-notify ${message.fields.join(' ')} failed: ${error}`);
      } else if (this.failing > 0) {
        log.info(`systemd-notify works again after ${this.failing} failed message(s)`);
        this.failing = 0;
      }
      done();
    };
    let child: ChildProcess;
    try {
      child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      finish((err as Error).message);
      return;
    }
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(`no answer within ${timeoutMs} ms`);
    }, timeoutMs);
    timer.unref();
    child.stderr?.on('data', (chunk: Buffer) => {
      if (stderr.length < 1_000) stderr += chunk.toString('utf8');
    });
    child.once('error', (err) => finish(err.message));
    child.once('close', (code, signal) => {
      if (code === 0) finish(null);
      else finish(`${signal ? `killed by ${signal}` : `exit ${code}`}${stderr.trim() ? `: ${stderr.trim()}` : ''}`);
    });
  }
}
