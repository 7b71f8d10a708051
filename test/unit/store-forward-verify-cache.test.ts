// The recipient verification cache (pure): Postfix verify(8) expiry and refresh, which replies are cached,
// key normalisation and the size bound.
import { describe, expect, it } from 'vitest';
import {
  cacheKey,
  cacheSize,
  emptyVerifyCache,
  fromJson,
  lookup,
  prune,
  recordReply,
  toJson,
  verdictOf,
  VERIFY_DEFAULTS,
  type VerifySettings,
} from '../../src/plugins/store-forward/verify-cache';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 0, 1);
const S = VERIFY_DEFAULTS;

describe('defaults', () => {
  it("are Postfix's address_verify_* defaults", () => {
    expect(S.positiveExpireMs).toBe(31 * DAY);
    expect(S.positiveRefreshMs).toBe(7 * DAY);
    expect(S.negativeExpireMs).toBe(3 * DAY);
    expect(S.negativeRefreshMs).toBe(3 * HOUR);
  });
});

describe('verdictOf', () => {
  it.each([
    [250, '2.1.5 Ok', 'good'],
    [251, 'User not local; will forward', 'good'],
    [550, '5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table', 'bad'],
    [550, '5.1.2 bad destination system', 'bad'],
    [553, '5.1.3 bad address syntax', 'bad'],
    [551, '5.1.6 mailbox has moved', 'bad'],
    [556, '5.1.10 null MX', 'bad'],
    // About the sender or policy (Postfix evaluates sender restrictions at RCPT by default): not cached.
    [550, '5.1.0 <x@example.com>: Sender address rejected: User unknown', null],
    [553, '5.1.7 bad sender mailbox syntax', null],
    [550, '5.1.8 <x@nowhere.invalid>: Sender address rejected: Domain not found', null],
    [554, '5.7.1 <spammer@example.com>: Sender address rejected: Access denied', null],
    [552, '5.2.2 mailbox full', null],
    [550, 'no enhanced code at all', null],
    [450, '4.1.1 <bob@example.org>: Recipient address rejected: unverified address', null],
    [451, '4.3.0 try again later', null],
    [421, '4.4.2 timeout', null],
  ] as const)('%i %s → %s', (code, text, verdict) => {
    expect(verdictOf(code, text)).toBe(verdict);
  });
});

describe('cacheKey', () => {
  it('lowercases the domain, keeps the local part, strips angle brackets', () => {
    expect(cacheKey('<Alice.Smith@Example.ORG>')).toBe('Alice.Smith@example.org');
    expect(cacheKey(' alice@example.org ')).toBe('alice@example.org');
    expect(cacheKey('postmaster')).toBe('postmaster');
    expect(cacheKey('"a@b"@Example.org')).toBe('"a@b"@example.org');
    expect(cacheKey('<>')).toBeNull();
    expect(cacheKey('')).toBeNull();
  });

  it('finds an entry whatever the case of its domain, but not another spelling of its local part', () => {
    const cache = emptyVerifyCache();
    recordReply(cache, 'alice@Example.org', 250, '2.1.5 Ok', T0, S);
    expect(lookup(cache, 'alice@EXAMPLE.ORG', T0, S).status).toBe('good');
    expect(lookup(cache, 'Alice@example.org', T0, S).status).toBe('unknown');
  });
});

