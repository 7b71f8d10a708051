// The verification cache on disk, in real temp directories: it survives a restart, a missing, corrupt or
// half-written file never stops haraka-in, and a flood of RCPTs is saved in a few coalesced writes.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventually } from '../helpers/poll';
import { useTempDirs } from '../helpers/tmp';
import { PersistentVerifyCache } from '../../src/plugins/store-forward/verify-cache-file';
import { VERIFY_DEFAULTS } from '../../src/plugins/store-forward/verify-cache';

const tempDir = useTempDirs('mailproxy-verify-cache-');
const T0 = Date.UTC(2026, 0, 1);

function rig(options: { minIntervalMs?: number; dir?: string } = {}) {
  const dir = options.dir ?? tempDir();
  const file = path.join(dir, 'state', 'verify-cache.json');
  const logs: string[] = [];
  const clock = { now: T0 };
  const open = () =>
    PersistentVerifyCache.open({
      file,
      settings: VERIFY_DEFAULTS,
      minIntervalMs: options.minIntervalMs ?? 50,
      log: (message) => logs.push(message),
      now: () => clock.now,
    });
  return { dir, file, logs, clock, open };
}

describe('PersistentVerifyCache', () => {
  it('starts empty without a file, and what it learned survives a restart', async () => {
    const { file, logs, open } = rig();
    const first = await open();
    expect(first.size).toBe(0);
    expect(logs.join('\n')).toMatch(/none yet, starting empty/);
    first.record('alice@example.org', 250, '2.1.5 Ok');
    first.record('bob@example.org', 550, '5.1.1 User unknown');
    first.record('carol@example.org', 450, '4.1.1 try later');
    await first.close();
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ format: 1, good: [['alice@example.org', T0]], bad: [['bob@example.org', T0]] });

    const second = await open();
    expect(second.lookup('alice@example.org').status).toBe('good');
    expect(second.lookup('bob@example.org').status).toBe('bad');
    expect(second.lookup('carol@example.org').status).toBe('unknown');
    await second.close();
  });

  it.each([
    ['not JSON', '{"format":1,"good":[["alice@exa'],
    ['another format', '{"format":7}'],
    ['empty', ''],
  ])('a %s file loads as an empty cache with a warning', async (_what, text) => {
    const { file, logs, open } = rig();
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
    const cache = await open();
    expect(cache.size).toBe(0);
    expect(logs.join('\n')).toMatch(/malformed, starting empty/);
    // And it recovers: the next save replaces the bad file.
    cache.record('alice@example.org', 250, 'Ok');
    await cache.close();
    expect(JSON.parse(readFileSync(file, 'utf8')).good).toEqual([['alice@example.org', T0]]);
  });

  it('an unreadable path loads as an empty cache with a warning', async () => {
    const { file, logs, open } = rig();
    mkdirSync(file, { recursive: true }); // a directory where the file should be: EISDIR
    const cache = await open();
    expect(cache.size).toBe(0);
    expect(logs.join('\n')).toMatch(/cannot read \(EISDIR\), starting empty/);
  });

  it('a crash in the middle of a save (its temp file left half-written) leaves the previous cache intact', async () => {
    const { file, logs, open } = rig();
    const first = await open();
    first.record('alice@example.org', 250, 'Ok');
    await first.close();
    const saved = readFileSync(file, 'utf8');
    // What a save killed between its write and its rename leaves: a torn temp file next to the cache.
    const torn = `${file}.tmp-0123456789abcdef`;
    writeFileSync(torn, saved.slice(0, saved.length / 2));

    const second = await open();
    expect(second.lookup('alice@example.org').status).toBe('good');
    expect(readFileSync(file, 'utf8')).toBe(saved);
    expect(readdirSync(path.dirname(file))).toEqual(['verify-cache.json']);
    expect(logs.join('\n')).toMatch(/removed verify-cache\.json\.tmp-0123456789abcdef, left by an interrupted save/);
  });

  it('coalesces a flood of RCPTs into few saves, at most one in flight and one per interval', async () => {
    const { file, open } = rig({ minIntervalMs: 300 });
    const cache = await open();
    const started = Date.now();
    for (let i = 0; i < 2000; i++) cache.record(`user${i}@example.org`, 250, 'Ok');
    await eventually('the first save', () => cache.saves === 1);
    expect(JSON.parse(readFileSync(file, 'utf8')).good).toHaveLength(2000);
    // More changes right after the first save wait for the interval, then go in one save.
    for (let i = 0; i < 500; i++) cache.record(`late${i}@example.org`, 550, '5.1.1 unknown');
    await eventually('the second save', () => cache.saves === 2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(JSON.parse(readFileSync(file, 'utf8')).bad).toHaveLength(500);
    // Nothing changed: nothing written.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(cache.saves).toBe(2);
    // A 4xx changes nothing, so it schedules nothing.
    cache.record('user1@example.org', 451, '4.3.0 later');
    await cache.close();
    expect(cache.saves).toBe(2);
  });

  it('drops expired entries when it saves and when it loads', async () => {
    const { file, clock, open } = rig();
    const first = await open();
    first.record('gone@example.org', 550, '5.1.1 unknown');
    await first.close();
    clock.now = T0 + 3 * 24 * 3_600_000 + 1;
    const second = await open();
    expect(second.size).toBe(0);
    second.record('new@example.org', 250, 'Ok');
    await second.close();
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ format: 1, good: [['new@example.org', clock.now]], bad: [] });
  });
});
