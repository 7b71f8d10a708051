// DANE's certificate check inside Haraka's STARTTLS. Haraka 3.3.4 (outbound/hmail.js) asks
// `get_force_tls(mx)` before connecting to an MX, upgrades with the options of `obtls.get_tls_options(mx)`
// for the same mx object (tls_socket.js then calls `tls.connect(options)`), sets rejectUnauthorized when TLS
// is forced, and on 'secureConnect' temp-fails a forced TLS whose socket is not `authorized`. A DANE-EE
// certificate need not chain to any CA, so:
// - get_force_tls (tls-fallback.ts) remembers which message an mx object belongs to (rememberMx below), and
//   `get_tls_options(mx)` marks the options it returns when DANE governs that MX in that message;
// - `tls.connect` with marked options, and only those (an HTTPS policy fetch or any other TLS client in the
//   process is never touched), connects without Node's CA check and judges the certificate by the TLSA
//   records before the handshake's events ('secure', then 'secureConnect') reach anyone: a match, or
//   `encrypt` (no usable record), is authorized and the events go on to Haraka; a mismatch swallows both
//   and destroys the connection with a TLS error, which Haraka treats like a failed handshake (the next MX
//   is tried, tls-fallback.ts refuses the plaintext retry). Not a byte, not even EHLO, is written to the
//   connection after the handshake unless the check passed.
// Patches Haraka internals: test/unit/outbound-haraka-pin.test.ts fails when Haraka changes.
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { verifyAgainstTlsa } from '../../dane/tlsa';
import { daneRequirement, type DeliveryState } from './delivery';
import { failures } from './explain';
import { harakaOutboundTls } from './haraka-tls';

const PATCHED = Symbol.for('mailproxy.dane-tls');
/** On the options get_tls_options returns for a DANE-governed MX (object spread keeps symbol keys). */
const DANE_UPGRADE = Symbol('mailproxy.dane-upgrade');

interface DaneUpgrade {
  state: DeliveryState;
  mx: string;
}

type Connect = typeof tls.connect;

/** The message each mx object Haraka is connecting to belongs to (set by get_force_tls, per connection). */
const mxOwners = new WeakMap<object, DeliveryState>();

export function rememberMx(mx: object, state: DeliveryState): void {
  mxOwners.set(mx, state);
}

/** The chain the server sent, leaf first, as Node assembled it (each certificate once). */
export function peerChain(socket: tls.TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  let cert: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (cert?.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(new X509Certificate(cert.raw));
    cert = cert.issuerCertificate;
  }
  return chain;
}

/** Authorized by DANE: Node's own complaint (a self-signed certificate, say) no longer applies. */
function authorize(socket: tls.TLSSocket): void {
  socket.authorized = true;
  (socket as { authorizationError?: Error }).authorizationError = undefined;
}

/** True when the connection may go on (authorized); false when it was failed. */
function judge(socket: tls.TLSSocket, { state, mx }: DaneUpgrade): boolean {
  const required = daneRequirement(state);
  // The attempt moved on meanwhile (cannot happen while Haraka waits for this handshake): fail closed.
  if (!required || state.attempt.mx?.name !== mx) return reject(socket, state, mx, 'the delivery attempt this connection belongs to has ended');
  if (required.level === 'encrypt') {
    authorize(socket);
    state.hmail.loginfo(`DANE ${mx}: TLS without authentication (its TLSA records are all unusable for SMTP: RFC 7672 §2.2)`);
    return true;
  }
  let verdict: ReturnType<typeof verifyAgainstTlsa>;
  try {
    verdict = verifyAgainstTlsa(peerChain(socket), required.records, mx, new Date());
  } catch (error) {
    verdict = { ok: false, why: `the certificate could not be read: ${(error as Error).message}` };
  }
  if (!verdict.ok) return reject(socket, state, mx, verdict.why);
  authorize(socket);
  state.hmail.loginfo(`DANE ${mx}: certificate matches TLSA ${verdict.matched}`);
  return true;
}

