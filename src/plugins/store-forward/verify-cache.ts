// The recipient verification cache of store-and-forward: what the backend last answered at RCPT for an
// address, so that while the backend cannot be reached a known recipient's mail can be stored (250), a
// refused one refused (550 5.1.1) and an unknown one deferred (450 4.4.1). Pure: plain Maps in and out, no
// I/O and no clock (every function takes `now`); verify-cache-file.ts loads and saves it.
//
// Postfix verify(8) is the anchor (its address_verify_* parameters, defaults below):
// - a good entry is kept 31 days and due for refresh after 7, a bad one kept 3 days and due after 3 hours;
//   an entry expires only once `checkedAt + expire < now` and is due once `checkedAt + refresh < now`,
//   the comparisons verify.c makes;
// - keys are the address as it was checked, except that the domain is lowercased (DNS names are case
//   insensitive, RFC 5321 2.4). verify(8) opens its map without case folding, so `Alice@` and `alice@` are
//   separate entries there too. Folding the local part would let a spelling the backend never answered for
//   inherit another spelling's verdict; keeping it costs at most a 450 for an unseen spelling (the sender
//   retries), never a stored message the backend may refuse.
//
// Where it departs from verify(8), on purpose:
// - verify(8) never lets a failed probe overwrite a good entry, because a probe can fail on its way
//   (routing, a deferral counted as failure). Here the input is the backend's own reply to this very
//   address, and only a 5xx that says the address is bad counts, so a bad verdict replaces a good one.
// - Only a 5xx whose enhanced status says the recipient address is bad (X.1.1, .2, .3, .4, .6, .10, RFC 3463
//   and RFC 7505) is cached as bad: Postfix delays sender and client restrictions to RCPT by default
//   (smtpd_delay_reject), so a 5xx at RCPT may be about the sender (5.1.7, 5.1.8, 5.1.0 "Sender address
//   rejected", 5.7.1); caching those would answer 550 5.1.1 for a real user during an outage. A 4xx, any
//   other reply, and a 5xx without an enhanced code are not cached and leave an existing entry as it is.
// - The size bound evicts bad entries (oldest checked first) before good ones (oldest checked first), so a
//   dictionary attack that fills the cache with refused addresses cannot push out the real users.

export type VerifyVerdict = 'good' | 'bad';

