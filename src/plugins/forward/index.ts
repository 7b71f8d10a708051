// mailproxy-forward (haraka-in): forwards each message to the backend over WireGuard, in the same backend
// session that checked its recipients, with the client's identity passed by XCLIENT.
//
//   client RCPT ─▶ (first one) connect from the WireGuard address, [EHLO,] XCLIENT ..., EHLO, MAIL FROM
//               ─▶ RCPT TO at the backend: its reply (code and enhanced status) is the client's reply
//   end of data ─▶ DATA, body in one write (or streamed in large writes), end-of-data reply is the client's reply
//
// Fail closed: no XCLIENT, a refused XCLIENT, an unreachable or silent backend all give the client 4xx.
// Haraka's 250 is sent only after the backend's 250, and only when every recipient the client got 250
// for was accepted in the backend session carrying the message, so mail is never accepted and dropped.
// Haraka treats a plugin that throws as "carry on": every hook here catches and answers DENYSOFT.
import type { HarakaPlugin, Next } from '../haraka/plugin';
import { REPLY_CODE_NOTE } from '../reply-code';
import { BackendError, BackendSession, parseCapabilities, type Reply } from './backend-session';
import { backendSessions } from '../limits/backend-sessions';
import { logDecision } from '../decision-log';
import { cachedClientNameLookup, type ClientName } from './fcrdns';
import { captureOf, captureRaw, MAX_HEADER_BYTES, pipeRaw, rawPayload, unchangedRefusal, type RawCapture, type RawStream } from '../raw-message';
import { xclientAttributes, xclientCommands, type ClientFacts } from './xclient';

interface ForwardIni {
  main: {
    host: string;
    port: number;
    bind?: string;
    connect_timeout: number;
    timeout: number;
    data_timeout?: number;
    body_timeout?: number;
    keepalive?: number;
    require_xclient: boolean;
    rdns_timeout: number;
    starttls: boolean;
  };
}

interface Settings {
  host: string;
  port: number;
  bind: string | undefined;
  connectTimeoutMs: number;
  replyTimeoutMs: number;
  /** The wait for the end-of-data reply, while the backend runs its content filters. */
  dataTimeoutMs: number;
  /** The longest the message data may take to reach the backend. */
  bodyTimeoutMs: number;
  /** NOOP to the backend after this much quiet while a transaction waits for its client. */
  keepAliveMs: number;
  requireXclient: boolean;
  starttls: boolean;
  rdnsTimeoutMs: number;
  heloName: string;
  /** Haraka's client inactivity timeout (smtp.ini), restored after the end-of-data wait. */
  clientTimeoutMs: number;
}

interface Address {
  /** A property since Haraka 3.2 (it was a method before). */
  address: string;
  user: string | null;
  host: string | null;
}

interface Transaction {
  uuid: string;
  discard_data?: boolean;
  mail_from: Address;
  rcpt_to: Address[];
  notes: Record<string, unknown>;
  message_stream: RawStream;
  end_data(cb: () => void): unknown;
  results: { add(plugin: unknown, result: object): void };
}

interface Connection {
  uuid: string;
  /** host and info: Haraka's name for the client (Received header, logs), set when the lookup finishes. */
  remote: { ip: string; port: number; host?: string | null; info?: string | null };
  local: { ip: string; port: number };
  hello: { verb: string | null; host: string | null };
  tls?: { enabled?: boolean };
  notes: Record<string, unknown>;
  transaction: Transaction | null;
  /** The client's socket (Haraka's pluggableStream); its idle timer is Haraka's inactivity timeout.
   * After STARTTLS it wraps a TLS socket (`cleartext`) over the plain one (`cleartext.socket`), whose
   * own timer still ends the session. */
  client: { setTimeout(ms: number): unknown; cleartext?: { socket?: { setTimeout(ms: number): unknown } } };
  results: { add(plugin: unknown, result: object): void };
  loginfo(plugin: unknown, message: string): void;
  lognotice(...args: unknown[]): void;
  logwarn(plugin: unknown, message: string): void;
  logerror(plugin: unknown, message: string): void;
}

