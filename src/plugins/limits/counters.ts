// The connection counters of mailproxy-limits, in memory: haraka-in is one process (smtp.ini nodes=0), so
// nothing needs sharing, and a restart that forgets them forgets only a minute of history. Haraka's own
// `limit` and `karma` plugins keep these counters in Redis, a second server to ship, run and watch on a
// 1 GB VPS for a few integers.
//
// Per-address limits count an IPv4 address as itself and an IPv6 address by its /64: one host usually
// owns a whole /64, and counting each address alone would let it open connections without limit.
import ipaddr from 'ipaddr.js';
import { ipInRanges, parseAddressOrCidr, type Cidr } from '../../config/net';

export type LimitReason = 'max_clients' | 'max_clients_per_ip' | 'max_connect_rate_per_ip';

export interface ConnectionLimits {
  /** Client sessions at once, over every address. */
  maxClients: number;
  /** Client sessions at once from one address (IPv6: one /64); 0: no limit. */
  maxClientsPerIp: number;
  /** New connections a minute from one address (IPv6: one /64), as a token bucket that holds a
   * minute's worth: a burst of that many, then one every 60/rate seconds; 0: no limit. */
  connectRatePerIp: number;
  /** Addresses the per-address limits leave alone (they still count towards maxClients). */
  exempt: readonly Cidr[];
}

export type Admission = { admitted: true; ticket: Ticket } | { admitted: false; reason: LimitReason; limit: number };

/** What an admitted connection gives back when it ends. */
export interface Ticket {
  key: string | null;
  released: boolean;
}

const RATE_WINDOW_MS = 60_000;
/** Most addresses whose connection rate is remembered; beyond it the least recently seen is forgotten. */
const MAX_RATE_ENTRIES = 100_000;

interface Bucket {
  tokens: number;
  at: number;
}

/** The address a per-address limit counts: IPv4 itself, IPv6 its /64; null for an unparsable one. */
export function addressKey(ip: string): string | null {
  if (!ipaddr.isValid(ip)) return null;
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return address.toString();
  const parts = (address as ipaddr.IPv6).parts.slice(0, 4).map((part) => part.toString(16));
  return `${parts.join(':')}::/64`;
}

/** The exempt list: addresses and CIDRs; throws on an entry that is neither. */
export function parseExempt(list: readonly string[]): Cidr[] {
  return list.map((entry) => {
    const range = parseAddressOrCidr(entry);
    if (!range) throw new Error(`exempt: ${entry} is no address or CIDR`);
    return range;
  });
}

export class ConnectionCounters {
  private active = 0;
  private readonly perKey = new Map<string, number>();
  /** Insertion order is last use: refreshed buckets are moved to the end, so pruning stops early. */
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private limits: ConnectionLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** New limits (the ini changed); the counts so far stay. */
  configure(limits: ConnectionLimits): void {
    this.limits = limits;
  }

  get clients(): number {
    return this.active;
  }

  clientsFrom(ip: string): number {
    const key = addressKey(ip);
    return key === null ? 0 : (this.perKey.get(key) ?? 0);
  }

  /** Decides on a new connection and, when it is admitted, counts it until its ticket is released. */
  admit(ip: string): Admission {
    const limits = this.limits;
    if (this.active >= limits.maxClients) return { admitted: false, reason: 'max_clients', limit: limits.maxClients };
    const key = ipInRanges(ip, limits.exempt) ? null : addressKey(ip);
    let bucket: Bucket | null = null;
    if (key !== null) {
      const count = this.perKey.get(key) ?? 0;
      if (limits.maxClientsPerIp > 0 && count >= limits.maxClientsPerIp) {
        return { admitted: false, reason: 'max_clients_per_ip', limit: limits.maxClientsPerIp };
      }
      if (limits.connectRatePerIp > 0) {
        bucket = this.refill(key, limits.connectRatePerIp);
        if (bucket.tokens < 1) return { admitted: false, reason: 'max_connect_rate_per_ip', limit: limits.connectRatePerIp };
      }
    }
    if (bucket) bucket.tokens -= 1;
    this.active += 1;
    if (key !== null) this.perKey.set(key, (this.perKey.get(key) ?? 0) + 1);
    return { admitted: true, ticket: { key, released: false } };
  }

  /** Gives back what admit counted; a second call does nothing. */
  release(ticket: Ticket): void {
    if (ticket.released) return;
    ticket.released = true;
    this.active -= 1;
    if (ticket.key === null) return;
    const left = (this.perKey.get(ticket.key) ?? 1) - 1;
    if (left > 0) this.perKey.set(ticket.key, left);
    else this.perKey.delete(ticket.key);
  }

  private refill(key: string, rate: number): Bucket {
    const now = this.now();
    this.prune(now);
    const bucket = this.buckets.get(key) ?? { tokens: rate, at: now };
    bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) * rate) / RATE_WINDOW_MS);
    bucket.at = now;
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    if (this.buckets.size > MAX_RATE_ENTRIES) this.buckets.delete(this.buckets.keys().next().value as string);
    return bucket;
  }

  /** Forgets buckets untouched for a whole window: they have refilled, the same as no bucket. The oldest
   * come first, so this stops at the first recent one. */
  private prune(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (now - bucket.at < RATE_WINDOW_MS) break;
      this.buckets.delete(key);
    }
  }

  /** Addresses with a rate bucket (for tests). */
  get rateEntries(): number {
    return this.buckets.size;
  }
}
