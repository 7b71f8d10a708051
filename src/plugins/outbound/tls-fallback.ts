// Opportunistic TLS that survives a broken STARTTLS. Haraka 3.3.4 (outbound/hmail.js) calls
// `obtls.mark_tls_nogo(host, cb)` when the TLS layer of a delivery fails and asks
// `obtls.check_tls_nogo(host, ok, nogo)` before STARTTLS, but its OutboundTLS singleton keeps that memory in
// Redis only: without Redis both are no-ops, and every retry failed the same handshake until the message
// expired. These two methods are replaced with a memory per message: after a failed handshake the message
// reaches that MX address once without TLS (the plugin's deferred hook retries it at once), as Postfix does
// at smtp_tls_security_level = may. A message under an MTA-STS enforce policy never gets there: Haraka takes
// its force-TLS path, which asks no one, and a failure is only recorded as the reason for the deferral.
// Patches a Haraka internal: test/unit/outbound-haraka-pin.test.ts fails when Haraka changes.
import { currentDelivery, daneRequirement, stateOf, type HMail } from './delivery';
import { rememberMx } from './dane';
import { failures } from './explain';
import { harakaOutboundTls } from './haraka-tls';

const PATCHED = Symbol.for('mailproxy.tls-fallback');

/** A failed TLS layer on a connection of the current delivery. */
function markFailed(host: string): void {
  const state = currentDelivery();
  if (!state) return;
  const { hmail, domain } = state;
  const dane = daneRequirement(state);
  if (dane) {
    const name = state.attempt.mx?.name ?? host;
    // A DANE mismatch ends its connection with a TLS error: the mismatch is the reason, not the error.
    if (state.attempt.tlsFailureMx !== name) {
      state.attempt.tlsFailure = failures.daneHandshake(domain, name, host);
      state.attempt.tlsFailureMx = name;
    }
    hmail.logwarn(`STARTTLS with ${name} (${host}) failed; its DNSSEC-signed TLSA records require TLS (DANE ${dane.level}): no try without TLS`);
    return;
  }
  if (state.attempt.enforce) {
    state.attempt.tlsFailure = failures.handshake(domain, host);
    hmail.logwarn(`STARTTLS with ${host} failed; ${domain} enforces MTA-STS: no try without TLS`);
    return;
  }
  state.plaintextOnce.set(host, Date.now());
  // One immediate, uncounted retry per host and message; after that a failing host waits its turn.
  if (!state.fallbackHosts.has(host)) {
    state.fallbackHosts.add(host);
    state.attempt.fallbackQueued = true;
  }
  hmail.lognotice(
    `STARTTLS with ${host} failed: this message goes to ${host} once without TLS (opportunistic TLS, as Postfix at smtp_tls_security_level = may)`,
  );
}

/** When the current delivery may skip STARTTLS with `host`: the description Haraka logs, or null. */
function plaintextAllowed(host: string): string | null {
  const state = currentDelivery();
  if (!state || state.attempt.enforce || daneRequirement(state)) return null;
  const markedAt = state.plaintextOnce.get(host);
  if (markedAt === undefined) return null;
  state.plaintextOnce.delete(host);
  return `${new Date(markedAt).toISOString()} (its STARTTLS failed; one try without TLS)`;
}

interface HarakaMx {
  exchange?: string;
  from_dns?: string;
}

interface HMailClass {
  prototype: { get_force_tls(this: HMail, mx: HarakaMx): boolean; [PATCHED]?: boolean };
}

/**
 * TLS required per message, not per domain: Haraka asks `get_force_tls(mx)` before every MX connection
 * and answers from the process-wide force_tls_hosts list, which another delivery to the same domain
 * (under a testing or absent policy) may change meanwhile. A message routed under an MTA-STS enforce
 * policy always requires TLS, whatever that list says now; so does an MX whose TLSA records say so (DANE).
 * The MX asked about is remembered as the one being tried (Haraka tries one at a time per message).
 */
function forceTlsPerMessage(): boolean {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const HMailItem = require('haraka/outbound/hmail') as HMailClass;
  const proto = HMailItem.prototype;
  if (typeof proto.get_force_tls !== 'function') return false;
  if (proto[PATCHED]) return true;
  const original = proto.get_force_tls;
  proto.get_force_tls = function getForceTls(this: HMail, mx: HarakaMx): boolean {
    const state = stateOf(this);
    state.attempt.mx = { name: String(mx?.from_dns ?? mx?.exchange ?? '').toLowerCase(), address: String(mx?.exchange ?? '') };
    if (typeof mx === 'object' && mx !== null) rememberMx(mx, state);
    return state.attempt.enforce || daneRequirement(state) !== undefined || original.call(this, mx);
  };
  proto[PATCHED] = true;
  return true;
}

/** Installs the per-message memory in place of Haraka's Redis one. False when Haraka has no such methods. */
export function installTlsFallback(): boolean {
  const obtls = harakaOutboundTls();
  if (typeof obtls.check_tls_nogo !== 'function' || typeof obtls.mark_tls_nogo !== 'function') return false;
  if (!forceTlsPerMessage()) return false;
  if (obtls[PATCHED]) return true;
  obtls.mark_tls_nogo = (host, done) => {
    markFailed(host);
    done();
  };
  obtls.check_tls_nogo = (host, ok, nogo) => {
    const when = plaintextAllowed(host);
    if (when) nogo(when);
    else ok();
  };
  obtls[PATCHED] = true;
  return true;
}