interface ForwardPlugin extends HarakaPlugin {
  settings: Settings;
  localDomains: Set<string>;
  /** Where RCPT TO:<postmaster> (no domain) goes: the postmaster of the first domain. */
  postmasterDomain: string | null;
  load_forward_ini(): void;
  load_host_list(): void;
}

/**
 * One client transaction, bound to the backend session whose MAIL FROM opened it. Every recipient the
 * client got 250 for was accepted in that session; once it is gone, the transaction cannot be carried
 * anywhere else (another session never heard of those recipients), so every later RCPT, the DATA and
 * the end of data get 4xx.
 */
interface Binding {
  session: BackendSession;
  /** Recipients the backend accepted in this transaction. */
  accepted: number;
  /** Those recipients as the backend was asked (the client got 250 for each): replayed in a new backend
   * session when this one is lost before the end of data. */
  recipients: string[];
}

/** Per client connection: the backend session and the transaction open on it. */
interface BackendState {
  session: BackendSession;
  pipelining: boolean;
  /** The session ended its greeting with EHLO (an ESMTP client), not HELO. */
  esmtp: boolean;
  /** The client identity XCLIENT passed (identityOf): a new HELO/EHLO or STARTTLS needs a new session. */
  identity: string;
  /** The client transaction whose MAIL FROM the backend accepted, until its end or RSET. */
  binding: Binding | null;
  /** From the DATA sent to the backend until its end-of-data reply: an RSET or QUIT written now would be
   * read as a body line, so only closing the connection aborts the transaction. */
  inData: boolean;
}

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

const STATE = 'mailproxy_forward';
/** The AbortController of a backend session still opening, so that a client that leaves aborts it. */
const OPENING = 'mailproxy_forward_opening';
const BOUND = 'mailproxy_forward_binding';
const SAFE_HELO = /^[\x21-\x7e]{1,255}$/;
/** The client's name lookup, a Promise<ClientName> that never rejects: started at lookup_rdns, awaited
 * when XCLIENT is built. Other plugins that need the name before RCPT may await it too. */
const PENDING_NAME = 'mailproxy_client_name';
const MAIL_PARAMS = 'mailproxy_mail_params';
/** Messages up to this size go to the backend in one write from a copy of the stored lines
 * (raw-message.ts); equal to connection.ini spool_after, so no spooled message is also copied. */
const CAPTURE_LIMIT = 256 * 1024;
const NOTHING = Buffer.alloc(0);

// eslint-disable-next-line @typescript-eslint/no-require-imports
const constants = require('haraka-constants') as { OK: number; DENY: number; DENYSOFT: number; DENYSOFTDISCONNECT: number; CONT: number };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const DSN = require('haraka-dsn') as DsnModule;

interface DsnModule {
  create(code: number, msg: string | string[], subject?: number, detail?: number): unknown;
}

export function register(this: ForwardPlugin): void {
  this.load_forward_ini();
  this.load_host_list();
  this.register_hook('lookup_rdns', 'lookup_client_name');
  this.register_hook('mail', 'prepare_transaction');
  this.register_hook('rcpt', 'check_recipient');
  this.register_hook('data', 'check_backend_data');
  this.register_hook('queue', 'forward_message');
  this.register_hook('reset_transaction', 'reset_backend_transaction');
  this.register_hook('disconnect', 'close_backend');
}

export function load_forward_ini(this: ForwardPlugin): void {
  const cfg = this.config.get('mailproxy-forward.ini', { booleans: ['+main.require_xclient', '-main.starttls'] }, () => this.load_forward_ini()) as ForwardIni;
  const me = this.config.get('me') as string | null;
  const smtpIni = this.config.get('smtp.ini') as { main?: { inactivity_timeout?: unknown } };
  this.settings = {
    host: String(cfg.main.host),
    port: Number(cfg.main.port),
    bind: cfg.main.bind ? String(cfg.main.bind) : undefined,
    connectTimeoutMs: Number(cfg.main.connect_timeout) * 1000,
    replyTimeoutMs: Number(cfg.main.timeout) * 1000,
    dataTimeoutMs: Number(cfg.main.data_timeout ?? 600) * 1000,
    bodyTimeoutMs: Number(cfg.main.body_timeout ?? cfg.main.timeout) * 1000,
    keepAliveMs: Number(cfg.main.keepalive ?? 0) * 1000,
    requireXclient: cfg.main.require_xclient,
    starttls: cfg.main.starttls,
    rdnsTimeoutMs: Number(cfg.main.rdns_timeout ?? 3) * 1000,
    heloName: me ?? 'localhost',
    // Haraka's own default when smtp.ini does not set it (server.js).
    clientTimeoutMs: (Number(smtpIni.main?.inactivity_timeout) || 300) * 1000,
  };
  rememberedXclient = null;
  earlyXclientWorks = true;
}

