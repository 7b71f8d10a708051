// The store-and-forward spool's directories and its few durable file operations.
//
//   <root>/tmp/      files being written; anything here at start was never part of a stored message
//   <root>/msg/      <id>.eml, the raw message bytes (written once, never moved)
//   <root>/ready/    <id>.json, the meta of a message waiting for delivery
//   <root>/held/     <id>.json, the meta of a message held for the operator
//   <root>/corrupt/  a meta that cannot be read and its message, kept for a human (as Postfix keeps
//                    unreadable queue files in its `corrupt` queue)
//
// A message exists when its meta exists: the meta is renamed into ready/ last, after the bytes are in
// msg/ and durable, so a meta always has its bytes. Hold and release move only the small meta file.
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

export { fsyncDir } from '../../render/write';

export type Area = 'ready' | 'held';

export interface SpoolPaths {
  root: string;
  tmp: string;
  msg: string;
  ready: string;
  held: string;
  corrupt: string;
}

/** Raw message bytes: one buffer, a list of them, or an async source (streamed to disk, never buffered). */
export type RawInput = Buffer | Iterable<Buffer> | AsyncIterable<Buffer>;

export function spoolPaths(root: string): SpoolPaths {
  return {
    root,
    tmp: path.join(root, 'tmp'),
    msg: path.join(root, 'msg'),
    ready: path.join(root, 'ready'),
    held: path.join(root, 'held'),
    corrupt: path.join(root, 'corrupt'),
  };
}

export function emlPath(paths: SpoolPaths, id: string): string {
  return path.join(paths.msg, `${id}.eml`);
}

export function metaPath(paths: SpoolPaths, area: Area, id: string): string {
  return path.join(paths[area], `${id}.json`);
}

/** A fresh name in tmp/ for a file that becomes `<id><suffix>` once renamed. */
export function tempPath(paths: SpoolPaths, id: string, suffix: string): string {
  return path.join(paths.tmp, `${id}.${randomBytes(4).toString('hex')}${suffix}`);
}

export async function makeDirs(paths: SpoolPaths): Promise<void> {
  for (const dir of [paths.root, paths.tmp, paths.msg, paths.ready, paths.held, paths.corrupt]) {
    // 0700: stored mail is readable by the spool's owner only.
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  }
}

/**
 * Creates `file` (which must not exist), writes the data, fsyncs and closes it; returns its size in bytes.
 * Nothing is kept in memory beyond the chunk being written.
 */
export async function writeNew(file: string, data: RawInput | string): Promise<number> {
  const handle = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    const chunks: Iterable<Buffer> | AsyncIterable<Buffer> = typeof data === 'string' ? [Buffer.from(data)] : Buffer.isBuffer(data) ? [data] : data;
    for await (const chunk of chunks) {
      for (let offset = 0; offset < chunk.length; ) offset += (await handle.write(chunk, offset, chunk.length - offset)).bytesWritten;
    }
    await handle.sync();
    return (await handle.stat()).size;
  } finally {
    await handle.close();
  }
}

/** What `work` gives, or `missing` when it failed because the file is not there (ENOENT). */
export async function unlessMissing<T>(work: Promise<T>, missing: T): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return missing;
    throw err;
  }
}

/** The size of a file, or 0 when it is missing. */
export function sizeOf(file: string): Promise<number> {
  return unlessMissing(
    fs.stat(file).then((stat) => stat.size),
    0,
  );
}

export function exists(file: string): Promise<boolean> {
  return unlessMissing(
    fs.lstat(file).then(() => true),
    false,
  );
}

/** Removes a file; false when it was already gone. */
export function unlinkIfPresent(file: string): Promise<boolean> {
  return unlessMissing(
    fs.unlink(file).then(() => true),
    false,
  );
}

/** The ids of the `<id><suffix>` files of a directory, sorted (oldest first). */
export async function idsIn(dir: string, suffix: string, isId: (id: string) => boolean): Promise<string[]> {
  const names = await fs.readdir(dir);
  return names
    .filter((name) => name.endsWith(suffix))
    .map((name) => name.slice(0, -suffix.length))
    .filter(isId)
    .sort();
}
