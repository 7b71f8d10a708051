// The MTA-STS policy to apply when delivering to a domain (RFC 8461 §5): TXT discovery, fetch on a new id,
// and a cache that keeps protecting a domain for its max_age even when DNS or the policy host fail.
import { promises as dnsPromises } from 'node:dns';
import { fetchPolicyText } from './fetch';
import { normalizeDomain, parsePolicy, parseStsTxt, type StsMode, type StsPolicy } from './policy';
import { fileStore, type CachedPolicy, type PolicyStore } from './store';

export { fileStore, type CachedPolicy, type PolicyStore } from './store';

export interface MtaStsDeps {
  /** TXT records of a name, like dns.promises.Resolver#resolveTxt (ENOTFOUND/ENODATA when there are none). */
  resolveTxt(name: string): Promise<string[][]>;
  /** The policy body for a domain, like fetchPolicyText. */
  fetchText(domain: string): Promise<string>;
  /** Current time in milliseconds. */
  now(): number;
  store?: PolicyStore;
}

export interface PolicyDecision {
  /** 'no-policy' (like 'none') means deliver as if the domain had no MTA-STS. */
  mode: StsMode | 'no-policy';
  /** Allowed MX patterns, for mxMatches; empty for 'none' and 'no-policy'. */
  mx: string[];
  source: 'fresh' | 'cache' | 'none';
  /** The policy applied, when there is one (TLS reports quote it). */
  policy?: StsPolicy;
  /** What went wrong on the way, for logging; the decision stands regardless. */
  error?: string;
}

const NO_RECORD_CODES = new Set(['ENOTFOUND', 'ENODATA']);

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * RFC 8461 §5.1: refresh a policy in use before it expires, so that a policy host that happens to be down
 * when max_age runs out does not drop the domain to "no policy". A failed refresh keeps the cached policy.
 */
function dueForRefresh(entry: CachedPolicy, now: number): boolean {
  const refreshAfterMs = Math.min(entry.policy.maxAge / 2, 86_400) * 1000;
  return now >= entry.fetchedAt + refreshAfterMs;
}

export class MtaStsResolver {
  private cache: Record<string, CachedPolicy> | undefined;
  private readonly inFlight = new Map<string, Promise<PolicyDecision>>();

  constructor(private readonly deps: MtaStsDeps) {}

  /** Concurrent calls for the same domain share one lookup. DNS, fetch and store failures do not reject. */
  policyFor(domain: string): Promise<PolicyDecision> {
    const name = normalizeDomain(domain);
    if (!name) return Promise.resolve({ mode: 'no-policy', mx: [], source: 'none', error: `${JSON.stringify(domain)} is not a domain name` });
    let pending = this.inFlight.get(name);
    if (!pending) {
      pending = this.decide(name).finally(() => this.inFlight.delete(name));
      this.inFlight.set(name, pending);
    }
    return pending;
  }

  private async decide(domain: string): Promise<PolicyDecision> {
    const now = this.deps.now();
    const cached = this.unexpired(domain, now);

    let txtId: string | null;
    try {
      txtId = parseStsTxt(await this.deps.resolveTxt(`_mta-sts.${domain}`))?.id ?? null;
    } catch (err) {
      const code = String((err as NodeJS.ErrnoException).code);
      if (!NO_RECORD_CODES.has(code)) {
        const error = `TXT lookup of _mta-sts.${domain} failed: ${errorMessage(err)}`;
        return cached ? this.fromCache(cached, error) : { mode: 'no-policy', mx: [], source: 'none', error };
      }
      txtId = null;
    }
    // A missing, invalid or ambiguous record means "no policy available" (§3.1), but a removed or spoofed-away
    // record must not downgrade a domain whose cached policy is still within its max_age.
    if (txtId === null) return cached ? this.fromCache(cached) : { mode: 'no-policy', mx: [], source: 'none' };
    if (cached && cached.id === txtId && !dueForRefresh(cached, now)) return this.fromCache(cached);

    let fresh: CachedPolicy;
    try {
      const parsed = parsePolicy(await this.deps.fetchText(domain));
      if (!parsed.ok) throw new Error(`invalid MTA-STS policy for ${domain}: ${parsed.error}`);
      fresh = { id: txtId, fetchedAt: now, policy: parsed.policy };
    } catch (err) {
      const error = errorMessage(err);
      return cached ? this.fromCache(cached, error) : { mode: 'no-policy', mx: [], source: 'none', error };
    }

    const saveError = this.remember(domain, fresh, now);
    return {
      mode: fresh.policy.mode,
      mx: fresh.policy.mode === 'none' ? [] : [...fresh.policy.mx],
      source: 'fresh',
      policy: fresh.policy,
      ...(saveError ? { error: saveError } : {}),
    };
  }

  private entries(): Record<string, CachedPolicy> {
    this.cache ??= this.loadStore();
    return this.cache;
  }

  private loadStore(): Record<string, CachedPolicy> {
    try {
      return this.deps.store?.load() ?? {};
    } catch {
      return {};
    }
  }

  private unexpired(domain: string, now: number): CachedPolicy | undefined {
    const entry = this.entries()[domain];
    return entry && now < entry.fetchedAt + entry.policy.maxAge * 1000 ? entry : undefined;
  }

  private fromCache(entry: CachedPolicy, error?: string): PolicyDecision {
    const { mode, mx } = entry.policy;
    return { mode, mx: mode === 'none' ? [] : [...mx], source: 'cache', policy: entry.policy, ...(error ? { error } : {}) };
  }

  /** Stores the policy (dropping expired entries) and returns an error message if persisting failed. */
  private remember(domain: string, entry: CachedPolicy, now: number): string | undefined {
    const all = this.entries();
    // Other haraka-out processes may share the file: keep the newer of their entries and ours.
    for (const [name, stored] of Object.entries(this.loadStore())) {
      if (!all[name] || all[name].fetchedAt < stored.fetchedAt) all[name] = stored;
    }
    all[domain] = entry;
    for (const [name, other] of Object.entries(all)) {
      if (now >= other.fetchedAt + other.policy.maxAge * 1000 && name !== domain) delete all[name];
    }
    try {
      this.deps.store?.save(all);
      return undefined;
    } catch (err) {
      return `MTA-STS policy cache not saved: ${errorMessage(err)}`;
    }
  }
}

export interface MtaStsResolverOptions {
  /** DNS servers as `ip:port`, used for the TXT lookup and for resolving `mta-sts.<domain>`. */
  servers: string[];
  /** HTTPS port of policy hosts, 443 unless testing. */
  port?: number;
  /** Extra trusted CA (PEM) for policy hosts, for tests. */
  ca?: string | Buffer;
  /** JSON file that keeps the cache across restarts; in memory only when absent. */
  cacheFile?: string;
  /** Policy fetch timeout in milliseconds (default 10000). */
  timeoutMs?: number;
  now?: () => number;
}

export function createMtaStsResolver(options: MtaStsResolverOptions): MtaStsResolver {
  if (options.servers.length === 0) throw new Error('MTA-STS needs at least one DNS server');
  const resolver = new dnsPromises.Resolver({ timeout: 5_000, tries: 2 });
  resolver.setServers(options.servers);
  const { servers, port, ca, timeoutMs } = options;
  return new MtaStsResolver({
    resolveTxt: (name) => resolver.resolveTxt(name),
    fetchText: (domain) => fetchPolicyText(domain, { servers, port, ca, timeoutMs }),
    now: options.now ?? Date.now,
    store: options.cacheFile ? fileStore(options.cacheFile) : undefined,
  });
}
