// What an operator command does to the store-and-forward spool from its own process while haraka-in, the
// spool's owner, keeps running: `mailproxy queue --instance in` lists, releases and deletes, `mailproxy
// health` counts. Never through Spool.open(): its recovery empties tmp/ and settles metas, which would
// delete what the running owner is writing.
//
// - Listing and counting only read: directory listings and meta files. A file that vanishes between the
//   listing and the read was delivered, held or released meanwhile, and is left out.
// - Release writes the released meta (releasedMeta: held null, tried as soon as the backend answers, a
//   fresh max_age_days) into tmp/, fsyncs it, renames it into ready/ and fsyncs ready/, then unlinks the
//   held meta and fsyncs held/. The owner's drain finds it in ready/ at its next probe. A crash between the
//   rename and the unlink leaves a meta in both areas; the owner's recovery keeps the ready one
//   (spool-recovery.ts), and so do listKept, releaseHeld and deleteHeldMessage here. The running owner
//   never touches held/ (its drain only moves ready messages into it), so nothing races a held meta.
// - Delete unlinks the held meta first, then the bytes: a crash between leaves bytes without a meta, which
//   recovery deletes, as after the owner's own deleteHeld().
// - A meta written by root (the operator) would be unreadable to haraka-in (0600): the released meta gets
//   the owner and group of the held meta it replaces.
import { promises as fs } from 'node:fs';
import { emlPath, exists, fsyncDir, idsIn, metaPath, spoolPaths, tempPath, unlessMissing, unlinkIfPresent, writeNew, type Area, type SpoolPaths } from './spool-files';
import { formatMeta, idTime, isId, parseMeta, releasedMeta, type StoredMeta } from './spool-meta';
import { countSpool } from './spool-recovery';

/** A meta file that could not be read as one. */
export interface KeptProblem {
  file: string;
  error: string;
}

export interface KeptListing {
  root: string;
  /** False when the spool does not exist (yet): haraka-in never stored anything. */
  exists: boolean;
  /** Waiting for delivery, oldest first. */
  ready: StoredMeta[];
  /** Held for the operator, oldest first. */
  held: StoredMeta[];
  problems: KeptProblem[];
  /** Ids recovery moved to corrupt/ for a human to look at. */
  corrupt: string[];
}

/** The cheap figures health and metrics need: directory listings and file sizes, no meta read. */
export interface KeptFigures {
  exists: boolean;
  ready: number;
  held: number;
  corrupt: number;
  /** Bytes of the stored messages and their metas. */
  bytes: number;
  /** When the oldest waiting message was accepted (ms since the epoch), null with none. */
  oldestReadyAt: number | null;
  oldestHeldAt: number | null;
}

/** Operator errors: the message is not there, not held, not readable. The CLI prints the message. */
export class KeptError extends Error {}

function friendly(err: unknown, what: string): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return new KeptError(`cannot ${what}: permission denied (run as root or as haraka-in's user)`);
  return err as Error;
}

/** The ids in a directory of the spool; none when it does not exist. */
async function idsOf(dir: string, suffix: string): Promise<string[]> {
  try {
    return await unlessMissing(idsIn(dir, suffix, isId), []);
  } catch (err) {
    throw friendly(err, `read ${dir}`);
  }
}

async function readMetaFile(paths: SpoolPaths, area: Area, id: string): Promise<StoredMeta | KeptProblem | null> {
  let text: string | null;
  try {
    text = await unlessMissing(fs.readFile(metaPath(paths, area, id), 'utf8'), null);
  } catch (err) {
    throw friendly(err, `read ${metaPath(paths, area, id)}`);
  }
  if (text === null) return null;
  const meta = parseMeta(text);
  if (!meta || meta.id !== id) return { file: `${area}/${id}.json`, error: 'not a readable meta (haraka-in moves it to corrupt/ at its next start)' };
  return meta;
}

/** Every kept message with its meta, ready and held (or only the areas asked for). A snapshot. */
export async function listKept(root: string, areas: readonly Area[] = ['ready', 'held']): Promise<KeptListing> {
  const paths = spoolPaths(root);
  const listing: KeptListing = { root, exists: await exists(root), ready: [], held: [], problems: [], corrupt: [] };
  if (!listing.exists) return listing;
  const readyIds = new Set(await idsOf(paths.ready, '.json'));
  for (const area of areas) {
    for (const id of area === 'ready' ? readyIds : await idsOf(paths.held, '.json')) {
      // In both areas: a release interrupted between its two steps; the message is ready.
      if (area === 'held' && readyIds.has(id)) continue;
      const read = await readMetaFile(paths, area, id);
      if (read === null) continue;
      if ('error' in read) listing.problems.push(read);
      else listing[area].push(read);
    }
  }
  listing.corrupt = await idsOf(paths.corrupt, '.json');
  return listing;
}

