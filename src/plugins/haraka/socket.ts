// The sockets Haraka 3.3.4 hands out: tls_socket.js wraps every accepted session and every outbound MX
// connection in a pluggableStream, which passes on the socket's events and destroy() and, after STARTTLS,
// holds the TLS socket (`cleartext`) over the plain one. Nothing in Haraka sets TCP_NODELAY, and the
// wrapper's own setNoDelay() does nothing: without it, two small writes in a row before the peer answers
// cost one delayed ACK (40 ms on Linux, less on loopback): Nagle holds the second write until the first is
// acknowledged, and the peer, with nothing to say yet, delays that ACK. Accepted sessions (both instances):
// Haraka writes one reply per command (connection.js respond()), so a client that pipelines (Postfix sends
// MAIL, RCPT and DATA at once) gets its second reply held that way; haraka-out's MX connections are set in
// patches/connect-no-delay.ts. Measured in docs/BENCHMARKS.md ("haraka-out without the delayed ACK"); the
// Haraka lines relied on are pinned in test/unit/outbound-haraka-pin.test.ts and test/unit/smtp-haraka-pin.test.ts.

interface NoDelaySocket {
  setNoDelay?(noDelay?: boolean): unknown;
}

/** A socket as Haraka hands it out: its pluggableStream (whose own setNoDelay is a no-op) or a plain socket. */
export interface HarakaSocket extends NoDelaySocket {
  targetsocket?: NoDelaySocket;
}

/** connection.client: the pluggableStream of an accepted session. Its idle timer is Haraka's inactivity
 * timeout; after STARTTLS the plain socket under the TLS one (`cleartext.socket`) has its own timer. */
export interface ClientSocket extends HarakaSocket {
  once(event: string, listener: () => void): unknown;
  setTimeout(ms: number): unknown;
  destroy(): unknown;
  cleartext?: { socket?: { setTimeout(ms: number): unknown } };
}

/** Sets TCP_NODELAY on the socket under Haraka's wrapper (before connect, Node applies it once connected). */
export function setNoDelay(socket: HarakaSocket | null | undefined): boolean {
  const target = socket?.targetsocket ?? socket;
  if (typeof target?.setNoDelay !== 'function') return false;
  target.setNoDelay(true);
  return true;
}
