// The store-and-forward spool: a durable store of messages accepted while the backend cannot be reached.
//
//   const spool = await Spool.open('/var/lib/mailproxy/haraka-in/spool', { log });  // recovers first
//   if (spool.wouldExceed(maxDisk, size)) → 452 4.3.1
//   const meta = await spool.store({ raw, envelope, client, receivedAt });          // → then answer 250
//   for (const id of await spool.listReady()) {                                      // oldest first
//     const { meta, stream } = await spool.stream(id);   // or read(id) for one Buffer
//     ... deliver ... then remove(id) | recordAttempt(id, reply, nextAttemptAt) | hold(id, reason)
//   }
//   listHeld(), release(id), deleteHeld(id) for the operator; usage() for health and metrics; recount().
//
// store() resolves only once the message is durable: bytes and meta are written to tmp/ and fsynced, the
// bytes are renamed into msg/ (directory fsynced), then the meta into ready/ (directory fsynced). The meta
// is the commit record: a message is visible (listed, delivered) only once its meta is in ready/ or held/;
// see spool-files.ts for the layout and spool-recovery.ts for what a restart does after a crash.
//
// Memory stays flat however much is stored: no message body is kept, listings are ids read from the
// directory when asked, and the disk accounting is three numbers counted at open and kept up to date.
// Operations on one id (reads included) are serialised within the process. The spool has one owner
// process: recovery at open deletes what another process might be writing, so two processes must not
// open one spool. An operator command (`mailproxy queue --instance in`) never opens it: it reads the metas
// and releases or deletes held messages with the atomic steps of spool-admin.ts, and the owner's counts,
// which then drift, are corrected by recount().
import { promises as fs } from 'node:fs';
import type { Readable } from 'node:stream';
import {
  emlPath,
  fsyncDir,
  idsIn,
  metaPath,
  sizeOf,
  spoolPaths,
  tempPath,
  unlessMissing,
  unlinkIfPresent,
  writeNew,
  type Area,
  type RawInput,
  type SpoolPaths,
} from './spool-files';
import { formatMeta, isId, newId, parseMeta, releasedMeta, type ClientIdentity, type Envelope, type Replay, type StoredMeta } from './spool-meta';
import { countSpool, recoverSpool, type RecoveryReport, type SpoolCounts } from './spool-recovery';

export type { RawInput } from './spool-files';

export interface StoreRequest {
  raw: RawInput;
  envelope: Envelope;
  client: ClientIdentity;
  /** When the message was accepted (ms since the epoch); ids sort by it. */
  receivedAt: number;
  replay?: Replay;
  /** Aborted before the meta is renamed into ready/: nothing is stored (the caller never said 250). */
  signal?: AbortSignal;
}

export interface SpoolOptions {
  log: (message: string) => void;
  /** Clock for lastAttemptAt and held.at (ms since the epoch). */
  now?: () => number;
}

export class Spool {
  private readonly locks = new Map<string, Promise<void>>();
  private readonly now: () => number;
  /** Changes started (store, move, rewrite, delete) and those not finished: recount() must not race them. */
  private changesStarted = 0;
  private changesRunning = 0;

