// What mailproxy-forward keeps per client connection, in Haraka's notes: the backend session, the client
// transaction bound to it, and its slot under limits.max_backend_sessions (../limits/backend-sessions.ts),
// which lives exactly as long as the session.
import type { Connection, Transaction } from '../haraka/connection';
import { backendSessions } from '../limits/backend-sessions';
import type { BackendSession } from './backend-session';

/**
 * One client transaction, bound to the backend session whose MAIL FROM opened it. Every recipient the
 * client got 250 for was accepted in that session; once it is gone, the transaction cannot be carried
 * anywhere else (another session never heard of those recipients), so every later RCPT, the DATA and
 * the end of data get 4xx.
 */
export interface Binding {
  session: BackendSession;
  /** Recipients the backend accepted in this transaction. */
  accepted: number;
  /** Those recipients as the backend was asked (the client got 250 for each): replayed in a new backend
   * session when this one is lost before the end of data. */
  recipients: string[];
}

/** Per client connection: the backend session and the transaction open on it. */
export interface BackendState {
  session: BackendSession;
  pipelining: boolean;
  /** The session ended its greeting with EHLO (an ESMTP client), not HELO. */
  esmtp: boolean;
  /** The client identity XCLIENT passed (identityOf): a new HELO/EHLO or STARTTLS needs a new session. */
  identity: string;
  /** The client transaction whose MAIL FROM the backend accepted, until its end or RSET. */
  binding: Binding | null;
  /** From the DATA sent to the backend until its end-of-data reply: an RSET or QUIT written now would be
   * read as a body line, so only closing the connection aborts the transaction. */
  inData: boolean;
  /** XCLIENT passed the client's identity. */
  identified: boolean;
  /** What the EHLO after XCLIENT advertised of XCLIENT: the backend would take another one (pool.ts). */
  xclient: ReadonlySet<string> | null;
  /** When the backend connection was made (a kept session carries its first client's time). */
  openedAt: number;
  /** The settings it was opened under (pool.ts settingsGeneration): a session from older settings is not kept. */
  generation: number;
  /** Messages this backend session carried, for all its clients. */
  transactions: number;
  /** Stops watching the session's end for this connection: it goes to another client. */
  detach: () => void;
}

/** Connection note: the BackendState. */
export const STATE = 'mailproxy_forward';
/** Connection note: the AbortController of a backend session still opening, so that a client that leaves aborts it. */
export const OPENING = 'mailproxy_forward_opening';
/** Transaction note: the Binding. */
export const BOUND = 'mailproxy_forward_binding';

export function backendState(connection: Pick<Connection, 'notes'>): BackendState | undefined {
  return connection.notes[STATE] as BackendState | undefined;
}

export function bindingOf(transaction: Pick<Transaction, 'notes'> | null | undefined): Binding | undefined {
  return transaction?.notes[BOUND] as Binding | undefined;
}

/** Ends the connection's backend session and frees its slot: with `polite`, QUIT outside DATA (inside
 * it a QUIT would be read as body text, so only closing the connection aborts the message); else closed. */
export function dropBackend(connection: Connection, polite = false): void {
  const state = backendState(connection);
  if (!state) return;
  if (polite && !state.inData) state.session.quit();
  else state.session.destroy();
  delete connection.notes[STATE];
  backendSessions.release(connection);
}

/** The transaction's binding when its session is still the connection's and usable. */
export function liveBinding(connection: Connection, binding: Binding): boolean {
  return backendState(connection)?.binding === binding && binding.session.usable;
}

/** No backend session left under limits.max_backend_sessions or the client network's share. */
export class BackendBusy extends Error {
  constructor(
    readonly reason: 'max_backend_sessions' | 'max_backend_sessions_per_network',
    readonly limit: number,
  ) {
    super(`backend session cap reached (${reason} ${limit})`);
  }
}
