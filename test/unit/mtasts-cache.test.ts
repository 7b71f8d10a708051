import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fileStore, MtaStsResolver, type CachedPolicy, type PolicyStore } from '../../src/mtasts/cache';

const DAY = 86_400;
const ENFORCE = `version: STSv1\nmode: enforce\nmx: mx1.example.net\nmx: *.mx.example.net\nmax_age: ${DAY}\n`;
const TESTING = `version: STSv1\nmode: testing\nmx: other.example.net\nmax_age: ${DAY}\n`;
/** The policies above as parsed: a decision carries the policy it applies (TLS reports quote it). */
const ENFORCE_POLICY = { version: 'STSv1', mode: 'enforce', mx: ['mx1.example.net', '*.mx.example.net'], maxAge: DAY };
const TESTING_POLICY = { version: 'STSv1', mode: 'testing', mx: ['other.example.net'], maxAge: DAY };

function dnsError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`queryTxt ${code} _mta-sts.example.net`), { code });
}

/** A resolver over fake DNS and HTTPS whose answers the test changes as it goes. */
function rig(options: { store?: PolicyStore } = {}) {
  const state = {
    txt: [['v=STSv1; id=1']] as string[][] | NodeJS.ErrnoException,
    body: ENFORCE as string | Error,
    clock: Date.UTC(2026, 0, 1),
    fetches: [] as string[],
  };
  const resolver = new MtaStsResolver({
    resolveTxt: async (name) => {
      expect(name).toBe('_mta-sts.example.net');
      if (state.txt instanceof Error) throw state.txt;
      return state.txt;
    },
    fetchText: async (domain) => {
      state.fetches.push(domain);
      if (state.body instanceof Error) throw state.body;
      return state.body;
    },
    now: () => state.clock,
    store: options.store,
  });
  return { state, resolver };
}

function memoryStore(initial: Record<string, CachedPolicy> = {}) {
  const saved: Record<string, CachedPolicy>[] = [];
  const store: PolicyStore = {
    load: () => structuredClone(initial),
    save: (all) => void saved.push(structuredClone(all)),
  };
  return { store, saved };
}

