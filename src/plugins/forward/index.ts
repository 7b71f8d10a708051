// mailproxy-forward (haraka-in): forwards each message to the backend over WireGuard, in the same backend
// session that checked its recipients, with the client's identity passed by XCLIENT.
//
//   client RCPT ─▶ (first one) connect from the WireGuard address, [EHLO,] XCLIENT ..., EHLO, MAIL FROM
//               ─▶ RCPT TO at the backend: its reply (code and enhanced status) is the client's reply
//   client DATA ─▶ DATA, body in one write (or streamed in large writes), end-of-data reply is the client's reply
//
// Fail closed: no XCLIENT, a refused XCLIENT, an unreachable or silent backend all give the client 4xx.
// Haraka's 250 is sent only after the backend's 250, so mail is never accepted and dropped.
// Haraka treats a plugin that throws as "carry on": every hook here catches and answers DENYSOFT.
import type { HarakaPlugin, Next } from '../haraka-types';
import { REPLY_CODE_NOTE } from '../reply-code';
import { BackendError, BackendSession, parseCapabilities, type Reply } from './backend-session';
import { cachedClientNameLookup } from './fcrdns';
import { captureLines, wireMessage, type CapturableStream, type Capture } from './wire-message';
import { xclientAttributes, xclientCommands, type ClientFacts } from './xclient';

