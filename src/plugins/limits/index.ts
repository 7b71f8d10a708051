// mailproxy-limits (haraka-in): limits that protect the backend and the VPS from the internet.
//
//   new connection ─▶ (lookup_rdns, before any DNS query) over max_clients, max_clients_per_ip or
//                     max_connect_rate_per_ip?  421 4.7.0 and close : count it, start its session timer
//   session timer  ─▶ after max_session_time: 421 4.4.2 and close (never while a hook is at work)
//   disconnect     ─▶ (the session ended: QUIT, a refusal, a timeout) stop the session timer; a client that
//                     still holds its socket LINGER_MS later has it destroyed
//   socket closed  ─▶ give the counts back
//
// A client is counted until its socket closes, not until its session ends: after Haraka's 221 or 421 it
// closes only its own side, and a client that never closes its side would keep the socket (and a file
// descriptor) until the inactivity timeout while the counts said it was gone.
//
// The cap on backend sessions lives in backend-sessions.ts: this plugin sets it, mailproxy-forward takes
// a slot before it connects to the backend and answers 421 4.7.0 when there is none.
// Every refusal is one `mailproxy-decision` log line (../decision-log.ts, check=limits, reason=the limit's
// key), which `mailproxy stats` reads. The counters are in memory (counters.ts says why).
// A fault in this plugin lets the client in (logged): a limit is a protection, and refusing every
// client for a bug here would refuse all mail.
import type { Connection } from '../haraka/connection';
import { constants } from '../haraka/constants';
import { DSN } from '../haraka/dsn';
import type { HarakaPlugin, Next } from '../haraka/plugin';
import { backendSessions } from './backend-sessions';
import { ConnectionCounters, type LimitReason, type Ticket } from './counters';
import { readLimitsSettings } from './settings';
import { logDecision } from '../decision-log';

interface LimitsPlugin extends HarakaPlugin {
  counters: ConnectionCounters;
  maxSessionMs: number;
  load_limits_ini(): void;
}

const TICKET = 'mailproxy_limits_ticket';
const TIMER = 'mailproxy_limits_timer';
const LINGER = 'mailproxy_limits_linger';
const CLOSED = 'mailproxy_limits_closed';
/** After the session ended (QUIT, a refusal, a timeout) a client that has not closed its side by then has
 * its socket destroyed: it would otherwise keep the socket (a file descriptor, and its place in the
 * counts) until Haraka's inactivity timeout, minutes later. 2 s is ample for a client to read the last
 * reply and close (a real MTA closes at once), short enough that 10 sockets from one address that linger
 * after QUIT do not keep the address out for long. A timer, not the socket's idle timeout: a client that
 * keeps writing after QUIT never goes idle. */
const LINGER_MS = 2000;
/** How often a session past max_session_time looks again while a hook is at work. */
const RECHECK_MS = 1000;

const REFUSAL_TEXT: Record<LimitReason, string> = {
  max_clients: 'Too many connections, try again later',
  max_clients_per_ip: 'Too many connections from your address, try again later',
  max_connect_rate_per_ip: 'Too many connections from your address in the last minute, try again later',
};

export function register(this: LimitsPlugin): void {
  this.load_limits_ini();
  // lookup_rdns, not connect: the first hook that can refuse a connection runs before mailproxy-forward
  // starts the client's reverse DNS lookup, so a refused client costs no DNS query (Haraka answers a
  // DENYSOFTDISCONNECT here with the 421 given and closes, as it would at connect).
  this.register_hook('connect_init', 'watch_socket');
  this.register_hook('lookup_rdns', 'admit_client');
  this.register_hook('disconnect', 'end_session');
}

export function load_limits_ini(this: LimitsPlugin): void {
  const settings = readLimitsSettings(this.config, () => this.load_limits_ini());
  if (this.counters) this.counters.configure(settings.connections);
  else this.counters = new ConnectionCounters(settings.connections);
  this.maxSessionMs = settings.maxSessionMs;
  backendSessions.configure(settings.maxBackendSessions, settings.maxBackendSessionsPerNetwork);
}

/** connect_init runs as the connection is set up, before its socket can have closed: from here on the
 * plugin knows when it does. */