describe('MtaStsResolver', () => {
  it('refreshes a policy in use after half its max_age, and keeps the cached one when the refresh fails', async () => {
    const { state, resolver } = rig();
    await resolver.policyFor('example.net');
    state.clock += (DAY / 2) * 1000 + 1;
    state.body = new Error('policy host down');
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'enforce', source: 'cache', error: 'policy host down' });
    state.body = TESTING;
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'testing', source: 'fresh' });
    expect(state.fetches).toEqual(['example.net', 'example.net', 'example.net']);
  });

  it('fetches a new policy, then serves it from the cache while the id is unchanged', async () => {
    const { state, resolver } = rig();
    expect(await resolver.policyFor('Example.NET.')).toEqual({
      mode: 'enforce',
      mx: ['mx1.example.net', '*.mx.example.net'],
      source: 'fresh',
      policy: ENFORCE_POLICY,
    });
    state.clock += 3_600_000;
    expect(await resolver.policyFor('example.net')).toEqual({ mode: 'enforce', mx: ['mx1.example.net', '*.mx.example.net'], source: 'cache', policy: ENFORCE_POLICY });
    expect(state.fetches).toEqual(['example.net']);
  });

  it('refetches when the TXT id changes', async () => {
    const { state, resolver } = rig();
    await resolver.policyFor('example.net');
    state.txt = [['v=STSv1; id=2']];
    state.body = TESTING;
    expect(await resolver.policyFor('example.net')).toEqual({ mode: 'testing', mx: ['other.example.net'], source: 'fresh', policy: TESTING_POLICY });
    expect(state.fetches).toHaveLength(2);
  });

  it('keeps the cached policy when the fetch for a new id fails', async () => {
    const { state, resolver } = rig();
    await resolver.policyFor('example.net');
    state.txt = [['v=STSv1; id=2']];
    state.body = new Error('connect ECONNREFUSED');
    const decision = await resolver.policyFor('example.net');
    expect(decision).toMatchObject({ mode: 'enforce', source: 'cache', error: 'connect ECONNREFUSED' });
    // the failed id was not cached, so the next lookup tries again
    state.body = TESTING;
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'testing', source: 'fresh' });
  });

  it('keeps the cached policy when a new policy does not parse', async () => {
    const { state, resolver } = rig();
    await resolver.policyFor('example.net');
    state.txt = [['v=STSv1; id=2']];
    state.body = '<html>oops</html>';
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'enforce', source: 'cache', error: expect.stringMatching(/invalid MTA-STS policy/) });
  });

  it('reports no policy when the fetch fails and nothing is cached', async () => {
    const { state, resolver } = rig();
    state.body = new Error('certificate has expired');
    expect(await resolver.policyFor('example.net')).toEqual({ mode: 'no-policy', mx: [], source: 'none', error: 'certificate has expired' });
    state.body = 'version: STSv1\nmode: enforce\nmax_age: 10\n';
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'no-policy', source: 'none', error: expect.stringMatching(/requires at least one mx/) });
  });

  it('keeps enforcing from the cache when the TXT record vanishes or its lookup fails', async () => {
    const { state, resolver } = rig();
    await resolver.policyFor('example.net');
    for (const code of ['ENOTFOUND', 'ENODATA']) {
      state.txt = dnsError(code);
      expect(await resolver.policyFor('example.net')).toEqual({ mode: 'enforce', mx: ['mx1.example.net', '*.mx.example.net'], source: 'cache', policy: ENFORCE_POLICY });
    }
    state.txt = dnsError('ESERVFAIL');
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'enforce', source: 'cache', error: expect.stringMatching(/TXT lookup .* failed/) });
    state.txt = [['v=STSv1; id=1'], ['v=STSv1; id=2']];
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'enforce', source: 'cache' });
    expect(state.fetches).toHaveLength(1);
  });

  it('reports no policy without a TXT record and without a cache, and does not fetch', async () => {
    const { state, resolver } = rig();
    state.txt = dnsError('ENOTFOUND');
    expect(await resolver.policyFor('example.net')).toEqual({ mode: 'no-policy', mx: [], source: 'none' });
    state.txt = [['v=spf1 -all']];
    expect(await resolver.policyFor('example.net')).toEqual({ mode: 'no-policy', mx: [], source: 'none' });
    state.txt = dnsError('ETIMEOUT');
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'no-policy', source: 'none', error: expect.stringMatching(/ETIMEOUT/) });
    expect(state.fetches).toEqual([]);
  });

  it('expires a cached policy at fetched_at + max_age', async () => {
    const { state, resolver } = rig();
    await resolver.policyFor('example.net');
    state.txt = dnsError('ENOTFOUND');
    state.clock += DAY * 1000 - 1;
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'enforce', source: 'cache' });
    state.clock += 1;
    expect(await resolver.policyFor('example.net')).toEqual({ mode: 'no-policy', mx: [], source: 'none' });
  });

  it('refetches an expired policy even when the id is unchanged, and falls back to no policy if that fails', async () => {
    const { state, resolver } = rig();
    await resolver.policyFor('example.net');
    state.clock += DAY * 1000;
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'enforce', source: 'fresh' });
    expect(state.fetches).toHaveLength(2);
    state.clock += DAY * 1000;
    state.body = new Error('timed out');
    expect(await resolver.policyFor('example.net')).toEqual({ mode: 'no-policy', mx: [], source: 'none', error: 'timed out' });
  });

  it('returns mode none without mx hosts', async () => {
    const { state, resolver } = rig();
    state.body = 'version: STSv1\nmode: none\nmx: ignored.example\nmax_age: 60\n';
    expect(await resolver.policyFor('example.net')).toEqual({
      mode: 'none',
      mx: [],
      source: 'fresh',
      policy: { version: 'STSv1', mode: 'none', mx: ['ignored.example'], maxAge: 60 },
    });
  });

  it('shares one lookup between concurrent calls for a domain', async () => {
    const { state, resolver } = rig();
    const decisions = await Promise.all([resolver.policyFor('example.net'), resolver.policyFor('EXAMPLE.net'), resolver.policyFor('example.net.')]);
    expect(decisions.map((decision) => decision.source)).toEqual(['fresh', 'fresh', 'fresh']);
    expect(state.fetches).toHaveLength(1);
  });

  it('rejects a non-domain without any lookup', async () => {
    const { state, resolver } = rig();
    expect(await resolver.policyFor('example.net/x')).toMatchObject({ mode: 'no-policy', source: 'none', error: expect.stringMatching(/not a domain/) });
    expect(state.fetches).toEqual([]);
  });

  it('loads the cache from the store and saves fresh policies, dropping expired ones', async () => {
    const now = Date.UTC(2026, 0, 1);
    const policy = { version: 'STSv1' as const, mode: 'enforce' as const, mx: ['mx1.example.net'], maxAge: DAY };
    const { store, saved } = memoryStore({
      'example.net': { id: '1', fetchedAt: now - 1000, policy },
      'stale.example': { id: 'x', fetchedAt: now - DAY * 1000, policy },
    });
    const { state, resolver } = rig({ store });
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'enforce', source: 'cache' });
    expect(state.fetches).toEqual([]);
    state.txt = [['v=STSv1; id=2']];
    state.body = TESTING;
    await resolver.policyFor('example.net');
    expect(saved).toHaveLength(1);
    expect(Object.keys(saved[0]!)).toEqual(['example.net']);
    expect(saved[0]!['example.net']).toMatchObject({ id: '2', fetchedAt: now, policy: { mode: 'testing' } });
  });

  it('still returns the fresh policy when the store cannot save', async () => {
    const { resolver } = rig({
      store: {
        load: () => ({}),
        save: () => {
          throw new Error('ENOSPC: no space left on device');
        },
      },
    });
    expect(await resolver.policyFor('example.net')).toMatchObject({ mode: 'enforce', source: 'fresh', error: expect.stringMatching(/not saved: ENOSPC/) });
  });
});

