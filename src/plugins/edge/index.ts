// mailproxy-edge (haraka-in): the checks Mailcow's postscreen did before the backend moved behind XCLIENT,
// each with its own mode (off, log, refuse), configured in the config's `edge` section:
//
//   early_talker  a client that sends before the banner (pregreet); by default without holding the
//                 banner back (edge.early_talker.pause)
//   helo          HELO/EHLO names that claim to be this server, bare addresses, invalid or non-FQDN names
//   dnsbl         DNSBL/DNSWL scoring against a threshold, asked through dns.servers with a timeout and a cache
//
// The DNS lists are asked at connect_init, in parallel with the rest of the greeting; every check is
// decided at the first HELO/EHLO (or an unknown first command), so the banner never waits for DNS. A
// refusal is one 5xx and a disconnect. Every decision is one `mailproxy-decision` line (decision-log.ts);
// a session the edge did not refuse gets one `action=accept` line when it ends (marked `exempt=` when no
// check applied to it).
//
// Skipped: the appliance's own addresses (health probes), the allow list, and private clients (loopback,
// RFC 1918, ...) as Haraka flags them (`remote.is_private`). Haraka treats a plugin that throws as "carry
// on"; here a failing check is logged and the client goes on (fail open, as postscreen does for DNS).
import type { Connection } from '../haraka/connection';
import { constants } from '../haraka/constants';
import { DSN } from '../haraka/dsn';
import type { HarakaPlugin, Next } from '../haraka/plugin';
import { logDecision, wasRefused, type Decision } from '../decision-log';
import { askLists, DnsListResolver, scoreAnswers, type ListAnswer } from './dnsbl';
import { HELO_REFUSALS, heloProblem } from './helo';
import { isAllowed, isOwnAddress, readEdgeSettings, type EdgeSettings, type Mode } from './settings';

interface EdgePlugin extends HarakaPlugin {
  settings: EdgeSettings;
  resolver: DnsListResolver;
  /** Last time each zone's failure was logged, so a dead list logs once a minute, not per client. */
  zoneWarnings: Map<string, number>;
  /** The connect hook (the banner pause) is registered only when a pause is set at start. */
  pauseHooked: boolean;
  load_edge_ini(): void;
}

/** Per connection, in connection.notes. */
interface EdgeState {
  /** Why no check applies ('own', 'allow', 'private'), or null when the client is checked. */
  exempt: 'own' | 'allow' | 'private' | null;
  /** Bytes arrived before the banner. */
  pregreet: boolean;
  /** The DNS lists' answers, asked at connect_init. */
  lists: Promise<Map<string, ListAnswer>> | null;
  /** Early talker already decided (by the pause at connect). */
  earlyDecided: boolean;
  /** All checks decided (first HELO/EHLO or first unknown command). */
  decided: boolean;
}

const STATE = 'mailproxy_edge';
const ZONE_WARNING_INTERVAL_MS = 60_000;

export function register(this: EdgePlugin): void {
  this.zoneWarnings = new Map();
  this.load_edge_ini();
  this.register_hook('connect_init', 'edge_start');
  // Every hook a session runs costs Haraka a hook run (timers, result handling): none for a pause of 0.
  this.pauseHooked = this.settings.earlyTalker.pauseMs > 0 && this.settings.earlyTalker.mode !== 'off';
  if (this.pauseHooked) this.register_hook('connect', 'edge_pause');
  this.register_hook('helo', 'edge_decide');
  this.register_hook('ehlo', 'edge_decide');
  this.register_hook('unrecognized_command', 'edge_decide');
  this.register_hook('disconnect', 'edge_accounted');
}

export function load_edge_ini(this: EdgePlugin): void {
  const { settings, problems } = readEdgeSettings(this.config, () => this.load_edge_ini());
  for (const problem of problems) this.logerror(`mailproxy-edge.ini ${problem}`);
  if (this.settings && this.pauseHooked === false && settings.earlyTalker.pauseMs > 0 && settings.earlyTalker.mode !== 'off') {
    this.logwarn('mailproxy-edge.ini: early_talker pause takes effect when haraka-in restarts (it started without one)');
  }
  this.settings = settings;
  this.resolver = new DnsListResolver({ servers: settings.servers, timeoutMs: settings.lookupTimeoutMs });
}