describe('recordReply and lookup', () => {
  it('caches 2xx as good and an address 5xx as bad; 4xx is not cached', () => {
    const cache = emptyVerifyCache();
    expect(recordReply(cache, 'alice@example.org', 250, '2.1.5 Ok', T0, S)).toBe(true);
    expect(recordReply(cache, 'bob@example.org', 550, '5.1.1 User unknown', T0, S)).toBe(true);
    expect(recordReply(cache, 'carol@example.org', 450, '4.1.1 unverified', T0, S)).toBe(false);
    expect(lookup(cache, 'alice@example.org', T0, S)).toEqual({ status: 'good', refreshDue: false, checkedAt: T0 });
    expect(lookup(cache, 'bob@example.org', T0, S)).toEqual({ status: 'bad', refreshDue: false, checkedAt: T0 });
    expect(lookup(cache, 'carol@example.org', T0, S)).toEqual({ status: 'unknown', refreshDue: true, checkedAt: null });
    expect(cacheSize(cache)).toBe(2);
  });

  it('a 4xx does not overwrite an existing entry, good or bad', () => {
    const cache = emptyVerifyCache();
    recordReply(cache, 'alice@example.org', 250, '2.1.5 Ok', T0, S);
    recordReply(cache, 'bob@example.org', 550, '5.1.1 User unknown', T0, S);
    expect(recordReply(cache, 'alice@example.org', 451, '4.3.0 later', T0 + HOUR, S)).toBe(false);
    expect(recordReply(cache, 'bob@example.org', 450, '4.2.0 later', T0 + HOUR, S)).toBe(false);
    expect(lookup(cache, 'alice@example.org', T0 + HOUR, S)).toMatchObject({ status: 'good', checkedAt: T0 });
    expect(lookup(cache, 'bob@example.org', T0 + HOUR, S)).toMatchObject({ status: 'bad', checkedAt: T0 });
  });

  it('a sender-side 5xx does not turn a good recipient bad', () => {
    const cache = emptyVerifyCache();
    recordReply(cache, 'alice@example.org', 250, '2.1.5 Ok', T0, S);
    expect(recordReply(cache, 'alice@example.org', 554, '5.7.1 Sender address rejected', T0 + 1, S)).toBe(false);
    expect(lookup(cache, 'alice@example.org', T0 + 1, S).status).toBe('good');
  });

  it("the backend's latest answer wins: a deleted user turns bad, a new one good", () => {
    const cache = emptyVerifyCache();
    recordReply(cache, 'alice@example.org', 250, '2.1.5 Ok', T0, S);
    recordReply(cache, 'alice@example.org', 550, '5.1.1 User unknown', T0 + HOUR, S);
    expect(lookup(cache, 'alice@example.org', T0 + HOUR, S).status).toBe('bad');
    recordReply(cache, 'alice@example.org', 250, '2.1.5 Ok', T0 + 2 * HOUR, S);
    expect(lookup(cache, 'alice@example.org', T0 + 2 * HOUR, S)).toMatchObject({ status: 'good', checkedAt: T0 + 2 * HOUR });
    expect(cacheSize(cache)).toBe(1);
  });
});

describe('expiry and refresh (checkedAt + time < now, as verify.c compares)', () => {
  const cache = emptyVerifyCache();
  recordReply(cache, 'good@example.org', 250, '2.1.5 Ok', T0, S);
  recordReply(cache, 'bad@example.org', 550, '5.1.1 User unknown', T0, S);

  it.each([
    ['good@example.org', 7 * DAY, { status: 'good', refreshDue: false }],
    ['good@example.org', 7 * DAY + 1, { status: 'good', refreshDue: true }],
    ['good@example.org', 31 * DAY, { status: 'good', refreshDue: true }],
    ['good@example.org', 31 * DAY + 1, { status: 'unknown', refreshDue: true }],
    ['bad@example.org', 3 * HOUR, { status: 'bad', refreshDue: false }],
    ['bad@example.org', 3 * HOUR + 1, { status: 'bad', refreshDue: true }],
    ['bad@example.org', 3 * DAY, { status: 'bad', refreshDue: true }],
    ['bad@example.org', 3 * DAY + 1, { status: 'unknown', refreshDue: true }],
  ] as const)('%s after %i ms', (address, age, expected) => {
    expect(lookup(cache, address, T0 + age, S)).toMatchObject(expected);
  });

  it('prune removes only expired entries', () => {
    const copy = fromJson(toJson(cache), T0, S)!.cache;
    expect(prune(copy, T0 + 3 * DAY, S)).toBe(0);
    expect(prune(copy, T0 + 3 * DAY + 1, S)).toBe(1);
    expect([...copy.good.keys()]).toEqual(['good@example.org']);
    expect(copy.bad.size).toBe(0);
  });
});

