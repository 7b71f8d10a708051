// SMTP TLS Reporting (RFC 8460), haraka-out's side: which policy a connection to an MX was held to, and
// what became of its TLS, counted per day in the recorder (src/tlsrpt/store.ts) when outbound.tls_rpt is on.
// Only domains with a policy count: an MX with DNSSEC-signed TLSA records (`tlsa`), or a domain whose
// MTA-STS policy is `testing` or `enforce` (`sts`). Where the outcomes are seen is the adapter
// (../haraka/patches/outbound-tls.ts: the handshake and the DANE check) and the plugin's deferred and
// delivered hooks (an MX that offered no STARTTLS).
import path from 'node:path';
import { isPublicIp } from '../../config/net';
import type { PolicyDecision } from '../../mtasts/cache';
import type { StsPolicy } from '../../mtasts/policy';
import { stsPolicyResult } from '../../tlsrpt/classify';
import { TlsRptRecorder } from '../../tlsrpt/store';
import type { AppliedPolicy, ResultType } from '../../tlsrpt/types';
import type { DeliveryState, TriedMx } from './delivery';
import type { OutboundIni } from './settings';

let recorder: TlsRptRecorder | null = null;
/** Our public addresses (public_ipv4, public_ipv6), for sessions that never had a socket to ask. */
let publicAddresses: Pick<OutboundIni['tls_rpt'], 'sending_ip' | 'sending_ipv6'> = { sending_ip: '', sending_ipv6: '' };

function useTlsRptRecorder(next: TlsRptRecorder | null): TlsRptRecorder | null {
  const previous = recorder;
  recorder = next;
  return previous;
}

/** sending-mta-ip: the socket's own address when it is public; behind NAT (a private one) the public address
 * of its family, which is what the receiving MX saw. */
export function sendingMtaIp(localAddress: string | undefined, addresses: typeof publicAddresses): string {
  const local = localAddress?.replace(/^::ffff:(?=\d+\.)/i, '');
  if (local && isPublicIp(local)) return local;
  return (local?.includes(':') ? addresses.sending_ipv6 : '') || addresses.sending_ip || local || '';
}

export function tlsReporting(): boolean {
  return recorder !== null;
}

/** The MTA-STS policy as RFC 8460's policy-string quotes it: its lines. */
export function stsApplied(domain: string, policy: StsPolicy): AppliedPolicy {
  return {
    type: 'sts',
    domain,
    strings: [`version: ${policy.version}`, `mode: ${policy.mode}`, ...policy.mx.map((mx) => `mx: ${mx}`), `max_age: ${policy.maxAge}`],
    mxHost: [...policy.mx],
  };
}

/** The policy a connection of this message to the MX named `mxName` is held to, if any. */
export function appliedPolicy(state: DeliveryState, mxName: string): AppliedPolicy | undefined {
  const dane = state.attempt.daneHosts?.get(mxName);
  if (dane && (dane.level === 'dane' || dane.level === 'encrypt')) {
    return {
      type: 'tlsa',
      domain: state.domain,
      strings: dane.records.map((record) => `${record.usage} ${record.selector} ${record.matchingType} ${record.data.toString('hex')}`),
      mxHost: [mxName],
    };
  }
  return state.attempt.stsPolicy;
}

export interface SessionEnd {
  /** Our address and the MX's on the connection, when there was one. */
  localAddress?: string | undefined;
  remoteAddress?: string | undefined;
}

/** Counts one session of this message with `mx`: a success, or a failure of the given type. */
export function recordSession(
  state: DeliveryState,
  mx: Pick<TriedMx, 'name' | 'address'>,
  result: { ok: true } | { ok: false; type: ResultType; reasonCode?: string },
  end: SessionEnd = {},
): void {
  if (!recorder) return;
  const policy = appliedPolicy(state, mx.name);
  if (!policy) return;
  if (result.ok) return recorder.record({ policy, ok: true });
  const receivingIp = end.remoteAddress ?? mx.address;
  recorder.record({
    policy,
    ok: false,
    failure: {
      resultType: result.type,
      sendingMtaIp: sendingMtaIp(end.localAddress, publicAddresses),
      receivingMxHostname: mx.name,
      ...(receivingIp ? { receivingIp } : {}),
      ...(result.reasonCode ? { reasonCode: result.reasonCode } : {}),
    },
  });
}

/** Counts a failure that came before any MX connection (a DNSSEC lookup, the MTA-STS policy itself). */
export function recordPolicyFailure(policy: AppliedPolicy, type: ResultType, host: string, reasonCode: string): void {
  recorder?.record({ policy, ok: false, failure: { resultType: type, sendingMtaIp: sendingMtaIp(undefined, publicAddresses), receivingMxHostname: host, reasonCode } });
}

let openDir: string | null = null;

/** Opens the recorder of `settings.dir` (or, with TLS reports off, closes the one open). */
export function configureTlsRpt(settings: OutboundIni['tls_rpt'], log: { info(message: string): void; error(message: string): void }): void {
  const wanted = settings.enabled && settings.dir ? path.resolve(settings.dir) : null;
  // A new public_ipv4 or public_ipv6 counts from now on, whether or not the store stays the same.
  publicAddresses = { sending_ip: settings.sending_ip, sending_ipv6: settings.sending_ipv6 };
  if (wanted === openDir) return;
  openDir = wanted;
  void useTlsRptRecorder(null)?.close();
  if (!wanted) return;
  TlsRptRecorder.open({ dir: wanted, saveIntervalMs: 5_000, log: log.info })
    .then((opened) => {
      if (openDir === wanted) useTlsRptRecorder(opened);
      else void opened.close();
    })
    .catch((err: Error) => log.error(`TLS reports: cannot open ${wanted} (${err.message}): no sessions are counted`));
}

/** At shutdown: the sessions counted last are written. */
export function closeTlsRpt(): void {
  openDir = null;
  void useTlsRptRecorder(null)?.close();
}

/** The MTA-STS policy this attempt is held to (for TLS reports), and what went wrong getting it. */
export function noteStsPolicy(state: DeliveryState, domain: string, decision: PolicyDecision): void {
  const applies = decision.policy && (decision.mode === 'enforce' || decision.mode === 'testing');
  state.attempt.stsPolicy = applies && decision.policy ? stsApplied(domain, decision.policy) : undefined;
  if (!decision.error) return;
  state.hmail.logwarn(`MTA-STS ${domain}: ${decision.error}`);
  const type = stsPolicyResult(decision.error);
  if (type) recordPolicyFailure(state.attempt.stsPolicy ?? { type: 'sts', domain, strings: [], mxHost: [] }, type, `mta-sts.${domain}`, decision.error);
}

/**
 * A message delivered without TLS (Haraka's delivered hook) to an MX under a policy that only asks for it
 * (MTA-STS testing): the MX offered no STARTTLS, unless this was the one try without TLS after its STARTTLS
 * failed (that failure was counted then).
 */
export function countPlaintextDelivery(state: DeliveryState, secured: boolean): void {
  const mx = state.attempt.mx;
  if (!secured && mx && !state.attempt.plaintextOnceUsed) recordSession(state, mx, { ok: false, type: 'starttls-not-supported' });
}