interface ForwardIni {
  main: {
    host: string;
    port: number;
    bind?: string;
    connect_timeout: number;
    timeout: number;
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
  requireXclient: boolean;
  starttls: boolean;
  rdnsTimeoutMs: number;
  heloName: string;
}

interface Address {
  /** A property since Haraka 3.2 (it was a method before). */
  address: string;
  host: string | null;
}

interface Transaction {
  uuid: string;
  discard_data?: boolean;
  mail_from: Address;
  rcpt_to: Address[];
  notes: Record<string, unknown>;
  message_stream: CapturableStream & { pipe(destination: NodeJS.WritableStream, options: object): void; once(event: string, fn: (err: Error) => void): void };
  results: { add(plugin: unknown, result: object): void };
}

interface Connection {
  uuid: string;
  remote: { ip: string; port: number; host?: string };
  local: { ip: string; port: number };
  hello: { verb: string | null; host: string | null };
  notes: Record<string, unknown>;
  transaction: Transaction | null;
  results: { add(plugin: unknown, result: object): void };
  loginfo(plugin: unknown, message: string): void;
  logwarn(plugin: unknown, message: string): void;
  logerror(plugin: unknown, message: string): void;
}

interface ForwardPlugin extends HarakaPlugin {
  settings: Settings;
  localDomains: Set<string>;
  load_forward_ini(): void;
  load_host_list(): void;
}

/** Per client connection: the backend session and the state of its current transaction. */
interface BackendState {
  session: BackendSession;
  pipelining: boolean;
  /** MAIL FROM accepted by the backend for the current client transaction. */
  mailOpen: boolean;
  /** Recipients the backend accepted in the current transaction. */
  accepted: number;
  /** The backend's reply to DATA, sent when the client said DATA so it overlaps the body upload. Set
   * until the end-of-data reply is read: while it is, the backend is inside DATA, where an RSET or QUIT
   * would be read as a body line. */
  dataReply: Promise<Reply> | null;
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
const SAFE_HELO = /^[\x21-\x7e]{1,255}$/;
const NAME = 'mailproxy_forward_name';
const MAIL_PARAMS = 'mailproxy_mail_params';
const CAPTURE = 'mailproxy_capture';
/** Messages up to this size go to the backend in one write built from the stored lines (wire-message.ts). */
const CAPTURE_LIMIT = 256 * 1024;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const constants = require('haraka-constants') as { OK: number; DENY: number; DENYSOFT: number; CONT: number };
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
  this.register_hook('data', 'start_backend_data');
  this.register_hook('queue', 'forward_message');
  this.register_hook('reset_transaction', 'reset_backend_transaction');
  this.register_hook('disconnect', 'close_backend');
}

export function load_forward_ini(this: ForwardPlugin): void {
  const cfg = this.config.get('mailproxy-forward.ini', { booleans: ['+main.require_xclient', '-main.starttls'] }, () => this.load_forward_ini()) as ForwardIni;
  const me = this.config.get('me') as string | null;
  this.settings = {
    host: String(cfg.main.host),
    port: Number(cfg.main.port),
    bind: cfg.main.bind ? String(cfg.main.bind) : undefined,
    connectTimeoutMs: Number(cfg.main.connect_timeout) * 1000,
    replyTimeoutMs: Number(cfg.main.timeout) * 1000,
    requireXclient: cfg.main.require_xclient,
    starttls: cfg.main.starttls,
    rdnsTimeoutMs: Number(cfg.main.rdns_timeout ?? 3) * 1000,
    heloName: me ?? 'localhost',
  };
  rememberedXclient = null;
  earlyXclientWorks = true;
}

export function load_host_list(this: ForwardPlugin): void {
  const list = this.config.get('host_list', 'list', () => this.load_host_list()) as string[];
  this.localDomains = new Set(list.map((domain) => domain.toLowerCase()));
}

/** Client names are kept a minute, as long as the TTL of the test zone and well under real PTR TTLs. */
const lookupClientName = cachedClientNameLookup({ ttlMs: 60_000, maxEntries: 10_000 });

export function lookup_client_name(this: ForwardPlugin, next: Next, connection: Connection): void {
  // Replaces Haraka's own reverse lookup (one PTR query, not two), bounded by rdns_timeout, and also
  // forward-confirms the name for XCLIENT NAME.
  lookupClientName(connection.remote.ip, this.settings.rdnsTimeoutMs).then(
    (name) => {
      connection.notes[NAME] = name.xclientName;
      next(constants.OK, name.ptr);
    },
    () => {
      connection.notes[NAME] = '[TEMPUNAVAIL]';
      next(constants.OK, 'DNSERROR');
    },
  );
}

export function prepare_transaction(this: ForwardPlugin, next: Next, connection: Connection, params: [Address, Record<string, string>?]): void {
  const transaction = connection.transaction;
  if (transaction) {
    // MAIL FROM parameters the backend must see again (BODY=8BITMIME, SMTPUTF8).
    transaction.notes[MAIL_PARAMS] = params[1] ?? {};
    // From MAIL on, so that the Received line Haraka stores before the data hook is captured too.
    transaction.notes[CAPTURE] = captureLines(transaction.message_stream, CAPTURE_LIMIT);
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

/** A backend refusal keeps its class: 5xx denies, 4xx defers. */
function refusalCode(reply: Reply): number {
  return isOk(reply, 5) ? constants.DENY : constants.DENYSOFT;
}

/** Fail closed: drop the backend session and defer, whatever went wrong. */
function backendUnavailable(plugin: ForwardPlugin, connection: Connection, next: Next, what: string, err?: Error): void {
  if (err) connection.results.add(plugin, { err: err.message });
  connection.logerror(plugin, err ? `${what}: ${err.message}` : what);
  dropBackend(connection);
  next(constants.DENYSOFT, DSN.create(451, 'Backend temporarily unavailable, try again later', 4, 1));
}

function isOk(reply: Reply, code = 2): boolean {
  return Math.floor(reply.code / 100) === code;
}

/** A refused XCLIENT: with remembered attributes, the cue to start over with EHLO. */
class XclientRefused extends BackendError {}

async function openBackend(plugin: ForwardPlugin, connection: Connection): Promise<BackendState> {
  const remembered = plugin.settings.starttls || !earlyXclientWorks ? null : rememberedXclient;
  if (!remembered) return establishBackend(plugin, connection, null);
  try {
    return await establishBackend(plugin, connection, remembered);
  } catch (err) {
    if (!(err instanceof XclientRefused)) throw err;
    rememberedXclient = null;
    connection.loginfo(plugin, `${err.message}; asking the backend again with EHLO`);
  }
  const state = await establishBackend(plugin, connection, null);
  // Refused before EHLO, taken after it: this backend wants EHLO first, so stop trying early XCLIENT.
  if (rememberedXclient) earlyXclientWorks = false;
  return state;
}

function clientFacts(connection: Connection): ClientFacts {
  return {
    name: typeof connection.notes[NAME] === 'string' ? connection.notes[NAME] : '[UNAVAILABLE]',
    ip: connection.remote.ip,
    port: connection.remote.port,
    helo: connection.hello.host ?? null,
    esmtp: (connection.hello.verb ?? '').toUpperCase() === 'EHLO',
    login: typeof connection.notes.auth_user === 'string' ? connection.notes.auth_user : null,
    destAddr: connection.local.ip,
    destPort: connection.local.port,
  };
}

/** Connect, greet (EHLO, STARTTLS) unless the XCLIENT attributes are remembered, XCLIENT, EHLO again. */
async function establishBackend(plugin: ForwardPlugin, connection: Connection, remembered: Set<string> | null): Promise<BackendState> {
  const settings = plugin.settings;
  const session = await BackendSession.connect({
    host: settings.host,
    port: settings.port,
    connectTimeoutMs: settings.connectTimeoutMs,
    replyTimeoutMs: settings.replyTimeoutMs,
    ...(settings.bind ? { localAddress: settings.bind } : {}),
  });
  try {
    const banner = await session.read();
    if (!isOk(banner)) throw new BackendError(`backend greeted with ${banner.code}`, banner);
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
        connection.results.add(plugin, { pass: 'backend_tls' });
      }
      const offered = capabilities.get('XCLIENT');
      advertised = offered ? new Set(offered) : null;
      rememberedXclient = settings.starttls ? null : advertised;
    }
    if (advertised) {
      const facts = clientFacts(connection);
      for (const command of xclientCommands(xclientAttributes(facts, advertised))) {
        const reply = await session.command(command);
        // Postfix answers XCLIENT with a new 220 greeting.
        if (!isOk(reply)) throw new XclientRefused(`backend refused XCLIENT with ${reply.code} ${reply.lines.join(' ')}`, null);
      }
      // Postfix takes the HELO name from the EHLO that must follow XCLIENT, not from XCLIENT HELO=, so
      // that EHLO carries the client's name when it is one safe token (Haraka keeps only the first word
      // of HELO and refuses control characters; anything else outside printable ASCII is not sent raw).
      const heloForBackend = SAFE_HELO.test(facts.helo ?? '') ? (facts.helo as string) : settings.heloName;
      const ehlo = await session.command(`EHLO ${heloForBackend}`);
      if (!isOk(ehlo)) throw new BackendError(`backend refused EHLO after XCLIENT with ${ehlo.code}`, ehlo);
      capabilities = parseCapabilities(ehlo);
      connection.results.add(plugin, { pass: 'xclient' });
    } else if (settings.requireXclient) {
      throw new BackendError('backend does not offer XCLIENT to this host (see smtpd_authorized_xclient_hosts)', null);
    } else {
      connection.results.add(plugin, { skip: 'xclient(not offered; degraded delivery allowed)' });
      connection.logwarn(plugin, 'backend does not offer XCLIENT: forwarding without the client identity');
    }
    return { session, pipelining: capabilities.has('PIPELINING'), mailOpen: false, accepted: 0, dataReply: null };
  } catch (err) {
    session.destroy();
    throw err;
  }
}

function mailFromLine(transaction: Transaction): string {
  const params = (transaction.notes[MAIL_PARAMS] as Record<string, string> | undefined) ?? {};
  const extra: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    const name = key.toUpperCase();
    if (name === 'BODY' && /^(7BIT|8BITMIME)$/i.test(value)) extra.push(`BODY=${value.toUpperCase()}`);
    if (name === 'SMTPUTF8') extra.push('SMTPUTF8');
  }
  return `MAIL FROM:<${transaction.mail_from.address}>${extra.map((param) => ` ${param}`).join('')}`;
}