describe('size bound', () => {
  const small: VerifySettings = { ...S, maxEntries: 3 };

  it('evicts the oldest-checked bad entries first, then the oldest good ones', () => {
    const cache = emptyVerifyCache();
    recordReply(cache, 'a@example.org', 250, 'Ok', T0 + 1, small);
    recordReply(cache, 'x@example.org', 550, '5.1.1 unknown', T0 + 2, small);
    recordReply(cache, 'b@example.org', 250, 'Ok', T0 + 3, small);
    recordReply(cache, 'y@example.org', 550, '5.1.1 unknown', T0 + 4, small);
    expect(cacheSize(cache)).toBe(3);
    expect([...cache.bad.keys()]).toEqual(['y@example.org']);
    // A flood of refused guesses never pushes out a good entry while a bad one is left to evict.
    for (let i = 0; i < 100; i++) recordReply(cache, `guess${i}@example.org`, 550, '5.1.1 unknown', T0 + 10 + i, small);
    expect([...cache.good.keys()]).toEqual(['a@example.org', 'b@example.org']);
    expect([...cache.bad.keys()]).toEqual(['guess99@example.org']);
    // Only good entries left: the oldest checked goes; re-checking moves an entry to the newest place.
    const goods = emptyVerifyCache();
    for (const name of ['a', 'b', 'c']) recordReply(goods, `${name}@example.org`, 250, 'Ok', T0, small);
    recordReply(goods, 'a@example.org', 250, 'Ok', T0 + 1, small);
    recordReply(goods, 'd@example.org', 250, 'Ok', T0 + 2, small);
    expect([...goods.good.keys()]).toEqual(['c@example.org', 'a@example.org', 'd@example.org']);
  });
});

describe('toJson / fromJson', () => {
  it('round-trips in checked order', () => {
    const cache = emptyVerifyCache();
    recordReply(cache, 'b@example.org', 250, 'Ok', T0 + 2, S);
    recordReply(cache, 'a@example.org', 250, 'Ok', T0 + 1, S);
    recordReply(cache, 'x@example.org', 550, '5.1.1 unknown', T0 + 3, S);
    const back = fromJson(JSON.parse(JSON.stringify(toJson(cache))), T0 + 4, S)!;
    expect(back.dropped).toBe(0);
    expect([...back.cache.good]).toEqual([
      ['a@example.org', T0 + 1],
      ['b@example.org', T0 + 2],
    ]);
    expect([...back.cache.bad]).toEqual([['x@example.org', T0 + 3]]);
  });

  it('drops malformed, expired and surplus entries; rejects what is not a saved cache', () => {
    const saved = {
      format: 1,
      good: [['a@Example.org', T0], ['bad-time', 'x'], [42, T0], ['old@example.org', T0 - 32 * DAY], 'junk'],
      bad: [
        ['x@example.org', T0 - 4 * DAY],
        ['y@example.org', T0],
      ],
    };
    const back = fromJson(saved, T0, S)!;
    expect([...back.cache.good.keys()]).toEqual(['a@example.org']);
    expect([...back.cache.bad.keys()]).toEqual(['y@example.org']);
    expect(back.dropped).toBe(5);
    expect(fromJson(saved, T0, { ...S, maxEntries: 1 })!.cache.good.size).toBe(1);
    expect(fromJson({ format: 2, good: [], bad: [] }, T0, S)).toBeNull();
    expect(fromJson([], T0, S)).toBeNull();
    expect(fromJson(null, T0, S)).toBeNull();
  });
});