export function load_host_list(this: ForwardPlugin): void {
  const list = this.config.get('host_list', 'list', () => this.load_host_list()) as string[];
  this.localDomains = new Set(list.map((domain) => domain.toLowerCase()));
  this.postmasterDomain = list[0]?.toLowerCase() ?? null;
}

/** Client names are kept a minute, as long as the TTL of the test zone and well under real PTR TTLs. */
const lookupClientName = cachedClientNameLookup({ ttlMs: 60_000, maxEntries: 10_000 });

/** What a lookup that failed in an unexpected way gives: a DNS error, fail closed as [TEMPUNAVAIL]. */
const LOOKUP_FAILED: ClientName = { ptr: 'DNSERROR', xclientName: '[TEMPUNAVAIL]' };

export function lookup_client_name(this: ForwardPlugin, next: Next, connection: Connection): void {
  // Replaces Haraka's own reverse lookup (one PTR query, not two), bounded by rdns_timeout, and also
  // forward-confirms the name for XCLIENT NAME. Nothing waits for it here: the banner goes out at once
  // and the lookup runs meanwhile; the first RCPT for our domains awaits it (clientFacts, backendFor),
  // which is before Haraka writes the Received header at DATA.
  const ip = connection.remote.ip;
  const pending = lookupClientName(ip, this.settings.rdnsTimeoutMs).catch(() => LOOKUP_FAILED);
  connection.notes[PENDING_NAME] = pending;
  // Runs after this function returns, even for a lookup the cache has already answered.
  void pending.then((name) => {
    // Haraka's remote.host and remote.info as its own lookup would have set them (the Received header's
    // "(name [ip])", the disconnect log line), unless something changed the client meanwhile.
    if (connection.remote.ip !== ip) return;
    connection.remote.host = name.ptr;
    connection.remote.info = name.ptr;
  });
  // Haraka sets remote.host and remote.info to 'Unknown' (its word for "no name") and runs the connect
  // hooks, which send the banner, before next() returns.
  next(constants.OK, '');
  // Until the lookup finishes: not looked up yet, Haraka's own value before any lookup, which every
  // plugin reads as no name (the EHLO reply then says "Hello [ip]").
  if (connection.remote.ip === ip) {
    connection.remote.host = null;
    connection.remote.info = null;
  }
}

export function prepare_transaction(this: ForwardPlugin, next: Next, connection: Connection, params: [Address, Record<string, string>?]): void {
  const transaction = connection.transaction;
  if (transaction) {
    // MAIL FROM parameters the backend must see again (BODY=8BITMIME, SMTPUTF8).
    transaction.notes[MAIL_PARAMS] = params[1] ?? {};
    // From MAIL on, so that the Received line Haraka stores before the data hook is captured too.
    captureRaw(transaction, { messageLimit: CAPTURE_LIMIT, headerLimit: MAX_HEADER_BYTES });
  }
  next();
}

function dsnFrom(reply: Reply): unknown {
  const first = reply.lines[0] ?? '';
  const enhanced = /^([245])\.(\d{1,3})\.(\d{1,3})\s+/.exec(first);
  const texts = reply.lines.map((line) => line.replace(/^[245]\.\d{1,3}\.\d{1,3}\s+/, ''));
  if (enhanced && Number(enhanced[1]) === Math.floor(reply.code / 100)) {
    return DSN.create(reply.code, texts.length === 1 ? (texts[0] as string) : texts, Number(enhanced[2]), Number(enhanced[3]));
  }
  return DSN.create(reply.code, texts.length === 1 ? (texts[0] as string) : texts);
}

