// Opening the backend session of a client connection: connect from the WireGuard address, [EHLO,
// STARTTLS, EHLO,] XCLIENT with the client's identity, then the client's own HELO or EHLO; or, with
// backend.reuse_sessions, XCLIENT and the client's HELO or EHLO in an idle session an earlier client left
// (pool.ts). The session is kept for the connection until the client's identity changes, and holds a slot
// under limits.max_backend_sessions for as long as it lives.
import type { Connection } from '../haraka/connection';
import { backendSessions } from '../limits/backend-sessions';
import { BackendError, BackendSession, parseCapabilities, type Reply } from './backend-session';
import { clientName } from './client-name';
import { KEPT_REPLY_TIMEOUT_MS, keptSessions, settingsGeneration, takeKeptSession, type KeptSession } from './pool';
import { isOk } from './replies';
import type { ForwardPlugin, Settings } from './settings';
import { BackendBusy, backendState, dropBackend, OPENING, STATE, type BackendState } from './state';
import { xclientAttributes, xclientCommands, type ClientFacts } from './xclient';

/**
 * The XCLIENT attributes the backend advertised in its last EHLO. Later sessions send XCLIENT straight
 * after the banner (XCLIENT_README allows it at any time outside a transaction), saving one round trip
 * over WireGuard per client session. Forgotten when the backend refuses it: that session starts over
 * with EHLO and takes what the backend advertises now. Not used with STARTTLS, which needs EHLO first;
 * forgotten when the settings are reloaded (the backend may be another one). Attributes the backend
 * starts to offer later are learnt at the next refusal, reload or restart.
 */
let rememberedXclient: Set<string> | null = null;
/** False once the backend refused an early XCLIENT that it then took after EHLO: it wants EHLO first. */
let earlyXclientWorks = true;
/**
 * The XCLIENT attributes the last EHLO after an XCLIENT advertised: the backend takes another XCLIENT in a
 * session that already carries a client's identity (it authorizes XCLIENT for every identity). A session
 * whose client said HELO learns nothing about that (HELO has no extensions), and is kept with these.
 * Undefined while unknown (at start, after a reload, after a kept session's XCLIENT was refused), null when
 * the last EHLO after XCLIENT did not offer it.
 */
let xclientAfterXclient: ReadonlySet<string> | null | undefined;

const SAFE_HELO = /^[\x21-\x7e]{1,255}$/;

/** Forgets what the backend offered: the next session greets it in full. */
export function forgetBackendXclient(): void {
  rememberedXclient = null;
  earlyXclientWorks = true;
  xclientAfterXclient = undefined;
}

/** A refused XCLIENT: with remembered attributes, the cue to start over with EHLO. */
class XclientRefused extends BackendError {}

async function openBackend(plugin: ForwardPlugin, connection: Connection, signal: AbortSignal): Promise<BackendState> {
  const remembered = plugin.settings.starttls || !earlyXclientWorks ? null : rememberedXclient;
  if (!remembered) return establishBackend(plugin, connection, null, signal);
  let refusal: Reply | null;
  try {
    return await establishBackend(plugin, connection, remembered, signal);
  } catch (err) {
    if (!(err instanceof XclientRefused)) throw err;
    refusal = err.reply;
    connection.loginfo(plugin, `${err.message}; asking the backend again with EHLO`);
  }
  // The full greeting learns again what the backend offers now; one refusal (a value this backend
  // disliked, a passing 4xx) does not change what every later session does.
  const state = await establishBackend(plugin, connection, null, signal);
  // Refused as out of sequence before EHLO, taken after it: this backend wants EHLO first.
  if (refusal?.code === 503 && rememberedXclient) earlyXclientWorks = false;
  return state;
}

export async function clientFacts(connection: Connection): Promise<ClientFacts> {
  return {
    name: (await clientName(connection)).xclientName,
    ip: connection.remote.ip,
    port: connection.remote.port,
    helo: connection.hello.host ?? null,
    esmtp: (connection.hello.verb ?? '').toUpperCase() === 'EHLO',
    login: typeof connection.notes.auth_user === 'string' ? connection.notes.auth_user : null,
    destAddr: connection.local.ip,
    destPort: connection.local.port,
  };
}

/** XCLIENT attributes from an EHLO reply; an XCLIENT without ADDR cannot pass the client's address and
 * counts as not offered. */
function offeredXclient(capabilities: Map<string, string[]>): Set<string> | null {
  const offered = capabilities.get('XCLIENT');
  return offered?.includes('ADDR') ? new Set(offered) : null;
}