describe('fileStore', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mtasts-store-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const entry: CachedPolicy = { id: 'abc', fetchedAt: 1_700_000_000_000, policy: { version: 'STSv1', mode: 'enforce', mx: ['mx.example.net'], maxAge: DAY } };

  it('loads an empty cache from a missing file', () => {
    expect(fileStore(path.join(dir, 'missing.json')).load()).toEqual({});
  });

  it('round-trips entries and leaves no temporary files behind', () => {
    const file = path.join(dir, 'cache.json');
    fileStore(file).save({ 'example.net': entry });
    fileStore(file).save({ 'example.net': entry, 'example.org': { ...entry, id: 'def' } });
    expect(fileStore(file).load()).toEqual({ 'example.net': entry, 'example.org': { ...entry, id: 'def' } });
    expect(readdirSync(dir).filter((name) => name.startsWith('cache.json'))).toEqual(['cache.json']);
  });

  it('treats a corrupt file as empty and drops malformed entries', () => {
    const corrupt = path.join(dir, 'corrupt.json');
    writeFileSync(corrupt, '{"example.net": {"id": "abc", "fetch');
    expect(fileStore(corrupt).load()).toEqual({});
    const mixed = path.join(dir, 'mixed.json');
    writeFileSync(mixed, JSON.stringify({ good: entry, bad: { ...entry, policy: { ...entry.policy, mode: 'strict' } }, worse: 42 }));
    expect(fileStore(mixed).load()).toEqual({ good: entry });
  });

  it('survives a restart: a new resolver serves the saved policy while the policy host is down', async () => {
    const file = path.join(dir, 'restart.json');
    const first = rig({ store: fileStore(file) });
    await first.resolver.policyFor('example.net');
    expect(JSON.parse(readFileSync(file, 'utf8'))['example.net'].id).toBe('1');
    const second = rig({ store: fileStore(file) });
    second.state.clock = first.state.clock + 1000;
    second.state.txt = dnsError('ESERVFAIL');
    second.state.body = new Error('unreachable');
    expect(await second.resolver.policyFor('example.net')).toMatchObject({ mode: 'enforce', source: 'cache' });
  });

  it('fails to save into a missing directory with the file system error', () => {
    expect(() => fileStore(path.join(dir, 'no', 'such', 'cache.json')).save({})).toThrow(/ENOENT/);
  });
});