/** A backend refusal keeps its class: 5xx denies, 4xx defers; a 421 (the backend is closing) is passed on
 * and ends the client session too (RFC 5321 §3.8), since that transaction is gone. */
function refusal(reply: Reply): [code: number, dsn: unknown, replyCode: number] {
  if (reply.code === 421) return [constants.DENYSOFTDISCONNECT, dsnFrom(reply), 421];
  // 503 is a protocol error between haraka-in and the backend, never a verdict on the message: the
  // sender retries rather than bounces.
  if (reply.code === 503) return [constants.DENYSOFT, DSN.create(451, 'Backend protocol error, try again later', 4, 5), 451];
  return [isOk(reply, 5) ? constants.DENY : constants.DENYSOFT, dsnFrom(reply), reply.code];
}

/** Fail closed: drop the backend session and defer, whatever went wrong. */
function backendUnavailable(plugin: ForwardPlugin, connection: Connection, next: Next, what: string, err?: Error): void {
  if (err) connection.results.add(plugin, { err: err.message });
  connection.logerror(plugin, err ? `${what}: ${err.message}` : what);
  dropBackend(connection);
  deferWith(connection, next, DSN.create(451, 'Backend temporarily unavailable, try again later', 4, 1));
}

/** DENYSOFT with the DSN's own code: Haraka's queue reply keeps only the DSN's text (and says 450). */
function deferWith(connection: Connection, next: Next, dsn: unknown): void {
  if (connection.transaction) connection.transaction.notes[REPLY_CODE_NOTE] = 451;
  next(constants.DENYSOFT, dsn);
}

/** The transaction's backend session is gone: nothing more of this transaction can be accepted. */
function transactionLost(plugin: ForwardPlugin, connection: Connection, next: Next, when: string, why = ''): void {
  connection.logwarn(plugin, `backend session of this transaction was lost before ${when}${why ? ` (${why})` : ''}: refusing with 4xx`);
  connection.transaction?.results.add(plugin, { fail: `backend session lost before ${when}` });
  deferWith(connection, next, DSN.create(451, 'Connection to the backend was lost during this transaction; send the message again', 4, 4));
}

