// Idle backend sessions kept for the next client session (backend.reuse_sessions, off by default): when a
// client leaves, its backend session, greeted and idle between transactions, waits here for the next
// client, which sends XCLIENT with its own identity and its own EHLO in it instead of connecting. The
// backend must authorize XCLIENT for every client identity (Postfix re-checks smtpd_authorized_xclient_hosts
// against the identity the first XCLIENT set): a backend that does not refuses the second XCLIENT, and the
// forwarder then connects afresh. A kept session holds a slot under limits.max_backend_sessions that no
// client network is charged for, and gives it up to any client that needs one.
import { backendSessions } from '../limits/backend-sessions';
import type { BackendSession } from './backend-session';

/** Longest a kept session waits for a client: well under Postfix's smtpd_timeout (300 s, 10 s under
 * stress), so that the backend never closes it first; no NOOP is sent (Postfix counts them as junk). */
export const KEEP_IDLE_MS = 8_000;
/** A session older than this is closed rather than kept: the backend reloads its settings per process. */
export const KEEP_MAX_AGE_MS = 60_000;
/** Messages one backend session carries before it is closed rather than kept. */
export const KEEP_MAX_TRANSACTIONS = 50;
/** Idle sessions kept at most. */
export const KEEP_MAX_SESSIONS = 8;
/** Reply timeout of the XCLIENT and EHLO that make a kept session the next client's: a live backend
 * answers at once, and one that died without a word must not hold the client for the whole reply timeout. */
export const KEPT_REPLY_TIMEOUT_MS = 3_000;

/** Bumped by every settings (re)load and at shutdown: a session opened before is never kept (it may lead to
 * another backend, over plaintext where STARTTLS is now wanted, from another address). */
let generation = 0;
/** False once Haraka is stopping: sessions of clients still connected are closed, not kept. */
let accepting = true;

export function settingsGeneration(): number {
  return generation;
}

/** A backend session between clients: greeted, XCLIENT and EHLO done, no transaction open. */
export interface KeptSession {
  session: BackendSession;
  /** The XCLIENT attributes the EHLO after the last XCLIENT advertised: what the next client's XCLIENT sends. */
  xclient: ReadonlySet<string>;
  openedAt: number;
  /** Messages carried so far. */
  transactions: number;
  generation: number;
}

/** What decides whether a session ending with its client is kept. */
export interface KeepFacts {
  /** The backend takes another XCLIENT in this session (the EHLO after the last XCLIENT advertised it with
   * ADDR), or the client said HELO and an EHLO may tell. */
  reusable: boolean;
  /** No command in flight, no transaction open at the backend, not inside DATA. */
  clean: boolean;
  /** The client authenticated: its LOGIN would outlive it at a backend that keeps unsent attributes. */
  authenticated: boolean;
  openedAt: number;
  transactions: number;
  /** The settings generation it was opened under. */
  generation: number;
}

/** Whether a session in this state may wait for the next client. */
export function mayKeep(facts: KeepFacts, now: number): boolean {
  if (!accepting || facts.generation !== generation) return false;
  return facts.reusable && facts.clean && !facts.authenticated && now - facts.openedAt < KEEP_MAX_AGE_MS && facts.transactions < KEEP_MAX_TRANSACTIONS;
}

interface Entry extends KeptSession {
  timer: NodeJS.Timeout;
  forget: () => void;
}

/** Oldest first: a client takes the newest (the least likely to be closed by the backend). */
const kept: Entry[] = [];

function remove(entry: Entry): void {
  const at = kept.indexOf(entry);
  if (at === -1) return;
  kept.splice(at, 1);
  clearTimeout(entry.timer);
  entry.forget();
  backendSessions.release(entry);
}

/** Keeps the session for the next client, or QUITs it when the pool is full or no slot is free. The
 * caller has given back its client's slot. */
export function keepSession(session: KeptSession): void {
  if (!accepting || session.generation !== generation) return session.session.quit();
  if (kept.length >= KEEP_MAX_SESSIONS) closeOldest();
  const entry = { ...session } as Entry;
  if (!session.session.idle || !backendSessions.acquireIdle(entry)) return session.session.quit();
  entry.timer = setTimeout(() => {
    remove(entry);
    entry.session.quit();
  }, KEEP_IDLE_MS);
  entry.timer.unref();
  // The backend closed it (its own idle timeout, a restart): gone from the pool, its slot free.
  entry.forget = entry.session.onEnd(() => remove(entry));
  kept.push(entry);
}

/** The newest kept session still usable and young enough, out of the pool (its slot given back); null
 * when there is none. */
export function takeKeptSession(now = Date.now()): KeptSession | null {
  for (let entry = kept.at(-1); entry; entry = kept.at(-1)) {
    remove(entry);
    if (entry.session.idle && now - entry.openedAt < KEEP_MAX_AGE_MS && entry.generation === generation) {
      return { session: entry.session, xclient: entry.xclient, openedAt: entry.openedAt, transactions: entry.transactions, generation: entry.generation };
    }
    entry.session.quit();
  }
  return null;
}

/** QUITs the oldest kept session, freeing its slot for a client; false when none is kept. */
export function closeOldest(): boolean {
  const entry = kept[0];
  if (!entry) return false;
  remove(entry);
  entry.session.quit();
  return true;
}

/** QUITs every kept session: the settings changed (the backend may be another one, or reuse is off), so
 * no session opened before is kept either; with `stopping`, none is kept any more at all. */
export function closeKeptSessions(stopping = false): void {
  generation += 1;
  if (stopping) accepting = false;
  while (closeOldest());
}

/** Sessions kept right now. */
export function keptSessions(): number {
  return kept.length;
}
