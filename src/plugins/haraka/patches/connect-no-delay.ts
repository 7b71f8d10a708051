// TCP_NODELAY on haraka-out's MX connections (../socket.ts says why). After DATA's 354, outbound/hmail.js
// pipes the body from the queue file and writes ".\r\n" as soon as the pipe ends; the MX answers nothing
// before the dot, so without it the dot waits for the MX's delayed ACK.
// Patches a Haraka internal, pinned to Haraka 3.3.4: tls_socket.js's connect(), which outbound/client_pool.js
// calls as a module property for each MX connection. test/unit/outbound-haraka-pin.test.ts fails when
// Haraka changes; test/unit/no-delay.test.ts checks the effect on real sockets.
import { setNoDelay, type HarakaSocket } from '../socket';

type Connect = ((options?: Record<string, unknown>) => HarakaSocket) & { [WRAPPED]?: true };
const WRAPPED = Symbol.for('mailproxy.noDelay');

/**
 * Every socket Haraka's tls_socket.connect() opens gets TCP_NODELAY. Returns false when Haraka has no such
 * function to wrap.
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
