// Every hook mailproxy-outbound has into Haraka 3.3.4's outbound TLS, in one place. Each asks the TLS policy
// (../../outbound/tls-policy.ts, through delivery.ts tlsFor) for the level of the connection Haraka is
// making, and does what that level means in Haraka's terms.
// What Haraka does (outbound/hmail.js, outbound/tls.js, tls_socket.js):
// - before each MX connection it asks the item `get_force_tls(mx)`; true (TLS required) takes its force-TLS
//   path: no STARTTLS is a temp-fail, `rejectUnauthorized` is set, and a socket that is not `authorized`
//   after the handshake is a temp-fail; it never asks check_tls_nogo there;
// - otherwise, after its tls.ini no_tls_hosts lists, `obtls.check_tls_nogo(host, ok, nogo)` decides whether
//   STARTTLS is tried; `obtls.mark_tls_nogo(host, cb)` hears of every TLS error; both are Redis-backed in
//   Haraka's OutboundTLS singleton (no-ops without Redis), and are replaced here
//   (../../outbound/tls-fallback.ts remembers);
// - it upgrades with `obtls.get_tls_options(mx)` (servername = the MX name) through `tls.connect(options)`,
//   which tls_socket.js calls as a property of node:tls.
// So:
// - get_force_tls answers per message, not from the process-wide force_tls_hosts list (which another delivery
//   to the same domain may change meanwhile): true for `dane`, `encrypt` and `verify`. It also records the MX
//   being tried (Haraka tries one at a time per message) and which message each mx object belongs to.
// - A DANE-EE certificate need not chain to any CA: get_tls_options marks the options it returns for a
//   `dane`/`encrypt` connection, and `tls.connect` with marked options, and only those (an HTTPS policy
//   fetch or any other TLS client in the process is never touched), connects without Node's CA check and
//   has ../../outbound/dane.ts judge the certificate before the handshake's events ('secure', then
//   'secureConnect') reach anyone: a match, or `encrypt`, is authorized and the events go on to Haraka; a
//   mismatch swallows both and destroys the connection with a TLS error, which Haraka treats like a failed
//   handshake (the next MX is tried, no try without TLS). Not a byte, not even EHLO, is written after the
//   handshake unless it passed.
// Haraka's internals are pinned by test/unit/outbound-haraka-pin.test.ts, which fails when Haraka changes.
import tls from 'node:tls';
import { currentDelivery, stateOf, tlsFor, tlsNow, type DeliveryState, type TriedMx } from '../../outbound/delivery';
import type { HMail } from '../hmail';
import { daneVerdict } from '../../outbound/dane';
import { failures } from '../../outbound/explain';
import { rememberRequiredTlsFailure, rememberTlsFailure, usePlaintextOnce } from '../../outbound/tls-fallback';
import { requiresTls } from '../../outbound/tls-policy';
import { appliedPolicy, recordSession, tlsReporting } from '../../outbound/tls-sessions';
import { certificateResult } from '../../../tlsrpt/classify';

export interface OutboundTls {
  check_tls_nogo(host: string, ok: () => void, nogo: (when: string) => void): void;
  mark_tls_nogo(host: string, done: () => void): void;
  get_tls_options?: (mx: HarakaMx) => object;
  cfg?: { force_tls_hosts?: string[] };
  [patched: symbol]: boolean | undefined;
}

interface HarakaMx {
  exchange?: string;
  from_dns?: string;
}

/** Haraka's OutboundTLS singleton: the one module instance Haraka's own outbound code uses. */
export function harakaOutboundTls(): OutboundTls {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('haraka/outbound/tls');
}

/**
 * Adds `domain` to Haraka's force_tls_hosts list, or takes it off: what requires TLS for an MTA-STS enforce
 * domain in Haraka's own terms, should get_force_tls not be answered here. False when Haraka's outbound TLS
 * settings are not loaded (there is no list to change).
 */
export function requireTlsForDomain(domain: string, required: boolean): boolean {
  const outboundTls = harakaOutboundTls();
  if (!outboundTls.cfg) return false;
  const list = outboundTls.cfg.force_tls_hosts ?? [];
  const present = list.includes(domain);
  if (required && !present) outboundTls.cfg.force_tls_hosts = [...list, domain];
  if (!required && present) outboundTls.cfg.force_tls_hosts = list.filter((entry) => entry !== domain);
  return true;
}

