// The cap on concurrent backend sessions, shared by the two plugins that need it in haraka-in's one
// process: mailproxy-limits sets the cap from its ini (limits.max_backend_sessions), and mailproxy-forward
// takes a slot before it opens a backend connection and gives it back when that session is gone. Both
// plugins load this same file (dist/src/plugins/limits/backend-sessions.js), so they share one counter.
//
// Each slot stands for one smtpd process at the backend (Postfix's default_process_limit is 100 per
// master.cf service). A slot is held from the moment a client session starts to open its backend session
// until it drops that session or the client leaves; a backend that closed an idle session by itself is
// counted until then (the error is on the safe side). Without mailproxy-limits there is no cap.

/** Who holds a slot: a client connection (at most one slot each). */
type Holder = object;

const holders = new Set<Holder>();
let max = Number.POSITIVE_INFINITY;

export const backendSessions = {
  /** Sets the cap (mailproxy-limits at start and when its ini changes); sessions already open stay. */
  configure(limit: number): void {
    max = Number.isFinite(limit) && limit > 0 ? limit : Number.POSITIVE_INFINITY;
  },
  get limit(): number {
    return max;
  },
  /** Slots held right now. */
  get inUse(): number {
    return holders.size;
  },
  /** Takes a slot for this holder; false when the cap is reached. A holder that has one keeps it. */
  acquire(holder: Holder): boolean {
    if (holders.has(holder)) return true;
    if (holders.size >= max) return false;
    holders.add(holder);
    return true;
  },
  /** Gives the holder's slot back (nothing when it has none). */
  release(holder: Holder): void {
    holders.delete(holder);
  },
};