/** The backend could not be reached at all: the connection was refused or timed out, the WireGuard address
 * is missing, or the session was lost before the backend's banner. Never a reply of the backend's own. */
export class BackendUnreachable extends BackendError {}

/** Connects and reads the banner; a failure before the banner is BackendUnreachable (unless aborted). */
export async function connectBackend(settings: Settings, signal?: AbortSignal): Promise<BackendSession> {
  let session: BackendSession;
  try {
    session = await BackendSession.connect({
      host: settings.host,
      port: settings.port,
      connectTimeoutMs: settings.connectTimeoutMs,
      replyTimeoutMs: settings.replyTimeoutMs,
      ...(signal ? { signal } : {}),
      ...(settings.bind ? { localAddress: settings.bind } : {}),
    });
  } catch (err) {
    throw signal?.aborted ? err : new BackendUnreachable((err as Error).message);
  }
  let banner: Reply;
  try {
    banner = await session.read();
  } catch (err) {
    session.destroy();
    throw signal?.aborted ? err : new BackendUnreachable(`no banner from the backend: ${(err as Error).message}`);
  }
  if (!isOk(banner)) {
    session.destroy();
    throw new BackendError(`backend greeted with ${banner.code}`, banner);
  }
  return session;
}

/** What the greeting tells the caller as it goes (a connection's results and log, or the drain's log). */
export interface GreetingEvents {
  tls(): void;
  xclient(): void;
  noXclient(): void;
  warn(message: string): void;
}

export interface Greeted {
  pipelining: boolean;
  esmtp: boolean;
  /** XCLIENT passed the client's identity. */
  identified: boolean;
  /** The XCLIENT attributes the backend would take in this session after the client's identity (advertised
   * by the EHLO after XCLIENT; after HELO, what the last such EHLO advertised); null without XCLIENT, or when
   * it no longer offers XCLIENT with ADDR. */
  xclient: ReadonlySet<string> | null;
}

/** XCLIENT with the client's facts, then the client's own HELO or EHLO: the session is the client's. */
async function introduceClient(session: BackendSession, advertised: ReadonlySet<string>, facts: ClientFacts, timeoutMs?: number): Promise<Greeted> {
  const generation = settingsGeneration();
  for (const command of xclientCommands(xclientAttributes(facts, advertised))) {
    const reply = await session.command(command, timeoutMs);
    // Postfix answers XCLIENT with a new 220 greeting.
    if (!isOk(reply)) throw new XclientRefused(`backend refused XCLIENT with ${reply.code} ${reply.lines.join(' ')}`, reply);
  }
  // Postfix takes the HELO name and the protocol from the HELO or EHLO that must follow XCLIENT, not
  // from XCLIENT HELO= and PROTO=: the client's own verb, with its name when that is one safe token
  // (Haraka keeps only the first word of HELO and refuses control characters; anything else outside
  // printable ASCII is not sent raw), else its address literal, never this proxy's name.
  const heloForBackend = SAFE_HELO.test(facts.helo ?? '') ? (facts.helo as string) : addressLiteral(facts.ip);
  const verb = facts.esmtp ? 'EHLO' : 'HELO';
  const greeting = await session.command(`${verb} ${heloForBackend}`, timeoutMs);
  if (!isOk(greeting)) throw new BackendError(`backend refused ${verb} after XCLIENT with ${greeting.code}`, greeting);
  // After HELO the session has no extensions: no pipelining, no MAIL parameters.
  if (!facts.esmtp) return { pipelining: false, esmtp: false, identified: true, xclient: xclientAfterXclient ?? null };
  const capabilities = parseCapabilities(greeting);
  const xclient = offeredXclient(capabilities);
  // An answer from before a settings reload may be about another backend.
  if (generation === settingsGeneration()) xclientAfterXclient = xclient;
  return { pipelining: capabilities.has('PIPELINING'), esmtp: true, identified: true, xclient };
}

/** After the banner: [EHLO, STARTTLS, EHLO,] unless the XCLIENT attributes are remembered, then XCLIENT
 * with the client's facts and the client's own HELO or EHLO. */
