// TCP_NODELAY on the sockets Haraka 3.3.4 opens and accepts: nothing in Haraka sets it (its socket wrapper,
// tls_socket.js's pluggableStream, even has a setNoDelay() that does nothing). Without it, two small writes
// in a row before the peer answers cost one delayed ACK (40 ms on Linux, less on loopback): Nagle holds the
// second write until the first is acknowledged, and the peer, with nothing to say yet, delays that ACK.
// - Outbound (haraka-out to an MX, outbound/hmail.js): after DATA's 354 the body is piped from the queue
//   file and ".\r\n" written as soon as the pipe ends; the MX answers nothing before the dot.
// - Accepted sessions (both instances): Haraka writes one reply per command (connection.js respond()), so a
//   client that pipelines (Postfix sends MAIL, RCPT and DATA at once) gets its second reply held the same way.
// Measured in docs/BENCHMARKS.md ("haraka-out without the delayed ACK"); the Haraka lines relied on are
// pinned in test/unit/outbound-haraka-pin.test.ts and test/unit/smtp-haraka-pin.test.ts.

interface NoDelaySocket {
  setNoDelay?(noDelay?: boolean): unknown;
}

/** A socket as Haraka hands it out: its pluggableStream (whose own setNoDelay is a no-op) or a plain socket. */
export interface HarakaSocket extends NoDelaySocket {
  targetsocket?: NoDelaySocket;
}

/** Sets TCP_NODELAY on the socket under Haraka's wrapper (before connect, Node applies it once connected). */
export function setNoDelay(socket: HarakaSocket | null | undefined): boolean {
  const target = socket?.targetsocket ?? socket;
  if (typeof target?.setNoDelay !== 'function') return false;
  target.setNoDelay(true);
  return true;
}

type Connect = ((options?: Record<string, unknown>) => HarakaSocket) & { [WRAPPED]?: true };
const WRAPPED = Symbol.for('mailproxy.noDelay');

/**
 * Every socket Haraka's tls_socket.connect() opens (outbound/client_pool.js calls it as a module property for
 * each MX connection) gets TCP_NODELAY. Returns false when Haraka has no such function to wrap.
 */
export function installConnectNoDelay(): boolean {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const tlsSocket = require('haraka/tls_socket') as { connect?: Connect; createConnection?: Connect };
  const original = tlsSocket.connect;
  if (typeof original !== 'function') return false;
  if (original[WRAPPED]) return true;
  const connect: Connect = function connect(this: unknown, options?: Record<string, unknown>) {
    const socket = original.call(this, options);
    setNoDelay(socket);
    return socket;
  };
  connect[WRAPPED] = true;
  tlsSocket.connect = connect;
  if (tlsSocket.createConnection === original) tlsSocket.createConnection = connect;
  return true;
}