const FALLBACK_PATCHED = Symbol.for('mailproxy.tls-fallback');
const DANE_PATCHED = Symbol.for('mailproxy.dane-tls');
/** On the options get_tls_options returns for a DANE connection (object spread keeps symbol keys). */
const DANE_UPGRADE = Symbol('mailproxy.dane-upgrade');
/** On the options of a connection whose TLS outcome counts for a TLS report (../../outbound/tls-sessions.ts). */
const REPORTED = Symbol('mailproxy.tls-reported');

/** The message each mx object Haraka is connecting to belongs to (set by get_force_tls, per connection). */
const mxOwners = new WeakMap<object, DeliveryState>();

export function rememberMx(mx: object, state: DeliveryState): void {
  mxOwners.set(mx, state);
}

/** The connection `host` belongs to: the MX being tried (Haraka's host is its address). */
const triedAt = (state: DeliveryState, host: string): TriedMx => state.attempt.mx ?? { name: host, address: host };

interface HMailClass {
  prototype: { get_force_tls(this: HMail, mx: HarakaMx): boolean; [FALLBACK_PATCHED]?: boolean };
}

/** get_force_tls per message: records the MX being tried and answers whether its level requires TLS. */
function forceTlsPerMessage(): boolean {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const HMailItem = require('haraka/outbound/hmail') as HMailClass;
  const proto = HMailItem.prototype;
  if (typeof proto.get_force_tls !== 'function') return false;
  if (proto[FALLBACK_PATCHED]) return true;
  const original = proto.get_force_tls;
  proto.get_force_tls = function getForceTls(this: HMail, mx: HarakaMx): boolean {
    const state = stateOf(this);
    // Haraka's own answer reads its settings, which may not be loaded yet (then nothing is listed).
    const forcedByConfig = harakaOutboundTls().cfg ? original.call(this, mx) : false;
    const tried: TriedMx = { name: String(mx?.from_dns ?? mx?.exchange ?? '').toLowerCase(), address: String(mx?.exchange ?? ''), forcedByConfig };
    state.attempt.mx = tried;
    if (typeof mx === 'object' && mx !== null) rememberMx(mx, state);
    const level = tlsFor(state, tried);
    this.loginfo(`TLS with ${tried.name} (${tried.address}): ${level.level} (${level.reason})`);
    return requiresTls(level.level);
  };
  proto[FALLBACK_PATCHED] = true;
  return true;
}

/** get_force_tls per message and the TLS-nogo memory per message. False when Haraka has no such methods. */
export function installTlsFallback(): boolean {
  const obtls = harakaOutboundTls();
  if (typeof obtls.check_tls_nogo !== 'function' || typeof obtls.mark_tls_nogo !== 'function') return false;
  if (!forceTlsPerMessage()) return false;
  if (obtls[FALLBACK_PATCHED]) return true;
  obtls.mark_tls_nogo = (host, done) => {
    const state = currentDelivery();
    if (state) {
      const mx = triedAt(state, host);
      rememberTlsFailure(state, mx, host, tlsFor(state, mx));
    }
    done();
  };
  obtls.check_tls_nogo = (host, ok, nogo) => {
    const state = currentDelivery();
    const level = state ? tlsFor(state, { ...triedAt(state, host), address: host }) : undefined;
    if (!state || level?.level !== 'plaintext-once') return ok();
    usePlaintextOnce(state, host);
    nogo(`${new Date(level.tlsFailedAt).toISOString()} (its STARTTLS failed; one try without TLS)`);
  };
  obtls[FALLBACK_PATCHED] = true;
  return true;
}

interface DaneUpgrade {
  state: DeliveryState;
  mx: string;
}

interface ReportedSession {
  state: DeliveryState;
  mx: TriedMx;
  /** Set once the session is counted: a DANE mismatch ends in a TLS error that must not count again. */
  counted: boolean;
  /** Both ends of the TCP connection under the TLS. */
  ends?: { localAddress?: string | undefined; remoteAddress?: string | undefined };
}