export interface VerifySettings {
  positiveExpireMs: number;
  positiveRefreshMs: number;
  negativeExpireMs: number;
  negativeRefreshMs: number;
  /** Entries kept at most (good and bad together). */
  maxEntries: number;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export const VERIFY_DEFAULTS: VerifySettings = {
  positiveExpireMs: 31 * DAY, // address_verify_positive_expire_time
  positiveRefreshMs: 7 * DAY, // address_verify_positive_refresh_time
  negativeExpireMs: 3 * DAY, // address_verify_negative_expire_time
  negativeRefreshMs: 3 * HOUR, // address_verify_negative_refresh_time
  // A home server has tens of addresses; the rest of the room holds refused guesses, evicted first.
  maxEntries: 10_000,
};

/** Key → checkedAt (ms since the epoch). Each Map is in checked order, oldest first. */
export interface VerifyCache {
  good: Map<string, number>;
  bad: Map<string, number>;
}

export interface VerifyLookup {
  status: VerifyVerdict | 'unknown';
  /** The entry is older than its refresh time (always true for unknown). */
  refreshDue: boolean;
  checkedAt: number | null;
}

export function emptyVerifyCache(): VerifyCache {
  return { good: new Map(), bad: new Map() };
}

export function cacheSize(cache: VerifyCache): number {
  return cache.good.size + cache.bad.size;
}

/** The cache key of an address: `<>` stripped, domain lowercased, local part as given; null when empty. */
export function cacheKey(address: string): string | null {
  const bare = address.trim().replace(/^<(.*)>$/, '$1');
  if (!bare) return null;
  const at = bare.lastIndexOf('@');
  return at < 0 ? bare : `${bare.slice(0, at)}@${bare.slice(at + 1).toLowerCase()}`;
}

// Enhanced status details under subject 1 (addressing) that are about the destination address.
const BAD_RECIPIENT_DETAILS = new Set([1, 2, 3, 4, 6, 10]);
const PERMANENT_ENHANCED = /^5\.(\d{1,3})\.(\d{1,3})(?!\d)/;

/** What a RCPT reply says about the recipient: `text` is the reply's first line after the code. */
export function verdictOf(code: number, text: string): VerifyVerdict | null {
  if (code >= 200 && code <= 299) return 'good';
  if (code < 500 || code > 599) return null;
  const enhanced = PERMANENT_ENHANCED.exec(text.trimStart());
  if (!enhanced) return null;
  return Number(enhanced[1]) === 1 && BAD_RECIPIENT_DETAILS.has(Number(enhanced[2])) ? 'bad' : null;
}

function expireMs(verdict: VerifyVerdict, settings: VerifySettings): number {
  return verdict === 'good' ? settings.positiveExpireMs : settings.negativeExpireMs;
}

function refreshMs(verdict: VerifyVerdict, settings: VerifySettings): number {
  return verdict === 'good' ? settings.positiveRefreshMs : settings.negativeRefreshMs;
}

function expired(verdict: VerifyVerdict, checkedAt: number, now: number, settings: VerifySettings): boolean {
  return checkedAt + expireMs(verdict, settings) < now;
}

/** Drops the oldest entries over the bound: bad ones first, then good ones. Returns how many went. */
function evict(cache: VerifyCache, maxEntries: number): number {
  let dropped = 0;
  while (cacheSize(cache) > Math.max(0, maxEntries)) {
    const from = cache.bad.size > 0 ? cache.bad : cache.good;
    const oldest = from.keys().next().value as string;
    from.delete(oldest);
    dropped++;
  }
  return dropped;
}

/** Stores a verdict for a key (already normalised) checked at `now`, moving it to the newest position. */
export function recordVerdict(cache: VerifyCache, key: string, verdict: VerifyVerdict, now: number, settings: VerifySettings): void {
  cache.good.delete(key);
  cache.bad.delete(key);
  cache[verdict].set(key, now);
  evict(cache, settings.maxEntries);
}

/**
 * Records the backend's live reply to `RCPT TO:<address>`. Returns whether the cache changed (so the caller
 * knows to save it): false for a reply that is not cached (4xx and the like) or an unusable address.
 */
export function recordReply(cache: VerifyCache, address: string, code: number, text: string, now: number, settings: VerifySettings): boolean {
  const key = cacheKey(address);
  const verdict = verdictOf(code, text);
  if (key === null || verdict === null) return false;
  recordVerdict(cache, key, verdict, now, settings);
  return true;
}

export function lookup(cache: VerifyCache, address: string, now: number, settings: VerifySettings): VerifyLookup {
  const key = cacheKey(address);
  if (key !== null) {
    for (const verdict of ['good', 'bad'] as const) {
      const checkedAt = cache[verdict].get(key);
      if (checkedAt === undefined || expired(verdict, checkedAt, now, settings)) continue;
      return { status: verdict, refreshDue: checkedAt + refreshMs(verdict, settings) < now, checkedAt };
    }
  }
  return { status: 'unknown', refreshDue: true, checkedAt: null };
}

/** Removes expired entries. Returns how many went. */
export function prune(cache: VerifyCache, now: number, settings: VerifySettings): number {
  let dropped = 0;
  for (const verdict of ['good', 'bad'] as const) {
    for (const [key, checkedAt] of cache[verdict]) {
      if (!expired(verdict, checkedAt, now, settings)) continue;
      cache[verdict].delete(key);
      dropped++;
    }
  }
  return dropped;
}

/** The saved form: `[key, checkedAt]` pairs, oldest first, in a versioned object. */
export interface VerifyCacheJson {
  format: 1;
  good: [string, number][];
  bad: [string, number][];
}

export function toJson(cache: VerifyCache): VerifyCacheJson {
  return { format: 1, good: [...cache.good], bad: [...cache.bad] };
}

function entries(value: unknown): [string, number][] {
  if (!Array.isArray(value)) return [];
  return value.filter(
    (pair): pair is [string, number] =>
      Array.isArray(pair) && pair.length === 2 && typeof pair[0] === 'string' && pair[0] !== '' && typeof pair[1] === 'number' && Number.isFinite(pair[1]),
  );
}

/**
 * Rebuilds a cache from its saved form: malformed and expired entries are dropped, keys normalised again,
 * entries put back in checked order and the bound applied. Null when `value` is not a saved cache at all.
 */
export function fromJson(value: unknown, now: number, settings: VerifySettings): { cache: VerifyCache; dropped: number } | null {
  const saved = value as Partial<VerifyCacheJson> | null;
  if (typeof saved !== 'object' || saved === null || saved.format !== 1) return null;
  const all: [string, number, VerifyVerdict][] = [];
  let given = 0;
  for (const verdict of ['good', 'bad'] as const) {
    given += Array.isArray(saved[verdict]) ? saved[verdict].length : 0;
    for (const [key, checkedAt] of entries(saved[verdict])) {
      if (!expired(verdict, checkedAt, now, settings)) all.push([key, checkedAt, verdict]);
    }
  }
  all.sort((a, b) => a[1] - b[1]);
  const cache = emptyVerifyCache();
  for (const [key, checkedAt, verdict] of all) {
    const normal = cacheKey(key);
    if (normal === null) continue;
    cache.good.delete(normal);
    cache.bad.delete(normal);
    cache[verdict].set(normal, checkedAt);
  }
  evict(cache, settings.maxEntries);
  return { cache, dropped: given - cacheSize(cache) };
}