async function backendFor(plugin: ForwardPlugin, connection: Connection): Promise<BackendState> {
  const existing = connection.notes[STATE] as BackendState | undefined;
  if (existing?.session.usable) return existing;
  const state = await openBackend(plugin, connection);
  connection.notes[STATE] = state;
  return state;
}

function dropBackend(connection: Connection): void {
  const state = connection.notes[STATE] as BackendState | undefined;
  if (!state) return;
  state.session.destroy();
  delete connection.notes[STATE];
}

export function check_recipient(this: ForwardPlugin, next: Next, connection: Connection, params: [Address]): void {
  const [recipient] = params;
  const transaction = connection.transaction;
  const domain = (recipient?.host ?? '').toLowerCase();
  // Not ours: no plugin accepts it, so Haraka answers 550 (haraka-in never relays); the backend never hears of it.
  if (!transaction || !this.localDomains.has(domain)) return next();
  (async () => {
    const state = await backendFor(this, connection);
    const lines = state.mailOpen ? [] : [mailFromLine(transaction)];
    lines.push(`RCPT TO:<${recipient.address}>`);
    let replies: Reply[];
    if (state.pipelining) {
      replies = await state.session.send(...lines);
    } else {
      replies = [];
      for (const line of lines) {
        const reply = await state.session.command(line);
        replies.push(reply);
        if (!isOk(reply)) break;
      }
    }
    if (!state.mailOpen) {
      const mailReply = replies.shift() as Reply;
      if (!isOk(mailReply)) {
        transaction.results.add(this, { fail: `backend MAIL FROM ${mailReply.code}` });
        return next(refusalCode(mailReply), dsnFrom(mailReply));
      }
      state.mailOpen = true;
    }
    const rcptReply = replies.shift() as Reply;
    if (isOk(rcptReply)) {
      state.accepted += 1;
      transaction.results.add(this, { pass: `rcpt ${recipient.address}` });
      return next(constants.OK);
    }
    transaction.results.add(this, { fail: `backend RCPT ${rcptReply.code}` });
    return next(refusalCode(rcptReply), dsnFrom(rcptReply));
  })().catch((err: Error) => backendUnavailable(this, connection, next, 'recipient check failed', err));
}