  private constructor(
    private readonly paths: SpoolPaths,
    private readonly counts: SpoolCounts,
    readonly recovery: RecoveryReport,
    options: SpoolOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Opens (creating if needed) and recovers the spool under `root`. */
  static async open(root: string, options: SpoolOptions): Promise<Spool> {
    const paths = spoolPaths(root);
    const report = await recoverSpool(paths, options.log);
    return new Spool(paths, { bytes: report.bytes, ready: report.ready, held: report.held }, report, options);
  }

  usage(): SpoolCounts {
    return { ...this.counts };
  }

  /**
   * Counts what is stored from the directories again, and adopts the figures when no change of this
   * process overlapped the scan (else keeps its own and returns false: call again later). An operator
   * command in another process releases and deletes held messages without telling the owner.
   */
  async recount(): Promise<boolean> {
    const started = this.changesStarted;
    if (this.changesRunning > 0) return false;
    const counted = await countSpool(this.paths);
    if (this.changesRunning > 0 || this.changesStarted !== started) return false;
    Object.assign(this.counts, counted);
    return true;
  }

  /** Whether storing `incomingBytes` more would take the spool over `budgetBytes`. */
  wouldExceed(budgetBytes: number, incomingBytes: number): boolean {
    return this.counts.bytes + incomingBytes > budgetBytes;
  }

  store(request: StoreRequest): Promise<StoredMeta> {
    return this.changing(() => this.storeNew(request));
  }

  private async storeNew(request: StoreRequest): Promise<StoredMeta> {
    const id = newId(request.receivedAt);
    const tempEml = tempPath(this.paths, id, '.eml');
    const tempMeta = tempPath(this.paths, id, '.json');
    let stage: 'temp' | 'eml' | 'done' = 'temp';
    try {
      const size = await writeNew(tempEml, request.raw);
      const meta: StoredMeta = {
        format: 1,
        id,
        receivedAt: request.receivedAt,
        size,
        envelope: { mailFrom: request.envelope.mailFrom, rcptTo: [...request.envelope.rcptTo] },
        client: request.client,
        attempts: 0,
        lastAttemptAt: null,
        lastReply: null,
        nextAttemptAt: null,
        held: null,
        ...(request.replay ? { replay: request.replay } : {}),
      };
      const metaSize = await writeNew(tempMeta, formatMeta(meta));
      await fs.rename(tempEml, emlPath(this.paths, id));
      stage = 'eml';
      // The bytes' rename is made durable before the meta's, so a meta on disk always has its bytes.
      await fsyncDir(this.paths.msg);
      request.signal?.throwIfAborted();
      await fs.rename(tempMeta, metaPath(this.paths, 'ready', id));
      stage = 'done';
      await fsyncDir(this.paths.ready);
      this.counts.bytes += size + metaSize;
      this.counts.ready++;
      return meta;
    } catch (err) {
      // Not acknowledged: leave nothing behind (recovery would remove it at the next start anyway).
      if (stage === 'done') await unlinkIfPresent(metaPath(this.paths, 'ready', id)).catch(() => undefined);
      if (stage !== 'temp') await unlinkIfPresent(emlPath(this.paths, id)).catch(() => undefined);
      await unlinkIfPresent(tempEml).catch(() => undefined);
      await unlinkIfPresent(tempMeta).catch(() => undefined);
      throw err;
    }
  }

  /** Ids of the messages waiting for delivery, oldest first. */
  listReady(): Promise<string[]> {
    return idsIn(this.paths.ready, '.json', isId);
  }

  /** Ids of the held messages, oldest first. */
  listHeld(): Promise<string[]> {
    return idsIn(this.paths.held, '.json', isId);
  }

  /** The meta of a ready or held message. */
  readMeta(id: string): Promise<StoredMeta> {
    return this.exclusive(id, async () => (await this.locate(id)).meta);
  }

  /** Meta and raw bytes in one buffer (for small messages and tests; the drain should use stream()). */
  read(id: string): Promise<{ meta: StoredMeta; raw: Buffer }> {
    return this.exclusive(id, async () => {
      const { meta } = await this.locate(id);
      return { meta, raw: await fs.readFile(emlPath(this.paths, id)) };
    });
  }

  /** Meta and a stream of the raw bytes (the file stays readable until the stream closes, even if removed). */
  stream(id: string): Promise<{ meta: StoredMeta; stream: Readable }> {
    return this.exclusive(id, async () => {
      const { meta } = await this.locate(id);
      const handle = await fs.open(emlPath(this.paths, id), 'r');
      return { meta, stream: handle.createReadStream() }; // closes the file when it ends or is destroyed
    });
  }

  /** Deletes a delivered message. */
  remove(id: string): Promise<void> {
    return this.change(id, () => this.deleteFrom('ready', id));
  }

  /** Deletes a held message (the operator's decision). */
  deleteHeld(id: string): Promise<void> {
    return this.change(id, () => this.deleteFrom('held', id));
  }

  /** Moves a ready message to held/, recording why. */
  hold(id: string, reason: string): Promise<StoredMeta> {
    return this.change(id, () => this.move(id, 'ready', 'held', (meta) => ({ ...meta, held: { reason, at: this.now() } })));
  }

  /** Moves a held message back to ready/, to be delivered as soon as the backend answers. */
  release(id: string): Promise<StoredMeta> {
    return this.change(id, () => this.move(id, 'held', 'ready', (meta) => releasedMeta(meta, this.now())));
  }

  /**
   * Records a delivery attempt that did not finish the message: the backend's reply, when to try again,
   * and, after a partial delivery, the recipients still to deliver.
   */
  recordAttempt(id: string, reply: string, nextAttemptAt: number | null, pendingRcpts?: string[]): Promise<StoredMeta> {
    return this.change(id, async () => {
      const meta = await this.metaIn('ready', id);
      const updated: StoredMeta = {
        ...meta,
        envelope: { ...meta.envelope, rcptTo: pendingRcpts ? [...pendingRcpts] : meta.envelope.rcptTo },
        attempts: meta.attempts + 1,
        lastAttemptAt: this.now(),
        lastReply: reply,
        nextAttemptAt,
      };
      await this.rewriteMeta('ready', updated);
      return updated;
    });
  }

  private async locate(id: string): Promise<{ area: Area; meta: StoredMeta }> {
    for (const area of ['ready', 'held'] as const) {
      const meta = await this.metaIn(area, id, false);
      if (meta) return { area, meta };
    }
    throw new Error(`spool: no message ${id}`);
  }

  private async metaIn(area: Area, id: string): Promise<StoredMeta>;
  private async metaIn(area: Area, id: string, required: false): Promise<StoredMeta | null>;
  private async metaIn(area: Area, id: string, required = true): Promise<StoredMeta | null> {
    if (!isId(id)) throw new Error(`spool: not a message id: ${JSON.stringify(id)}`);
    const text = await unlessMissing(fs.readFile(metaPath(this.paths, area, id), 'utf8'), null);
    if (text === null) {
      if (required) throw new Error(`spool: no ${area} message ${id}`);
      return null;
    }
    const meta = parseMeta(text);
    if (!meta) throw new Error(`spool: ${area}/${id}.json is unreadable`);
    return meta;
  }

  /** Replaces a meta atomically: a new file in tmp/, fsynced, renamed over the old one, directory fsynced. */
  private async rewriteMeta(area: Area, meta: StoredMeta): Promise<void> {
    const target = metaPath(this.paths, area, meta.id);
    const temp = tempPath(this.paths, meta.id, '.json');
    const before = await sizeOf(target);
    try {
      const after = await writeNew(temp, formatMeta(meta));
      await fs.rename(temp, target);
      await fsyncDir(this.paths[area]);
      this.counts.bytes += after - before;
    } catch (err) {
      await unlinkIfPresent(temp).catch(() => undefined);
      throw err;
    }
  }

  // The meta is rewritten where it is (saying where it goes), then renamed: a crash in between leaves a
  // meta that recovery moves on, so the message is never in both areas or in neither.
  private async move(id: string, from: Area, to: Area, change: (meta: StoredMeta) => StoredMeta): Promise<StoredMeta> {
    const updated = change(await this.metaIn(from, id));
    await this.rewriteMeta(from, updated);
    await fs.rename(metaPath(this.paths, from, id), metaPath(this.paths, to, id));
    await fsyncDir(this.paths[to]);
    await fsyncDir(this.paths[from]);
    this.counts[from]--;
    this.counts[to]++;
    return updated;
  }

  // The meta goes first: once it is gone the message no longer exists, and recovery deletes the bytes
  // if a crash comes before they are.
  private async deleteFrom(area: Area, id: string): Promise<void> {
    await this.metaIn(area, id);
    const metaBytes = await sizeOf(metaPath(this.paths, area, id));
    const emlBytes = await sizeOf(emlPath(this.paths, id));
    await fs.unlink(metaPath(this.paths, area, id));
    await fsyncDir(this.paths[area]);
    this.counts[area]--;
    this.counts.bytes -= metaBytes;
    await unlinkIfPresent(emlPath(this.paths, id));
    await fsyncDir(this.paths.msg);
    this.counts.bytes -= emlBytes;
  }

  /** A change to one stored message: serialised with the other operations on it, and seen by recount(). */
  private change<T>(id: string, work: () => Promise<T>): Promise<T> {
    return this.exclusive(id, () => this.changing(work));
  }

  private async changing<T>(work: () => Promise<T>): Promise<T> {
    this.changesStarted++;
    this.changesRunning++;
    try {
      return await work();
    } finally {
      this.changesRunning--;
    }
  }

  private async exclusive<T>(id: string, work: () => Promise<T>): Promise<T> {
    const before = this.locks.get(id) ?? Promise.resolve();
    const run = before.then(work);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(id, settled);
    try {
      return await run;
    } finally {
      if (this.locks.get(id) === settled) this.locks.delete(id);
    }
  }
}