/** The `dane` or `encrypt` level of the MX this message is trying now, if that is its level. */
function daneLevel(state: DeliveryState) {
  const level = tlsNow(state);
  return level?.level === 'dane' || level?.level === 'encrypt' ? level : undefined;
}

/** Authorized by DANE: Node's own complaint (a self-signed certificate, say) no longer applies. */
function authorize(socket: tls.TLSSocket): void {
  socket.authorized = true;
  (socket as { authorizationError?: Error }).authorizationError = undefined;
}

function reject(socket: tls.TLSSocket, state: DeliveryState, mx: string, why: string, session?: ReportedSession): false {
  const failure = failures.daneMismatch(state.domain, mx, why);
  countSession(socket, session, { ok: false, type: 'tlsa-invalid', reasonCode: why });
  rememberRequiredTlsFailure(state, mx, failure);
  state.hmail.logwarn(failure.text);
  socket.authorized = false;
  socket.destroy(new Error(failure.text));
  return false;
}

/** Counts the session for the TLS report, once. */
function countSession(socket: tls.TLSSocket, session: ReportedSession | undefined, result: Parameters<typeof recordSession>[2]): void {
  if (!session || session.counted) return;
  session.counted = true;
  // This runs inside the socket's own events: a report must never break a delivery.
  try {
    recordSession(session.state, session.mx, result, {
      localAddress: session.ends?.localAddress ?? socket.localAddress,
      remoteAddress: session.ends?.remoteAddress ?? socket.remoteAddress,
    });
  } catch (err) {
    session.state.hmail.logerror(`TLS report: the session with ${session.mx.name} was not counted: ${String(err)}`);
  }
}

/** True when the connection may go on (authorized); false when it was failed. */
function judge(socket: tls.TLSSocket, { state, mx }: DaneUpgrade, session?: ReportedSession): boolean {
  const level = daneLevel(state);
  // The attempt moved on meanwhile (cannot happen while Haraka waits for this handshake): fail closed.
  if (!level || state.attempt.mx?.name !== mx) return reject(socket, state, mx, 'the delivery attempt this connection belongs to has ended', session);
  const verdict = daneVerdict(socket, level, mx);
  if (!verdict.ok) return reject(socket, state, mx, verdict.why, session);
  authorize(socket);
  countSession(socket, session, { ok: true });
  state.hmail.loginfo(`DANE ${mx}: ${verdict.note}`);
  return true;
}

/** Marks the STARTTLS options of a `dane` or `encrypt` connection of the current delivery. */
function markDaneUpgrades(): boolean {
  const obtls = harakaOutboundTls();
  if (typeof obtls.get_tls_options !== 'function') return false;
  if (obtls[DANE_PATCHED]) return true;
  const original = obtls.get_tls_options;
  obtls.get_tls_options = function getTlsOptions(mx) {
    const options = original.call(this, mx) as Record<string | symbol, unknown>;
    const state = typeof mx === 'object' && mx !== null ? mxOwners.get(mx) : undefined;
    const tried = state?.attempt.mx;
    const current = state && tried && tried.address === mx?.exchange;
    if (current && daneLevel(state) && tried.name === String(mx?.from_dns ?? '').toLowerCase()) options[DANE_UPGRADE] = { state, mx: tried.name } satisfies DaneUpgrade;
    if (current && tlsReporting() && appliedPolicy(state, tried.name)) options[REPORTED] = { state, mx: tried, counted: false } satisfies ReportedSession;
    return options;
  };
  obtls[DANE_PATCHED] = true;
  return true;
}

/**
 * A connection closed before its handshake ended, with no TLS error: Haraka's socket timeout (outbound
 * connect_timeout, 30 s, runs through the handshake too) destroys it without one, and so does any other end
 * Haraka puts to a delivery meanwhile. RFC 8460 §4.3.1 names no type for it: validation-failure is its
 * "general failure for a reason not matching a category above".
 */
const HANDSHAKE_NOT_COMPLETED = { ok: false, type: 'validation-failure', reasonCode: 'TLS handshake not completed (timed out or closed)' } as const;

