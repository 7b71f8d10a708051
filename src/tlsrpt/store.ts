// TLS sessions on disk, one file per UTC day: `<dir>/<YYYY-MM-DD>.json`, written atomically (a crash leaves
// the old file or the new one); `<dir>/<YYYY-MM-DD>.reported.json` lists the domains whose report for that
// day went out. haraka-out records (TlsRptRecorder: in memory, saved at most every `saveIntervalMs`, so a
// crash loses at most that much); `mailproxy tls-report send` reads and reports. Days older than KEEP_DAYS
// are removed by the recorder when it opens: the store stays bounded by days × day.ts's limits.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../render/write';
import { addOutcome, dayOf, emptyDay, parseDay } from './day';
import type { DayRecord, SessionOutcome } from './types';

export const KEEP_DAYS = 8;
/** A day file larger than this is not read (the limits of day.ts keep a real one far below it). */
const MAX_DAY_FILE_BYTES = 16 * 1024 * 1024;
const DAY_FILE = /^(\d{4}-\d{2}-\d{2})\.json$/;

const dayFile = (dir: string, day: string) => path.join(dir, `${day}.json`);
const reportedFile = (dir: string, day: string) => path.join(dir, `${day}.reported.json`);

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${file}: ${(err as Error).message}`);
  }
}

/** The sessions of one day as saved; an empty day when there is no file. Throws on a file that is not one. */
export async function readDay(dir: string, day: string): Promise<DayRecord> {
  const size = await fs.stat(dayFile(dir, day)).then(
    (stat) => stat.size,
    () => 0,
  );
  if (size > MAX_DAY_FILE_BYTES) throw new Error(`${dayFile(dir, day)} is ${size} bytes, more than a day keeps`);
  const value = await readJson(dayFile(dir, day));
  if (value === undefined) return emptyDay(day);
  const parsed = parseDay(value);
  if (!parsed || parsed.day !== day) throw new Error(`${dayFile(dir, day)} does not hold the TLS sessions of ${day}`);
  return parsed;
}

/** The days with a file, oldest first. */
export async function savedDays(dir: string): Promise<string[]> {
  const names = await fs.readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  return names.flatMap((name) => DAY_FILE.exec(name)?.[1] ?? []).sort();
}

/** The domains whose report for `day` has gone out. */
export async function reportedDomains(dir: string, day: string): Promise<Set<string>> {
  const value = await readJson(reportedFile(dir, day));
  return new Set(Array.isArray(value) ? value.filter((entry): entry is string => typeof entry === 'string') : []);
}

export async function markReported(dir: string, day: string, domains: Set<string>): Promise<void> {
  await writeFileAtomic(reportedFile(dir, day), `${JSON.stringify([...domains].sort())}\n`, 0o640);
}

/** Removes the days older than KEEP_DAYS (their sessions and their report marks). */
export async function pruneOldDays(dir: string, now: number, log: (message: string) => void): Promise<void> {
  const oldest = dayOf(now - KEEP_DAYS * 86_400_000);
  for (const day of await savedDays(dir)) {
    if (day >= oldest) continue;
    await fs.rm(dayFile(dir, day), { force: true });
    await fs.rm(reportedFile(dir, day), { force: true });
    log(`TLS reports: removed the sessions of ${day} (older than ${KEEP_DAYS} days)`);
  }
}

export interface RecorderOptions {
  dir: string;
  saveIntervalMs: number;
  log: (message: string) => void;
  now?: () => number;
}

/** haraka-out's side: counts sessions of the current day in memory and saves them. */
export class TlsRptRecorder {
  private readonly days = new Map<string, DayRecord>();
  private timer: NodeJS.Timeout | null = null;
  private saving: Promise<void> = Promise.resolve();
  private readonly dirty = new Set<string>();
  private readonly now: () => number;
  private warnedFull = false;
  private closed = false;

  private constructor(private readonly options: RecorderOptions) {
    this.now = options.now ?? Date.now;
  }

  static async open(options: RecorderOptions): Promise<TlsRptRecorder> {
    await fs.mkdir(options.dir, { recursive: true, mode: 0o750 });
    const recorder = new TlsRptRecorder(options);
    const today = dayOf(recorder.now());
    await pruneOldDays(options.dir, recorder.now(), options.log);
    recorder.days.set(
      today,
      await readDay(options.dir, today).catch((err: Error) => {
        options.log(`TLS reports: ${err.message}; counting ${today} afresh`);
        return emptyDay(today);
      }),
    );
    return recorder;
  }

  record(outcome: SessionOutcome): void {
    const day = dayOf(this.now());
    let record = this.days.get(day);
    if (!record) {
      record = emptyDay(day);
      this.days.set(day, record);
      // Yesterday stays until its last save; older days are done, and the oldest files go.
      for (const old of this.days.keys()) if (old < day && !this.dirty.has(old)) this.days.delete(old);
      void pruneOldDays(this.options.dir, this.now(), this.options.log).catch(() => undefined);
    }
    if (!addOutcome(record, outcome)) {
      if (!this.warnedFull) this.options.log(`TLS reports: ${day} holds the most policies a day keeps; sessions of new ones are not counted`);
      this.warnedFull = true;
      return;
    }
    this.dirty.add(day);
    this.schedule();
  }

  private schedule(): void {
    this.timer ??= setTimeout(() => {
      this.timer = null;
      void this.save();
    }, this.options.saveIntervalMs).unref();
  }

  /** Writes what changed (after a save in flight). Never throws: a failed save is logged and retried later. */
  save(): Promise<void> {
    this.saving = this.saving.then(async () => {
      for (const day of [...this.dirty]) {
        const record = this.days.get(day);
        this.dirty.delete(day);
        if (!record) continue;
        try {
          await writeFileAtomic(dayFile(this.options.dir, day), `${JSON.stringify(record)}\n`, 0o640);
        } catch (err) {
          this.options.log(`TLS reports: cannot save ${day} (${(err as Error).message}), will retry`);
          this.dirty.add(day);
        }
      }
      if (this.dirty.size > 0 && !this.closed) this.schedule();
    });
    return this.saving;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.save();
  }
}