export function start_backend_data(this: ForwardPlugin, next: Next, connection: Connection): void {
  const state = connection.notes[STATE] as BackendState | undefined;
  if (state?.mailOpen && state.accepted > 0 && state.session.usable && !state.dataReply) {
    state.dataReply = state.session.command('DATA');
    state.dataReply.catch(() => undefined); // awaited (and reported) at queue time
  }
  next();
}

export function forward_message(this: ForwardPlugin, next: Next, connection: Connection): void {
  const transaction = connection.transaction;
  const state = connection.notes[STATE] as BackendState | undefined;
  if (!transaction || !state || !state.mailOpen || state.accepted === 0 || !state.session.usable) {
    return backendUnavailable(this, connection, next, 'no open backend transaction at queue time');
  }
  (async () => {
    state.dataReply ??= state.session.command('DATA');
    const go = await state.dataReply;
    if (go.code !== 354) {
      // The backend's transaction is still open (a refused DATA does not end it): the reset hook RSETs it.
      state.dataReply = null;
      return refuse(this, next, transaction, go);
    }
    const capture = transaction.notes[CAPTURE] as Capture | undefined;
    const payload = capture ? wireMessage(transaction, transaction.message_stream, capture) : null;
    if (payload) {
      state.session.write(payload);
    } else {
      await new Promise<void>((resolve, reject) => {
        const writer = state.session.bodyWriter();
        writer.once('finish', resolve);
        writer.once('error', reject);
        transaction.message_stream.once('error', reject);
        transaction.message_stream.pipe(writer, { dot_stuffed: false, ending_dot: true });
      });
    }
    const done = await state.session.read();
    state.dataReply = null;
    state.mailOpen = false;
    state.accepted = 0;
    if (isOk(done)) {
      transaction.results.add(this, { pass: `backend ${done.code}` });
      return next(constants.OK, `Queued by backend: ${done.lines.join(' ')}`);
    }
    return refuse(this, next, transaction, done);
  })().catch((err: Error) => backendUnavailable(this, connection, next, 'forwarding failed', err));
}

function refuse(plugin: ForwardPlugin, next: Next, transaction: Transaction, reply: Reply): void {
  transaction.results.add(plugin, { fail: `backend ${reply.code}` });
  transaction.notes[REPLY_CODE_NOTE] = reply.code;
  next(refusalCode(reply), dsnFrom(reply));
}

export function reset_backend_transaction(this: ForwardPlugin, next: Next, connection: Connection): void {
  const state = connection.notes[STATE] as BackendState | undefined;
  if (state?.dataReply) {
    // The backend is inside DATA, waiting for a body that will not come (the client left or the message
    // was refused here) or still taking one: only closing the connection aborts the transaction, and an
    // RSET written now would land in the body.
    dropBackend(connection);
  } else if (state?.mailOpen && state.session.usable) {
    state.mailOpen = false;
    state.accepted = 0;
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
  const state = connection.notes[STATE] as BackendState | undefined;
  if (state) {
    // Inside DATA a QUIT would be read as body text: only closing the connection aborts the message.
    if (state.dataReply) state.session.destroy();
    else state.session.quit();
    delete connection.notes[STATE];
  }
  next();
}
