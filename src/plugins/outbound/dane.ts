// DANE's certificate check inside Haraka's STARTTLS. Haraka 3.3.4 (outbound/hmail.js) upgrades with
// `obtls.get_tls_options(mx)`, sets rejectUnauthorized when TLS is forced, and then, in the upgrade
// callback, temp-fails the delivery when `cleartext.authorized` is false (tls_socket.js reads it on
// 'secureConnect'). A DANE-EE certificate need not chain to any CA, so for an MX that DANE governs the TLS
// connection is made here without the CA check, and `authorized` is set from the TLSA match before
// Haraka's listener reads it: matched, or `encrypt` (no usable record: TLS without authentication), is
// authorized; anything else is not, and Haraka ends the attempt without sending a byte of the message.
// Patches a Haraka internal (node:tls.connect as tls_socket.js calls it): test/unit/outbound-haraka-pin.test.ts.
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { verifyAgainstTlsa } from '../../dane/tlsa';
import { currentDelivery, daneRequirement, type DeliveryState } from './delivery';
import { failures } from './explain';

const PATCHED = Symbol.for('mailproxy.dane-tls');

type Connect = typeof tls.connect;

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

function judge(socket: tls.TLSSocket, state: DeliveryState): void {
  const required = daneRequirement(state);
  const name = state.attempt.mx?.name ?? '';
  if (!required) return;
  if (required.level === 'encrypt') {
    authorize(socket);
    state.hmail.loginfo(`DANE ${name}: TLS without authentication (its TLSA records are all unusable for SMTP: RFC 7672 §2.2)`);
    return;
  }
  let verdict: ReturnType<typeof verifyAgainstTlsa>;
  try {
    verdict = verifyAgainstTlsa(peerChain(socket), required.records, name, new Date());
  } catch (error) {
    verdict = { ok: false, why: `the certificate could not be read: ${(error as Error).message}` };
  }
  if (verdict.ok) {
    authorize(socket);
    state.hmail.loginfo(`DANE ${name}: certificate matches TLSA ${verdict.matched}`);
    return;
  }
  socket.authorized = false;
  socket.authorizationError = new Error(`DANE: ${verdict.why}`);
  state.attempt.tlsFailure = failures.daneMismatch(state.domain, name, verdict.why);
  state.hmail.logwarn(state.attempt.tlsFailure.text);
}

/** Wraps node:tls.connect once: connections made for a DANE-governed MX are judged by their TLSA records. */
export function installDaneTls(): boolean {
  const module = tls as typeof tls & { [PATCHED]?: boolean };
  if (module[PATCHED]) return true;
  if (typeof module.connect !== 'function') return false;
  const original: Connect = module.connect;
  module.connect = function connect(this: unknown, ...args: unknown[]): tls.TLSSocket {
    const state = currentDelivery();
    const options = args[0];
    if (!state || !daneRequirement(state) || typeof options !== 'object' || options === null) {
      return (original as (...a: unknown[]) => tls.TLSSocket).apply(this, args);
    }
    // The SNI stays the MX name (get_tls_options sets it from the name the MX was found under).
    const socket = (original as (...a: unknown[]) => tls.TLSSocket).call(
      this,
      { ...(options as tls.ConnectionOptions), rejectUnauthorized: false, checkServerIdentity: () => undefined },
      ...args.slice(1),
    );
    socket.prependOnceListener('secureConnect', () => judge(socket, state));
    return socket;
  } as Connect;
  module[PATCHED] = true;
  return true;
}
