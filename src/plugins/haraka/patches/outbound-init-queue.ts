// Haraka (smtp.ini nodes=0) loads its outbound queue after the init_master hooks, in outbound.init_queue(),
// which server.js looks up on the outbound module at call time: wrapping it is the one way to learn that
// the load finished (mailproxy-notify sends READY=1 then). A failed load rejects, Haraka exits, and the
// listener is never called.
// Patches a Haraka internal, pinned to Haraka 3.3.4 (server.js, outbound/index.js):
// test/unit/notify-haraka-pin.test.ts fails when Haraka changes.

interface OutboundModule {
  init_queue?: (...args: unknown[]) => Promise<unknown>;
}

let wrapped = false;
let loadedAlready = false;
const listeners: (() => void)[] = [];

/** Calls `loaded` once the outbound queue is loaded (at once when it already is). Wraps init_queue once per
 * process; false when Haraka has no init_queue to wrap (then `loaded` is never called). */
export function whenOutboundQueueLoaded(loaded: () => void): boolean {
  if (loadedAlready) {
    loaded();
    return true;
  }
  if (!wrapped) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const outbound = require('haraka/outbound') as OutboundModule;
    const original = outbound.init_queue;
    if (typeof original !== 'function') return false;
    outbound.init_queue = async function initQueue(this: unknown, ...args: unknown[]) {
      const result = await original.apply(this, args);
      loadedAlready = true;
      for (const listener of listeners.splice(0)) listener();
      return result;
    };
    wrapped = true;
  }
  listeners.push(loaded);
  return true;
}