function reject(socket: tls.TLSSocket, state: DeliveryState, mx: string, why: string): false {
  const failure = failures.daneMismatch(state.domain, mx, why);
  state.attempt.tlsFailure = failure;
  state.attempt.tlsFailureMx = mx;
  state.hmail.logwarn(failure.text);
  socket.authorized = false;
  socket.destroy(new Error(failure.text));
  return false;
}

/** Marks the STARTTLS options of an MX that DANE governs in the current delivery. */
function markDaneUpgrades(): boolean {
  const obtls = harakaOutboundTls() as ReturnType<typeof harakaOutboundTls> & {
    get_tls_options?: (mx: { exchange?: string; from_dns?: string }) => object;
    [PATCHED]?: boolean;
  };
  if (typeof obtls.get_tls_options !== 'function') return false;
  if (obtls[PATCHED]) return true;
  const original = obtls.get_tls_options;
  obtls.get_tls_options = function getTlsOptions(mx) {
    const options = original.call(this, mx) as Record<string | symbol, unknown>;
    const state = typeof mx === 'object' && mx !== null ? mxOwners.get(mx) : undefined;
    const tried = state?.attempt.mx;
    if (state && tried && daneRequirement(state) && tried.name === String(mx?.from_dns ?? '').toLowerCase() && tried.address === mx?.exchange) {
      options[DANE_UPGRADE] = { state, mx: tried.name } satisfies DaneUpgrade;
    }
    return options;
  };
  obtls[PATCHED] = true;
  return true;
}

/** Installs both halves once. False when Haraka or node:tls lacks what they wrap. */
export function installDaneTls(): boolean {
  const module = tls as typeof tls & { [PATCHED]?: boolean };
  if (!markDaneUpgrades() || typeof module.connect !== 'function') return false;
  if (module[PATCHED]) return true;
  const original: Connect = module.connect;
  module.connect = function connect(this: unknown, ...args: unknown[]): tls.TLSSocket {
    const options = args[0] as (tls.ConnectionOptions & { [DANE_UPGRADE]?: DaneUpgrade }) | undefined;
    const upgrade = typeof options === 'object' && options !== null ? options[DANE_UPGRADE] : undefined;
    if (!upgrade) return (original as (...a: unknown[]) => tls.TLSSocket).apply(this, args);
    // The SNI stays the MX name (get_tls_options sets it from the name the MX was found under).
    const socket = (original as (...a: unknown[]) => tls.TLSSocket).call(
      this,
      { ...options, rejectUnauthorized: false, checkServerIdentity: () => undefined },
      ...args.slice(1),
    );
    // The handshake ends in two events: Node emits 'secure', whose first listener (tls.connect's
    // onConnectSecure) emits 'secureConnect'. Both reach Haraka: tls_socket.js's upgrade callback and its
    // pluggable stream hear 'secureConnect', and that stream relays 'secure' too, on which hmail.js sends
    // EHLO. So the certificate is judged at the first of them, before any listener runs, and after a
    // mismatch neither is heard: the socket is destroyed and nothing writes to it (a 'secure' relayed
    // after the destroy had hmail write EHLO into it: "[CRIT] Socket write failed unexpectedly").
    let verdict: boolean | undefined;
    const emit = socket.emit.bind(socket) as (event: string | symbol, ...eventArgs: unknown[]) => boolean;
    socket.emit = function emitJudged(event: string | symbol, ...eventArgs: unknown[]): boolean {
      if (event === 'secure' || event === 'secureConnect') {
        verdict ??= judge(socket, upgrade);
        if (!verdict) return false;
        // onConnectSecure set `authorized` from Node's own check after 'secure' was judged: DANE's stands.
        if (event === 'secureConnect') authorize(socket);
      }
      return emit(event, ...eventArgs);
    } as typeof socket.emit;
    return socket;
  } as Connect;
  module[PATCHED] = true;
  return true;
}