export async function greetBackend(
  session: BackendSession,
  settings: Settings,
  remembered: Set<string> | null,
  factsOf: () => Promise<ClientFacts>,
  events: GreetingEvents,
): Promise<Greeted> {
  let capabilities = new Map<string, string[]>();
  let advertised = remembered;
  if (!advertised) {
    let ehlo = await session.command(`EHLO ${settings.heloName}`);
    if (!isOk(ehlo)) throw new BackendError(`backend refused EHLO with ${ehlo.code}`, ehlo);
    capabilities = parseCapabilities(ehlo);
    if (settings.starttls) {
      if (!capabilities.has('STARTTLS')) throw new BackendError('backend does not offer STARTTLS (backend.starttls is on)', null);
      await session.startTls();
      ehlo = await session.command(`EHLO ${settings.heloName}`);
      if (!isOk(ehlo)) throw new BackendError(`backend refused EHLO after STARTTLS with ${ehlo.code}`, ehlo);
      capabilities = parseCapabilities(ehlo);
      events.tls();
    }
    advertised = offeredXclient(capabilities);
    if (!advertised && capabilities.has('XCLIENT')) events.warn('backend offers XCLIENT without ADDR: treated as no XCLIENT');
    rememberedXclient = settings.starttls ? null : advertised;
  }
  if (advertised) {
    const introduced = await introduceClient(session, advertised, await factsOf());
    events.xclient();
    return introduced;
  }
  if (settings.requireXclient) throw new BackendError('backend does not offer XCLIENT to this host (see smtpd_authorized_xclient_hosts)', null);
  events.noXclient();
  return { pipelining: capabilities.has('PIPELINING'), esmtp: true, identified: false, xclient: null };
}

/** Connect, greet (EHLO, STARTTLS) unless the XCLIENT attributes are remembered, XCLIENT, EHLO again. */
async function establishBackend(plugin: ForwardPlugin, connection: Connection, remembered: Set<string> | null, signal: AbortSignal): Promise<BackendState> {
  const session = await connectBackend(plugin.settings, signal);
  try {
    const greeted = await greetBackend(session, plugin.settings, remembered, () => clientFacts(connection), {
      tls: () => connection.results.add(plugin, { pass: 'backend_tls' }),
      xclient: () => connection.results.add(plugin, { pass: 'xclient' }),
      noXclient: () => {
        connection.results.add(plugin, { skip: 'xclient(not offered; degraded delivery allowed)' });
        connection.logwarn(plugin, 'backend does not offer XCLIENT: forwarding without the client identity');
      },
      warn: (message) => connection.logwarn(plugin, message),
    });
    return {
      session,
      ...greeted,
      identity: identityOf(connection),
      binding: null,
      inData: false,
      openedAt: Date.now(),
      transactions: 0,
      generation: settingsGeneration(),
      detach: () => undefined,
    };
  } catch (err) {
    session.destroy();
    throw err;
  }
}

/** The client's address as an SMTP address literal (RFC 5321 §4.1.3), for a HELO name that cannot go raw. */
function addressLiteral(ip: string): string {
  return ip.includes(':') ? `[IPv6:${ip}]` : `[${ip}]`;
}

/** What XCLIENT passes about the client that the client can change mid-session: HELO verb and name, TLS. */
function identityOf(connection: Connection): string {
  return JSON.stringify([connection.hello.verb ?? null, connection.hello.host ?? null, connection.tls?.enabled === true]);
}

/** A kept session made the client's: XCLIENT with its facts and its own HELO or EHLO. null when that fails
 * in any way (the backend closed it, refused the XCLIENT, answered anything unexpected): the session is
 * closed and the caller connects afresh, so that a stale kept session never costs the client a 4xx. */
async function reuseBackend(plugin: ForwardPlugin, connection: Connection, kept: KeptSession, facts: ClientFacts, signal: AbortSignal): Promise<BackendState | null> {
  const { session } = kept;
  const stopWatching = session.abortOn(signal);
  try {
    // A kept session that died without a word (the tunnel down) must not hold the client for the whole reply
    // timeout: its XCLIENT and EHLO are a liveness check, answered at once by a live backend.
    const introduced = await introduceClient(session, kept.xclient, facts, KEPT_REPLY_TIMEOUT_MS);
    if (session.secure) connection.results.add(plugin, { pass: 'backend_tls' });
    connection.results.add(plugin, { pass: 'xclient' });
    connection.results.add(plugin, { pass: 'backend_reused' });
    return {
      session,
      ...introduced,
      identity: identityOf(connection),
      binding: null,
      inData: false,
      openedAt: kept.openedAt,
      transactions: kept.transactions,
      generation: kept.generation,
      detach: () => undefined,
    };
  } catch (err) {
    session.destroy();
    if (signal.aborted) throw err;
    // Whether this backend takes another XCLIENT is unknown again: the next HELO session asks.
    if (err instanceof XclientRefused) xclientAfterXclient = undefined;
    connection.loginfo(plugin, `kept backend session not usable (${(err as Error).message}): connecting afresh`);
    return null;
  } finally {
    stopWatching();
  }
}