type Connect = typeof tls.connect;

/** get_tls_options and tls.connect for DANE, installed once. False when Haraka or node:tls lacks what they wrap. */
export function installDaneTls(): boolean {
  const module = tls as typeof tls & { [DANE_PATCHED]?: boolean };
  if (!markDaneUpgrades() || typeof module.connect !== 'function') return false;
  if (module[DANE_PATCHED]) return true;
  const original: Connect = module.connect;
  module.connect = function connect(this: unknown, ...args: unknown[]): tls.TLSSocket {
    const options = args[0] as (tls.ConnectionOptions & { [DANE_UPGRADE]?: DaneUpgrade; [REPORTED]?: ReportedSession }) | undefined;
    const upgrade = typeof options === 'object' && options !== null ? options[DANE_UPGRADE] : undefined;
    const session = typeof options === 'object' && options !== null ? options[REPORTED] : undefined;
    const under = options?.socket as { localAddress?: string; remoteAddress?: string } | undefined;
    if (session) session.ends = { localAddress: under?.localAddress, remoteAddress: under?.remoteAddress };
    if (!upgrade) {
      const plain = (original as (...a: unknown[]) => tls.TLSSocket).apply(this, args);
      if (session) observeSession(plain, session);
      return plain;
    }
    // The SNI stays the MX name (get_tls_options sets it from the name the MX was found under).
    const socket = (original as (...a: unknown[]) => tls.TLSSocket).call(this, { ...options, rejectUnauthorized: false, checkServerIdentity: () => undefined }, ...args.slice(1));
    // The handshake ends in two events: Node emits 'secure', whose first listener (tls.connect's
    // onConnectSecure) emits 'secureConnect'. Both reach Haraka: tls_socket.js's upgrade callback and its
    // pluggable stream hear 'secureConnect', and that stream relays 'secure' too, on which hmail.js sends
    // EHLO. So the certificate is judged at the first of them, before any listener runs, and after a
    // mismatch neither is heard: the socket is destroyed and nothing writes to it (a 'secure' relayed
    // after the destroy had hmail write EHLO into it: "[CRIT] Socket write failed unexpectedly").
    let verdict: boolean | undefined;
    const emit = socket.emit.bind(socket) as (event: string | symbol, ...eventArgs: unknown[]) => boolean;
    socket.emit = function emitJudged(event: string | symbol, ...eventArgs: unknown[]): boolean {
      if (event === 'error') countSession(socket, session, handshakeFailure(eventArgs[0]));
      if (event === 'close') countSession(socket, session, HANDSHAKE_NOT_COMPLETED);
      if (event === 'secure' || event === 'secureConnect') {
        verdict ??= judge(socket, upgrade, session);
        if (!verdict) return false;
        // onConnectSecure set `authorized` from Node's own check after 'secure' was judged: DANE's stands.
        if (event === 'secureConnect') authorize(socket);
      }
      return emit(event, ...eventArgs);
    } as typeof socket.emit;
    return socket;
  } as Connect;
  module[DANE_PATCHED] = true;
  return true;
}

/** A TLS error before the handshake passed: a certificate Node refused (with TLS required), or any other. */
function handshakeFailure(error: unknown): Parameters<typeof recordSession>[2] {
  const code = (error as { code?: string } | undefined)?.code;
  return { ok: false, type: certificateResult(code), reasonCode: code ?? String((error as Error | undefined)?.message ?? error) };
}

/** The outcome of a connection not checked by DANE: Node's own verdict on the certificate, for the MX name. */
function observeSession(socket: tls.TLSSocket, session: ReportedSession): void {
  socket.once('secureConnect', () => {
    if (socket.authorized) return countSession(socket, session, { ok: true });
    const code = String(socket.authorizationError ?? '');
    countSession(socket, session, { ok: false, type: certificateResult(code), reasonCode: code });
  });
  socket.once('error', (error) => countSession(socket, session, handshakeFailure(error)));
  // After 'secureConnect' or 'error' the session is counted, and this counts nothing.
  socket.once('close', () => countSession(socket, session, HANDSHAKE_NOT_COMPLETED));
}