export function watch_socket(this: LimitsPlugin, next: Next, connection: Connection): void {
  connection.client.once('close', () => {
    connection.notes[CLOSED] = true;
    const linger = connection.notes[LINGER] as NodeJS.Timeout | undefined;
    if (linger) clearTimeout(linger);
    release(this, connection);
  });
  next();
}

export function admit_client(this: LimitsPlugin, next: Next, connection: Connection): void {
  // Haraka runs no lookup_rdns for a client that has gone; if one ever did, it must not be counted.
  if (connection.notes[CLOSED]) return next();
  let verdict: ReturnType<LimitsPlugin['counters']['admit']>;
  try {
    verdict = this.counters.admit(connection.remote.ip);
  } catch (err) {
    connection.logerror(this, `limits not checked: ${(err as Error).message}`);
    return next();
  }
  if (!verdict.admitted) {
    connection.results.add(this, { fail: verdict.reason });
    logDecision(connection, this, { action: 'refuse', ip: connection.remote.ip, check: 'limits', reason: verdict.reason, code: 421, extra: { limit: verdict.limit } });
    // Haraka answers 421 and runs the disconnect hook: end_session drops the socket if the client keeps it.
    return next(constants.DENYSOFTDISCONNECT, DSN.create(421, REFUSAL_TEXT[verdict.reason], 7, 0));
  }
  const ticket = verdict.ticket;
  // Counted until watch_socket sees the socket close (or end_session's timer destroys it).
  connection.notes[TICKET] = ticket;
  if (this.maxSessionMs > 0) armSessionTimer(this, connection, this.maxSessionMs);
  next();
}

function armSessionTimer(plugin: LimitsPlugin, connection: Connection, ms: number): void {
  const timer = setTimeout(() => endLongSession(plugin, connection), ms);
  timer.unref();
  connection.notes[TIMER] = timer;
}

/** 421 4.4.2 and close, once no hook is at work: mailproxy-forward may be handing a message to the
 * backend, and cutting in then would tell the sender 4xx for a message the backend takes (a duplicate at
 * its retry). Every hook has its own time limit, so the wait ends. */
function endLongSession(plugin: LimitsPlugin, connection: Connection): void {
  delete connection.notes[TIMER];
  if (connection.state >= constants.connection.state.DISCONNECTING) return;
  if (connection.current_hook) return armSessionTimer(plugin, connection, RECHECK_MS);
  connection.results.add(plugin, { fail: 'max_session_time' });
  logDecision(connection, plugin, {
    action: 'refuse',
    ip: connection.remote.ip,
    check: 'limits',
    reason: 'max_session_time',
    code: 421,
    extra: { limit: plugin.maxSessionMs / 1000 },
  });
  connection.respond(421, DSN.create(421, 'Session too long, closing; send the rest again later', 4, 2), () => connection.disconnect());
}

function stopSessionTimer(connection: Connection): void {
  const timer = connection.notes[TIMER] as NodeJS.Timeout | undefined;
  if (timer) clearTimeout(timer);
  delete connection.notes[TIMER];
}

/** Gives the counts back (once: the ticket knows). */
function release(plugin: LimitsPlugin, connection: Connection): void {
  stopSessionTimer(connection);
  const ticket = connection.notes[TICKET] as Ticket | undefined;
  if (ticket) plugin.counters.release(ticket);
}

/** The session is over (Haraka runs the disconnect hook for every ending, and then ends its side of the
 * socket); the counts stay until the socket closes, which LINGER_MS from now is made sure of. */
export function end_session(this: LimitsPlugin, next: Next, connection: Connection): void {
  stopSessionTimer(connection);
  if (!connection.notes[CLOSED] && !connection.notes[LINGER]) {
    const linger = setTimeout(() => dropLingering(this, connection), LINGER_MS);
    linger.unref();
    connection.notes[LINGER] = linger;
  }
  next();
}

function dropLingering(plugin: LimitsPlugin, connection: Connection): void {
  if (connection.notes[CLOSED]) return;
  connection.loginfo(plugin, `client kept its socket ${LINGER_MS} ms after the session ended: closing it`);
  try {
    connection.client.destroy();
  } catch (err) {
    connection.logerror(plugin, `socket not destroyed: ${(err as Error).message}`);
  }
  // Its file descriptor is gone with destroy(); the 'close' that follows finds the ticket released.
  release(plugin, connection);
}
