// The cap on concurrent backend sessions, shared by the two plugins that need it in haraka-in's one
// process: mailproxy-limits sets the caps from its ini (limits.max_backend_sessions and
// limits.max_backend_sessions_per_network), and mailproxy-forward takes a slot before it opens a backend
// connection and gives it back when that session is gone. Both plugins load this same file
// (dist/src/plugins/limits/backend-sessions.js), so they share one counter.
//
// Each slot stands for one smtpd process at the backend (Postfix's default_process_limit is 100 per
// master.cf service). A slot is held from the moment a client session starts to open its backend session
// until that backend session ends, whoever ends it: the forwarder dropping it, the client leaving, or the
// backend closing it (idle, stress). A client network (IPv4 /24, IPv6 /48) holds at most its own share, so
// a handful of addresses cannot take every slot. An idle backend session kept for the next client
// (backend.reuse_sessions) holds a slot of its own that no client network is charged for. Without
// mailproxy-limits there is no cap.
import ipaddr from 'ipaddr.js';

/** Who holds a slot: a client connection (at most one slot each). */
type Holder = object;

/** The network a per-network cap counts: IPv4 /24, IPv6 /48 (one site); the address itself when unparsable. */
export function networkKey(ip: string): string {
  if (!ipaddr.isValid(ip)) return ip;
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return `${(address as ipaddr.IPv4).octets.slice(0, 3).join('.')}.0/24`;
  return `${(address as ipaddr.IPv6).parts
    .slice(0, 3)
    .map((part) => part.toString(16))
    .join(':')}::/48`;
}

/** The network of an idle pooled session's slot: none. */
const IDLE = '\0idle';
const holders = new Map<Holder, string>();
const perNetwork = new Map<string, number>();
let max = Number.POSITIVE_INFINITY;
let maxPerNetwork = Number.POSITIVE_INFINITY;

const capOf = (limit: number) => (Number.isFinite(limit) && limit > 0 ? limit : Number.POSITIVE_INFINITY);

export type AcquireResult = { ok: true } | { ok: false; reason: 'max_backend_sessions' | 'max_backend_sessions_per_network'; limit: number };

export const backendSessions = {
  /** Sets the caps (mailproxy-limits at start and when its ini changes); sessions already open stay. */
  configure(limit: number, perNetworkLimit = limit): void {
    max = capOf(limit);
    maxPerNetwork = capOf(perNetworkLimit);
  },
  get limit(): number {
    return max;
  },
  /** Slots held right now. */
  get inUse(): number {
    return holders.size;
  },
  /** Slots held right now by clients of this address's network. */
  inUseBy(ip: string): number {
    return perNetwork.get(networkKey(ip)) ?? 0;
  },
  /** Takes a slot for this holder, a client at `ip`. A holder that has one keeps it. */
  acquire(holder: Holder, ip: string): AcquireResult {
    if (holders.has(holder)) return { ok: true };
    if (holders.size >= max) return { ok: false, reason: 'max_backend_sessions', limit: max };
    const network = networkKey(ip);
    const used = perNetwork.get(network) ?? 0;
    if (used >= maxPerNetwork) return { ok: false, reason: 'max_backend_sessions_per_network', limit: maxPerNetwork };
    holders.set(holder, network);
    perNetwork.set(network, used + 1);
    return { ok: true };
  },
  /** Takes a slot for an idle backend session kept for the next client: counted against the cap, charged
   * to no client network. A holder that has one keeps it. */
  acquireIdle(holder: Holder): boolean {
    if (holders.has(holder)) return true;
    if (holders.size >= max) return false;
    holders.set(holder, IDLE);
    return true;
  },
  /** Gives the holder's slot back (nothing when it has none). */
  release(holder: Holder): void {
    const network = holders.get(holder);
    if (network === undefined) return;
    holders.delete(holder);
    if (network === IDLE) return;
    const left = (perNetwork.get(network) ?? 1) - 1;
    if (left > 0) perNetwork.set(network, left);
    else perNetwork.delete(network);
  },
};
