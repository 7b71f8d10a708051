// What the spool does at start, before anything else touches it: it finishes or undoes what a crash
// interrupted and counts what is stored (the disk accounting starts from these figures).
//
// - tmp/ is emptied: a file there was being written, and no message was acknowledged from tmp/.
// - Each meta in ready/ and held/ is read (one at a time: memory stays flat). One that cannot be parsed, or
//   whose bytes are missing from msg/, goes to corrupt/ with its bytes, and is logged. One whose `held`
//   field says it belongs in the other area is moved there: hold and release rewrite the meta in place,
//   then rename it, and a crash between the two leaves it on the wrong side. A message with a meta in both
//   areas keeps the one in ready/: an operator's release from another process (spool-admin.ts) writes the
//   released meta into ready/ first and then unlinks the held one, and a crash between the two leaves both.
// - Each message in msg/ without a meta in ready/ or held/ is deleted and logged. store() renames the
//   bytes into msg/ before the meta into ready/, and resolves (the client hears 250) only after the meta's
//   rename is fsynced, so bytes without a meta were never acknowledged. remove() and deleteHeld() delete
//   the meta first, so the same state after them is a message whose fate was already decided.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { emlPath, exists, fsyncDir, idsIn, makeDirs, metaPath, sizeOf, unlessMissing, unlinkIfPresent, type Area, type SpoolPaths } from './spool-files';
import { isId, parseMeta } from './spool-meta';

export interface SpoolCounts {
  /** Bytes of the stored messages and their metas (ready and held). */
  bytes: number;
  ready: number;
  held: number;
}

export interface RecoveryReport extends SpoolCounts {
  /** Files removed from tmp/. */
  tmpRemoved: number;
  /** Messages without a meta, deleted. */
  unacknowledged: number;
  /** Metas moved to corrupt/. */
  corrupt: number;
  /** Metas moved between ready/ and held/ to finish an interrupted hold or release. */
  moved: number;
}

async function emptyTmp(paths: SpoolPaths): Promise<number> {
  const names = await fs.readdir(paths.tmp);
  for (const name of names) await fs.rm(path.join(paths.tmp, name), { recursive: true, force: true });
  return names.length;
}

async function quarantine(paths: SpoolPaths, area: Area, id: string): Promise<void> {
  await fs.rename(metaPath(paths, area, id), path.join(paths.corrupt, `${id}.json`));
  if (await exists(emlPath(paths, id))) await fs.rename(emlPath(paths, id), path.join(paths.corrupt, `${id}.eml`));
}

/** Checks one meta; returns the area it ends up in, or null when it went to corrupt/ or is gone. */
async function settleMeta(paths: SpoolPaths, area: Area, id: string, report: RecoveryReport, log: (message: string) => void): Promise<Area | null> {
  // ready/ is settled first, so a ready copy still there now is one that belongs in ready/.
  if (area === 'held' && (await exists(metaPath(paths, 'ready', id)))) {
    await fs.unlink(metaPath(paths, area, id));
    report.moved++;
    log(`spool: ${id}: finished an interrupted release (the held copy removed)`);
    return 'ready';
  }
  // An operator command may delete a held message while haraka-in starts (spool-admin.ts).
  const text = await unlessMissing(fs.readFile(metaPath(paths, area, id), 'utf8'), null);
  if (text === null) return null;
  const meta = parseMeta(text);
  const problem = meta === null || meta.id !== id ? 'unreadable meta' : !(await exists(emlPath(paths, id))) ? 'meta without its message' : null;
  if (problem) {
    await quarantine(paths, area, id);
    report.corrupt++;
    log(`spool: ${area}/${id}.json: ${problem}, moved to corrupt/ for inspection`);
    return null;
  }
  const belongs: Area = meta!.held ? 'held' : 'ready';
  if (belongs === area) return area;
  // An interrupted hold or release. The meta already says where it goes; if a copy is there too (a file
  // system that let both names survive the rename), the one that says so is the newer.
  if (await exists(metaPath(paths, belongs, id))) await fs.unlink(metaPath(paths, area, id));
  else await fs.rename(metaPath(paths, area, id), metaPath(paths, belongs, id));
  report.moved++;
  log(`spool: ${id}: finished an interrupted ${belongs === 'held' ? 'hold' : 'release'}`);
  return belongs;
}

export async function recoverSpool(paths: SpoolPaths, log: (message: string) => void): Promise<RecoveryReport> {
  await makeDirs(paths);
  const report: RecoveryReport = { bytes: 0, ready: 0, held: 0, tmpRemoved: 0, unacknowledged: 0, corrupt: 0, moved: 0 };
  report.tmpRemoved = await emptyTmp(paths);
  if (report.tmpRemoved) log(`spool: removed ${report.tmpRemoved} unfinished file(s) from tmp/`);

  for (const area of ['ready', 'held'] as const) {
    for (const id of await idsIn(paths[area], '.json', isId)) {
      if (!(await exists(metaPath(paths, area, id)))) continue; // gone since the listing (settled as a copy of another)
      await settleMeta(paths, area, id, report, log);
    }
  }
  for (const id of await idsIn(paths.msg, '.eml', isId)) {
    if ((await exists(metaPath(paths, 'ready', id))) || (await exists(metaPath(paths, 'held', id)))) continue;
    await unlinkIfPresent(emlPath(paths, id));
    report.unacknowledged++;
    log(`spool: msg/${id}.eml has no meta: never acknowledged (the meta is written last), deleted`);
  }

  for (const dir of [paths.tmp, paths.msg, paths.ready, paths.held, paths.corrupt]) await fsyncDir(dir);
  // Counted after settling, so a meta moved between the areas is counted once, where it now is.
  return { ...report, ...(await countSpool(paths)) };
}

/**
 * What is stored, counted from the directories: the metas in ready/ and held/, and their bytes with those
 * of each message in msg/ that has a meta. Recovery starts the accounting from it; the owner counts again
 * now and then (Spool.recount), since an operator command in another process moves and deletes messages.
 */
export async function countSpool(paths: SpoolPaths): Promise<SpoolCounts> {
  const counts: SpoolCounts = { bytes: 0, ready: 0, held: 0 };
  const stored = new Set<string>();
  for (const area of ['ready', 'held'] as const) {
    for (const id of await idsIn(paths[area], '.json', isId)) {
      const size = await unlessMissing(
        fs.stat(metaPath(paths, area, id)).then((stat) => stat.size),
        null,
      );
      if (size === null) continue; // gone since the listing
      counts[area]++;
      counts.bytes += size;
      stored.add(id);
    }
  }
  for (const id of stored) counts.bytes += await sizeOf(emlPath(paths, id));
  return counts;
}
