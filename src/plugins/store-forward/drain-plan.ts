// The drain's decisions about one stored message. Pure: meta, reply code, time and settings in; a decision
// out. The caller acts on it (deliver, wait, remove, recordAttempt, bounce or hold) and does the I/O.
//
//   drainStep(meta, now, settings)        → deliver now | wait until T | expired
//   afterReply(meta, code, now, settings) → remove | retry at T | refused | expired
//   bounceOrHold(mailFrom, spfResult)     → bounce (a DSN to the sender) | hold
//
// Anchored on Postfix's queue manager: a message expires once `receivedAt + maxAge < now`
// (maximal_queue_lifetime, 5 days; counted from `releasedAt` instead once the operator released it from
// held/), and after a temporary failure it waits for as long as it has been queued, at least
// minimal_backoff_time (300 s) and at most maximal_backoff_time (4000 s): the time in the queue, not the
// number of attempts, spaces the retries (qmgr_active.c). A message the backend cannot be reached for is
// not an attempt: the caller leaves it as it is and probes again.
import type { StoredMeta } from './spool-meta';

export interface DrainSettings {
  /** Age after which a message that was not delivered expires. */
  maxAgeMs: number;
  minBackoffMs: number;
  maxBackoffMs: number;
}

export const DRAIN_DEFAULTS: DrainSettings = {
  maxAgeMs: 5 * 24 * 3_600_000, // maximal_queue_lifetime
  minBackoffMs: 300_000, // minimal_backoff_time
  maxBackoffMs: 4_000_000, // maximal_backoff_time
};

export type DrainStep = { action: 'deliver' } | { action: 'wait'; until: number } | { action: 'expired' };

export type AttemptOutcome = { action: 'remove' } | { action: 'retry'; nextAttemptAt: number } | { action: 'refused' } | { action: 'expired' };

type Lifetime = Pick<StoredMeta, 'receivedAt' | 'releasedAt'>;

// A message the operator released from held/ gets a whole lifetime again from the release (see releasedAt).
function isExpired(meta: Lifetime, now: number, settings: DrainSettings): boolean {
  return (meta.releasedAt ?? meta.receivedAt) + settings.maxAgeMs < now;
}

/** What to do with a stored message now. */
export function drainStep(meta: Lifetime & Pick<StoredMeta, 'nextAttemptAt'>, now: number, settings: DrainSettings): DrainStep {
  if (isExpired(meta, now, settings)) return { action: 'expired' };
  if (meta.nextAttemptAt !== null && meta.nextAttemptAt > now) return { action: 'wait', until: meta.nextAttemptAt };
  return { action: 'deliver' };
}

/** When to try again after a temporary failure at `now`. */
export function nextAttemptAt(meta: Pick<StoredMeta, 'receivedAt'>, now: number, settings: DrainSettings): number {
  const queued = Math.max(0, now - meta.receivedAt);
  return now + Math.min(settings.maxBackoffMs, Math.max(settings.minBackoffMs, queued));
}

/**
 * What the backend's final reply to a delivery attempt means for the message: 2xx delivered (remove it);
 * 5xx refused (the caller decides with bounceOrHold); anything else is temporary: retry later, or, past
 * its maximum age, expired.
 */
export function afterReply(meta: Lifetime, code: number, now: number, settings: DrainSettings): AttemptOutcome {
  if (code >= 200 && code <= 299) return { action: 'remove' };
  if (code >= 500 && code <= 599) return { action: 'refused' };
  if (isExpired(meta, now, settings)) return { action: 'expired' };
  return { action: 'retry', nextAttemptAt: nextAttemptAt(meta, now, settings) };
}

/**
 * Whether a refused or expired message may be returned to its sender. Only when SPF for the original
 * client's address passed for the sender's domain: the sender address is then the one that sent it, and a
 * DSN reaches the real sender, never a forged one (no backscatter). Anything else, including the null
 * sender `<>` (a bounce is never bounced), is held for the operator.
 */
export function bounceOrHold(mailFrom: string, spfResult: string | null): 'bounce' | 'hold' {
  const sender = mailFrom.trim().replace(/^<(.*)>$/, '$1');
  if (sender === '' || !sender.includes('@')) return 'hold';
  return spfResult === 'pass' ? 'bounce' : 'hold';
}