/** Counts, bytes and the oldest of each area, from directory listings and sizes alone. */
export async function keptFigures(root: string): Promise<KeptFigures> {
  if (!(await exists(root))) return { exists: false, ready: 0, held: 0, corrupt: 0, bytes: 0, oldestReadyAt: null, oldestHeldAt: null };
  const paths = spoolPaths(root);
  let counts: Awaited<ReturnType<typeof countSpool>>;
  try {
    counts = await countSpool(paths);
  } catch (err) {
    throw friendly(err, `read ${root}`);
  }
  const oldest = async (dir: string) => {
    const first = (await idsOf(dir, '.json'))[0];
    return first === undefined ? null : idTime(first);
  };
  return {
    exists: true,
    ...counts,
    corrupt: (await idsOf(paths.corrupt, '.json')).length,
    oldestReadyAt: await oldest(paths.ready),
    oldestHeldAt: await oldest(paths.held),
  };
}

/** The held meta of `id`, or a KeptError that says where the message is instead. */
async function heldMeta(paths: SpoolPaths, id: string): Promise<StoredMeta> {
  if (!isId(id)) throw new KeptError(`not a kept message id: ${JSON.stringify(id)} (ids look like 01767225600000-000042-9f86d081)`);
  const read = await readMetaFile(paths, 'held', id);
  if (read === null) {
    if (await exists(metaPath(paths, 'ready', id))) throw new KeptError(`${id} is not held: it waits for delivery to the backend`);
    throw new KeptError(`no kept message ${id} (delivered or deleted meanwhile?)`);
  }
  if ('error' in read) throw new KeptError(`held/${id}.json: ${read.error}`);
  return read;
}

/** Removes a held meta whose message a ready meta already carries (the end of an interrupted release). */
async function dropHeldCopy(paths: SpoolPaths, id: string): Promise<boolean> {
  if (!(await exists(metaPath(paths, 'ready', id)))) return false;
  await unlinkIfPresent(metaPath(paths, 'held', id));
  await fsyncDir(paths.held);
  return true;
}

/** Writes `meta` into tmp/ owned like `like`, fsynced; returns the temp file's name. */
async function writeMetaLike(paths: SpoolPaths, meta: StoredMeta, like: string): Promise<string> {
  const temp = tempPath(paths, meta.id, '.json');
  try {
    await writeNew(temp, formatMeta(meta));
    const owner = await fs.stat(like);
    if (owner.uid !== process.getuid?.() || owner.gid !== process.getgid?.()) {
      await fs.chown(temp, owner.uid, owner.gid);
      const handle = await fs.open(temp, 'r');
      await handle.sync().finally(() => handle.close());
    }
    return temp;
  } catch (err) {
    await unlinkIfPresent(temp).catch(() => undefined);
    throw friendly(err, `write into ${paths.tmp}`);
  }
}

/** Moves a held message back to ready/; the running haraka-in delivers it at its next probe. */
export async function releaseHeld(root: string, id: string, now: number = Date.now()): Promise<StoredMeta> {
  const paths = spoolPaths(root);
  const meta = await heldMeta(paths, id);
  if (await dropHeldCopy(paths, id)) return meta;
  if (!(await exists(emlPath(paths, id)))) throw new KeptError(`${id}: its message (msg/${id}.eml) is missing; haraka-in moves it to corrupt/ at its next start`);
  const released = releasedMeta(meta, now);
  const temp = await writeMetaLike(paths, released, metaPath(paths, 'held', id));
  try {
    await fs.rename(temp, metaPath(paths, 'ready', id));
    await fsyncDir(paths.ready);
  } catch (err) {
    await unlinkIfPresent(temp).catch(() => undefined);
    throw friendly(err, `write into ${paths.ready}`);
  }
  await unlinkIfPresent(metaPath(paths, 'held', id));
  await fsyncDir(paths.held);
  return released;
}

/** Deletes a held message for good (meta, then bytes). Returns its meta. */
export async function deleteHeldMessage(root: string, id: string): Promise<StoredMeta> {
  const paths = spoolPaths(root);
  const meta = await heldMeta(paths, id);
  // Released already (an interrupted release): the message lives on in ready/; only the stale copy goes.
  if (await dropHeldCopy(paths, id)) throw new KeptError(`${id} is not held: it was released and waits for delivery to the backend`);
  try {
    await fs.unlink(metaPath(paths, 'held', id));
    await fsyncDir(paths.held);
    await unlinkIfPresent(emlPath(paths, id));
    await fsyncDir(paths.msg);
  } catch (err) {
    throw friendly(err, `delete from ${root}`);
  }
  return meta;
}
