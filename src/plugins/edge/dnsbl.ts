// DNSBL/DNSWL scoring for mailproxy-edge: postscreen's model (each list entry adds its weight when it lists
// the client, allow lists subtract theirs, the total against a threshold) with its own resolver, so that
// every lookup goes to dns.servers, gives up after lookup_timeout and is cached.
import { promises as dnsPromises } from 'node:dns';
import ipaddr from 'ipaddr.js';
import type { AnswerRange } from '../../config/net';
import { answerCounts, isRefusalAnswer } from './answers';

export interface ListEntry {
  zone: string;
  weight: number;
  /** Answers that count; empty: 127.0.0.0/8 but the refusal codes. */
  answers: AnswerRange[];
}

/** What one DNS list said about one address. */
export type ListAnswer =
  | { kind: 'listed'; answers: string[] }
  | { kind: 'unlisted' }
  /** A timeout, SERVFAIL, a refusal code: counted as unlisted, logged. */
  | { kind: 'error'; error: string };

/** `4.3.2.1.zone` for 1.2.3.4; the 32 nibbles, reversed, for IPv6 (RFC 5782 §2.4); IPv4-mapped IPv6 as IPv4. */
export function queryName(ip: string, zone: string): string {
  const address = ipaddr.process(ip);
  const bytes = address.toByteArray();
  if (bytes.length === 4) return `${bytes.reverse().join('.')}.${zone}`;
  const nibbles = bytes.flatMap((byte) => [byte >> 4, byte & 15]).map((nibble) => nibble.toString(16));
  return `${nibbles.reverse().join('.')}.${zone}`;
}

const NOT_LISTED = new Set<string>([dnsPromises.NOTFOUND, dnsPromises.NODATA]);

export interface ResolverOptions {
  /** dns.servers (`ip`, `ip:port`, `[v6]:port`); empty: the system's. */
  servers: readonly string[];
  timeoutMs: number;
  /** Cache lifetimes: a listing lives as long as its TTL within these bounds. */
  listedMinMs?: number;
  listedMaxMs?: number;
  /** An unlisted address is asked again after this long (NXDOMAIN's TTL is not visible to node:dns). */
  unlistedMs?: number;
  /** A failed query is not repeated for this long, so a dead list costs one timeout per address and period. */
  errorMs?: number;
  maxEntries?: number;
  now?: () => number;
  /** The query itself (tests count and fake it); default a node:dns Resolver on `servers`. */
  resolve4?: (name: string) => Promise<{ address: string; ttl: number }[]>;
}

export const CACHE_DEFAULTS = {
  listedMinMs: 60_000,
  listedMaxMs: 3_600_000,
  unlistedMs: 300_000,
  errorMs: 30_000,
  maxEntries: 20_000,
} as const;

/**
 * Asks DNS lists, at most `timeoutMs` per question, with a cache per question name: a client that comes
 * back (MTAs retry, send bursts) costs no query while its answer is fresh, and concurrent connections from
 * one address share the query in flight. The oldest entry goes when the cache is full.
 */
export class DnsListResolver {
  private readonly entries = new Map<string, { expires: number; answer: Promise<ListAnswer> }>();
  private readonly options: Required<Omit<ResolverOptions, 'resolve4' | 'servers'>>;
  private readonly resolve4: (name: string) => Promise<{ address: string; ttl: number }[]>;

  constructor(options: ResolverOptions) {
    this.options = { ...CACHE_DEFAULTS, now: Date.now, ...options };
    if (options.resolve4) {
      this.resolve4 = options.resolve4;
    } else {
      // tries: 1 — the timeout is the whole budget; c-ares would otherwise retry (and with several
      // servers try each in turn), so a race below still caps it.
      const resolver = new dnsPromises.Resolver({ timeout: Math.max(1, Math.round(options.timeoutMs)), tries: 1 });
      if (options.servers.length > 0) resolver.setServers([...options.servers]);
      this.resolve4 = (name) => resolver.resolve4(name, { ttl: true });
    }
  }

