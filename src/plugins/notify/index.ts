// mailproxy-notify: tells systemd (Type=notify, WatchdogSec=) how this Haraka is doing, from inside the
// Haraka process: READY=1 once the listeners accept and the outbound queue is loaded, WATCHDOG=1 at half
// of WATCHDOG_USEC from a timer on Haraka's own event loop (a blocked loop sends nothing), STATUS= with
// the open connections and the queue size on every tick, STOPPING=1 when Haraka starts its graceful
// shutdown. Without NOTIFY_SOCKET it registers nothing and sends nothing.
//
// When: Haraka (smtp.ini nodes=0) binds every listener, then runs init_master hooks, then loads the
// outbound queue (server.js init_master_respond → outbound.init_queue); on SIGINT it closes the
// listeners and calls each plugin's shutdown(). Both instances load a queue (haraka-in's stays empty).
import { whenOutboundQueueLoaded } from '../haraka/patches/outbound-init-queue';
import type { HarakaPlugin, Next } from '../haraka/plugin';
import { findExecutable, Sender, supportsPidOption, systemdEnv, type SystemdEnv } from './sender';

interface Listener {
  getConnections(callback: (err: Error | null, count: number) => void): void;
}

interface ServerLike {
  listeners?: Listener[];
  cluster?: unknown;
}

interface OutboundQueueModule {
  delivery_queue?: { length(): number };
  temp_fail_queue?: { length(): number };
}

/** How often STATUS= is refreshed when the unit has no watchdog. */
const STATUS_INTERVAL_MS = 30_000;

interface State {
  env: SystemdEnv;
  sender: Sender;
  plugin: HarakaPlugin;
  listeners: Listener[];
  listening: boolean;
  queueLoaded: boolean;
  ready: boolean;
  stopping: boolean;
  timer: NodeJS.Timeout | null;
  lastStatus: string;
}

let state: State | null = null;

export function register(this: HarakaPlugin): void {
  const env = systemdEnv(process.env, process.pid);
  if (!env) {
    this.logdebug('NOTIFY_SOCKET is unset: not talking to systemd');
    return;
  }
  const binary = findExecutable('systemd-notify', process.env.PATH);
  if (!binary) {
    this.logerror(`NOTIFY_SOCKET is set but systemd-notify is not on PATH: no READY=1, no watchdog (install the systemd package)`);
    return;
  }
  const plugin = this;
  const sender = new Sender({
    binary,
    mainPid: supportsPidOption(binary) ? process.pid : null,
    log: { info: (message) => plugin.loginfo(message), warn: (message) => plugin.logwarn(message) },
  });
  state = { env, sender, plugin, listeners: [], listening: false, queueLoaded: false, ready: false, stopping: false, timer: null, lastStatus: '' };
  watchQueueLoad(this);
  this.register_hook('init_master', 'notify_listening');
  this.loginfo(`notifying systemd at ${env.socket} with ${binary}${env.watchdogMs ? `, WATCHDOG=1 every ${env.watchdogMs / 2} ms` : ', no watchdog (WATCHDOG_USEC unset)'}`);
}

/** init_master runs once every listener is bound (server.js setup_smtp_listeners). */
export function notify_listening(this: HarakaPlugin, next: Next, server: ServerLike): void {
  if (state) {
    if (server.cluster) {
      this.logerror('Haraka runs in cluster mode (smtp.ini nodes > 0): the listeners are in the workers, READY=1 is never sent');
    } else {
      state.listeners = [...(server.listeners ?? [])];
      state.listening = true;
      maybeReady();
    }
  }
  next();
}

/** Called by Haraka on SIGINT (graceful shutdown), after it closed the listeners. */
export function shutdown(this: HarakaPlugin): void {
  if (!state || state.stopping) return;
  state.stopping = true;
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
  state.sender.send('stopping', ['STOPPING=1', 'STATUS=stopping: finishing open connections']);
}

/** READY=1 waits for the outbound queue, which Haraka loads after the init_master hooks. */
function watchQueueLoad(plugin: HarakaPlugin): void {
  const watched = whenOutboundQueueLoaded(() => {
    if (state) {
      state.queueLoaded = true;
      maybeReady();
    }
  });
  if (!watched) {
    plugin.logwarn('cannot find outbound.init_queue: READY=1 goes out once the listeners accept, without waiting for the queue');
    if (state) state.queueLoaded = true;
  }
}

function maybeReady(): void {
  if (!state || state.ready || state.stopping || !state.listening || !state.queueLoaded) return;
  state.ready = true;
  const current = state;
  void statusText(current).then((text) => {
    if (current.stopping) return;
    current.lastStatus = text;
    current.sender.send('ready', ['READY=1', `STATUS=${text}`]);
    current.plugin.loginfo(`sending READY=1 to systemd (${text})`);
    schedule(current);
  });
}

/**
 * The watchdog tick is a timer on Haraka's own loop: while the loop is blocked nothing is sent, and
 * systemd acts once WatchdogSec passes. A tick that fires late is logged with the lag, and still pings:
 * the loop answers again, and a skipped ping would only have systemd kill a process that recovered.
 */
function schedule(current: State): void {
  const intervalMs = current.env.watchdogMs ? current.env.watchdogMs / 2 : STATUS_INTERVAL_MS;
  const due = Date.now() + intervalMs;
  current.timer = setTimeout(() => {
    const lag = Date.now() - due;
    if (lag > intervalMs / 2) current.plugin.logwarn(`event loop was blocked: watchdog tick ${lag} ms late`);
    void statusText(current).then((text) => {
      if (current.stopping) return;
      if (current.env.watchdogMs) current.sender.send('watchdog', ['WATCHDOG=1', `STATUS=${text}`]);
      else if (text !== current.lastStatus) current.sender.send('status', [`STATUS=${text}`]);
      current.lastStatus = text;
      schedule(current);
    });
  }, intervalMs);
  // Never the reason the process stays up: Haraka exits once its connections are done.
  current.timer.unref();
}

/** Never rejects: a failure here must not become an unhandled rejection in Haraka. */
async function statusText(current: State): Promise<string> {
  try {
    let connections = 0;
    for (const listener of current.listeners) connections += await connectionCount(listener);
    const { due, deferred } = queueCounts();
    return `${connections} connection${connections === 1 ? '' : 's'}, queue ${due + deferred} (${due} due, ${deferred} deferred)`;
  } catch (err) {
    return `counts unavailable: ${(err as Error).message}`;
  }
}

function connectionCount(listener: Listener): Promise<number> {
  return new Promise((resolve) => {
    try {
      listener.getConnections((err, count) => resolve(err ? 0 : count));
    } catch {
      resolve(0);
    }
  });
}

/** Outbound's in-memory queues: due (waiting for or in delivery) and deferred (waiting for a retry). */
function queueCounts(): { due: number; deferred: number } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const queue = require('haraka/outbound/queue') as OutboundQueueModule;
  return { due: queue.delivery_queue?.length() ?? 0, deferred: queue.temp_fail_queue?.length() ?? 0 };
}
