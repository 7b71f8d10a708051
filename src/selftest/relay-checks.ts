// The open-relay decisions of `mailproxy selftest` (pure: no I/O): what haraka-in and haraka-out answered
// to the relay tricks probes.ts tried, judged against the domains and the relay ACL.
import type { Finding } from '../report/findings';
import { lower } from './checks';

export interface RelayAttempt {
  sender: string;
  rcpt: string;
  /** The trick's name (or MXToolbox's probe). */
  trick: string;
  /** The command that got this reply: RCPT, or MAIL when the sender was refused before any RCPT. */
  phase: 'MAIL' | 'RCPT';
  code: number;
  reply: string;
}

export interface RelayFacts {
  address: string;
  /** The address the probe came from. */
  source: string | null;
  /** Why the probe could not start (no connection, no banner), or null. */
  error: string | null;
  attempts: RelayAttempt[];
  /** Why the probe stopped before its last attempt (a timeout, too many closes), or null. */
  incomplete: string | null;
  /** Reconnections after the server ended the session (it may limit refusals per session). */
  reconnects: number;
}

const showAttempt = (attempt: RelayAttempt) => `MAIL FROM:<${attempt.sender}> RCPT TO:<${attempt.rcpt}> (${attempt.trick}): ${attempt.reply}`;

/** The domain an address ends in (after the last @, without brackets and trailing dot), lower case. */
function finalDomain(address: string): string {
  return lower(address.slice(address.lastIndexOf('@') + 1));
}

function tally(facts: RelayFacts): { accepted: RelayAttempt[]; deferred: RelayAttempt[]; refused: RelayAttempt[] } {
  // Accepted means a 2xx to RCPT; a refused MAIL FROM means nothing after it can be accepted.
  const accepted = facts.attempts.filter((attempt) => attempt.phase === 'RCPT' && attempt.code >= 200 && attempt.code < 300);
  const deferred = facts.attempts.filter((attempt) => attempt.code >= 400 && attempt.code < 500);
  const refused = facts.attempts.filter((attempt) => attempt.code >= 500);
  return { accepted, deferred, refused };
}

/** MXToolbox "SMTP Open Relay" against haraka-in: every foreign recipient and relay trick refused. */
export function judgeOpenRelay(facts: RelayFacts, domains: string[]): Finding {
  if (facts.error) return { status: 'UNKNOWN', detail: `${facts.address}: could not try relaying (${facts.error})` };
  const { accepted, deferred, refused } = tally(facts);
  const senders = [...new Set(facts.attempts.map((attempt) => attempt.sender || '<>'))];
  const summary = `${facts.attempts.length} attempts from ${senders.length} senders (${senders.join(', ')})`;
  if (accepted.length) {
    const ours = new Set(domains.map(lower));
    const viaBackend = accepted.filter((attempt) => ours.has(finalDomain(attempt.rcpt)));
    const fixes: string[] = [];
    if (accepted.length > viaBackend.length) {
      fixes.push(
        `the server at ${facts.address} accepts mail for other domains: haraka-in as mailproxy renders it accepts only domains: (${domains.join(', ')}); check what listens there, \`mailproxy render\` and restart mailproxy-haraka-in`,
      );
    }
    if (viaBackend.length) {
      fixes.push(
        'haraka-in passed these to the backend, which accepted them: on its Postfix set allow_percent_hack = no, swap_bangpath = no, allow_untrusted_routing = no and smtpd_reject_unlisted_recipient = yes',
      );
    }
    return {
      status: 'CRITICAL',
      detail: `${facts.address} ACCEPTED ${accepted.length} of ${summary}: ${accepted.slice(0, 3).map(showAttempt).join('; ')}${accepted.length > 3 ? '; …' : ''}`,
      fix: fixes.join('; '),
    };
  }
  if (facts.incomplete) {
    return {
      status: 'WARNING',
      detail: `${facts.address} refused ${refused.length} of ${summary}, then the probe ${facts.incomplete}`,
      fix: 'run selftest again; if it stops again, see `journalctl -u mailproxy-haraka-in` for why the session ended',
    };
  }
  if (deferred.length) {
    return {
      status: 'WARNING',
      detail: `${facts.address} refused ${refused.length} of ${summary}, but deferred ${deferred.length} (4xx) so their verdict is unknown: ${deferred.slice(0, 2).map(showAttempt).join('; ')}`,
      fix: 'a 4xx for one of our domains means the backend did not answer: `mailproxy health` (backend, wireguard), then run selftest again',
    };
  }
  const reconnected = facts.reconnects ? `; the server closed the session ${facts.reconnects} time(s) on the way` : '';
  return { status: 'OK', detail: `${facts.address} refused all ${summary} with 5xx, MXToolbox's probe and the classic tricks included${reconnected}` };
}

export interface HarakaOutFacts extends RelayFacts {
  /** The errno code of a failed connect (ETIMEDOUT for a firewall's drop, ECONNREFUSED, ...). */
  errorCode: string | null;
}

/**
 * haraka-out relays only for outbound.relay_acl (the backend). From the VPS only one half can be shown:
 * that it refuses this host; the output says so.
 */
export function judgeHarakaOutRelay(facts: HarakaOutFacts, relayAcl: string[]): Finding {
  const only = `only outbound.relay_acl (${relayAcl.join(', ')}) may relay, which can be shown only from there: from this host selftest can show "refused from here"`;
  if (facts.error) {
    if (facts.errorCode === 'ETIMEDOUT') {
      return {
        status: 'OK',
        detail: `${facts.address} does not answer from here (dropped: the nftables rules of \`mailproxy notes\` accept port ${facts.address.split(':').pop()} on WireGuard only); ${only}`,
      };
    }
    return {
      status: 'UNKNOWN',
      detail: `${facts.address}: could not try relaying from here (${facts.error}); ${only}`,
      fix: 'run selftest on the VPS, where haraka-out listens on wireguard.address; `mailproxy health` shows whether haraka-out runs',
    };
  }
  const { accepted, deferred, refused } = tally(facts);
  const from = facts.source ?? 'this host';
  if (accepted.length) {
    return {
      status: 'CRITICAL',
      detail: `${facts.address} ACCEPTED ${accepted.length} of ${facts.attempts.length} relay attempts from ${from}: ${accepted.slice(0, 3).map(showAttempt).join('; ')}`,
      fix: `haraka-out must relay for the backend only: outbound.relay_acl must not cover ${from} (\`mailproxy check\` refuses such entries unless outbound.allow_local_relay_acl), then \`mailproxy render\` and restart mailproxy-haraka-out`,
    };
  }
  if (deferred.length || facts.incomplete) {
    if (!deferred.length)
      return { status: 'WARNING', detail: `${facts.address} refused ${refused.length} relay attempts from ${from}, then the probe ${facts.incomplete}`, fix: 'run selftest again' };
    return {
      status: 'WARNING',
      detail: `${facts.address} deferred ${deferred.length} of ${facts.attempts.length} relay attempts from ${from} (4xx): ${showAttempt(deferred[0]!)}`,
      fix: 'look at `journalctl -u mailproxy-haraka-out` for why it answers 4xx',
    };
  }
  return { status: 'OK', detail: `${facts.address} refused all ${refused.length} relay attempts from ${from} (this host) with 5xx; ${only}` };
}