function isOk(reply: Reply, code = 2): boolean {
  return Math.floor(reply.code / 100) === code;
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

/** The client's name lookup started at lookup_rdns; [TEMPUNAVAIL] when it never started (fail closed). */
function clientName(connection: Connection): Promise<ClientName> {
  return (connection.notes[PENDING_NAME] as Promise<ClientName> | undefined) ?? Promise.resolve(LOOKUP_FAILED);
}

async function clientFacts(connection: Connection): Promise<ClientFacts> {
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

/** Connect, greet (EHLO, STARTTLS) unless the XCLIENT attributes are remembered, XCLIENT, EHLO again. */
async function establishBackend(plugin: ForwardPlugin, connection: Connection, remembered: Set<string> | null, signal: AbortSignal): Promise<BackendState> {
  const settings = plugin.settings;
  const session = await BackendSession.connect({
    host: settings.host,
    port: settings.port,
    connectTimeoutMs: settings.connectTimeoutMs,
    replyTimeoutMs: settings.replyTimeoutMs,
    signal,
    ...(settings.bind ? { localAddress: settings.bind } : {}),
  });
  try {
    const banner = await session.read();
    if (!isOk(banner)) throw new BackendError(`backend greeted with ${banner.code}`, banner);
    let capabilities = new Map<string, string[]>();
    let esmtp = true;
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
        connection.results.add(plugin, { pass: 'backend_tls' });
      }
      advertised = offeredXclient(capabilities);
      if (!advertised && capabilities.has('XCLIENT')) connection.logwarn(plugin, 'backend offers XCLIENT without ADDR: treated as no XCLIENT');
      rememberedXclient = settings.starttls ? null : advertised;
    }
    if (advertised) {
      const facts = await clientFacts(connection);
      for (const command of xclientCommands(xclientAttributes(facts, advertised))) {
        const reply = await session.command(command);
        // Postfix answers XCLIENT with a new 220 greeting.
        if (!isOk(reply)) throw new XclientRefused(`backend refused XCLIENT with ${reply.code} ${reply.lines.join(' ')}`, reply);
      }
      // Postfix takes the HELO name and the protocol from the HELO or EHLO that must follow XCLIENT, not
      // from XCLIENT HELO= and PROTO=: the client's own verb, with its name when that is one safe token
      // (Haraka keeps only the first word of HELO and refuses control characters; anything else outside
      // printable ASCII is not sent raw), else its address literal, never this proxy's name.
      const heloForBackend = SAFE_HELO.test(facts.helo ?? '') ? (facts.helo as string) : addressLiteral(facts.ip);
      const verb = facts.esmtp ? 'EHLO' : 'HELO';
      const greeting = await session.command(`${verb} ${heloForBackend}`);
      if (!isOk(greeting)) throw new BackendError(`backend refused ${verb} after XCLIENT with ${greeting.code}`, greeting);
      // After HELO the session has no extensions: no pipelining, no MAIL parameters.
      capabilities = facts.esmtp ? parseCapabilities(greeting) : new Map();
      esmtp = facts.esmtp;
      connection.results.add(plugin, { pass: 'xclient' });
    } else if (settings.requireXclient) {
      throw new BackendError('backend does not offer XCLIENT to this host (see smtpd_authorized_xclient_hosts)', null);
    } else {
      connection.results.add(plugin, { skip: 'xclient(not offered; degraded delivery allowed)' });
      connection.logwarn(plugin, 'backend does not offer XCLIENT: forwarding without the client identity');
    }
    return { session, pipelining: capabilities.has('PIPELINING'), esmtp, identity: identityOf(connection), binding: null, inData: false };
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

function mailFromLine(transaction: Transaction, esmtp: boolean): string {
  const params = esmtp ? ((transaction.notes[MAIL_PARAMS] as Record<string, string> | undefined) ?? {}) : {};
  const extra: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    const name = key.toUpperCase();
    if (name === 'BODY' && /^(7BIT|8BITMIME)$/i.test(value)) extra.push(`BODY=${value.toUpperCase()}`);
    if (name === 'SMTPUTF8') extra.push('SMTPUTF8');
  }
  return `MAIL FROM:<${transaction.mail_from.address}>${extra.map((param) => ` ${param}`).join('')}`;
}

/** The connection's usable backend session, or a new one. The open is abortable: a client that leaves
 * while it is in flight (banner, XCLIENT, EHLO) closes it at once instead of holding a backend smtpd
 * process until the backend's own timeout. */
async function backendFor(plugin: ForwardPlugin, connection: Connection): Promise<BackendState> {
  const existing = connection.notes[STATE] as BackendState | undefined;
  // A session opened for another HELO/EHLO or before STARTTLS carries the old identity: a new one.
  if (existing?.session.usable && existing.identity === identityOf(connection)) return existing;
  if (existing) dropBackend(connection);
  // limits.max_backend_sessions and its share per client network (set by mailproxy-limits): over either,
  // no backend connection is made.
  const slot = backendSessions.acquire(connection, connection.remote.ip);
  if (!slot.ok) throw new BackendBusy(slot.reason, slot.limit);
  const opening = new AbortController();
  connection.notes[OPENING] = opening;
  try {
    const state = await openBackend(plugin, connection, opening.signal);
    // Without XCLIENT nothing awaited the name yet: Haraka's Received header at DATA wants it.
    await clientName(connection);
    connection.notes[STATE] = state;
    // The slot lives as long as the backend session: one the backend closed (idle, stress) or that failed
    // frees it at once, not when the client leaves.
    state.session.onEnd(() => {
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

/** No backend session left under limits.max_backend_sessions or the client network's share. */
class BackendBusy extends Error {
  constructor(
    readonly reason: 'max_backend_sessions' | 'max_backend_sessions_per_network',
    readonly limit: number,
  ) {
    super(`backend session cap reached (${reason} ${limit})`);
  }
}

/** Ends the connection's backend session and frees its slot: with `polite`, QUIT outside DATA (inside
 * it a QUIT would be read as body text, so only closing the connection aborts the message); else closed. */
function dropBackend(connection: Connection, polite = false): void {
  const state = connection.notes[STATE] as BackendState | undefined;
  if (!state) return;
  if (polite && !state.inData) state.session.quit();
  else state.session.destroy();
  delete connection.notes[STATE];
  backendSessions.release(connection);
}

/** The address the backend is asked about: a recipient at one of our domains, or the bare postmaster
 * (RFC 5321 §4.5.1: it must be accepted), which goes to the postmaster of the first domain. */
function backendRecipient(plugin: ForwardPlugin, recipient: Address | undefined): string | null {
  if (!recipient) return null;
  const domain = (recipient.host ?? '').toLowerCase();
  if (domain) return plugin.localDomains.has(domain) ? recipient.address : null;
  return recipient.user?.toLowerCase() === 'postmaster' && plugin.postmasterDomain ? `postmaster@${plugin.postmasterDomain}` : null;
}

/** The transaction's binding when its session is still the connection's and usable. */
function liveBinding(connection: Connection, binding: Binding): boolean {
  const state = connection.notes[STATE] as BackendState | undefined;
  return state?.binding === binding && binding.session.usable;
}

export function check_recipient(this: ForwardPlugin, next: Next, connection: Connection, params: [Address]): void {
  const transaction = connection.transaction;
  const target = backendRecipient(this, params[0]);
  // Not ours: no plugin accepts it, so Haraka answers 550 (haraka-in never relays); the backend never hears of it.
  if (!transaction || !target) return next();
  (async () => {
    const bound = await liveOrReplayed(this, connection, transaction);
    const state = await backendFor(this, connection);
    const open = bound !== undefined && state.binding === bound;
    const lines = open ? [] : [mailFromLine(transaction, state.esmtp)];
    lines.push(`RCPT TO:<${target}>`);
    const replies = await sendEnvelope(state, lines);
    let binding = bound as Binding;
    if (!open) {
      const mailReply = replies.shift() as Reply;
      if (!isOk(mailReply)) {
        transaction.results.add(this, { fail: `backend MAIL FROM ${mailReply.code}` });
        if (mailReply.code === 421) dropBackend(connection);
        const [code, dsn] = refusal(mailReply);
        return next(code, dsn);
      }
      binding = { session: state.session, accepted: 0, recipients: [] };
      state.binding = binding;
      transaction.notes[BOUND] = binding;
    }
    const rcptReply = replies.shift() as Reply;
    if (isOk(rcptReply)) {
      binding.accepted += 1;
      binding.recipients.push(target);
      if (binding.accepted === 1 && this.settings.keepAliveMs > 0) state.session.keepAlive(this.settings.keepAliveMs);
      transaction.results.add(this, { pass: `rcpt ${target}` });
      return next(constants.OK);
    }
    transaction.results.add(this, { fail: `backend RCPT ${rcptReply.code}` });
    if (rcptReply.code === 421) dropBackend(connection);
    const [code, dsn] = refusal(rcptReply);
    return next(code, dsn);
  })().catch((err: Error) => {
    if (err instanceof BackendBusy) return backendBusy(this, connection, next, err);
    if (err instanceof ReplayRefused) return transactionLost(this, connection, next, 'this recipient', err.message);
    backendUnavailable(this, connection, next, 'recipient check failed', err);
  });
}

/** MAIL/RCPT lines in one write when the backend pipelines, else one by one until the first refusal. */
async function sendEnvelope(state: BackendState, lines: string[]): Promise<Reply[]> {
  if (state.pipelining) return state.session.send(...lines);
  const replies: Reply[] = [];
  for (const line of lines) {
    const reply = await state.session.command(line);
    replies.push(reply);
    if (!isOk(reply)) break;
  }
  return replies;
}

/** The backend no longer accepts what the client was told 250 for, in a new session. */
class ReplayRefused extends BackendError {}

/**
 * The transaction's binding, live. One whose backend session was lost (the backend's idle close,
 * stress, an error) while the client took its time is replayed in a new session: MAIL and every
 * recipient the client was told 250 for, each of which must be accepted again (else ReplayRefused). This
 * replaces the NOOP keepalive that Postfix under stress counts as junk commands.
 */
async function liveOrReplayed(plugin: ForwardPlugin, connection: Connection, transaction: Transaction): Promise<Binding | undefined> {
  const bound = transaction.notes[BOUND] as Binding | undefined;
  if (!bound || bound.accepted === 0 || liveBinding(connection, bound)) return bound;
  connection.loginfo(plugin, `backend session lost with ${bound.accepted} recipient(s) accepted: replaying the transaction in a new session`);
  const state = await backendFor(plugin, connection);
  const lines = [mailFromLine(transaction, state.esmtp), ...bound.recipients.map((recipient) => `RCPT TO:<${recipient}>`)];
  const replies = await sendEnvelope(state, lines);
  const refused = replies.find((reply) => !isOk(reply));
  if (refused || replies.length !== lines.length) {
    const reply = refused ?? null;
    throw new ReplayRefused(`the backend refused the replayed transaction${reply ? ` with ${reply.code} ${reply.lines.join(' ')}` : ''}`, reply);
  }
  const binding: Binding = { session: state.session, accepted: bound.recipients.length, recipients: [...bound.recipients] };
  state.binding = binding;
  transaction.notes[BOUND] = binding;
  transaction.results.add(plugin, { pass: 'replayed' });
  return binding;
}

/** Over limits.max_backend_sessions: 421 and the session ends (RFC 5321 §3.8). Nothing this session could
 * send would get a backend session now, and a 451 per recipient would keep it, and its client slot, open;
 * after a 421 the sender queues the message and retries later, or tries the next MX. */
function backendBusy(plugin: ForwardPlugin, connection: Connection, next: Next, err: BackendBusy): void {
  connection.transaction?.results.add(plugin, { fail: err.reason });
  logDecision(connection, plugin, { action: 'refuse', ip: connection.remote.ip, check: 'limits', reason: err.reason, code: 421, extra: { limit: err.limit } });
  next(constants.DENYSOFTDISCONNECT, DSN.create(421, 'Mail server busy, try again later', 7, 0));
}

/** DATA: nothing to check here any more; a lost backend session is replayed at the end of data. */
export function check_backend_data(this: ForwardPlugin, next: Next): void {
  next();
}

/** While the backend decides, the client is silent too: Haraka's inactivity timer must not end the
 * session (and answer 421) while the backend may still accept the message. */
function holdClientTimer(connection: Connection, settings: Settings): () => void {
  const wait = settings.replyTimeoutMs + settings.bodyTimeoutMs + settings.dataTimeoutMs + 5000;
  if (wait <= settings.clientTimeoutMs) return () => undefined;
  const sockets = [connection.client, connection.client.cleartext?.socket].filter((socket) => socket !== undefined);
  for (const socket of sockets) socket.setTimeout(wait);
  return () => {
    for (const socket of sockets) socket.setTimeout(settings.clientTimeoutMs);
  };
}

function streamBody(state: BackendState, transaction: Transaction, settings: Settings): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const writer = state.session.bodyWriter();
    const deadline = setTimeout(() => {
      reject(new BackendError(`message data took over ${settings.bodyTimeoutMs} ms to reach the backend`));
      state.session.destroy();
    }, settings.bodyTimeoutMs);
    const settle = (error?: Error) => {
      clearTimeout(deadline);
      if (error) reject(error);
      else resolve();
    };
    writer.once('finish', () => settle());
    writer.once('error', settle);
    transaction.message_stream.once('error', settle);
    pipeRaw(transaction.message_stream, captureOf(transaction) as RawCapture, writer, NOTHING, { dot_stuffed: false, ending_dot: true });
  });
}

export function forward_message(this: ForwardPlugin, next: Next, connection: Connection): void {
  const transaction = connection.transaction;
  const first = transaction?.notes[BOUND] as Binding | undefined;
  if (!transaction || !first) return transactionLost(this, connection, next, 'the end of data');
  // Every recipient the client got 250 for must be a recipient of the backend transaction that carries the message.
  if (first.accepted === 0 || first.accepted !== transaction.rcpt_to.length) {
    return backendUnavailable(this, connection, next, `backend accepted ${first.accepted} recipients, the client was told 250 for ${transaction.rcpt_to.length}`);
  }
  const settings = this.settings;
  const unchangeable = unchangedRefusal(transaction);
  // The backend transaction stays open: the reset hook RSETs it.
  if (unchangeable) return refuse(this, next, transaction, { code: unchangeable.code, lines: [unchangeable.text] });
  const releaseClientTimer = holdClientTimer(connection, settings);
  (async () => {
    let bound: Binding | undefined;
    try {
      bound = await liveOrReplayed(this, connection, transaction);
    } catch (err) {
      if (err instanceof ReplayRefused || err instanceof BackendBusy) return transactionLost(this, connection, next, 'the end of data', err.message);
      throw err;
    }
    const state = connection.notes[STATE] as BackendState | undefined;
    if (!bound || !state || !liveBinding(connection, bound)) return transactionLost(this, connection, next, 'the end of data');
    // DATA goes to the backend only now that the whole message is here: sent when the client said DATA,
    // the backend would sit idle in DATA for as long as the client takes to upload (a slow sender outlasts
    // Postfix's smtpd_timeout), and it costs one round trip.
    state.session.keepAlive(null);
    state.inData = true;
    const go = await state.session.command('DATA');
    if (go.code !== 354) {
      // A refused DATA leaves the backend transaction open: the reset hook RSETs it.
      state.inData = false;
      if (go.code === 421) dropBackend(connection);
      return refuse(this, next, transaction, go);
    }
    const payload = rawPayload(transaction.message_stream, captureOf(transaction) as RawCapture, NOTHING, true);
    // Waiting before writing: the end-of-data reply can never arrive unawaited (which would fail the session).
    // The wait is data_timeout after the body; a streamed body's own deadline bounds the part before.
    const verdict = state.session.read(payload ? settings.dataTimeoutMs : settings.dataTimeoutMs + settings.bodyTimeoutMs);
    verdict.catch(() => undefined);
    if (payload) state.session.write(payload);
    else await streamBody(state, transaction, settings);
    const done = await verdict;
    state.inData = false;
    state.binding = null;
    if (isOk(done)) {
      transaction.results.add(this, { pass: `backend ${done.code}` });
      return next(constants.OK, `Queued by backend: ${done.lines.join(' ')}`);
    }
    if (done.code === 421) dropBackend(connection);
    return refuse(this, next, transaction, done);
  })()
    .catch((err: Error) => backendUnavailable(this, connection, next, 'forwarding failed', err))
    .finally(releaseClientTimer);
}

function refuse(plugin: ForwardPlugin, next: Next, transaction: Transaction, reply: Reply): void {
  transaction.results.add(plugin, { fail: `backend ${reply.code}` });
  const [code, dsn, replyCode] = refusal(reply);
  transaction.notes[REPLY_CODE_NOTE] = replyCode;
  next(code, dsn);
}

export function reset_backend_transaction(this: ForwardPlugin, next: Next, connection: Connection): void {
  const state = connection.notes[STATE] as BackendState | undefined;
  const bound = connection.transaction?.notes[BOUND] as Binding | undefined;
  if (state && !state.inData && (bound?.accepted ?? 0) === 0) {
    // A transaction that ended with no recipient the backend accepted: its session (and slot) is not kept
    // for a client that may only have come to probe addresses; the next transaction opens a new one.
    dropBackend(connection, true);
  } else if (state?.inData) {
    // The backend is inside DATA: only closing the connection aborts the transaction, and an RSET
    // written now would land in the body.
    dropBackend(connection);
  } else if (state?.binding && state.session.usable) {
    state.binding = null;
    state.session.keepAlive(null);
    state.session.command('RSET').then(
      (reply) => {
        if (!isOk(reply)) dropBackend(connection);
      },
      () => dropBackend(connection),
    );
  }
  next();
}

export function close_backend(this: ForwardPlugin, next: Next, connection: Connection): void {
  (connection.notes[OPENING] as AbortController | undefined)?.abort();
  // A session still opening holds a slot but is not in the notes yet.
  backendSessions.release(connection);
  dropBackend(connection, true);
  next();
}