/** Whether a session whose client said HELO may be kept: it may when an EHLO after XCLIENT has shown that the
 * backend takes another XCLIENT. While that is unknown, an EHLO in this session (with this proxy's name: the
 * next client's XCLIENT resets the session) asks, once per settings load unless a kept session is refused. */
export async function xclientAfterHelo(session: BackendSession, settings: Settings): Promise<ReadonlySet<string> | null> {
  if (xclientAfterXclient !== undefined) return xclientAfterXclient;
  const generation = settingsGeneration();
  try {
    const ehlo = await session.command(`EHLO ${settings.heloName}`, KEPT_REPLY_TIMEOUT_MS);
    // A refused EHLO (HELO restrictions on this proxy's name) says as much for the next HELO session: no more asking.
    const offered = isOk(ehlo) ? offeredXclient(parseCapabilities(ehlo)) : null;
    // An answer from before a settings reload may be about another backend.
    if (generation === settingsGeneration()) xclientAfterXclient = offered;
    return offered;
  } catch {
    return null;
  }
}

/** A kept session for this client, introduced, or null (reuse off, none kept, or the kept one failed). The
 * client's facts (its name lookup) are awaited before a session is taken from the pool, so that it never
 * idles longer than the pool allows; `taken` is one already taken for its slot. */
async function keptBackend(plugin: ForwardPlugin, connection: Connection, taken: KeptSession | null, signal: AbortSignal): Promise<BackendState | null> {
  if (!taken && !plugin.settings.reuseSessions) return null;
  let kept = taken;
  try {
    const facts = await clientFacts(connection);
    // The client left meanwhile: opening afresh fails at once with the abort.
    if (signal.aborted) return null;
    kept ??= takeKeptSession();
    const state = kept ? await reuseBackend(plugin, connection, kept, facts, signal) : null;
    kept = null;
    return state;
  } finally {
    kept?.session.destroy();
  }
}

/** A slot under limits.max_backend_sessions for the connection. At the cap, a kept idle session gives its
 * slot up: it is returned, for this client to use. */
function acquireSlot(connection: Connection): KeptSession | null {
  let taken: KeptSession | null = null;
  for (;;) {
    const slot = backendSessions.acquire(connection, connection.remote.ip);
    if (slot.ok) return taken;
    if (slot.reason !== 'max_backend_sessions' || taken || keptSessions() === 0) {
      taken?.session.quit();
      throw new BackendBusy(slot.reason, slot.limit);
    }
    taken = takeKeptSession();
  }
}

/** The connection's usable backend session, or a new one. The open is abortable: a client that leaves
 * while it is in flight (banner, XCLIENT, EHLO) closes it at once instead of holding a backend smtpd
 * process until the backend's own timeout. */
export async function backendFor(plugin: ForwardPlugin, connection: Connection): Promise<BackendState> {
  const existing = backendState(connection);
  // A session opened for another HELO/EHLO or before STARTTLS carries the old identity: a new one.
  if (existing?.session.usable && existing.identity === identityOf(connection)) return existing;
  if (existing) dropBackend(connection);
  // limits.max_backend_sessions and its share per client network (set by mailproxy-limits): over either,
  // no backend connection is made.
  const taken = acquireSlot(connection);
  const opening = new AbortController();
  connection.notes[OPENING] = opening;
  try {
    const state = (await keptBackend(plugin, connection, taken, opening.signal)) ?? (await openBackend(plugin, connection, opening.signal));
    // Without XCLIENT nothing awaited the name yet: Haraka's Received header at DATA wants it.
    await clientName(connection);
    connection.notes[STATE] = state;
    // The slot lives as long as the backend session: one the backend closed (idle, stress) or that failed
    // frees it at once, not when the client leaves.
    state.detach = state.session.onEnd(() => {
      if (connection.notes[STATE] !== state) return;
      delete connection.notes[STATE];
      backendSessions.release(connection);
    });
    return state;
  } catch (err) {
    backendSessions.release(connection);
    throw err;
  } finally {
    delete connection.notes[OPENING];
  }
}