function stateOf(connection: Connection): EdgeState | undefined {
  return connection.notes[STATE] as EdgeState | undefined;
}

function exemption(settings: EdgeSettings, connection: Connection): EdgeState['exempt'] {
  if (isOwnAddress(settings, connection.remote.ip)) return 'own';
  if (isAllowed(settings, connection.remote.ip)) return 'allow';
  if (connection.remote.is_private || connection.remote.is_local) return 'private';
  return null;
}

export function edge_start(this: EdgePlugin, next: Next, connection: Connection): void {
  const { settings } = this;
  const exempt = exemption(settings, connection);
  const state: EdgeState = { exempt, pregreet: false, lists: null, earlyDecided: false, decided: false };
  connection.notes[STATE] = state;
  if (exempt) {
    connection.results.add(this, { skip: exempt });
    return next();
  }
  if (settings.earlyTalker.mode !== 'off') {
    // Haraka has read whatever arrived so far; the next bytes are judged when they come. Only the first
    // read matters: it either comes before the banner (a pregreet) or after it.
    if (connection.early_talker && !connection.last_response) state.pregreet = true;
    else
      connection.client?.once?.('data', () => {
        if (!connection.last_response) state.pregreet = true;
      });
  }
  if (settings.dnsbl.mode !== 'off') {
    const { zones, allowZones } = settings.dnsbl;
    state.lists = askLists(this.resolver, connection.remote.ip, [...zones, ...allowZones]);
    // Never an unhandled rejection, whether or not a HELO comes to await it.
    state.lists.catch(() => undefined);
  }
  next();
}

/** With edge.early_talker.pause, the banner waits that long after the connection opened, and a client
 * that talked meanwhile gets the refusal instead of the banner. */
export function edge_pause(this: EdgePlugin, next: Next, connection: Connection): void {
  const state = stateOf(connection);
  const { mode, pauseMs } = this.settings.earlyTalker;
  if (!state || state.exempt || mode === 'off' || pauseMs <= 0) return next();
  const wait = Math.max(0, connection.start_time + pauseMs - Date.now());
  setTimeout(() => {
    state.earlyDecided = true;
    if (!state.pregreet) return next();
    const refusal = earlyTalkerVerdict(this, connection, mode);
    if (refusal) return next(constants.DENYDISCONNECT, refusal);
    next();
  }, wait);
}

/** Logs the early talker's decision; the DSN to refuse with, or null (log mode). */
function earlyTalkerVerdict(plugin: EdgePlugin, connection: Connection, mode: Mode): unknown {
  connection.results.add(plugin, { fail: 'early_talker' });
  return decide(plugin, connection, mode, { check: 'early_talker', reason: 'pregreet' }, 554, 'Protocol error: talking before the greeting', 5, 1);
}

/** Logs one decision of a failed check; the DSN to refuse with in refuse mode, else null. */
function decide(
  plugin: EdgePlugin,
  connection: Connection,
  mode: Mode,
  what: { check: string; reason: string; extra?: Decision['extra'] },
  code: number,
  text: string,
  subject: number,
  detail: number,
): unknown {
  const base = { ip: connection.remote.ip, check: what.check, reason: what.reason, ...(what.extra ? { extra: what.extra } : {}) };
  if (mode !== 'refuse') {
    logDecision(connection, plugin, { action: 'log', ...base });
    return null;
  }
  logDecision(connection, plugin, { action: 'refuse', code, ...base });
  return DSN.create(code, text, subject, detail);
}

function warnZoneErrors(plugin: EdgePlugin, connection: Connection, errors: { zone: string; error: string }[]): void {
  const now = Date.now();
  for (const { zone, error } of errors) {
    const last = plugin.zoneWarnings.get(zone);
    if (last !== undefined && now - last < ZONE_WARNING_INTERVAL_MS) continue;
    plugin.zoneWarnings.set(zone, now);
    connection.logwarn(plugin, `DNS list ${zone} not answered for ${connection.remote.ip}: ${error} (counted as not listed; logged once a minute per zone)`);
  }
}

