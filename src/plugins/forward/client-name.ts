// The client's name for XCLIENT NAME: looked up (forward-confirmed, fcrdns.ts) when the session starts, kept
// in the connection's notes as a Promise<ClientName> that never rejects, and awaited when XCLIENT is built.
import type { Connection } from '../haraka/connection';
import { cachedClientNameLookup, type ClientName } from './fcrdns';

/** Connection note: the pending lookup. Other plugins that need the name before RCPT may await it too. */
const PENDING_NAME = 'mailproxy_client_name';

/** Client names are kept a minute, as long as the TTL of the test zone and well under real PTR TTLs. */
const lookupClientName = cachedClientNameLookup({ ttlMs: 60_000, maxEntries: 10_000 });

/** What a lookup that failed in an unexpected way gives: a DNS error, fail closed as [TEMPUNAVAIL]. */
const LOOKUP_FAILED: ClientName = { ptr: 'DNSERROR', xclientName: '[TEMPUNAVAIL]' };

/** Starts the lookup of the client's address, bounded by `timeoutMs`, and notes it on the connection. */
export function startClientNameLookup(connection: Pick<Connection, 'notes'>, ip: string, timeoutMs: number): Promise<ClientName> {
  const pending = lookupClientName(ip, timeoutMs).catch(() => LOOKUP_FAILED);
  connection.notes[PENDING_NAME] = pending;
  return pending;
}

/** The client's name lookup started at lookup_rdns; [TEMPUNAVAIL] when it never started (fail closed). */
export function clientName(connection: Pick<Connection, 'notes'>): Promise<ClientName> {
  return (connection.notes[PENDING_NAME] as Promise<ClientName> | undefined) ?? Promise.resolve(LOOKUP_FAILED);
}
