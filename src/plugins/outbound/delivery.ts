// What mailproxy-outbound knows about each queued message (one Haraka HMailItem: one recipient domain) while
// haraka-out holds it in memory, and which message a piece of Haraka's delivery code is working for.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { HMail } from '../haraka/hmail';
import type { Failure } from './explain';
import { tlsLevel, type TlsDecision, type UsableHostTls } from './tls-policy';
import type { AppliedPolicy } from '../../tlsrpt/types';
import { TLS_REPORT_NOTE } from '../pickup-files';

export interface Attempt {
  /** False until Haraka starts delivering this item (a bounce split off another message never starts). */
  started: boolean;
  /** hmail.num_failures when the attempt began. */
  failuresBefore: number;
  /** The message goes to one of our domains, to the backend, not by MX. */
  toBackend: boolean;
  /** The recipient domain is under an MTA-STS enforce policy: TLS with a verified certificate, no fallback. */
  enforce: boolean;
  /** The domain's MTA-STS policy (testing or enforce), as TLS reports quote it. */
  stsPolicy?: AppliedPolicy;
  /** DANE: the TLS level of each MX host name of the domain (src/dane/route.ts). */
  daneHosts?: Map<string, UsableHostTls>;
  /** The MX Haraka is trying now: it asks get_force_tls right before each connection (../haraka/patches/outbound-tls.ts). */
  mx?: TriedMx;
  /** Why this attempt was deferred by the plugin itself (route). */
  failure?: Failure;
  /** A TLS handshake (or DANE check) that failed where TLS was required: why the attempt ended, if no MX answered. */
  tlsFailure?: Failure;
  /** The MX name tlsFailure is about (a DANE mismatch is not overwritten by the TLS error it causes). */
  tlsFailureMx?: string;
  /** A host was marked for a try without TLS during this attempt. */
  fallbackQueued: boolean;
  /** This attempt made its one try without TLS (its STARTTLS failure was counted for TLS reports then). */
  plaintextOnceUsed?: boolean;
}

export interface TriedMx {
  /** The MX name (the SNI), or the address when Haraka has no name for it. */
  name: string;
  address: string;
  /** Haraka's own answer for it, from its force_tls_hosts list (tls.ini [outbound]). */
  forcedByConfig?: boolean;
}

export interface DeliveryState {
  hmail: HMail;
  domain: string;
  attempt: Attempt;
  /** MX addresses this message may reach once without TLS (their STARTTLS failed), with when it failed. */
  plaintextOnce: Map<string, number>;
  /** MX addresses that already earned this message its one immediate, uncounted retry: a later failure
   * of theirs waits for the normal schedule and counts (no free retries forever). */
  fallbackHosts: Set<string>;
  /** Set by an attempt made before its time (`mailproxy queue flush`): the retry schedule it must leave as it was. */
  keepSchedule?: { failures: number; at: number };
}

const states = new WeakMap<HMail, DeliveryState>();
const current = new AsyncLocalStorage<DeliveryState>();

export function stateOf(hmail: HMail): DeliveryState {
  let state = states.get(hmail);
  if (!state) {
    state = {
      hmail,
      domain: String(hmail.todo?.domain ?? '').toLowerCase(),
      attempt: { started: false, failuresBefore: hmail.num_failures, toBackend: false, enforce: false, fallbackQueued: false },
      plaintextOnce: new Map(),
      fallbackHosts: new Set(),
    };
    states.set(hmail, state);
  }
  return state;
}

/** The TLS level of this message's connection to `mx`: tls-policy.ts decides. */
export function tlsFor(state: DeliveryState, mx: TriedMx): TlsDecision {
  const { attempt } = state;
  const tlsFailedAt = state.plaintextOnce.get(mx.address);
  const dane = attempt.daneHosts?.get(mx.name);
  return tlsLevel({
    route: { domain: state.domain, to: attempt.toBackend ? 'backend' : 'mx', configForcesTls: mx.forcedByConfig ?? false, tlsReport: isTlsReport(state.hmail) },
    mx: { name: mx.name, address: mx.address, ...(dane ? { dane } : {}), mtaStsEnforce: attempt.enforce },
    remembered: tlsFailedAt === undefined ? {} : { tlsFailedAt },
  });
}

/** A TLS report queued from the pickup directory (../pickup-files.ts TLS_REPORT_NOTE). */
export function isTlsReport(hmail: HMail): boolean {
  return (hmail.todo?.notes as Record<string, unknown> | undefined)?.[TLS_REPORT_NOTE] === true;
}

/** The TLS level of the connection to the MX this message is trying now, once Haraka has asked about one. */
export function tlsNow(state: DeliveryState): TlsDecision | undefined {
  return state.attempt.mx && tlsFor(state, state.attempt.mx);
}

/** Starts a new delivery attempt of this message. */
export function beginAttempt(hmail: HMail): DeliveryState {
  const state = stateOf(hmail);
  state.domain = String(hmail.todo?.domain ?? state.domain).toLowerCase();
  state.attempt = { started: true, failuresBefore: hmail.num_failures, toBackend: false, enforce: false, fallbackQueued: false };
  return state;
}

/**
 * Runs `fn` (the call that hands the MX list back to Haraka) so that everything Haraka then does for this
 * delivery, its sockets and TLS upgrade included, sees this message's state (Node carries the async context
 * into callbacks, promises and socket events created under it).
 */
export function withDelivery(state: DeliveryState, fn: () => void): void {
  current.run(state, fn);
}

/** The message Haraka's outbound code is working for right now, when it runs under withDelivery. */
export function currentDelivery(): DeliveryState | undefined {
  return current.getStore();
}