  get size(): number {
    return this.entries.size;
  }

  lookup(name: string): Promise<ListAnswer> {
    const key = name.toLowerCase();
    const now = this.options.now();
    const hit = this.entries.get(key);
    if (hit && hit.expires > now) return hit.answer;
    this.entries.delete(key);
    const entry = { expires: now + this.options.errorMs, answer: this.ask(key) };
    this.entries.set(key, entry);
    if (this.entries.size > this.options.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    void entry.answer.then((answer) => {
      entry.expires = this.options.now() + this.lifetime(answer);
    });
    return entry.answer;
  }

  private lifetime(answer: ListAnswer & { ttl?: number }): number {
    if (answer.kind === 'unlisted') return this.options.unlistedMs;
    if (answer.kind === 'error') return this.options.errorMs;
    const ttlMs = (answer.ttl ?? 0) * 1000;
    return Math.min(this.options.listedMaxMs, Math.max(this.options.listedMinMs, ttlMs));
  }

  private async ask(name: string): Promise<ListAnswer> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<ListAnswer>((resolve) => {
      timer = setTimeout(() => resolve({ kind: 'error', error: 'timeout' }), this.options.timeoutMs);
    });
    const query = this.resolve4(name).then(
      (records): ListAnswer & { ttl?: number } => {
        const answers = records.map((record) => record.address);
        const refused = answers.find(isRefusalAnswer);
        if (refused) return { kind: 'error', error: `refused (${refused})` };
        return { kind: 'listed', answers, ttl: Math.min(...records.map((record) => record.ttl)) };
      },
      (err: NodeJS.ErrnoException): ListAnswer => {
        const code = err.code ?? 'error';
        if (NOT_LISTED.has(code)) return { kind: 'unlisted' };
        return { kind: 'error', error: code === dnsPromises.TIMEOUT ? 'timeout' : code.toLowerCase() };
      },
    );
    try {
      return await Promise.race([query, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface Verdict {
  /** Sum of the block entries that list the client minus the allow entries that list it. */
  score: number;
  /** Zones whose entries added weight, in config order, each once. */
  listedBy: string[];
  /** Allow-list zones whose entries subtracted weight. */
  allowedBy: string[];
  /** Zones that could not be asked (timeout, SERVFAIL, a refusal code): as if unlisted. */
  errors: { zone: string; error: string }[];
}

/** Adds up the weights: every entry whose answers count (one zone may have several entries). */
export function scoreAnswers(blocks: readonly ListEntry[], allows: readonly ListEntry[], answers: ReadonlyMap<string, ListAnswer>): Verdict {
  const verdict: Verdict = { score: 0, listedBy: [], allowedBy: [], errors: [] };
  const seenErrors = new Set<string>();
  const apply = (entry: ListEntry, sign: 1 | -1, names: string[]) => {
    const answer = answers.get(entry.zone);
    if (!answer) return;
    if (answer.kind === 'error') {
      if (!seenErrors.has(entry.zone)) verdict.errors.push({ zone: entry.zone, error: answer.error });
      seenErrors.add(entry.zone);
      return;
    }
    if (answer.kind !== 'listed' || !answer.answers.some((value) => answerCounts(value, entry.answers))) return;
    verdict.score += sign * entry.weight;
    if (!names.includes(entry.zone)) names.push(entry.zone);
  };
  for (const entry of blocks) apply(entry, 1, verdict.listedBy);
  for (const entry of allows) apply(entry, -1, verdict.allowedBy);
  return verdict;
}

/** Every distinct zone of the entries, asked once per client address. */
export async function askLists(resolver: DnsListResolver, ip: string, entries: readonly ListEntry[]): Promise<Map<string, ListAnswer>> {
  const zones = [...new Set(entries.map((entry) => entry.zone))];
  const answers = await Promise.all(zones.map((zone) => resolver.lookup(queryName(ip, zone))));
  return new Map(zones.map((zone, index) => [zone, answers[index] as ListAnswer]));
}
