// What a failed TLS handshake leaves behind in a message's memory (delivery.ts), by the level its connection
// had (tls-policy.ts):
// - where TLS was required (DANE, MTA-STS enforce, Haraka's force_tls_hosts) nothing but the reason: the
//   TLS failure is why the attempt failed when no MX answered, and no try without TLS is owed;
// - otherwise (opportunistic TLS) the MX address is remembered: the message reaches it once without TLS,
//   retried at once and uncounted the first time per address (the deferred hook asks owesImmediateRetry),
//   as Postfix does at smtp_tls_security_level = may (Postfix, though, only on the next delivery attempt).
// Haraka keeps this memory in Redis only (no-ops without it); the adapter in
// ../haraka/patches/outbound-tls.ts puts this one in its place.
import type { DeliveryState, TriedMx } from './delivery';
import { failures, type Failure } from './explain';
import type { TlsDecision } from './tls-policy';

/** A failed TLS layer on `host`, a connection of this message to `mx` at the level `tls`. */
export function rememberTlsFailure(state: DeliveryState, mx: TriedMx, host: string, tls: TlsDecision): void {
  const { hmail, domain } = state;
  if (tls.level === 'dane' || tls.level === 'encrypt') {
    // A DANE mismatch ends its connection with a TLS error: the mismatch is the reason, not the error.
    if (state.attempt.tlsFailureMx !== mx.name) rememberRequiredTlsFailure(state, mx.name, failures.daneHandshake(domain, mx.name, host));
    hmail.logwarn(`STARTTLS with ${mx.name} (${host}) failed; its DNSSEC-signed TLSA records require TLS (DANE ${tls.level}): no try without TLS`);
    return;
  }
  if (tls.level === 'verify' && tls.by === 'mta-sts') {
    state.attempt.tlsFailure = failures.handshake(domain, host);
    hmail.logwarn(`STARTTLS with ${host} failed; ${domain} enforces MTA-STS: no try without TLS`);
    return;
  }
  if (tls.level === 'verify') {
    hmail.logwarn(`STARTTLS with ${host} failed; ${tls.reason}: no try without TLS`);
    return;
  }
  state.plaintextOnce.set(host, Date.now());
  // One immediate, uncounted retry per host and message; after that a failing host waits its turn.
  if (!state.fallbackHosts.has(host)) {
    state.fallbackHosts.add(host);
    state.attempt.fallbackQueued = true;
  }
  hmail.lognotice(`STARTTLS with ${host} failed: this message goes to ${host} once without TLS (opportunistic TLS, as Postfix at smtp_tls_security_level = may)`);
}

/** Why a connection where TLS was required failed (its handshake, or the DANE check of its certificate). */
export function rememberRequiredTlsFailure(state: DeliveryState, mxName: string, failure: Failure): void {
  state.attempt.tlsFailure = failure;
  state.attempt.tlsFailureMx = mxName;
}

/** Uses up the try without TLS this message is owed at `host`. */
export function usePlaintextOnce(state: DeliveryState, host: string): void {
  state.plaintextOnce.delete(host);
  state.attempt.plaintextOnceUsed = true;
}

/**
 * Whether a deferred attempt is retried at once, uncounted: a host was marked during it and a try without
 * TLS is still owed (a mark used up in this very attempt, two MX names on one address, earns nothing).
 */
export function owesImmediateRetry(state: DeliveryState): boolean {
  return state.attempt.fallbackQueued && state.plaintextOnce.size > 0;
}
