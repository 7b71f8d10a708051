// The recipient verification cache on disk: loaded once at start, saved atomically, saves coalesced.
//
//   const verified = await PersistentVerifyCache.open({ file, settings: VERIFY_DEFAULTS, minIntervalMs: 5_000, log });
//   verified.record('alice@example.org', 250, '2.1.5 Ok');   // each live RCPT reply; schedules a save
//   verified.lookup('alice@example.org');                    // { status: 'good', refreshDue: false, ... }
//   await verified.close();                                  // at shutdown: the last changes are written
//
// Loading never throws: a missing, unreadable or malformed file is an empty cache and a log line (the
// cache is advisory: an empty one answers 450 for everyone, as haraka-in does without store-and-forward),
// and a temp file left by a crash in the middle of a save is removed. Saving writes a temp file in the
// same directory, fsyncs it, renames it over the cache and fsyncs the directory (writeFileAtomic), so a
// crash leaves the old or the new cache, never a torn one. A flood of RCPTs does not write per RCPT: at
// most one save is in flight and saves start at least `minIntervalMs` apart; changes made meanwhile go
// into the next one. A crash loses at most the last interval's changes.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../render/write';
import { cacheSize, emptyVerifyCache, fromJson, lookup, prune, recordReply, toJson, type VerifyCache, type VerifyLookup, type VerifySettings } from './verify-cache';

export interface VerifyCacheFileOptions {
  file: string;
  settings: VerifySettings;
  /** Shortest time between the starts of two saves. */
  minIntervalMs: number;
  log: (message: string) => void;
  /** The clock the cache's entries are dated by (ms since the epoch). */
  now?: () => number;
}

/** What a saved cache file holds, read without changing anything (`mailproxy health` reads it too). */
export type SavedVerifyCache = { kind: 'loaded'; cache: VerifyCache; dropped: number } | { kind: 'missing' } | { kind: 'unreadable'; code: string } | { kind: 'malformed' };

export async function readSavedVerifyCache(file: string, settings: VerifySettings, now: number): Promise<SavedVerifyCache> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? { kind: 'missing' } : { kind: 'unreadable', code: code ?? String(err) };
  }
  try {
    const loaded = fromJson(JSON.parse(text), now, settings);
    if (loaded) return { kind: 'loaded', ...loaded };
  } catch {
    // not JSON: malformed like any other file that is not a saved cache
  }
  return { kind: 'malformed' };
}

/** Reads the saved cache; any problem gives an empty cache and a log line, never an exception. */
export async function loadVerifyCache(file: string, settings: VerifySettings, now: number, log: (message: string) => void): Promise<VerifyCache> {
  await removeStaleTemps(file, log);
  const saved = await readSavedVerifyCache(file, settings, now);
  if (saved.kind === 'loaded') {
    if (saved.dropped > 0) log(`verification cache ${file}: ${saved.dropped} expired, malformed or surplus entries dropped`);
    return saved.cache;
  }
  const why = saved.kind === 'missing' ? 'none yet' : saved.kind === 'unreadable' ? `cannot read (${saved.code})` : 'malformed';
  log(`verification cache ${file}: ${why}, starting empty`);
  return emptyVerifyCache();
}

// writeFileAtomic names its temp file `<file>.tmp-<hex>` in the same directory: one left there was being
// written when the process died, and the rename that would have made it the cache never happened.
async function removeStaleTemps(file: string, log: (message: string) => void): Promise<void> {
  const prefix = `${path.basename(file)}.tmp-`;
  let names: string[];
  try {
    names = await fs.readdir(path.dirname(file));
  } catch {
    return;
  }
  for (const name of names.filter((entry) => entry.startsWith(prefix))) {
    await fs.unlink(path.join(path.dirname(file), name)).catch(() => undefined);
    log(`verification cache: removed ${name}, left by an interrupted save`);
  }
}

export class PersistentVerifyCache {
  /** Saves completed since open (for tests and metrics). */
  saves = 0;
  private dirty = false;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private lastSaveStart = Number.NEGATIVE_INFINITY;
  private failing = false;
  private closed = false;
  private readonly now: () => number;

  private constructor(
    readonly cache: VerifyCache,
    private readonly options: VerifyCacheFileOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  static async open(options: VerifyCacheFileOptions): Promise<PersistentVerifyCache> {
    const now = (options.now ?? Date.now)();
    await fs.mkdir(path.dirname(options.file), { recursive: true, mode: 0o750 });
    return new PersistentVerifyCache(await loadVerifyCache(options.file, options.settings, now, options.log), options);
  }

  lookup(address: string): VerifyLookup {
    return lookup(this.cache, address, this.now(), this.options.settings);
  }

  /** Records the backend's reply to RCPT for the address; a change is saved with the next save. */
  record(address: string, code: number, text: string): boolean {
    const changed = recordReply(this.cache, address, code, text, this.now(), this.options.settings);
    if (changed) this.schedule();
    return changed;
  }

  get size(): number {
    return cacheSize(this.cache);
  }

  /** Writes pending changes now (after the save in flight, if any). A failed save is logged, not thrown. */
  async flush(): Promise<void> {
    this.cancelTimer();
    if (this.writing) await this.writing;
    this.cancelTimer();
    if (this.dirty) await this.save();
    this.cancelTimer(); // a failed save has rescheduled itself
  }

  /** Stops saving by timer and writes what is pending. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  private cancelTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    this.dirty = true;
    // A save in flight reschedules itself when it ends; a timer already set picks this change up.
    if (this.closed || this.timer || this.writing) return;
    const wait = Math.max(0, this.lastSaveStart + this.options.minIntervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.save();
    }, wait);
    // A pending save must not keep the process alive; shutdown calls close().
    this.timer.unref();
  }

  private save(): Promise<void> {
    if (this.writing) return this.writing;
    this.dirty = false;
    this.lastSaveStart = Date.now();
    prune(this.cache, this.now(), this.options.settings);
    const text = `${JSON.stringify(toJson(this.cache))}\n`;
    this.writing = writeFileAtomic(this.options.file, text, 0o600)
      .then(() => {
        this.saves++;
        if (this.failing) this.options.log(`verification cache ${this.options.file}: saved again`);
        this.failing = false;
      })
      .catch((err: unknown) => {
        // Logged once per run of failures (a full disk would otherwise log at every interval).
        if (!this.failing) this.options.log(`verification cache ${this.options.file}: cannot save (${(err as Error).message}), will retry`);
        this.failing = true;
        this.dirty = true;
      })
      .finally(() => {
        this.writing = null;
        if (this.dirty) this.schedule();
      });
    return this.writing;
  }
}