/**
 * At the first HELO/EHLO (or unknown first command): early talker, HELO name, DNS lists, in that order. At
 * every later HELO/EHLO the HELO name again: a clean first greeting must not let a forged one through
 * (XCLIENT passes the name the client greeted with last).
 */
export function edge_decide(this: EdgePlugin, next: Next, connection: Connection, params: unknown): void {
  const state = stateOf(connection);
  if (!state || state.exempt) return next();
  const first = !state.decided;
  state.decided = true;
  const { settings } = this;
  try {
    if (first && state.pregreet && !state.earlyDecided && settings.earlyTalker.mode !== 'off') {
      const refusal = earlyTalkerVerdict(this, connection, settings.earlyTalker.mode);
      if (refusal) return next(constants.DENYDISCONNECT, refusal);
    }
    // helo and ehlo hooks get the name as a string; unrecognized_command gets [verb, rest].
    if (typeof params === 'string' && settings.helo.mode !== 'off') {
      const problem = heloProblem(params, { names: settings.helo.names, addresses: settings.own });
      if (problem) {
        connection.results.add(this, { fail: `helo(${problem})` });
        const { code, subject, detail, text } = HELO_REFUSALS[problem];
        const refusal = decide(this, connection, settings.helo.mode, { check: 'helo', reason: problem }, code, text, subject, detail);
        if (refusal) return next(constants.DENYDISCONNECT, refusal);
      }
    }
  } catch (err) {
    connection.results.add(this, { err: (err as Error).message });
    return next();
  }
  if (!first || !state.lists) return next();
  const { zones, allowZones, threshold, mode } = settings.dnsbl;
  state.lists.then(
    (answers) => {
      try {
        const verdict = scoreAnswers(zones, allowZones, answers);
        warnZoneErrors(this, connection, verdict.errors);
        if (verdict.score < threshold) {
          connection.results.add(this, { pass: `dnsbl(score ${verdict.score})` });
          return next();
        }
        connection.results.add(this, { fail: `dnsbl(${verdict.listedBy.join(',')})` });
        const refusal = decide(
          this,
          connection,
          mode,
          { check: 'dnsbl', reason: verdict.listedBy.join(','), extra: { score: verdict.score } },
          554,
          `Service unavailable; client [${connection.remote.ip}] blocked using ${verdict.listedBy.join(', ')}`,
          7,
          1,
        );
        if (refusal) return next(constants.DENYDISCONNECT, refusal);
        next();
      } catch (err) {
        connection.results.add(this, { err: (err as Error).message });
        next();
      }
    },
    (err: Error) => {
      connection.results.add(this, { err: err.message });
      next();
    },
  );
}

/** Why no check applied to a session, as its accept line says it (`exempt=`): loopback apart from the other
 * private clients, since Haraka flags 127/8 as both. */
function exemptMark(exempt: EdgeState['exempt'], connection: Connection): string | undefined {
  if (!exempt) return undefined;
  return exempt === 'private' && connection.remote.is_local ? 'loopback' : exempt;
}

/**
 * One `action=accept` line for every session the edge (or mailproxy-limits) did not refuse, so that `mailproxy
 * stats` counts every client: one no check applied to says why (`exempt=loopback`, `private`, `allow`). None
 * for the appliance's own addresses: those are its health probes, not traffic.
 */
export function edge_accounted(this: EdgePlugin, next: Next, connection: Connection): void {
  try {
    const state = stateOf(connection);
    const why = state ? state.exempt : exemption(this.settings, connection);
    if (!wasRefused(connection) && why !== 'own') {
      const exempt = exemptMark(why, connection);
      const extra = { msgs: connection.msg_count?.accept ?? 0, ...(exempt ? { exempt } : {}) };
      logDecision(connection, this, { action: 'accept', ip: connection.remote.ip, extra });
    }
  } catch (err) {
    this.logerror(`mailproxy-edge: ${(err as Error).message}`);
  }
  next();
}
